"""The backend registry (kinds, dotted paths, third-party registration) and the validation of
what a backend returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from policy_helpers import POLICY_DIR

import lacuna_orchestration.policy as policy_api
from lacuna_orchestration.errors import ConfigError, PolicyError
from lacuna_orchestration.policy.engine import (
    PolicyEngine,
    PolicyResult,
    create_engine,
    engine_kinds,
    register_engine,
    results_from_document,
)
from lacuna_orchestration.policy.opa import OpaRestEngine
from lacuna_orchestration.policy.rego import EmbeddedRegoEngine
from lacuna_orchestration.settings import Settings


class StaticEngine(PolicyEngine):
    """A third-party backend: always the same answer."""

    kind = "static"

    @classmethod
    def from_settings(cls, settings: Settings) -> StaticEngine:
        return cls()

    def evaluate(self, input_doc: Mapping[str, Any]) -> list[PolicyResult]:
        return [PolicyResult("static", "1", "Static", "me@example.com", True)]

    def reload(self) -> None:
        return None

    @property
    def revision(self) -> str:
        return "static-1"


def test_builtin_kinds_come_from_settings() -> None:
    embedded = create_engine(Settings.load(policy_dir=str(POLICY_DIR), policy_backend="embedded"))
    assert isinstance(embedded, EmbeddedRegoEngine)
    assert embedded.policy_dir == POLICY_DIR
    opa = create_engine(
        Settings.load(policy_backend="opa", opa_url="http://opa.internal:8181", opa_timeout_s=0.5)
    )
    assert isinstance(opa, OpaRestEngine)
    assert (opa.url, opa.timeout_s) == ("http://opa.internal:8181", 0.5)
    assert {"embedded", "opa"} <= set(engine_kinds())


def test_dotted_path_and_registered_kind() -> None:
    settings = Settings.load(policy_dir=str(POLICY_DIR))
    engine = create_engine(settings, backend=f"{__name__}.StaticEngine")
    assert isinstance(engine, StaticEngine)
    register_engine("static-test")(StaticEngine)
    assert isinstance(create_engine(settings, backend="static-test"), StaticEngine)
    assert "static-test" in engine_kinds()


def test_registry_errors_say_what_to_do() -> None:
    settings = Settings.load(policy_dir=str(POLICY_DIR))
    with pytest.raises(ConfigError, match="unknown policy backend 'nope'; use one of"):
        create_engine(settings, backend="nope")
    with pytest.raises(ConfigError, match="cannot import policy engine"):
        create_engine(settings, backend="no.such.module.Engine")
    with pytest.raises(ConfigError, match="not a PolicyEngine subclass"):
        create_engine(settings, backend="collections.OrderedDict")
    with pytest.raises(ConfigError, match="already registered"):
        register_engine("embedded")(StaticEngine)


def _entry(**decision: Any) -> dict[str, Any]:
    return {
        "package": "p",
        "metadata": {"id": "p", "title": "P", "version": "1", "steward": "s@example.com"},
        "decision": {"allow": False, "reasons": ["r"], "alternatives": ["a"], **decision},
    }


def test_results_from_document_reads_the_entry_point_shape() -> None:
    assert results_from_document([_entry()]) == [
        PolicyResult("p", "1", "P", "s@example.com", False, ("r",), ("a",))
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"not": "a list"}, "must be a list"),
        ([{"package": "p"}], "malformed policy answer"),
        ([_entry(allow="yes")], "not a boolean"),
        ([_entry(reasons="one string")], "list of strings"),
        ([_entry(alternatives=[1])], "not a string"),
    ],
)
def test_malformed_answers_are_policy_errors(document: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        results_from_document(document)


def test_public_surface_imports_once_each() -> None:
    names = policy_api.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(policy_api, name) is not None
