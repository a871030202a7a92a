"""Real dbt builds of the example project on DuckDB: through ``lacuna dbt build`` and as a
plain ``dbt build`` collected afterwards."""

from __future__ import annotations

from collections import Counter

import pytest
from dbt_helpers import EXPORT, BuiltProject, duckdb_outbox, duckdb_tables, edges

from lacuna_orchestration.model import Tier

pytestmark = pytest.mark.slow

DIRECTORY = "model.lacuna_shop.customer_directory"
ORDERS = "model.lacuna_shop.customer_orders"
REVENUE = "model.lacuna_shop.revenue_by_country"
BUILT = {
    "seed.lacuna_shop.raw_customers", "seed.lacuna_shop.raw_orders",
    "seed.lacuna_shop.raw_payments", "model.lacuna_shop.stg_customers",
    "model.lacuna_shop.stg_orders", "model.lacuna_shop.stg_payments", ORDERS, REVENUE,
}


def _relation(run: BuiltProject, uid: str) -> str:
    node = run.manifest.node(uid)
    ref = run.gov.graph.resolve(f"{node.database}.{node.schema}.{node.identifier}")
    return ref


def expected_edges(run: BuiltProject, nodes: set[str]) -> set[tuple[str, str]]:
    """(parent, child) relation names from dbt's own manifest."""
    manifest = run.manifest
    out = set()
    for uid in nodes:
        node = manifest.node(uid)
        child = f"{node.database}.{node.schema}.{node.identifier}"
        for parent in manifest.relation_parents(uid):
            out.add((f"{parent.database}.{parent.schema}.{parent.identifier}", child))
    return out


# -- lacuna dbt build ------------------------------------------------------------------------

def test_every_hook_fired_once_per_built_node(wrapped_duckdb: BuiltProject) -> None:
    outcome = wrapped_duckdb.outcome
    assert outcome is not None
    kinds = Counter(r.kind for r in outcome.records)
    assert kinds["run_start"] == 1 and kinds["run_end"] == 1
    tracked = {r.unique_id for r in outcome.records if r.kind == "model"}
    assert tracked == BUILT | {DIRECTORY}
    run_start = next(r for r in outcome.records if r.kind == "run_start")
    assert run_start.lacuna_run_id == outcome.run_id
    assert run_start.target["type"] == "duckdb"
    run_end = next(r for r in outcome.records if r.kind == "run_end")
    assert run_end.data["stopped"] == [EXPORT]


def test_post_hook_reads_columns_from_the_warehouse(wrapped_duckdb: BuiltProject) -> None:
    outcome = wrapped_duckdb.outcome
    assert outcome is not None
    record = next(r for r in outcome.records if r.unique_id == REVENUE)
    assert [name for name, _ in record.columns] == [
        "country", "customer_count", "number_of_orders", "total_amount"]
    assert all(kind for _, kind in record.columns)  # types as DuckDB reports them
    node = wrapped_duckdb.gov.graph.node(_relation(wrapped_duckdb, REVENUE))
    assert [f.name for f in node.fields] == [name for name, _ in record.columns]
    seed = next(r for r in outcome.records if r.unique_id == "seed.lacuna_shop.raw_customers")
    assert {"email", "phone"} <= {name for name, _ in seed.columns}
    # a child's event names its parents without re-describing them: customer_orders keeps the
    # ten columns it was built with, not the four its schema.yml documents
    orders = next(r for r in outcome.records if r.unique_id == ORDERS)
    node = wrapped_duckdb.gov.graph.node(_relation(wrapped_duckdb, ORDERS))
    assert [f.name for f in node.fields] == [name for name, _ in orders.columns]
    assert len(node.fields) == 10


def test_lineage_graph_matches_the_dag(wrapped_duckdb: BuiltProject) -> None:
    gated = BUILT | {DIRECTORY}
    want = expected_edges(wrapped_duckdb, gated)
    have = edges(wrapped_duckdb.gov)
    assert want <= have
    # the export was decided (its START event) under the name of where its data would go
    assert ("shop.main.stg_customers",
            "/srv/partner-share/Downloads/customer_contacts_export") in have
    assert len(have) == len(want) + 1


def test_floors_and_inheritance(wrapped_duckdb: BuiltProject) -> None:
    gov = wrapped_duckdb.gov
    orders = gov.classification(_relation(wrapped_duckdb, ORDERS))
    assert orders.tier is Tier.PROPRIETARY
    assert {"PII", "FINANCIAL", "CUSTOMER_DATA"} <= orders.tags  # CUSTOMER_DATA: the meta floor
    revenue = gov.classification(_relation(wrapped_duckdb, REVENUE))
    assert revenue.tier is Tier.INTERNAL
    assert "DERIVED_FROM_PII" in revenue.tags and "PII" not in revenue.tags
    explicit = gov.graph.node(_relation(wrapped_duckdb, REVENUE)).explicit
    assert explicit is not None and explicit.tier is Tier.INTERNAL


def test_denied_model_is_never_built(wrapped_duckdb: BuiltProject) -> None:
    outcome = wrapped_duckdb.outcome
    assert outcome is not None
    assert sorted(outcome.denied) == [EXPORT]
    decision = outcome.denied[EXPORT]
    assert decision.policy_id == "export-governance"
    result = next(r for r in outcome.results if r.unique_id == EXPORT)
    assert result.status == "error"
    # the seed-style message, raised by the lacuna.gate() pre-hook
    assert "Governance Policy Violation" in result.message
    assert "Cannot export PII data to unmanaged location" in result.message
    assert "Alternatives:" in result.message and "Steward:" in result.message
    tables = duckdb_tables(wrapped_duckdb.database)  # type: ignore[arg-type]
    assert "main_exports.customer_contacts_export" not in tables
    assert "main.revenue_by_country" in tables


def test_verify_compliance_fails_the_run_on_a_floor_violation(
        wrapped_duckdb: BuiltProject) -> None:
    outcome = wrapped_duckdb.outcome
    assert outcome is not None
    assert outcome.exit_code == 1 and not outcome.dbt_success
    assert DIRECTORY in outcome.violations and "declares PUBLIC" in outcome.violations[DIRECTORY]
    hook = next(r for r in outcome.results if "on-run-end" in r.unique_id)
    assert hook.status == "error"
    assert "Lacuna compliance check failed" in hook.message
    assert f"{DIRECTORY} violates its declared floor" in hook.message
    # nothing denied was built, so the export does not appear among the violations
    assert EXPORT not in hook.message


def test_events_after_the_run(wrapped_duckdb: BuiltProject) -> None:
    gov = wrapped_duckdb.gov
    outcome = wrapped_duckdb.outcome
    assert outcome is not None and not outcome.emit_errors
    records = [r for r in gov.audit.tail(500) if r.action == "lineage.ingest"]
    by_job: dict[str, list[str]] = {}
    for r in records:
        by_job.setdefault(r.resource, []).append(r.reason)
    assert by_job[f"dbt.{REVENUE}"] == ["run event START", "run event COMPLETE"]
    assert by_job[f"dbt.{EXPORT}"] == ["run event START", "run event FAIL"]
    assert by_job["dbt.lacuna_shop.build"] == ["run event START", "run event FAIL"]
    assert gov.verify_audit().ok


# -- plain dbt build, collected ------------------------------------------------------------------

def test_plain_build_warns_that_it_is_ungoverned(plain_duckdb: BuiltProject) -> None:
    assert plain_duckdb.dbt_result.success  # nothing gated: everything built
    assert plain_duckdb.warnings and "not governed" in plain_duckdb.warnings[0]


def test_plain_build_fills_the_outbox(plain_duckdb: BuiltProject) -> None:
    kinds = Counter(r["kind"] for r in plain_duckdb.outbox_before)
    assert kinds == {"run_start": 1, "model": len(BUILT) + 1, "run_end": 1}
    assert all(r["lacuna"] is None for r in plain_duckdb.outbox_before)


def test_plain_build_is_collected_into_lacuna(plain_duckdb: BuiltProject) -> None:
    result = plain_duckdb.collected
    assert result is not None and result.ok
    assert result.records == len(plain_duckdb.outbox_before)
    assert result.acknowledged == result.records
    assert duckdb_outbox(plain_duckdb.database) == []  # type: ignore[arg-type]
    # the export did build in the plain run: collecting it reports the policy's denial
    assert [d.policy_id for d in result.denials] == ["export-governance"]
    want = expected_edges(plain_duckdb, BUILT | {EXPORT})
    have = edges(plain_duckdb.gov)
    assert ("shop.main.stg_customers", "/srv/partner-share/Downloads/customer_contacts_export"
            ) in have
    assert {e for e in want if "exports" not in e[1]} <= have
    revenue = plain_duckdb.gov.classification("shop.main.revenue_by_country")
    assert revenue.tier is Tier.INTERNAL and "DERIVED_FROM_PII" in revenue.tags


def test_collecting_again_finds_nothing(plain_duckdb: BuiltProject) -> None:
    from lacuna_orchestration.integrations.dbt import collect

    again = collect(plain_duckdb.gov, plain_duckdb.args)
    assert (again.records, again.events, again.acknowledged) == (0, 0, 0)


# -- the command line -------------------------------------------------------------------------

def _lacuna(argv: list[str]) -> int:
    import argparse

    from lacuna_orchestration.cli import build_parser
    from lacuna_orchestration.integrations.dbt.cli import add_dbt_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "dbt" not in commands.choices:
        add_dbt_parser(commands)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_cli_gate_decides_without_building(wrapped_duckdb: BuiltProject, tmp_path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = _lacuna(["--database-url", f"sqlite:///{tmp_path / 'cli.db'}", "dbt", "gate",
                    *wrapped_duckdb.args, "--select", "stg_customers+"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"DENY  export    {EXPORT}" in out
    assert "ALLOW join      model.lacuna_shop.customer_orders" in out
    assert "seed.lacuna_shop" not in out  # not selected
    assert "Cannot export PII data to unmanaged location" in out


def test_cli_collects_records_from_the_dbt_log(wrapped_duckdb: BuiltProject, tmp_path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    log = wrapped_duckdb.project / "logs" / "dbt.log"
    store = tmp_path / "from_log.db"
    code = _lacuna(["--database-url", f"sqlite:///{store}", "dbt", "collect",
                    "--log-file", str(log), *wrapped_duckdb.args])
    out = capsys.readouterr().out
    assert code == 1  # the run built a model that violates its floor (no denied model built)
    assert f"{DIRECTORY} violates its declared floor" in out
    from lacuna_orchestration.governor import Governor

    with Governor.open(database_url=f"sqlite:///{store}") as gov:
        assert edges(gov) >= expected_edges(wrapped_duckdb, BUILT)
    outcome = wrapped_duckdb.outcome
    assert outcome is not None
    assert f"collected {len(outcome.records)} record(s)" in out


def test_lacuna_dbt_test_runs_the_data_tests_governed(wrapped_duckdb: BuiltProject) -> None:
    from lacuna_orchestration.integrations.dbt import run_dbt

    outcome = run_dbt("test", [*wrapped_duckdb.args, "--quiet"], governor=wrapped_duckdb.gov)
    assert outcome.exit_code == 0, outcome.summary()
    tests = [r for r in outcome.results if r.resource_type == "test"]
    assert tests and all(r.status == "pass" for r in tests)
    assert outcome.plan is not None and not outcome.plan.nodes  # `test` builds nothing to gate
    kinds = Counter(r.kind for r in outcome.records)
    assert kinds == {"run_start": 1, "run_end": 1}
