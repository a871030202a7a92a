"""Fixtures for the reliability suite: both stores, signing keys, and the recorder that keeps
each scenario's measured numbers for ``docs/reliability.md`` (see ``report.py``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lacuna_orchestration.audit.checkpoints import Ed25519Key, HmacKey

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
for helper_dir in (TESTS / "audit", TESTS / "policy", TESTS / "classify", TESTS / "server", HERE):
    if str(helper_dir) not in sys.path:  # audit_helpers, policy_opa_server, llm_server, ...
        sys.path.insert(0, str(helper_dir))

from reliability_results import ResultBook

# backend / engine / store fixtures (SQLite and PostgreSQL) live in tests/conftest.py


@pytest.fixture(scope="session")
def ed25519_key() -> Ed25519Key:
    return Ed25519Key.generate()


@pytest.fixture(scope="session")
def hmac_key() -> HmacKey:
    return HmacKey(b"reliability-suite-secret-0123456789abcdef")


@pytest.fixture(scope="session")
def result_book() -> Iterator[ResultBook]:
    book = ResultBook()
    yield book
    book.save()


@pytest.fixture()
def record_result(
    result_book: ResultBook, request: pytest.FixtureRequest
) -> Callable[..., None]:
    """``record_result("scenario", **numbers)`` — call it at the end of a test, after its
    assertions, so only numbers from a passing run reach the report."""

    def record(scenario: str, **numbers: Any) -> None:
        result_book.add(scenario, request.node.nodeid, numbers)

    return record
