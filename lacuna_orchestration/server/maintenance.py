"""Background duties of a running service: expire exceptions whose time is up, and verify the
audit chains (alerting on tampering) — each on its own period, on one daemon thread that stops
promptly on shutdown. A failing duty is logged and retried next period; it never stops the
others or the service."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Duty", "Maintenance"]

log = logging.getLogger(__name__)


@dataclass
class Duty:
    name: str
    period_s: float
    run: Callable[[], object]
    next_at: float = 0.0


class Maintenance:
    def __init__(self, duties: list[Duty]) -> None:
        self.duties = [d for d in duties if d.period_s > 0]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.duties or self._thread is not None:
            return
        now = time.monotonic()
        for duty in self.duties:
            duty.next_at = now + duty.period_s
        self._thread = threading.Thread(target=self._loop, name="lacuna-maintenance",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run_due(self, now: float | None = None) -> list[str]:
        """Run every duty whose time has come; returns their names (used by tests)."""
        now = time.monotonic() if now is None else now
        ran = []
        for duty in self.duties:
            if now >= duty.next_at:
                duty.next_at = now + duty.period_s
                try:
                    duty.run()
                except Exception:
                    log.exception("maintenance duty %s failed", duty.name)
                ran.append(duty.name)
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            wait = min(d.next_at for d in self.duties) - time.monotonic()
            self._stop.wait(max(0.05, wait))
