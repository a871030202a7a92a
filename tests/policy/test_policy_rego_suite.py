"""The Rego unit tests in policies/*_test.rego, run through the embedded engine, plus the
check that regorus' compiled VM and its interpreter agree on a wide grid of inputs."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from policy_helpers import POLICY_DIR

from lacuna_orchestration.policy.rego import EmbeddedRegoEngine, run_rego_tests

RESULTS = run_rego_tests(POLICY_DIR)


def test_every_policy_has_rego_tests() -> None:
    packages = {name.split(".")[3] for name, _ in RESULTS}
    assert {"export_governance", "scratch_space", "purpose_limitation", "marketing_domain"} <= (
        packages
    )
    assert len(RESULTS) >= 30


@pytest.mark.parametrize(("name", "passed"), RESULTS, ids=[n for n, _ in RESULTS])
def test_rego_unit_test_passes(name: str, passed: bool) -> None:
    assert passed, f"{name} evaluated to false or undefined"


def test_runner_reports_false_undefined_and_erroring_tests(bundle_copy: Path) -> None:
    (bundle_copy / "extra_test.rego").write_text(
        "package lacuna.tests.extra\n\n"
        "test_true if { 1 == 1 }\n\n"
        "test_false if { 1 == 2 }\n\n"
        "test_undefined if { input.missing == 1 }\n\n"
        "test_error if { x := 1 / 0; x == 1 }\n",
        encoding="utf-8",
    )
    results = dict(run_rego_tests(bundle_copy))
    assert results["data.lacuna.tests.extra.test_true"] is True
    assert results["data.lacuna.tests.extra.test_false"] is False
    assert results["data.lacuna.tests.extra.test_undefined"] is False
    assert results["data.lacuna.tests.extra.test_error"] is False


def _grid() -> list[dict[str, Any]]:
    locations = [
        "file:///tmp/export.csv",
        "file:///home/a/Downloads/x.csv",
        "file:///governed/workspace/x.csv",
        "s3://partner/x.csv",
        "s3://acme-governed/x.csv",
        "postgres://warehouse.internal:5432/db.t",
    ]
    tag_sets = [[], ["PII"], ["GDPR", "PII"], ["PHI"], ["DERIVED_FROM_PII"], ["FINANCIAL"]]
    docs = []
    for action, tier, tags, location, env, purpose, domain, encrypted in itertools.product(
        ["export", "transform", "aggregate", "anonymize"],
        ["PUBLIC", "INTERNAL", "PROPRIETARY"],
        tag_sets,
        locations,
        ["production", "development"],
        ["", "analytics", "marketing"],
        ["", "marketing"],
        [False, True],
    ):
        docs.append(
            {
                "action": action,
                "source": {"datasets": ["w::a"], "tier": tier, "tags": tags, "unclassified": []},
                "destination": {"location": location, "encrypted": encrypted, "managed": None},
                "user": "u",
                "context": {"environment": env, "purpose": purpose, "domain": domain},
                "lineage": {"upstream": []},
            }
        )
    return docs[::7]  # a spread-out sample, ~1,000 documents


def test_vm_and_interpreter_give_identical_answers() -> None:
    vm = EmbeddedRegoEngine(POLICY_DIR, mode="vm", reload_interval_s=None, shadow_every=0)
    interpreter = EmbeddedRegoEngine(POLICY_DIR, mode="interpreter", reload_interval_s=None)
    assert vm.mode == "vm" and interpreter.mode == "interpreter"
    grid = _grid()
    denials: Counter[str] = Counter()
    for doc in grid:
        answer = vm.evaluate_document(doc)
        assert answer == interpreter.evaluate_document(doc), doc
        denials.update(e["package"] for e in answer if not e["decision"]["allow"])
    # the grid exercises every policy's denials, not only allows
    assert set(denials) == {
        "export_governance",
        "scratch_space",
        "purpose_limitation",
        "marketing_domain",
    }
    assert min(denials.values()) >= 20
