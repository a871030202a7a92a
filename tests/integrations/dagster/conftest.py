"""Fixtures for the Dagster integration tests: a temporary Lacuna store per test (helpers live
in ``dagster_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster_helpers import POLICIES

from lacuna_orchestration.governor import Governor
from lacuna_orchestration.integrations.dagster import LacunaResource


@pytest.fixture()
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lacuna.db'}"


@pytest.fixture()
def lacuna(database_url: str) -> LacunaResource:
    """In-process Lacuna on this test's own SQLite store, production policies."""
    return LacunaResource(database_url=database_url, policy_dir=str(POLICIES),
                          environment="production", user="analyst@example.com")


@pytest.fixture()
def open_governor(database_url: str) -> Iterator[Any]:
    """Open the test's store afresh (what another process would see) after a run."""
    opened: list[Governor] = []

    def _open() -> Governor:
        gov = Governor.open(database_url=database_url, policy_dir=str(POLICIES),
                            environment="production")
        opened.append(gov)
        return gov

    yield _open
    for gov in opened:
        gov.close()
