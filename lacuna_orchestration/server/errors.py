"""Every error the API answers is JSON: ``{"error": {"code", "message", "field"}}``.

Client mistakes are 4xx naming the field at fault (the event path from ``IngestError``, the
header, the request model's field); a database that cannot be reached is 503 with
``Retry-After`` (the client should retry, nothing was acknowledged); only a bug is a 500.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lacuna_orchestration.errors import (
    ConfigError,
    IngestError,
    LacunaError,
    NotFound,
    PolicyError,
    StoreError,
    ValidationError,
)
from lacuna_orchestration.server.auth import AuthError
from lacuna_orchestration.server.responses import JSON

__all__ = ["ApiError", "error_body", "field_of", "install_error_handlers"]

log = logging.getLogger(__name__)

_PATH = re.compile(r"^(?:facet\s+)?([A-Za-z_$][\w$]*(?:\[\d+\])?(?:\.[\w$]+(?:\[\d+\])?)*)")
_EVENT_FIELDS = frozenset({
    "eventType", "eventTime", "producer", "schemaURL", "run", "job", "dataset", "inputs",
    "outputs", "lacuna",
})


class ApiError(Exception):
    """A client mistake the routes detect themselves (body size, encoding, content type)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def field_of(message: str) -> str:
    """The event field an ``IngestError`` message starts with (``inputs[0].namespace is
    missing`` → ``inputs[0].namespace``), or ``body`` when it names the event as a whole."""
    match = _PATH.match(message)
    if match:
        path = match.group(1)
        root = re.split(r"[.\[]", path, maxsplit=1)[0]
        if root in _EVENT_FIELDS:
            return path
    quoted = re.search(r"\b(eventType|eventTime|runId|producer|schemaURL)\b", message)
    if quoted:
        return "run.runId" if quoted.group(1) == "runId" else quoted.group(1)
    return "body"


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "field": field}
    error.update(extra)
    return {"error": error}


def _respond(status: int, code: str, message: str, field: str | None = None,
             headers: dict[str, str] | None = None) -> JSON:
    return JSON(error_body(code, message, field), status_code=status, headers=headers)


def _lacuna_error(err: LacunaError) -> JSON:
    message = str(err)
    if isinstance(err, IngestError):
        return _respond(400, "invalid_event", message, field_of(message))
    if isinstance(err, ValidationError):
        return _respond(422, "invalid_value", message, _value_field(message))
    if isinstance(err, NotFound):
        return _respond(404, "not_found", message)
    if isinstance(err, StoreError):
        log.warning("store unavailable: %s", message)
        return _respond(503, "store_unavailable", message, headers={"Retry-After": "5"})
    if isinstance(err, PolicyError):
        return _respond(503, "policy_unavailable", message, headers={"Retry-After": "5"})
    if isinstance(err, ConfigError):
        log.error("configuration error: %s", message)
        return _respond(500, "config_error", message)
    return _respond(400, "rejected", message)


def _value_field(message: str) -> str | None:
    for word in ("tier", "tag", "operation kind", "role", "tenant", "duration", "reason",
                 "justification", "source", "steward", "requested_by"):
        if word in message:
            return word.replace("operation kind", "kind")
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSON:
        return _respond(err.status, err.code, err.message, err.field, err.headers)

    @app.exception_handler(AuthError)
    async def auth_error(_: Request, err: AuthError) -> JSON:
        if err.status == 401:
            return _respond(401, "unauthorized", str(err), "Authorization",
                            {"WWW-Authenticate": 'Bearer realm="lacuna"'})
        return _respond(403, "forbidden", str(err), "Authorization")

    @app.exception_handler(LacunaError)
    async def lacuna_error(_: Request, err: LacunaError) -> JSON:
        return _lacuna_error(err)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSON:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ())]
        where = loc[0] if loc else "body"
        field = ".".join(loc[1:]) if len(loc) > 1 else where
        message = f"{field}: {first.get('msg', 'invalid')}"
        return _respond(422, "invalid_request", message, field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSON:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return _respond(err.status_code, code, str(err.detail), None,
                        dict(err.headers) if err.headers else None)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception) -> JSON:
        log.exception("unexpected error")
        return _respond(500, "internal_error", f"internal error: {type(err).__name__}")
