"""Alembic environment: one connection from the settings the caller passed in
``config.attributes["settings"]`` (``lacuna_orchestration.migrations.upgrade``), or from
``sqlalchemy.url`` in an ``alembic.ini`` for people who run the ``alembic`` command."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from lacuna_orchestration.db import make_engine
from lacuna_orchestration.settings import Settings

config = context.config


def _connect_and_run() -> None:
    settings: Settings | None = config.attributes.get("settings")
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if settings is not None:
        from lacuna_orchestration.server.database import database_url_for, ensure_database_schema

        ensure_database_schema(settings)
        engine = make_engine(database_url_for(settings, None))
    else:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None,
                      render_as_batch=connection.dialect.name == "sqlite",
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
_connect_and_run()
