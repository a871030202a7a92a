"""The service's commands: keys, exceptions, archive on the store; `lacuna dev` and
`lacuna serve --workers 2` as real processes, stopped gracefully with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from server_helpers import (
    ADMIN_KEY,
    PG_URL,
    export_event,
    free_port,
    pipeline_lines,
    run_cli,
)

from lacuna_orchestration.client import RemoteGovernor
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.settings import Settings

CLI = Path(__file__).with_name("cli_main.py")


def _json_out(capsys) -> object:
    return json.loads(capsys.readouterr().out)


def test_keys_exceptions_and_archive_commands(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    base = ["--database-url", url]
    assert run_cli([*base, "keys", "create", "--tenant", "acme", "--role", "producer",
                    "--name", "airflow"]) == 0
    created = _json_out(capsys)
    assert created["key"].startswith("lcn_") and created["tenant"] == "acme"
    assert run_cli([*base, "keys", "list", "--tenant", "acme"]) == 0
    assert [k["name"] for k in _json_out(capsys)] == ["airflow"]

    assert run_cli([*base, "exception", "request", "--tenant", "acme", "--source",
                    "file::analysis.csv", "--destination", "file::/tmp/export.csv",
                    "--purpose", "filing", "--justification", "regulator asked",
                    "--requested-by", "ann", "--days", "3"]) == 0
    exc = _json_out(capsys)
    assert run_cli([*base, "exception", "approve", "--tenant", "acme", exc["id"],
                    "--steward", "stella", "--days", "3"]) == 0
    assert _json_out(capsys)["status"] == "approved"
    assert run_cli([*base, "exception", "list", "--tenant", "globex"]) == 0
    assert _json_out(capsys) == []  # another tenant sees nothing

    assert run_cli([*base, "keys", "revoke", created["key_id"]]) == 0
    assert _json_out(capsys)["active"] is False

    assert run_cli([*base, "archive", "create", "--tenant", "acme", "--dir", str(tmp_path / "a"),
                    "--older-than-days", "0"]) == 0
    out = capsys.readouterr().out
    archived, continuity = _two_json(out)
    assert archived["count"] >= 4 and continuity["ok"] is True
    with Governor(Settings.load(database_url=url, tenant="acme")) as gov:
        actions = [r.action for r in gov.audit.records()]
    assert actions[:4] == ["apikey.create", "exception.request", "exception.approve",
                           "apikey.revoke"]


def _two_json(text: str) -> tuple[dict, dict]:
    decoder = json.JSONDecoder()
    first, end = decoder.raw_decode(text)
    second, _ = decoder.raw_decode(text[end:].lstrip())
    return first, second


def _get(base: str, path: str) -> dict:
    request = urllib.request.Request(base + path,
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return dict(json.loads(r.read()))


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not become ready")


def _stop(proc: subprocess.Popen) -> str:
    """SIGTERM, then wait: uvicorn finishes in-flight requests, runs the app's shutdown,
    and re-raises the signal, so a graceful stop exits with -SIGTERM."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGTERM), out
    return out


@pytest.mark.slow
def test_lacuna_dev_prints_urls_and_serves(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(CLI), "dev", "--port", str(port), "--state-dir",
         str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env=os.environ | {"LACUNA_POLICY_DIR": str(CLI.parents[2] / "policies")})
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        key = (tmp_path / "state" / "dev-admin-key").read_text().strip()
        remote = RemoteGovernor(base, api_key=key)
        result = remote.ingest(export_event())
        assert result.allowed  # /tmp is scratch space in development
    finally:
        out = _stop(proc)
    assert "Application shutdown complete" in out
    for needle in (f"{base}/api/v1/lineage", f"{base}/docs", f"{base}/lineage#key={key}",
                   "environment development", "dev.db"):
        assert needle in out, out
    assert oct((tmp_path / "state" / "dev-admin-key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.slow
@pytest.mark.postgres
def test_lacuna_serve_two_workers_on_postgres(pg_schema, tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {
        "LACUNA_DATABASE_SCHEMA": pg_schema,
        "LACUNA_POLICY_DIR": str(CLI.parents[2] / "policies"),
        "LACUNA_SERVER_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
    }
    proc = subprocess.Popen(
        [sys.executable, str(CLI), "--database-url", PG_URL, "serve", "--port", str(port),
         "--workers", "2", "--migrate", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        remote = RemoteGovernor(base, api_key=ADMIN_KEY, timeout_s=20)
        for line in pipeline_lines():
            remote.ingest(orjson.loads(line))
        # both workers append to one chain: it still verifies
        verdict = _get(base, "/api/v1/audit/verify")
        ingests = _get(base, "/api/v1/audit/records?action=lineage.ingest&limit=100")
        assert len(ingests["records"]) == len(pipeline_lines())
        # 6 runs decided; a run's START and COMPLETE may land on different workers, whose
        # decision caches are separate, so a run can be decided (and audited) twice
        assert verdict["ok"] is True and 18 <= verdict["count"] <= 24
    finally:
        out = _stop(proc)
    assert "2 worker(s)" in out


def test_lacuna_dev_environment_option(tmp_path: Path) -> None:
    from lacuna_orchestration.cli import build_parser
    from lacuna_orchestration.server_cli import dev_settings

    parser = build_parser()
    default = dev_settings(parser.parse_args(["dev", "--state-dir", str(tmp_path)]))
    assert default.core.environment == "development"
    chosen = dev_settings(parser.parse_args(
        ["dev", "--state-dir", str(tmp_path), "--environment", "production"]))
    assert chosen.core.environment == "production"
