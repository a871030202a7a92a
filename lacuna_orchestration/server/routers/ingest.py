"""``POST /api/v1/lineage``: what OpenLineage's ``HttpTransport`` sends, and an NDJSON batch.

One event per request, JSON, optionally gzip-compressed. The answer is 201 once the event's
catalog rows and audit records are committed (group-committed with the requests around it) — with
the policy decisions for the event's outputs, so a producer that cares can act on a denial.
A client mistake is a 4xx naming the field; nothing is written for a refused event.

The batch endpoint (``POST /api/v1/lineage/batch``, NDJSON or a JSON array) validates every
event before writing any: one bad line refuses the whole batch (400 naming the line and the
field). Valid batches are then ingested in order; if the database fails midway the answer
(503) says how many leading events were committed, so a retry can start after them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from lacuna_orchestration.errors import IngestError, StoreError
from lacuna_orchestration.governor import Governor, IngestResult
from lacuna_orchestration.lineage.openlineage import LineageEvent, parse_event
from lacuna_orchestration.server.body import JSON_TYPES, NDJSON_TYPES, read_body
from lacuna_orchestration.server.deps import AppState, Caller, app_state
from lacuna_orchestration.server.errors import ApiError, error_body, field_of
from lacuna_orchestration.server.responses import JSON
from lacuna_orchestration.server.schemas import ErrorBody, IngestResponse

router = APIRouter(prefix="/api/v1/lineage", tags=["lineage ingest"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 413, 415, 503)
}


def _load_json(raw: bytes, where: str = "body") -> Any:
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send one OpenLineage event",
                       where)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ApiError(400, "invalid_json", f"{where} is not valid JSON: {err}", where) from None


def ingest_body(result: IngestResult) -> dict[str, Any]:
    ev = result.event
    audit = result.audit
    return {
        "status": "accepted",
        "event": {"kind": ev.kind, "eventType": ev.event_type, "runId": ev.run_id,
                  "job": ev.job, "operation": ev.operation.value},
        "allowed": result.allowed,
        "denials": len(result.denials),
        "decisions": [d.to_dict() | {"message": d.message} if not d.allow else d.to_dict()
                      for d in result.decisions],
        "reclassified": list(result.reclassified),
        "audit": {
            "first_seq": audit[0].seq if audit else None,
            "last_seq": audit[-1].seq if audit else None,
            "head_hash": audit[-1].hash if audit else None,
        },
    }


def validate_event(event: Any, where: str = "") -> LineageEvent:
    """Parse ``event`` the way the governor will, before anything is written; the parsed
    event goes on to the governor, so an event is parsed once.

    ``parse_event`` is a pure function of client input: an ``IngestError`` names the field;
    any other exception from it is a malformed value the parser did not anticipate (a list
    where a string belongs, say) — still the client's mistake, so 400, never 500.
    """
    prefix = f"{where}: " if where else ""
    try:
        return parse_event(event)
    except IngestError as err:
        message = str(err)
        raise ApiError(400, "invalid_event", prefix + message,
                       prefix + field_of(message)) from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError,
            OverflowError) as err:
        raise ApiError(400, "invalid_event",
                       f"{prefix}the event has a value of an unexpected type or shape "
                       f"({type(err).__name__}: {str(err)[:200]})", (prefix or "") + "body",
                       ) from None


def _fresh_denials(result: IngestResult) -> list[Any]:
    """Denials decided by this event (a COMPLETE repeats its START's decision: alert once)."""
    written = {
        r.decision.get("decision_id") for r in result.audit if r.decision is not None
    }
    return [d for d in result.denials if d.decision_id in written]


@router.post("", status_code=201, response_model=IngestResponse, responses=_ERRORS,
             summary="Ingest one OpenLineage event (RunEvent, DatasetEvent or JobEvent)")
async def post_lineage(request: Request, who: Caller.LINEAGE_WRITE) -> JSON:
    state: AppState = app_state(request)
    raw = await read_body(request, state.settings.max_body_bytes, JSON_TYPES)
    event = _load_json(raw)
    if not isinstance(event, dict):
        raise ApiError(400, "invalid_event",
                       f"an OpenLineage event is a JSON object, got {type(event).__name__}",
                       "body")
    # parsed from the bytes (JSON text is size-checked as it is, not re-serialised)
    parsed = validate_event(raw)
    actor = parsed.user or who.actor
    gov = state.governors.cached(who.tenant)
    if gov is None:
        gov = await run_in_threadpool(state.governors.get, who.tenant)
    # The governor's intake thread does the work and the writer thread the commit; the event
    # loop only waits (requests arriving together share one catch-up and one commit).
    result: IngestResult = await asyncio.wrap_future(
        gov.submit_ingest(parsed, via=who.via, actor=actor))
    state.alert_denials(_fresh_denials(result), tenant=who.tenant, actor=actor)
    return JSON(ingest_body(result), status_code=201)


def _split_batch(raw: bytes) -> list[tuple[int, Any]]:
    stripped = raw.strip()
    if not stripped:
        raise ApiError(400, "invalid_json", "the batch is empty", "body")
    if stripped[:1] == b"[":
        return list(enumerate(_load_json(stripped), 1))
    try:
        return [(1, orjson.loads(stripped))]  # one (possibly pretty-printed) event
    except orjson.JSONDecodeError:
        pass
    out = []
    for number, line in enumerate(stripped.splitlines(), 1):
        if line.strip():
            out.append((number, _load_json(line, f"line {number}")))
    return out


def _ingest_all(gov: Governor, events: list[tuple[int, LineageEvent]], via: str,
                fallback: str) -> tuple[list[tuple[int, IngestResult]], StoreError | None]:
    """The batch through ``Governor.ingest_many``: in order, group-committed together."""
    done, failure = gov.ingest_many([e for _, e in events], via=via,
                                    actors=[e.user or fallback for _, e in events])
    return [(number, result) for (number, _), result in zip(events, done)], failure


@router.post("/batch", status_code=201, responses=_ERRORS,
             summary="Ingest many OpenLineage events (NDJSON or a JSON array)")
async def post_lineage_batch(request: Request, who: Caller.LINEAGE_WRITE) -> JSON:
    state: AppState = app_state(request)
    raw = await read_body(request, state.settings.max_body_bytes, NDJSON_TYPES)
    events = _split_batch(raw)
    if len(events) > state.settings.max_batch_events:
        raise ApiError(413, "batch_too_large",
                       f"{len(events):,} events; a batch may carry at most "
                       f"{state.settings.max_batch_events:,}", "body")
    # validate all before writing any
    parsed = [(number, validate_event(event, f"line {number}")) for number, event in events]
    gov = await run_in_threadpool(state.governors.get, who.tenant)
    done, failure = await run_in_threadpool(_ingest_all, gov, parsed, who.via, who.actor)
    for _, result in done:
        state.alert_denials(_fresh_denials(result), tenant=who.tenant,
                            actor=result.event.user or who.actor)
    results = [
        {"line": number, "allowed": r.allowed,
         "denials": [d.decision_id for d in r.denials],
         "audit_last_seq": r.audit[-1].seq if r.audit else None}
        for number, r in done
    ]
    if failure is not None:
        body = error_body("store_unavailable", str(failure), None,
                          committed=len(done), results=results)
        return JSON(body, status_code=503, headers={"Retry-After": "5"})
    return JSON({"status": "accepted", "accepted": len(done),
                 "denied": sum(len(r.denials) for _, r in done), "results": results},
                status_code=201)
