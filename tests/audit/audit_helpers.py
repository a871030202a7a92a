"""Helpers shared by the audit tests: record factories, trigger-bypassing tampering, and the
worker the multi-process test spawns (it must live in an importable module, not a test)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from lacuna_orchestration.audit.batcher import AuditBatcher
from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.db import is_sqlite, make_engine
from lacuna_orchestration.model import AuditRecord


def make_record(i: int, **overrides: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "actor": f"user{i % 3}",
        "action": "gate" if i % 2 else "ingest",
        "resource": f"warehouse::analytics.table_{i}",
        "reason": f"reason {i}: export of PROPRIETARY data — é ✓",
        "via": "dagster",
        "run_id": f"run-{i % 4}",
        "decision": {"allow": i % 2 == 0, "policy_id": "export", "reasons": [f"r{i}"]},
        "details": {"rows": i, "tags": ["PII", "FINANCIAL"], "quote": 'say "hi"\n'},
        "timestamp": f"2026-01-01T00:00:{i % 60:02d}.{i:06d}Z",
    }
    fields.update(overrides)
    return AuditRecord(**fields)


def make_records(n: int, start: int = 0, **overrides: Any) -> list[AuditRecord]:
    return [make_record(i, **overrides) for i in range(start, start + n)]


def tamper(store: AuditStore, statement: str, params: dict[str, Any] | None = None) -> None:
    """Run ``statement`` on the audit table past its append-only triggers, as an attacker with
    database access would: SQLite drops the triggers (and gets them back afterwards),
    PostgreSQL switches triggers off for the transaction (superuser)."""
    engine = store.engine
    with engine.begin() as conn:
        if is_sqlite(engine):
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS lacuna_audit_refuse_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS lacuna_audit_refuse_delete")
        else:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.execute(text(statement), params or {})
    store.create_schema()  # the SQLite triggers come back; a no-op on PostgreSQL


def row_values(engine: Engine, seq: int, tenant: str = "default") -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT * FROM lacuna_audit WHERE tenant = :t AND seq = :s"),
            {"t": tenant, "s": seq},
        ).one()
    return dict(row._mapping)


def append_worker(
    url: str,
    schema: str | None,
    worker: int,
    count: int,
    use_batcher: bool,
    *,
    barrier: Any = None,
    results: Any = None,
) -> list[tuple[int, str]]:
    """Append ``count`` records from a fresh process; return (or put on ``results``) their
    (seq, record_id) in append order."""
    engine = make_engine(url, schema=schema)
    store = AuditStore(engine)
    records = make_records(count, start=worker * 100_000, actor=f"worker{worker}")
    done: list[AuditRecord] = []
    try:
        if barrier is not None:
            barrier.wait(timeout=60)
        if use_batcher:
            with AuditBatcher(store, max_batch=64, max_delay_s=0.002) as batcher:
                futures = [batcher.submit(r) for r in records]
            done = [f.result() for f in futures]
        else:
            position = 0
            size = 1
            while position < count:  # batches of 1, 2, 3, ... records
                done += store.append_many(records[position : position + size])
                position += size
                size = size % 40 + 1
    except Exception as err:
        if results is not None:
            results.put(f"worker {worker} failed: {err!r}")  # fail the test now, not on timeout
        raise
    finally:
        engine.dispose()
    written = [(r.seq, r.record_id) for r in done]
    if results is not None:
        results.put(written)
    return written
