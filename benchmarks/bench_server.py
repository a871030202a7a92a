"""Ingest throughput of the service: OpenLineage events/s through ``POST /api/v1/lineage``.

Setup: a fresh PostgreSQL schema, migrated; the service started the way ``lacuna serve
--workers 2`` starts it (uvicorn, two worker processes, settings handed over in
``LACUNA_SERVER_SNAPSHOT``); a loopback load generator in this process — for each level of
``--concurrency`` (default 2, 8, then 32), that many threads, each with one keep-alive connection,
post pre-built RunEvents (COMPLETE, one input and one output out of a pool of 200 datasets with
schema facets) for ``--seconds`` after a warm-up. Every 201 means the event's catalog rows and
audit records were committed. The light level shows latency, the heavy one throughput.

Afterwards the audit chain is verified and its ``lineage.ingest`` records are counted against
the acknowledged events (nothing acknowledged may be missing).

Baseline, same run: ``Governor.ingest`` called in process, one thread, on the same database —
what the same work costs without HTTP, auth and the second process.

    python benchmarks/bench_server.py                 # 20 s at 2, 8 and 32 connections
    python benchmarks/bench_server.py --seconds 5 --concurrency 4
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PG_URL, ROOT, Check, Row, print_rows, stats, write_results
from sqlalchemy import text

from lacuna_orchestration.db import make_engine
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.migrations import upgrade
from lacuna_orchestration.model import DatasetRef
from lacuna_orchestration.server.config import ServerSettings
from lacuna_orchestration.settings import Settings

KEY = "lcn_00000000000000be_" + "B" * 40
POOL = 200
COLUMNS = (("order_id", "bigint"), ("amount", "numeric"), ("region", "text"),
           ("ordered_at", "timestamp"))
TARGET_RATE = 2000.0
TARGET_P99_MS = 50.0


PLACEHOLDER = b"ffffffff-ffff-4fff-bfff-ffffffffffff"


def make_events(n: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct event templates whose run id is ``PLACEHOLDER`` (see ``with_run_id``)."""
    out = []
    for i in range(n):
        src = (i * 7 + seed) % POOL
        dst = (src + 1 + i % 5) % POOL
        event = build_run_event(
            job=("bench", f"job_{src}_{dst}"), event_type="COMPLETE",
            inputs=[DatasetSpec(DatasetRef("postgres://wh:5432", f"sales.t{src}"),
                                columns=COLUMNS)],
            outputs=[DatasetSpec(DatasetRef("postgres://wh:5432", f"sales.t{dst}"),
                                 columns=COLUMNS)],
            operation="transform", user=f"etl-{i % 9}@example.com",
            producer="https://example.com/bench", run_id=PLACEHOLDER.decode())
        out.append(orjson.dumps(event))
    return out


def with_run_id(template: bytes, n: int) -> bytes:
    """The template as a new run: a fresh, valid UUID per request (cheap bytes replace)."""
    h = f"{n:032x}"
    run_id = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}".encode()
    return template.replace(PLACEHOLDER, run_id)


def start_server(settings: ServerSettings | None, port: int, workers: int) -> subprocess.Popen[str]:
    """The ingestor under uvicorn; ``settings=None``: the empty-route ceiling app instead."""
    if settings is None:
        env, cwd, target = dict(os.environ), ROOT / "benchmarks", ["http_ceiling_app:app"]
    else:
        env = os.environ | {"LACUNA_SERVER_SNAPSHOT": settings.model_dump_json()}
        cwd, target = ROOT, ["lacuna_orchestration.server_cli:app_from_snapshot", "--factory"]
    cmd = [sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not become ready in 120 s")


class Load:
    """``concurrency`` threads posting events until ``stop_at``; latencies after ``record_from``."""

    def __init__(self, port: int, events: list[bytes], concurrency: int, first: int) -> None:
        self.port = port
        self.events = events
        self.first = first  # run ids are numbered from here: unique across phases
        self.concurrency = concurrency
        self.latencies: list[float] = []
        self.acked: list[int] = []
        self.errors: dict[str, int] = {}
        self.samples: dict[str, str] = {}  # one answer body per unexpected status
        self._next = 0
        self._lock = threading.Lock()

    def _take(self) -> int:
        with self._lock:
            self._next += 1
            return self._next - 1

    def _worker(self, record_from: float, stop_at: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        latencies, acked, errors = [], [], {}
        while time.perf_counter() < stop_at:
            i = self._take()
            body = with_run_id(self.events[i % len(self.events)], self.first + i)
            start = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/lineage", body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                status = str(response.status)
                if status != "201" and status not in self.samples:
                    self.samples[status] = answer[:500].decode("utf-8", "replace")
            except (OSError, http.client.HTTPException) as err:
                status = type(err).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            done = time.perf_counter()
            if status == "201":
                acked.append(i)
                if start >= record_from:
                    latencies.append((done - start) * 1000)
            else:
                errors[status] = errors.get(status, 0) + 1
        conn.close()
        with self._lock:
            self.latencies += latencies
            self.acked += acked
            for k, v in errors.items():
                self.errors[k] = self.errors.get(k, 0) + v

    def run(self, warmup_s: float, seconds: float) -> float:
        """Returns the measured window's length (s)."""
        begin = time.perf_counter()
        record_from = begin + warmup_s
        stop_at = record_from + seconds
        threads = [threading.Thread(target=self._worker, args=(record_from, stop_at))
                   for _ in range(self.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return min(time.perf_counter(), stop_at) - record_from


def in_process_rate(core: Settings, events: list[bytes], seconds: float) -> tuple[float, dict]:
    with Governor(core.replace(tenant="baseline")) as gov:
        for i, raw in enumerate(events[:200]):  # warm: the pool's datasets are classified
            gov.ingest(with_run_id(raw, i))
        times = []
        start = time.perf_counter()
        for i, raw in enumerate(events[200:], 200):
            t0 = time.perf_counter()
            gov.ingest(with_run_id(raw, i), via="bench")
            times.append((time.perf_counter() - t0) * 1000)
            if time.perf_counter() - start > seconds:
                break
        return len(times) / (time.perf_counter() - start), stats(times)


def write_path_rates(core: Settings, events: list[bytes], n: int = 2000,
                     group: int = 50) -> dict[int, float]:
    """Events/s of an ingest's *database writes only* (its decision row and its two audit
    records, through the core's public stores), one event per transaction pair versus
    ``group`` events per transaction pair: what group commit would buy the governor."""
    with Governor(core.replace(tenant="writes")) as gov:
        template = gov.ingest(with_run_id(events[0], 0), via="bench")
        decision = template.decisions[0]
        records = list(template.audit)
        rates = {}
        for size in (1, group):
            done = 0
            start = time.perf_counter()
            while done < n:
                batch = range(done, done + size)
                gov.catalog.save_decisions(
                    [dataclasses.replace(decision, decision_id=str(uuid.uuid4())) for _ in batch])
                gov.audit.append_many(
                    [dataclasses.replace(r, record_id=str(uuid.uuid4()), seq=0, hash="")
                     for _ in batch for r in records])
                done += size
            rates[size] = done / (time.perf_counter() - start)
        return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", default="2,8,32",
                        help="comma-separated connection counts, one measured phase each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-seconds", type=float, default=8.0)
    args = parser.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    core = Settings.load(database_url=PG_URL, database_schema=schema,
                         policy_dir=str(ROOT / "policies"), environment="production")
    settings = ServerSettings.load(core=core, bootstrap_admin_key=KEY, workers=args.workers)
    upgrade(core)
    admin = make_engine(PG_URL)
    levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    events = make_events(4000)
    port = _free_port()
    load_before = os.getloadavg()[0]
    proc = start_server(settings, port, args.workers)
    phases: list[dict[str, Any]] = []
    acked = 0
    try:
        for n, level in enumerate(levels):
            load = Load(port, events, level, first=(n + 1) * 10**9)
            window = load.run(args.warmup, args.seconds)
            acked += len(load.acked)
            phases.append({"concurrency": level, "window_s": window,
                           "events_per_s": len(load.latencies) / window,
                           "latency_ms": stats(load.latencies) if load.latencies else {},
                           "errors": load.errors, "error_samples": load.samples})
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()

    ceiling = http_ceiling(events, max(levels), args.workers, args.warmup,
                           args.baseline_seconds)
    with Governor(core) as gov:
        report = gov.verify_audit()
        ingested = sum(1 for _ in gov.audit.records(action="lineage.ingest"))
    missing = acked - ingested
    baseline_rate, baseline_lat = in_process_rate(core, events, args.baseline_seconds)
    writes = write_path_rates(core, events)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()

    best = max(phases, key=lambda p: p["concurrency"])  # the throughput phase
    rows = []
    for phase in phases:
        lat = phase["latency_ms"]
        label = f"{phase['concurrency']} connections"
        heavy = phase is best
        rows.append(Row(
            f"ingest events/s, audit committed, {label}", "/s", phase["events_per_s"],
            baseline=baseline_rate if heavy else None,
            baseline_label="Governor.ingest in process, 1 thread" if heavy else "",
            ratio_label="service / in process" if heavy else "",
            checks=(Check("ours", ">=", TARGET_RATE),) if heavy else (),
            note=f"p50 {lat.get('p50', 0):.1f} ms, p90 {lat.get('p90', 0):.1f} ms"))
        rows.append(Row(f"ingest latency p99, {label}", "ms", lat.get("p99"),
                        baseline=baseline_lat["p99"],
                        baseline_label="Governor.ingest p99 in process",
                        checks=(Check("ours", "<", TARGET_P99_MS),)))
    rows.append(Row(
        f"ingest events/s, {max(levels)} connections, against the HTTP ceiling", "/s",
        best["events_per_s"], baseline=ceiling,
        baseline_label="empty FastAPI route, same workers and load",
        ratio_label="ingest / empty route",
        note="the empty route only parses the body and answers 201: no route can beat it here"))
    single, grouped = writes[1], writes[max(writes)]
    rows.append(Row(f"ingest DB writes only, {max(writes)} events per commit (group commit)",
                    "/s", grouped, baseline=single, baseline_label="1 event per commit",
                    ratio_label="grouped / per event",
                    note="decision row + 2 audit records per event, public store APIs"))
    rows.append(Row("acknowledged events missing from the audit chain", "", float(missing),
                    checks=(Check("ours", "<=", 0),),
                    note=f"{acked} acknowledged; chain of {report.count} records verifies: "
                         f"{report.ok}; {args.workers} workers, {os.cpu_count()} CPUs shared "
                         "with PostgreSQL and the load generator; 1-min load average "
                         f"before the run {load_before:.1f}"))
    print_rows(rows, "Lacuna ingestor service")
    for phase in phases:
        if phase["errors"]:
            print(f"non-201 answers at {phase['concurrency']} connections: {phase['errors']} "
                  f"e.g. {phase['error_samples']}")
    path = write_results("server", rows, {
        "settings": {"workers": args.workers, "levels": levels, "seconds": args.seconds,
                     "warmup": args.warmup},
        "phases": phases, "baseline_events_per_s": baseline_rate,
        "baseline_latency_ms": baseline_lat, "acknowledged": acked,
        "db_write_rates": {str(k): v for k, v in writes.items()},
        "chain_ok": report.ok, "chain_records": report.count,
        "http_ceiling_events_per_s": ceiling,
        "load_average_before": load_before,
    })
    print(f"wrote {path}")


def http_ceiling(events: list[bytes], concurrency: int, workers: int, warmup: float,
                 seconds: float) -> float:
    """Events/s the empty-route app takes from the same load generator."""
    port = _free_port()
    proc = start_server(None, port, workers)
    try:
        load = Load(port, events, concurrency, first=0)
        window = load.run(warmup, seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return len(load.latencies) / window


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
