"""The platform's "service" variant (``demo.py --service``): Dagster, dbt and Airflow report to
a ``lacuna dev`` server by URL, and everything asserted here was read back through the
server's HTTP API — the lineage graph, tiers, decisions, the audit chain and the report.

The variant runs once for the module (about 40 s: the server's start, a Dagster run, a dbt
build, four Airflow task runs and an exception that really expires after 8 s).
"""

from __future__ import annotations

import importlib
import io
import itertools
import json
import socket
from collections.abc import Iterator
from contextlib import closing, redirect_stdout
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from platform_helpers import PARTNER_EXPORT, assert_partner_export_denied, load_demo

from lacuna_orchestration.model import parse_timestamp

pytestmark = pytest.mark.slow

demo = load_demo()
service = demo.load_service_story()
server_module = importlib.import_module(f"{demo.PLATFORM_MODULE}.service")
GOVERNED_EXPORT = "/governed/workspace/revenue_by_country.csv"


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    """(the service run, what the demo printed)."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        run = demo.run_service(tmp_path_factory.mktemp("service") / "out")
    return run, printed.getvalue()


@pytest.fixture(scope="module")
def run(shown: tuple[Any, str]) -> Any:
    return shown[0]


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, int(port))) == 0


# -- one lineage graph, read back over HTTP ------------------------------------------------------

def test_the_lineage_runs_from_a_dagster_raw_table_through_dbt_to_the_airflow_export(
    run: Any,
) -> None:
    graph = run.graph()  # GET /api/v1/datasets + GET /api/v1/lineage/graph
    export = f"file::{GOVERNED_EXPORT}"
    path = nx.shortest_path(graph, run.paths.raw("transactions").key, export)
    names = [run.datasets[k]["name"] for k in path]
    assert names == ["warehouse.raw.transactions", "warehouse.main.stg_transactions",
                     "warehouse.main.customer_transactions", "warehouse.main.revenue_by_country",
                     GOVERNED_EXPORT]
    jobs = [graph.edges[a, b]["job"] for a, b in itertools.pairwise(path)]
    assert jobs[0] == "dbt.model.lacuna_platform.stg_transactions"  # dbt read Dagster's table
    assert jobs[-1] == "default.platform_exports.export_revenue_by_country"  # Airflow read dbt's
    # GET /api/v1/lineage/upstream of the export reaches every raw table it derives from
    assert {run.paths.raw(t).key for t in ("transactions", "crm_contacts", "country_codes")} <= set(
        run.export_upstream)
    assert run.paths.raw("transactions").key in nx.ancestors(graph, f"file::{PARTNER_EXPORT}")


def test_the_three_orchestrators_named_the_same_datasets(run: Any) -> None:
    """No islands: Dagster's raw tables carry the warehouse names dbt reads them by, and every
    dataset in the server's catalog belongs to the one warehouse or is an export."""
    raw = run.paths.raw("crm_contacts").key
    assert raw == f"duckdb://{run.paths.warehouse}::warehouse.raw.crm_contacts"
    assert run.datasets[raw]["downstream"] >= 1  # read by dbt's stg_contacts
    assert all(k.startswith((run.paths.warehouse_namespace + "::", "file::"))
               for k in run.datasets)
    assert nx.number_weakly_connected_components(run.graph()) == 1


def test_tiers_read_back_match_the_seed_scenarios(run: Any) -> None:
    def row(model: str) -> dict[str, Any]:
        found: dict[str, Any] = run.datasets[run.table(model).key]
        return found

    joined = row("customer_transactions")
    union = set().union(*(row(p)["tags"] for p in ("stg_contacts", "stg_transactions",
                                                   "stg_country_codes")))
    assert joined["tier"] == "PROPRIETARY" and set(joined["tags"]) == union
    revenue = row("revenue_by_country")
    assert revenue["tier"] == "INTERNAL" and "DERIVED_FROM_PII" in revenue["tags"]
    assert "PII" not in revenue["tags"]
    anonymized = row("contacts_anonymized")
    assert anonymized["tier"] == "INTERNAL" and "ANONYMIZED" in anonymized["tags"]
    assert not set(anonymized["tags"]) & {"PII", "GDPR", "EMAIL", "PHONE"}


# -- the gate, answered by the server --------------------------------------------------------------

def test_the_pii_export_was_denied_by_the_server_with_the_full_message(run: Any) -> None:
    tags = run.datasets[run.table("customer_transactions").key]["tags"]
    assert_partner_export_denied(run.pii_export, tags)
    # the same decision is in the server's record (GET /api/v1/decisions)
    assert run.pii_export.denial.decision_id in {d.decision_id for d in run.decisions if not d.allow}


def test_the_aggregate_export_to_the_governed_workspace_ran(run: Any) -> None:
    task = run.revenue_export
    assert task.state == "success" and [d.allow for d in task.decisions] == [True]
    assert task.written == run.paths.mounted(GOVERNED_EXPORT) and task.written.is_file()


def test_the_exception_allowed_the_export_until_it_really_expired(run: Any) -> None:
    exc = run.exception
    assert exc["approver"] == "data-governance@example.com"
    assert exc["requested_by"] == "analyst@example.com"
    under = run.pii_export_under_exception
    assert under.state == "success" and [d.exception_id for d in under.decisions] == [exc["id"]]
    after = run.pii_export_after_expiry
    assert after.state == "failed" and after.denial is not None
    assert after.denial.exception_id == ""
    # decided after the approval ran out, by the server's clock
    assert parse_timestamp(after.denial.decided_at) > parse_timestamp(exc["valid_until"])
    assert not run.paths.mounted(PARTNER_EXPORT).exists()


def test_dbt_models_were_stopped_by_purpose_and_domain_policies(run: Any) -> None:
    outreach = run.dbt.denied["model.lacuna_platform.patient_outreach"]
    assert outreach.policy_id == "purpose-limitation"
    marketing = run.dbt.denied["model.lacuna_platform.marketing_contacts"]
    assert marketing.policy_id == "marketing-data-use"
    assert marketing.steward == "marketing-governance@example.com"
    assert run.dbt.status_of("model.lacuna_platform.marketing_country_revenue") == "success"


def test_scratch_space_is_decided_by_the_environment_the_check_names(run: Any) -> None:
    assert run.scratch_in_development.allow
    assert not run.scratch_in_production.allow
    assert run.scratch_in_production.policy_id == "dev-scratch-space"


# -- audit, report, output, shutdown ----------------------------------------------------------------

def test_the_audit_chain_verifies_over_http(run: Any) -> None:
    assert run.verification["ok"] is True and run.verification["count"] > 40
    assert run.verification["first_bad_seq"] is None


def test_the_report_fetched_over_http_lists_the_denial_and_the_exception(run: Any) -> None:
    report = json.loads(run.paths.report_json.read_text())
    assert report["kind"] == "iso27001-a94" and report["chain"]["verified"] is True
    sections = report["sections"]
    assert PARTNER_EXPORT in {r["resource"] for r in sections["denials"]["rows"]}
    excepted = sections["allowed_under_exception"]["rows"]
    assert excepted and {r["exception"] for r in excepted} == {run.exception["id"]}
    assert PARTNER_EXPORT in run.paths.report_html.read_text()


def test_the_demo_prints_the_tree_the_denials_and_how_the_expiry_was_shown(
    shown: tuple[Any, str],
) -> None:
    run, output = shown
    assert f"Lineage read back from {run.url}" in output
    tree = service.lineage_tree(run.datasets, run.edges, f"file::{GOVERNED_EXPORT}")
    assert " ".join(tree.split()) in " ".join(output.split())  # rich wraps long lines
    assert "└─ warehouse.main.revenue_by_country (INTERNAL, tags:" in tree
    assert "warehouse.raw.transactions (PROPRIETARY, tags: FINANCIAL, PII)" in tree
    assert "export_customer_transactions: failed (blocked by export-governance)" in output
    flat = " ".join(output.split())
    assert "Exception expiry: shown in real time — approved for 8 s" in flat
    assert "lacuna dev: stopped (shut down on SIGTERM)" in flat
    assert "Traceback" not in output


def test_the_server_is_stopped_at_the_end(run: Any) -> None:
    assert run.server is None and run.server_exit is not None
    assert not _port_open(run.url)
    assert (run.state_dir / "dev.db").is_file()  # its store stays under the run's folder


# -- failures ---------------------------------------------------------------------------------------

def test_a_failing_step_stops_the_server_and_the_demo_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    seen: dict[str, Any] = {}

    def broken(run: Any) -> None:
        seen["url"], seen["process"] = run.url, run.server.process
        raise RuntimeError("warehouse file is locked\n  (second line never shown)")

    def steps() -> Iterator[Any]:
        yield service.Step("Start lacuna dev", service._start, "look at the server log")
        yield service.Step("Dagster → server", broken, "run the Dagster example")

    monkeypatch.setattr(service, "steps", steps)
    with pytest.raises(SystemExit) as stopped:
        demo.main(["--service", "--out", str(tmp_path / "out")])
    assert stopped.value.code == 1
    output = capsys.readouterr().out
    assert ("demo failed at step 2 'Dagster → server': warehouse file is locked"
            in " ".join(output.split()))
    assert "→ run the Dagster example" in output
    assert "second line" not in output and "Traceback" not in output
    assert seen["process"].poll() is not None  # the server was stopped, not left behind
    assert not _port_open(seen["url"])


def test_a_server_that_cannot_start_is_one_clear_error(tmp_path: Path) -> None:
    server = server_module.DevServer(tmp_path / "state", admin_key="too-short")
    with pytest.raises(server_module.ServiceError,
                       match=r"^lacuna dev exited with code 2: lacuna: error: an API key must "
                             r"be at least 20 characters long$"):
        server.start()
    assert not server.running


def test_the_tree_drawn_from_api_rows_marks_cycles_and_unclassified_datasets() -> None:
    rows = {
        "ns::a": {"name": "a", "tier": "PROPRIETARY", "tags": ["PII"]},
        "ns::b": {"name": "b", "tier": "UNKNOWN", "tags": []},
    }
    edges = [{"source": "ns::b", "target": "ns::a"}, {"source": "ns::a", "target": "ns::b"},
             {"source": "ns::c", "target": "ns::a"}]
    assert service.lineage_tree(rows, edges, "ns::a").splitlines() == [
        "a (PROPRIETARY, tags: PII)",
        "├─ b (unclassified)",
        "│  └─ a (PROPRIETARY, tags: PII) (cycle)",
        "└─ ns::c (not in the catalog)",
    ]
