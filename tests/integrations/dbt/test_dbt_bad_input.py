"""What happens on bad input and unusual setups, with real dbt runs on DuckDB: strict mode,
an unknown tier in meta, a project without the gate pre-hook, a warehouse without the outbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dbt_helpers import EXPORT, copy_project, duckdb_args, duckdb_tables, open_governor

from lacuna_orchestration.errors import NotFound, ValidationError
from lacuna_orchestration.integrations.dbt import read_outbox, run_dbt
from lacuna_orchestration.integrations.dbt.invoke import DbtInvocationError, invoke

pytestmark = pytest.mark.slow

BAD_TIER_SQL = """{{ config(meta={"classification": "SECRET"}) }}
select customer_id, country from {{ ref('stg_customers') }}
"""


def test_strict_mode_refuses_an_ungoverned_run(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    database = tmp_path / "shop.duckdb"
    args = duckdb_args(project, database, lacuna_strict=True)
    with pytest.raises(DbtInvocationError, match="not governed"):
        invoke(["build", *args, "--quiet"])
    assert not any(t.startswith("main.") for t in duckdb_tables(database))


def test_unknown_tier_is_a_compile_error_naming_the_model(tmp_path: Path) -> None:
    project = copy_project(tmp_path, {"models/marts/bad_tier.sql": BAD_TIER_SQL})
    database = tmp_path / "shop.duckdb"
    args = duckdb_args(project, database)
    # plain dbt: register_run checks every selected node before anything builds
    with pytest.raises(DbtInvocationError) as caught:
        invoke(["build", *args, "--select", "bad_tier", "--quiet"])
    message = str(caught.value)
    assert "Compilation Error" in message
    assert "model.lacuna_shop.bad_tier" in message
    assert "PUBLIC, INTERNAL, PROPRIETARY" in message
    assert "main.bad_tier" not in duckdb_tables(database)
    # the wrapper refuses it too, before dbt builds anything
    gov = open_governor(tmp_path)
    try:
        with pytest.raises(ValidationError, match="model.lacuna_shop.bad_tier declares "
                                                  "meta.classification 'SECRET'"):
            run_dbt("build", [*args, "--select", "bad_tier", "--quiet"], governor=gov)
    finally:
        gov.close()


def test_without_the_gate_hook_denied_models_are_excluded_and_verify_compliance_catches_them(
        tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    config = project / "dbt_project.yml"
    config.write_text("\n".join(line for line in config.read_text().splitlines()
                                if "lacuna.gate()" not in line) + "\n")
    database = tmp_path / "shop.duckdb"
    args = duckdb_args(project, database)
    gov = open_governor(tmp_path)
    try:
        outcome = run_dbt("build", [*args, "--quiet"], governor=gov)
    finally:
        gov.close()
    assert outcome.excluded == [EXPORT]
    assert outcome.status_of(EXPORT) is None  # never selected
    assert outcome.exit_code == 1 and outcome.dbt_success
    tables = duckdb_tables(database)
    assert "main_exports.customer_contacts_export" not in tables
    assert "main.revenue_by_country" in tables

    # A run that builds a denied model anyway (no gate hook, decisions passed by hand) fails
    # in verify_compliance, after the build, with the policy's message.
    denied = {"lacuna": {"run_id": "manual"}, "shop_duckdb": str(database),
              "lacuna_denied": {EXPORT: "Cannot export PII data to unmanaged location"}}
    result = invoke(["build", "--project-dir", str(project), "--profiles-dir", str(project),
                     "--select", "customer_contacts_export", "--vars", json.dumps(denied),
                     "--quiet"])
    assert not result.success
    hook = next(r for r in result.result.results if "on-run-end" in r.node.unique_id)
    assert f"{EXPORT} was built although policy denies it" in hook.message
    assert "main_exports.customer_contacts_export" in duckdb_tables(database)


def test_collect_from_a_warehouse_without_the_outbox(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    database = tmp_path / "shop.duckdb"
    with pytest.raises(NotFound, match="no Lacuna outbox .* register_run"):
        read_outbox(duckdb_args(project, database))
