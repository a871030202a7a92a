"""Alembic migrations: up and down on PostgreSQL and SQLite, and the migrated schema is
exactly what the models describe (so a migrated store and a `create_all` store agree)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from server_helpers import PG_URL, core_settings, export_event
from sqlalchemy import MetaData, inspect, text

import lacuna_orchestration.audit.store
import lacuna_orchestration.catalog
import lacuna_orchestration.policy.exceptions  # noqa: F401 - register the core tables
from lacuna_orchestration.db import make_engine, metadata
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.migrations import HEAD, current, downgrade, upgrade
from lacuna_orchestration.server.database import database_url_for
from lacuna_orchestration.server.tables import server_metadata

ALL_TABLES = {
    "lacuna_audit", "lacuna_audit_head", "lacuna_datasets", "lacuna_edges",
    "lacuna_decisions", "lacuna_exceptions", "lacuna_api_keys", "lacuna_feedback",
    "lacuna_exception_owners",
}


def _models() -> MetaData:
    combined = MetaData()
    for table in [*metadata.tables.values(), *server_metadata.tables.values()]:
        table.to_metadata(combined)
    return combined


def _check_round_trip(settings) -> None:
    engine = make_engine(database_url_for(settings, None))
    try:
        upgrade(settings)
        assert current(settings) == HEAD
        with engine.connect() as conn:
            assert ALL_TABLES <= set(inspect(conn).get_table_names())
            diff = compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True}), _models())
            assert diff == [], diff
        with Governor(settings) as gov:  # the core runs on a migrated store unchanged
            assert gov.ingest(export_event()).denials
            assert gov.verify_audit().ok
        downgrade(settings, "base")
        assert current(settings) is None
        with engine.connect() as conn:
            assert not ALL_TABLES & set(inspect(conn).get_table_names())
        upgrade(settings)  # and up again from nothing
        assert current(settings) == HEAD
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_up_down_up(pg_schema) -> None:
    _check_round_trip(core_settings(PG_URL, pg_schema))


def test_sqlite_up_down_up(tmp_path) -> None:
    _check_round_trip(core_settings(f"sqlite:///{tmp_path / 'm.db'}"))


@pytest.mark.postgres
def test_rls_revision_steps_down_cleanly(pg_schema) -> None:
    settings = core_settings(PG_URL, pg_schema)
    upgrade(settings)
    engine = make_engine(PG_URL)
    query = text("SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
                 "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s "
                 "AND c.relname LIKE 'lacuna_%' AND c.relkind = 'r'")
    try:
        with engine.connect() as conn:
            rls = {r[0]: (r[1], r[2]) for r in conn.execute(query, {"s": pg_schema})}
        assert rls["lacuna_datasets"] == (True, True)
        assert rls["lacuna_audit"] == (True, False)  # COPY appends: not forced (see 0002)
        assert rls["lacuna_api_keys"] == (False, False)
        downgrade(settings, "0001")
        assert current(settings) == "0001"
        with engine.connect() as conn:
            assert not any(r[1] for r in conn.execute(query, {"s": pg_schema}))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_migrate_cli(pg_schema, monkeypatch) -> None:
    from server_helpers import run_cli

    monkeypatch.setenv("LACUNA_DATABASE_SCHEMA", pg_schema)
    assert run_cli(["--database-url", PG_URL, "migrate", "upgrade"]) == 0
    assert current(core_settings(PG_URL, pg_schema)) == HEAD
    assert run_cli(["--database-url", PG_URL, "migrate", "downgrade", "--revision",
                    "0001"]) == 0
    assert current(core_settings(PG_URL, pg_schema)) == "0001"
