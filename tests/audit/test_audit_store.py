"""AuditStore on SQLite and PostgreSQL: appends, reads, append-only triggers, errors."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from audit_helpers import make_record, make_records, tamper
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from lacuna_orchestration.audit.chain import GENESIS_HASH, ChainHead, record_hash
from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.audit.verify import verify
from lacuna_orchestration.db import make_engine
from lacuna_orchestration.errors import (
    AuditIntegrityError,
    NotFound,
    StoreError,
    ValidationError,
)


def test_append_links_records_and_moves_the_head(store: AuditStore) -> None:
    assert store.head() == ChainHead(0, GENESIS_HASH)
    first = store.append(make_record(0))
    batch = store.append_many(make_records(4, start=1))
    linked = [first, *batch]
    assert [r.seq for r in linked] == [1, 2, 3, 4, 5]
    assert linked[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(linked):
        assert after.prev_hash == before.hash
    assert all(r.hash == record_hash(r) for r in linked)
    assert store.head() == ChainHead(5, linked[-1].hash)
    assert store.count() == 5
    assert store.append_many([]) == []


def test_records_read_back_equal_to_what_was_appended(store: AuditStore) -> None:
    appended = store.append_many(make_records(6))
    assert list(store.records()) == appended
    assert store.get(appended[3].record_id) == appended[3]
    assert store.tail(2) == appended[-2:]
    assert store.tail(0) == []
    assert store.tail(100) == appended


def test_records_filters_and_pages(engine: Engine) -> None:
    store = AuditStore(engine, page_size=2)
    store.create_schema()
    appended = store.append_many(make_records(9))
    assert [r.seq for r in store.records(after_seq=4)] == [5, 6, 7, 8, 9]
    assert [r.seq for r in store.records(after_seq=1, limit=3)] == [2, 3, 4]
    assert [r.seq for r in store.records(action="gate")] == [2, 4, 6, 8]
    assert [r.seq for r in store.records(actor="user1", action="gate")] == [2, 8]
    assert [r.seq for r in store.records(run_id="run-1")] == [2, 6]
    # timestamps: record i has second i % 60 and microsecond i
    since, until = appended[2].timestamp, appended[5].timestamp
    assert [r.seq for r in store.records(since=since, until=until)] == [3, 4, 5]
    assert list(store.records(limit=0)) == []


def test_reading_a_record_with_unreadable_json_names_it(store: AuditStore) -> None:
    records = store.append_many(make_records(3))
    tamper(store, "UPDATE lacuna_audit SET details = '{\"rows\":' WHERE seq = 2")
    with pytest.raises(AuditIntegrityError, match="audit record 2 .* holds unreadable JSON") as err:
        list(store.records())
    assert (err.value.seq, err.value.record_id) == (2, records[1].record_id)
    assert not verify(store).ok


def test_get_unknown_record_is_not_found(store: AuditStore) -> None:
    with pytest.raises(NotFound, match="no audit record 'nope' in tenant 'default'"):
        store.get("nope")


def test_tenants_have_independent_chains(engine: Engine) -> None:
    acme, globex = AuditStore(engine, tenant="acme"), AuditStore(engine, tenant="globex")
    acme.create_schema()
    a = acme.append_many(make_records(3))
    g = globex.append_many(make_records(2, start=10))
    assert [r.seq for r in a] == [1, 2, 3] and [r.seq for r in g] == [1, 2]
    assert {r.tenant for r in a} == {"acme"} and {r.tenant for r in g} == {"globex"}
    assert acme.count() == 3 and globex.count() == 2
    assert verify(acme).ok and verify(globex).ok
    with pytest.raises(NotFound):
        acme.get(g[0].record_id)


def test_a_failing_batch_writes_nothing(store: AuditStore) -> None:
    kept = store.append_many(make_records(2))
    bad = [*make_records(3, start=2), make_record(9, details={"x": float("nan")})]
    with pytest.raises(ValidationError, match="nan"):
        store.append_many(bad)
    duplicate = [make_record(5), dataclasses.replace(make_record(6), record_id=kept[0].record_id)]
    with pytest.raises(StoreError, match="cannot append 2 audit record"):
        store.append_many(duplicate)
    assert store.count() == 2
    assert store.head() == ChainHead(2, kept[-1].hash)
    assert verify(store).ok


@pytest.mark.parametrize(
    "statement", ["UPDATE lacuna_audit SET reason = 'x'", "DELETE FROM lacuna_audit"]
)
def test_triggers_refuse_update_and_delete(store: AuditStore, statement: str) -> None:
    store.append_many(make_records(3))
    refused = "lacuna_audit is append-only: (UPDATE|DELETE) refused"
    with pytest.raises(DBAPIError, match=refused), store.engine.begin() as conn:
        conn.execute(text(statement + " WHERE seq = 2"))
    assert store.count() == 3
    assert verify(store).ok


@pytest.mark.postgres
def test_postgres_trigger_refuses_truncate(pg_engine: Engine) -> None:
    store = AuditStore(pg_engine)
    store.create_schema()
    store.append_many(make_records(2))
    with pytest.raises(DBAPIError, match="append-only: TRUNCATE refused"), pg_engine.begin() as c:
        c.execute(text("TRUNCATE lacuna_audit"))
    assert store.count() == 2


def test_create_schema_is_idempotent_and_required(engine: Engine) -> None:
    store = AuditStore(engine)
    with pytest.raises(StoreError, match=r"create_schema\(\) first"):
        store.append(make_record(1))
    store.create_schema()
    store.create_schema()
    store.append(make_record(1))
    store.create_schema()
    assert store.count() == 1


def test_records_of_another_tenant_are_written_to_this_store(store: AuditStore) -> None:
    [written] = store.append_many([make_record(1, tenant="elsewhere")])
    assert written.tenant == "default"
    assert store.get(written.record_id).tenant == "default"


@pytest.mark.postgres
def test_unreachable_postgres_is_a_one_line_store_error() -> None:
    store = AuditStore(make_engine("postgresql://postgres@127.0.0.1:1/test"))
    with pytest.raises(StoreError) as err:
        store.append(make_record(1))
    message = str(err.value)
    assert message.startswith("audit store postgresql+psycopg://postgres@127.0.0.1:1/test: ")
    assert "cannot append 1 audit record(s)" in message
    assert "\n" not in message
    with pytest.raises(StoreError, match="cannot read the audit chain head"):
        store.head()


def test_unreadable_sqlite_file_is_a_store_error(tmp_path) -> None:
    folder = tmp_path / "a-directory.db"
    folder.mkdir()
    store = AuditStore(make_engine(f"sqlite:///{folder}"))
    with pytest.raises(StoreError, match="a-directory.db: cannot count audit records"):
        store.count()


def test_store_arguments_are_checked(engine: Engine) -> None:
    with pytest.raises(StoreError, match="tenant"):
        AuditStore(engine, tenant="")
    with pytest.raises(StoreError, match="page_size"):
        AuditStore(engine, page_size=0)
