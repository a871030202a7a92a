"""Fixtures for the policy tests: the repository's own policy bundle and engines over it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from policy_helpers import POLICY_DIR

from lacuna_orchestration.policy.decide import PolicyDecider
from lacuna_orchestration.policy.rego import EmbeddedRegoEngine


@pytest.fixture(scope="session")
def policy_dir() -> Path:
    return POLICY_DIR


@pytest.fixture(scope="session")
def embedded() -> Iterator[EmbeddedRegoEngine]:
    engine = EmbeddedRegoEngine(POLICY_DIR, reload_interval_s=None)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def decider(embedded: EmbeddedRegoEngine) -> PolicyDecider:
    return PolicyDecider(embedded)


@pytest.fixture()
def bundle_copy(tmp_path: Path) -> Path:
    """A private copy of the policy folder that a test may edit."""
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target)
    return target
