"""Database URLs for the service: the schema and the tenant travel in libpq ``options``.

``options=-c search_path=<schema> -c lacuna.tenant=<tenant>`` is applied by PostgreSQL when
the connection starts, before any statement, so every statement the core runs on a tenant's
engine is under that tenant's row-level security policies (migration 0002).
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.db import make_engine, normalize_url
from lacuna_orchestration.errors import ConfigError, StoreError, ValidationError
from lacuna_orchestration.server.config import TENANT_PATTERN
from lacuna_orchestration.settings import Settings

__all__ = ["database_url_for", "ensure_database_schema", "is_postgres_url", "system_engine"]

_PLAIN = re.compile(r"^[A-Za-z0-9_]+$")


def is_postgres_url(url: str) -> bool:
    return normalize_url(url).startswith("postgresql")


def database_url_for(core: Settings, tenant: str | None, *, rls: bool = True) -> str:
    """The core's database URL with the schema (and, for a tenant, ``lacuna.tenant``) set
    at connection start through libpq ``options``; other databases are returned as they are.
    """
    if not is_postgres_url(core.database_url):
        return core.database_url
    url = make_url(normalize_url(core.database_url))
    options = [str(url.query.get("options", "")).strip()]
    if core.database_schema:
        if not _PLAIN.match(core.database_schema):
            raise ConfigError(
                f"database_schema {core.database_schema!r}: use letters, digits and '_' only"
            )
        options.append(f"-csearch_path={core.database_schema}")
    if tenant is not None and rls:
        if not TENANT_PATTERN.match(tenant):
            raise ValidationError(f"invalid tenant {tenant!r}")
        options.append(f"-clacuna.tenant={tenant}")
    joined = " ".join(o for o in options if o)
    if joined:
        url = url.update_query_dict({"options": joined})
    return url.render_as_string(hide_password=False)


def system_engine(core: Settings) -> Engine:
    """An engine for the service's own shared tables (API keys), with no tenant set: under
    row-level security it sees no tenant's rows."""
    return make_engine(database_url_for(core, None))


def ensure_database_schema(core: Settings) -> None:
    """Create the PostgreSQL schema named by ``database_schema`` when it does not exist yet
    (the check first: ``CREATE SCHEMA IF NOT EXISTS`` needs CREATE on the database)."""
    if not core.database_schema or not is_postgres_url(core.database_url):
        return
    engine = make_engine(database_url_for(core.replace(database_schema=None), None))
    try:
        with engine.begin() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :name"),
                {"name": core.database_schema},
            ).first()
            if found is None:
                conn.execute(text(f'CREATE SCHEMA "{core.database_schema}"'))
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
        raise StoreError(f"cannot create schema {core.database_schema}: {reason}") from None
    finally:
        engine.dispose()
