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

    def recording(items, also=(), *, synced=True):  # type: ignore[no-untyped-def]
        sizes.append(len(items))
        return append_prepared(items, also, synced=synced)

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

    def recording(items, also=(), **kwargs):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return append_prepared(items, also, **kwargs)

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


# -- commits that do not wait for the disk ---------------------------------------------------


def sqlite_file_store(sqlite_url: str) -> AuditStore:
    audit = AuditStore(make_engine(sqlite_url))
    audit.create_schema()
    return audit


def record_syncs(store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread of every ``store.sync()`` from now on."""
    threads: list[str] = []
    real = store.sync

    def syncing() -> None:
        threads.append(threading.current_thread().name)
        real()

    monkeypatch.setattr(store, "sync", syncing)
    return threads


def pragma(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.connection.dbapi_connection.execute(f"PRAGMA {name}").fetchone()[0])


def test_an_unsynced_commit_is_synced_by_the_writer_thread_soon_after(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``synced=False``: the caller's commit returns without an fsync; the writer thread
    syncs it within ``max_delay_s``, and the pooled connection is back to FULL."""
    store = sqlite_file_store(sqlite_url)
    syncs = record_syncs(store, monkeypatch)
    with AuditBatcher(store, max_batch=100, max_delay_s=0.02) as batcher:
        future = batcher.submit_unit([make_record(1)], synced=False)
        batcher.commit_through(future, synced=False)
        assert future.result()[0].seq == 1
        assert syncs == []  # the caller did not wait for the disk
        for _ in range(500):
            if syncs:
                break
            threading.Event().wait(0.01)
        assert syncs == [batcher._thread.name]
        assert pragma(store.engine, "synchronous") == 2  # FULL, as the pool handed it out
        assert pragma(store.engine, "wal_autocheckpoint") == 1000
    store.engine.dispose()


def test_a_waiter_that_needs_the_disk_syncs_what_was_committed_unsynced(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quiet unit committed without an fsync, then waited for with ``synced=True`` (a
    denial): the wait returns only after a sync; flush() and close() sync too."""
    store = sqlite_file_store(sqlite_url)
    syncs = record_syncs(store, monkeypatch)
    with AuditBatcher(store, max_batch=100, max_delay_s=SLOW) as batcher:
        future = batcher.submit_unit([make_record(2)], quiet=True, synced=False)
        batcher.commit_through(future)
        assert syncs == ["MainThread"]
        batcher.commit_through(future)  # committed and synced already: nothing more
        assert syncs == ["MainThread"]
        batcher.submit_unit([make_record(3)], synced=False)
        batcher.flush()
        assert syncs == ["MainThread"] * 2
        closing = batcher.submit_unit([make_record(4)], synced=False)
    assert closing.done() and syncs == ["MainThread"] * 3  # close() synced the last one
    store.engine.dispose()


def test_a_synced_commit_covers_the_unsynced_ones_before_it(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One fsync of the log makes every earlier commit durable: no separate sync."""
    store = sqlite_file_store(sqlite_url)
    syncs = record_syncs(store, monkeypatch)
    with AuditBatcher(store, max_batch=100, max_delay_s=SLOW) as batcher:
        first = batcher.submit_unit([make_record(5)], synced=False)
        batcher.commit_through(first, synced=False)
        second = batcher.submit_unit([make_record(6)])
        batcher.commit_through(second)
        batcher.flush()
    assert syncs == []
    assert store.count() == 2
    store.engine.dispose()


def test_unsynced_commits_leave_checkpoints_to_sync(sqlite_url: str) -> None:
    """Commits made without waiting for the disk never checkpoint inside the commit (SQLite
    would every 1,000 pages of log): the database file stays as it was while the log
    grows past that; the next sync() checkpoints it into the database file."""
    import os

    store = sqlite_file_store(sqlite_url)
    database = sqlite_url.split("///", 1)[1]
    size = os.path.getsize(database)
    for record in make_records(400):
        store.append_prepared([store.prepare(record)], synced=False)
    assert os.path.getsize(f"{database}-wal") > 1000 * 4096  # past the automatic threshold
    assert os.path.getsize(database) == size  # ... and yet nothing was checkpointed
    store.sync()
    assert os.path.getsize(database) > size  # the records are in the database file now
    assert store.count() == 400
    assert verify(store).ok
    store.engine.dispose()


def test_the_writer_syncs_without_taking_queued_units_along(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync of a step's commit happens while the next step's START and gate wait in the
    queue for their COMPLETE: the writer syncs and leaves them there (committing them would
    make that COMPLETE wait for the writer's transaction)."""
    store = sqlite_file_store(sqlite_url)
    syncs = record_syncs(store, monkeypatch)
    with AuditBatcher(store, max_batch=100, max_delay_s=SLOW, sync_delay_s=0.01) as batcher:
        first = batcher.submit_unit([make_record(10)], synced=False)
        batcher.commit_through(first, synced=False)
        start = batcher.submit_unit([make_record(11)], quiet=True, synced=False)
        for _ in range(500):
            if syncs:
                break
            threading.Event().wait(0.01)
        assert syncs == [batcher._thread.name]
        threading.Event().wait(0.05)
        assert not start.done()  # still queued for its carrier
        complete = batcher.submit_unit([make_record(12)], synced=False)
        batcher.commit_through(complete, synced=False)
        assert [r.seq for r in start.result() + complete.result()] == [2, 3]
    store.engine.dispose()
