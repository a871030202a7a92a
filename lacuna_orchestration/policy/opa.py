"""A policy backend that asks a real OPA server over its Data API.

``POST {url}/v1/data/lacuna/decisions?provenance=true`` with ``{"input": ...}``; OPA answers
``{"result": ..., "provenance": {...}}``. A response without ``result`` means the document is
undefined (the bundle is not loaded, or the path is wrong) and is an error, never an allow.
The same ``policies/`` folder the embedded engine runs is what OPA should serve
(``opa run --server policies/``), so both backends give the same decisions.

Only the standard library: one keep-alive ``http.client`` connection per thread (reused, so a
decision costs one round trip, not a TCP handshake), a timeout on every socket operation,
and every failure — refused, timed out, non-200, not JSON, undefined — raised as a one-line
``PolicyError`` that the decider turns into a fail-closed denial.

>>> engine = OpaRestEngine("http://127.0.0.1:8181", timeout_s=2.0)  # doctest: +SKIP
>>> engine.evaluate({"action": "read"})[0].policy_id  # doctest: +SKIP
'export-governance'
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from lacuna_orchestration.errors import PolicyError
from lacuna_orchestration.policy.engine import (
    PolicyEngine,
    PolicyResult,
    register_engine,
    results_from_document,
)

if TYPE_CHECKING:
    from lacuna_orchestration.settings import Settings

__all__ = ["OpaRestEngine"]

# A reused keep-alive connection the server already closed fails on first use with one of
# these; one retry on a fresh connection is safe because evaluating a query has no effects.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@register_engine("opa")
class OpaRestEngine(PolicyEngine):
    """Client of OPA's Data API for the bundle's entry point (``package_path``)."""

    def __init__(
        self,
        url: str,
        package_path: str = "lacuna/decisions",
        timeout_s: float = 2.0,
        *,
        token: str | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PolicyError(f"OPA url must be http(s)://host[:port], got {url!r}")
        if timeout_s <= 0:
            raise PolicyError(f"OPA timeout must be positive, got {timeout_s}")
        self.url = url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        prefix = parsed.path.rstrip("/")
        self._path = f"{prefix}/v1/data/{package_path.strip('/')}?provenance=true"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._connections_lock = threading.Lock()
        self._revision = f"opa:{self.url}"
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> OpaRestEngine:
        return cls(settings.opa_url, timeout_s=settings.opa_timeout_s)

    @property
    def revision(self) -> str:
        """``opa:<bundle>=<revision>,...`` from the last answer's provenance, or ``opa:<url>``
        before the first answer or when OPA serves no bundle."""
        return self._revision

    def reload(self) -> None:
        """OPA owns the policies; drop the connections so the next call reconnects."""
        self._drop_all()

    def close(self) -> None:
        self._closed = True
        self._drop_all()

    # -- transport

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            factory = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            conn = factory(self._host, self._port, timeout=self.timeout_s)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _drop_all(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def _post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request("POST", self._path, body=body, headers=self._headers)
                response = conn.getresponse()
                return response.status, response.read()
            except _STALE:
                self._drop()
                if attempt == 2 or not reused:
                    raise
            except BaseException:
                self._drop()  # never reuse a connection in an unknown state
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure(self, err: BaseException) -> PolicyError:
        if isinstance(err, TimeoutError | socket.timeout):
            return PolicyError(f"OPA at {self.url} did not answer within {self.timeout_s:g} s")
        if isinstance(err, ConnectionRefusedError):
            return PolicyError(f"OPA at {self.url} refused the connection")
        if isinstance(err, socket.gaierror):
            return PolicyError(f"OPA host {self._host!r} cannot be resolved: {err.strerror}")
        if isinstance(err, OSError | http.client.HTTPException):
            return PolicyError(f"OPA at {self.url} failed: {type(err).__name__}: {err}")
        return PolicyError(f"OPA at {self.url} failed: {err!r}")

    # -- evaluating

    def evaluate(self, input_doc: Mapping[str, Any]) -> list[PolicyResult]:
        return results_from_document(self.evaluate_document(input_doc))

    def evaluate_document(self, input_doc: Mapping[str, Any]) -> Any:
        """The entry point's value as OPA returns it in ``result``."""
        if self._closed:
            raise PolicyError("the OPA policy engine is closed")
        try:
            body = orjson.dumps({"input": input_doc})
        except TypeError as err:
            raise PolicyError(f"policy input is not JSON-serialisable: {err}") from None
        try:
            status, payload = self._post(body)
        except (OSError, http.client.HTTPException) as err:
            raise self._failure(err) from err
        if status != 200:
            raise PolicyError(f"OPA at {self.url} answered HTTP {status}: {_message(payload)}")
        try:
            answer = orjson.loads(payload)
        except orjson.JSONDecodeError as err:
            raise PolicyError(f"OPA at {self.url} answered with invalid JSON: {err}") from None
        if not isinstance(answer, dict) or "result" not in answer:
            raise PolicyError(
                f"OPA at {self.url}: {self._path.split('?')[0]} is undefined "
                "(is the lacuna policy bundle loaded?)"
            )
        self._note_provenance(answer.get("provenance"))
        return answer["result"]

    def _note_provenance(self, provenance: Any) -> None:
        if not isinstance(provenance, dict):
            return
        bundles = provenance.get("bundles")
        if isinstance(bundles, dict) and bundles:
            revisions = ",".join(
                f"{name}={info.get('revision', '') if isinstance(info, dict) else ''}"
                for name, info in sorted(bundles.items())
            )
            self._revision = f"opa:{revisions}"


def _message(payload: bytes) -> str:
    """OPA's error body is ``{"code": ..., "message": ...}``; fall back to the raw text."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        text = payload.decode("utf-8", "replace").strip()
        return text.splitlines()[0][:200] if text else "(empty body)"
    if isinstance(body, dict) and "message" in body:
        code = body.get("code")
        return f"{code}: {body['message']}" if code else str(body["message"])
    return str(body)[:200]
