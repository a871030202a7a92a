"""Graceful shutdown under load: every event the service acknowledged (201) is in the audit
chain afterwards, the chain verifies, and background duties and alerts are stopped."""

from __future__ import annotations

import threading
import time

import pytest
from server_helpers import (
    ADMIN_KEY,
    Receiver,
    app_for,
    export_event,
    running_server,
)

from lacuna_orchestration.client import RemoteGovernor
from lacuna_orchestration.errors import LacunaError
from lacuna_orchestration.governor import Governor


@pytest.mark.slow
@pytest.mark.postgres
def test_shutdown_drains_in_flight_requests(pg_settings) -> None:
    with Receiver() as receiver:
        settings = pg_settings.replace(alert_webhook_url=receiver.url, verify_interval_s=0.2)
        app = app_for(settings)
        state = app.state.lacuna
        acknowledged: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def producer(url: str) -> None:
            remote = RemoteGovernor(url, api_key=ADMIN_KEY, timeout_s=30)
            while not stop.is_set():
                event = export_event()
                try:
                    remote.ingest(event)
                except LacunaError:
                    return  # the server went away: this one was not acknowledged
                with lock:
                    acknowledged.append(event["run"]["runId"])

        with running_server(app) as (url, server):
            threads = [threading.Thread(target=producer, args=(url,)) for _ in range(4)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 20
            while len(acknowledged) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            server.should_exit = True  # what SIGTERM does; the context waits for the thread
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert len(acknowledged) >= 20
        assert state.stopping.is_set() and state.governors.loaded() == {}
        assert state.maintenance is not None
        assert state.alerts is not None and state.alerts.sent >= 1

    with Governor(settings.core) as gov:
        runs = {r.run_id for r in gov.audit.records(action="lineage.ingest")}
        assert set(acknowledged) <= runs
        assert gov.verify_audit().ok
