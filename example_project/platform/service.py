"""The "service" variant's Lacuna: a ``lacuna dev`` server in a child process, and the few HTTP
calls the platform makes to it besides what the integrations send.

``DevServer`` starts ``lacuna dev`` on a free localhost port with a fresh SQLite store under
the run's output folder and an admin key chosen here (``--admin-key``), so nothing has to be
scraped from the server's banner; it waits until ``/readyz`` answers and stops the process
(SIGTERM, then SIGKILL after a grace period) on ``stop()`` — also when a step failed. The
server's own output goes to ``service/server.log``: the first place to look when it does not
come up.

``LacunaApi`` is a deliberately small client over the routes the integrations do not cover
(API keys, exceptions, the catalog and lineage read API, the audit chain, reports). It raises
``ServiceError`` with one line — the route, the status and the server's message — because the
demo shows exactly one line when a step fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["DevServer", "LacunaApi", "ServiceError", "free_port"]

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0


class ServiceError(RuntimeError):
    """The Lacuna service could not be started, reached, or refused a request (one line)."""


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _admin_key() -> str:
    """A fresh key in Lacuna's own format (the service accepts any long string; this one
    reads as a Lacuna key in logs and is never reused between runs)."""
    from lacuna_orchestration.server.auth import generate_key

    return generate_key()[1]


@dataclass
class DevServer:
    """``lacuna dev`` for one platform run; ``state_dir`` holds its store, key and log."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    admin_key: str = field(default_factory=_admin_key, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def store(self) -> Path:
        return self.state_dir / "dev.db"

    @property
    def log(self) -> Path:
        return self.state_dir / "server.log"

    def command(self) -> list[str]:
        """The command line, as a user would type it (``lacuna`` is this interpreter's)."""
        return [sys.executable, "-m", "lacuna_orchestration.cli", "dev", "--host", self.host,
                "--port", str(self.port), "--state-dir", str(self.state_dir),
                "--admin-key", self.admin_key, "--log-level", "warning"]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until its database answers (``/readyz``)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Lacuna reads its policies from LACUNA_POLICY_DIR (the server's working directory
        # may have no policies/ of its own); the child gets its own environment.
        env = {**os.environ, "LACUNA_POLICY_DIR": str(POLICIES), "HF_HUB_OFFLINE": "1"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.state_dir, env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise ServiceError(f"lacuna dev exited with code {code}: {self._last_log_line()}")
            if self._ready():
                return
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"lacuna dev did not answer on {self.url}/readyz within "
                           f"{timeout_s:.0f} s (log: {self.log})")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=1.0) as response:
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False

    def _last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return lines[-1].strip() if lines else "(no output)"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """Stop the server (graceful shutdown first); its exit code, or None if not started.
        Safe to call twice."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_GRACE_S)
        return process.returncode


@dataclass(frozen=True)
class LacunaApi:
    """The service's HTTP API as one caller (one API key) sees it."""

    url: str
    api_key: str = field(repr=False)
    timeout_s: float = 30.0

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._call("GET", path + (f"?{query}" if query else ""), None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", path, body or {})

    def text(self, path: str, **params: Any) -> str:
        """A route answering text (an HTML report)."""
        query = urllib.parse.urlencode(params)
        return self._request("GET", f"{path}?{query}" if query else path, None).decode()

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        raw = self._request(method, path, body)
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise ServiceError(f"{method} {path.split('?')[0]}: the answer is not JSON") from None

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> bytes:
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self.api_key}"}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method=method)
        route = f"{method} {path.split('?')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as err:
            raise ServiceError(f"{route} answered HTTP {err.code}: {_error_text(err)}") from None
        except (OSError, ValueError) as err:
            raise ServiceError(f"{route}: {self.url} is unreachable ({err})") from None

    # -- the calls the platform makes -------------------------------------------------------
    def create_key(self, role: str, name: str) -> str:
        """A new API key (admin only); the secret is shown once, here."""
        return str(self.post("/api/v1/keys", {"role": role, "name": name})["key"])


def _error_text(err: urllib.error.HTTPError) -> str:
    """The service's one-line message from its JSON error body, else the HTTP reason."""
    try:
        data = orjson.loads(err.read())
    except (orjson.JSONDecodeError, OSError):
        return str(err.reason)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"]).splitlines()[0]
    return str(err.reason)
