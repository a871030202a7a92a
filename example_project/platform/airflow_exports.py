"""Step 3 of the platform — an Airflow DAG exports two marts, gated by Lacuna.

    export_customer_transactions   customer_transactions (PII) → the partner share's Downloads
                                   folder: an unmanaged location, stopped by the gate
    export_revenue_by_country      revenue_by_country (INTERNAL aggregate) → the governed
                                   workspace: allowed

Each task names what it reads by the same dataset key dbt gave the mart
(``duckdb://<file>::warehouse.main.<model>``) and what it writes by its real destination; the
file itself goes under ``mount_root`` (see ``config``). ``params`` say what the task does and
why, as Lacuna's Airflow integration reads them.

``run_task`` runs one task in this process the way a worker would, with Lacuna's two Airflow
hooks: the listener (START, then COMPLETE or FAIL, into Lacuna) and the gate installed as the
task's ``pre_execute`` (what the cluster policy in ``example_project/airflow/config`` installs
on a real deployment). A scheduler and a metadata database would add minutes to the demo and
nothing to what Lacuna sees: the same hooks receive the same task instances.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pendulum

from lacuna_orchestration.model import Decision

from .config import GOVERNED_EXPORT, PARTNER_EXPORT, PlatformPaths

__all__ = ["DAG_ID", "PII_EXPORT_TASK", "REVENUE_EXPORT_TASK", "TaskRun", "build_dag",
           "run_task", "server_backend"]

DAG_ID = "platform_exports"
PII_EXPORT_TASK = "export_customer_transactions"
REVENUE_EXPORT_TASK = "export_revenue_by_country"
PURPOSE = "analytics"


def _export(paths: PlatformPaths, model: str, destination: str) -> int:
    """Copy a mart from the warehouse into a CSV at the destination's local stand-in."""
    import duckdb

    target = paths.mounted(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    # (not read_only: dbt's in-process adapter may still hold the file open read-write, and
    # DuckDB refuses a second connection with a different configuration)
    with duckdb.connect(str(paths.warehouse)) as con:
        cursor = con.execute(f'SELECT * FROM "main"."{model}"')
        header = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return len(rows)


def build_dag(paths: PlatformPaths) -> Any:
    """The export DAG for one platform run (its warehouse and mount root)."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Asset

    with DAG(DAG_ID, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             catchup=False, tags=["lacuna", "platform"]) as dag:
        PythonOperator(
            task_id=PII_EXPORT_TASK,
            python_callable=_export,
            op_args=[paths, "customer_transactions", PARTNER_EXPORT],
            inlets=[paths.table("customer_transactions").key],
            outlets=[Asset(f"file://{PARTNER_EXPORT}")],
            params={"lacuna_operation": "export", "lacuna_purpose": PURPOSE},
        )
        PythonOperator(
            task_id=REVENUE_EXPORT_TASK,
            python_callable=_export,
            op_args=[paths, "revenue_by_country", GOVERNED_EXPORT],
            inlets=[paths.table("revenue_by_country").key],
            outlets=[Asset(f"file://{GOVERNED_EXPORT}")],
            params={"lacuna_operation": "export", "lacuna_purpose": PURPOSE},
        )
    return dag


@dataclass
class TaskRun:
    """What one task try did."""

    task_id: str
    run_id: str
    state: str  # "success" | "failed"
    decisions: list[Decision] = field(default_factory=list)
    error: str = ""
    written: Path | None = None
    log: io.StringIO = field(default_factory=io.StringIO, repr=False)

    @property
    def denial(self) -> Decision | None:
        return next((d for d in self.decisions if not d.allow), None)


def _task_instance(task: Any, run_id: str) -> Any:
    """The task SDK's ``RuntimeTaskInstance`` a worker hands to listeners and ``pre_execute``
    (built without validation: outside a task process some of its types do not resolve)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id=task.task_id, dag_id=task.dag_id, run_id=run_id,
        try_number=1, map_index=-1, task=task, max_tries=0, dag_version_id=uuid.uuid4(),
        start_date=pendulum.now("UTC"),
    )


class _RecordingBackend:
    """Lacuna's Airflow backend, remembering the gate's decisions (the gate raises on a
    denial, so its return value is lost exactly when it matters)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.defaults = inner.defaults
        self.decisions: list[Decision] = []

    def ingest(self, event: dict[str, Any], *, via: str) -> Any:
        return self.inner.ingest(event, via=via)

    def check(self, operation: Any, *, via: str, durable: bool = True) -> Decision:
        decision: Decision = self.inner.check(operation, via=via, durable=durable)
        self.decisions.append(decision)
        return decision


@contextmanager
def _task_log(into: io.StringIO) -> Iterator[None]:
    """Collect what the task logs (the gate's message, the listener's verdict) the way a
    worker's task log would, instead of interleaving it with the platform's own output."""
    listener_log = logging.getLogger("lacuna_orchestration.integrations.airflow")
    level = listener_log.level
    listener_log.setLevel(logging.ERROR)  # its DENY warning repeats the gate's message
    try:
        with redirect_stdout(into), redirect_stderr(into):
            yield
    finally:
        listener_log.setLevel(level)


def server_backend(url: str, api_key: str, *, user: str) -> Any:
    """The Airflow integration's remote backend: what ``get_backend()`` opens on a worker
    configured with ``AIRFLOW__LACUNA__SERVER_URL`` and ``AIRFLOW__LACUNA__API_KEY``, built
    here from the same parts so the demo does not rewrite its own process environment."""
    from lacuna_orchestration.client import RemoteGovernor
    from lacuna_orchestration.integrations.airflow.backend import Backend, BackendDefaults

    return Backend(RemoteGovernor(url, api_key=api_key, timeout_s=30.0), remote=True,
                   defaults=BackendDefaults(user=user, environment="production"),
                   description=f"server {url}")


def run_task(dag: Any, task_id: str, lacuna: Any, *, run_id: str,
             destination: Path | None = None) -> TaskRun:
    """Run one task of ``dag`` in process with Lacuna's listener and gate; a denial fails the
    task (state ``failed``) before ``execute`` — nothing is written.

    ``lacuna`` is an in-process ``Governor`` or an Airflow integration ``Backend`` (e.g.
    ``server_backend``): the hooks talk to whichever it is through the same two calls."""
    from airflow.sdk.exceptions import AirflowFailException

    from lacuna_orchestration.integrations.airflow.backend import Backend
    from lacuna_orchestration.integrations.airflow.gate import TaskGate
    from lacuna_orchestration.integrations.airflow.listener import LacunaListener
    from lacuna_orchestration.integrations.airflow.translator import AirflowTranslator

    translator = AirflowTranslator()
    inner = lacuna if isinstance(lacuna, Backend) else Backend.for_governor(lacuna)
    backend = _RecordingBackend(inner)
    listener = LacunaListener(translator=translator, backend=backend)  # type: ignore[arg-type]
    gate = TaskGate(translator=translator, backend=backend)  # type: ignore[arg-type]
    task = dag.get_task(task_id)
    ti = _task_instance(task, run_id)
    context = {"task": task, "ti": ti, "task_instance": ti, "run_id": run_id, "params": {}}
    outcome = TaskRun(task_id, run_id, "success", decisions=backend.decisions)
    with _task_log(outcome.log):
        listener.on_task_instance_running(previous_state=None, task_instance=ti)
        try:
            gate(context)  # what the worker calls as task.pre_execute(context)
            # the body of PythonOperator.execute; execute() itself insists on a task runner
            task.python_callable(*task.op_args, **task.op_kwargs)
        except AirflowFailException as err:
            outcome.state, outcome.error = "failed", str(err)
            listener.on_task_instance_failed(previous_state=None, task_instance=ti, error=err)
            return outcome
        listener.on_task_instance_success(previous_state=None, task_instance=ti)
    outcome.written = destination if destination is not None and destination.exists() else None
    return outcome
