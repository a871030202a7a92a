"""Fixtures for the dbt integration tests.

dbt invocations cost seconds each, so the real builds are module-scoped and shared: one
``lacuna dbt build`` of the example project on DuckDB (plus a model that violates its declared
floor), one plain ``dbt build`` collected afterwards, and the same two on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dbt_helpers import (
    DIRECTORY_SQL,
    DIRECTORY_YML,
    BuiltProject,
    copy_project,
    dbt_pg_schema,
    duckdb_args,
    duckdb_outbox,
    open_governor,
    postgres_args,
    postgres_outbox,
)

from lacuna_orchestration.integrations.dbt import collect, run_dbt
from lacuna_orchestration.integrations.dbt.invoke import invoke


def _watch_warnings(sink: list[str]) -> Any:
    def callback(event: Any) -> None:
        if event.info.name in ("JinjaLogWarning", "JinjaLogInfo", "JinjaLogDebug"):
            message = str(getattr(event.data, "msg", ""))
            if "not governed" in message:
                sink.append(message)
    return callback


@pytest.fixture(scope="module")
def wrapped_duckdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltProject]:
    """``lacuna dbt build`` of the example project (plus customer_directory) on DuckDB."""
    tmp = tmp_path_factory.mktemp("dbt_wrapped")
    project = copy_project(tmp, {"models/marts/customer_directory.sql": DIRECTORY_SQL,
                                 "models/marts/directory.yml": DIRECTORY_YML}, install=False)
    database = tmp / "shop.duckdb"
    gov = open_governor(tmp)
    args = duckdb_args(project, database)
    outcome = run_dbt("build", [*args, "--quiet"], governor=gov)
    try:
        yield BuiltProject(project, gov, args, database=database, outcome=outcome)
    finally:
        gov.close()


@pytest.fixture(scope="module")
def plain_duckdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltProject]:
    """A plain ``dbt build`` (no wrapper) on DuckDB, then ``collect``."""
    tmp = tmp_path_factory.mktemp("dbt_plain")
    project = copy_project(tmp)
    database = tmp / "shop.duckdb"
    gov = open_governor(tmp)
    args = duckdb_args(project, database)
    built = BuiltProject(project, gov, args, database=database)
    built.dbt_result = invoke(["build", *args, "--quiet"],
                              callbacks=[_watch_warnings(built.warnings)])
    built.outbox_before = duckdb_outbox(database)
    built.collected = collect(gov, args)
    try:
        yield built
    finally:
        gov.close()


@pytest.fixture(scope="module")
def wrapped_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltProject]:
    """``lacuna dbt build`` of the example project (plus customer_directory) on PostgreSQL, in
    a schema of its own."""
    tmp = tmp_path_factory.mktemp("dbt_pg_wrapped")
    project = copy_project(tmp, {"models/marts/customer_directory.sql": DIRECTORY_SQL,
                                 "models/marts/directory.yml": DIRECTORY_YML})
    gov = open_governor(tmp)
    with dbt_pg_schema() as schema:
        args = postgres_args(project, schema)
        outcome = run_dbt("build", [*args, "--quiet"], governor=gov)
        try:
            yield BuiltProject(project, gov, args, schema=schema, outcome=outcome)
        finally:
            gov.close()


@pytest.fixture(scope="module")
def plain_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltProject]:
    """A plain ``dbt build`` on PostgreSQL, then ``collect``."""
    tmp = tmp_path_factory.mktemp("dbt_pg_plain")
    project = copy_project(tmp)
    gov = open_governor(tmp)
    with dbt_pg_schema() as schema:
        args = postgres_args(project, schema)
        built = BuiltProject(project, gov, args, schema=schema)
        built.dbt_result = invoke(["build", *args, "--quiet"],
                                  callbacks=[_watch_warnings(built.warnings)])
        built.outbox_before = postgres_outbox(schema)
        built.collected = collect(gov, args)
        try:
            yield built
        finally:
            gov.close()
