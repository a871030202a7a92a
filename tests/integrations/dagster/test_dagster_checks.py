"""Blocking governance checks: declared floor vs the data, policy verdict, fail closed."""

from typing import Any

import dagster as dg
from dagster_helpers import QUIET, build_assets, check_results, export_path, materialized

from lacuna_orchestration.integrations.dagster import (
    CHECK_NAME,
    LacunaResource,
    build_lacuna_checks,
    governed_resources,
)


def _leaky_pipeline() -> list[dg.AssetsDefinition]:
    @dg.asset(
        deps=["customers"],
        metadata={"lacuna/classification": "INTERNAL",
                  "dagster/column_schema": dg.TableSchema(columns=[
                      dg.TableColumn("region", "string"), dg.TableColumn("email", "string")])},
    )
    def contact_summary() -> list[dict[str, Any]]:
        return [{"region": "EU", "email": "ada@example.com"}]

    @dg.asset
    def contact_report(contact_summary: list[dict[str, Any]]) -> int:
        return len(contact_summary)

    return [contact_summary, contact_report]


def test_one_blocking_check_per_asset(tmp_path):
    assets = build_assets(export_path(tmp_path))
    checks = build_lacuna_checks(assets)
    keys = sorted(spec.asset_key.to_user_string() for c in checks for spec in c.check_specs)
    assert keys == sorted(a.key.to_user_string() for a in assets)
    assert all(spec.blocking and spec.name == CHECK_NAME for c in checks for spec in c.check_specs)


def test_understated_declaration_fails_the_check_and_blocks_downstream(tmp_path, lacuna):
    assets = [*build_assets(export_path(tmp_path))[:1], *_leaky_pipeline()]
    storage = tmp_path / "storage"
    resources = governed_resources(assets, lacuna,
                                   {"io_manager": dg.FilesystemIOManager(base_dir=str(storage))})
    result = dg.materialize([*assets, *build_lacuna_checks(assets)], resources=resources,
                            raise_on_error=False, run_config=QUIET)
    assert not result.success
    checks = check_results(result)
    assert checks["customers"].passed
    leaky = checks["contact_summary"]
    assert not leaky.passed
    assert "declared INTERNAL but its data classifies as PROPRIETARY" in leaky.description
    assert "email" in leaky.description
    md = {k: getattr(v, "value", v) for k, v in leaky.metadata.items()}
    assert md["lacuna/tier"] == "PROPRIETARY"
    assert md["lacuna/declared_tier"] == "INTERNAL"
    assert "email" in md["lacuna/evidence"]
    # The check ran after contact_summary was written (Dagster's order) ...
    assert (storage / "contact_summary").is_file()
    # ... and, being blocking, stopped everything downstream of it.
    assert "contact_report" not in materialized(result)
    assert not (storage / "contact_report").exists()
    assert "contact_report" not in checks


def test_passing_check_shows_tier_tags_evidence_and_decision(tmp_path, lacuna):
    assets = build_assets(export_path(tmp_path))[:3]
    resources = governed_resources(assets, lacuna, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
    result = dg.materialize([*assets, *build_lacuna_checks(assets)], resources=resources,
                            run_config=QUIET)
    joined = check_results(result)["customer_sales"]
    assert joined.passed
    md = {k: getattr(v, "value", v) for k, v in joined.metadata.items()}
    assert md["lacuna/tier"] == "PROPRIETARY"
    assert {"FINANCIAL", "PII"} <= set(md["lacuna/tags"].split(", "))
    assert md["lacuna/decision"] == "ALLOW"
    assert md["lacuna/dataset"] == "dagster::customer_sales"
    assert "| email |" in md["lacuna/evidence"]
    assert md["lacuna/columns_checked"] == 4
    assert joined.description.startswith("PROPRIETARY")


def test_checks_on_ungoverned_assets_classify_the_columns_themselves(tmp_path, lacuna):
    """No gate, no lineage: the check still classifies the declared columns and asks the
    policies about the output."""
    assets = _leaky_pipeline()[:1]
    result = dg.materialize(
        [*assets, *build_lacuna_checks(assets)],
        resources={"lacuna": lacuna,
                   "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))},
        raise_on_error=False, run_config=QUIET,
    )
    check = check_results(result)["contact_summary"]
    assert not check.passed
    md = {k: getattr(v, "value", v) for k, v in check.metadata.items()}
    assert md["lacuna/tier"] == "PROPRIETARY"
    assert "declared INTERNAL" in check.description


def test_asset_without_column_metadata_gets_a_dataset_level_tier(tmp_path, lacuna):
    assets = build_assets(export_path(tmp_path))[:1]

    @dg.asset(deps=["customers"])
    def customer_count() -> int:  # no columns anywhere: an int is not a table
        return 3

    all_assets = [*assets, customer_count]
    resources = governed_resources(all_assets, lacuna, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
    result = dg.materialize([*all_assets, *build_lacuna_checks(all_assets)], resources=resources,
                            run_config=QUIET)
    assert materialized(result)["customer_count"]["lacuna/tier"] == "PROPRIETARY"
    check = check_results(result)["customer_count"]
    assert check.passed
    assert check.metadata["lacuna/tier"].value == "PROPRIETARY"
    assert check.metadata["lacuna/columns_checked"].value == 0


def test_check_fails_closed_when_lacuna_cannot_be_opened(tmp_path):
    broken = LacunaResource(database_url="postgresql://nobody@127.0.0.1:1/none")
    assets = _leaky_pipeline()[:1]
    result = dg.materialize(
        [*assets, *build_lacuna_checks(assets)],
        resources={"lacuna": broken,
                   "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))},
        raise_on_error=False, run_config=QUIET,
    )
    check = check_results(result)["contact_summary"]
    assert not check.passed
    assert "fails closed" in check.description
    assert check.metadata["lacuna/policy"].value == "lacuna.fail-closed"
