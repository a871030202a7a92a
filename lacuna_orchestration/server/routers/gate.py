"""The gate (``POST /api/v1/check``), decisions, steward feedback on them, and metrics.

A denial is an answer, not an error: ``/check`` returns 200 with ``allow: false`` and the
message an orchestrator shows. Every check is audited (``gate.check``) by the governor.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from lacuna_orchestration.errors import NotFound
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.model import format_timestamp, parse_timestamp
from lacuna_orchestration.server.deps import AppState, Caller, app_state, audit, graph_lock
from lacuna_orchestration.server.feedback import FeedbackStore
from lacuna_orchestration.server.metrics import governance_metrics
from lacuna_orchestration.server.responses import JSON
from lacuna_orchestration.server.schemas import CheckRequest, CheckResponse, FeedbackRequest

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["gate and decisions"])

FEEDBACK_SCAN = 10_000


def _gov(request: Request, tenant: str) -> Governor:
    state: AppState = app_state(request)
    return state.governors.get(tenant)


@router.post("/check", response_model=CheckResponse,
             summary="May this operation happen? (audited; fails closed)")
def check(request: Request, body: CheckRequest, who: Caller.GATE_CHECK) -> JSON:
    state: AppState = app_state(request)
    gov = state.governors.get(who.tenant)
    with graph_lock(gov):
        operation = body.to_operation(gov.ref, user=who.actor,
                                      environment=gov.settings.environment)
    decision = gov.check(operation, via=who.via)
    if not decision.allow:
        state.alert_denials([decision], tenant=who.tenant, actor=operation.user)
    return JSON({"allow": decision.allow, "message": decision.message,
                 "decision": decision.to_dict()})


@router.get("/decisions", summary="Recent policy decisions, newest first")
def decisions(
    request: Request, who: Caller.CATALOG_READ,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    allow: Annotated[bool | None, Query(description="true/false to filter")] = None,
    since: Annotated[str | None, Query(description="ISO 8601 timestamp")] = None,
) -> JSON:
    gov = _gov(request, who.tenant)
    since_text = format_timestamp(parse_timestamp(since)) if since else None
    found = list(gov.catalog.decisions(limit=limit, allow=allow, since=since_text))
    verdicts = FeedbackStore(gov.engine, who.tenant).for_decisions(d.decision_id for d in found)
    return JSON({"decisions": [
        d.to_dict() | {"message": d.message,
                       "feedback": verdicts[d.decision_id].to_dict()
                       if d.decision_id in verdicts else None}
        for d in found
    ]})


@router.post("/decisions/{decision_id}/feedback", status_code=201,
             summary="A steward's verdict on a decision (feeds the false-positive rate)")
async def feedback(request: Request, decision_id: str, body: FeedbackRequest,
                   who: Caller.FEEDBACK) -> JSON:
    gov = await run_in_threadpool(_gov, request, who.tenant)

    def store() -> JSON:
        if not any(d.decision_id == decision_id
                   for d in gov.catalog.decisions(limit=FEEDBACK_SCAN)):
            raise NotFound(f"no decision {decision_id!r} among the last {FEEDBACK_SCAN:,}")
        item = FeedbackStore(gov.engine, who.tenant).put(decision_id, body.verdict, who.name,
                                                         body.note)
        record = audit(gov, who, "decision.feedback", decision_id,
                       f"steward verdict: {body.verdict}", item.to_dict())
        return JSON({"feedback": item.to_dict(), "audit_seq": record.seq}, status_code=201)

    return await run_in_threadpool(store)


@router.get("/metrics", summary="Governance metrics for a window")
def metrics(request: Request, who: Caller.CATALOG_READ,
            since: Annotated[str | None, Query()] = None,
            until: Annotated[str | None, Query()] = None) -> JSON:
    gov = _gov(request, who.tenant)
    return JSON(governance_metrics(gov, FeedbackStore(gov.engine, who.tenant), since=since,
                                   until=until, lock=graph_lock(gov)))
