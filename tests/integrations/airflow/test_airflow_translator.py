"""AirflowTranslator: inlets/outlets → OpenLineage datasets and DatasetRefs, params →
operation/purpose/user, operator lineage from the provider's extractors, overrides."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)
from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.providers.openlineage.extractors.manager import ExtractorManager
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Asset, AssetAlias, BaseOperator, task
from airflow_helpers import new_dag

from lacuna_orchestration.errors import ConfigError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.integrations.airflow.facets import lacuna_run_facets
from lacuna_orchestration.integrations.airflow.translator import (
    AirflowTranslator,
    AirflowTranslatorSettings,
    load_translator,
)
from lacuna_orchestration.lineage.events import build_run_event
from lacuna_orchestration.lineage.openlineage import parse_event
from lacuna_orchestration.model import DatasetRef, OperationKind, Tier


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///data/customers.csv", DatasetRef("file", "/data/customers.csv")),
        ("file://host/share/a.csv", DatasetRef("file://host", "/share/a.csv")),
        ("s3://acme-lake/raw/events.parquet", DatasetRef("s3://acme-lake", "raw/events.parquet")),
        ("gcs://bucket/a/b", DatasetRef("gs://bucket", "a/b")),
        ("postgres://db.internal:5432/crm/public/customers",
         DatasetRef("postgres://db.internal:5432", "crm.public.customers")),
        ("customer_master", DatasetRef("airflow", "customer_master")),
    ],
)
def test_asset_uris_are_named_the_openlineage_way(uri: str, expected: DatasetRef) -> None:
    assert AirflowTranslator().get_asset_ref(Asset(uri)) == expected


def test_file_assets_get_the_same_names_as_the_openlineage_provider() -> None:
    """The HTTP-transport path and the listener must name a file the same way."""
    asset = Asset("file:///tmp/export.csv")
    provider = ExtractorManager.convert_to_ol_dataset(asset)
    assert provider is not None
    ours = AirflowTranslator().get_dataset_ref(asset)
    assert ours == DatasetRef(provider.namespace, provider.name)


def test_openlineage_datasets_keep_their_facets_and_classify(governor: Governor) -> None:
    customers = Dataset(
        namespace="file", name="/data/customers.csv",
        facets={"schema": SchemaDatasetFacet(fields=[
            SchemaDatasetFacetFields(name="email", type="text"),
            SchemaDatasetFacetFields(name="full_name", type="text"),
        ])},
    )
    data = AirflowTranslator().get_dataset(customers)
    assert data is not None
    assert [f["name"] for f in data["facets"]["schema"]["fields"]] == ["email", "full_name"]
    event = build_run_event(job=("t", "load"), outputs=[])
    event["outputs"] = [data]
    governor.ingest(event)
    effective = governor.classification("customers.csv")
    assert effective.tier is Tier.PROPRIETARY and "PII" in effective.tags


def test_asset_extra_declares_columns_and_classification(governor: Governor) -> None:
    asset = Asset("s3://acme-lake/finance/ledger.parquet", extra={"lacuna": {
        "columns": [["iban", "text"], "amount"], "classification": "PROPRIETARY",
        "tags": ["FINANCIAL"],
    }})
    data = AirflowTranslator().get_dataset(asset)
    assert data is not None
    event = build_run_event(job=("t", "load"), outputs=[])
    event["outputs"] = [data]
    parsed = parse_event(event)
    snap = parsed.outputs[0]
    assert snap.ref == DatasetRef("s3://acme-lake", "finance/ledger.parquet")
    assert [f.name for f in snap.fields] == ["iban", "amount"]
    assert snap.explicit_tier is Tier.PROPRIETARY and "FINANCIAL" in snap.explicit_tags
    governor.ingest(event)
    assert governor.classification(snap.ref).tier is Tier.PROPRIETARY


def test_refs_keys_and_unknown_objects(caplog: pytest.LogCaptureFixture) -> None:
    tr = AirflowTranslator()
    assert tr.get_dataset_ref(DatasetRef("file", "/a.csv")) == DatasetRef("file", "/a.csv")
    assert tr.get_dataset_ref("postgres://w:5432::raw.t") == DatasetRef("postgres://w:5432",
                                                                        "raw.t")
    assert tr.get_dataset(AssetAlias("resolved-at-runtime")) is None
    with caplog.at_level(logging.WARNING):
        assert tr.get_dataset(object()) is None
        assert tr.get_dataset(object()) is None
    warnings = [r for r in caplog.records if "ignores inlet/outlet" in r.getMessage()]
    assert len(warnings) == 1, "an unknown kind of inlet is reported once, not per task"


def test_task_lineage_and_params() -> None:
    with new_dag():
        @task(inlets=[Asset("file:///data/a.csv"), Asset("file:///data/a.csv"),
                      "file::/data/b.csv"],
              outlets=[Asset("file:///data/c.csv")],
              params={"lacuna_operation": "JOIN", "lacuna_purpose": "billing",
                      "lacuna_user": "ana@example.com", "lacuna_exception_id": "EXC-1"})
        def combine() -> None: ...

        op = combine().operator
    tr = AirflowTranslator()
    lineage = tr.get_lineage(op)
    assert lineage.origin == "inlets/outlets"
    assert lineage.sources == (DatasetRef("file", "/data/a.csv"), DatasetRef("file", "/data/b.csv"))
    assert lineage.destinations == (DatasetRef("file", "/data/c.csv"),)
    assert tr.get_operation(op) is OperationKind.JOIN
    assert tr.get_purpose(op) == "billing"
    assert tr.get_user(op) == "ana@example.com"
    assert tr.get_exception_id(op) == "EXC-1"


def test_defaults_and_invalid_operation() -> None:
    with new_dag():
        plain = PythonOperator(task_id="plain", python_callable=print, owner="data-eng")
        bad = PythonOperator(task_id="bad", python_callable=print,
                             params={"lacuna_operation": "teleport"})
    tr = AirflowTranslator()
    assert tr.get_operation(plain) is OperationKind.TRANSFORM
    assert tr.get_user(plain) == "data-eng"
    assert tr.get_lineage(plain).empty
    with pytest.raises(ConfigError, match="params.lacuna_operation.*teleport.*valid kinds"):
        tr.get_operation(bad)


class _SqlLikeOperator(BaseOperator):
    """An operator with its own OpenLineage method, like the provider's SQL operators."""

    extractions = 0

    def execute(self, context: Any) -> None:
        return None

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        type(self).extractions += 1
        return OperatorLineage(
            inputs=[Dataset(namespace="postgres://w:5432", name="raw.public.orders")],
            outputs=[Dataset(namespace="postgres://w:5432", name="mart.public.orders")],
        )


def test_operator_lineage_from_the_provider_wins_over_inlets() -> None:
    with new_dag():
        op = _SqlLikeOperator(task_id="sql", inlets=[Asset("file:///ignored.csv")])
    lineage = AirflowTranslator().get_lineage(op)
    assert lineage.origin == "operator"
    assert lineage.sources == (DatasetRef("postgres://w:5432", "raw.public.orders"),)
    assert lineage.destinations == (DatasetRef("postgres://w:5432", "mart.public.orders"),)
    off = AirflowTranslator(AirflowTranslatorSettings(operator_lineage=False)).get_lineage(op)
    assert off.origin == "inlets/outlets"
    assert off.sources == (DatasetRef("file", "/ignored.csv"),)


def test_operator_lineage_is_extracted_once_per_try_and_state() -> None:
    """The listener's START and the gate ask right after each other; SQL extraction is dear."""
    from airflow_helpers import make_ti

    with new_dag():
        op = _SqlLikeOperator(task_id="sql")
    tr = AirflowTranslator()
    ti = make_ti(op)
    before = _SqlLikeOperator.extractions
    first = tr.get_lineage(op, "running", ti)
    assert tr.get_lineage(op, "running", ti) is first
    assert _SqlLikeOperator.extractions == before + 1
    tr.get_lineage(op, "running", make_ti(op, try_number=2))
    assert _SqlLikeOperator.extractions == before + 2


class LakeTranslator(AirflowTranslator):
    """A deployment whose file paths carry a mount prefix nobody wants in dataset names."""

    def get_asset_ref(self, asset: Any) -> DatasetRef:
        ref = super().get_asset_ref(asset)
        return DatasetRef(ref.namespace, ref.name.removeprefix("/mnt/lake"))


def test_translator_named_in_config_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__LACUNA__TRANSLATOR", f"{__name__}.LakeTranslator")
    monkeypatch.setenv("AIRFLOW__LACUNA__JOB_NAMESPACE", "acme")
    tr = load_translator(refresh=True)
    assert isinstance(tr, LakeTranslator)
    assert tr.get_job_namespace() == "acme"
    assert tr.get_asset_ref(Asset("file:///mnt/lake/a.csv")) == DatasetRef("file", "/a.csv")


def test_translator_config_errors_name_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__LACUNA__TRANSLATOR", "no_such_module.Translator")
    with pytest.raises(ConfigError, match="cannot be imported"):
        load_translator(refresh=True)
    monkeypatch.setenv("AIRFLOW__LACUNA__TRANSLATOR", "collections.OrderedDict")
    with pytest.raises(ConfigError, match="not an AirflowTranslator subclass"):
        load_translator(refresh=True)


def test_run_ids_are_stable_per_try() -> None:
    tr = AirflowTranslator()
    first = tr.get_task_run_id("d", "t", "manual__1", 1)
    assert first == tr.get_task_run_id("d", "t", "manual__1", 1)
    assert first != tr.get_task_run_id("d", "t", "manual__1", 2)


def test_lacuna_run_facet_for_the_provider_carries_the_operation() -> None:
    """What ``custom_run_facets`` adds to the provider's events is what ingest reads."""
    from airflow_helpers import make_ti
    from openlineage.client.serde import Serde

    with new_dag():
        op = PythonOperator(task_id="agg", python_callable=print,
                            params={"lacuna_operation": "aggregate", "lacuna_purpose": "care"})
    facets = lacuna_run_facets(make_ti(op), None)
    event = build_run_event(job=("default", "d.agg"),
                            run_facets={"lacuna": Serde.to_dict(facets["lacuna"])})
    parsed = parse_event(event)
    assert parsed.operation is OperationKind.AGGREGATE and parsed.purpose == "care"
    assert lacuna_run_facets(object(), None) == {}
