"""Helpers for the service tests: apps over SQLite or a PostgreSQL schema, keys per role,
OpenLineage events, a uvicorn server in a thread, a webhook receiver."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import orjson
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.lineage.openlineage import parse_events
from lacuna_orchestration.model import DatasetRef
from lacuna_orchestration.server.app import create_app
from lacuna_orchestration.server.config import ServerSettings
from lacuna_orchestration.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
PIPELINE = ROOT / "example_project" / "openlineage" / "pipeline.ndjson"
ADMIN_KEY = "lcn_00000000000000aa_" + "A" * 40
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
EXPORT = DatasetRef("file", "/tmp/export.csv")


def core_settings(url: str, schema: str | None = None, **kw: Any) -> Settings:
    kw.setdefault("policy_dir", str(POLICIES))
    return Settings.load(database_url=url, database_schema=schema, **kw)


def server_settings(url: str, schema: str | None = None, *, tmp: Path | None = None,
                    core: dict[str, Any] | None = None, **kw: Any) -> ServerSettings:
    kw.setdefault("bootstrap_admin_key", ADMIN_KEY)
    if tmp is not None:
        kw.setdefault("archive_dir", str(tmp / "archive"))
    return ServerSettings.load(core=core_settings(url, schema, **(core or {})), **kw)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_key(client: TestClient, role: str, name: str | None = None,
             admin: str = ADMIN_KEY) -> str:
    r = client.post("/api/v1/keys", json={"role": role, "name": name or f"{role}-key"},
                    headers=auth(admin))
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def pipeline_lines() -> list[bytes]:
    return [line for line in PIPELINE.read_bytes().splitlines() if line.strip()]


def pipeline_events() -> list[dict[str, Any]]:
    return list(parse_events(PIPELINE.read_bytes()))


def export_event(event_type: str = "COMPLETE", run_id: str | None = None) -> dict[str, Any]:
    """analysis.csv (PII, PROPRIETARY) exported to /tmp: denied outside development."""
    customers = DatasetSpec(DatasetRef("file", "customers.csv"),
                            columns=("customer_id", "email", "full_name"))
    return build_run_event(job=("tests", "export_analysis"), event_type=event_type,
                           inputs=[customers], outputs=[DatasetSpec(EXPORT)],
                           operation="export", user="ann@example.com",
                           **({"run_id": run_id} if run_id else {}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(app: FastAPI) -> Iterator[tuple[str, uvicorn.Server]]:
    """``app`` under uvicorn on a free loopback port, in a thread; stopped (gracefully) after."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Receiver:
    """A local webhook receiver recording every JSON body posted to it."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[Any] = []
        self.status = status
        received = self.bodies
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(orjson.loads(body))
                self.send_response(owner.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, n: int, timeout_s: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while len(self.bodies) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.bodies)


def lacuna_parser() -> argparse.ArgumentParser:
    """``lacuna``'s parser with the service commands registered (as the lead's cli does)."""
    from lacuna_orchestration.cli import build_parser
    from lacuna_orchestration.server_cli import add_server_parsers

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "serve" not in sub.choices:
        add_server_parsers(sub)
    return parser


def run_cli(argv: list[str]) -> int:
    args = lacuna_parser().parse_args(argv)
    return int(args.handler(args))


def app_for(settings: ServerSettings) -> FastAPI:
    return create_app(settings)
