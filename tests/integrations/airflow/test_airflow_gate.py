"""The gate: cluster policy ``pre_execute`` check and ``LacunaGateOperator``, against a real
governor — denial with the policy message and an audit record, the exception path, fail
closed when Lacuna cannot be asked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.openlineage.facet import Dataset
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Asset, BaseOperator, task
from airflow.sdk.exceptions import AirflowFailException
from airflow_helpers import make_context, make_ti, new_dag

from lacuna_orchestration.errors import StoreError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.integrations.airflow import backend as backend_module
from lacuna_orchestration.integrations.airflow.backend import Backend
from lacuna_orchestration.integrations.airflow.gate import (
    LacunaGateOperator,
    TaskGate,
    apply_gate,
    task_policy,
)
from lacuna_orchestration.model import DatasetRef, Operation

EXPORT_TO = "file:///tmp/lacuna-gate-test/export.csv"


def _export_task(**params: str) -> Any:
    with new_dag("gated"):
        op = PythonOperator(
            task_id="export_customers", python_callable=lambda: "exported",
            inlets=[Dataset(namespace="file", name="/data/customers.csv")],
            outlets=[Asset(EXPORT_TO)],
            params={"lacuna_operation": "export", **params},
        )
    return op


def _run_pre_execute(op: Any) -> None:
    """What the task runner does before ``execute()``: call ``task.pre_execute(context)``."""
    ti = make_ti(op)
    op.pre_execute(make_context(op, ti))


def test_policy_is_idempotent_and_keeps_the_operator_class_hook() -> None:
    calls: list[str] = []

    class Audited(BaseOperator):
        def pre_execute(self, context: Any) -> None:
            calls.append("class hook")

        def execute(self, context: Any) -> None:
            return None

    with new_dag():
        op = Audited(task_id="t")
    task_policy(op)
    gate = op.pre_execute
    assert isinstance(gate, TaskGate)
    assert apply_gate(op) is False, "parsing the DAG file again must not wrap the gate twice"
    assert op.pre_execute is gate
    _run_pre_execute(op)  # no inlets/outlets: nothing to decide, the class hook still runs
    assert calls == ["class hook"]


def test_denied_task_fails_with_the_policy_message_and_an_audit_record(
    governor: Governor, backend: Backend, known_customers: DatasetRef,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend_module.set_backend(backend)
    op = _export_task(lacuna_purpose="analytics")
    task_policy(op)
    with pytest.raises(AirflowFailException) as failed:
        _run_pre_execute(op)
    message = str(failed.value)
    assert message.startswith("❌ Governance Policy Violation")
    assert "Cannot export" in message and "unmanaged location" in message
    assert "Policy: export-governance" in message and "Steward: " in message
    task_log = capsys.readouterr().out  # the operator's logger is the task log
    assert "Lacuna gate stopped task export_customers" in task_log
    assert message in task_log
    checks = [r for r in governor.audit.tail(5) if r.action == "gate.check"]
    assert len(checks) == 1
    record = checks[0]
    assert record.via == "airflow.gate" and record.decision is not None
    assert record.decision["allow"] is False
    assert record.details["operation"]["code"] == "gated.export_customers"
    assert record.details["operation"]["sources"] == [known_customers.to_dict()]
    assert record.details["operation"]["purpose"] == "analytics"


def test_approved_exception_lets_the_task_run(
    governor: Governor, backend: Backend, known_customers: DatasetRef,
) -> None:
    backend_module.set_backend(backend)
    export = DatasetRef("file", "/tmp/lacuna-gate-test/export.csv")
    exc = governor.request_exception(
        operation_kind="export", sources=[known_customers.key], destination=export.key,
        justification="quarterly regulator report", requested_by="analyst@example.com",
    )
    governor.approve_exception(exc.id, steward="steward@example.com", duration=timedelta(days=1))
    op = _export_task()
    task_policy(op)
    decisions = op.pre_execute.enforce(op, make_ti(op))
    assert [d.allow for d in decisions] == [True]
    assert decisions[0].exception_id == exc.id
    _run_pre_execute(op)  # does not raise


def test_task_without_datasets_is_not_checked(governor: Governor, backend: Backend) -> None:
    backend_module.set_backend(backend)
    with new_dag():
        @task
        def housekeeping() -> None: ...

        op = housekeeping().operator
    before = governor.audit.count()
    task_policy(op)
    assert op.pre_execute.enforce(op, make_ti(op)) == []
    assert governor.audit.count() == before


def test_unreachable_lacuna_fails_the_task_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    def unreachable() -> Backend:
        attempts.append(1)
        raise StoreError("cannot connect to postgresql://lacuna.internal:5432: timeout")

    monkeypatch.setattr(backend_module, "open_backend", unreachable)
    op = _export_task()
    task_policy(op)
    for _ in range(2):
        with pytest.raises(AirflowFailException) as failed:
            _run_pre_execute(op)
        message = str(failed.value)
        assert "Lacuna could not decide, so the task is stopped" in message
        assert "cannot connect to postgresql://lacuna.internal:5432: timeout" in message
        assert "fails closed" in message
    assert len(attempts) == 1, "a store that is down is not re-dialled by every task"
    monkeypatch.setattr(backend_module, "RETRY_AFTER_S", 0.0)
    with pytest.raises(AirflowFailException):
        _run_pre_execute(op)
    assert len(attempts) == 2


def test_check_failing_midway_fails_closed(governor: Governor, backend: Backend,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(operation: Operation, **_: Any) -> Any:
        raise StoreError("database is locked")

    monkeypatch.setattr(governor, "check", broken)
    backend_module.set_backend(backend)
    op = _export_task()
    task_policy(op)
    with pytest.raises(AirflowFailException, match="database is locked"):
        _run_pre_execute(op)


def test_invalid_declaration_fails_closed(backend: Backend) -> None:
    backend_module.set_backend(backend)
    with new_dag():
        op = PythonOperator(task_id="odd", python_callable=print,
                            outlets=[Asset("file:///data/x.csv")],
                            params={"lacuna_operation": "teleport"})
    task_policy(op)
    with pytest.raises(AirflowFailException, match="teleport"):
        _run_pre_execute(op)


def test_mapped_tasks_get_the_gate_through_their_constructor_hook() -> None:
    with new_dag():
        @task(outlets=[Asset("file:///data/part.csv")])
        def part(n: int) -> int:
            return n

        mapped = part.expand(n=[1, 2]).operator
    task_policy(mapped)
    task_policy(mapped)
    hook = mapped.partial_kwargs["pre_execute"]
    assert isinstance(hook, TaskGate) and hook.chain_class_hook is False
    assert hook.previous is None


def test_gate_operator_denies_and_allows(governor: Governor, backend: Backend,
                                         known_customers: DatasetRef) -> None:
    backend_module.set_backend(backend)
    with new_dag("declared"):
        deny = LacunaGateOperator(task_id="may_export", operation="export",
                                  sources=[known_customers],
                                  destination=Asset("file:///home/ana/Downloads/c.csv"),
                                  purpose="analytics")
        allow = LacunaGateOperator(task_id="may_copy", operation="transform",
                                   sources=[known_customers.key],
                                   destination="file::/governed/workspace/c.csv")
    with pytest.raises(AirflowFailException, match="Governance Policy Violation"):
        deny.execute(make_context(deny, make_ti(deny)))
    result = allow.execute(make_context(allow, make_ti(allow)))
    assert result["allow"] is True and result["destination"]
    records = [r for r in governor.audit.tail(4) if r.via == "airflow.gate_operator"]
    assert [r.decision["allow"] for r in records if r.decision] == [False, True]
    assert records[0].details["operation"]["code"] == "declared.may_export"


def test_gate_operator_validates_its_arguments() -> None:
    with new_dag(), pytest.raises(ValueError, match="sources must be a non-empty list"):
        LacunaGateOperator(task_id="g", operation="export", sources=[])
    with new_dag(), pytest.raises(ValueError, match="valid kinds"):
        LacunaGateOperator(task_id="g", operation="teleport", sources=["file::/a"])


def test_unreachable_server_fails_the_task_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``[lacuna] server_url`` set and nothing listening: the gate stops the task, naming
    the server; the listener only logs."""
    from airflow_helpers import free_port

    from lacuna_orchestration.integrations.airflow.listener import LacunaListener

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW__LACUNA__SERVER_URL", url)
    monkeypatch.setenv("AIRFLOW__LACUNA__TIMEOUT_S", "2")
    op = _export_task()
    task_policy(op)
    with pytest.raises(AirflowFailException) as failed:
        _run_pre_execute(op)
    assert f"{url} is unreachable" in str(failed.value)
    assert "Governance Policy Violation" in str(failed.value)
    assert repr(backend_module.get_backend()) == f"Backend(server {url})"
    LacunaListener().on_task_instance_running(previous_state=None, task_instance=make_ti(op))
    backend_module.reset_backend()
