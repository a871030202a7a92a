"""Real Airflow runs of the example DAG (``airflow dags test`` on a temporary AIRFLOW_HOME with
SQLite metadata): the listener feeds the governor, the gate fails the export while upstream
tasks succeed, an approved exception lets it run, and the OpenLineage provider's HTTP
transport posting to a Lacuna server (with the gate asking that server) produces the same
lineage.

One migrated AIRFLOW_HOME serves the module; each ``dags test`` costs ~6 s of start-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow_helpers import AirflowHome, LacunaServer

from lacuna_orchestration.governor import Governor
from lacuna_orchestration.model import Tier

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"
DAG_ID = "governed_pipeline"
UPSTREAM = ("extract_customers", "extract_sales", "join_customers_sales", "aggregate_by_region")
EXPORT_TASK = "export_regional_report"


@dataclass
class Run:
    returncode: int
    output: str
    states: dict[str, str]


@dataclass
class Scenario:
    home: AirflowHome
    work: Path
    export: Path
    store_url: str

    def lacuna_env(self, **extra: str) -> dict[str, str]:
        values = {
            "LACUNA_DATABASE_URL": self.store_url,
            "LACUNA_POLICY_DIR": str(POLICIES),
            "LACUNA_ENVIRONMENT": "production",
            "LACUNA_USER": "scheduler@example.com",
            "LACUNA_EXAMPLE_DATA_DIR": str(self.work / "data"),
            "LACUNA_EXAMPLE_EXPORT": str(self.export),
        }
        values.update(extra)
        return self.home.env(**values)

    def run(self, env: dict[str, str]) -> Run:
        done = self.home.airflow("dags", "test", DAG_ID, env=env)
        return Run(done.returncode, done.stdout + done.stderr, self.home.task_states(DAG_ID))

    def governor(self, url: str | None = None) -> Governor:
        return Governor.open(database_url=url or self.store_url, policy_dir=str(POLICIES),
                             environment="production")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    home = AirflowHome(tmp_path_factory.mktemp("airflow_home"))
    home.migrate()
    work = tmp_path_factory.mktemp("lacuna_airflow")
    # A Downloads folder: an unmanaged location in every environment (as in the Dagster example)
    export = work / "data" / "Downloads" / "regional_report.csv"
    return Scenario(home, work, export, f"sqlite:///{work / 'lacuna.db'}")


@pytest.fixture(scope="module")
def gated_run(scenario: Scenario) -> Run:
    return scenario.run(scenario.lacuna_env())


def _key(scenario: Scenario, filename: str) -> str:
    return f"file::{scenario.work / 'data' / filename}"


def _gate_checks(gov: Governor, destination: str) -> list[Any]:
    """The gate's audit records about operations writing to ``destination`` (a key)."""
    out = []
    for record in gov.audit.records():
        if record.action != "gate.check":
            continue
        dest = record.details["operation"]["destination"] or {}
        if f"{dest.get('namespace')}::{dest.get('name')}" == destination:
            out.append(record)
    return out


def test_listener_feeds_lacuna_and_the_gate_stops_the_export(scenario: Scenario,
                                                              gated_run: Run) -> None:
    assert gated_run.returncode == 1, gated_run.output[-3000:]
    assert {t: gated_run.states[t] for t in UPSTREAM} == dict.fromkeys(UPSTREAM, "success")
    assert gated_run.states[EXPORT_TASK] == "failed"
    assert not scenario.export.exists(), "the denied export must not have written anything"
    assert f"Lacuna gate stopped task {EXPORT_TASK}" in gated_run.output
    assert "❌ Governance Policy Violation" in gated_run.output
    assert f"unmanaged location file://{scenario.export}" in gated_run.output

    analysis, summary = _key(scenario, "analysis.csv"), _key(scenario, "regional_summary.csv")
    export = f"file::{scenario.export}"
    with scenario.governor() as gov:
        edges = {(s, d, op.value) for s, d, op, _ in gov.graph.edges()}
        assert {
            ("postgres://crm.internal:5432::crm.public.customer_master",
             _key(scenario, "customers.csv"), "filter"),
            (_key(scenario, "customers.csv"), analysis, "join"),
            (_key(scenario, "sales.csv"), analysis, "join"),
            (analysis, summary, "aggregate"),
            (summary, export, "export"),
            (analysis, export, "export"),
        } <= edges
        joined = gov.graph.node(analysis).effective
        assert joined.tier is Tier.PROPRIETARY and "PII" in joined.tags
        aggregated = gov.graph.node(summary).effective
        assert "DERIVED_FROM_PII" in aggregated.tags and "PII" not in aggregated.tags

        records = list(gov.audit.records())
        gate = _gate_checks(gov, export)
        assert len(gate) == 1 and gate[0].decision is not None
        assert gate[0].decision["allow"] is False
        assert gate[0].decision["policy_id"] == "export-governance"
        assert gate[0].via == "airflow.gate"
        allowed = [r for r in records if r.action == "gate.check" and r.decision
                   and r.decision["allow"]]
        assert len(allowed) == len(UPSTREAM)
        ingested = {(r.resource, r.reason) for r in records if r.action == "lineage.ingest"}
        for task_id in UPSTREAM:
            assert (f"default.{DAG_ID}.{task_id}", "run event COMPLETE") in ingested
        assert (f"default.{DAG_ID}.{EXPORT_TASK}", "run event FAIL") in ingested
        assert (f"default.{DAG_ID}", "run event FAIL") in ingested  # the DAG run, no datasets
        export_events = {r.run_id for r in records if r.action == "lineage.ingest"
                         and r.resource == f"default.{DAG_ID}.{EXPORT_TASK}"}
        assert export_events == {gate[0].run_id}, "START, gate check and FAIL share one run id"
        assert gov.verify_audit().ok


def test_an_approved_exception_lets_the_export_run(scenario: Scenario, gated_run: Run) -> None:
    assert gated_run.states[EXPORT_TASK] == "failed"
    export = f"file::{scenario.export}"
    with scenario.governor() as gov:
        requested = gov.request_exception(
            operation_kind="export",
            sources=[_key(scenario, "regional_summary.csv"), _key(scenario, "analysis.csv")],
            destination=export, justification="regulator asked for the raw extract",
            requested_by="analyst@example.com",
        )
        approved = gov.approve_exception(requested.id, steward="dpo@example.com",
                                         duration=timedelta(hours=1))
    rerun = scenario.run(scenario.lacuna_env())
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert set(rerun.states.values()) == {"success"}
    assert scenario.export.read_text().splitlines()[0] == "country,total_revenue,contact_email"
    with scenario.governor() as gov:
        checks = _gate_checks(gov, export)
        assert [c.decision["allow"] for c in checks if c.decision] == [False, True]
        assert checks[-1].decision is not None
        assert checks[-1].decision["exception_id"] == approved.id


def _lineage(gov: Governor) -> dict[str, Any]:
    return {
        "edges": sorted((s, d, op.value, job) for s, d, op, job in gov.graph.edges()),
        "labels": {n.ref.key: (n.effective.tier.name, n.effective.sorted_tags())
                   for n in gov.graph.nodes()},
    }


def test_provider_http_transport_to_a_lacuna_server(scenario: Scenario, gated_run: Run) -> None:
    """Airflow's OpenLineage provider posts to a Lacuna server (Lacuna's listener off) and the
    gate asks the same server: the same lineage and labels as through the listener, and the
    export is stopped by the server's decision."""
    served_url = f"sqlite:///{scenario.work / 'served.db'}"
    scenario.export.unlink(missing_ok=True)  # written by the run under the exception
    with LacunaServer(served_url, POLICIES) as server:
        transport = {"type": "http", "url": server.url,
                     "auth": {"type": "api_key", "apiKey": server.producer_key}}
        run = scenario.run(scenario.lacuna_env(
            AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(transport),
            AIRFLOW__OPENLINEAGE__CUSTOM_RUN_FACETS=(
                "lacuna_orchestration.integrations.airflow.facets.lacuna_run_facets"),
            AIRFLOW__LACUNA__LISTENER_ENABLED="false",
            AIRFLOW__LACUNA__SERVER_URL=server.url,
            AIRFLOW__LACUNA__API_KEY=server.producer_key,
            LACUNA_DATABASE_URL=f"sqlite:///{scenario.work / 'never-opened.db'}",
        ))
    assert run.returncode == 1, run.output[-3000:]
    assert {t: run.states[t] for t in UPSTREAM} == dict.fromkeys(UPSTREAM, "success")
    assert run.states[EXPORT_TASK] == "failed"
    assert f"Lacuna gate stopped task {EXPORT_TASK}" in run.output
    assert f"unmanaged location file://{scenario.export}" in run.output
    assert not scenario.export.exists()
    assert not (scenario.work / "never-opened.db").exists(), "nothing may bypass the server"

    with scenario.governor(served_url) as served:
        via_http = _lineage(served)
        denied = _gate_checks(served, f"file::{scenario.export}")
        assert [c.decision["allow"] for c in denied if c.decision] == [False]
        producers = {r.details.get("producer") for r in served.audit.records()
                     if r.action == "lineage.ingest"}
        assert producers and all("airflow" in str(p) for p in producers), producers
    with scenario.governor() as listened:
        via_listener = _lineage(listened)
    assert via_http["edges"] == via_listener["edges"]
    assert via_http["labels"] == via_listener["labels"]
