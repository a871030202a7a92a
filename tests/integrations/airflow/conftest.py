"""Fixtures for the Airflow integration tests: a governor on a temporary SQLite store, real
task SDK tasks, and task instances for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lacuna_orchestration.governor import Governor
from lacuna_orchestration.integrations.airflow import backend as backend_module
from lacuna_orchestration.integrations.airflow import translator as translator_module
from lacuna_orchestration.integrations.airflow.backend import Backend
from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.model import DatasetRef

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"

CUSTOMERS = DatasetSpec(
    DatasetRef("file", "/data/customers.csv"),
    columns=(("customer_id", "bigint"), ("full_name", "text"), ("email", "text"),
             ("country", "text")),
)
CRM = DatasetSpec(
    DatasetRef("postgres://crm.internal:5432", "crm.public.customer_master"),
    columns=(("customer_id", "bigint"), ("first_name", "text"), ("email", "text")),
)


@pytest.fixture()
def governor(tmp_path: Path) -> Iterator[Governor]:
    gov = Governor.open(
        database_url=f"sqlite:///{tmp_path / 'lacuna.db'}",
        policy_dir=str(POLICIES),
        environment="production",
        user="tester@example.com",
    )
    try:
        yield gov
    finally:
        gov.close()


@pytest.fixture()
def backend(governor: Governor) -> Backend:
    return Backend.for_governor(governor)


@pytest.fixture()
def known_customers(governor: Governor) -> DatasetRef:
    """``/data/customers.csv`` in the store, classified from its columns (email → PII)."""
    governor.ingest(build_run_event(job=("test", "load_customers"), inputs=[CRM],
                                    outputs=[CUSTOMERS], operation="filter"))
    return CUSTOMERS.ref


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """The integration caches a backend and a translator per process; start each test clean."""
    backend_module.set_backend(None)
    translator_module._translator = None
    yield
    backend_module.set_backend(None)
    translator_module._translator = None
