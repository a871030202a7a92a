"""The same builds on the local PostgreSQL, each in schemas of its own (dropped afterwards)."""

from __future__ import annotations

from collections import Counter

import pytest
from dbt_helpers import EXPORT, BuiltProject, edges, postgres_outbox, postgres_tables

from lacuna_orchestration.model import Tier

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REVENUE = "model.lacuna_shop.revenue_by_country"


def _name(run: BuiltProject, table: str) -> str:
    return f"test.{run.schema}.{table}"


def test_lacuna_build_on_postgres(wrapped_postgres: BuiltProject) -> None:
    run = wrapped_postgres
    outcome = run.outcome
    assert outcome is not None and not outcome.emit_errors
    assert sorted(outcome.denied) == [EXPORT]
    assert outcome.exit_code == 1  # the gate stopped a model, verify_compliance failed the run
    tables = postgres_tables(run.schema or "")
    assert f"{run.schema}.revenue_by_country" in tables
    assert f"{run.schema}.customer_orders" in tables
    assert f"{run.schema}_exports.customer_contacts_export" not in tables
    # the wrapper reads records from the log, it leaves nothing in the outbox
    assert not any(t.startswith(f"{run.schema}_lacuna.") for t in tables)
    kinds = Counter(r.kind for r in outcome.records)
    assert kinds["model"] == 9 and kinds["run_start"] == 1 and kinds["run_end"] == 1


def test_verify_compliance_fails_the_run_on_postgres(wrapped_postgres: BuiltProject) -> None:
    outcome = wrapped_postgres.outcome
    assert outcome is not None
    directory = "model.lacuna_shop.customer_directory"
    assert directory in outcome.violations and not outcome.dbt_success
    hook = next(r for r in outcome.results if "on-run-end" in r.unique_id)
    assert hook.status == "error"
    assert f"{directory} violates its declared floor" in hook.message
    assert f"{wrapped_postgres.schema}.customer_directory" in postgres_tables(
        wrapped_postgres.schema or "")


def test_postgres_lineage_and_floors(wrapped_postgres: BuiltProject) -> None:
    run = wrapped_postgres
    have = edges(run.gov)
    assert (_name(run, "customer_orders"), _name(run, "revenue_by_country")) in have
    for parent in ("stg_customers", "stg_orders", "stg_payments"):
        assert (_name(run, parent), _name(run, "customer_orders")) in have
    key = run.gov.graph.resolve(_name(run, "revenue_by_country"))
    assert key.startswith("postgres://127.0.0.1:5432::")
    revenue = run.gov.classification(key)
    assert revenue.tier is Tier.INTERNAL and "DERIVED_FROM_PII" in revenue.tags
    record = next(r for r in run.outcome.records if r.unique_id == REVENUE)  # type: ignore[union-attr]
    assert dict(record.columns)["customer_count"] == "bigint"


def test_plain_build_on_postgres_is_collected(plain_postgres: BuiltProject) -> None:
    run = plain_postgres
    assert run.dbt_result.success
    assert run.warnings and "not governed" in run.warnings[0]
    kinds = Counter(r["kind"] for r in run.outbox_before)
    assert kinds == {"run_start": 1, "model": 9, "run_end": 1}
    result = run.collected
    assert result is not None and result.ok and result.acknowledged == result.records == 11
    assert postgres_outbox(run.schema or "") == []
    assert [d.policy_id for d in result.denials] == ["export-governance"]
    have = edges(run.gov)
    assert (_name(run, "customer_orders"), _name(run, "revenue_by_country")) in have
