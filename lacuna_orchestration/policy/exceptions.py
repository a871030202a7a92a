"""Time-boxed policy exceptions: a person asks, a steward approves for a while, time ends it.

The workflow of the seed's "Request exception" alternative::

    requested ──approve(steward, duration)──► approved ──(now ≥ valid_until)──► expired
        │                                        │
        └──deny(steward, reason)──► denied       └──revoke(steward, reason)──► revoked

* An approval is always bounded (``duration`` > 0, at most ``max_duration``) and never given by
  the requester to themself (four eyes).
* ``find_valid`` answers the gate's question — is there an approved, unexpired exception for
  this operation kind, these sources and this destination? — and never returns an expired one.
  Expiry is a fact of the clock, so reads report ``expired`` as soon as ``valid_until`` passes;
  ``expire_due`` also writes that status down and returns what changed.
* Every method takes an optional ``now`` so expiry is testable without sleeping.
* The registry records state, not history: each method returns the exception as it now is,
  and the governor audits the step in the hash chain.

Matching: ``sources`` of an exception are dataset keys or ``fnmatch`` patterns
(``warehouse::customers*``); every source of the operation must match one of them.
``destination`` is a key or pattern too; an empty one matches only an operation without a
destination.

>>> registry = ExceptionRegistry(make_engine("sqlite:///:memory:"))  # doctest: +SKIP
>>> registry.create_schema()  # doctest: +SKIP
>>> exc = registry.request(ExceptionRequest(operation_kind="export", sources=("file::/c.csv",),
...     destination="file::/tmp/*", purpose="audit sample", justification="regulator asked",
...     requested_by="alice"))  # doctest: +SKIP
>>> registry.approve(exc.id, "data-governance@example.com", timedelta(days=7)).status  # doctest: +SKIP
<ExceptionStatus.APPROVED: 'approved'>
"""

from __future__ import annotations

import builtins
import fnmatch
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Index,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.db import metadata, reading_once
from lacuna_orchestration.errors import NotFound, StoreError, ValidationError
from lacuna_orchestration.model import DatasetRef, Operation, OperationKind, utcnow

__all__ = [
    "ExceptionRegistry",
    "ExceptionRequest",
    "ExceptionStatus",
    "PolicyException",
    "exceptions_table",
]

DEFAULT_MAX_DURATION = timedelta(days=90)


class ExceptionStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    REVOKED = "revoked"


exceptions_table = Table(
    "lacuna_exceptions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("operation_kind", String(32), nullable=False),
    Column("sources", JSON, nullable=False),
    Column("destination", Text, nullable=False, default=""),
    Column("purpose", Text, nullable=False, default=""),
    Column("justification", Text, nullable=False),
    Column("requested_by", String(255), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("approver", String(255), nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=False, default=""),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("conditions", JSON, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=True),
    Column("valid_until", DateTime(timezone=True), nullable=True),
)
Index("ix_lacuna_exceptions_lookup", exceptions_table.c.status, exceptions_table.c.operation_kind)


def _key(value: DatasetRef | str) -> str:
    return value.key if isinstance(value, DatasetRef) else str(value)


def _now(moment: datetime | None) -> datetime:
    """The injectable clock, always in UTC: SQLite stores wall-clock time without an offset,
    so every value written or compared must share one zone."""
    if moment is None:
        return utcnow()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ExceptionRequest:
    """What a person asks for: this kind of operation, on these sources, to this place."""

    operation_kind: OperationKind | str
    sources: tuple[str, ...]
    justification: str
    requested_by: str
    destination: str = ""
    purpose: str = ""
    conditions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "operation_kind", OperationKind.parse(self.operation_kind))
        object.__setattr__(self, "sources", tuple(_key(s) for s in self.sources))
        object.__setattr__(self, "destination", _key(self.destination))
        object.__setattr__(self, "conditions", tuple(self.conditions))
        if not self.sources:
            raise ValidationError("an exception request must name at least one source")
        if not self.justification.strip():
            raise ValidationError("an exception request needs a justification")
        if not self.requested_by.strip():
            raise ValidationError("an exception request must say who asks (requested_by)")


@dataclass(frozen=True, slots=True)
class PolicyException:
    """An exception as stored, with its status as of the moment it was read."""

    id: str
    operation_kind: OperationKind
    sources: tuple[str, ...]
    destination: str
    purpose: str
    justification: str
    requested_by: str
    requested_at: datetime
    status: ExceptionStatus
    approver: str = ""
    status_reason: str = ""
    decided_at: datetime | None = None
    conditions: tuple[str, ...] = ()
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def covers(self, operation: Operation) -> bool:
        """Whether this exception's scope includes ``operation`` (status not considered)."""
        return self.matches(operation.kind, operation.sources, operation.destination)

    def matches(
        self,
        operation_kind: OperationKind | str,
        sources: Iterable[DatasetRef | str],
        destination: DatasetRef | str | None,
    ) -> bool:
        """Whether kind, sources and destination fall inside this exception's scope."""
        if OperationKind.parse(operation_kind) is not self.operation_kind:
            return False
        keys = [_key(s) for s in sources]
        if not keys or not all(
            any(fnmatch.fnmatchcase(k, pattern) for pattern in self.sources) for k in keys
        ):
            return False
        target = _key(destination) if destination is not None else ""
        if not self.destination:
            return not target
        return bool(target) and fnmatch.fnmatchcase(target, self.destination)

    def is_valid(self, now: datetime) -> bool:
        return (
            self.status is ExceptionStatus.APPROVED
            and self.valid_from is not None
            and self.valid_until is not None
            and self.valid_from <= now < self.valid_until
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for audit record details and the API."""

        def stamp(m: datetime | None) -> str | None:
            return m.isoformat() if m else None

        return {
            "id": self.id,
            "operation_kind": self.operation_kind.value,
            "sources": list(self.sources),
            "destination": self.destination,
            "purpose": self.purpose,
            "justification": self.justification,
            "requested_by": self.requested_by,
            "requested_at": stamp(self.requested_at),
            "status": self.status.value,
            "approver": self.approver,
            "status_reason": self.status_reason,
            "decided_at": stamp(self.decided_at),
            "conditions": list(self.conditions),
            "valid_from": stamp(self.valid_from),
            "valid_until": stamp(self.valid_until),
        }


@dataclass
class ExceptionRegistry:
    """Exceptions in the one store (``lacuna_exceptions`` on ``db.metadata``)."""

    engine: Engine
    max_duration: timedelta = DEFAULT_MAX_DURATION
    _table: Table = field(default=exceptions_table, init=False, repr=False)

    def create_schema(self) -> None:
        try:
            self._table.create(self.engine, checkfirst=True)
        except SQLAlchemyError as err:
            raise StoreError(f"cannot create table lacuna_exceptions: {_reason(err)}") from None

    # -- reading

    def _row_to_exception(self, row: Any, now: datetime) -> PolicyException:
        status = ExceptionStatus(row.status)
        valid_until = _aware(row.valid_until)
        if status is ExceptionStatus.APPROVED and valid_until is not None and now >= valid_until:
            status = ExceptionStatus.EXPIRED
        return PolicyException(
            id=row.id,
            operation_kind=OperationKind.parse(row.operation_kind),
            sources=tuple(row.sources),
            destination=row.destination,
            purpose=row.purpose,
            justification=row.justification,
            requested_by=row.requested_by,
            requested_at=_aware(row.requested_at) or now,
            status=status,
            approver=row.approver,
            status_reason=row.status_reason,
            decided_at=_aware(row.decided_at),
            conditions=tuple(row.conditions or ()),
            valid_from=_aware(row.valid_from),
            valid_until=valid_until,
        )

    def get(self, exception_id: str, *, now: datetime | None = None) -> PolicyException:
        now = _now(now)
        try:
            with reading_once(self.engine) as conn:
                row = conn.execute(
                    select(self._table).where(self._table.c.id == exception_id)
                ).first()
        except SQLAlchemyError as err:
            raise StoreError(f"cannot read exception {exception_id}: {_reason(err)}") from None
        if row is None:
            raise NotFound(f"no policy exception {exception_id!r}")
        return self._row_to_exception(row, now)

    def list(
        self,
        *,
        status: ExceptionStatus | str | None = None,
        requested_by: str | None = None,
        now: datetime | None = None,
    ) -> builtins.list[PolicyException]:
        """Exceptions, newest request first, with their status as of ``now`` (an approved one
        past its end is listed as ``expired``, and filtering by status sees it that way)."""
        now = _now(now)
        wanted = ExceptionStatus(status) if status is not None else None
        query = select(self._table).order_by(self._table.c.requested_at.desc())
        if requested_by is not None:
            query = query.where(self._table.c.requested_by == requested_by)
        if wanted in (ExceptionStatus.APPROVED, ExceptionStatus.EXPIRED):
            query = query.where(self._table.c.status.in_(["approved", "expired"]))
        elif wanted is not None:
            query = query.where(self._table.c.status == wanted.value)
        try:
            with reading_once(self.engine) as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as err:
            raise StoreError(f"cannot list exceptions: {_reason(err)}") from None
        found = [self._row_to_exception(r, now) for r in rows]
        return [e for e in found if wanted is None or e.status is wanted]

    def find_valid(
        self,
        operation_kind: OperationKind | str,
        sources: Sequence[DatasetRef | str],
        destination: DatasetRef | str | None,
        now: datetime | None = None,
    ) -> PolicyException | None:
        """The approved, unexpired exception covering the operation (the one ending last when
        several do), or ``None``."""
        now = _now(now)
        kind = OperationKind.parse(operation_kind)
        query = select(self._table).where(
            self._table.c.status == ExceptionStatus.APPROVED.value,
            self._table.c.operation_kind == kind.value,
            self._table.c.valid_until > now,
        )
        try:
            with reading_once(self.engine) as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as err:
            raise StoreError(f"cannot look up exceptions: {_reason(err)}") from None
        candidates = [
            e
            for e in (self._row_to_exception(r, now) for r in rows)
            if e.is_valid(now) and e.matches(kind, sources, destination)
        ]
        return max(candidates, key=lambda e: e.valid_until or now, default=None)

    # -- writing

    def request(
        self, req: ExceptionRequest | None = None, *, now: datetime | None = None, **fields: Any
    ) -> PolicyException:
        """Store a request (an ``ExceptionRequest`` or its fields as keywords) as ``requested``."""
        if req is None:
            req = ExceptionRequest(**fields)
        elif fields:
            raise ValidationError("pass an ExceptionRequest or its fields, not both")
        now = _now(now)
        exception_id = f"EXC-{uuid.uuid4().hex[:12].upper()}"
        values = {
            "id": exception_id,
            "operation_kind": OperationKind.parse(req.operation_kind).value,
            "sources": list(req.sources),
            "destination": str(req.destination),
            "purpose": req.purpose,
            "justification": req.justification,
            "requested_by": req.requested_by,
            "requested_at": now,
            "approver": "",
            "status": ExceptionStatus.REQUESTED.value,
            "status_reason": "",
            "conditions": list(req.conditions),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(self._table).values(**values))
        except SQLAlchemyError as err:
            raise StoreError(f"cannot store exception request: {_reason(err)}") from None
        return self.get(exception_id, now=now)

    def _transition(
        self,
        exception_id: str,
        *,
        expected: ExceptionStatus,
        changes: dict[str, Any],
        now: datetime,
        verb: str,
    ) -> PolicyException:
        """Move one exception from ``expected`` to a new status atomically: the UPDATE only
        matches while the row still has the expected status, so two stewards acting at once
        cannot both succeed."""
        current = self.get(exception_id, now=now)
        if current.status is not expected:
            raise ValidationError(
                f"cannot {verb} exception {exception_id}: it is {current.status.value}, "
                f"not {expected.value}"
            )
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(self._table)
                    .where(
                        self._table.c.id == exception_id,
                        self._table.c.status == expected.value,
                    )
                    .values(**changes)
                )
        except SQLAlchemyError as err:
            raise StoreError(f"cannot {verb} exception {exception_id}: {_reason(err)}") from None
        if result.rowcount != 1:
            raise ValidationError(
                f"cannot {verb} exception {exception_id}: it changed while being decided"
            )
        return self.get(exception_id, now=now)

    def approve(
        self,
        exception_id: str,
        steward: str,
        duration: timedelta,
        *,
        conditions: Iterable[str] | None = None,
        now: datetime | None = None,
    ) -> PolicyException:
        """Approve from now for ``duration`` (bounded by ``max_duration``)."""
        now = _now(now)
        if duration <= timedelta(0):
            raise ValidationError("an exception must be approved for a positive duration")
        if duration > self.max_duration:
            raise ValidationError(
                f"an exception may last at most {self.max_duration.days} days, "
                f"asked for {duration.days}"
            )
        current = self.get(exception_id, now=now)
        if not steward.strip():
            raise ValidationError("approving an exception needs the steward's name")
        if steward == current.requested_by:
            raise ValidationError(
                f"{steward} requested exception {exception_id} and cannot approve it"
            )
        changes: dict[str, Any] = {
            "status": ExceptionStatus.APPROVED.value,
            "approver": steward,
            "decided_at": now,
            "valid_from": now,
            "valid_until": now + duration,
        }
        if conditions is not None:
            changes["conditions"] = [*current.conditions, *conditions]
        return self._transition(
            exception_id,
            expected=ExceptionStatus.REQUESTED,
            changes=changes,
            now=now,
            verb="approve",
        )

    def deny(
        self, exception_id: str, steward: str, reason: str, *, now: datetime | None = None
    ) -> PolicyException:
        now = _now(now)
        if not reason.strip():
            raise ValidationError("denying an exception needs a reason for the requester")
        return self._transition(
            exception_id,
            expected=ExceptionStatus.REQUESTED,
            changes={
                "status": ExceptionStatus.DENIED.value,
                "approver": steward,
                "status_reason": reason,
                "decided_at": now,
            },
            now=now,
            verb="deny",
        )

    def revoke(
        self, exception_id: str, steward: str, reason: str, *, now: datetime | None = None
    ) -> PolicyException:
        """End an approved exception before its time."""
        now = _now(now)
        if not reason.strip():
            raise ValidationError("revoking an exception needs a reason")
        return self._transition(
            exception_id,
            expected=ExceptionStatus.APPROVED,
            changes={
                "status": ExceptionStatus.REVOKED.value,
                "status_reason": f"revoked by {steward}: {reason}",
                "valid_until": now,
            },
            now=now,
            verb="revoke",
        )

    def expire_due(self, *, now: datetime | None = None) -> builtins.list[PolicyException]:
        """Write ``expired`` on approved exceptions whose time is up; return them."""
        now = _now(now)
        table = self._table
        try:
            with self.engine.begin() as conn:
                ids = [
                    r.id
                    for r in conn.execute(
                        select(table.c.id).where(
                            table.c.status == ExceptionStatus.APPROVED.value,
                            table.c.valid_until <= now,
                        )
                    )
                ]
                if ids:
                    conn.execute(
                        update(table)
                        .where(
                            table.c.id.in_(ids), table.c.status == ExceptionStatus.APPROVED.value
                        )
                        .values(status=ExceptionStatus.EXPIRED.value, status_reason="time is up")
                    )
        except SQLAlchemyError as err:
            raise StoreError(f"cannot expire exceptions: {_reason(err)}") from None
        return [self.get(i, now=now) for i in ids]


def _reason(err: SQLAlchemyError) -> str:
    text = str(getattr(err, "orig", err)).strip()
    return text.splitlines()[0] if text else type(err).__name__
