"""Alerts: tell people when the gate denies or the audit chain stops verifying.

Sinks are pluggable the way policy engines are (``@register_sink(kind)``); the built-in
``webhook`` sink posts Slack-compatible JSON (``{"text": ...}``) that Slack, Mattermost, Teams
workflows and most chat bridges accept as is.

Alerts never slow down or fail the request that caused them: ``AlertDispatcher.send`` puts the
alert on a bounded queue and returns; one background thread delivers, retrying once. When the
queue is full the alert is dropped and counted (a flood of denials must not exhaust memory).
``close`` delivers what is queued, up to a timeout.

>>> dispatcher = AlertDispatcher([WebhookSink("http://127.0.0.1:9/hook")])  # doctest: +SKIP
>>> dispatcher.send(Alert("denial", "Export denied", "analysis.csv → /tmp/export.csv"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import orjson

from lacuna_orchestration.errors import ConfigError, LacunaError
from lacuna_orchestration.model import Decision, format_timestamp, utcnow

__all__ = [
    "Alert",
    "AlertDelivery",
    "AlertDispatcher",
    "AlertSink",
    "WebhookSink",
    "create_sink",
    "denial_alert",
    "register_sink",
    "tampering_alert",
]

log = logging.getLogger(__name__)


class AlertDelivery(LacunaError):
    """A sink could not deliver an alert."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing worth telling someone: a kind (``denial``, ``tampering``), a one-line title,
    the text a person reads, and structured details for machines."""

    kind: str
    title: str
    text: str
    tenant: str = "default"
    details: Mapping[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: format_timestamp(utcnow()))

    def message(self) -> str:
        return f"*{self.title}* (tenant {self.tenant})\n{self.text}"


class AlertSink(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def deliver(self, alert: Alert) -> None:
        """Deliver or raise ``AlertDelivery``."""


S = TypeVar("S", bound=type[AlertSink])
_SINKS: dict[str, type[AlertSink]] = {}


def register_sink(kind: str) -> Callable[[S], S]:
    def decorate(cls: S) -> S:
        if kind in _SINKS and _SINKS[kind] is not cls:
            raise ConfigError(f"alert sink kind {kind!r} is already registered")
        cls.kind = kind
        _SINKS[kind] = cls
        return cls

    return decorate


def create_sink(kind: str, **options: Any) -> AlertSink:
    try:
        cls = _SINKS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown alert sink {kind!r}; use one of {', '.join(sorted(_SINKS))}"
        ) from None
    return cls(**options)


@register_sink("webhook")
class WebhookSink(AlertSink):
    """POST ``{"text": ...}`` as JSON to an incoming-webhook URL (Slack-compatible)."""

    def __init__(self, url: str, timeout_s: float = 3.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"alert webhook url must be http(s), got {url!r}")
        self.url = url
        self.timeout_s = timeout_s

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {"text": alert.message()}

    def deliver(self, alert: Alert) -> None:
        body = orjson.dumps(self.payload(alert))
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "lacuna-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as err:
            raise AlertDelivery(f"webhook {self.url} answered HTTP {err.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise AlertDelivery(f"webhook {self.url} unreachable: {reason}") from None


_STOP = object()


class AlertDispatcher:
    """Deliver alerts to every sink from one background thread, off the request path."""

    def __init__(self, sinks: Iterable[AlertSink], *, max_queue: int = 1000,
                 retry_delay_s: float = 0.5) -> None:
        self.sinks = list(sinks)
        self.retry_delay_s = retry_delay_s
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lacuna-alerts", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> bool:
        """Queue ``alert``; False when it was dropped (queue full or dispatcher closed)."""
        if self._closed or not self.sinks:
            return False
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            log.warning("alert queue full; dropped %s alert %r", alert.kind, alert.title)
            return False
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far was handled; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self, timeout_s: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                for sink in self.sinks:
                    self._deliver(sink, item)
            finally:
                self._queue.task_done()

    def _deliver(self, sink: AlertSink, alert: Alert) -> None:
        for attempt in (1, 2):
            try:
                sink.deliver(alert)
            except AlertDelivery as err:
                if attempt == 2:
                    self.failed += 1
                    log.warning("alert %r not delivered: %s", alert.title, err)
                    return
                time.sleep(self.retry_delay_s)
            except Exception:
                self.failed += 1
                log.exception("alert sink %s failed", sink.kind)
                return
            else:
                self.sent += 1
                return


def denial_alert(decision: Decision, *, tenant: str, actor: str = "") -> Alert:
    """An alert for a denied operation, carrying the same message the orchestrator shows."""
    what = f"{decision.action} {decision.source or '?'} → {decision.destination or '?'}"
    title = "Fail-closed denial" if decision.error else "Governance policy denial"
    return Alert(
        kind="denial",
        title=f"{title}: {what}",
        text=decision.message + (f"\nRequested by: {actor}" if actor else ""),
        tenant=tenant,
        details={"decision_id": decision.decision_id, "policy_id": decision.policy_id,
                 "action": decision.action, "source": decision.source,
                 "destination": decision.destination, "actor": actor},
    )


def tampering_alert(report: Any, *, tenant: str) -> Alert:
    """An alert for an audit chain that no longer verifies (``VerifyReport``)."""
    return Alert(
        kind="tampering",
        title=f"Audit chain broken at seq {report.first_bad_seq}",
        text=f"{report.message}\nRun `lacuna audit verify` and preserve the database for "
             "investigation; do not write to it until the cause is known.",
        tenant=tenant,
        details={"first_bad_seq": report.first_bad_seq,
                 "first_bad_record_id": report.first_bad_record_id,
                 "problem": report.problem, "verified_before": report.count},
    )
