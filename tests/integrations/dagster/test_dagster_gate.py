"""The gate, in process: allow, deny before the write, exceptions, fail closed."""


import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_helpers import QUIET, build_assets, export_path, failure_message, materialized

from lacuna_orchestration.integrations.dagster import (
    LacunaResource,
    build_lacuna_checks,
    governed,
    governed_resources,
)

EXPORT = "regional_report_export"


def run_example(tmp_path: Path, lacuna: LacunaResource, *, selection: Any = None,
                tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
    assets = build_assets(export_path(tmp_path))
    resources = governed_resources(
        assets, lacuna, {"io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))}
    )
    return dg.materialize([*assets, *build_lacuna_checks(assets)], resources=resources,
                          selection=selection, raise_on_error=False, run_config=QUIET, tags=tags)


def test_allowed_assets_materialize_with_their_tiers(tmp_path, lacuna):
    result = run_example(tmp_path, lacuna, selection=["customers", "sales", "customer_sales",
                                                      "regional_summary"])
    assert result.success
    md = materialized(result)
    assert md["customers"]["lacuna/tier"] == "PROPRIETARY"
    assert "PII" in md["customers"]["lacuna/tags"]
    assert md["sales"]["lacuna/tags"] == "FINANCIAL"
    assert md["customer_sales"]["lacuna/tier"] == "PROPRIETARY"
    assert {"PII", "FINANCIAL"} <= set(md["customer_sales"]["lacuna/tags"].split(", "))
    assert md["regional_summary"]["lacuna/tier"] == "INTERNAL"
    assert "DERIVED_FROM_PII" in md["regional_summary"]["lacuna/tags"]
    assert md["customer_sales"]["lacuna/decision"] == "ALLOW"
    # The IO manager wrote every allowed asset.
    for key in ("customers", "sales", "customer_sales", "regional_summary"):
        assert (tmp_path / "storage" / key).is_file()


def test_denied_export_fails_before_it_writes_with_the_policy_message(tmp_path, lacuna,
                                                                       open_governor):
    result = run_example(tmp_path, lacuna)
    assert not result.success
    message = failure_message(result, EXPORT)
    assert "Governance Policy Violation" in message
    assert "Cannot export PII data to unmanaged location" in message
    assert "Alternatives:" in message and "Request a time-boxed exception" in message
    assert "export-governance v2.0.0" in message
    assert "Steward: data-governance@example.com" in message
    assert not export_path(tmp_path).exists()  # the body never ran
    assert EXPORT not in materialized(result)
    gov = open_governor()
    denials = [r for r in gov.audit.tail(100)
               if r.action == "gate.check" and r.decision and not r.decision["allow"]]
    assert len(denials) == 1
    assert denials[0].via == "dagster"
    assert denials[0].decision["policy_id"] == "export-governance"
    assert gov.verify_audit().ok


def test_failure_carries_the_decision_as_metadata(tmp_path, lacuna):
    result = run_example(tmp_path, lacuna)
    failure = next(e for e in result.all_events if e.is_step_failure and e.step_key == EXPORT)
    md = {k: getattr(v, "value", v)
          for k, v in failure.event_specific_data.user_failure_data.metadata.items()}
    assert md["lacuna/decision"] == "DENY"
    assert md["lacuna/policy"] == "export-governance v2.0.0"
    assert md["lacuna/steward"] == "data-governance@example.com"
    assert md["lacuna/source_tier"] == "PROPRIETARY"


def test_approved_exception_lets_the_export_through_and_is_audited(tmp_path, lacuna,
                                                                    open_governor):
    assert not run_example(tmp_path, lacuna).success
    gov = open_governor()
    exc = gov.request_exception(
        operation_kind="export",
        sources=("dagster::customer_sales", "dagster::regional_summary"),
        destination=f"file::{export_path(tmp_path).resolve()}",
        justification="board report", requested_by="analyst@example.com",
    )
    gov.approve_exception(exc.id, steward="data-governance@example.com",
                          duration=timedelta(days=1))
    result = run_example(tmp_path, lacuna, selection=[EXPORT])
    assert result.success
    assert export_path(tmp_path).is_file()
    md = materialized(result)[EXPORT]
    assert md["lacuna/exception_id"] == exc.id
    assert md["lacuna/decision"] == f"ALLOW (exception {exc.id})"
    after = open_governor()
    granted = [r for r in after.audit.tail(100) if r.action == "gate.check"
               and r.decision and r.decision["allow"] and r.decision["exception_id"] == exc.id]
    assert len(granted) == 1


def test_exception_named_in_a_run_tag_is_used(tmp_path, lacuna, open_governor):
    run_example(tmp_path, lacuna)
    gov = open_governor()
    # A pattern-scoped exception; naming it in the run tag makes the gate look it up directly.
    exc = gov.request_exception(operation_kind="export", sources=("dagster::*",),
                                destination="file::*regional_report.csv",
                                justification="audit sample", requested_by="analyst@example.com")
    gov.approve_exception(exc.id, steward="data-governance@example.com",
                          duration=timedelta(hours=1))
    result = run_example(tmp_path, lacuna, selection=[EXPORT],
                         tags={"lacuna/exception_id": exc.id})
    assert result.success
    assert materialized(result)[EXPORT]["lacuna/exception_id"] == exc.id


def test_expired_exception_does_not_help(tmp_path, lacuna, open_governor):
    run_example(tmp_path, lacuna)
    gov = open_governor()
    exc = gov.request_exception(operation_kind="export",
                                sources=("dagster::customer_sales", "dagster::regional_summary"),
                                destination=f"file::{export_path(tmp_path).resolve()}",
                                justification="old", requested_by="analyst@example.com")
    from lacuna_orchestration.model import utcnow

    gov.approve_exception(exc.id, steward="data-governance@example.com",
                          duration=timedelta(minutes=1), now=utcnow() - timedelta(hours=1))
    result = run_example(tmp_path, lacuna, selection=[EXPORT])
    assert not result.success
    assert not export_path(tmp_path).exists()


def test_io_manager_gate_stops_the_write_of_a_value_returning_asset(tmp_path, lacuna):
    """A plain asset (no decorator) whose output goes to an unmanaged place: the gated IO
    manager refuses before the inner IO manager stores anything."""
    assets = build_assets(export_path(tmp_path))

    @dg.asset(deps=["customer_sales"],
              metadata={"lacuna/destination": (tmp_path / "Desktop" / "dump.pkl").as_uri()})
    def desktop_dump() -> list[int]:
        return [1, 2, 3]

    storage = tmp_path / "storage"
    resources = governed_resources([*assets, desktop_dump], lacuna,
                                   {"io_manager": dg.FilesystemIOManager(base_dir=str(storage))})
    result = dg.materialize([*assets[:3], desktop_dump], resources=resources,
                            raise_on_error=False, run_config=QUIET)
    assert not result.success
    assert "Cannot export PII data to unmanaged location" in failure_message(result,
                                                                             "desktop_dump")
    assert (storage / "customer_sales").is_file()
    assert not (storage / "desktop_dump").exists()


def test_explicit_gate_call_in_the_body(tmp_path, lacuna):
    written = tmp_path / "Downloads" / "explicit.csv"

    @dg.asset(deps=["customers"], metadata={"lacuna/destination": written.as_uri()})
    def explicit_export(context: dg.AssetExecutionContext, lacuna: LacunaResource) -> None:
        lacuna.gate(context)
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_text("email\n")

    assets = build_assets(export_path(tmp_path))
    resources = governed_resources(assets, lacuna, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
    result = dg.materialize([assets[0], explicit_export], resources=resources,
                            raise_on_error=False, run_config=QUIET)
    assert "Cannot export PII data" in failure_message(result, "explicit_export")
    assert not written.exists()


def test_governed_decorator_adds_context_and_resource_parameters(tmp_path, lacuna):
    calls: list[str] = []

    @dg.asset(deps=["sales"], metadata={"lacuna/operation": "filter"})
    @governed
    def big_orders() -> list[dict[str, Any]]:
        calls.append("ran")
        return [{"order_id": 1, "amount": 500.0}]

    assets = build_assets(export_path(tmp_path))
    assert "lacuna" in big_orders.required_resource_keys
    resources = governed_resources(assets, lacuna, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
    result = dg.materialize([assets[1], big_orders], resources=resources, run_config=QUIET)
    assert result.success and calls == ["ran"]
    md = materialized(result)["big_orders"]
    assert md["lacuna/tier"] == "INTERNAL"
    assert md["lacuna/tags"] == "FINANCIAL"  # inherited from sales through the filter
    # Columns came from the returned rows and are shown in the UI's column schema.
    assert [c.name for c in md["dagster/column_schema"].columns] == ["order_id", "amount"]


def test_governed_refuses_generator_assets():
    with pytest.raises(dg.DagsterInvalidDefinitionError, match="lacuna.governed"):
        @governed
        def gen():  # pragma: no cover - never runs
            yield 1


def test_development_environment_allows_scratch_exports(tmp_path, database_url):
    """Same pipeline, another policy context: /tmp is scratch space in development only."""
    scratch = Path(tempfile.mkdtemp(prefix="lacuna-dagster-", dir="/tmp"))
    target = scratch / "report.csv"
    try:
        for environment, allowed in (("production", False), ("development", True)):
            lacuna = LacunaResource(database_url=database_url, environment=environment)
            assets = build_assets(target)
            resources = governed_resources(assets, lacuna, {
                "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
            result = dg.materialize(assets, resources=resources, raise_on_error=False,
                                    run_config=QUIET)
            assert result.success is allowed, environment
            assert target.is_file() is allowed, environment
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_store_that_cannot_be_opened_fails_closed_with_the_reason(tmp_path):
    broken = LacunaResource(database_url="postgresql://nobody@127.0.0.1:1/none",
                            environment="production")
    assets = build_assets(export_path(tmp_path))
    resources = governed_resources(assets, broken, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
    result = dg.materialize(assets[:1], resources=resources, raise_on_error=False,
                            run_config=QUIET)
    assert not result.success
    message = failure_message(result, "customers")
    assert "Lacuna could not decide, so the gate fails closed" in message
    assert "lacuna.fail-closed" in message
    assert not (tmp_path / "storage" / "customers").exists()
