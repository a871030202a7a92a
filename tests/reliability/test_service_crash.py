"""The service under failure: SIGKILL in the middle of batches, and its PostgreSQL going away.

* ``kill -9`` the server process while producers post single events and NDJSON batches, start
  it again on the same store: every event acknowledged before the kill is in the chain, each
  event's records are all there or none are (an event is one transaction), a batch that was
  cut off left a prefix of its events and nothing else, and the chain verifies.
* A private PostgreSQL (never the shared one: other suites use it) is stopped with ``pg_ctl
  stop -m immediate`` mid-run: the service answers 503 (never 500), ``/readyz`` says so, the
  gate's client fails closed; started again, the service recovers by itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from server_helpers import ADMIN_KEY, app_for, running_server, server_settings

from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.audit.verify import verify
from lacuna_orchestration.client import RemoteGovernor
from lacuna_orchestration.db import make_engine
from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.migrations import upgrade
from lacuna_orchestration.model import DatasetRef, Operation, OperationKind

HERE = Path(__file__).resolve().parent
SERVICE = HERE / "service_main.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gated_event(run_id: str) -> dict[str, Any]:
    """One output: the service writes exactly one lineage.ingest and one policy.decision."""
    src = DatasetSpec(DatasetRef("crm", "customers"), columns=("email", "region"))
    out = DatasetSpec(DatasetRef("file", f"/tmp/export-{run_id[:8]}.csv"))
    return build_run_event(job=("crash", "export"), event_type="START", inputs=[src],
                           outputs=[out], operation="export", run_id=run_id, user="ann")


def post(url: str, path: str, body: bytes, content_type: str,
         timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + path, data=body, method="POST",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read() or b"{}")


@dataclass
class Producer:
    """Posts single events or NDJSON batches until stopped; remembers what was acknowledged
    (and, for batches, each batch's run ids in order)."""

    url: str
    batch: int = 1
    acked: list[str] = field(default_factory=list)
    sent_batches: list[list[str]] = field(default_factory=list)
    failures: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            ids = [str(uuid.uuid4()) for _ in range(self.batch)]
            self.sent_batches.append(ids)
            try:
                if self.batch == 1:
                    status, body = post(self.url, "/api/v1/lineage",
                                        orjson.dumps(gated_event(ids[0])), "application/json")
                    committed = 1 if status == 201 else 0
                else:
                    lines = b"\n".join(orjson.dumps(gated_event(i)) for i in ids)
                    status, body = post(self.url, "/api/v1/lineage/batch", lines,
                                        "application/x-ndjson")
                    committed = len(ids) if status == 201 else int(
                        body.get("error", {}).get("committed", 0) or 0)
            except (OSError, urllib.error.URLError, ValueError):
                self.failures += 1  # the server went away mid-request: nothing acknowledged
                time.sleep(0.05)
                continue
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.acked += ids[:committed]


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the service at {url} never became ready")


def check_chain(store: AuditStore, producers: list[Producer]) -> dict[str, Any]:
    """Every acknowledged event present; each event whole; cut batches are prefixes."""
    report = verify(store)
    assert report.ok, report.message
    by_run: dict[str, list[tuple[int, str]]] = {}
    for record in store.records():
        if record.run_id:
            by_run.setdefault(record.run_id, []).append((record.seq, record.action))
    acked = [run for p in producers for run in p.acked]
    missing = [run for run in acked if run not in by_run]
    assert not missing, f"{len(missing)} acknowledged event(s) lost"
    for run, records in by_run.items():  # each event: both of its records, side by side
        actions = sorted(a for _, a in records)
        assert actions == ["lineage.ingest", "policy.decision"], (run, records)
        seqs = sorted(s for s, _ in records)
        assert seqs[1] == seqs[0] + 1, (run, seqs)
    for producer in producers:
        for batch in producer.sent_batches:
            present = [run in by_run for run in batch]
            assert present == sorted(present, reverse=True), "a cut batch is not a prefix"
    unacked_present = len(by_run) - len(set(acked))
    return {"acknowledged": len(acked), "found": len(by_run),
            "committed_not_acknowledged": unacked_present, "records": report.count}


@pytest.mark.slow
@pytest.mark.postgres
def test_server_killed_mid_batch_and_restarted(pg_schema: str, tmp_path: Path,
                                               record_result: Callable[..., None]) -> None:
    from tests.conftest import PG_URL

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, str(SERVICE), "--url", PG_URL, "--schema", pg_schema,
               "--port", str(port), "--admin-key", ADMIN_KEY,
               "--archive-dir", str(tmp_path / "archive")]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, stderr=subprocess.PIPE)
        try:
            wait_ready(url)
        except AssertionError:
            proc.kill()
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "") from None
        return proc

    server = start()
    producers = [Producer(url), Producer(url), Producer(url, batch=25), Producer(url, batch=60)]
    threads = [threading.Thread(target=p.run, daemon=True) for p in producers]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while sum(len(p.acked) for p in producers) < 150:
            assert time.monotonic() < deadline, "the producers got nothing acknowledged"
            time.sleep(0.02)
        os.kill(server.pid, signal.SIGKILL)  # batches are in flight right now
        server.wait(10)
        acked_at_kill = sum(len(p.acked) for p in producers)
        server = start()
        time.sleep(1.5)  # let them write after the restart too
        for p in producers:
            p.stop.set()
        for t in threads:
            t.join(30)
    finally:
        for p in producers:
            p.stop.set()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        if server.stderr:
            server.stderr.close()
    assert sum(p.failures for p in producers) > 0, "the kill interrupted no request"
    statuses = {s for p in producers for s in p.statuses}
    assert all(s < 400 for s in statuses), statuses  # well-formed requests: no refusals
    assert sum(len(p.acked) for p in producers) > acked_at_kill, "nothing written after restart"
    engine = make_engine(PG_URL, schema=pg_schema)
    try:
        numbers = check_chain(AuditStore(engine), producers)
    finally:
        engine.dispose()
    record_result("crash: server kill -9 mid-batch, PostgreSQL", acked_before_kill=acked_at_kill,
                  requests_failed_while_down=sum(p.failures for p in producers), **numbers)


# -- a private PostgreSQL that can be stopped --------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are required for this test")
    return found[-1].parent


class PrivatePostgres:
    """initdb + pg_ctl in a temporary directory, on a free port, as the ``postgres`` user
    when running as root (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="lacuna-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run([*self.as_user, str(self.bin / tool), *args],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"{tool} failed: {proc.stdout}{proc.stderr}"

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.dir} -c fsync=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "30",
                  "-l", str(self.dir / "log"), "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        except AssertionError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture()
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.cleanup()


@pytest.mark.slow
def test_postgres_stopped_mid_run_503_then_recovers(private_pg: PrivatePostgres, tmp_path: Path,
                                                    record_result: Callable[..., None]) -> None:
    settings = server_settings(private_pg.url, tmp=tmp_path, alert_on_denials=False)
    upgrade(settings.core)
    gate_op = Operation(OperationKind.TRANSFORM, (DatasetRef("crm", "customers"),),
                        DatasetRef("warehouse", "analytics.daily"), user="ann",
                        purpose="analytics")
    with running_server(app_for(settings)) as (url, _server):
        remote = RemoteGovernor(url, api_key=ADMIN_KEY, timeout_s=5.0)
        assert remote.check(gate_op).allow
        producer = Producer(url)
        thread = threading.Thread(target=producer.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while len(producer.acked) < 20:
            assert time.monotonic() < deadline
            time.sleep(0.02)

        private_pg.stop("immediate")  # the database crashes under the running service
        stopped_at = time.monotonic()
        outage: dict[str, Any] = {}
        status, body = post(url, "/api/v1/lineage", orjson.dumps(gated_event(str(uuid.uuid4()))),
                            "application/json")
        outage["ingest"] = status
        assert status == 503 and body["error"]["code"] == "store_unavailable", body
        status, body = post(url, "/api/v1/check", orjson.dumps(gate_op.to_dict()),
                            "application/json")
        outage["check"] = status
        assert status == 503, body
        denied = remote.check(gate_op)  # what an orchestrator's gate sees: a denial
        assert not denied.allow and denied.error and denied.policy_id == "lacuna.fail-closed"
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
                outage["readyz"] = response.status
        except urllib.error.HTTPError as err:
            outage["readyz"] = err.code
        assert outage["readyz"] == 503
        time.sleep(0.5)  # the producer keeps trying during the outage
        acked_during = len(producer.acked)

        private_pg.start()
        restarted_at = time.monotonic()
        deadline = restarted_at + 30
        while True:  # no restart of the service: it must come back by itself
            run_id = str(uuid.uuid4())
            status, _ = post(url, "/api/v1/lineage", orjson.dumps(gated_event(run_id)),
                             "application/json")
            if status == 201:
                producer.acked.append(run_id)
                break
            assert status == 503 and time.monotonic() < deadline, status
            time.sleep(0.1)
        recovered_s = time.monotonic() - restarted_at
        assert remote.check(gate_op).allow
        while len(producer.acked) < acked_during + 10:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        producer.stop.set()
        thread.join(15)
    assert producer.statuses.get(503, 0) > 0  # the producer saw the outage as 503s
    assert not any(s >= 500 and s != 503 for s in producer.statuses)
    engine = make_engine(private_pg.url)
    try:
        numbers = check_chain(AuditStore(engine), [producer])
    finally:
        engine.dispose()
    record_result("crash: PostgreSQL stopped mid-run, service recovers", outage=outage,
                  gate_during_outage="deny (fail closed)", outage_s=round(restarted_at
                                                                          - stopped_at, 1),
                  recovered_in_s=round(recovered_s, 2), **numbers)
