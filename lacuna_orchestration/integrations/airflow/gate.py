"""Stop an Airflow task before it runs when policy denies what it would do.

Two ways in, one decision path (``Governor.check`` / ``RemoteGovernor.check``, audited):

* ``task_policy`` — a cluster policy for ``airflow_local_settings.py``. It gives every task a
  ``pre_execute`` gate: right before ``execute()``, the task's inputs → outputs (inlets/outlets
  or operator lineage, see ``AirflowTranslator``) are checked as the task's operation
  (``params["lacuna_operation"]``, default ``transform``). A denial logs the policy message in
  the task log and fails the task without retry (``AirflowFailException``); downstream tasks
  become ``upstream_failed``. A valid approved exception turns the denial into an allow.
* ``LacunaGateOperator`` — an explicit task that checks a declared operation (for example
  before a group of tasks that export), and fails the same way.

The gate fails closed: when Lacuna cannot be reached or the task's declaration is invalid, the
task fails with the reason, it does not run ungoverned. Tasks without inlets and outlets have
nothing to decide and run unchanged.

::

    # $AIRFLOW_HOME/config/airflow_local_settings.py
    from lacuna_orchestration.integrations.airflow.gate import task_policy  # noqa: F401
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from lacuna_orchestration.integrations.airflow.backend import Backend, BackendDefaults, get_backend
from lacuna_orchestration.integrations.airflow.translator import (
    AirflowTranslator,
    load_translator,
)
from lacuna_orchestration.integrations.airflow.version_compat import (
    AirflowFailException,
    BaseOperator,
    MappedOperator,
)
from lacuna_orchestration.model import DatasetRef, Decision, Operation, OperationKind

__all__ = [
    "LacunaGateOperator",
    "TaskGate",
    "apply_gate",
    "check_operations",
    "fail_closed",
    "task_operations",
    "task_policy",
]

log = logging.getLogger(__name__)

GATE_VIA = "airflow.gate"
OPERATOR_VIA = "airflow.gate_operator"
UNREACHABLE_HINT = (
    "Check that Lacuna is reachable from the Airflow workers ([lacuna] server_url, "
    "or LACUNA_DATABASE_URL for the in-process store)"
)


def task_operations(
    translator: AirflowTranslator,
    task: Any,
    task_instance: Any,
    defaults: BackendDefaults,
) -> list[Operation]:
    """The gate questions a task raises: one per output (sources = all its inputs), or one
    without a destination for a task that only reads; none for a task without datasets."""
    lineage = translator.get_lineage(task, "running", task_instance)
    if lineage.empty:
        return []
    dag_id = str(getattr(task_instance, "dag_id", None) or getattr(task, "dag_id", ""))
    task_id = str(getattr(task, "task_id", ""))
    run_id = translator.get_task_instance_run_id(task_instance, dag_id, task_id)
    base = Operation(
        kind=translator.get_operation(task),
        sources=lineage.sources,
        user=translator.get_user(task) or defaults.user,
        purpose=translator.get_purpose(task),
        environment=defaults.environment,
        code=translator.get_task_job_name(dag_id, task_id),
        run_id=run_id,
        exception_id=translator.get_exception_id(task),
    )
    destinations: Sequence[DatasetRef | None] = lineage.destinations or (None,)
    return [replace(base, destination=dest) for dest in destinations]


def fail_closed(operation: Operation, reason: str) -> Decision:
    """The denial the gate returns when it could not ask Lacuna: it names the reason."""
    return Decision(
        allow=False,
        action=operation.kind.value,
        reasons=(f"Lacuna could not decide, so the task is stopped: {reason}",),
        alternatives=(UNREACHABLE_HINT,),
        source=", ".join(r.name for r in operation.sources),
        destination=operation.destination.key if operation.destination else "",
        error=reason,
    )


def check_operations(operations: Sequence[Operation], *, via: str,
                     backend: Backend | None = None, durable: bool = True) -> list[Decision]:
    """Ask Lacuna about each operation; any failure to ask becomes a fail-closed denial.

    ``durable=False`` (the pre-execute gate of a task that then runs): an allowed decision's
    record joins the next group commit, ahead of the task's end event, which waits for it."""
    try:
        handle = backend or get_backend()
    except Exception as err:  # noqa: BLE001 - fail closed, naming the reason
        reason = f"{type(err).__name__}: {err}"
        return [fail_closed(op, reason) for op in operations]
    decisions = []
    for op in operations:
        try:
            decisions.append(handle.check(op, via=via, durable=durable))
        except Exception as err:  # noqa: BLE001 - fail closed, naming the reason
            decisions.append(fail_closed(op, f"{type(err).__name__}: {err}"))
    return decisions


def _enforce(decisions: Sequence[Decision], logger: Any, what: str) -> None:
    """Log every decision; on any denial, log and raise ``AirflowFailException`` carrying
    every denial's message (the task log and the UI's failure reason show the same text)."""
    denied = [d for d in decisions if not d.allow]
    for d in decisions:
        if d.allow:
            logger.info("Lacuna gate (%s): %s", what, d.message.splitlines()[0])
    if denied:
        message = "\n\n".join(d.message for d in denied)
        logger.error("Lacuna gate stopped %s:\n%s", what, message)
        raise AirflowFailException(message)


class TaskGate:
    """The callable installed as a task's ``pre_execute``: check, then run what was there.

    It keeps no reference to the task (Airflow copies tasks; the context names the running
    one). ``previous`` is a hook that was installed before it, called after the check; with
    ``chain_class_hook`` an operator class's own ``pre_execute``, which the instance attribute
    shadows, is called too (a mapped task's hook runs beside it, so there it is not).
    """

    installed_by_lacuna = True

    def __init__(self, previous: Any = None, *, chain_class_hook: bool = True,
                 translator: AirflowTranslator | None = None,
                 backend: Backend | None = None) -> None:
        self.previous = previous
        self.chain_class_hook = chain_class_hook
        self.translator = translator
        self.backend = backend

    def __call__(self, context: Any) -> None:
        task = context["task"]
        ti = context.get("ti")
        self.enforce(task, ti)
        if self.previous is not None:
            self.previous(context)
        elif self.chain_class_hook and type(task).pre_execute is not BaseOperator.pre_execute:
            type(task).pre_execute(task, context)

    def enforce(self, task: Any, task_instance: Any) -> list[Decision]:
        """Check the task; raise ``AirflowFailException`` on a denial. Returns the decisions."""
        what = f"task {getattr(task, 'task_id', '?')}"
        logger = getattr(task, "log", log)
        try:
            translator = self.translator or load_translator()
            handle = self.backend or get_backend()
            operations = task_operations(translator, task, task_instance, handle.defaults)
        except Exception as err:  # noqa: BLE001 - fail closed, naming the reason
            reason = f"{type(err).__name__}: {err}"
            decision = fail_closed(
                Operation(OperationKind.TRANSFORM, (), None, code=str(what)), reason
            )
            _enforce([decision], logger, what)
            return [decision]
        if not operations:
            logger.debug("Lacuna gate: %s has no inlets or outlets, nothing to decide", what)
            return []
        decisions = check_operations(operations, via=GATE_VIA, backend=handle, durable=False)
        _enforce(decisions, logger, what)
        return decisions


def apply_gate(task: Any, *, translator: AirflowTranslator | None = None,
               backend: Backend | None = None) -> bool:
    """Install the gate on ``task``; False when it already has one (cluster policies run every
    time a DAG file is parsed, sometimes twice in one process)."""
    if isinstance(task, MappedOperator):
        # A mapped task becomes a real operator only at run time, built from partial_kwargs:
        # ``pre_execute`` there is the operator's documented constructor hook.
        partial = task.partial_kwargs
        current = partial.get("pre_execute")
        if getattr(current, "installed_by_lacuna", False):
            return False
        partial["pre_execute"] = TaskGate(current, chain_class_hook=False,
                                          translator=translator, backend=backend)
        return True
    current = task.__dict__.get("pre_execute")
    if getattr(current, "installed_by_lacuna", False):
        return False
    # The instance attribute shadows the class method; the task runner calls it before
    # execute() (it runs whenever ``task.pre_execute`` is not BaseOperator's no-op).
    object.__setattr__(task, "pre_execute",
                       TaskGate(current, translator=translator, backend=backend))
    return True


def task_policy(task: Any) -> None:
    """Airflow cluster policy: gate every task. Import it in ``airflow_local_settings.py``."""
    apply_gate(task)


class LacunaGateOperator(BaseOperator):
    """Check a declared operation before downstream tasks run; fail when policy denies it.

    ``sources`` and ``destination`` accept Airflow ``Asset`` objects, OpenLineage datasets,
    ``DatasetRef`` values or ``"namespace::name"`` keys. The decision (allowed ones too) is
    audited; the task's XCom is the decision as a dict.

    >>> LacunaGateOperator(                                               # doctest: +SKIP
    ...     task_id="may_export", operation="export",
    ...     sources=[Asset("file:///data/analysis.csv")],
    ...     destination=Asset("file:///tmp/export.csv"), purpose="analytics")
    """

    template_fields: Sequence[str] = ("purpose", "user", "exception_id")
    ui_color = "#f4d9c6"

    def __init__(
        self,
        *,
        operation: OperationKind | str,
        sources: Sequence[Any],
        destination: Any = None,
        purpose: str = "",
        user: str = "",
        exception_id: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.operation = OperationKind.parse(operation)
        translator = load_translator()
        refs = [translator.get_dataset_ref(s) for s in sources]
        if not refs or any(r is None for r in refs):
            raise ValueError(
                f"LacunaGateOperator {kwargs.get('task_id', '')}: sources must be a non-empty list "
                "of Assets, OpenLineage datasets, DatasetRefs or 'namespace::name' keys"
            )
        self.source_refs: tuple[DatasetRef, ...] = tuple(r for r in refs if r is not None)
        self.destination_ref: DatasetRef | None = None
        if destination is not None:
            self.destination_ref = translator.get_dataset_ref(destination)
            if self.destination_ref is None:
                raise ValueError(
                    f"LacunaGateOperator {kwargs.get('task_id', '')}: destination must be an "
                    "Asset, OpenLineage dataset, DatasetRef or 'namespace::name' key"
                )
        self.purpose = purpose
        self.user = user
        self.exception_id = exception_id

    def operation_for(self, context: Any, defaults: BackendDefaults) -> Operation:
        translator = load_translator()
        ti = context.get("ti")
        dag_id = str(getattr(ti, "dag_id", None) or self.dag_id)
        return Operation(
            kind=self.operation,
            sources=self.source_refs,
            destination=self.destination_ref,
            user=self.user or defaults.user,
            purpose=self.purpose,
            environment=defaults.environment,
            code=translator.get_task_job_name(dag_id, self.task_id),
            run_id=translator.get_task_instance_run_id(ti, dag_id, self.task_id),
            exception_id=self.exception_id,
        )

    def execute(self, context: Any) -> dict[str, Any]:
        what = f"{self.operation.value} → {self.destination_ref or '(no destination)'}"
        try:
            handle = get_backend()
            operation = self.operation_for(context, handle.defaults)
        except Exception as err:  # noqa: BLE001 - fail closed, naming the reason
            operation = Operation(self.operation, self.source_refs, self.destination_ref)
            decision = fail_closed(operation, f"{type(err).__name__}: {err}")
        else:
            decision = check_operations([operation], via=OPERATOR_VIA, backend=handle)[0]
        _enforce([decision], self.log, what)
        return decision.to_dict()
