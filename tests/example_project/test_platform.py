"""The governed platform (example_project/platform) end to end, in process: one Lacuna fed by
Dagster, dbt and Airflow under shared dataset names, and the seed scenarios on it.

The story runs once for the module (about 15 s: a Dagster run, a dbt build on DuckDB, Airflow
tasks through Lacuna's listener and gate); each test reads what it produced.
"""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from platform_helpers import PARTNER_EXPORT, assert_partner_export_denied, load_story

from lacuna_orchestration.lineage.render import TIER_COLOURS
from lacuna_orchestration.model import Tier

story = load_story()
GOVERNED_EXPORT = "/governed/workspace/revenue_by_country.csv"
SVG = {"svg": "http://www.w3.org/2000/svg"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    platform_run = story.run_all(tmp_path_factory.mktemp("platform"))
    try:
        yield platform_run
    finally:
        platform_run.close()


def _effective(run: Any, model: str) -> Any:
    return run.governor.classification(run.table(model))


# -- one lineage graph across the three orchestrators ------------------------------------------

def test_dagster_dbt_and_airflow_share_dataset_names(run: Any) -> None:
    gov = run.governor
    raw = run.paths.raw("crm_contacts").key
    assert raw == f"duckdb://{run.paths.warehouse}::warehouse.raw.crm_contacts"
    records = list(gov.audit.records())
    written_by_dagster = {k for r in records if r.via == "dagster"
                          for k in r.details.get("outputs", ())}
    read_by_dbt = {k for r in records if r.via == "dbt" for k in r.details.get("inputs", ())}
    assert raw in written_by_dagster and raw in read_by_dbt
    mart = run.table("customer_transactions").key
    built_by_dbt = {k for r in records if r.via == "dbt" for k in r.details.get("outputs", ())}
    read_by_airflow = {k for r in records if r.via == "airflow"
                       for k in r.details.get("inputs", ())}
    assert mart in built_by_dbt and mart in read_by_airflow


def test_lineage_runs_from_a_dagster_asset_through_dbt_to_the_airflow_export(run: Any) -> None:
    graph = run.governor.graph
    export = f"file::{GOVERNED_EXPORT}"
    path = nx.shortest_path(graph.g, run.paths.raw("transactions").key, export)
    names = [graph.node(k).ref.name for k in path]
    assert names == ["warehouse.raw.transactions", "warehouse.main.stg_transactions",
                     "warehouse.main.customer_transactions", "warehouse.main.revenue_by_country",
                     GOVERNED_EXPORT]
    jobs = [graph.g.edges[a, b]["job"] for a, b in itertools.pairwise(path)]
    assert jobs[0] == "dbt.model.lacuna_platform.stg_transactions"  # dbt read Dagster's table
    # Airflow read dbt's mart
    assert jobs[-1] == "default.platform_exports.export_revenue_by_country"
    assert run.paths.raw("transactions").key in graph.upstream(f"file::{PARTNER_EXPORT}")


# -- the seed scenarios ---------------------------------------------------------------------------

def test_the_pii_join_is_proprietary_with_the_union_of_its_parents_tags(run: Any) -> None:
    joined = _effective(run, "customer_transactions")
    parents = ("stg_contacts", "stg_transactions", "stg_country_codes")
    union = frozenset().union(*(_effective(run, p).tags for p in parents))
    assert joined.tier is Tier.PROPRIETARY
    assert joined.tags == union
    assert {"PII", "FINANCIAL", "PUBLIC_REFERENCE"} <= joined.tags
    assert "PUBLIC_REFERENCE" in _effective(run, "stg_country_codes").tags  # declared in Dagster


def test_the_aggregate_is_internal_and_derived_from_pii(run: Any) -> None:
    revenue = _effective(run, "revenue_by_country")
    assert revenue.tier is Tier.INTERNAL
    assert "DERIVED_FROM_PII" in revenue.tags and "PII" not in revenue.tags


def test_the_anonymized_view_is_internal_and_anonymized(run: Any) -> None:
    anonymized = _effective(run, "contacts_anonymized")
    assert anonymized.tier is Tier.INTERNAL
    assert "ANONYMIZED" in anonymized.tags
    assert not anonymized.tags & {"PII", "GDPR", "EMAIL", "PHONE"}


def test_the_pii_export_to_an_unmanaged_location_is_blocked_with_the_full_message(
    run: Any,
) -> None:
    tags = _effective(run, "customer_transactions").sorted_tags()
    assert_partner_export_denied(run.pii_export, tags)


def test_the_aggregate_export_to_the_governed_workspace_is_allowed(run: Any) -> None:
    task = run.revenue_export
    assert task.state == "success" and [d.allow for d in task.decisions] == [True]
    assert task.written == run.paths.mounted(GOVERNED_EXPORT)
    header = task.written.read_text().splitlines()[0]
    assert header == "country_name,region,customer_count,transaction_count,total_amount"


def test_an_approved_exception_allows_the_export_until_it_expires(run: Any) -> None:
    exc = run.exception
    assert exc.approver == "data-governance@example.com"
    under = run.pii_export_under_exception
    assert under.state == "success" and under.written is not None
    assert [d.exception_id for d in under.decisions] == [exc.id]
    after = run.pii_export_after_expiry
    assert after.state == "failed" and after.written is None
    assert after.denial is not None and after.denial.exception_id == ""
    assert "Cannot export PII data to unmanaged location" in after.denial.message
    assert not run.paths.mounted(PARTNER_EXPORT).exists()


def test_scratch_space_is_open_to_exports_in_development_only(run: Any) -> None:
    assert run.scratch_in_development.allow
    production = run.scratch_in_production
    assert not production.allow and production.policy_id == "dev-scratch-space"
    assert ("file:///tmp/lacuna-scratch/revenue_sample.csv is scratch space, open to exports "
            "only in development (this run: production)") in production.reasons


def test_purpose_limitation_stops_health_data_used_for_advertising(run: Any) -> None:
    denied = run.dbt.denied["model.lacuna_platform.patient_outreach"]
    assert denied.policy_id == "purpose-limitation"
    assert ("Purpose 'advertising' is not an allowed purpose for PHI data (allowed: care, "
            "billing)") in denied.reasons
    assert "Steward: privacy-office@example.com" in denied.message
    assert run.dbt.status_of("model.lacuna_platform.patient_outreach") == "error"
    # the same health data for care (an allowed purpose) builds
    assert run.dbt.status_of("model.lacuna_platform.diagnosis_counts") == "success"


def test_the_marketing_domain_policy_answers_with_its_own_steward(run: Any) -> None:
    denied = run.dbt.denied["model.lacuna_platform.marketing_contacts"]
    assert denied.policy_id == "marketing-data-use"
    assert denied.steward == "marketing-governance@example.com"
    assert "Steward: marketing-governance@example.com" in denied.message
    assert ("The marketing domain may receive PII data only aggregated or anonymized, not "
            "through 'transform'") in denied.reasons
    # aggregated data may go to marketing
    assert run.dbt.status_of("model.lacuna_platform.marketing_country_revenue") == "success"


def test_the_audit_chain_verifies(run: Any) -> None:
    report = run.governor.verify_audit()
    assert report.ok and report.count > 40


def test_the_iso27001_a94_report_lists_the_denial_and_the_exception(run: Any) -> None:
    report = json.loads(run.paths.report_json.read_text())
    assert report["kind"] == "iso27001-a94" and report["chain"]["verified"] is True
    section = report["sections"]
    denials = section["denials"]["rows"]
    export_denials = [r for r in denials if r["resource"] == PARTNER_EXPORT]
    # the listener's START event and the gate's check, before and after the exception
    assert len(export_denials) == 4
    assert {(r["policy"], r["via"]) for r in export_denials} == {
        ("export-governance", "airflow"), ("export-governance", "airflow.gate")}
    assert {r["policy"] for r in denials} >= {"export-governance", "purpose-limitation",
                                              "marketing-data-use", "dev-scratch-space"}
    assert section["summary"]["allowed_under_exception"] >= 1
    excepted = section["allowed_under_exception"]["rows"]
    assert excepted and {r["resource"] for r in excepted} == {PARTNER_EXPORT}
    assert all(r["exception"].startswith("EXC-") and r["allow"] for r in excepted)
    workflow = {r["action"] for r in section["exception_workflow"]["rows"]}
    assert {"exception.request", "exception.approve"} <= workflow
    assert section["summary"]["denied"] == len(denials)
    html = run.paths.report_html.read_text()
    assert "export-governance" in html and PARTNER_EXPORT in html


def test_the_lineage_picture_has_every_dataset_coloured_by_tier(run: Any) -> None:
    root = ET.fromstring(run.paths.lineage_svg.read_text())
    nodes = {g.attrib["data-key"]: g for g in root.iterfind(".//svg:g[@class='node']", SVG)}
    assert set(nodes) == {n.ref.key for n in run.governor.graph.nodes()}
    raw = nodes[run.paths.raw("crm_contacts").key]
    assert raw.attrib["data-tier"] == "PROPRIETARY"
    rect = raw.find("svg:rect", SVG)
    assert rect is not None and rect.attrib["fill"] == TIER_COLOURS[Tier.PROPRIETARY]
    anonymized = nodes[run.table("contacts_anonymized").key]
    assert anonymized.attrib["data-tier"] == "INTERNAL"
    edges = {(p.attrib["data-source"], p.attrib["data-target"])
             for p in root.iterfind(".//svg:path[@class='edge']", SVG)}
    assert (run.table("revenue_by_country").key, f"file::{GOVERNED_EXPORT}") in edges


def test_outputs_stay_under_the_run_folder(run: Any) -> None:
    out: Path = run.paths.out
    for path in (run.paths.store, run.paths.warehouse, run.paths.report_html,
                 run.paths.lineage_svg, run.paths.mounted(GOVERNED_EXPORT)):
        assert path.is_file() and out in path.parents
