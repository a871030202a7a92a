"""Tier and tag metadata for the Dagster UI, and annotating asset definitions from the store."""

import dagster as dg
from dagster_helpers import QUIET, build_assets, build_definitions, export_path

from lacuna_orchestration.integrations.dagster import (
    LacunaResource,
    annotate_assets,
    classification_metadata,
    decision_metadata,
    governed_resources,
    tier_tags,
)
from lacuna_orchestration.model import Classification, Decision, Evidence, Layer, Tier


def test_classification_metadata_carries_tier_tags_and_evidence():
    c = Classification(Tier.PROPRIETARY, frozenset({"PII", "GDPR"}), 0.95, Layer.HEURISTIC,
                       (Evidence(Layer.HEURISTIC, "email_address", "x#email", "e-mail", 0.95),))
    md = classification_metadata(c, columns={"email": c})
    assert md["lacuna/tier"].value == "PROPRIETARY"
    assert md["lacuna/tags"].value == "GDPR, PII"
    assert "| email | PROPRIETARY, tags: GDPR, PII | heuristic | email_address |" in (
        md["lacuna/evidence"].value)


def test_decision_metadata_names_policy_exception_and_alternatives():
    d = Decision(allow=True, action="export", policy_id="export-governance",
                 policy_version="2.0.0", steward="dg@example.com", exception_id="EXC-1",
                 alternatives=("Anonymize first",))
    md = decision_metadata(d)
    assert md["lacuna/decision"].value == "ALLOW (exception EXC-1)"
    assert md["lacuna/policy"].value == "export-governance v2.0.0"
    assert md["lacuna/alternatives"].value == "1. Anonymize first"


def test_tier_tags_are_valid_dagster_tags():
    tags = tier_tags(Classification(Tier.INTERNAL, frozenset({"DERIVED_FROM_PII", "AGGREGATED"})))
    assert tags == {"lacuna/tier": "INTERNAL", "lacuna/labels": "AGGREGATED.DERIVED_FROM_PII"}

    @dg.asset(tags=tags)  # Dagster validates tag keys and values at definition time
    def ok() -> None: ...


def test_annotate_assets_adds_tier_tag_and_kind_from_the_store(tmp_path, lacuna):
    assets = build_assets(export_path(tmp_path))
    resources = governed_resources(assets, lacuna, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
    dg.materialize(assets, resources=resources, raise_on_error=False, run_config=QUIET)
    found = lacuna.classifications_for(assets)
    assert found["customer_sales"].tier is Tier.PROPRIETARY
    assert "regional_report_export" not in found  # denied: Lacuna never saw its output
    annotated = {a.key.to_user_string(): a for a in annotate_assets(assets, found)}
    spec = annotated["customer_sales"].specs_by_key[dg.AssetKey("customer_sales")]
    assert spec.tags["lacuna/tier"] == "PROPRIETARY"
    assert "proprietary" in spec.kinds and "python" in spec.kinds
    summary = annotated["regional_summary"].specs_by_key[dg.AssetKey("regional_summary")]
    assert summary.tags["lacuna/tier"] == "INTERNAL"
    export = annotated["regional_report_export"].specs_by_key[
        dg.AssetKey("regional_report_export")]
    assert "lacuna/tier" not in export.tags


def test_definitions_still_load_when_lacuna_is_unreachable(tmp_path, caplog):
    broken = LacunaResource(database_url="postgresql://nobody@127.0.0.1:1/none")
    defs = build_definitions(out=tmp_path, lacuna=broken)
    assert defs.resolve_asset_graph().get(dg.AssetKey("customers")) is not None
    assert any("not annotated" in r.getMessage() for r in caplog.records)
