"""The listener: hook calls become OpenLineage events in the governor; it never fails a task;
the plugin never breaks Airflow when the listener cannot load."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import pytest
from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Asset
from airflow_helpers import make_ti, new_dag

import lacuna_orchestration.integrations.airflow as airflow_integration
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.integrations.airflow.backend import Backend, get_backend, reset_backend
from lacuna_orchestration.integrations.airflow.listener import LacunaListener
from lacuna_orchestration.integrations.airflow.translator import AirflowTranslator
from lacuna_orchestration.lineage.openlineage import parse_event
from lacuna_orchestration.model import OperationKind, Tier


def _schema(*names: str) -> dict[str, Any]:
    return {"schema": SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=n, type="text")
                                                 for n in names])}


def _pipeline() -> tuple[Any, Any]:
    with new_dag("pipeline"):
        join = PythonOperator(
            task_id="join", python_callable=print,
            inlets=[Dataset(namespace="file", name="/data/customers.csv",
                            facets=_schema("customer_id", "email", "full_name")),
                    Dataset(namespace="file", name="/data/sales.csv",
                            facets=_schema("customer_id", "amount"))],
            outlets=[Dataset(namespace="file", name="/data/analysis.csv",
                             facets=_schema("customer_id", "email", "amount"))],
            params={"lacuna_operation": "join"},
        )
        export = PythonOperator(
            task_id="export", python_callable=print,
            inlets=[Dataset(namespace="file", name="/data/analysis.csv")],
            outlets=[Asset("file:///home/ana/Downloads/analysis.csv")],
            params={"lacuna_operation": "export"},
        )
    return join, export


class _DagRun:
    """The attributes a DAG run listener reads (``dag_id``, ``run_id``)."""

    def __init__(self, dag_id: str, run_id: str) -> None:
        self.dag_id, self.run_id = dag_id, run_id


def test_task_events_reach_the_governor(governor: Governor, backend: Backend) -> None:
    listener = LacunaListener(backend=backend)
    join, _export = _pipeline()
    ti = make_ti(join)
    listener.on_task_instance_running(previous_state=None, task_instance=ti)
    listener.on_task_instance_success(previous_state=None, task_instance=ti)

    analysis = governor.graph.resolve("analysis.csv")
    assert sorted(governor.graph.upstream(analysis)) == ["file::/data/customers.csv",
                                                         "file::/data/sales.csv"]
    edges = {(s, d, op.value, job) for s, d, op, job in governor.graph.edges()}
    assert ("file::/data/customers.csv", analysis, "join", "default.pipeline.join") in edges
    effective = governor.classification(analysis)
    assert effective.tier is Tier.PROPRIETARY and "PII" in effective.tags

    ingests = [r for r in governor.audit.tail(10) if r.action == "lineage.ingest"]
    assert [r.reason for r in ingests] == ["run event START", "run event COMPLETE"]
    assert {r.via for r in ingests} == {"airflow"}
    assert ingests[0].run_id == ingests[1].run_id == AirflowTranslator().get_task_run_id(
        "pipeline", "join", ti.run_id, 1)
    assert ingests[0].details["outputs"] == ["file::/data/analysis.csv"]


def test_denied_start_is_reported_not_enforced(governor: Governor, backend: Backend,
                                               caplog: pytest.LogCaptureFixture) -> None:
    listener = LacunaListener(backend=backend)
    join, export = _pipeline()
    listener.on_task_instance_success(previous_state=None, task_instance=make_ti(join))
    with caplog.at_level(logging.WARNING):
        listener.on_task_instance_running(previous_state=None, task_instance=make_ti(export))
    assert any(r.getMessage().startswith("Lacuna: DENY export") for r in caplog.records)
    decisions = [r for r in governor.audit.tail(3) if r.action == "policy.decision"]
    assert decisions and decisions[-1].decision is not None
    assert decisions[-1].decision["allow"] is False


def test_failure_event_carries_the_error(governor: Governor, backend: Backend) -> None:
    listener = LacunaListener(backend=backend)
    join, _ = _pipeline()
    events: list[dict[str, Any]] = []
    original = backend.ingest

    def recording(event: dict[str, Any], *, via: str) -> Any:
        events.append(event)
        return original(event, via=via)

    backend.ingest = recording  # type: ignore[method-assign]
    listener.on_task_instance_failed(previous_state=None, task_instance=make_ti(join),
                                     error=RuntimeError("disk full"))
    assert events[0]["eventType"] == "FAIL"
    assert events[0]["run"]["facets"]["errorMessage"]["message"] == "disk full"
    assert events[0]["run"]["facets"]["parent"]["job"] == {"namespace": "default",
                                                           "name": "pipeline"}
    assert parse_event(events[0]).operation is OperationKind.JOIN


def test_task_without_datasets_gets_a_dataset_less_record(governor: Governor,
                                                          backend: Backend) -> None:
    listener = LacunaListener(backend=backend)
    with new_dag("chores"):
        op = PythonOperator(task_id="cleanup", python_callable=print)
    listener.on_task_instance_success(previous_state=None, task_instance=make_ti(op))
    record = governor.audit.tail(1)[0]
    assert record.action == "lineage.ingest" and record.resource == "default.chores.cleanup"
    assert record.details["inputs"] == [] and record.details["outputs"] == []


def test_dag_run_events_are_recorded(governor: Governor, backend: Backend) -> None:
    listener = LacunaListener(backend=backend)
    listener.on_dag_run_running(dag_run=_DagRun("pipeline", "manual__1"), msg="")
    listener.on_dag_run_failed(dag_run=_DagRun("pipeline", "manual__1"), msg="task failed")
    records = governor.audit.tail(2)
    assert [r.reason for r in records] == ["run event START", "run event FAIL"]
    assert {r.resource for r in records} == {"default.pipeline"}
    assert records[0].run_id == records[1].run_id == AirflowTranslator().get_dag_run_id(
        "pipeline", "manual__1")


def test_listener_never_fails_the_task_and_logs_once(caplog: pytest.LogCaptureFixture,
                                                     governor: Governor) -> None:
    class Broken(Backend):
        def ingest(self, event: dict[str, Any], *, via: str) -> Any:
            raise ConnectionError("lacuna.internal:8000 refused the connection")

    listener = LacunaListener(backend=Broken.for_governor(governor))
    join, _ = _pipeline()
    with caplog.at_level(logging.DEBUG, logger="lacuna_orchestration"):
        for _ in range(3):
            listener.on_task_instance_running(previous_state=None, task_instance=make_ti(join))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "on_task_instance_running" in line and "task_id=join" in line
    assert "ConnectionError: lacuna.internal:8000 refused the connection" in line
    assert "the task is unaffected" in line


def test_listener_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, governor: Governor,
                                      backend: Backend) -> None:
    monkeypatch.setenv("AIRFLOW__LACUNA__LISTENER_ENABLED", "false")
    before = governor.audit.count()
    join, _ = _pipeline()
    LacunaListener(backend=backend).on_task_instance_running(previous_state=None,
                                                             task_instance=make_ti(join))
    assert governor.audit.count() == before


def test_listener_uses_the_configured_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                            governor: Governor) -> None:
    """Without injected parts, the listener opens Lacuna from LACUNA_* settings."""
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("LACUNA_DATABASE_URL", url)
    monkeypatch.setenv("LACUNA_POLICY_DIR", governor.settings.policy_dir)
    join, _ = _pipeline()
    LacunaListener().on_task_instance_running(previous_state=None, task_instance=make_ti(join))
    assert repr(get_backend()) == f"Backend(in process, store {url})"
    reset_backend()
    with Governor.open(database_url=url, policy_dir=governor.settings.policy_dir) as other:
        assert "file::/data/analysis.csv" in other.graph


def test_plugin_without_its_listener_logs_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    plugin_module = importlib.import_module("lacuna_orchestration.integrations.airflow.plugin")
    name = "lacuna_orchestration.integrations.airflow.listener"
    monkeypatch.setitem(sys.modules, name, None)  # the next import of it raises ImportError
    with caplog.at_level(logging.ERROR):
        reloaded = importlib.reload(plugin_module)
    assert reloaded.LacunaPlugin.listeners == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "Lacuna plugin loaded without its listener" in errors[0].getMessage()
    assert "Airflow runs normally" in errors[0].getMessage()
    monkeypatch.delitem(sys.modules, name)
    assert importlib.reload(plugin_module).LacunaPlugin.listeners


def test_public_names_import() -> None:
    names = airflow_integration.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(airflow_integration, name) is not None
