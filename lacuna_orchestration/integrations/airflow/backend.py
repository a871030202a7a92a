"""Which Lacuna the Airflow integration talks to, opened once per process.

``[lacuna] server_url`` set → a ``RemoteGovernor`` (HTTP, with a timeout); otherwise the
governor runs inside the Airflow process (``Governor.open`` over the ``LACUNA_*`` settings or
``[lacuna] config_file``). Opening costs a database connection, the policy bundle and the
lineage graph, so it happens once per process and is shared by the listener and the gate;
Airflow forks task processes, so a handle opened by a parent is never reused in a child.

Both kinds expose the same two calls: ``ingest(event)`` and ``check(operation)``.

>>> backend = get_backend()                                   # doctest: +SKIP
>>> backend.check(Operation("export", (src,), dst)).allow     # doctest: +SKIP
False
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from lacuna_orchestration.errors import ConfigError, LacunaError, StoreError
from lacuna_orchestration.integrations.airflow import config
from lacuna_orchestration.lineage.events import waits_for_commit
from lacuna_orchestration.model import Decision, Operation

__all__ = ["Backend", "BackendDefaults", "get_backend", "reset_backend", "set_backend"]


@dataclass(frozen=True, slots=True)
class BackendDefaults:
    """Values an operation needs when the task does not say: who and in which environment."""

    user: str = "airflow"
    environment: str = "production"


class Backend:
    """One Lacuna, local or remote, behind the two calls the integration makes."""

    def __init__(self, target: Any, *, remote: bool, defaults: BackendDefaults,
                 description: str) -> None:
        # ``target`` is a Governor or a RemoteGovernor: the same two methods.
        self.target = target
        self.remote = remote
        self.defaults = defaults
        self.description = description

    @classmethod
    def for_governor(cls, governor: Any) -> Backend:
        """Wrap an open in-process ``Governor`` (tests, benchmarks, embedding applications)."""
        s = governor.settings
        return cls(governor, remote=False,
                   defaults=BackendDefaults(user=s.user or "airflow", environment=s.environment),
                   description=f"in process, store {s.database_url}")

    def ingest(self, event: dict[str, Any], *, via: str) -> Any:
        """``IngestResult`` (local) or ``RemoteIngestResult``; raises ``LacunaError``.

        In process, a task's START joins the next group commit without waiting for it; its
        SUCCESS/FAIL event waits, and cannot commit before it (``waits_for_commit``), but
        not for the disk: the governor's committer syncs it milliseconds later (and
        before the process exits)."""
        if self.remote:
            return self.target.ingest(event, via=via)
        return self.target.ingest(event, via=via, durable=waits_for_commit(event), synced=False)

    def check(self, operation: Operation, *, via: str, durable: bool = True) -> Decision:
        """The audited decision; a remote Lacuna that cannot answer gives a fail-closed
        denial rather than raising. In process, ``durable=False`` queues an allowed
        decision's record for the next group commit (the gate of a task whose end event
        waits for it); a denial always waits for its commit (the task fails next)."""
        if self.remote:
            decision: Decision = self.target.check(operation, via=via)
        else:
            decision = self.target.check(operation, via=via, durable=durable)
        return decision

    def close(self) -> None:
        close = getattr(self.target, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"Backend({self.description})"


def open_backend() -> Backend:
    """A new handle from the current configuration. Raises ``ConfigError``/``StoreError``
    (one line, with the reason) when Lacuna cannot be reached or configured."""
    from lacuna_orchestration.settings import Settings

    config_file = config.config_file() or None
    settings = Settings.load(config_file)
    defaults = BackendDefaults(user=settings.user or "airflow", environment=settings.environment)
    url = config.server_url()
    if url:
        try:
            from lacuna_orchestration.client import RemoteGovernor
        except ImportError as err:
            raise ConfigError(
                f"[lacuna] server_url is set but the Lacuna client cannot be imported: {err}"
            ) from None
        try:
            client = RemoteGovernor(url, api_key=config.api_key() or None,
                                    timeout_s=config.timeout_s())
        except ValueError as err:
            raise ConfigError(f"[lacuna] server_url / timeout_s: {err}") from None
        return Backend(client, remote=True, defaults=defaults, description=f"server {url}")
    from lacuna_orchestration.governor import Governor

    try:
        gov = Governor(settings)
    except LacunaError:
        raise
    except Exception as err:
        raise StoreError(f"cannot open the Lacuna store {settings.database_url}: {err}") from err
    return Backend(gov, remote=False, defaults=defaults,
                   description=f"in process, store {settings.database_url}")


RETRY_AFTER_S = 10.0

_lock = threading.Lock()
_handle: tuple[int, Backend] | None = None
_failure: tuple[int, float, LacunaError] | None = None


def get_backend() -> Backend:
    """This process's handle, opened on first use (and again after a fork).

    When opening fails, the same error is raised again for ``RETRY_AFTER_S`` seconds without
    a new attempt: a store that is down must not cost every task hook a connection timeout.
    """
    global _handle, _failure
    pid = os.getpid()
    current = _handle
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        if _handle is not None and _handle[0] == pid:
            return _handle[1]
        if (_failure is not None and _failure[0] == pid
                and time.monotonic() - _failure[1] < RETRY_AFTER_S):
            raise _failure[2]
        try:
            backend = open_backend()
        except LacunaError as err:
            _failure = (pid, time.monotonic(), err)
            raise
        _failure = None
        _handle = (pid, backend)
        return backend


def set_backend(backend: Backend | None) -> None:
    """Install a handle for this process (tests, benchmarks, embedding applications)."""
    global _handle, _failure
    with _lock:
        _handle = (os.getpid(), backend) if backend is not None else None
        _failure = None


def reset_backend() -> None:
    """Close and forget this process's handle; the next call opens a fresh one."""
    global _handle, _failure
    with _lock:
        current, _handle, _failure = _handle, None, None
    if current is not None and current[0] == os.getpid():
        current[1].close()
