"""Airflow listener hooks that hand every task and DAG run event to Lacuna.

Each hook builds one OpenLineage RunEvent (START / COMPLETE / FAIL; job ``<dag_id>.<task_id>``
with a ``parent`` facet pointing at the DAG run, the task's inputs and outputs from the
``AirflowTranslator``, the operation in the ``lacuna`` run facet) and gives it to the backend:
the governor in process, or a Lacuna server when ``[lacuna] server_url`` is set. The events
are the ones Airflow's OpenLineage provider would send, so a deployment can switch between the
listener and the provider's HTTP transport without changing what Lacuna records.

A listener never fails the user's task: every hook catches everything, logs one line with the
task and the reason (the first time that kind of failure happens; later ones at debug level),
and returns. Stopping a task is the gate's job (``gate.py``), not the listener's.

Registered by ``LacunaPlugin`` (``plugin.py``); Airflow 3 hook signatures (no ``session``;
``task_instance`` is the task SDK's ``RuntimeTaskInstance`` inside a task process).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from lacuna_orchestration.integrations.airflow import config
from lacuna_orchestration.integrations.airflow.backend import Backend, BackendDefaults, get_backend
from lacuna_orchestration.integrations.airflow.translator import (
    AirflowTranslator,
    TaskLineage,
    load_translator,
)
from lacuna_orchestration.integrations.airflow.version_compat import hookimpl
from lacuna_orchestration.lineage.events import PRODUCER, build_run_event, facet
from lacuna_orchestration.model import OperationKind

__all__ = ["AIRFLOW_PRODUCER", "LacunaListener", "build_dag_run_event", "build_task_event"]

log = logging.getLogger(__name__)

VIA = "airflow"
AIRFLOW_PRODUCER = f"{PRODUCER}#airflow"
PARENT_SCHEMA = "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json#/$defs/ParentRunFacet"
ERROR_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
)
MAX_ERROR_CHARS = 4000


def _run_facets(translator: AirflowTranslator, dag_id: str, airflow_run_id: str,
                error: Any = None) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "parent": facet(
            {
                "run": {"runId": translator.get_dag_run_id(dag_id, airflow_run_id)},
                "job": {"namespace": translator.get_job_namespace(),
                        "name": translator.get_dag_job_name(dag_id)},
            },
            PARENT_SCHEMA, AIRFLOW_PRODUCER,
        )
    }
    if error is not None and str(error):
        facets["errorMessage"] = facet(
            {"message": str(error)[:MAX_ERROR_CHARS], "programmingLanguage": "python"},
            ERROR_SCHEMA, AIRFLOW_PRODUCER,
        )
    return facets


def build_task_event(
    translator: AirflowTranslator,
    task_instance: Any,
    event_type: str,
    *,
    state: str,
    defaults: BackendDefaults | None = None,
    error: Any = None,
) -> dict[str, Any]:
    """The OpenLineage RunEvent for one task instance state change.

    A task without inlets/outlets (or a task instance without its task object, as the API
    server passes when a user marks a state by hand) gives an event without datasets: a run
    record, not an error.
    """
    defaults = defaults or BackendDefaults()
    task = getattr(task_instance, "task", None)
    dag_id = str(task_instance.dag_id)
    task_id = str(task_instance.task_id)
    airflow_run_id = str(task_instance.run_id)
    lineage = (translator.get_lineage(task, state, task_instance)
               if task is not None else TaskLineage())
    operation = translator.get_operation(task) if task is not None else OperationKind.TRANSFORM
    event = build_run_event(
        job=(translator.get_job_namespace(), translator.get_task_job_name(dag_id, task_id)),
        event_type=event_type,
        operation=operation,
        run_id=translator.get_task_instance_run_id(task_instance, dag_id, task_id),
        user=(translator.get_user(task) if task is not None else "") or defaults.user,
        purpose=translator.get_purpose(task) if task is not None else None,
        producer=AIRFLOW_PRODUCER,
        run_facets=_run_facets(translator, dag_id, airflow_run_id, error),
    )
    event["inputs"] = [dict(d) for d in lineage.inputs]
    event["outputs"] = [dict(d) for d in lineage.outputs]
    return event


def build_dag_run_event(translator: AirflowTranslator, dag_run: Any, event_type: str,
                        msg: str | None = None) -> dict[str, Any]:
    """The OpenLineage RunEvent of a DAG run: job ``<dag_id>``, no datasets."""
    dag_id = str(dag_run.dag_id)
    facets: dict[str, Any] = {}
    if event_type == "FAIL" and msg:
        facets["errorMessage"] = facet(
            {"message": str(msg)[:MAX_ERROR_CHARS], "programmingLanguage": "python"},
            ERROR_SCHEMA, AIRFLOW_PRODUCER,
        )
    return build_run_event(
        job=(translator.get_job_namespace(), translator.get_dag_job_name(dag_id)),
        event_type=event_type,
        run_id=translator.get_dag_run_id(dag_id, str(dag_run.run_id)),
        producer=AIRFLOW_PRODUCER,
        run_facets=facets,
    )


class LacunaListener:
    """The hook implementations; one instance is registered by ``LacunaPlugin``.

    ``translator`` and ``backend`` default to the process-wide ones (``[lacuna]`` config);
    pass them to embed the listener elsewhere (tests, benchmarks).
    """

    def __init__(self, translator: AirflowTranslator | None = None,
                 backend: Backend | None = None) -> None:
        self._translator = translator
        self._backend = backend
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # -- task instances --------------------------------------------------------------------
    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        self._task_event("on_task_instance_running", task_instance, "START", "running")

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        self._task_event("on_task_instance_success", task_instance, "COMPLETE", "success")

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any,
                                error: Any = None) -> None:
        self._task_event("on_task_instance_failed", task_instance, "FAIL", "failed", error)

    # -- DAG runs ----------------------------------------------------------------------------
    @hookimpl
    def on_dag_run_running(self, dag_run: Any, msg: str) -> None:
        self._dag_run_event("on_dag_run_running", dag_run, "START", msg)

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        self._dag_run_event("on_dag_run_success", dag_run, "COMPLETE", msg)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        self._dag_run_event("on_dag_run_failed", dag_run, "FAIL", msg)

    # -- plumbing ----------------------------------------------------------------------------
    def _task_event(self, hook: str, task_instance: Any, event_type: str, state: str,
                    error: Any = None) -> None:
        try:
            if not config.listener_enabled():
                return
            translator = self._translator or load_translator()
            backend = self._backend or get_backend()
            event = build_task_event(translator, task_instance, event_type, state=state,
                                     defaults=backend.defaults, error=error)
            result = backend.ingest(event, via=VIA)
            self._report_denials(result, task_instance)
        except Exception as err:  # noqa: BLE001 - a listener must never fail the task
            self._failed(hook, _describe_ti(task_instance), err)

    def _dag_run_event(self, hook: str, dag_run: Any, event_type: str, msg: str | None) -> None:
        try:
            if not (config.listener_enabled() and config.dag_run_events()):
                return
            translator = self._translator or load_translator()
            backend = self._backend or get_backend()
            backend.ingest(build_dag_run_event(translator, dag_run, event_type, msg), via=VIA)
        except Exception as err:  # noqa: BLE001 - a listener must never fail the DAG run
            self._failed(hook, f"dag_id={getattr(dag_run, 'dag_id', '?')} "
                               f"run_id={getattr(dag_run, 'run_id', '?')}", err)

    def _report_denials(self, result: Any, task_instance: Any) -> None:
        """Policy denials found while ingesting are reported, not enforced: the gate (when
        configured) is what stops the task."""
        from lacuna_orchestration.policy.messages import one_line

        for decision in getattr(result, "denials", ()) or ():
            log.warning("Lacuna: %s (%s)", one_line(decision), _describe_ti(task_instance))

    def _failed(self, hook: str, where: str, err: BaseException) -> None:
        key = (hook, type(err).__name__)
        with self._lock:
            first = key not in self._logged
            self._logged.add(key)
        line = "Lacuna listener %s failed for %s; the task is unaffected: %s: %s"
        if first:
            log.warning(line, hook, where, type(err).__name__, err)
        else:
            log.debug(line, hook, where, type(err).__name__, err, exc_info=err)


def _describe_ti(task_instance: Any) -> str:
    return (f"dag_id={getattr(task_instance, 'dag_id', '?')} "
            f"task_id={getattr(task_instance, 'task_id', '?')} "
            f"run_id={getattr(task_instance, 'run_id', '?')}")
