"""Alembic migrations for the whole store (catalog, lineage, decisions, exceptions, audit
chain with its append-only triggers, API keys, feedback) and PostgreSQL row-level security.

::

    0001_initial                 every table and index, the audit triggers
    0002_row_level_security      PostgreSQL: tenant policies on current_setting('lacuna.tenant'),
                                 no UPDATE/DELETE/TRUNCATE on lacuna_audit for the service role

The schema the migrations create is the one the core's ``create_all`` would create (a test
compares them), so a migrated database and a fresh ``lacuna dev`` file agree.

>>> upgrade(Settings.load(database_url="postgresql://lacuna@db/lacuna"))  # doctest: +SKIP
>>> current(settings)  # doctest: +SKIP
'0002'
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.db import make_engine
from lacuna_orchestration.errors import StoreError
from lacuna_orchestration.settings import Settings

__all__ = ["HEAD", "alembic_config", "current", "downgrade", "upgrade"]

HEAD = "0002"
SCRIPT_DIR = Path(__file__).resolve().parent


def alembic_config(settings: Settings, *, service_role: str | None = None) -> Config:
    """An Alembic ``Config`` for ``settings`` (no alembic.ini needed).

    ``service_role``: a separate database role the service logs in as; migration 0002 grants
    it exactly what the service needs (and no UPDATE/DELETE on the audit table).
    """
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_DIR))
    config.attributes["settings"] = settings
    if service_role:
        config.attributes["service_role"] = service_role
    return config


def _run(action: str, settings: Settings, revision: str, service_role: str | None) -> None:
    config = alembic_config(settings, service_role=service_role)
    try:
        getattr(command, action)(config, revision)
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
        raise StoreError(f"migration {action} to {revision} failed: {reason}") from None


def upgrade(settings: Settings, revision: str = "head", *,
            service_role: str | None = None) -> None:
    """Bring the store to ``revision`` (default: the newest)."""
    _run("upgrade", settings, revision, service_role)


def downgrade(settings: Settings, revision: str = "base", *,
              service_role: str | None = None) -> None:
    """Step the store back to ``revision`` (``base`` drops everything, audit chain included)."""
    _run("downgrade", settings, revision, service_role)


def current(settings: Settings) -> str | None:
    """The revision the store is at (``None`` when it was never migrated)."""
    from lacuna_orchestration.server.database import database_url_for

    engine = make_engine(database_url_for(settings, None))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
        raise StoreError(f"cannot read the migration revision: {reason}") from None
    finally:
        engine.dispose()
