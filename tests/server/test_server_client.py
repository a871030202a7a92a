"""RemoteGovernor against a real uvicorn server, and its fail-closed behaviour."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from server_helpers import (
    ADMIN_KEY,
    EXPORT,
    app_for,
    export_event,
    free_port,
    pipeline_events,
    running_server,
    server_settings,
)

from lacuna_orchestration.client import FAIL_CLOSED_POLICY, RemoteGovernor
from lacuna_orchestration.errors import IngestError, StoreError
from lacuna_orchestration.model import DatasetRef, Operation, OperationKind

OP = Operation(OperationKind.EXPORT, (DatasetRef("file", "analysis.csv"),), EXPORT, user="ann")


@pytest.mark.slow
def test_remote_governor_end_to_end(tmp_path) -> None:
    app = app_for(server_settings(f"sqlite:///{tmp_path / 'l.db'}", tmp=tmp_path))
    with running_server(app) as (url, _):
        remote = RemoteGovernor(url, api_key=ADMIN_KEY, timeout_s=10)
        results = [remote.ingest(e) for e in pipeline_events()]
        assert sum(len(r.denials) for r in results) == 2  # START and COMPLETE of the export
        assert all(r.audit_last_seq for r in results)
        big = export_event()
        big["run"]["facets"]["notes"] = {"_producer": "p", "_schemaURL": "s",
                                         "text": "x" * 100_000}  # sent gzip-compressed
        assert remote.ingest(big).denials
        decision = remote.check(OP)
        assert decision.allow is False and decision.policy_id == "export-governance"
        assert "PII" in decision.message
        read = remote.check(Operation(OperationKind.READ, (DatasetRef("file", "sales.csv"),)))
        assert read.allow is True
        with pytest.raises(IngestError, match="eventType"):
            remote.ingest(export_event() | {"eventType": "NOPE"})
        wrong_key = RemoteGovernor(url, api_key="lcn_0000000000000000_" + "x" * 30)
        refused = wrong_key.check(OP)
        assert refused.allow is False and refused.policy_id == FAIL_CLOSED_POLICY
        assert "401" in refused.error
        with pytest.raises(IngestError, match="401"):
            wrong_key.ingest(export_event())


def test_unreachable_server_fails_closed() -> None:
    remote = RemoteGovernor(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    decision = remote.check(OP)
    assert decision.allow is False and decision.error
    assert decision.policy_id == FAIL_CLOSED_POLICY
    assert "Governance Policy Violation" in decision.message or decision.message
    with pytest.raises(StoreError, match="unreachable"):
        remote.ingest(export_event())


class _Stub:
    """A server answering every POST with ``status`` after ``delay_s``."""

    def __init__(self, status: int, delay_s: float = 0.0) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(outer.delay_s)
                body = b'{"error": {"message": "boom"}}'
                try:
                    self.send_response(outer.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.status, self.delay_s = status, delay_s
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("status", "delay", "needle"),
                         [(500, 0.0, "HTTP 500"), (503, 0.0, "HTTP 503"),
                          (200, 2.0, "did not answer")])
def test_5xx_and_timeouts_fail_closed(status: int, delay: float, needle: str) -> None:
    stub = _Stub(status, delay)
    try:
        remote = RemoteGovernor(stub.url, timeout_s=0.5)
        decision = remote.check(OP)
        assert decision.allow is False and needle in decision.error
        with pytest.raises(StoreError, match=needle):
            remote.ingest(export_event())
    finally:
        stub.close()
