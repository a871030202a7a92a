"""The Lacuna ingestor service (FastAPI): OpenLineage in, decisions and audit out.

Needs the ``server`` extra (FastAPI, uvicorn, Alembic) and, for PostgreSQL, ``postgres``.
Names are imported lazily so that light modules (``server.database``, used by the
migrations) do not pull in the whole core.

>>> from lacuna_orchestration.server import create_app, ServerSettings  # doctest: +SKIP
>>> app = create_app(ServerSettings.load())  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ApiKeyStore", "Permission", "Principal", "Role", "ServerSettings", "create_app"]

_WHERE = {
    "create_app": "lacuna_orchestration.server.app",
    "ApiKeyStore": "lacuna_orchestration.server.auth",
    "Permission": "lacuna_orchestration.server.auth",
    "Principal": "lacuna_orchestration.server.auth",
    "Role": "lacuna_orchestration.server.auth",
    "ServerSettings": "lacuna_orchestration.server.config",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'lacuna_orchestration.server' has no attribute {name!r}")
