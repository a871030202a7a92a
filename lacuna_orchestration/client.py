"""``RemoteGovernor``: the governor's ``ingest`` and ``check`` over HTTP, for integrations
that talk to a Lacuna service instead of embedding the core.

* ``check(operation)`` never raises for a transport problem: an unreachable server, a
  timeout, a 5xx or any answer that is not a decision gives a **fail-closed denial**
  (``allow=False``, ``error`` set, ``policy_id="lacuna.fail-closed"``) — the gate's rule.
* ``ingest(event)`` raises ``IngestError`` when the server refuses the event (4xx, the
  server's message naming the field) and ``StoreError`` when nothing was acknowledged
  (unreachable, timeout, 5xx) — lineage emission must never pass silently as stored.

Only the standard library (``urllib``), so the client installs with the core alone.

>>> gov = RemoteGovernor("http://127.0.0.1:8765", api_key="lcn_...")  # doctest: +SKIP
>>> gov.check(Operation("export", (DatasetRef("file", "analysis.csv"),),
...                     DatasetRef("file", "/tmp/export.csv"))).allow  # doctest: +SKIP
False
"""

from __future__ import annotations

import gzip
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson

from lacuna_orchestration.errors import IngestError, StoreError
from lacuna_orchestration.model import Decision, Operation

__all__ = ["FAIL_CLOSED_POLICY", "RemoteGovernor", "RemoteIngestResult"]

FAIL_CLOSED_POLICY = "lacuna.fail-closed"
_GZIP_ABOVE = 64 * 1024


@dataclass(frozen=True, slots=True)
class RemoteIngestResult:
    """What the service answered for one event (the subset of ``IngestResult`` that travels)."""

    decisions: tuple[Decision, ...]
    reclassified: tuple[str, ...] = ()
    audit_last_seq: int | None = None
    raw: dict[str, Any] | None = None

    @property
    def allowed(self) -> bool:
        return all(d.allow for d in self.decisions)

    @property
    def denials(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if not d.allow)


class _Failure(Exception):
    """A transport-level failure: nothing trustworthy came back."""


class RemoteGovernor:
    """Client of a Lacuna service (``lacuna serve`` / ``lacuna dev``)."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"RemoteGovernor url must be http(s)://..., got {url!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = float(timeout_s)

    def __repr__(self) -> str:
        return f"RemoteGovernor({self.url!r})"

    # -- transport ---------------------------------------------------------------------------
    def _post(self, path: str, payload: bytes) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "lacuna-remote-governor"}
        if len(payload) > _GZIP_ABOVE:
            payload = gzip.compress(payload, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, data=payload, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        except TimeoutError:
            raise _Failure(f"{self.url} did not answer within {self.timeout_s:g} s") from None
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Failure(f"{self.url} did not answer within {self.timeout_s:g} s") from None
            raise _Failure(f"{self.url} is unreachable: {reason}") from None
        except (OSError, ValueError) as err:
            raise _Failure(f"{self.url} failed: {type(err).__name__}: {err}") from None
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            data = {"error": {"message": body[:200].decode("utf-8", "replace")}}
        return status, data if isinstance(data, dict) else {"value": data}

    @staticmethod
    def _message(status: int, data: dict[str, Any]) -> str:
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            field = f" (field {error['field']})" if error.get("field") else ""
            return f"HTTP {status}: {error['message']}{field}"
        return f"HTTP {status}"

    # -- the governor's interface ---------------------------------------------------------
    def ingest(self, event: Any, *, via: str | None = None,
               actor: str | None = None) -> RemoteIngestResult:
        """Post one OpenLineage event (dict, JSON text/bytes or openlineage-python object).

        ``via``/``actor`` are accepted for interface parity with ``Governor.ingest``; the
        service records the API key as the channel and the event's user as the actor.
        """
        payload = _event_bytes(event)
        try:
            status, data = self._post("/api/v1/lineage", payload)
        except _Failure as err:
            raise StoreError(f"lineage not stored: {err}") from None
        if status == 201:
            decisions = tuple(Decision.from_dict(d) for d in data.get("decisions", ()))
            audit = data.get("audit") or {}
            return RemoteIngestResult(decisions, tuple(data.get("reclassified", ())),
                                      audit.get("last_seq"), data)
        if 400 <= status < 500:
            raise IngestError(f"{self.url} refused the event: {self._message(status, data)}")
        raise StoreError(f"lineage not stored: {self.url} answered "
                         f"{self._message(status, data)}")

    def check(self, operation: Operation, *, via: str | None = None) -> Decision:
        """Ask the service's gate; any failure to get a decision is a fail-closed denial."""
        try:
            status, data = self._post("/api/v1/check", orjson.dumps(operation.to_dict()))
        except _Failure as err:
            return _fail_closed(operation, str(err))
        if status == 200 and isinstance(data.get("decision"), dict):
            try:
                return Decision.from_dict(data["decision"])
            except (KeyError, TypeError, ValueError) as err:
                return _fail_closed(operation, f"{self.url} answered a malformed decision: "
                                               f"{err}")
        return _fail_closed(operation, f"{self.url} answered {self._message(status, data)}")


def _event_bytes(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode("utf-8")
    if isinstance(event, dict):
        try:
            return orjson.dumps(event)
        except TypeError as err:
            raise IngestError(f"event is not JSON-serialisable: {err}") from None
    if type(event).__module__.startswith("openlineage."):
        from openlineage.client.serde import Serde

        return Serde.to_json(event).encode("utf-8")
    raise IngestError(
        f"cannot send a {type(event).__name__}: pass a dict, JSON text or an OpenLineage event"
    )


def _fail_closed(operation: Operation, reason: str) -> Decision:
    destination = operation.destination.key if operation.destination else ""
    return Decision(
        allow=False,
        action=operation.kind.value,
        reasons=(f"no decision from the Lacuna service, so the gate fails closed: {reason}",),
        alternatives=("Retry when the Lacuna service is reachable",
                      "Ask the platform team to check the Lacuna service"),
        policy_id=FAIL_CLOSED_POLICY,
        source=", ".join(s.name for s in operation.sources),
        destination=destination,
        error=reason,
    )
