"""The gate: may this asset materialize? Asked inside the asset's step, before anything is written.

Dagster's blocking asset checks run *after* an asset materializes, so they cannot stop a write;
the gate runs in the step itself. Three ways to put it there, all sharing one per-step state so
an asset is gated, started and completed exactly once:

* ``lacuna.gate(context)`` / ``with lacuna.governed(context):`` inside the asset body;
* ``@governed`` under ``@dg.asset`` — one line, adds the ``context`` and ``lacuna`` parameters
  when the function lacks them;
* ``governed_definitions(...)`` (``definitions.py``) — gates every IO-manager-written asset at
  ``handle_output``, before the IO manager writes, without editing any asset.

A denial raises ``dg.Failure`` whose description is the decision's full message (what was
stopped, why, alternatives, policy id and version, steward) with the decision as metadata, and
without retries: a policy does not change its mind on retry. When Lacuna cannot decide — server
unreachable, store down, policies broken — the gate denies with the reason (fails closed).

>>> @dg.asset(deps=[regional_summary],
...           metadata={"lacuna/destination": "file:///tmp/exports/report.csv"})
... @governed
... def report_export() -> None:
...     write_report("/tmp/exports/report.csv")                      # doctest: +SKIP
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import dagster as dg

from lacuna_orchestration.errors import LacunaError
from lacuna_orchestration.integrations.dagster.lineage import (
    COLUMN_SCHEMA_KEY,
    AssetOperation,
    LineageEmitter,
    columns_of_schema,
    columns_of_value,
    openlineage_run_id,
)
from lacuna_orchestration.integrations.dagster.metadata import (
    classification_metadata,
    decision_metadata,
)
from lacuna_orchestration.model import Classification, Decision, Operation
from lacuna_orchestration.policy.decide import FAIL_CLOSED_POLICY

if TYPE_CHECKING:
    from lacuna_orchestration.integrations.dagster.resource import LacunaResource

__all__ = ["EXCEPTION_TAG", "PURPOSE_TAG", "GovernedStep", "gate_asset", "gate_spec", "governed"]

log = logging.getLogger(__name__)

EXCEPTION_TAG = "lacuna/exception_id"
PURPOSE_TAG = "lacuna/purpose"
VIA = "dagster"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class GovernedStep:
    """One asset in one Dagster run, as the gate, the emitter and the IO manager see it."""

    dagster_run_id: str
    job_name: str
    op: AssetOperation
    run_id: str  # the OpenLineage run of this asset's materialization
    decision: Decision | None = None
    started: bool = False
    finished: str = ""  # "COMPLETE" | "FAIL" once an end event was sent
    classification: Classification | None = None
    runtime_columns: tuple[Any, ...] = ()  # what the step reported it wrote

    @property
    def allowed(self) -> bool:
        return self.decision is not None and self.decision.allow

    def set_columns(self, columns: Any) -> None:
        """Columns of what was written: ``(name, type)`` pairs, names, a ``TableSchema`` or a
        table-like value; they go into the COMPLETE event's schema facet."""
        found = columns_of_schema(columns) or columns_of_value(columns)
        if not found and isinstance(columns, (list, tuple)):
            found = tuple((str(c), "") if isinstance(c, str) else tuple(c) for c in columns)
        self.runtime_columns = tuple(found)


# -- gating --------------------------------------------------------------------------------
def gate_asset(resource: LacunaResource, context: dg.AssetExecutionContext, *,
               asset_key: dg.AssetKey | None = None, exception_id: str | None = None,
               purpose: str | None = None) -> GovernedStep:
    """Gate the asset this step materializes (``asset_key`` is needed for multi-assets)."""
    assets_def = context.assets_def
    if asset_key is None:
        if len(assets_def.keys) != 1:
            keys = ", ".join(sorted(k.to_user_string() for k in assets_def.keys))
            raise dg.DagsterInvariantViolationError(
                f"lacuna.gate() in a multi-asset ({keys}) needs asset_key= for each output"
            )
        asset_key = next(iter(assets_def.keys))
    return gate_spec(
        resource, assets_def.specs_by_key[asset_key], dagster_run_id=context.run.run_id,
        job_name=context.run.job_name, run_tags=context.run.tags, logger=context.log,
        exception_id=exception_id, purpose=purpose,
    )


def gate_spec(resource: LacunaResource, spec: dg.AssetSpec, *, dagster_run_id: str,
              job_name: str, run_tags: Mapping[str, str], logger: Any,
              exception_id: str | None = None, purpose: str | None = None) -> GovernedStep:
    """Gate one asset by its spec; raise ``dg.Failure`` on a denial. Idempotent per step."""
    key = spec.key.to_user_string()
    known = resource.step(dagster_run_id, key)
    if known is not None and known.decision is not None:
        if not known.allowed:
            raise _failure(known.decision)
        return known
    try:
        op = resource.get_translator().get_operation_for(spec)
    except LacunaError as err:  # bad lacuna/* metadata: refuse rather than guess
        raise dg.Failure(description=f"Lacuna cannot gate asset {key}: {err}",
                         allow_retries=False) from None
    step = GovernedStep(dagster_run_id, job_name, op, openlineage_run_id(dagster_run_id, key))
    decision = _decide(resource, step, exception_id=exception_id or run_tags.get(EXCEPTION_TAG),
                       purpose=purpose or run_tags.get(PURPOSE_TAG) or op.purpose
                       or resource.purpose or "")
    step.decision = decision
    resource.remember(step)
    if not decision.allow:
        logger.error(decision.message)
        # Nothing was written: record the attempt, but no edge to the output.
        _emit(resource, step, "FAIL", include_output=False,
              error=decision.reasons[0] if decision.reasons else "denied")
        step.finished = "FAIL"
        raise _failure(decision)
    if decision.exception_id:  # worth a line in the run's log; plain allows are in metadata
        logger.info(decision.message)
    elif log.isEnabledFor(logging.DEBUG):  # rendering the message is not free
        log.debug("Lacuna: %s", decision.message)
    return step


def _decide(resource: LacunaResource, step: GovernedStep, *, exception_id: str | None,
            purpose: str) -> Decision:
    op = step.op
    try:
        backend = resource.backend()
        operation = Operation(
            kind=op.kind,
            sources=op.inputs,
            destination=op.output,
            user=backend.user,
            purpose=purpose,
            environment=backend.environment,
            code=f"dagster:{op.asset_key}",
            run_id=step.run_id,
            exception_id=exception_id or "",
            context={"orchestrator": "dagster", "asset": op.asset_key,
                     "dagster_run_id": step.dagster_run_id},
        )
        if backend.remote and not op.inputs:
            return _decide_by_start_event(resource, step, purpose)
        return backend.check(operation, via=VIA, durable=False)
    except Exception as err:  # noqa: BLE001 - any failure to decide is a denial (fail closed)
        return fail_closed_decision(op, err)


def _decide_by_start_event(resource: LacunaResource, step: GovernedStep,
                           purpose: str) -> Decision:
    """A root asset (no upstream) against a server: the check API wants at least one source,
    so the START event asks instead — the server decides every output of a START event with
    the same policies and audits it. Without inputs it records no edge, only the asset.
    No decision for the output in the answer is a denial."""
    emitter = LineageEmitter(resource.backend())
    event = emitter.event(replace(step.op, purpose=purpose or step.op.purpose), "START",
                          run_id=step.run_id, parent=(step.job_name, step.dagster_run_id),
                          user=resource.backend().user)
    result = resource.backend().ingest(event, via=VIA)
    step.started = True
    decisions: tuple[Decision, ...] = tuple(getattr(result, "decisions", ()))
    if len(decisions) != 1:  # the event has one output, so exactly one decision is due
        raise LacunaError(f"the Lacuna server returned {len(decisions)} decisions for "
                          f"{step.op.output.key}, expected 1")
    return decisions[0]


def fail_closed_decision(op: AssetOperation, err: BaseException) -> Decision:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return Decision(
        allow=False,
        action=op.kind.value,
        reasons=(f"Lacuna could not decide, so the gate fails closed: {reason}",),
        alternatives=(
            ("Check that the Lacuna store or server configured on the lacuna resource is "
             "reachable, then re-run"),
        ),
        policy_id=FAIL_CLOSED_POLICY,
        source=", ".join(r.name for r in op.inputs) or "(no source)",
        destination=op.output.key,
        error=reason,
    )


def _failure(decision: Decision) -> dg.Failure:
    return dg.Failure(description=decision.message, metadata=decision_metadata(decision),
                      allow_retries=False)


# -- lineage around the write ----------------------------------------------------------------
def _emit(resource: LacunaResource, step: GovernedStep, event_type: str, *,
          error: str | None = None, include_output: bool = True) -> None:
    """Send one event for the step; never raises (emission failures are logged)."""
    if not resource.emit_lineage:
        return
    try:
        emitter = LineageEmitter(resource.backend())
    except Exception as err:  # noqa: BLE001 - Lacuna unavailable: the gate already said so
        log.warning("Lacuna lineage: %s event for %s not sent: %s", event_type,
                    step.op.asset_key, err)
        return
    emitter.emit(emitter.event(step.op, event_type, run_id=step.run_id,
                               parent=(step.job_name, step.dagster_run_id), error=error,
                               include_output=include_output))


def start(resource: LacunaResource, step: GovernedStep) -> None:
    if not step.started:
        step.started = True
        _emit(resource, step, "START")


def fail(resource: LacunaResource, step: GovernedStep, error: BaseException) -> None:
    if not step.finished:
        step.finished = "FAIL"
        _emit(resource, step, "FAIL", error=f"{type(error).__name__}: {error}")


def complete(resource: LacunaResource, step: GovernedStep, *, value: Any = None,
             runtime_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Send COMPLETE with what was written; return the metadata to attach to the materialization
    (tier, tags, evidence, decision, and the column schema when only the value told us)."""
    if step.finished:
        return {}
    step.finished = "COMPLETE"
    runtime_metadata = runtime_metadata or {}
    extra: dict[str, Any] = {}
    reported = columns_of_schema(runtime_metadata.get(COLUMN_SCHEMA_KEY))
    observed = step.runtime_columns or columns_of_value(value)
    if reported:
        step.op = step.op.with_columns(reported)
    elif observed:
        # What was written wins over the definition; show it in the UI when nobody declared it.
        if not step.op.columns:
            extra[COLUMN_SCHEMA_KEY] = _table_schema(observed)
        step.op = step.op.with_columns(observed)
    lineage = resource.get_translator().get_column_lineage(runtime_metadata)
    if lineage:
        step.op = replace(step.op, column_lineage=lineage)
    _emit(resource, step, "COMPLETE")
    try:
        classification = resource.backend().classification(step.op.output)
    except Exception as err:  # noqa: BLE001 - metadata is informative; never fail the run
        log.warning("Lacuna: classification of %s unavailable: %s", step.op.output.key, err)
        classification = None
    if classification is None and step.decision is not None:
        # Lacuna has no record of the output (lineage off): show what flowed into it.
        classification = step.decision.classification
    step.classification = classification
    metadata = dict(extra)
    if classification is not None:
        metadata.update(classification_metadata(classification, dataset=step.op.output))
    if step.decision is not None:
        metadata.update(decision_metadata(step.decision))
    return metadata


def _table_schema(columns: Any) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(c[0], c[1] or "unknown") for c in columns])


@contextmanager
def governed_step(resource: LacunaResource, context: dg.AssetExecutionContext, *,
                  asset_key: dg.AssetKey | None = None, exception_id: str | None = None,
                  purpose: str | None = None) -> Iterator[GovernedStep]:
    step = gate_asset(resource, context, asset_key=asset_key, exception_id=exception_id,
                      purpose=purpose)
    start(resource, step)
    try:
        yield step
    except BaseException as err:
        fail(resource, step, err)
        raise
    _attach(context, step, complete(resource, step))


def _attach(context: dg.AssetExecutionContext, step: GovernedStep,
            metadata: Mapping[str, Any]) -> None:
    if not metadata:
        return
    key = dg.AssetKey.from_user_string(step.op.asset_key)
    try:
        context.add_output_metadata(dict(metadata),
                                    output_name=context.assets_def.get_output_name_for_asset_key(key))
    except dg.DagsterInvariantViolationError as err:  # e.g. the output was already yielded
        log.info("Lacuna: classification metadata not attached to %s: %s", step.op.asset_key, err)


# -- the one-line decorator --------------------------------------------------------------------
def governed(fn: F | None = None, *, resource_key: str = "lacuna") -> Any:
    """Gate an asset function: ``@dg.asset`` on top, ``@governed`` right under it.

    The body runs only when Lacuna allows; a denial fails the step before the body (and so
    before any write). The function may omit ``context`` and the resource parameter: the
    wrapper adds both to the signature Dagster reads. The body's return value (a table-like
    value or a ``MaterializeResult`` with ``dagster/column_schema``) gives the COMPLETE event
    its columns.
    """

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func) or inspect.isgeneratorfunction(func) or (
            inspect.isasyncgenfunction(func)
        ):
            raise dg.DagsterInvalidDefinitionError(
                f"@governed cannot wrap {func.__name__}: generator and async assets yield "
                "their outputs themselves; call `with lacuna.governed(context):` inside instead"
            )
        from lacuna_orchestration.integrations.dagster.resource import LacunaResource

        sig = inspect.signature(func)
        params = list(sig.parameters.values())
        has_context = bool(params) and params[0].name in ("context", "_context", "_")
        has_resource = resource_key in sig.parameters
        new_params = list(params)
        if not has_context:
            new_params.insert(0, inspect.Parameter(
                "context", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=dg.AssetExecutionContext,
            ))
        if not has_resource:
            new_params.append(inspect.Parameter(
                resource_key, inspect.Parameter.KEYWORD_ONLY, annotation=LacunaResource
            ))
        new_sig = sig.replace(parameters=new_params)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = new_sig.bind(*args, **kwargs)
            context = bound.arguments[new_params[0].name]
            resource = bound.arguments[resource_key]
            if not has_context:
                del bound.arguments[new_params[0].name]
            if not has_resource:
                del bound.arguments[resource_key]
            with governed_step(resource, context) as step:
                result = func(*bound.args, **bound.kwargs)
                _observe(step, result)
            return result

        wrapper.__signature__ = new_sig  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate


def _observe(step: GovernedStep, result: Any) -> None:
    """Columns of what the body produced, for the COMPLETE event."""
    if isinstance(result, dg.MaterializeResult):
        schema = (result.metadata or {}).get(COLUMN_SCHEMA_KEY)
        if schema is not None:
            step.set_columns(schema)
        return
    if isinstance(result, dg.Output):
        result = result.value
    found = columns_of_value(result)
    if found:
        step.set_columns(found)
