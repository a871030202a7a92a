"""Key management (admin, within the admin's own tenant), policy status and reload, health.

Keys of *another* tenant are created on the command line (``lacuna keys create --tenant``),
which talks to the database directly: no API key can reach across tenants.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.server.deps import AppState, Caller, app_state, audit
from lacuna_orchestration.server.responses import JSON
from lacuna_orchestration.server.schemas import KeyCreate

__all__ = ["router"]

router = APIRouter(tags=["administration"])


@router.post("/api/v1/keys", status_code=201, summary="Create an API key (shown once)")
def create_key(request: Request, body: KeyCreate, who: Caller.KEYS_MANAGE) -> JSON:
    state: AppState = app_state(request)
    token, info = state.keys.create(tenant=who.tenant, role=body.role, name=body.name,
                                    created_by=who.name)
    audit(state.governors.get(who.tenant), who, "apikey.create", info.key_id,
          f"{body.role} key {body.name!r}", info.to_dict())
    return JSON({"key": token, **info.to_dict()}, status_code=201)


@router.get("/api/v1/keys", summary="Keys of this tenant (never their secrets)")
def list_keys(request: Request, who: Caller.KEYS_MANAGE) -> JSON:
    state: AppState = app_state(request)
    return JSON({"keys": [k.to_dict() for k in state.keys.list(who.tenant)]})


@router.delete("/api/v1/keys/{key_id}", summary="Revoke a key")
def revoke_key(request: Request, key_id: str, who: Caller.KEYS_MANAGE) -> JSON:
    state: AppState = app_state(request)
    info = state.keys.revoke(key_id, who.tenant)
    audit(state.governors.get(who.tenant), who, "apikey.revoke", key_id,
          f"revoked {info.role.value} key {info.name!r}", info.to_dict())
    return JSON(info.to_dict())


@router.get("/api/v1/policy", summary="Which policy backend and bundle revision answer")
def policy_status(request: Request, who: Caller.CATALOG_READ) -> JSON:
    state: AppState = app_state(request)
    gov = state.governors.get(who.tenant)
    engine = gov.decider.engine
    return JSON({"backend": gov.settings.policy_backend, "kind": getattr(engine, "kind", ""),
                 "revision": engine.revision, "policy_dir": gov.settings.policy_dir})


@router.post("/api/v1/policy/reload", summary="Reload the policy bundle now (admin)")
def policy_reload(request: Request, who: Caller.KEYS_MANAGE) -> JSON:
    state: AppState = app_state(request)
    gov = state.governors.get(who.tenant)
    before = gov.decider.engine.revision
    gov.decider.engine.reload()
    after = gov.decider.engine.revision
    audit(gov, who, "policy.reload", gov.settings.policy_dir, f"{before[:12]} → {after[:12]}",
          {"before": before, "after": after})
    return JSON({"before": before, "after": after, "changed": before != after})


@router.get("/healthz", tags=["health"], summary="The process is up")
def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get("/readyz", tags=["health"], summary="The database answers")
def readyz(request: Request) -> JSON:
    state: AppState = app_state(request)
    try:
        with state.system_engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
        return JSON({"status": "unavailable", "reason": reason}, status_code=503)
    return JSON({"status": "ready", "tenants_loaded": sorted(state.governors.loaded())})
