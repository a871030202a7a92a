"""Helpers for the dbt integration tests: temporary copies of the example project, PostgreSQL
schemas for dbt, and queries against the built warehouse."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from lacuna_orchestration.db import make_engine
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.integrations.dbt import CollectResult, DbtManifest, DbtRunOutcome

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "example_project" / "dbt"
MACROS = REPO / "dbt_macros"
POLICIES = REPO / "policies"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PROJECT = "lacuna_shop"
EXPORT = "model.lacuna_shop.customer_contacts_export"
IGNORED = shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb", "*.wal",
                                 "package-lock.yml", "__pycache__", "run_demo.py")

# A model that claims to be PUBLIC but selects e-mail addresses: a floor violation.
DIRECTORY_SQL = "select customer_id, first_name, email from {{ ref('stg_customers') }}\n"
DIRECTORY_YML = """version: 2
models:
  - name: customer_directory
    config:
      meta:
        classification: PUBLIC
"""


def copy_project(dest: Path, extra: Mapping[str, str] | None = None, *,
                 install: bool = True) -> Path:
    """The example project under ``dest``, its ``lacuna`` package pointing at this checkout's
    ``dbt_macros``; ``extra`` adds files (path relative to the project → content).

    ``install`` links the package into ``dbt_packages/`` as ``dbt deps`` does for a ``local:``
    package (saves a dbt invocation); without it the wrapper's own ``deps`` step installs it.
    """
    project = dest / "shop"
    shutil.copytree(EXAMPLE, project, ignore=IGNORED)
    (project / "packages.yml").write_text(f"packages:\n  - local: {MACROS}\n")
    if install:
        (project / "dbt_packages").mkdir()
        (project / "dbt_packages" / "lacuna").symlink_to(MACROS, target_is_directory=True)
    for rel, content in (extra or {}).items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return project


def duckdb_args(project: Path, database: Path, **more_vars: Any) -> list[str]:
    return ["--project-dir", str(project), "--profiles-dir", str(project),
            "--vars", json.dumps({"shop_duckdb": str(database), **more_vars})]


def postgres_args(project: Path, schema: str, **more_vars: Any) -> list[str]:
    return ["--project-dir", str(project), "--profiles-dir", str(project),
            "--target", "postgres",
            "--vars", json.dumps({"shop_pg_schema": schema, "lacuna_schema": f"{schema}_lacuna",
                                  **more_vars})]


def duckdb_tables(database: Path) -> set[str]:
    """``schema.table`` of every relation in the DuckDB file (same-process safe)."""
    import duckdb

    con = duckdb.connect(str(database))
    try:
        rows = con.execute("select table_schema, table_name from information_schema.tables"
                           ).fetchall()
    finally:
        con.close()
    return {f"{s}.{t}" for s, t in rows}


def duckdb_outbox(database: Path, schema: str = "lacuna") -> list[dict[str, Any]]:
    import duckdb

    con = duckdb.connect(str(database))
    try:
        rows = con.execute(f"select payload from {schema}.events order by recorded_at"
                           ).fetchall()
    finally:
        con.close()
    return [json.loads(r[0]) for r in rows]


def postgres_tables(schema_prefix: str) -> set[str]:
    engine = make_engine(PG_URL)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "select table_schema, table_name from information_schema.tables "
                "where table_schema like :p"), {"p": f"{schema_prefix}%"}).fetchall()
    finally:
        engine.dispose()
    return {f"{s}.{t}" for s, t in rows}


def postgres_outbox(schema: str) -> list[dict[str, Any]]:
    engine = make_engine(PG_URL)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                f'select payload from "{schema}_lacuna".events order by recorded_at')).fetchall()
    finally:
        engine.dispose()
    return [json.loads(r[0]) for r in rows]


@contextmanager
def dbt_pg_schema() -> Iterator[str]:
    """A fresh schema name for a dbt project on PostgreSQL; dbt creates ``<name>``,
    ``<name>_exports`` and ``<name>_lacuna``; all of them are dropped afterwards. Fails the
    test when the server is unreachable."""
    schema = f"t_dbt_{uuid.uuid4().hex[:10]}"
    engine = make_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text("select 1"))
    except Exception as err:  # noqa: BLE001 - reported as a failure with the reason
        engine.dispose()
        pytest.fail(f"PostgreSQL at {PG_URL} is required for this test: {err}")
    try:
        yield schema
    finally:
        with engine.begin() as conn:
            names = conn.execute(text(
                "select nspname from pg_namespace where nspname like :p"),
                {"p": f"{schema}%"}).scalars().all()
            for name in names:
                conn.execute(text(f'drop schema if exists "{name}" cascade'))
        engine.dispose()


def edges(gov: Any) -> set[tuple[str, str]]:
    """(parent name, child name) of every lineage edge, names without the namespace."""
    return {(src.split("::", 1)[1], dst.split("::", 1)[1]) for src, dst, _, _ in gov.graph.edges()}


@dataclass
class BuiltProject:
    project: Path
    gov: Governor
    args: list[str]
    database: Path | None = None
    schema: str | None = None
    outcome: DbtRunOutcome | None = None
    dbt_result: Any = None
    warnings: list[str] = field(default_factory=list)
    outbox_before: list[dict[str, Any]] = field(default_factory=list)
    collected: CollectResult | None = None

    @property
    def manifest(self) -> DbtManifest:
        return DbtManifest.load(self.project / "target" / "manifest.json")


def open_governor(folder: Path) -> Governor:
    return Governor.open(database_url=f"sqlite:///{folder / 'lacuna.db'}",
                         policy_dir=str(POLICIES))
