"""One ``Governor`` per tenant, each confined to its tenant's rows.

Every tenant gets its own governor (its own audit chain, graph and catalog rows, keyed by the
``tenant`` setting). On PostgreSQL each governor's engine connects with
``options=-c lacuna.tenant=<tenant>``: the row-level security policies of migration 0002
(``tenant = current_setting('lacuna.tenant', true)``) then confine every statement the core
runs to that tenant, without the core knowing. The setting is per *connection* rather than
``SET LOCAL`` per transaction because each tenant has its own pool: a connection can never
carry one tenant's setting into another tenant's request, and no core transaction needs a hook.

The core's exception registry has no tenant column yet; ``TenantExceptionRegistry`` records
which tenant requested each exception (``lacuna_exception_owners``, under RLS as well) and
hides the others from reads, approvals and the gate's lookup.
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.errors import NotFound, StoreError, ValidationError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.model import DatasetRef, OperationKind, utcnow
from lacuna_orchestration.policy.exceptions import (
    ExceptionRegistry,
    ExceptionStatus,
    PolicyException,
)
from lacuna_orchestration.server.config import TENANT_PATTERN, ServerSettings
from lacuna_orchestration.server.database import database_url_for, is_postgres_url
from lacuna_orchestration.server.tables import exception_owners_table
from lacuna_orchestration.settings import Settings

__all__ = ["ExceptionMeta", "GovernorFactory", "TenantExceptionRegistry", "TenantGovernors"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExceptionMeta:
    """What the service stores about an exception beyond the core's fields."""

    tenant: str
    approver: str = ""
    duration_s: int | None = None


class TenantExceptionRegistry(ExceptionRegistry):
    """The core registry seen through one tenant: only exceptions this tenant requested.

    A workaround until ``lacuna_exceptions`` has a tenant column (see the server report).
    """

    def __init__(self, engine: Engine, tenant: str, **kwargs: Any) -> None:
        super().__init__(engine, **kwargs)
        self.tenant = tenant
        self._requesting = threading.local()  # the base request() reads its row back

    def request(self, req: Any = None, *, now: datetime | None = None,
                approver: str = "", duration_s: int | None = None,
                **fields: Any) -> PolicyException:
        self._requesting.active = True
        try:
            exc = super().request(req, now=now, **fields)
        finally:
            self._requesting.active = False
        try:
            with self.engine.begin() as conn:
                conn.execute(exception_owners_table.insert().values(
                    exception_id=exc.id, tenant=self.tenant, approver=approver,
                    duration_s=duration_s,
                ))
        except SQLAlchemyError as err:
            reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
            raise StoreError(f"cannot record the owner of {exc.id}: {reason}") from None
        return exc

    def meta(self, exception_id: str) -> ExceptionMeta:
        found = self._owned([exception_id]).get(exception_id)
        if found is None:
            raise NotFound(f"no policy exception {exception_id!r}")
        return found

    def _owned(self, ids: Iterable[str] | None = None) -> dict[str, ExceptionMeta]:
        table = exception_owners_table
        query = select(table).where(table.c.tenant == self.tenant)
        if ids is not None:
            query = query.where(table.c.exception_id.in_(list(ids)))
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as err:
            reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
            raise StoreError(f"cannot read exception owners: {reason}") from None
        return {r.exception_id: ExceptionMeta(r.tenant, r.approver, r.duration_s) for r in rows}

    def get(self, exception_id: str, *, now: datetime | None = None) -> PolicyException:
        requesting = getattr(self._requesting, "active", False)
        if not requesting and exception_id not in self._owned([exception_id]):
            raise NotFound(f"no policy exception {exception_id!r}")
        return super().get(exception_id, now=now)

    def list(self, *, status: ExceptionStatus | str | None = None,
             requested_by: str | None = None,
             now: datetime | None = None) -> builtins.list[PolicyException]:
        owned = self._owned()
        return [e for e in super().list(status=status, requested_by=requested_by, now=now)
                if e.id in owned]

    def find_valid(self, operation_kind: OperationKind | str,
                   sources: Sequence[DatasetRef | str], destination: DatasetRef | str | None,
                   now: datetime | None = None) -> PolicyException | None:
        now = now or utcnow()
        valid = [e for e in self.list(status=ExceptionStatus.APPROVED, now=now)
                 if e.is_valid(now) and e.matches(operation_kind, sources, destination)]
        return max(valid, key=lambda e: e.valid_until or now, default=None)

    def expire_due(self, *, now: datetime | None = None) -> builtins.list[PolicyException]:
        owned = self._owned()
        return [e for e in super().expire_due(now=now) if e.id in owned]


GovernorFactory = Callable[[Settings], Governor]


class TenantGovernors:
    """Lazily built, cached governors, one per tenant; thread-safe."""

    def __init__(self, settings: ServerSettings, factory: GovernorFactory = Governor) -> None:
        self.settings = settings
        self._factory = factory
        self._governors: dict[str, Governor] = {}
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def settings_for(self, tenant: str) -> Settings:
        core = self.settings.core
        url = database_url_for(core, tenant, rls=self.settings.row_level_security)
        schema = None if is_postgres_url(core.database_url) else core.database_schema
        return core.replace(tenant=tenant, database_url=url, database_schema=schema)

    def get(self, tenant: str) -> Governor:
        gov = self._governors.get(tenant)
        if gov is not None:
            return gov
        with self._lock:
            lock = self._building.setdefault(tenant, threading.Lock())
        with lock:  # one build per tenant; other tenants are not held up
            gov = self._governors.get(tenant)
            if gov is None:
                if not TENANT_PATTERN.match(tenant):
                    raise ValidationError(f"invalid tenant {tenant!r}")
                gov = self._factory(self.settings_for(tenant))
                gov.exceptions = TenantExceptionRegistry(gov.engine, tenant)
                with self._lock:
                    self._governors[tenant] = gov
                log.info("governor for tenant %s ready (%d datasets)", tenant, len(gov.graph))
        return gov

    def cached(self, tenant: str) -> Governor | None:
        """The tenant's governor if it is built already (no I/O: safe on the event loop)."""
        return self._governors.get(tenant)

    def loaded(self) -> dict[str, Governor]:
        with self._lock:
            return dict(self._governors)

    def close(self) -> None:
        with self._lock:
            governors, self._governors = self._governors, {}
        for tenant, gov in governors.items():
            try:
                gov.close()
            except Exception:
                log.exception("closing the governor of tenant %s failed", tenant)
