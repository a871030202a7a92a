"""Audit records (paged, filtered), chain verification, compliance reports, retention archive.

Paging is by sequence number: ``after_seq`` in, ``next_after_seq`` out (``null`` at the end),
so a reader never skips or repeats a record while others append.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from lacuna_orchestration.alerts import tampering_alert
from lacuna_orchestration.audit.reports import REPORT_KINDS, build_for_governor, render_html
from lacuna_orchestration.audit.retention import archive_records, verify_continuity
from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.server.deps import AppState, Caller, app_state, audit, graph_lock
from lacuna_orchestration.server.responses import JSON
from lacuna_orchestration.server.schemas import ArchiveRequest

__all__ = ["router", "verify_and_alert"]

router = APIRouter(prefix="/api/v1", tags=["audit and reports"])


def _gov(request: Request, tenant: str) -> Governor:
    state: AppState = app_state(request)
    return state.governors.get(tenant)


@router.get("/audit/records", summary="Audit records in chain order, paged and filtered")
def records(
    request: Request, who: Caller.AUDIT_READ,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: str | None = None, actor: str | None = None, run_id: str | None = None,
    since: Annotated[str | None, Query(description="ISO 8601, inclusive")] = None,
    until: Annotated[str | None, Query(description="ISO 8601, exclusive")] = None,
) -> JSON:
    gov = _gov(request, who.tenant)
    page = list(gov.audit.records(after_seq, limit, action=action, actor=actor, run_id=run_id,
                                  since=since, until=until))
    return JSON({"records": [r.to_dict() for r in page],
                 "next_after_seq": page[-1].seq if len(page) == limit else None})


@router.get("/audit/head", summary="The committed head of this tenant's chain")
def head(request: Request, who: Caller.AUDIT_READ) -> JSON:
    gov = _gov(request, who.tenant)
    h = gov.audit.head()
    return JSON({"tenant": who.tenant, "seq": h.seq, "hash": h.hash})


def verify_and_alert(state: AppState, gov: Governor) -> dict[str, object]:
    report = gov.verify_audit()
    if not report.ok:
        state.alert(tampering_alert(report, tenant=gov.settings.tenant))
    return {"ok": report.ok, "count": report.count, "head_hash": report.head_hash,
            "first_bad_seq": report.first_bad_seq,
            "first_bad_record_id": report.first_bad_record_id, "problem": report.problem,
            "tenant": report.tenant, "message": report.message}


@router.get("/audit/verify", summary="Recompute every link of the chain (alerts when broken)")
def verify(request: Request, who: Caller.AUDIT_READ) -> JSON:
    state: AppState = app_state(request)
    return JSON(verify_and_alert(state, state.governors.get(who.tenant)))


@router.post("/audit/archive", summary="Archive old records to NDJSON.gz with chain anchors")
def archive(request: Request, body: ArchiveRequest, who: Caller.AUDIT_ARCHIVE) -> JSON:
    state: AppState = app_state(request)
    gov = state.governors.get(who.tenant)
    result = archive_records(gov.audit, state.settings.archive_dir,
                             older_than=timedelta(days=body.older_than_days))
    continuity = verify_continuity(state.settings.archive_dir, who.tenant, gov.audit)
    if result.path is not None:
        audit(gov, who, "audit.archive", result.path.name,
              f"archived {result.count} record(s) older than {result.cutoff}",
              result.to_dict() | {"path": result.path.name})
    return JSON({"archive": result.to_dict(), "continuity": continuity.to_dict()})


@router.get("/reports/{kind}", summary="A compliance report for a period (JSON or HTML)",
            description="Kinds: " + ", ".join(REPORT_KINDS), response_model=None)
async def report(
    request: Request, kind: str, who: Caller.AUDIT_READ,
    since: Annotated[str | None, Query(description="ISO 8601")] = None,
    until: Annotated[str | None, Query(description="ISO 8601; default now")] = None,
    format: Annotated[Literal["json", "html"], Query()] = "json",
) -> Response:
    if kind not in REPORT_KINDS:
        raise ValidationError(f"unknown report {kind!r}; choose one of {', '.join(REPORT_KINDS)}")
    gov = await run_in_threadpool(_gov, request, who.tenant)

    data = await run_in_threadpool(lambda: build_for_governor(
        gov, kind, since=since, until=until, lock=graph_lock(gov)))
    if format == "html":
        return HTMLResponse(render_html(data))
    return JSON(data)
