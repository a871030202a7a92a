"""Verification names the first broken record, whatever the tampering, on both backends.

Tampering goes around the append-only triggers the way someone with database access could
(SQLite: drop the triggers; PostgreSQL: ``session_replication_role = replica``)."""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

import orjson
import pytest
from audit_helpers import make_record, make_records, row_values, tamper
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from lacuna_orchestration.audit.chain import GENESIS_HASH, ChainHead, link
from lacuna_orchestration.audit.store import AUDIT_COLUMNS, AuditStore
from lacuna_orchestration.audit.verify import verify
from lacuna_orchestration.db import make_engine
from lacuna_orchestration.errors import AuditIntegrityError, StoreError

N = 10


@pytest.fixture()
def chain(store: AuditStore) -> list[Any]:
    return store.append_many(make_records(N))


def test_empty_chain_verifies(store: AuditStore) -> None:
    report = verify(store)
    assert (report.ok, report.count, report.head_hash) == (True, 0, GENESIS_HASH)
    report.raise_if_broken()


def test_intact_chain_verifies(store: AuditStore, chain: list[Any]) -> None:
    report = verify(store)
    assert report.ok and report.count == N and report.head_hash == chain[-1].hash
    assert report.first_bad_seq is None and report.problem == ""
    assert report.message == (
        f"audit chain 'default' verified: {N} records, head {chain[-1].hash[:16]}"
    )


def test_altered_field_is_named(store: AuditStore, chain: list[Any]) -> None:
    tamper(store, "UPDATE lacuna_audit SET reason = 'nothing to see' WHERE seq = 5")
    report = verify(store)
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_record_id) == (5, chain[4].record_id)
    assert report.count == 4 and report.head_hash == chain[3].hash
    assert "altered" in report.problem
    assert report.message.startswith(
        f"audit chain 'default' is broken at seq 5 (record {chain[4].record_id}): "
    )
    with pytest.raises(AuditIntegrityError) as err:
        report.raise_if_broken()
    assert (err.value.seq, err.value.record_id) == (5, chain[4].record_id)


def test_deleted_record_is_named(store: AuditStore, chain: list[Any]) -> None:
    tamper(store, "DELETE FROM lacuna_audit WHERE seq = 4")
    report = verify(store)
    assert (report.ok, report.first_bad_seq, report.first_bad_record_id) == (False, 4, None)
    assert "record 4 is missing" in report.problem


def test_swapped_records_are_named(store: AuditStore, chain: list[Any]) -> None:
    three, seven = row_values(store.engine, 3), row_values(store.engine, 7)
    columns = [c for c in AUDIT_COLUMNS if c not in ("tenant", "seq")]
    assignments = ", ".join(f'"{c}" = :{c}' for c in columns)
    # park 3's record_id first: it is unique
    tamper(store, "UPDATE lacuna_audit SET record_id = 'parked' WHERE seq = 3")
    tamper(store, f"UPDATE lacuna_audit SET {assignments} WHERE seq = 7", three)
    tamper(store, f"UPDATE lacuna_audit SET {assignments} WHERE seq = 3", seven)
    report = verify(store)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert report.first_bad_record_id == seven["record_id"]


def test_forged_record_appended_behind_the_head_is_named(
    store: AuditStore, chain: list[Any]
) -> None:
    # A well-formed, correctly hashed and linked record; only the head row does not know it.
    [forged] = link(
        [make_record(99, decision={"allow": True}, details={})], ChainHead(N, chain[-1].hash)
    )
    row = {c: getattr(forged, c) for c in AUDIT_COLUMNS}
    row.update(decision='{"allow":true}', details="{}")
    placeholders = ", ".join(f":{c}" for c in AUDIT_COLUMNS)
    quoted = ", ".join(f'"{c}"' for c in AUDIT_COLUMNS)
    tamper(store, f"INSERT INTO lacuna_audit ({quoted}) VALUES ({placeholders})", row)
    report = verify(store)
    assert (report.ok, report.first_bad_seq) == (False, N + 1)
    assert report.first_bad_record_id == forged.record_id
    assert "beyond the head row" in report.problem
    assert report.count == N


def test_truncated_tail_is_named(store: AuditStore, chain: list[Any]) -> None:
    tamper(store, "DELETE FROM lacuna_audit WHERE seq >= 8")
    report = verify(store)
    assert (report.ok, report.first_bad_seq, report.count) == (False, 8, 7)
    assert "records 8..10 were removed" in report.problem


def test_rewritten_and_rehashed_record_is_caught_at_its_successor(
    store: AuditStore, chain: list[Any]
) -> None:
    original = chain[4]
    [rewritten] = link(
        [make_record(4, reason="rewritten", record_id=original.record_id,
                     timestamp=original.timestamp)],
        ChainHead(4, original.prev_hash),
    )  # fmt: skip
    tamper(
        store,
        "UPDATE lacuna_audit SET reason = :r, hash = :h WHERE seq = 5",
        {"r": rewritten.reason, "h": rewritten.hash},
    )
    report = verify(store)
    assert (report.ok, report.first_bad_seq) == (False, 6)
    assert "prev_hash is not the hash of record 5" in report.problem


def test_rewritten_last_record_disagrees_with_the_head(store: AuditStore, chain: list[Any]) -> None:
    last = chain[-1]
    [rewritten] = link(
        [make_record(9, reason="rewritten", record_id=last.record_id, timestamp=last.timestamp)],
        ChainHead(N - 1, last.prev_hash),
    )
    tamper(
        store,
        "UPDATE lacuna_audit SET reason = :r, hash = :h WHERE seq = :s",
        {"r": rewritten.reason, "h": rewritten.hash, "s": N},
    )
    report = verify(store)
    assert (report.ok, report.first_bad_seq, report.first_bad_record_id) == (
        False, N, last.record_id,
    )  # fmt: skip
    assert "head row's hash" in report.problem


def test_missing_head_row_is_reported(store: AuditStore, chain: list[Any]) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM lacuna_audit_head")
    report = verify(store)
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert "no head row" in report.problem


def test_text_moved_between_decision_and_details_is_caught(store: AuditStore) -> None:
    """The stored JSON texts are hashed as spliced; moving text across their boundary keeps
    the bytes but changes what the columns say."""
    [record] = store.append_many(
        [make_record(1, decision={"a": 1, "details": {"x": 2}}, details={})]
    )
    tamper(
        store,
        "UPDATE lacuna_audit SET decision = :d, details = :e WHERE seq = 1",
        {"d": '{"a":1', "e": '{"x":2}},"details":{}'},
    )
    report = verify(store)
    assert (report.ok, report.first_bad_seq, report.first_bad_record_id) == (
        False, 1, record.record_id,
    )  # fmt: skip
    assert "rearranged" in report.problem


def test_verify_on_an_unreadable_database_is_a_store_error(tmp_path) -> None:
    folder = tmp_path / "a-directory.db"
    folder.mkdir()
    store = AuditStore(make_engine(f"sqlite:///{folder}"))
    with pytest.raises(StoreError, match="a-directory.db: cannot (open|read) the audit chain"):
        verify(store)


# -- property: any single-field change to any row fails exactly there -------------------------

_TEXT = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=12
)
_HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
_JSON_TEXT = st.dictionaries(
    st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), max_size=3
)


def _changed_value(draw: st.DrawFn, column: str, old: Any, n: int) -> Any:
    if column == "seq":
        return draw(st.integers(min_value=n + 1, max_value=n + 1000))  # moved out of place
    if column in ("prev_hash", "hash"):
        return draw(_HEX.filter(lambda v: v != old))
    if column in ("decision", "details"):
        return draw(
            _JSON_TEXT.map(lambda d: orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode()).filter(
                lambda v: v != old
            )
        )
    return draw(_TEXT.filter(lambda v: v != old))


def test_any_single_field_change_fails_exactly_at_that_row(engine: Engine) -> None:
    store = AuditStore(engine)
    store.create_schema()
    chain = store.append_many(make_records(N))
    originals = {r.seq: row_values(engine, r.seq) for r in chain}

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        seq = data.draw(st.integers(min_value=1, max_value=N), label="seq")
        column = data.draw(st.sampled_from(AUDIT_COLUMNS), label="column")
        original = originals[seq]
        new = data.draw(
            st.composite(lambda draw: _changed_value(draw, column, original[column], N))(),
            label="value",
        )
        tamper(
            store,
            f'UPDATE lacuna_audit SET "{column}" = :v WHERE tenant = :t AND seq = :s',
            {"v": new, "t": "default", "s": seq},
        )
        try:
            report = verify(store)
            assert not report.ok
            assert report.first_bad_seq == seq, report.message
            if column == "record_id":  # the report names the row by what it now holds
                assert report.first_bad_record_id == new, report.message
            elif column not in ("seq", "tenant"):  # those move the row out of its place
                assert report.first_bad_record_id == original["record_id"], report.message
        finally:
            where_tenant = new if column == "tenant" else "default"
            where_seq = new if column == "seq" else seq
            tamper(
                store,
                f'UPDATE lacuna_audit SET "{column}" = :v WHERE tenant = :t AND seq = :s',
                {"v": original[column], "t": where_tenant, "s": where_seq},
            )
        assert verify(store).ok

    check()


def test_hash_is_plain_sha256_hex(store: AuditStore, chain: list[Any]) -> None:
    # A third party can re-check a record with nothing but SHA-256 and the canonical body.
    record = chain[2]
    body = orjson.dumps(record.body(), option=orjson.OPT_SORT_KEYS)
    assert hashlib.sha256(body).hexdigest() == record.hash == row_values(store.engine, 3)["hash"]


# -- parallel verification: same report as the sequential walk --------------------------------

P = 40  # records; with 3 workers: ranges 1..14, 15..28, 29..40


def _tamper_cases(store: AuditStore, chain: list[Any]) -> dict[str, Any]:
    def rewrite_and_rehash(seq: int) -> None:
        original = chain[seq - 1]
        [rewritten] = link(
            [make_record(seq - 1, reason="rewritten", record_id=original.record_id,
                         timestamp=original.timestamp)],
            ChainHead(seq - 1, original.prev_hash),
        )  # fmt: skip
        tamper(
            store,
            "UPDATE lacuna_audit SET reason = :r, hash = :h WHERE seq = :s",
            {"r": rewritten.reason, "h": rewritten.hash, "s": seq},
        )

    def forge_beyond_head() -> None:
        [forged] = link([make_record(99, decision=None, details={})], ChainHead(P, chain[-1].hash))
        row = {c: getattr(forged, c) for c in AUDIT_COLUMNS}
        row.update(decision=None, details="{}")
        quoted = ", ".join(f'"{c}"' for c in AUDIT_COLUMNS)
        values = ", ".join(f":{c}" for c in AUDIT_COLUMNS)
        tamper(store, f"INSERT INTO lacuna_audit ({quoted}) VALUES ({values})", row)

    return {
        "intact": lambda: None,
        "altered in the middle range": lambda: tamper(
            store, "UPDATE lacuna_audit SET actor = 'mallory' WHERE seq = 20"
        ),
        "deleted at a range start": lambda: tamper(
            store, "DELETE FROM lacuna_audit WHERE seq = 15"
        ),
        "deleted at a range end": lambda: tamper(store, "DELETE FROM lacuna_audit WHERE seq = 14"),
        "rehashed at a range end": lambda: rewrite_and_rehash(14),
        "rehashed at the middle": lambda: rewrite_and_rehash(P // 2),
        "truncated tail": lambda: tamper(store, "DELETE FROM lacuna_audit WHERE seq > 33"),
        "rewritten last record": lambda: rewrite_and_rehash(P),
        "forged beyond the head": forge_beyond_head,
        "renumbered below one": lambda: tamper(
            store, "UPDATE lacuna_audit SET seq = 0 WHERE seq = 30"
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "intact",
        "altered in the middle range",
        "deleted at a range start",
        "deleted at a range end",
        "rehashed at a range end",
        "truncated tail",
        "rewritten last record",
        "forged beyond the head",
        "renumbered below one",
    ],
)
def test_parallel_verification_reports_what_the_walk_reports(
    store: AuditStore, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Range stitching, with threads standing in for processes (same code, faster)."""
    from concurrent.futures import ThreadPoolExecutor

    # the package's ``verify`` attribute is the function; the module is in sys.modules
    verify_module = importlib.import_module("lacuna_orchestration.audit.verify")
    used: list[int] = []

    def threads(workers: int) -> ThreadPoolExecutor:
        used.append(workers)
        return ThreadPoolExecutor(workers)

    monkeypatch.setattr(verify_module, "_executor", threads)
    chain = store.append_many(make_records(P))
    _tamper_cases(store, chain)[case]()
    sequential = verify(store)
    assert verify(store, workers=3, min_per_worker=1) == sequential
    assert used == ([] if case == "renumbered below one" else [3])  # that one walks at once
    expected_bad = {
        "intact": None,
        "altered in the middle range": 20,
        "deleted at a range start": 15,
        "deleted at a range end": 14,
        "rehashed at a range end": 15,
        "truncated tail": 34,
        "rewritten last record": P,
        "forged beyond the head": P + 1,
        "renumbered below one": 0,
    }[case]
    assert (sequential.ok, sequential.first_bad_seq) == (expected_bad is None, expected_bad)


@pytest.mark.slow
def test_parallel_verification_in_processes(store: AuditStore) -> None:
    chain = store.append_many(make_records(P))
    assert verify(store, workers=2, min_per_worker=1) == verify(store)
    _tamper_cases(store, chain)["rehashed at the middle"]()  # the end of the first range
    report = verify(store, workers=2, min_per_worker=1)
    assert report == verify(store)
    assert (report.ok, report.first_bad_seq) == (False, P // 2 + 1)


def test_in_memory_sqlite_is_verified_in_process() -> None:
    store = AuditStore(make_engine("sqlite:///:memory:"))
    store.create_schema()
    store.append_many(make_records(5))
    assert verify(store, workers=4, min_per_worker=1).ok
