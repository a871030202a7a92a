"""The exceptions workflow over HTTP: request → approve / deny by a steward → time-boxed
validity → automatic expiry (or revocation). Every step is written to the audit chain.

The steward who decides is the API key's name (never a name in the body: the audit must say
who really approved). A request may name the steward it wants (``approver``); then only a key
with that name may approve it. An approval lasts what the steward grants, or what the request
asked for, never longer than the core's maximum (90 days).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.model import AuditRecord
from lacuna_orchestration.policy.exceptions import PolicyException
from lacuna_orchestration.server.auth import Principal
from lacuna_orchestration.server.deps import AppState, Caller, app_state
from lacuna_orchestration.server.responses import JSON
from lacuna_orchestration.server.schemas import ApproveRequest, DenyRequest, ExceptionCreate
from lacuna_orchestration.server.tenancy import TenantExceptionRegistry

__all__ = ["expire_due", "router"]

router = APIRouter(prefix="/api/v1/exceptions", tags=["exceptions"])


def _gov(request: Request, tenant: str) -> Governor:
    state: AppState = app_state(request)
    return state.governors.get(tenant)


def _registry(gov: Governor) -> TenantExceptionRegistry:
    registry = gov.exceptions
    if not isinstance(registry, TenantExceptionRegistry):  # built outside TenantGovernors
        raise TypeError("the governor's exception registry is not tenant-scoped")
    return registry


def _view(registry: TenantExceptionRegistry, exc: PolicyException) -> dict[str, Any]:
    meta = registry.meta(exc.id)
    return exc.to_dict() | {
        "requested_approver": meta.approver,
        "requested_duration_days": meta.duration_s / 86400 if meta.duration_s else None,
    }


def _audit_step(gov: Governor, action: str, exc: PolicyException, who: Principal,
                reason: str = "") -> None:
    gov.audit.append_many([AuditRecord(
        actor=who.name, action=action, resource=exc.id, reason=reason or exc.justification,
        via=who.via, details=exc.to_dict(), tenant=who.tenant,
    )])


@router.post("", status_code=201, summary="Request an exception (audited)")
def request_exception(request: Request, body: ExceptionCreate,
                      who: Caller.EXCEPTION_REQUEST) -> JSON:
    gov = _gov(request, who.tenant)
    registry = _registry(gov)
    requested_by = body.requested_by or who.name
    exc = registry.request(
        operation_kind=body.operation_kind, sources=tuple(body.sources),
        destination=body.destination, purpose=body.purpose, justification=body.justification,
        requested_by=requested_by, conditions=tuple(body.conditions), approver=body.approver,
        duration_s=int(body.duration_days * 86400) if body.duration_days else None,
        now=gov.clock(),
    )
    gov.audit.append_many([AuditRecord(
        actor=requested_by, action="exception.request", resource=exc.id,
        reason=exc.justification, via=who.via,
        details=_view(registry, exc) | {"submitted_by_key": who.key_id}, tenant=who.tenant,
    )])
    return JSON(_view(registry, exc), status_code=201)


@router.get("", summary="Exceptions of this tenant, newest first")
def list_exceptions(
    request: Request, who: Caller.CATALOG_READ,
    status: Annotated[str | None,
                      Query(description="requested, approved, denied, expired, revoked")] = None,
) -> JSON:
    gov = _gov(request, who.tenant)
    registry = _registry(gov)
    if status is not None and status not in {"requested", "approved", "denied", "expired",
                                             "revoked"}:
        raise ValidationError(f"unknown exception status {status!r}")
    return JSON({"exceptions": [_view(registry, e)
                                for e in registry.list(status=status, now=gov.clock())]})


@router.get("/{exception_id}", summary="One exception with its current status")
def get_exception(request: Request, exception_id: str, who: Caller.CATALOG_READ) -> JSON:
    gov = _gov(request, who.tenant)
    registry = _registry(gov)
    return JSON(_view(registry, registry.get(exception_id, now=gov.clock())))


@router.post("/{exception_id}/approve", summary="Approve for a bounded time (steward)")
def approve(request: Request, exception_id: str, body: ApproveRequest,
            who: Caller.EXCEPTION_DECIDE) -> JSON:
    gov = _gov(request, who.tenant)
    registry = _registry(gov)
    meta = registry.meta(exception_id)
    if meta.approver and meta.approver != who.name:
        raise ValidationError(
            f"exception {exception_id} asks for approval by {meta.approver}, not {who.name}"
        )
    if body.duration_days is not None:
        duration = timedelta(days=body.duration_days)
    elif meta.duration_s:
        duration = timedelta(seconds=meta.duration_s)
    else:
        raise ValidationError("duration_days is required: the request named no duration")
    # The registry directly (not the facade): the facade does not pass conditions on.
    exc = registry.approve(exception_id, who.name, duration, conditions=body.conditions,
                           now=gov.clock())
    _audit_step(gov, "exception.approve", exc, who)
    return JSON(_view(registry, exc))


@router.post("/{exception_id}/deny", summary="Deny with a reason (steward)")
def deny(request: Request, exception_id: str, body: DenyRequest,
         who: Caller.EXCEPTION_DECIDE) -> JSON:
    gov = _gov(request, who.tenant)
    exc = gov.deny_exception(exception_id, steward=who.name, reason=body.reason, via=who.via)
    return JSON(_view(_registry(gov), exc))


@router.post("/{exception_id}/revoke", summary="End an approved exception early (steward)")
def revoke(request: Request, exception_id: str, body: DenyRequest,
           who: Caller.EXCEPTION_DECIDE) -> JSON:
    gov = _gov(request, who.tenant)
    registry = _registry(gov)
    exc = registry.revoke(exception_id, who.name, body.reason, now=gov.clock())
    _audit_step(gov, "exception.revoke", exc, who, body.reason)
    return JSON(_view(registry, exc))


def expire_due(gov: Governor, actor: str = "lacuna", via: str = "scheduler") -> list[str]:
    """Write ``expired`` on exceptions whose time is up and audit each; return their ids."""
    expired = _registry(gov).expire_due(now=gov.clock())
    if expired:
        gov.audit.append_many([
            AuditRecord(actor=actor, action="exception.expire", resource=e.id,
                        reason="valid_until passed", via=via, details=e.to_dict(),
                        tenant=gov.settings.tenant)
            for e in expired
        ])
    return [e.id for e in expired]


@router.post("/expire", summary="Expire exceptions whose time is up now (also runs hourly)")
async def expire(request: Request, who: Caller.EXCEPTION_DECIDE) -> JSON:
    gov = await run_in_threadpool(_gov, request, who.tenant)
    ids = await run_in_threadpool(expire_due, gov, who.actor, who.via)
    return JSON({"expired": ids})
