"""Audit chain throughput: chained, committed appends and verification, against baselines.

Measures, on the same generated records (about 500 bytes of canonical JSON each):

* appends/s on SQLite (WAL file) and PostgreSQL, chained and committed, batches of 1,000;
* raw PostgreSQL ``COPY`` of the very same rows (already hashed) into a table with the same
  columns and indexes, same batches, one commit each: the ceiling for the chained path;
* the same records COPYed unchained (JSON serialised, no lock, no hash): what chaining costs;
* group commit through ``AuditBatcher`` with one producer thread;
* verify records/s on both backends, in this process and in one process per CPU, next to
  plain SHA-256 over the same canonical bytes and next to merely reading the rows.

Each PostgreSQL repeat uses a fresh schema (dropped afterwards); medians are reported.

    python benchmarks/bench_audit.py            # 300,000 rows, 3 repeats
    python benchmarks/bench_audit.py --quick    # 10,000 rows, 1 repeat
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Check, Row, fresh_schema, write_results

from lacuna_orchestration.audit.batcher import AuditBatcher
from lacuna_orchestration.audit.chain import ChainHead, canonical_json, link
from lacuna_orchestration.audit.store import AUDIT_COLUMNS, AuditStore
from lacuna_orchestration.audit.verify import verify
from lacuna_orchestration.db import make_engine
from lacuna_orchestration.model import AuditRecord

BATCH = 1000
DEFAULT_PG = os.environ.get("LACUNA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGETS = {"postgres_appends_per_s": 20_000, "postgres_vs_raw_copy": 0.8, "verify_per_s": 500_000}


def make_corpus(n: int) -> list[AuditRecord]:
    """Gate decisions as the governor writes them: who, what, why, and the decision."""
    records = []
    for i in range(n):
        allow = i % 3 != 0
        records.append(
            AuditRecord(
                actor=f"svc-dagster-{i % 7}@example.com",
                action="gate" if i % 5 else "classification.override",
                resource=f"warehouse::analytics.customers_{i % 300}",
                reason="export of PROPRIETARY data to an external destination"
                if not allow
                else "aggregate of INTERNAL data",
                via="dagster",
                run_id=str(uuid.uuid4()),
                decision={
                    "decision_id": str(uuid.uuid4()),
                    "allow": allow,
                    "policy_id": "export-proprietary",
                    "policy_version": "1.4.0",
                    "reasons": [] if allow else ["destination is outside the company"],
                },
                details={"rows": i * 17, "tags": ["PII", "FINANCIAL"], "tier": "PROPRIETARY"},
            )
        )
    return records


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def append_all(store: AuditStore, records: list[AuditRecord]) -> int:
    """Append in batches; like a real producer, keep only what it needs (the last seq).
    Holding 300,000 returned records would only time the garbage collector."""
    last = 0
    for i in range(0, len(records), BATCH):
        last = store.append_many(records[i : i + BATCH])[-1].seq
    return last


def stored_rows(linked: list[AuditRecord]) -> list[tuple[Any, ...]]:
    """The rows exactly as the audit table holds them, for the raw COPY baseline."""
    rows = []
    for r in linked:
        values = r.to_dict()
        values["decision"] = None if r.decision is None else canonical_json(r.decision).decode()
        values["details"] = canonical_json(r.details).decode()
        rows.append(tuple(values[c] for c in AUDIT_COLUMNS))
    return rows


def raw_copy(pg: Any, rows: list[tuple[Any, ...]]) -> None:
    columns = ", ".join(f'"{c}"' for c in AUDIT_COLUMNS)
    for i in range(0, len(rows), BATCH):
        with pg.cursor() as cur, cur.copy(f"COPY raw_copy ({columns}) FROM STDIN") as copy:
            for row in rows[i : i + BATCH]:
                copy.write_row(row)
        pg.commit()


def read_only(store: AuditStore) -> int:
    with store.scan() as snapshot:
        return sum(1 for _ in snapshot.rows())


_NO_HASH = "-" * 64  # same row size as the chained rows


def unchained_copy(pg: Any, records: list[AuditRecord]) -> None:
    """What an unchained audit table would cost from the same record objects: serialise the
    JSON fields, build the row, COPY, commit per batch; no lock, no hash, no link."""
    columns = ", ".join(f'"{c}"' for c in AUDIT_COLUMNS)
    dumps, sort = orjson.dumps, orjson.OPT_SORT_KEYS
    for i in range(0, len(records), BATCH):
        with pg.cursor() as cur, cur.copy(f"COPY unchained ({columns}) FROM STDIN") as copy:
            for seq, r in enumerate(records[i : i + BATCH], start=i + 1):
                copy.write_row(
                    (
                        r.tenant, seq, r.record_id, r.timestamp, r.actor, r.action, r.resource,
                        r.reason, r.via, r.run_id,
                        None if r.decision is None else dumps(r.decision, option=sort).decode(),
                        dumps(r.details, option=sort).decode(), _NO_HASH, _NO_HASH,
                    )
                )  # fmt: skip
        pg.commit()


def verify_rates(store: AuditStore, n: int, workers: int) -> dict[str, float]:
    read_s, count = timed(lambda: read_only(store))
    verify_s, report = timed(lambda: verify(store))
    assert report.ok and report.count == n == count, report.message
    parallel_s, parallel = timed(lambda: verify(store, workers=workers, min_per_worker=1))
    assert parallel == report, parallel.message
    return {
        "verify_per_s": n / verify_s,
        "verify_parallel_per_s": n / parallel_s,
        "read_per_s": n / read_s,
    }


def bench_sqlite(records: list[AuditRecord], workers: int) -> dict[str, float]:
    n = len(records)
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/audit.db")
        try:
            store = AuditStore(engine)
            store.create_schema()
            append_s, _ = timed(lambda: append_all(store, records))
            return {"append_per_s": n / append_s, **verify_rates(store, n, workers)}
        finally:
            engine.dispose()




def bench_postgres(
    records: list[AuditRecord], url: str, repeat: int, workers: int
) -> dict[str, float]:
    n = len(records)
    with fresh_schema("bench_audit", url) as engine:
        store = AuditStore(engine)
        store.create_schema()
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE raw_copy (LIKE lacuna_audit INCLUDING ALL)"))
            conn.execute(text("CREATE TABLE unchained (LIKE lacuna_audit INCLUDING ALL)"))
        rows = stored_rows(prelinked(records))  # what append_many will write, hashes included
        raw = engine.raw_connection()
        pg = raw.driver_connection
        try:
            # Rotate the order, so no measure always meets the warmest (or fullest) server.
            timings: dict[str, float] = {}
            runs: list[tuple[str, Callable[[], Any]]] = [
                ("append", lambda: append_all(store, records)),
                ("raw_copy", lambda: raw_copy(pg, rows)),
                ("unchained", lambda: unchained_copy(pg, records)),
            ]
            shift = repeat % len(runs)
            for name, run in runs[shift:] + runs[:shift]:
                timings[name], _ = timed(run)
        finally:
            raw.close()
        return {
            "append_per_s": n / timings["append"],
            "raw_copy_per_s": n / timings["raw_copy"],
            "unchained_copy_per_s": n / timings["unchained"],
            **verify_rates(store, n, workers),
        }


def bench_batcher(records: list[AuditRecord], url: str) -> float:
    """Group commit through AuditBatcher: one producer thread submitting as fast as it can."""
    with fresh_schema("bench_audit", url) as engine:
        store = AuditStore(engine)
        store.create_schema()

        def run() -> None:
            with AuditBatcher(store, max_batch=BATCH) as batcher:
                futures = [batcher.submit(r) for r in records]
            assert futures[-1].result().seq == len(records)

        seconds, _ = timed(run)
    return len(records) / seconds


def prelinked(records: list[AuditRecord]) -> list[AuditRecord]:
    return link(records, ChainHead.genesis())


def bench_sha256(records: list[AuditRecord]) -> dict[str, float]:
    bodies = [canonical_json(r.body()) for r in prelinked(records)]
    sha256 = hashlib.sha256
    seconds, _ = timed(lambda: [sha256(b).hexdigest() for b in bodies])
    return {
        "sha256_per_s": len(bodies) / seconds,
        "mean_body_bytes": sum(map(len, bodies)) / len(bodies),
    }


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows, one repeat")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()
    n = args.rows or (10_000 if args.quick else 300_000)
    repeats = args.repeats or (1 if args.quick else 3)

    records = make_corpus(n)
    gc.collect()
    gc.freeze()  # the corpus is input, not garbage: keep the collector from re-scanning it

    workers = os.cpu_count() or 1
    sha = bench_sha256(records)
    sqlite_runs = [bench_sqlite(records, workers) for _ in range(repeats)]
    pg_runs = [bench_postgres(records, args.pg_url, i, workers) for i in range(repeats)]
    batcher_rate = bench_batcher(records, args.pg_url)

    ratios = [run["append_per_s"] / run["raw_copy_per_s"] for run in pg_runs]
    result: dict[str, Any] = {
        "rows": n,
        "batch": BATCH,
        "repeats": repeats,
        "verify_workers": workers,
        "mean_body_bytes": round(sha["mean_body_bytes"]),
        "sqlite": {k: round(median(sqlite_runs, k)) for k in sqlite_runs[0]},
        "postgres": {k: round(median(pg_runs, k)) for k in pg_runs[0]},
        "postgres_vs_raw_copy": round(statistics.median(ratios), 3),
        "postgres_vs_raw_copy_runs": [round(r, 3) for r in ratios],
        "postgres_batcher_one_producer_per_s": round(batcher_rate),
        "sha256_per_s": round(sha["sha256_per_s"]),
        "targets": TARGETS,
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "sqlite": sqlite3.sqlite_version,
            "postgres": _pg_version(args.pg_url),
            "machine": platform.machine(),
        },
    }
    sq, pgr = result["sqlite"], result["postgres"]
    best_verify = min(
        max(sq["verify_per_s"], sq["verify_parallel_per_s"]),
        max(pgr["verify_per_s"], pgr["verify_parallel_per_s"]),
    )
    result["met"] = {
        "postgres_appends_per_s": pgr["append_per_s"] >= TARGETS["postgres_appends_per_s"],
        "postgres_vs_raw_copy": result["postgres_vs_raw_copy"] >= TARGETS["postgres_vs_raw_copy"],
        "verify_per_s": best_verify >= TARGETS["verify_per_s"],
    }

    rows = [
        ("SQLite append (chained, committed)", sq["append_per_s"], ""),
        (
            "PostgreSQL append (chained, committed)",
            pgr["append_per_s"],
            f"target >= {TARGETS['postgres_appends_per_s']:,}",
        ),
        (
            "PostgreSQL raw COPY, same rows and indexes",
            pgr["raw_copy_per_s"],
            f"chained/raw = {result['postgres_vs_raw_copy']:.2f} (target >= 0.8)",
        ),
        (
            "PostgreSQL unchained COPY from the records",
            pgr["unchained_copy_per_s"],
            f"chained/unchained = {pgr['append_per_s'] / pgr['unchained_copy_per_s']:.2f}",
        ),
        (
            "PostgreSQL AuditBatcher, 1 producer thread",
            result["postgres_batcher_one_producer_per_s"],
            "",
        ),
        ("SQLite verify", sq["verify_per_s"], f"read alone {sq['read_per_s']:,}"),
        (f"SQLite verify, {workers} processes", sq["verify_parallel_per_s"], ""),
        ("PostgreSQL verify (COPY TO)", pgr["verify_per_s"], f"read alone {pgr['read_per_s']:,}"),
        (f"PostgreSQL verify, {workers} processes", pgr["verify_parallel_per_s"], ""),
        (
            "plain SHA-256 over the same bytes",
            result["sha256_per_s"],
            f"verify target >= {TARGETS['verify_per_s']:,}",
        ),
    ]
    title = (
        f"audit chain, {n:,} records (~{result['mean_body_bytes']} B canonical), "
        f"batch {BATCH:,}, median of {repeats}"
    )
    lines = [title, f"{'measure':<46}{'records/s':>12}  note"]
    lines += [f"{name:<46}{round(value):>12,}  {note}" for name, value, note in rows]
    print("\n".join(lines))
    print(f"wrote {write_results('audit', rows_of(result), result)}")


def rows_of(result: dict[str, Any]) -> list[Row]:
    """The harness's rows: appends next to raw COPY, verification next to plain SHA-256."""
    sq, pg, workers = result["sqlite"], result["postgres"], result["verify_workers"]
    sha = result["sha256_per_s"]
    verify_checks = (Check("ours", ">=", TARGETS["verify_per_s"]),)
    rows = [
        Row("audit append, PostgreSQL, chained and committed", "/s", pg["append_per_s"],
            baseline=pg["raw_copy_per_s"], baseline_label="raw COPY, same rows",
            ratio=result["postgres_vs_raw_copy"], ratio_label="chained / COPY (median of runs)",
            checks=(Check("ours", ">=", TARGETS["postgres_appends_per_s"]),
                    Check("ratio", ">=", TARGETS["postgres_vs_raw_copy"])),
            note=f"batch {result['batch']:,}"),
        Row("audit append via AuditBatcher, PostgreSQL, 1 producer", "/s",
            result["postgres_batcher_one_producer_per_s"], baseline=pg["append_per_s"],
            baseline_label="append_many, batches of 1,000", ratio_label="batcher / batches"),
        Row("audit append, SQLite, chained and committed", "/s", sq["append_per_s"]),
    ]
    for label, r in (("PostgreSQL", pg), ("SQLite", sq)):
        best = max(r["verify_per_s"], r["verify_parallel_per_s"])
        rows.append(Row(
            f"audit verify, {label}", "/s", best, baseline=sha,
            baseline_label="plain SHA-256, same bytes", ratio_label="verify / SHA-256",
            checks=verify_checks,
            note=f"1 process {round(r['verify_per_s']):,}/s, {workers} processes "
                 f"{round(r['verify_parallel_per_s']):,}/s, read alone {round(r['read_per_s']):,}/s",
        ))
    return rows


def _pg_version(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
