"""What every route depends on: the service state, the caller, the caller's governor.

``require(permission)`` is the one place a route's role check happens. A refused request with
a valid key is written to the tenant's audit chain (``access.denied``: the A.9.4 report counts
them); a request without a valid key is not — it names no tenant, and letting anonymous
traffic append to a chain would let anyone grow it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from lacuna_orchestration.alerts import Alert, AlertDispatcher, denial_alert
from lacuna_orchestration.errors import LacunaError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.model import AuditRecord, Decision
from lacuna_orchestration.server.auth import ApiKeyStore, AuthError, Permission, Principal
from lacuna_orchestration.server.config import ServerSettings
from lacuna_orchestration.server.maintenance import Maintenance
from lacuna_orchestration.server.tenancy import TenantGovernors

__all__ = [
    "AppState",
    "Caller",
    "app_state",
    "audit",
    "authenticated",
    "graph_lock",
    "require",
]

log = logging.getLogger(__name__)


@dataclass
class AppState:
    """Everything one app instance owns; closed on shutdown."""

    settings: ServerSettings
    keys: ApiKeyStore
    governors: TenantGovernors
    system_engine: Engine
    alerts: AlertDispatcher | None = None
    maintenance: Maintenance | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def alert(self, alert: Alert) -> None:
        if self.alerts is not None:
            self.alerts.send(alert)

    def alert_denials(self, decisions: list[Decision], *, tenant: str, actor: str) -> None:
        if self.alerts is None or not self.settings.alert_on_denials:
            return
        for decision in decisions:
            self.alerts.send(denial_alert(decision, tenant=tenant, actor=actor))


def app_state(request: Request) -> AppState:
    return request.app.state.lacuna  # type: ignore[no-any-return]


async def _app_state(request: Request) -> AppState:
    """``app_state`` as a dependency: async, so FastAPI calls it on the event loop (a plain
    ``def`` dependency costs every request a hop to a worker thread and back)."""
    return app_state(request)


State = Annotated[AppState, Depends(_app_state)]


def _token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key", "").strip()


async def authenticated(request: Request, state: State) -> Principal:
    """The caller behind ``Authorization: Bearer <key>`` (or ``X-API-Key``). A cached key is
    checked on the event loop; only a cache miss goes to a worker thread for the database."""
    token = _token(request)
    who = state.keys.authenticate_cached(token)
    if who is None:
        who = await run_in_threadpool(state.keys.authenticate, token)
    return who


def require(permission: Permission) -> Callable[..., Any]:
    """A dependency giving the caller when its role grants ``permission``, else 403."""

    async def dependency(
        request: Request, state: State, who: Annotated[Principal, Depends(authenticated)]
    ) -> Principal:
        if who.can(permission):
            return who
        try:
            gov = await run_in_threadpool(state.governors.get, who.tenant)
            await run_in_threadpool(
                audit, gov, who, "access.denied", request.url.path,
                f"role {who.role.value} lacks {permission.value}",
                {"method": request.method, "permission": permission.value,
                 "role": who.role.value})
        except LacunaError as err:
            log.warning("could not audit a refused request: %s", err)
        raise AuthError(403, f"role {who.role.value!r} may not {permission.value} "
                        f"({request.method} {request.url.path})", who)

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


def audit(gov: Governor, who: Principal, action: str, resource: str, reason: str,
          details: Mapping[str, Any] | None = None) -> AuditRecord:
    """Append one service-level record (key management, feedback, archive, refusals) to the
    tenant's chain; returns it linked and committed."""
    record = AuditRecord(actor=who.actor, action=action, resource=resource, reason=reason,
                         via=who.via, details=dict(details or {}), tenant=who.tenant)
    return gov.append_audit([record])[0]


@contextmanager
def graph_lock(gov: Governor) -> Iterator[None]:
    """Hold the governor's graph still, and current with what other workers committed,
    while a route walks it (see ``Governor.reading``)."""
    with gov.reading():
        yield


class Caller:
    """Typed shortcuts: ``who: Caller.LINEAGE_WRITE`` in a route signature."""

    LINEAGE_WRITE = Annotated[Principal, Depends(require(Permission.LINEAGE_WRITE))]
    GATE_CHECK = Annotated[Principal, Depends(require(Permission.GATE_CHECK))]
    CATALOG_READ = Annotated[Principal, Depends(require(Permission.CATALOG_READ))]
    EXCEPTION_REQUEST = Annotated[Principal, Depends(require(Permission.EXCEPTION_REQUEST))]
    EXCEPTION_DECIDE = Annotated[Principal, Depends(require(Permission.EXCEPTION_DECIDE))]
    OVERRIDE = Annotated[Principal, Depends(require(Permission.CLASSIFICATION_OVERRIDE))]
    FEEDBACK = Annotated[Principal, Depends(require(Permission.FEEDBACK))]
    AUDIT_READ = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]
    AUDIT_ARCHIVE = Annotated[Principal, Depends(require(Permission.AUDIT_ARCHIVE))]
    KEYS_MANAGE = Annotated[Principal, Depends(require(Permission.KEYS_MANAGE))]
