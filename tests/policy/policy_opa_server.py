"""A stand-in OPA server for tests: OPA's Data API over the regorus interpreter.

No OPA binary can be installed here, so this speaks the part of the protocol the client uses,
with OPA's shapes: ``POST /v1/data/<path>`` with ``{"input": ...}`` answers
``{"result": <value>}``, or ``{}`` when the document is undefined; ``?provenance=true`` adds
``{"provenance": {"version": ..., "bundles": {"lacuna": {"revision": ...}}}}``; an unknown route
is 404 and a body that is not JSON is 400, each with ``{"code", "message"}``.

regorus objects must stay on the thread that made them, so each serving thread builds its own
interpreter on first use.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import orjson
import regorus

from lacuna_orchestration.policy.rego import load_bundle

_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=orjson.dumps)
    raise TypeError(f"not JSON: {type(value).__name__}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OPA does

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, body: Any) -> None:
        payload = orjson.dumps(body, default=_json_default)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test): nothing to answer

    def do_POST(self) -> None:
        owner: ConformanceServer = self.server.owner  # type: ignore[attr-defined]
        owner.requests += 1
        if owner.delay_s:
            time.sleep(owner.delay_s)
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if owner.raw_response is not None:
            status, raw = owner.raw_response
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        if not (url.path == "/v1/data" or url.path.startswith("/v1/data/")):
            self._send(404, {"code": "resource_not_found", "message": f"no route {url.path}"})
            return
        segments = [s for s in url.path[len("/v1/data") :].split("/") if s]
        if not all(_SEGMENT.match(s) for s in segments):
            self._send(400, {"code": "invalid_parameter", "message": "bad path"})
            return
        try:
            request = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as err:
            self._send(400, {"code": "invalid_parameter", "message": f"body is not JSON: {err}"})
            return
        engine = owner.engine()
        engine.set_input_json(orjson.dumps(request.get("input")).decode())
        try:
            answer = engine.eval_query(".".join(["data", *segments]))
        except RuntimeError as err:
            self._send(500, {"code": "internal_error", "message": str(err).splitlines()[-1]})
            return
        response: dict[str, Any] = {}
        if answer["result"]:
            response["result"] = answer["result"][0]["expressions"][0]["value"]
        if parse_qs(url.query).get("provenance") == ["true"]:
            response["provenance"] = {
                "version": "conformance-0",
                "bundles": {"lacuna": {"revision": owner.revision}},
            }
        self._send(200, response)


class ConformanceServer:
    """``with ConformanceServer(policy_dir) as server: server.url``."""

    def __init__(self, policy_dir: Path, *, delay_s: float = 0.0) -> None:
        self.policy_dir = policy_dir
        self.delay_s = delay_s
        self.raw_response: tuple[int, bytes] | None = None
        self.requests = 0
        bundle = load_bundle(policy_dir)
        self.revision = bundle.revision
        self._bundle = bundle
        self._local = threading.local()
        # One thread per connection: clients keep connections alive, and a slow answer must
        # not stop the others (or shutdown).
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def engine(self) -> Any:
        """The serving thread's own interpreter (regorus objects are thread-bound)."""
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = regorus.Engine()
            for path, text in self._bundle.modules:
                engine.add_policy(path, text)
            engine.add_data_json(self._bundle.data_json)
            self._local.engine = engine
        return engine

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
