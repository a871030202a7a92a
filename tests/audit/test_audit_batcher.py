"""AuditBatcher: group commit whose futures resolve only after their batch committed."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest
from audit_helpers import make_record, make_records
from sqlalchemy import Engine

from lacuna_orchestration.audit.batcher import AuditBatcher
from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.audit.verify import verify
from lacuna_orchestration.db import make_engine
from lacuna_orchestration.errors import NotFound, StoreError, ValidationError
from lacuna_orchestration.model import AuditRecord

SLOW = 60.0  # a delay no test should ever wait out: close()/flush() must cut it short


def test_futures_resolve_only_after_commit(
    store: AuditStore, sqlite_url: str, backend: str
) -> None:
    """When a future completes, another connection already sees its record."""
    reader = AuditStore(
        store.engine if backend == "postgres" else make_engine(sqlite_url)
    )  # SQLite: a second engine, so a second connection for sure
    seen: list[bool] = []

    def committed(future) -> None:  # runs on the batcher thread as the result is set
        try:
            reader.get(future.result().record_id)
            seen.append(True)
        except NotFound:
            seen.append(False)

    with AuditBatcher(store, max_batch=7, max_delay_s=0.001) as batcher:
        futures = [batcher.submit(r) for r in make_records(40)]
        for future in futures:
            future.add_done_callback(committed)
        linked = [f.result(timeout=30) for f in futures]
    assert seen == [True] * 40
    assert [r.seq for r in linked] == list(range(1, 41))  # submission order is chain order
    assert verify(store).ok
    if backend == "sqlite":
        reader.engine.dispose()


def test_close_drains_everything_queued(store: AuditStore) -> None:
    batcher = AuditBatcher(store, max_batch=10_000, max_delay_s=SLOW)
    futures = [batcher.submit(r) for r in make_records(500)]
    batcher.close()
    assert all(f.done() for f in futures)
    assert store.count() == 500
    assert batcher.closed
    batcher.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        batcher.submit(make_record(1))


def test_flush_commits_without_waiting_for_the_delay(store: AuditStore) -> None:
    with AuditBatcher(store, max_batch=10_000, max_delay_s=SLOW) as batcher:
        futures = [batcher.submit(r) for r in make_records(5)]
        flusher = threading.Thread(target=batcher.flush)
        flusher.start()
        flusher.join(timeout=20)
        assert not flusher.is_alive()
        assert all(f.done() for f in futures)
        assert store.count() == 5
        batcher.flush()  # nothing pending: returns at once


def test_batches_respect_max_batch(store: AuditStore) -> None:
    sizes: list[int] = []
    append_prepared = store.append_prepared

    def recording(items, also=()):  # type: ignore[no-untyped-def]
        sizes.append(len(items))
        return append_prepared(items, also)

    store.append_prepared = recording  # type: ignore[method-assign]
    with AuditBatcher(store, max_batch=25, max_delay_s=SLOW) as batcher:
        for record in make_records(100):
            batcher.submit(record)
    assert sum(sizes) == 100
    assert max(sizes) <= 25
    assert len(sizes) >= 4


def test_a_failed_batch_fails_every_future_and_the_next_flush(engine: Engine) -> None:
    store = AuditStore(engine)  # no schema yet: appends fail
    with AuditBatcher(store, max_batch=100, max_delay_s=SLOW) as batcher:
        failed = [batcher.submit(r) for r in make_records(3)]
        with pytest.raises(StoreError, match="1 audit batch"):
            batcher.flush()
        for future in failed:
            with pytest.raises(StoreError, match=r"create_schema\(\) first"):
                future.result(timeout=10)
        # the batcher survives a failed batch
        store.create_schema()
        ok = batcher.submit(make_record(10))
        batcher.flush()
        assert ok.result().seq == 1
    assert store.count() == 1


def test_invalid_record_is_refused_at_submit_and_spoils_no_batch(store: AuditStore) -> None:
    with AuditBatcher(store, max_batch=100, max_delay_s=SLOW) as batcher:
        before = batcher.submit(make_record(1))
        with pytest.raises(ValidationError, match="not a JSON value"):
            batcher.submit(make_record(2, details={"when": object()}))
        after = batcher.submit(make_record(3))
    assert [before.result().seq, after.result().seq] == [1, 2]
    assert store.count() == 2


def test_cancelled_future_is_not_written(store: AuditStore) -> None:
    with AuditBatcher(store, max_batch=100, max_delay_s=SLOW) as batcher:
        keep = batcher.submit(make_record(1))
        drop = batcher.submit(make_record(2))
        assert drop.cancel()
    assert keep.result().seq == 1
    with pytest.raises(CancelledError):
        drop.result()
    assert [r.record_id for r in store.records()] == [keep.result().record_id]


def test_many_threads_submitting(store: AuditStore) -> None:
    results: list[AuditRecord] = []
    lock = threading.Lock()

    with AuditBatcher(store, max_batch=50, max_delay_s=0.002) as batcher:

        def work(worker: int) -> None:
            futures = [batcher.submit(r) for r in make_records(100, start=worker * 1000)]
            done = [f.result(timeout=30) for f in futures]
            with lock:
                results.extend(done)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(r.seq for r in results) == list(range(1, 601))
    assert verify(store).ok


def test_arguments_are_checked(store: AuditStore) -> None:
    with pytest.raises(StoreError, match="max_batch"):
        AuditBatcher(store, max_batch=0)
    with pytest.raises(StoreError, match="max_delay_s"):
        AuditBatcher(store, max_delay_s=-1)


def test_commit_through_writes_the_queue_in_the_callers_thread(store: AuditStore) -> None:
    """A waiting caller commits its unit and everything queued before it, in order, in one
    transaction of its own thread — the writer thread (lingering) writes nothing."""
    threads: list[str] = []
    append_prepared = store.append_prepared

    def recording(items, also=()):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return append_prepared(items, also)

    store.append_prepared = recording  # type: ignore[method-assign]
    with AuditBatcher(store, max_batch=100, max_delay_s=SLOW) as batcher:
        queued = [batcher.submit_unit([r]) for r in make_records(3)]
        batcher.commit_through(queued[-1])
        assert all(f.done() for f in queued)
        assert [f.result()[0].seq for f in queued] == [1, 2, 3]
        assert threads == [threading.current_thread().name]
        batcher.commit_through(queued[0])  # already written: nothing to do
        assert len(threads) == 1
    assert verify(store).ok


def test_a_quiet_unit_commits_on_its_own_within_the_delay(store: AuditStore) -> None:
    """Quiet units (a START whose COMPLETE usually carries it) never wait for a carrier that
    does not come: from an idle writer, and from a polling one (quiet traffic just seen,
    so the writer is no longer woken per unit)."""
    with AuditBatcher(store, max_delay_s=0.05) as batcher:
        first = batcher.submit_unit([make_record(1)], quiet=True)  # writer asleep, untimed
        assert len(first.result(timeout=5)) == 1
        second = batcher.submit_unit([make_record(2)], quiet=True)  # writer polling now
        assert len(second.result(timeout=5)) == 1
    assert verify(store).ok and store.head().seq == 2


def test_a_quiet_unit_is_carried_by_the_next_waiting_caller(store: AuditStore) -> None:
    """The common case: no writer-thread commit at all, one transaction for both."""
    with AuditBatcher(store, max_delay_s=SLOW) as batcher:
        quiet = batcher.submit_unit([make_record(1)], quiet=True)
        waited = batcher.submit_unit([make_record(2)])
        batcher.commit_through(waited)
        assert quiet.done() and waited.done()
        assert quiet.result()[0].seq == 1 and waited.result()[0].seq == 2
