"""Nothing acknowledged is lost: many writer processes on one chain, and writers killed with
SIGKILL in the middle of a batch.

Each writer (``chain_writer.py``) logs the ids of a batch before ``append_many`` and the
acknowledged ``(seq, id)`` pairs after it returns; the logs are then held against the table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.audit.verify import verify
from lacuna_orchestration.db import make_engine

WRITER = Path(__file__).resolve().parent / "chain_writer.py"


@dataclass
class WriterLog:
    """What one writer process said it did."""

    acked: dict[str, int] = field(default_factory=dict)  # record id -> seq
    in_flight: list[str] = field(default_factory=list)  # ids of a batch never acknowledged
    batches: int = 0

    @classmethod
    def read(cls, path: Path) -> WriterLog:
        log = cls()
        pending: list[str] = []
        for line in path.read_bytes().splitlines():
            entry = orjson.loads(line)
            if "pending" in entry:
                pending = entry["pending"]
            else:
                log.acked.update({rid: seq for seq, rid in entry["acked"]})
                assert [rid for _, rid in entry["acked"]] == pending
                pending = []
                log.batches += 1
        log.in_flight = pending
        return log


class Writers:
    """Start writer processes together and collect their logs."""

    def __init__(self, tmp: Path, url: str, schema: str | None) -> None:
        self.tmp = tmp
        self.url = url
        self.schema = schema
        self.go = tmp / "go"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, worker: int, *, duration: float, max_batch: int = 50,
              min_batch: int = 1) -> None:
        args = [sys.executable, str(WRITER), "--url", self.url, "--worker", str(worker),
                "--log", str(self.log_path(name)), "--go", str(self.go),
                "--duration", str(duration), "--min-batch", str(min_batch),
                "--max-batch", str(max_batch)]
        if self.schema:
            args += ["--schema", self.schema]
        self.procs[name] = subprocess.Popen(args, stderr=subprocess.PIPE)

    def log_path(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def release(self, timeout: float = 60) -> None:
        """Wait until every started writer is connected, then let them all go at once."""
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            ready = Path(f"{self.log_path(name)}.ready")
            while not ready.exists():
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, f"writer {name} never got ready"
                time.sleep(0.01)
        self.go.touch()

    def wait(self, name: str, timeout: float = 60) -> int:
        proc = self.procs[name]
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        if code not in (0, -signal.SIGKILL):
            raise AssertionError(f"writer {name} failed ({code}): "
                                 f"{proc.stderr.read().decode() if proc.stderr else ''}")
        return code

    def kill_mid_batch(self, name: str, after_batches: int, timeout: float = 30) -> bool:
        """SIGKILL ``name`` once it has had ``after_batches`` batches acknowledged, at a moment
        its log shows a batch in flight. Returns whether one was in flight at the kill."""
        path = self.log_path(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = path.read_bytes().splitlines() if path.exists() else []
            acked = sum(1 for line in lines if line.startswith(b'{"acked"'))
            if acked >= after_batches and lines and lines[-1].startswith(b'{"pending"'):
                os.kill(self.procs[name].pid, signal.SIGKILL)
                self.procs[name].wait(10)
                return True
            time.sleep(0.001)
        raise AssertionError(f"writer {name} never reached batch {after_batches}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stderr:
                proc.stderr.close()


def table_ids(store: AuditStore) -> dict[str, int]:
    return {r.record_id: r.seq for r in store.records()}


def check_against_logs(store: AuditStore, logs: list[WriterLog]) -> dict[str, Any]:
    """Every acknowledged record is present at its seq; every other record belongs to a batch
    that was in flight, and such a batch is there entirely or not at all; the chain verifies."""
    found = table_ids(store)
    acked: dict[str, int] = {}
    for log in logs:
        acked.update(log.acked)
    missing = [rid for rid in acked if rid not in found]
    moved = [rid for rid, seq in acked.items() if rid in found and found[rid] != seq]
    assert not missing, f"{len(missing)} acknowledged record(s) lost"
    assert not moved, f"{len(moved)} acknowledged record(s) not at their acknowledged seq"
    unacked = set(found) - set(acked)
    committed_in_flight = 0
    for log in logs:
        present = [rid for rid in log.in_flight if rid in found]
        assert len(present) in (0, len(log.in_flight)), "a batch was half-written"
        if present:
            committed_in_flight += 1
        unacked -= set(log.in_flight)
    assert not unacked, f"{len(unacked)} record(s) in the table that no writer ever sent"
    assert sorted(found.values()) == list(range(1, len(found) + 1)), "gap or fork in seq"
    report = verify(store)
    assert report.ok, report.message
    assert report.count == len(found)
    return {"acknowledged": len(acked), "found": len(found),
            "in_flight_batches_committed": committed_in_flight}


@pytest.fixture()
def pg_target(pg_engine: Engine, pg_schema: str) -> tuple[AuditStore, str, str | None]:
    store = AuditStore(pg_engine)
    store.create_schema()
    return store, pg_engine.url.render_as_string(hide_password=False), pg_schema


@pytest.fixture()
def sqlite_target(sqlite_url: str) -> Any:
    engine = make_engine(sqlite_url)
    store = AuditStore(engine)
    store.create_schema()
    yield store, sqlite_url, None
    engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_writer_processes_one_valid_chain(
    pg_target: tuple[AuditStore, str, str | None], tmp_path: Path,
    record_result: Callable[..., None],
) -> None:
    store, url, schema = pg_target
    writers = Writers(tmp_path, url, schema)
    try:
        for w in range(8):
            writers.start(f"w{w}", w, duration=3.0)
        writers.release()
        started = time.monotonic()
        for w in range(8):
            assert writers.wait(f"w{w}") == 0
        elapsed = time.monotonic() - started
    finally:
        writers.stop_all()
    logs = [WriterLog.read(writers.log_path(f"w{w}")) for w in range(8)]
    assert all(log.batches > 0 and not log.in_flight for log in logs)
    numbers = check_against_logs(store, logs)
    assert numbers["found"] == numbers["acknowledged"]  # nobody died: nothing extra either
    # They really interleaved: every writer's records are spread over the chain.
    spans = [(min(log.acked.values()), max(log.acked.values())) for log in logs]
    assert all(lo < min(hi for _, hi in spans) for lo, _ in spans)
    record_result("concurrency: 8 writer processes, PostgreSQL", writers=8,
                  batches=sum(log.batches for log in logs),
                  records_per_s=round(numbers["found"] / elapsed), **numbers)


def _kill_and_restart(target: tuple[AuditStore, str, str | None], tmp: Path,
                      record_result: Callable[..., None], scenario: str) -> None:
    store, url, schema = target
    writers = Writers(tmp, url, schema)
    try:
        writers.start("steady", 1, duration=4.0)
        # Big batches: the victim spends most of its time inside append_many.
        writers.start("victim", 2, duration=30.0, min_batch=500, max_batch=3000)
        writers.release()
        in_flight = writers.kill_mid_batch("victim", after_batches=3)
        writers.start("restarted", 2, duration=1.0, min_batch=500, max_batch=3000)
        writers.release()  # the go file exists: it starts as soon as it is connected
        assert writers.wait("restarted") == 0
        assert writers.wait("steady") == 0
    finally:
        writers.stop_all()
    logs = {name: WriterLog.read(writers.log_path(name)) for name in ("steady", "victim",
                                                                      "restarted")}
    assert in_flight and logs["victim"].in_flight, "the kill did not land inside a batch"
    assert logs["restarted"].batches > 0, "nothing could be written after the kill"
    numbers = check_against_logs(store, list(logs.values()))
    record_result(scenario, killed_mid_batch=in_flight,
                  in_flight_records=len(logs["victim"].in_flight), **numbers)


@pytest.mark.slow
@pytest.mark.postgres
def test_writer_killed_mid_batch_postgres(
    pg_target: tuple[AuditStore, str, str | None], tmp_path: Path,
    record_result: Callable[..., None],
) -> None:
    _kill_and_restart(pg_target, tmp_path, record_result,
                      "crash: writer kill -9 mid-batch, PostgreSQL")


@pytest.mark.slow
def test_writer_killed_mid_batch_sqlite(
    sqlite_target: tuple[AuditStore, str, str | None], tmp_path: Path,
    record_result: Callable[..., None],
) -> None:
    _kill_and_restart(sqlite_target, tmp_path, record_result,
                      "crash: writer kill -9 mid-batch, SQLite")
