"""OpenLineage emission: every materialization becomes START/COMPLETE (or FAIL) events that go
through Lacuna's ingest path; the translator names datasets and reads asset metadata."""

import logging
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_helpers import POLICIES, QUIET, build_assets, export_path, materialized

from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.integrations.dagster import (
    DAGSTER_PRODUCER,
    DagsterTranslator,
    DagsterTranslatorSettings,
    LacunaResource,
    build_lacuna_checks,
    columns_of_value,
    destination_ref,
    detach_governor,
    governed_resources,
)
from lacuna_orchestration.lineage.openlineage import parse_event
from lacuna_orchestration.model import DatasetRef, OperationKind, Tier


class RecordingGovernor:
    """A real governor that also keeps every event it ingests (and can be told to fail)."""

    def __init__(self, gov: Governor, *, fail_ingest: bool = False) -> None:
        self._gov = gov
        self.fail_ingest = fail_ingest
        self.events: list[dict[str, Any]] = []

    def ingest(self, event: dict[str, Any], **kwargs: Any) -> Any:
        if self.fail_ingest:
            raise ConnectionError("lineage store offline")
        self.events.append(event)
        return self._gov.ingest(event, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gov, name)


@pytest.fixture()
def recording(database_url):
    gov = Governor.open(database_url=database_url, policy_dir=str(POLICIES),
                        environment="production", user="analyst@example.com")
    rec = RecordingGovernor(gov)
    resource = LacunaResource.from_governor(rec)
    yield rec, resource
    detach_governor(resource.attached)
    gov.close()


def _run(tmp_path: Path, resource: LacunaResource, assets: list[Any] | None = None
         ) -> dg.ExecuteInProcessResult:
    assets = assets or build_assets(export_path(tmp_path))
    resources = governed_resources(assets, resource, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))})
    return dg.materialize([*assets, *build_lacuna_checks(assets)], resources=resources,
                          raise_on_error=False, run_config=QUIET)


def _events(rec: RecordingGovernor, job: str) -> list[dict[str, Any]]:
    return [e for e in rec.events if e["job"]["name"] == job]


def test_each_materialization_sends_start_then_complete(tmp_path, recording):
    rec, resource = recording
    _run(tmp_path, resource)
    for job in ("customers", "sales", "customer_sales", "regional_summary"):
        assert [e["eventType"] for e in _events(rec, job)] == ["START", "COMPLETE"], job
        start, complete = _events(rec, job)
        assert start["run"]["runId"] == complete["run"]["runId"]
        assert complete["producer"] == DAGSTER_PRODUCER
        assert complete["run"]["facets"]["parent"]["run"]["runId"]  # the Dagster run
    # The export was denied: one FAIL, and no output (nothing was written there).
    (fail,) = _events(rec, "regional_report_export")
    assert fail["eventType"] == "FAIL"
    assert fail["outputs"] == []
    assert "Cannot export PII data" in fail["run"]["facets"]["errorMessage"]["message"]


def test_complete_event_carries_inputs_schema_operation_and_labels(tmp_path, recording):
    rec, resource = recording
    _run(tmp_path, resource)
    complete = _events(rec, "customer_sales")[-1]
    parsed = parse_event(complete)  # spec-valid for openlineage-python's own models
    assert [d.ref.key for d in parsed.inputs] == ["dagster::customers", "dagster::sales"]
    assert parsed.outputs[0].ref.key == "dagster::customer_sales"
    assert parsed.operation is OperationKind.JOIN
    # Columns came from the rows the asset returned (no schema declared on it).
    assert [f.name for f in parsed.outputs[0].fields] == ["customer_id", "email", "region",
                                                          "amount"]
    customers = _events(rec, "customers")[-1]
    assert customers["outputs"][0]["facets"]["lacuna"]["tags"] == ["PII"]
    summary = parse_event(_events(rec, "regional_summary")[-1])
    assert summary.operation is OperationKind.AGGREGATE
    assert summary.outputs[0].explicit_tier is Tier.INTERNAL


def test_lineage_graph_holds_the_pipeline_after_the_run(tmp_path, lacuna, open_governor):
    _run(tmp_path, lacuna)
    gov = open_governor()  # a fresh process's view: everything was persisted
    edges = {(s, d) for s, d, _, _ in gov.graph.edges()}
    assert {("dagster::customers", "dagster::customer_sales"),
            ("dagster::sales", "dagster::customer_sales"),
            ("dagster::customer_sales", "dagster::regional_summary")} <= edges
    assert not any(d.startswith("file::") for _, d in edges)  # the denied export left no edge
    assert gov.classification("dagster::customer_sales").tier is Tier.PROPRIETARY
    summary = gov.classification("dagster::regional_summary")
    assert summary.tier is Tier.INTERNAL and "DERIVED_FROM_PII" in summary.tags
    assert set(gov.graph.upstream("dagster::regional_summary")) == {
        "dagster::customer_sales", "dagster::customers", "dagster::sales"}
    ingested = [r for r in gov.audit.tail(200) if r.action == "lineage.ingest"]
    assert {r.via for r in ingested} == {"dagster"}
    reasons = {(r.resource, r.reason) for r in ingested}
    assert ("dagster.customer_sales", "run event START") in reasons
    assert ("dagster.customer_sales", "run event COMPLETE") in reasons
    assert ("dagster.regional_report_export", "run event FAIL") in reasons


def test_exported_file_becomes_a_dataset_under_the_file_namespace(tmp_path, lacuna,
                                                                   open_governor):
    from datetime import timedelta

    _run(tmp_path, lacuna)
    gov = open_governor()
    target = f"file::{export_path(tmp_path).resolve()}"
    exc = gov.request_exception(operation_kind="export",
                                sources=("dagster::customer_sales", "dagster::regional_summary"),
                                destination=target, justification="t", requested_by="a@x")
    gov.approve_exception(exc.id, steward="s@x", duration=timedelta(hours=1))
    _run(tmp_path, lacuna)
    after = open_governor()
    assert ("dagster::customer_sales", target) in {(s, d) for s, d, _, _ in after.graph.edges()}
    assert after.classification(target).tier is Tier.PROPRIETARY


def test_column_lineage_metadata_becomes_the_column_lineage_facet(tmp_path, recording):
    rec, resource = recording
    customers = build_assets(export_path(tmp_path))[0]

    @dg.asset(
        deps=["customers"],
        metadata={
            "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn("contact", "string")]),
            "dagster/column_lineage": dg.TableColumnLineage(deps_by_column={
                "contact": [dg.TableColumnDep(asset_key=dg.AssetKey("customers"),
                                              column_name="email")]}),
        },
    )
    def contacts() -> list[dict[str, Any]]:
        return [{"contact": "ada@example.com"}]

    result = _run(tmp_path, resource, [customers, contacts])
    assert result.success
    facet = _events(rec, "contacts")[-1]["outputs"][0]["facets"]["columnLineage"]
    assert facet["fields"]["contact"]["inputFields"] == [
        {"namespace": "dagster", "name": "customers", "field": "email"}]
    node = rec.graph.node("dagster::contacts")
    assert [s.column for s in node.column_lineage["contact"]] == ["email"]


def test_emission_failures_are_logged_and_never_fail_the_run(tmp_path, database_url, caplog):
    gov = Governor.open(database_url=database_url, policy_dir=str(POLICIES),
                        environment="production")
    rec = RecordingGovernor(gov, fail_ingest=True)
    resource = LacunaResource.from_governor(rec)
    try:
        assets = build_assets(export_path(tmp_path))[:2]
        with caplog.at_level(logging.WARNING):
            result = _run(tmp_path, resource, assets)
        assert result.success
        assert (tmp_path / "storage" / "customers").is_file()
        assert any("was not recorded: lineage store offline" in r.getMessage()
                   for r in caplog.records)
    finally:
        detach_governor(resource.attached)
        gov.close()


def test_emit_lineage_false_sends_nothing_but_still_gates(tmp_path, recording):
    rec, _ = recording
    quiet = LacunaResource.from_governor(rec._gov, emit_lineage=False)
    result = _run(tmp_path, quiet)
    detach_governor(quiet.attached)
    assert rec.events == []
    assert not result.success  # the export is still denied
    assert not export_path(tmp_path).exists()
    assert materialized(result)["customers"]["lacuna/decision"] == "ALLOW"


# -- translator --------------------------------------------------------------------------------
def test_translator_reads_operation_destination_and_floors_from_metadata_and_tags():
    @dg.asset(deps=["a", "b"], tags={"lacuna/classification": "proprietary",
                                     "lacuna/tags": "PII.GDPR"},
              metadata={"lacuna/destination": "s3://partner-bucket/drop/x.csv",
                        "lacuna/purpose": "billing"})
    def pushed() -> None: ...

    op = DagsterTranslator().get_operation_for(pushed.specs_by_key[pushed.key])
    assert op.kind is OperationKind.EXPORT  # a destination implies an export
    assert op.output == DatasetRef("s3://partner-bucket", "drop/x.csv")
    assert op.inputs == (DatasetRef("dagster", "a"), DatasetRef("dagster", "b"))
    assert op.declared_tier is Tier.PROPRIETARY
    assert op.declared_tags == {"PII", "GDPR"}
    assert op.purpose == "billing"


def test_translator_is_overridable_per_decision():
    class Warehouse(DagsterTranslator):
        def get_dataset_ref(self, asset_key: dg.AssetKey) -> DatasetRef:
            return DatasetRef("postgres://warehouse:5432", ".".join(asset_key.path))

    @dg.asset(key=["analytics", "orders"], deps=[dg.AssetKey(["raw", "orders"])])
    def orders() -> None: ...

    op = Warehouse().get_operation_for(orders.specs_by_key[orders.key])
    assert op.output.key == "postgres://warehouse:5432::analytics.orders"
    assert op.inputs[0].key == "postgres://warehouse:5432::raw.orders"
    default = DagsterTranslator(DagsterTranslatorSettings(namespace="acme"))
    assert default.get_dataset_ref(orders.key).key == "acme::analytics/orders"


def test_translator_rejects_unknown_operation_and_tier_naming_the_asset():
    @dg.asset(metadata={"lacuna/operation": "teleport"})
    def odd() -> None: ...

    with pytest.raises(ValidationError, match="asset odd: unknown operation kind 'teleport'"):
        DagsterTranslator().get_operation_for(odd.specs_by_key[odd.key])


@pytest.mark.parametrize(("text", "key"), [
    ("file:///tmp/out.csv", "file::/tmp/out.csv"),
    ("/home/a/Downloads/x.csv", "file::/home/a/Downloads/x.csv"),
    ("s3://bucket/k/x.parquet", "s3://bucket::k/x.parquet"),
    ("postgres://wh:5432::public.t", "postgres://wh:5432::public.t"),
])
def test_destination_ref_follows_openlineage_naming(text, key):
    assert destination_ref(text).key == key


def test_destination_ref_rejects_a_relative_name():
    with pytest.raises(ValidationError, match="is not a location"):
        destination_ref("exports/x.csv")


def test_columns_of_value_reads_rows_and_column_dicts():
    assert columns_of_value([{"email": "a@b", "n": 1}]) == (("email", "string"), ("n", "integer"))
    assert columns_of_value({"amount": [1.5], "ok": [True]}) == (("amount", "double"),
                                                                ("ok", "boolean"))
    assert columns_of_value(42) == ()
    assert columns_of_value([]) == ()


def test_a_failing_body_sends_fail_with_the_error_and_no_complete(tmp_path, recording):
    from lacuna_orchestration.integrations.dagster import governed

    rec, resource = recording
    customers = build_assets(export_path(tmp_path))[0]

    @dg.asset(deps=["customers"])
    @governed
    def flaky() -> list[dict[str, Any]]:
        raise RuntimeError("warehouse connection reset")

    result = _run(tmp_path, resource, [customers, flaky])
    assert not result.success
    assert [e["eventType"] for e in _events(rec, "flaky")] == ["START", "FAIL"]
    fail = _events(rec, "flaky")[-1]
    assert "warehouse connection reset" in fail["run"]["facets"]["errorMessage"]["message"]
    assert fail["outputs"][0]["name"] == "flaky"  # allowed, so the attempt names its output
