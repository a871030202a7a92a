"""Group commit for audit appends: many callers, one transaction per batch.

One committed transaction costs about as much for one record as for a thousand, so callers
``submit`` records and get a future; a background thread gathers whatever arrived within
``max_delay_s`` (at most ``max_batch``) and appends it with one ``append_many``. A future
resolves only after its batch committed, so the acknowledgement still means "durable". When a
batch fails, every future of that batch carries the error; nothing is dropped silently.

A caller may also submit a *unit*: several records plus writes of its own (the catalog rows an
event changed) that must commit in the same transaction as the records — the governor's path,
where one commit makes an event's audit trail and its catalog changes durable together.

>>> import tempfile
>>> from lacuna_orchestration.db import make_engine
>>> from lacuna_orchestration.audit.store import AuditStore
>>> folder = tempfile.TemporaryDirectory()
>>> store = AuditStore(make_engine(f"sqlite:///{folder.name}/audit.db"))
>>> store.create_schema()
>>> with AuditBatcher(store) as batcher:
...     future = batcher.submit(AuditRecord("ana", "gate", "wh::orders"))
>>> future.result().seq
1
>>> store.engine.dispose(); folder.cleanup()
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from lacuna_orchestration.audit.chain import SealedRecord
from lacuna_orchestration.audit.store import AuditStore, TransactionStep
from lacuna_orchestration.errors import StoreError
from lacuna_orchestration.model import AuditRecord

__all__ = ["AuditBatcher"]

#: How long after the last quiet unit the idle writer keeps polling instead of sleeping
#: until notified.
QUIET_WINDOW_S = 2.0


@dataclass(slots=True)
class _Unit:
    """What one caller submitted: records and writes that commit together, and its future."""

    records: list[SealedRecord]
    steps: list[TransactionStep]
    single: bool = False  # submit(): the future gives the one record, not a list
    future: Future[Any] = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)
    eager: bool = False  # commit as soon as the writer is free (an async caller awaits it)
    synced: bool = True  # acknowledged only once on disk (see submit_unit)


class AuditBatcher:
    """Batches ``submit``-ted records into one-transaction appends on one writer thread.

    Use it as a context manager, or call :meth:`close`; an open batcher is also drained when
    the interpreter exits.
    """

    def __init__(
        self,
        store: AuditStore,
        max_batch: int = 1000,
        max_delay_s: float = 0.005,
        *,
        sync_delay_s: float | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ):
        if max_batch < 1:
            raise StoreError(f"max_batch must be at least 1, got {max_batch}")
        if max_delay_s < 0:
            raise StoreError(f"max_delay_s cannot be negative, got {max_delay_s}")
        if sync_delay_s is not None and sync_delay_s < 0:
            raise StoreError(f"sync_delay_s cannot be negative, got {sync_delay_s}")
        self.store = store
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        # how soon a commit made without waiting for the disk is synced (see submit_unit)
        self.sync_delay_s = max_delay_s if sync_delay_s is None else sync_delay_s
        self.on_failure = on_failure  # run by the writer (thread or caller) after a failure
        self._write_lock = threading.Lock()  # one writer at a time: thread or commit_through
        self._pending: deque[_Unit] = deque()
        self._mutex = threading.Lock()
        self._has_work = threading.Condition(self._mutex)  # the writer waits here for records
        self._progress = threading.Condition(self._mutex)  # flush() waits here for commits
        self._closed = False
        self._urgent = 0  # flush() calls waiting: commit without waiting for more records
        self._eager = 0  # eager units queued: commit without waiting for more records
        self._submitted = 0  # records ever submitted
        self._settled = 0  # records whose batch finished (committed, failed or cancelled)
        self._failures: list[BaseException] = []
        self._idle = False  # the writer waits for a notify (no timeout): wake it for anything
        self._quiet_seen = float("-inf")  # when the last quiet unit was queued
        self._relaxed = 0  # commits made without waiting for the disk (see submit_unit)
        self._synced_through = 0  # how many of them a sync has covered since
        self._unsynced_since = 0.0  # when the oldest commit still to sync was made
        self._thread = threading.Thread(
            target=self._run, name=f"lacuna-audit-batcher-{store.tenant}", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def submit(self, record: AuditRecord) -> Future[AuditRecord]:
        """Queue ``record``; the future gives the linked record once its batch committed.

        A record that cannot be stored raises ``ValidationError`` here, in the caller's
        thread, rather than failing the batch it would have joined.
        """
        return self._queue(_Unit([self.store.prepare(record)], [], single=True))

    def submit_unit(
        self, records: Sequence[AuditRecord], steps: Sequence[TransactionStep] = (),
        *, quiet: bool = False, eager: bool = False, synced: bool = True,
    ) -> Future[list[AuditRecord]]:
        """Queue ``records`` and ``steps`` to commit in one transaction, in submission order
        with everything else; the future gives the linked records once committed.

        ``quiet``: the caller expects a later waiter (``commit_through``) to carry the unit —
        an orchestrator's START before its COMPLETE. While such traffic flows the writer
        polls every ``max_delay_s`` instead of being woken per unit: a wake-up makes the
        writer thread take the GIL right inside the submitting caller's hot path, which on
        a busy two-core machine stalled callers for milliseconds (p99). A quiet unit still
        commits within about ``max_delay_s`` when nobody carries it.

        ``eager``: the writer thread commits the unit as soon as it is free, with whatever
        else is queued by then, instead of lingering for more — for callers that await the
        future rather than carry the commit themselves (the async HTTP ingest): classic
        group commit, where the units that arrive during one commit form the next batch.

        ``synced=False``: the future resolves once the unit is committed, before the commit
        is on disk (``AuditStore.append_prepared``); the writer thread syncs it within
        ``sync_delay_s``, and :meth:`flush` and :meth:`close` before they return. A batch is
        committed synced when any of its units asks for it.

        Records are validated and encoded here (``ValidationError`` in the caller's thread).
        """
        unit = _Unit([self.store.prepare(r) for r in records], list(steps), eager=eager,
                     synced=synced)
        return self._queue(unit, quiet=quiet and not eager)

    def _queue(self, unit: _Unit, *, quiet: bool = False) -> Future[Any]:
        with self._mutex:
            if self._closed:
                raise StoreError("the audit batcher is closed; records can no longer be submitted")
            self._pending.append(unit)
            self._submitted += 1
            # Wake the writer only when it has something new to do: a first unit to start
            # a batch, or a full batch. (Waking it per record costs submitters dearly.) A
            # quiet unit wakes it only from an untimed sleep; a polling writer finds it.
            queued = len(self._pending)
            if unit.eager:
                self._eager += 1
                self._has_work.notify()
            elif quiet:
                self._quiet_seen = unit.queued_at
                if self._idle or queued == self.max_batch:
                    self._has_work.notify()
            elif queued == 1 or queued == self.max_batch:
                self._has_work.notify()
        return unit.future

    def fail_pending(self, err: BaseException) -> int:
        """Fail every unit queued and not yet taken by the writer; return how many.

        For a caller whose queued units were computed on state a failed batch invalidated
        (the governor's in-memory graph): they must not commit after their predecessor
        did not.
        """
        with self._mutex:
            failed = list(self._pending)
            self._pending.clear()
            self._eager = 0
            self._settled += len(failed)
            self._progress.notify_all()
        for unit in failed:
            if unit.future.set_running_or_notify_cancel():
                unit.future.set_exception(err)
        return len(failed)

    def flush(self) -> None:
        """Commit everything submitted so far, on disk, and wait for it.

        Raises ``StoreError`` if any batch failed since the previous flush (each failed
        record's future holds the error as well).
        """
        with self._mutex:
            target = self._submitted
            self._urgent += 1
            self._has_work.notify()
            try:
                while self._settled < target:
                    self._progress.wait()
            finally:
                self._urgent -= 1
        self._sync_now()
        with self._mutex:
            failures, self._failures = self._failures, []
        if failures:
            raise StoreError(
                f"{len(failures)} audit batch(es) failed since the last flush: {failures[0]}"
            ) from failures[0]

    def close(self) -> None:
        """Stop accepting records, commit everything queued, stop the thread."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._has_work.notify()
        self._thread.join()
        self._sync_now()
        atexit.unregister(self.close)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the writer thread --------------------------------------------------------------

    def commit_through(self, future: Future[Any], *, synced: bool = True) -> None:
        """Commit, in the caller's thread, everything queued up to and including the unit of
        ``future``, unless it is committed already; then return (``future`` is done) —
        with ``synced``, once that commit is on disk too (a unit queued with
        ``synced=False`` or a quiet one may have been committed without waiting for it).

        Leader/follower group commit for callers that wait anyway: the first waiter writes
        whatever is queued — its own unit and every unit queued before or with it, in queue
        order — while the others find theirs written. A single-threaded caller (an
        orchestrator's step: START and gate queued, COMPLETE waited for) thus commits its
        step in one transaction without handing work to the writer thread.
        """
        with self._write_lock:
            while not future.done():
                batch = self._take()
                if not batch:
                    break  # not queued here (closed, or taken by a failure): result() tells
                self._commit(batch)
        if synced:
            self._sync_now()

    def _run(self) -> None:
        committed = False
        while work := self._await_work(after_commit=committed):
            committed = False
            if work == "commit":
                with self._write_lock:  # queue order is write order: take only while writing
                    batch = self._take()
                    if batch:
                        self._commit(batch)
                        committed = True
            if self._sync_left() <= 0:
                self._sync()

    def _await_work(self, *, after_commit: bool) -> Literal["commit", "sync"] | None:
        """Wait until the oldest queued unit has waited ``max_delay_s`` for the batch to fill
        (or for a waiting caller to commit it itself): "commit"; until a commit made without
        waiting for the disk is due to be synced, ``sync_delay_s`` after it: "sync"; None
        once closed and drained.

        Units that queued up while the previous batch was committing have waited already:
        they go at once (classic group commit), without the delay. A sync takes nothing off
        the queue: what waits there is usually a step's START and gate, which its COMPLETE
        carries. With nothing queued the writer sleeps until notified — or, while quiet
        units arrived within the last ``QUIET_WINDOW_S``, polls every ``max_delay_s`` (quiet
        units do not wake it).
        """
        with self._mutex:
            if self._pending and after_commit:
                return "commit"
            while True:
                sync_left = self._sync_left()
                if sync_left <= 0 and not self._closed:  # close() syncs after the last batch
                    return "sync"
                if self._pending:
                    if (self._urgent or self._eager or self._closed
                            or len(self._pending) >= self.max_batch):
                        return "commit"
                    left = self._pending[0].queued_at + self.max_delay_s - time.monotonic()
                    if left <= 0:
                        return "commit"
                    self._has_work.wait(min(left, sync_left))
                elif self._closed:
                    return None
                elif time.monotonic() - self._quiet_seen < QUIET_WINDOW_S and self.max_delay_s:
                    self._has_work.wait(min(self.max_delay_s, sync_left))
                elif sync_left != float("inf"):
                    self._has_work.wait(sync_left)
                else:
                    self._idle = True
                    try:
                        self._has_work.wait()
                    finally:
                        self._idle = False

    # -- syncing commits made without waiting for the disk ----------------------------------

    def _committed(self, synced: bool) -> None:
        """Count a commit (under the write lock): a synced one's fsync of the log covers
        every commit made before it."""
        with self._mutex:
            if synced:
                self._synced_through = self._relaxed
                return
            if self._synced_through == self._relaxed:
                self._unsynced_since = time.monotonic()
                if self._idle:
                    self._has_work.notify()  # an untimed sleep would never sync it
            self._relaxed += 1

    def _sync_left(self) -> float:
        """Seconds until the oldest commit not on disk is due to be synced (inf: none)."""
        if self._synced_through == self._relaxed:
            return float("inf")
        return self._unsynced_since + self.sync_delay_s - time.monotonic()

    def _sync_now(self) -> None:
        with self._mutex:
            due = self._synced_through != self._relaxed
        if due:
            self._sync()

    def _sync(self) -> None:
        """fsync the store (no lock held: commits go on meanwhile; those made during the
        fsync stay due). A failure is reported by the next :meth:`flush`."""
        with self._mutex:
            through = self._relaxed
        try:
            self.store.sync()
        except StoreError as err:  # reported by flush()
            with self._mutex:
                self._failures.append(err)
        with self._mutex:
            self._synced_through = max(self._synced_through, through)
            if self._synced_through != self._relaxed:
                self._unsynced_since = time.monotonic()

    def _take(self) -> list[_Unit]:
        """The next batch off the queue: whole units, up to ``max_batch`` records."""
        with self._mutex:
            batch: list[_Unit] = []
            records = 0
            while self._pending and (not batch or records < self.max_batch):
                unit = self._pending.popleft()
                batch.append(unit)
                records += len(unit.records)
                self._eager -= unit.eager
            return batch

    def _commit(self, batch: list[_Unit]) -> None:
        try:
            self._write(batch)
        finally:
            with self._mutex:
                self._settled += len(batch)
                self._progress.notify_all()

    def _write(self, batch: list[_Unit]) -> None:
        # A future cancelled before its batch is written is left out, so the caller's
        # cancel() really means "not written".
        live = [u for u in batch if u.future.set_running_or_notify_cancel()]
        if not live:
            return
        synced = any(u.synced for u in live)
        try:
            linked = self.store.append_prepared(
                [item for u in live for item in u.records],
                [step for u in live for step in u.steps],
                synced=synced,
            )
            self._committed(synced)
        except BaseException as err:  # noqa: BLE001 - handed to every waiting caller
            with self._mutex:
                self._failures.append(err)
            try:
                if self.on_failure is not None:
                    # before any caller wakes up: it must find the owner's state handled
                    self.on_failure(err)
            finally:
                for unit in live:
                    unit.future.set_exception(err)
            return
        start = 0
        for unit in live:
            end = start + len(unit.records)
            unit.future.set_result(linked[start] if unit.single else linked[start:end])
            start = end
