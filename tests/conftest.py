"""Shared fixtures. PostgreSQL tests use the real server on 127.0.0.1:5432 in a schema of their
own and fail (never skip) when it is absent."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.db import make_engine

PG_URL = os.environ.get("LACUNA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def shared_dir() -> Path:
    """The workplace's ``shared/`` folder (the OpenLineage conformance events live there): next
    to the checkout, or wherever ``LACUNA_SHARED_DIR`` says — a clone elsewhere still finds it.
    Tests that need it fail when it is missing; they never skip."""
    configured = os.environ.get("LACUNA_SHARED_DIR")
    if configured:
        return Path(configured)
    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "shared", Path("/work/shared")):
        if candidate.is_dir():
            return candidate
    return here.parent / "shared"


@pytest.fixture()
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'lacuna.db'}"


@pytest.fixture()
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards. Fails when the server is unreachable."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as err:  # noqa: BLE001 - re-raised as a failure with the reason
        pytest.fail(f"PostgreSQL at {PG_URL} is required for this test: {err}")
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture()
def pg_engine(pg_schema: str) -> Iterator[Engine]:
    engine = make_engine(PG_URL, schema=pg_schema)
    try:
        yield engine
    finally:
        engine.dispose()


BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Run a test once on SQLite and once on PostgreSQL (requested by the audit suites)."""
    return str(request.param)


@pytest.fixture()
def engine(backend: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    if backend == "postgres":
        yield request.getfixturevalue("pg_engine")
        return
    sqlite = make_engine(request.getfixturevalue("sqlite_url"))
    try:
        yield sqlite
    finally:
        sqlite.dispose()


@pytest.fixture()
def store(engine: Engine) -> AuditStore:
    audit = AuditStore(engine)
    audit.create_schema()
    return audit


def count_commits(gov: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of audit records of every transaction the governor commits from now on."""
    commits: list[int] = []
    real = gov.audit.append_prepared

    def counting(items: Any, also: Any = (), **kwargs: Any) -> Any:
        commits.append(len(items))
        return real(items, also, **kwargs)

    monkeypatch.setattr(gov.audit, "append_prepared", counting)
    return commits
