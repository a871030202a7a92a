"""When policy cannot be evaluated the gate denies — with the reason — and the denial is audited.

Three ways policy fails: the bundle is broken (at start or by a later edit), the engine raises,
and a remote OPA does not answer in time. Each time: a question that is normally allowed is
denied with ``error`` set and the fail-closed policy id, the audit record of that decision
carries the same error, and once the cause is gone the next decision is a normal one again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from policy_opa_server import ConformanceServer

from lacuna_orchestration.governor import Governor
from lacuna_orchestration.model import AuditRecord, DatasetRef, Decision, Operation, OperationKind
from lacuna_orchestration.policy.decide import FAIL_CLOSED_POLICY, PolicyDecider
from lacuna_orchestration.policy.engine import PolicyEngine, PolicyResult
from lacuna_orchestration.policy.rego import EmbeddedRegoEngine
from lacuna_orchestration.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
SOURCE = DatasetRef("crm", "customers")
TARGET = DatasetRef("warehouse", "analytics.daily")
ALLOWED = Operation(OperationKind.TRANSFORM, (SOURCE,), TARGET, user="ann", purpose="analytics")


def settings(url: str, **overrides: Any) -> Settings:
    return Settings.load(**{"database_url": url, "policy_dir": str(POLICIES), **overrides})


def assert_fail_closed(gov: Governor, decision: Decision, needle: str, action: str) -> AuditRecord:
    """Denied, with the reason, and audited with the same error; returns the audit record."""
    assert not decision.allow
    assert decision.policy_id == FAIL_CLOSED_POLICY
    assert needle in decision.error, decision.error
    assert any(needle in reason for reason in decision.reasons)
    assert needle in decision.message  # what the orchestrator shows
    record = gov.audit.tail(1)[0]
    assert record.action == action
    assert record.decision is not None
    assert record.decision["allow"] is False
    assert record.decision["decision_id"] == decision.decision_id
    assert needle in record.decision["error"]
    assert gov.verify_audit().ok
    return record


def test_broken_bundle_at_start(sqlite_url: str, tmp_path: Path, record_result) -> None:
    broken = tmp_path / "policies"
    shutil.copytree(POLICIES, broken)
    (broken / "export_governance.rego").write_text("package lacuna.export\n\ndeny := [x |\n")
    with Governor(settings(sqlite_url, policy_dir=str(broken))) as gov:
        decision = gov.check(ALLOWED)
        assert_fail_closed(gov, decision, "export_governance.rego", "gate.check")
        result = gov.register_lineage([SOURCE.key], TARGET.key, "transform")
        (ingested,) = result.decisions
        assert_fail_closed(gov, ingested, "export_governance.rego", "policy.decision")
    record_result("policy: broken bundle", decision="deny", audited=True,
                  reason_names_the_file="export_governance.rego" in decision.error)


def test_missing_policy_directory(sqlite_url: str, tmp_path: Path) -> None:
    with Governor(settings(sqlite_url, policy_dir=str(tmp_path / "nowhere"))) as gov:
        assert_fail_closed(gov, gov.check(ALLOWED), "nowhere", "gate.check")


def test_bundle_broken_while_running_then_fixed(sqlite_url: str, tmp_path: Path,
                                               record_result) -> None:
    live = tmp_path / "policies"
    shutil.copytree(POLICIES, live)
    engine = EmbeddedRegoEngine(live, reload_interval_s=0)  # check the files every time
    with Governor(settings(sqlite_url, policy_dir=str(live)),
                  decider=PolicyDecider(engine)) as gov:
        assert gov.check(ALLOWED).allow
        good = (live / "purpose_limitation.rego").read_text()
        (live / "purpose_limitation.rego").write_text(good + "\nthis is not rego {\n")
        assert_fail_closed(gov, gov.check(ALLOWED), "purpose_limitation.rego", "gate.check")
        (live / "purpose_limitation.rego").write_text(good)
        time.sleep(0.01)  # a new mtime even on coarse clocks
        assert gov.check(ALLOWED).allow  # recovers by itself
    record_result("policy: bundle broken while running", decision="deny", audited=True,
                  recovered=True)


class ExplodingEngine(PolicyEngine):
    """An engine whose evaluation raises what a buggy backend might (not a PolicyError)."""

    kind = "exploding"

    def __init__(self, error: BaseException | None = None,
                 answer: list[PolicyResult] | None = None) -> None:
        self.error = error
        self.answer = answer
        self.calls = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ExplodingEngine:
        return cls(RuntimeError("boom"))

    def evaluate(self, input_doc: Mapping[str, Any]) -> list[PolicyResult]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.answer or [])

    def reload(self) -> None:
        return None

    @property
    def revision(self) -> str:
        raise RuntimeError("revision unavailable too")  # must not turn a denial into a crash


@pytest.mark.parametrize(
    ("engine", "needle"),
    [
        (ExplodingEngine(RuntimeError("segfault in the policy VM")), "segfault in the policy VM"),
        (ExplodingEngine(KeyError("decision")), "decision"),
        (ExplodingEngine(MemoryError()), "MemoryError"),
        (ExplodingEngine(answer=[]), "no policies"),
    ],
    ids=["runtime-error", "key-error", "memory-error", "empty-answer"],
)
def test_engine_exception(sqlite_url: str, engine: ExplodingEngine, needle: str,
                          record_result) -> None:
    with Governor(settings(sqlite_url), decider=PolicyDecider(engine)) as gov:
        decision = gov.check(ALLOWED)
        assert_fail_closed(gov, decision, needle, "gate.check")
        result = gov.register_lineage([SOURCE.key], "warehouse::other", "transform")
        assert_fail_closed(gov, result.decisions[0], needle, "policy.decision")
    assert engine.calls == 2
    record_result("policy: engine exception", decision="deny", audited=True,
                  reason=decision.error[:60])


@pytest.fixture()
def slow_opa() -> Iterator[ConformanceServer]:
    with ConformanceServer(POLICIES) as server:
        yield server


def test_opa_timeout_denies_and_recovers(sqlite_url: str, slow_opa: ConformanceServer,
                                         record_result) -> None:
    timeout_s = 0.3
    with Governor(settings(sqlite_url, policy_backend="opa", opa_url=slow_opa.url,
                           opa_timeout_s=timeout_s)) as gov:
        assert gov.check(ALLOWED).allow  # OPA answers: a normal decision
        slow_opa.delay_s = 2.0
        started = time.monotonic()
        decision = gov.check(ALLOWED)
        waited = time.monotonic() - started
        assert_fail_closed(gov, decision, "did not answer within 0.3 s", "gate.check")
        # It gave up at its timeout instead of waiting for OPA's late answer.
        assert waited < slow_opa.delay_s, f"the gate waited {waited:.2f}s for OPA"
        slow_opa.delay_s = 0.0
        time.sleep(0.05)
        assert gov.check(ALLOWED).allow  # recovers by itself
    record_result("policy: OPA REST timeout", decision="deny", audited=True,
                  timeout_s=timeout_s, waited_s=round(waited, 2), recovered=True)


def test_opa_errors_and_unreachable(sqlite_url: str, slow_opa: ConformanceServer) -> None:
    with Governor(settings(sqlite_url, policy_backend="opa", opa_url=slow_opa.url,
                           opa_timeout_s=1.0)) as gov:
        slow_opa.raw_response = (500, b"internal error")
        assert_fail_closed(gov, gov.check(ALLOWED), "500", "gate.check")
        slow_opa.raw_response = (200, b'{"result": "allow everything"}')
        assert_fail_closed(gov, gov.check(ALLOWED), "must be a list", "gate.check")
        slow_opa.raw_response = (200, b"{}")  # undefined: the bundle is not loaded
        assert not gov.check(ALLOWED).allow
    with Governor(settings(sqlite_url, policy_backend="opa", opa_url="http://127.0.0.1:9",
                           opa_timeout_s=0.5)) as gov:
        decision = gov.check(ALLOWED)
        assert not decision.allow and decision.error
        assert gov.audit.tail(1)[0].decision["error"] == decision.error
