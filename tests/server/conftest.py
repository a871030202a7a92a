"""Fixtures for the service tests: a client on SQLite, a client on a fresh PostgreSQL schema
(migrated), and the admin key both were bootstrapped with."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_helpers import PG_URL, app_for, server_settings

from lacuna_orchestration.migrations import upgrade

# The OPA conformance server lives with the policy tests; reuse it rather than copy it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policy"))


@pytest.fixture()
def sqlite_client(tmp_path) -> Iterator[TestClient]:
    app = app_for(server_settings(f"sqlite:///{tmp_path / 'lacuna.db'}", tmp=tmp_path))
    with TestClient(app) as client:
        yield client


@pytest.fixture()
def pg_settings(pg_schema, tmp_path):
    settings = server_settings(PG_URL, pg_schema, tmp=tmp_path)
    upgrade(settings.core)
    return settings


@pytest.fixture()
def pg_client(pg_settings) -> Iterator[TestClient]:
    with TestClient(app_for(pg_settings)) as client:
        yield client
