"""Recompute every link of a tenant's audit chain and name the first record that breaks it.

Walking in ``seq`` order, each row must be the next number, be covered by the head row, hash
to its stored ``hash``, and carry its predecessor's hash as ``prev_hash``; at the end the head
row must agree with the last record. The first rule that fails names the first bad record:

========================================  ===============================================
tampering                                 what verification reports
========================================  ===============================================
a field changed (any, ``hash`` included)  that record: its content does not hash to ``hash``
a record deleted                          its ``seq``: missing (gap)
two records swapped                       the lower ``seq`` of the two: content mismatch
a forged record appended                  its ``seq``: beyond the head row
the tail truncated                        the first removed ``seq``: head says more
a record rewritten *and* re-hashed        the next record: ``prev_hash`` no longer links
========================================  ===============================================

Rows are streamed from one snapshot (:meth:`AuditStore.scan`) and hashed from the stored JSON
text as is, so verification neither blocks writers nor re-parses the free-form fields.

A tail truncated *together with* a head row moved back to match, or history rewritten and
re-hashed to the end, leaves a valid chain: ``verify(store, checkpoints=log)`` also holds the
chain against signed checkpoints kept outside the database (:mod:`.checkpoints`).

>>> from lacuna_orchestration.db import make_engine
>>> from lacuna_orchestration.audit.store import AuditStore
>>> store = AuditStore(make_engine("sqlite:///:memory:"))
>>> store.create_schema()
>>> from lacuna_orchestration.model import AuditRecord
>>> _ = store.append(AuditRecord("ana", "gate", "wh::orders"))
>>> verify(store).ok
True
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
from collections.abc import Iterable, Sequence
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from lacuna_orchestration.audit.chain import GENESIS_HASH, ChainHead
from lacuna_orchestration.audit.store import (
    AUDIT_COLUMNS,
    AuditStore,
    ChainScan,
    ScanSource,
    read_range,
)
from lacuna_orchestration.errors import AuditIntegrityError, StoreError

if TYPE_CHECKING:
    from lacuna_orchestration.audit.checkpoints import CheckpointLog

__all__ = ["VerifyReport", "verify", "verify_after", "verify_rows"]


_SPLIT = ',"details":'
"""The only place two stored texts meet in a body (``"decision":D,"details":E``); see
:func:`verify_rows`."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of one verification.

    ``count`` is how many records verified before the first problem (all of them when
    ``ok``); ``head_hash`` is the hash of the last of those. ``first_bad_record_id`` is
    ``None`` when the bad position holds no record (a deleted one).

    With checkpoints: ``checkpoints`` is how many signed checkpoints checked out,
    ``checkpoint_seq`` the ``seq`` the latest of them attests (``None``: no checkpoint), and
    ``checkpoint_problem`` what is wrong with the checkpoint log itself (a bad signature, a
    removed line); such a problem fails the report even when every record verifies.
    """

    ok: bool
    count: int
    head_hash: str
    first_bad_seq: int | None = None
    first_bad_record_id: str | None = None
    problem: str = ""
    tenant: str = "default"
    checkpoints: int = 0
    checkpoint_seq: int | None = None
    checkpoint_problem: str = ""

    @property
    def message(self) -> str:
        """One line for a terminal or a log."""
        if self.ok:
            text = (
                f"audit chain {self.tenant!r} verified: {self.count:,} records, "
                f"head {self.head_hash[:16]}"
            )
            if self.checkpoint_seq is not None:
                text += (
                    f"; {self.checkpoints:,} signed checkpoint(s) agree, the latest at seq "
                    f"{self.checkpoint_seq:,}"
                )
            return text
        if not self.problem:  # every record verifies; the checkpoint log does not
            return (
                f"audit chain {self.tenant!r}: {self.count:,} records verify, but the "
                f"checkpoint log is not intact: {self.checkpoint_problem}"
            )
        where = f"seq {self.first_bad_seq}"
        if self.first_bad_record_id:
            where += f" (record {self.first_bad_record_id})"
        text = (
            f"audit chain {self.tenant!r} is broken at {where}: {self.problem}; "
            f"{self.count:,} records before it verify"
        )
        if self.checkpoint_problem:
            text += f"; the checkpoint log is not intact either: {self.checkpoint_problem}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``message`` included)."""
        return {
            "ok": self.ok,
            "tenant": self.tenant,
            "count": self.count,
            "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq,
            "first_bad_record_id": self.first_bad_record_id,
            "problem": self.problem,
            "checkpoints": self.checkpoints,
            "checkpoint_seq": self.checkpoint_seq,
            "checkpoint_problem": self.checkpoint_problem,
            "message": self.message,
        }

    def raise_if_broken(self) -> None:
        """Raise ``AuditIntegrityError`` carrying the first bad seq and record id."""
        if not self.ok:
            raise AuditIntegrityError(
                self.message, seq=self.first_bad_seq, record_id=self.first_bad_record_id
            )


def verify(
    store: AuditStore,
    *,
    workers: int = 1,
    min_per_worker: int = 10_000,
    checkpoints: CheckpointLog | None = None,
) -> VerifyReport:
    """Verify ``store``'s chain from one consistent snapshot; never raises for a broken
    chain (read the report), only ``StoreError`` when the database cannot be read.

    ``checkpoints``: also hold the chain against that signed checkpoint log (same snapshot),
    which catches a truncated tail whose head row was moved back and history rewritten and
    re-hashed to the end (see :mod:`.checkpoints`).

    ``workers > 1`` hashes contiguous ranges in that many processes and stitches them at
    their boundaries; the report is the same as a sequential walk's. Worth it for large
    chains on several cores (each process costs ~0.5 s to start), so fewer workers are used
    when there are fewer than ``min_per_worker`` records each; an in-memory SQLite database
    is always walked in this process. Workers are spawned, so the calling program's main
    module must be safe to import (the usual ``if __name__ == "__main__":`` guard).
    """
    with store.scan() as snapshot:
        head = snapshot.head
        total = head.seq if head is not None else 0
        workers = min(workers, total // max(min_per_worker, 1))
        source = snapshot.source(store.engine) if workers > 1 else None
        if source is None or head is None:
            report = verify_rows(snapshot.rows(), head, tenant=store.tenant)
        else:
            report = _verify_parallel(snapshot, source, head, workers, store.database)
        if checkpoints is not None:
            report = checkpoints.check(snapshot, report)
        return report


def verify_after(snapshot: ChainScan, after: ChainHead, *, tenant: str) -> VerifyReport:
    """Verify only what was appended after ``after`` (a head verified earlier, e.g. the
    latest signed checkpoint): the record at ``after.seq`` must still carry ``after.hash``,
    then every later record must link on from it up to the head row. What a checkpoint
    writer checks before it signs; ``count`` in the report includes the trusted prefix.
    """
    head = snapshot.head
    if after.seq > 0:
        row = next(iter(snapshot.rows(first_seq=after.seq, last_seq=after.seq)), None)
        snapshot.close()
        record_id = None if row is None else row[AUDIT_COLUMNS.index("record_id")]
        if row is None or row[AUDIT_COLUMNS.index("hash")] != after.hash:
            problem = "it is missing" if row is None else "its hash is not the one last attested"
            return VerifyReport(
                False, after.seq - 1, GENESIS_HASH, after.seq, record_id,
                f"{problem} (history was rewritten or removed)", tenant,
            )  # fmt: skip
    start = _Walk(expected=after.seq + 1, prev=after.hash)
    return verify_rows(snapshot.rows(first_seq=after.seq + 1), head, tenant=tenant, start=start)


@dataclass(frozen=True, slots=True)
class _Walk:
    """Where a walk stands: the next expected seq, the last two hashes, the last record id."""

    expected: int = 1
    prev: str = GENESIS_HASH
    before_last: str = GENESIS_HASH
    last_id: str | None = None


def verify_rows(
    rows: Iterable[Sequence[Any]],
    head: ChainHead | None,
    *,
    tenant: str = "default",
    start: _Walk | None = None,
) -> VerifyReport:
    """Verify raw rows (``AUDIT_COLUMNS`` order, ascending ``seq``) against a head row.

    ``head`` is ``None`` when the database has no head row for the tenant. ``start`` resumes
    a walk whose earlier records were verified elsewhere (parallel verification).
    """
    report, end = _walk(rows, head, tenant, start or _Walk())
    return report if report is not None else _finish(end, head, tenant)


def _walk(
    rows: Iterable[Sequence[Any]], head: ChainHead | None, tenant: str, start: _Walk
) -> tuple[VerifyReport | None, _Walk]:
    """Check rows one by one; the first problem ends the walk with a report."""
    limit = head.seq if head is not None else 0
    expected, prev, before_last, last_id = (
        start.expected, start.prev, start.before_last, start.last_id
    )  # fmt: skip
    sha256 = hashlib.sha256
    dumps = orjson.dumps
    fragment = orjson.Fragment
    sort = orjson.OPT_SORT_KEYS

    def broken(seq: int, record_id: str | None, problem: str) -> tuple[VerifyReport, _Walk]:
        report = VerifyReport(False, expected - 1, prev, seq, record_id, problem, tenant)
        return report, _Walk(expected, prev, before_last, last_id)

    for (
        row_tenant, raw_seq, record_id, timestamp, actor, action, resource, reason, via, run_id,
        decision, details, prev_hash, stored_hash,
    ) in rows:  # fmt: skip
        seq = int(raw_seq)
        if seq != expected:
            if seq > expected:
                return broken(
                    expected,
                    None,
                    f"record {expected} is missing: the chain goes from {expected - 1} to {seq}",
                )
            return broken(seq, record_id, f"record has seq {seq} where seq {expected} was expected")
        if seq > limit:
            if head is None:
                problem = "there is no head row, so no record is acknowledged"
            else:
                problem = f"record is beyond the head row, which ends the chain at {limit}"
            return broken(seq, record_id, problem)
        body = dumps(
            {
                "action": action,
                "actor": actor,
                "decision": None if decision is None else fragment(decision),
                "details": fragment(details),
                "prev_hash": prev_hash,
                "reason": reason,
                "record_id": record_id,
                "resource": resource,
                "run_id": run_id,
                "seq": seq,
                "tenant": row_tenant,
                "timestamp": timestamp,
                "via": via,
            },
            option=sort,
        )
        if sha256(body).hexdigest() != stored_hash:
            return broken(seq, record_id, "its content does not match its hash (altered)")
        # The stored texts are spliced in unparsed. Text moved across the boundary between them
        # would rebuild the same bytes; each being one whole JSON value rules that out.
        if (
            decision is not None
            and (_SPLIT in decision or _SPLIT in details)
            and not (_is_json_text(decision) and _is_json_text(details))
        ):
            return broken(seq, record_id, "its decision/details text was rearranged (altered)")
        if prev_hash != prev:
            return broken(
                seq,
                record_id,
                f"its prev_hash is not the hash of record {seq - 1} "
                "(a record before it was rewritten, or it was moved)",
            )
        before_last = prev
        prev = stored_hash
        last_id = record_id
        expected += 1
    return None, _Walk(expected, prev, before_last, last_id)


def _finish(end: _Walk, head: ChainHead | None, tenant: str) -> VerifyReport:
    """Every row linked: the head row must now agree with the last one."""
    count = end.expected - 1
    if head is not None and head.seq > count:
        return VerifyReport(
            False,
            count,
            end.prev,
            count + 1,
            None,
            f"the head row says the chain ends at {head.seq} but the table ends at {count} "
            f"(records {count + 1}..{head.seq} were removed)",
            tenant,
        )
    if head is not None and head.hash != end.prev:
        # Every link holds, so either the head row or the last record (which has no successor
        # to give it away) was rewritten: name the record.
        return VerifyReport(
            False,
            count - 1,
            end.before_last,
            count,
            end.last_id,
            "the head row's hash is not this record's hash (it or the head row was rewritten)",
            tenant,
        )
    return VerifyReport(True, count, end.prev, tenant=tenant)


# -- parallel verification ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RangeResult:
    """What a worker learnt about records ``first..last``: whether they are all present and
    link to each other, the ``prev_hash`` the first one expects, and the end of the walk."""

    intact: bool
    entry_prev: str
    end: _Walk


def _verify_parallel(
    snapshot: ChainScan, source: ScanSource, head: ChainHead, workers: int, database: str
) -> VerifyReport:
    """Hash ranges ``1..head.seq`` in worker processes, then stitch them in order.

    Records up to the head are immutable once the head row shows them, so workers may read
    them from snapshots of their own. Wherever a range is not intact or does not link to the
    range before it, this process resumes a plain walk from that range's first record in its
    own snapshot, so the report is exactly the sequential one. Rows numbered below 1 or above
    the head are likewise left to the plain walk.
    """
    tenant = source.tenant
    if next(snapshot.rows(last_seq=0), None) is not None:  # comes first in seq order
        return verify_rows(snapshot.rows(), head, tenant=tenant)
    size = -(-head.seq // workers)
    ranges = [(a, min(a + size - 1, head.seq)) for a in range(1, head.seq + 1, size)]
    try:
        with _executor(len(ranges)) as pool:
            results = list(
                pool.map(_verify_range, [source] * len(ranges), ranges, [head] * len(ranges))
            )
    except BrokenExecutor as err:
        raise StoreError(
            f"audit store {database}: cannot verify in parallel: a worker process died ({err})"
        ) from err
    state = _Walk()
    for (first, _), result in zip(ranges, results, strict=True):
        if not result.intact or result.entry_prev != state.prev:
            return verify_rows(snapshot.rows(first_seq=first), head, tenant=tenant, start=state)
        state = result.end
    # Past the head: normally nothing, then the head row's own check.
    return verify_rows(snapshot.rows(first_seq=head.seq + 1), head, tenant=tenant, start=state)


def _executor(workers: int) -> Executor:
    """Worker processes, spawned: forking a process that holds connections is unsafe."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _verify_range(source: ScanSource, bounds: tuple[int, int], head: ChainHead) -> _RangeResult:
    """Worker process: walk records ``first..last`` trusting only the first one's
    ``prev_hash`` (the parent checks it against the previous range)."""
    first, last = bounds
    rows = read_range(source, first, last)
    try:
        row = next(rows, None)
        if row is None:
            return _RangeResult(False, "", _Walk(first))
        entry_prev = row[AUDIT_COLUMNS.index("prev_hash")]
        report, end = _walk(
            itertools.chain([row], rows), head, source.tenant, _Walk(first, entry_prev)
        )
    finally:
        rows.close()
    return _RangeResult(report is None and end.expected == last + 1, entry_prev, end)


def _is_json_text(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True
