"""Several governors on one store (server workers, replicas, the CLI next to an orchestrator)
decide on what the store holds, not on the graph they loaded at start; and one governor's
concurrent callers share group commits without losing the one-chain property."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lacuna_orchestration import governor as governor_module
from lacuna_orchestration.errors import StoreError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.model import DatasetRef, Operation, OperationKind, Tier
from lacuna_orchestration.settings import Settings
from tests.conftest import PG_URL, count_commits

ROOT = Path(__file__).resolve().parents[1]
REPORT = DatasetRef("analytics", "weekly_report")
EXPORT = Operation(OperationKind.EXPORT, (REPORT,),
                   DatasetRef("file", "/home/ann/Downloads/weekly.csv"),
                   user="ann")


@pytest.fixture()
def open_governor(backend: str, request: pytest.FixtureRequest) -> Iterator[Callable[[], Governor]]:
    """Opens governors on one store: a SQLite file, or one PostgreSQL schema."""
    if backend == "postgres":
        settings = Settings.load(database_url=PG_URL,
                                 database_schema=request.getfixturevalue("pg_schema"),
                                 policy_dir=str(ROOT / "policies"))
    else:
        settings = Settings.load(database_url=request.getfixturevalue("sqlite_url"),
                                 policy_dir=str(ROOT / "policies"))
    opened: list[Governor] = []

    def make() -> Governor:
        opened.append(Governor(settings))
        return opened[-1]

    yield make
    for gov in opened:
        gov.close()


def transform(inputs: list[DatasetSpec], output: DatasetSpec) -> dict[str, Any]:
    return build_run_event(job=("etl", "weekly"), event_type="COMPLETE", inputs=inputs,
                           outputs=[output], operation="join", run_id=str(uuid.uuid4()))


PAGEVIEWS = DatasetSpec(DatasetRef("web", "pageviews"), columns=("page_path", "view_count"))
CUSTOMERS = DatasetSpec(DatasetRef("crm", "customers"), columns=("email", "phone_number"))


def test_a_gate_sees_what_another_governor_committed(open_governor) -> None:
    worker_a, worker_b = open_governor(), open_governor()
    worker_b.ingest(transform([PAGEVIEWS], DatasetSpec(REPORT)))
    assert worker_b.check(EXPORT).allow  # a report of page views may leave

    # Another worker learns that the report now joins in customer contacts.
    worker_a.ingest(transform([PAGEVIEWS, CUSTOMERS], DatasetSpec(REPORT)))

    decision = worker_b.check(EXPORT)
    assert not decision.allow, "worker B decided on the graph it had before A's event"
    assert "PII" in worker_b.classification(REPORT).tags
    assert worker_b.classification(REPORT).tier is Tier.PROPRIETARY


def test_an_override_elsewhere_reaches_the_gate(open_governor) -> None:
    worker_a, worker_b = open_governor(), open_governor()
    worker_a.ingest(transform([PAGEVIEWS], DatasetSpec(REPORT)))
    assert worker_b.check(EXPORT).allow
    worker_a.override(REPORT, tier="PROPRIETARY", tags=["FINANCIAL"], steward="sam",
                      reason="holds unpublished revenue")
    assert not worker_b.check(EXPORT).allow
    assert worker_b.classification(REPORT).tier is Tier.PROPRIETARY


def test_a_governor_does_not_reload_what_it_wrote_itself(open_governor,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    worker = open_governor()
    reloads: list[set[str]] = []
    real = worker.catalog.load_keys

    def counting(graph: Any, keys: Any) -> list[str]:
        keys = set(keys)
        reloads.append(keys)
        return real(graph, keys)

    monkeypatch.setattr(worker.catalog, "load_keys", counting)
    worker.ingest(transform([CUSTOMERS], DatasetSpec(REPORT)))
    worker.check(EXPORT)
    worker.ingest(transform([PAGEVIEWS], DatasetSpec(REPORT)))
    worker.check(EXPORT)
    assert reloads == []

    other = open_governor()
    other.ingest(transform([PAGEVIEWS], DatasetSpec(DatasetRef("analytics", "traffic"))))
    worker.check(EXPORT)
    assert reloads == [{"web::pageviews", "analytics::traffic"}]  # only what `other` named
    assert "analytics::traffic" in worker.graph


def test_far_behind_reloads_the_whole_graph(open_governor, monkeypatch: pytest.MonkeyPatch) -> None:
    worker_a, worker_b = open_governor(), open_governor()
    monkeypatch.setattr(governor_module, "CATCH_UP_LIMIT", 1)
    for n in range(3):
        worker_a.ingest(transform([CUSTOMERS], DatasetSpec(DatasetRef("analytics", f"t{n}"))))
    before = worker_b.graph
    worker_b.refresh()
    assert worker_b.graph is not before  # replaced, not patched
    assert {"analytics::t0", "analytics::t1", "analytics::t2"} <= set(worker_b.graph.g)


def test_concurrent_ingests_share_commits_and_keep_one_chain(
    open_governor, monkeypatch: pytest.MonkeyPatch
) -> None:
    gov = open_governor()
    commits = count_commits(gov, monkeypatch)
    threads, per_thread = 8, 15
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def producer(n: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                out = DatasetSpec(DatasetRef("analytics", f"t{n}_{i}"))
                result = gov.ingest(transform([CUSTOMERS], out))
                assert result.audit and result.audit[0].seq > 0  # acknowledged = linked
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    workers = [threading.Thread(target=producer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    ingests = threads * per_thread
    records = list(gov.audit.records())
    assert sum(r.action == "lineage.ingest" for r in records) == ingests
    assert sum(commits) == len(records)  # every record committed once, none lost
    assert len(commits) < ingests, "no two concurrent ingests ever shared a commit"
    assert gov.verify_audit().ok
    with Governor(gov.settings) as fresh:  # every acknowledged event's rows are in the store
        assert sum(1 for k in fresh.graph.g if k.startswith("analytics::t")) == ingests


def test_queued_writes_commit_by_flush(open_governor) -> None:
    gov = open_governor()
    result = gov.ingest(transform([CUSTOMERS], DatasetSpec(REPORT)), durable=False)
    assert result.audit == ()
    decision = gov.check(EXPORT, durable=False)
    assert not decision.allow
    gov.flush()
    actions = [r.action for r in gov.audit.records()]
    assert actions[0] == "lineage.ingest" and actions[-1] == "gate.check"
    assert decision.decision_id in {d.decision_id for d in gov.catalog.decisions(limit=10)}


def test_a_bulk_import_shares_commits(open_governor, monkeypatch: pytest.MonkeyPatch) -> None:
    gov = open_governor()
    commits = count_commits(gov, monkeypatch)
    events = [transform([CUSTOMERS], DatasetSpec(DatasetRef("analytics", f"b{n}")))
              for n in range(40)]
    done, failure = gov.ingest_many(events, via="import")
    assert failure is None and len(done) == 40
    assert all(r.audit and r.audit[0].seq > 0 for r in done)
    assert [r.audit[0].seq for r in done] == sorted(r.audit[0].seq for r in done)
    assert len(commits) < 40  # not one commit per event
    assert gov.verify_audit().ok


def test_writes_queued_across_a_reload_are_caught_up(open_governor,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A write still queued when the graph is reloaded (another caller's failure) is not in
    the reloaded graph; once it commits, catching up must bring it in, not skip it as 'ours'."""
    gov = open_governor()
    gate = threading.Event()
    real = gov.audit.append_prepared

    def held(items: Any, also: Any = (), **kwargs: Any) -> Any:
        gate.wait(10)
        return real(items, also, **kwargs)

    monkeypatch.setattr(gov.audit, "append_prepared", held)
    gov.ingest(transform([CUSTOMERS], DatasetSpec(REPORT)), durable=False)
    with gov._lock:
        gov._restore_graph()  # what a failing caller does; the queued write is not committed
    assert REPORT.key not in gov.graph
    gate.set()
    gov.flush()
    gov.refresh()
    assert REPORT.key in gov.graph and "PII" in gov.classification(REPORT).tags


def test_only_a_step_start_is_queued_without_waiting() -> None:
    from lacuna_orchestration.lineage.events import waits_for_commit

    def event(kind: str) -> dict[str, Any]:
        return build_run_event(job=("j", "x"), event_type=kind, inputs=[], outputs=[])

    assert not waits_for_commit(event("START")) and not waits_for_commit(event("RUNNING"))
    assert all(waits_for_commit(event(k)) for k in ("COMPLETE", "FAIL", "ABORT", "OTHER"))
    assert waits_for_commit({"eventType": None}) and waits_for_commit({})


def test_events_submitted_together_share_one_catch_up_and_see_earlier_commits(
        open_governor, monkeypatch: pytest.MonkeyPatch) -> None:
    """``submit_ingest`` (the service's path): events waiting together are one batch with one
    catch-up — made after each was submitted, so each sees every commit acknowledged before
    it — and each answer carries its committed audit records."""
    worker_a, worker_b = open_governor(), open_governor()
    probes: list[int] = []
    real = worker_b._head.seq

    def counting() -> int:
        probes.append(1)
        return real()

    monkeypatch.setattr(worker_b._head, "seq", counting)
    worker_b.ingest(transform([PAGEVIEWS], DatasetSpec(REPORT)))
    worker_a.ingest(transform([PAGEVIEWS, CUSTOMERS], DatasetSpec(REPORT)))  # acknowledged
    probes.clear()
    export = DatasetSpec(DatasetRef("file", "/home/ann/Downloads/weekly.csv"))
    with worker_b._lock:  # hold the intake until all are submitted: they wait together
        futures = [worker_b.submit_ingest(build_run_event(
            job=("etl", "export"), event_type="COMPLETE", inputs=[DatasetSpec(REPORT)],
            outputs=[export], operation="export", run_id=str(uuid.uuid4())))
            for _ in range(5)]
    results = [f.result(timeout=10) for f in futures]
    # the intake may take the first event before the rest arrive; the others then wait for
    # the lock together: at most two batches, one catch-up each
    assert 1 <= len(probes) <= 2
    assert all(r.audit and r.audit[0].seq > 0 for r in results)
    assert all(not r.allowed for r in results), "decided on the graph from before A's event"
    assert "PII" in worker_b.classification(REPORT).tags
    worker_b.close()
    with pytest.raises(StoreError):
        worker_b.submit_ingest(transform([PAGEVIEWS], DatasetSpec(REPORT)))


def test_a_request_given_up_before_its_turn_is_not_ingested_and_the_intake_lives_on(
        open_governor) -> None:
    """A client that disconnects cancels its future: the event is skipped (it was never
    acknowledged) and the intake thread keeps serving the others."""
    worker = open_governor()
    worker.ingest(transform([PAGEVIEWS], DatasetSpec(REPORT)))
    gone, kept = transform([PAGEVIEWS], DatasetSpec(REPORT)), transform([PAGEVIEWS],
                                                                        DatasetSpec(REPORT))
    with worker._lock:  # the intake waits for the lock: both are still queued
        abandoned = worker.submit_ingest(gone)
        waited = worker.submit_ingest(kept)
        assert abandoned.cancel()
    assert waited.result(timeout=10).audit
    assert list(worker.audit.records(run_id=gone["run"]["runId"])) == []
    again = worker.submit_ingest(transform([PAGEVIEWS], DatasetSpec(REPORT)))
    assert again.result(timeout=10).audit
