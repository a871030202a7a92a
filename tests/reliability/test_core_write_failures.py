"""A write that fails half-way through ``Governor.ingest``/``check`` leaves nothing nobody
audited, and a retry of the unacknowledged event is decided and audited again.

The store is made to fail at one point (the audit append, or the catalog rows written after it
in the same transaction) the way a database that goes away between two statements would: the
call raises ``StoreError`` (nothing acknowledged), the transaction leaves nothing behind, the
in-memory graph is what the store holds, and the retry writes the policy decision to the chain
— a denial must never be lost because the first try failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_strategies import event
from sqlalchemy.exc import OperationalError

from lacuna_orchestration.errors import StoreError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.lineage.events import DatasetSpec
from lacuna_orchestration.model import DatasetRef, Operation, OperationKind
from lacuna_orchestration.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def export_event(run_id: str) -> dict[str, Any]:
    src = DatasetSpec(DatasetRef("crm", "customers"), columns=("email", "region"))
    return event([src], [DatasetSpec(DatasetRef("file", "/tmp/export.csv"))],
                 operation="export", run_id=run_id, event_type="START")


@pytest.fixture()
def gov(sqlite_url: str) -> Iterator[Governor]:
    with Governor(Settings.load(database_url=sqlite_url, policy_dir=str(ROOT / "policies"))) as g:
        yield g


def fail_once(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = getattr(target, name)
    state = {"failed": False}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if not state["failed"]:
            state["failed"] = True
            raise StoreError("the database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)


def fail_catalog_write_once(gov: Governor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog rows fail inside the transaction, after the audit rows went in."""
    real = gov.catalog.changes
    state = {"failed": False}

    def changes(*args: Any, **kwargs: Any) -> Any:
        step = real(*args, **kwargs)
        if state["failed"] or step is None:
            return step
        state["failed"] = True

        def broken(conn: Any) -> None:
            step(conn)
            raise OperationalError("INSERT INTO lacuna_datasets", {},
                                   Exception("the database went away"))

        return broken

    monkeypatch.setattr(gov.catalog, "changes", changes)


def decisions_in_chain(gov: Governor, run_id: str) -> list[bool]:
    return [r.decision["allow"] for r in gov.audit.records(run_id=run_id)
            if r.action == "policy.decision" and r.decision]


@pytest.mark.parametrize("failing", ["audit", "catalog"])
def test_failed_ingest_leaves_no_trace_and_the_retry_audits_the_denial(
    gov: Governor, failing: str, monkeypatch: pytest.MonkeyPatch, record_result
) -> None:
    run_id = str(uuid.uuid4())
    keys_before = {n.ref.key for n in gov.graph.nodes()}
    if failing == "audit":
        fail_once(gov.audit, "append_prepared", monkeypatch)
    else:
        fail_catalog_write_once(gov, monkeypatch)
    with pytest.raises(StoreError):
        gov.ingest(export_event(run_id))
    # Memory holds what the store holds: nothing of the event's datasets.
    assert {n.ref.key for n in gov.graph.nodes()} == keys_before
    assert "crm::customers" not in gov.graph
    # One transaction: the audit rows already written roll back with the catalog's.
    assert decisions_in_chain(gov, run_id) == []
    result = gov.ingest(export_event(run_id))  # the producer retries
    assert not result.allowed
    assert False in decisions_in_chain(gov, run_id)[-1:]  # the retry's denial is in the chain
    assert "crm::customers" in gov.graph and "file::/tmp/export.csv" in gov.graph
    with Governor(gov.settings) as fresh:  # and in the store
        assert "crm::customers" in fresh.graph
    assert gov.verify_audit().ok
    record_result("crash: a write fails half-way through ingest", failing=failing,
                  unaudited_changes=0, retry_denial_audited=True)


def test_failed_check_leaves_no_unaudited_decision(gov: Governor,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    gov.ingest(export_event(str(uuid.uuid4())))
    listed = len(list(gov.catalog.decisions(limit=1000)))
    fail_once(gov.audit, "append_prepared", monkeypatch)
    op = Operation(OperationKind.EXPORT, (DatasetRef("crm", "customers"),),
                   DatasetRef("file", "/tmp/out.csv"), user="ann")
    with pytest.raises(StoreError):
        gov.check(op)
    assert len(list(gov.catalog.decisions(limit=1000))) == listed
    assert not gov.check(op).allow
    assert gov.audit.tail(1)[0].action == "gate.check"
