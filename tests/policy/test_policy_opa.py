"""The OPA REST backend against a conformance server that speaks OPA's Data API over the same
policy files: both backends must return the same decisions, and every transport failure must
fail the gate closed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from policy_helpers import POLICY_DIR, scenario
from policy_opa_server import ConformanceServer

from lacuna_orchestration.errors import PolicyError
from lacuna_orchestration.model import DatasetRef, Tier
from lacuna_orchestration.policy.decide import FAIL_CLOSED_POLICY, PolicyDecider
from lacuna_orchestration.policy.opa import OpaRestEngine
from lacuna_orchestration.policy.rego import EmbeddedRegoEngine, load_bundle


@pytest.fixture(scope="module")
def server() -> Iterator[ConformanceServer]:
    with ConformanceServer(POLICY_DIR) as running:
        yield running


@pytest.fixture()
def opa(server: ConformanceServer) -> Iterator[OpaRestEngine]:
    engine = OpaRestEngine(server.url, timeout_s=5.0)
    yield engine
    engine.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SCENARIOS: dict[str, dict[str, Any]] = {
    "seed": {},
    "development": {"environment": "development", "purpose": "analytics"},
    "governed": {"destination": DatasetRef("file", "/governed/workspace/x.csv")},
    "external-unencrypted": {"destination": DatasetRef("s3://partner", "x.csv")},
    "internal-external": {
        "tier": Tier.INTERNAL,
        "tags": (),
        "destination": DatasetRef("https://api.partner.example", "upload"),
        "encrypted": True,
    },
    "purpose": {"kind": "transform", "destination": None, "purpose": "profiling"},
    "marketing": {"kind": "transform", "domain": "marketing", "purpose": "analytics"},
    "marketing-aggregate": {
        "kind": "aggregate",
        "domain": "marketing",
        "purpose": "analytics",
        "destination": DatasetRef("postgres://warehouse.internal:5432", "mkt.t"),
    },
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_opa_and_embedded_give_identical_decisions(
    name: str, opa: OpaRestEngine, embedded: EmbeddedRegoEngine
) -> None:
    params = dict(SCENARIOS[name])
    kind = str(params.pop("kind", "export"))
    doc, c = scenario(kind, **params)
    assert opa.evaluate_document(doc) == embedded.evaluate_document(doc)
    via_opa = PolicyDecider(opa).decide(doc, action=kind, classification=c)
    via_embedded = PolicyDecider(embedded).decide(doc, action=kind, classification=c)
    keep = ("allow", "reasons", "alternatives", "policy_id", "policy_version", "steward", "error")
    assert {k: getattr(via_opa, k) for k in keep} == {k: getattr(via_embedded, k) for k in keep}
    assert via_opa.message == via_embedded.message


def test_revision_comes_from_opa_provenance(opa: OpaRestEngine) -> None:
    assert opa.revision == f"opa:{opa.url}"  # nothing asked yet
    doc, _ = scenario()
    opa.evaluate(doc)
    assert opa.revision == f"opa:lacuna={load_bundle(POLICY_DIR).revision}"


def test_connection_is_reused(server: ConformanceServer, opa: OpaRestEngine) -> None:
    doc, _ = scenario()
    opa.evaluate(doc)
    sock = opa._connection().sock
    opa.evaluate(doc)
    assert sock is not None and opa._connection().sock is sock


def test_reload_reconnects(server: ConformanceServer, opa: OpaRestEngine) -> None:
    doc, _ = scenario()
    opa.evaluate(doc)
    opa.reload()
    assert len(opa.evaluate(doc)) == 4


def test_unknown_package_path_is_undefined_and_an_error(server: ConformanceServer) -> None:
    engine = OpaRestEngine(server.url, package_path="lacuna/no_such_rule", timeout_s=5.0)
    with pytest.raises(PolicyError, match="undefined"):
        engine.evaluate({"action": "read"})


def test_non_200_names_the_status_and_opa_message(server: ConformanceServer) -> None:
    engine = OpaRestEngine(server.url + "/not-opa", timeout_s=5.0)  # → /not-opa/v1/data/...
    with pytest.raises(PolicyError, match=r"HTTP 404: resource_not_found: no route"):
        engine.evaluate({"action": "read"})


def test_bad_json_answer_is_an_error() -> None:
    with ConformanceServer(POLICY_DIR) as srv:
        srv.raw_response = (200, b"<html>proxy error</html>")
        engine = OpaRestEngine(srv.url, timeout_s=5.0)
        with pytest.raises(PolicyError, match="invalid JSON"):
            engine.evaluate({"action": "read"})
        srv.raw_response = (502, b"Bad Gateway")
        with pytest.raises(PolicyError, match="HTTP 502: Bad Gateway"):
            engine.evaluate({"action": "read"})


def test_malformed_result_is_an_error() -> None:
    with ConformanceServer(POLICY_DIR) as srv:
        srv.raw_response = (200, b'{"result": [{"package": "x"}]}')
        with pytest.raises(PolicyError, match="malformed policy answer"):
            OpaRestEngine(srv.url, timeout_s=5.0).evaluate({"action": "read"})


def test_timeout_fails_closed_within_the_limit() -> None:
    with ConformanceServer(POLICY_DIR, delay_s=1.0) as slow:
        engine = OpaRestEngine(slow.url, timeout_s=0.2)
        doc, c = scenario(tier=Tier.PUBLIC, tags=())
        started = time.monotonic()
        decision = PolicyDecider(engine).decide(doc, action="export", classification=c)
        elapsed = time.monotonic() - started
        engine.close()
    assert elapsed < 0.9
    assert not decision.allow
    assert decision.policy_id == FAIL_CLOSED_POLICY
    assert decision.error == f"OPA at {slow.url} did not answer within 0.2 s"


def test_connection_refused_fails_closed() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    decision = PolicyDecider(OpaRestEngine(url, timeout_s=1.0)).decide(
        {"action": "read"}, action="read"
    )
    assert not decision.allow
    assert decision.error == f"OPA at {url} refused the connection"
    assert decision.reasons == (f"policy evaluation failed: OPA at {url} refused the connection",)


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(PolicyError, match="http"):
        OpaRestEngine("ftp://opa:8181")
    with pytest.raises(PolicyError, match="timeout"):
        OpaRestEngine("http://opa:8181", timeout_s=0)
