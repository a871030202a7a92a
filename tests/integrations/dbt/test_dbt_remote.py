"""``lacuna dbt build`` against a Lacuna service (RemoteGovernor), and failing closed when the
service cannot be reached."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from dbt_helpers import EXPORT, POLICIES, copy_project, duckdb_args, duckdb_tables

from lacuna_orchestration.client import RemoteGovernor
from lacuna_orchestration.errors import StoreError
from lacuna_orchestration.integrations.dbt import run_dbt

pytestmark = pytest.mark.slow

ADMIN_KEY = "lcn_00000000000000db_" + "D" * 40


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A Lacuna service in a thread; yields (url, producer API key)."""
    import uvicorn

    from lacuna_orchestration.server.app import create_app
    from lacuna_orchestration.server.config import ServerSettings
    from lacuna_orchestration.settings import Settings

    core = Settings.load(database_url=f"sqlite:///{tmp_path / 'service.db'}",
                         policy_dir=str(POLICIES))
    app = create_app(ServerSettings.load(core=core, bootstrap_admin_key=ADMIN_KEY))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "service did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    key = _post(url, "/api/v1/keys", {"role": "producer", "name": "dbt"})["key"]
    try:
        yield url, str(key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def test_build_gated_by_a_lacuna_service(service: tuple[str, str], tmp_path: Path) -> None:
    url, key = service
    project = copy_project(tmp_path)
    database = tmp_path / "shop.duckdb"
    outcome = run_dbt("build", [*duckdb_args(project, database), "--quiet"],
                      governor=RemoteGovernor(url, api_key=key))
    assert sorted(outcome.denied) == [EXPORT]
    assert "Cannot export PII data" in outcome.denied[EXPORT].message
    assert not outcome.emit_errors and outcome.events > 0
    tables = duckdb_tables(database)
    assert "main_exports.customer_contacts_export" not in tables
    assert "main.revenue_by_country" in tables


def test_an_unreachable_service_stops_the_build(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    database = tmp_path / "shop.duckdb"
    remote = RemoteGovernor(f"http://127.0.0.1:{_free_port()}", timeout_s=0.5)
    with pytest.raises(StoreError, match="lineage not stored"):
        run_dbt("build", [*duckdb_args(project, database), "--quiet"], governor=remote)
    assert not database.exists() or not any(t.startswith("main.") for t in
                                            duckdb_tables(database))
