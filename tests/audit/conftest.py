"""Fixtures for the audit tests: the same store on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.db import make_engine

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
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
