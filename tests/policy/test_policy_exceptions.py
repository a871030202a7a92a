"""Time-boxed exceptions on SQLite and PostgreSQL: request, approve, deny, revoke, expire —
with an injected clock instead of sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine

from lacuna_orchestration.db import make_engine
from lacuna_orchestration.errors import NotFound, ValidationError
from lacuna_orchestration.model import DatasetRef, Operation, OperationKind
from lacuna_orchestration.policy.exceptions import (
    ExceptionRegistry,
    ExceptionRequest,
    ExceptionStatus,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STEWARD = "data-governance@example.com"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(sqlite_url)
        yield engine
        engine.dispose()
    else:
        yield request.getfixturevalue("pg_engine")


@pytest.fixture()
def registry(store: Engine) -> ExceptionRegistry:
    reg = ExceptionRegistry(store)
    reg.create_schema()
    reg.create_schema()  # idempotent
    return reg


def _request(**overrides: object) -> ExceptionRequest:
    fields: dict[str, object] = {
        "operation_kind": "export",
        "sources": ("file::/data/customers.csv", "file::/data/sales*"),
        "destination": "file::/tmp/*",
        "purpose": "regulator sample",
        "justification": "the auditor asked for a sample of Q1",
        "requested_by": "alice",
        "conditions": ("delete after upload",),
    }
    fields.update(overrides)
    return ExceptionRequest(**fields)  # type: ignore[arg-type]


def test_lifecycle_request_approve_use_expire(registry: ExceptionRegistry) -> None:
    exc = registry.request(_request(), now=T0)
    assert exc.status is ExceptionStatus.REQUESTED
    assert exc.id.startswith("EXC-")
    assert exc.requested_at == T0
    sources = ["file::/data/customers.csv", "file::/data/sales_2026.csv"]
    assert registry.find_valid("export", sources, "file::/tmp/q1.csv", now=T0) is None

    approved = registry.approve(exc.id, STEWARD, timedelta(days=7), now=T0 + timedelta(hours=1))
    assert approved.status is ExceptionStatus.APPROVED
    assert approved.approver == STEWARD
    assert approved.valid_from == T0 + timedelta(hours=1)
    assert approved.valid_until == T0 + timedelta(days=7, hours=1)
    assert approved.conditions == ("delete after upload",)

    during = T0 + timedelta(days=3)
    found = registry.find_valid("export", sources, "file::/tmp/q1.csv", now=during)
    assert found is not None and found.id == exc.id
    # outside the scope: another kind, a source not covered, another destination
    assert registry.find_valid("join", sources, "file::/tmp/q1.csv", now=during) is None
    assert (
        registry.find_valid("export", [*sources, "file::/data/hr.csv"], "file::/tmp/q", now=during)
        is None
    )
    assert registry.find_valid("export", sources, "s3://x::q1.csv", now=during) is None

    after = T0 + timedelta(days=7, hours=1)  # valid_until is exclusive
    assert registry.find_valid("export", sources, "file::/tmp/q1.csv", now=after) is None
    assert registry.get(exc.id, now=after).status is ExceptionStatus.EXPIRED
    assert [e.id for e in registry.list(status="expired", now=after)] == [exc.id]
    assert registry.list(status="approved", now=after) == []

    expired = registry.expire_due(now=after)
    assert [(e.id, e.status) for e in expired] == [(exc.id, ExceptionStatus.EXPIRED)]
    assert registry.expire_due(now=after) == []  # nothing left to change
    assert registry.get(exc.id, now=T0).status is ExceptionStatus.EXPIRED  # written down


def test_deny_and_revoke(registry: ExceptionRegistry) -> None:
    denied = registry.deny(
        registry.request(_request(), now=T0).id, STEWARD, "use the anonymized extract", now=T0
    )
    assert denied.status is ExceptionStatus.DENIED
    assert denied.status_reason == "use the anonymized extract"
    with pytest.raises(ValidationError, match="it is denied, not requested"):
        registry.approve(denied.id, STEWARD, timedelta(days=1), now=T0)

    exc = registry.approve(
        registry.request(_request(), now=T0).id, STEWARD, timedelta(days=30), now=T0
    )
    revoked = registry.revoke(exc.id, STEWARD, "auditor is done", now=T0 + timedelta(days=2))
    assert revoked.status is ExceptionStatus.REVOKED
    assert revoked.valid_until == T0 + timedelta(days=2)
    assert "auditor is done" in revoked.status_reason
    assert (
        registry.find_valid(
            "export", ["file::/data/customers.csv"], "file::/tmp/x", now=T0 + timedelta(days=3)
        )
        is None
    )
    with pytest.raises(ValidationError, match="it is revoked, not approved"):
        registry.revoke(exc.id, STEWARD, "again", now=T0 + timedelta(days=3))


def test_approvals_are_bounded_and_four_eyes(registry: ExceptionRegistry) -> None:
    exc = registry.request(_request(), now=T0)
    with pytest.raises(ValidationError, match="positive duration"):
        registry.approve(exc.id, STEWARD, timedelta(0), now=T0)
    with pytest.raises(ValidationError, match="at most 90 days"):
        registry.approve(exc.id, STEWARD, timedelta(days=365), now=T0)
    with pytest.raises(ValidationError, match="alice requested .* cannot approve"):
        registry.approve(exc.id, "alice", timedelta(days=1), now=T0)
    with pytest.raises(NotFound):
        registry.approve("EXC-NOPE", STEWARD, timedelta(days=1), now=T0)
    with pytest.raises(ValidationError, match="needs a reason"):
        registry.deny(exc.id, STEWARD, " ", now=T0)


def test_requests_are_validated() -> None:
    with pytest.raises(ValidationError, match="at least one source"):
        _request(sources=())
    with pytest.raises(ValidationError, match="justification"):
        _request(justification="  ")
    with pytest.raises(ValidationError, match="unknown operation kind"):
        _request(operation_kind="teleport")


def test_request_accepts_keywords_and_refs(registry: ExceptionRegistry) -> None:
    exc = registry.request(
        operation_kind=OperationKind.EXPORT,
        sources=(DatasetRef("file", "/data/customers.csv"),),
        destination=DatasetRef("file", "/tmp/x.csv"),
        justification="j",
        requested_by="bob",
        now=T0,
    )
    assert exc.sources == ("file::/data/customers.csv",)
    assert exc.destination == "file::/tmp/x.csv"
    op = Operation(
        OperationKind.EXPORT,
        (DatasetRef("file", "/data/customers.csv"),),
        DatasetRef("file", "/tmp/x.csv"),
    )
    assert exc.covers(op)
    assert not exc.covers(Operation(OperationKind.EXPORT, op.sources, None))


def test_the_longest_running_matching_exception_is_returned(registry: ExceptionRegistry) -> None:
    short = registry.approve(
        registry.request(_request(), now=T0).id, STEWARD, timedelta(days=2), now=T0
    )
    long = registry.approve(
        registry.request(_request(), now=T0).id, STEWARD, timedelta(days=9), now=T0
    )
    found = registry.find_valid(
        "export", ["file::/data/customers.csv"], "file::/tmp/x", now=T0 + timedelta(days=1)
    )
    assert found is not None and found.id == long.id != short.id


def test_clock_in_another_zone_is_normalised(registry: ExceptionRegistry) -> None:
    cet = timezone(timedelta(hours=1))
    exc = registry.request(_request(), now=T0.astimezone(cet))
    approved = registry.approve(exc.id, STEWARD, timedelta(hours=2), now=T0.astimezone(cet))
    assert approved.valid_until == T0 + timedelta(hours=2)
    at = (T0 + timedelta(hours=1)).astimezone(cet)
    assert registry.find_valid("export", ["file::/data/customers.csv"], "file::/tmp/x", now=at)


def test_list_filters_and_orders_newest_first(registry: ExceptionRegistry) -> None:
    first = registry.request(_request(), now=T0)
    second = registry.request(_request(requested_by="bob"), now=T0 + timedelta(minutes=5))
    assert [e.id for e in registry.list(now=T0)] == [second.id, first.id]
    assert [e.id for e in registry.list(requested_by="alice", now=T0)] == [first.id]
    assert [e.id for e in registry.list(status=ExceptionStatus.REQUESTED, now=T0)] == [
        second.id,
        first.id,
    ]
    assert first.to_dict()["status"] == "requested"


@pytest.mark.postgres
def test_lookups_run_without_a_transaction_and_leave_none_behind(pg_engine: Engine) -> None:
    """The gate's exception lookup reads in autocommit on PostgreSQL (no BEGIN/ROLLBACK round
    trips); the pooled connection must go back transactional, or a later write that expects
    to roll back would not."""
    from sqlalchemy import text

    from lacuna_orchestration.db import reading_once

    registry = ExceptionRegistry(pg_engine)
    registry.create_schema()
    with reading_once(pg_engine) as conn:
        assert conn.connection.dbapi_connection.autocommit is True  # type: ignore[union-attr]
        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert registry.find_valid("export", ["f::a"], "f::b") is None
    with pg_engine.connect() as conn:  # the same pooled connection (pool of one in use)
        assert conn.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
        conn.execute(text("CREATE TABLE rolled_back (x int)"))
        conn.rollback()
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('rolled_back')")).scalar() is None
