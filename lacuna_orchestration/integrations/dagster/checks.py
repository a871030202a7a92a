"""Blocking governance checks: one per asset, run after it materializes.

A check asks two questions about what was written:

1. **Does the data match its declaration?** The columns of the materialized output (runtime
   ``dagster/column_schema``, else the definition's) are classified; when their tier is above
   the asset's declared ``lacuna/classification``, the declaration understates the data (an
   ``email`` column appeared in an INTERNAL table) and the check fails.
2. **May this output exist?** The operation that produced it (upstream assets → output) is put
   to the policies again, so assets that are not gated still get a verdict.

Either failing fails the check; checks are ``blocking``, so Dagster stops the assets downstream
in the same run. The result's metadata carries tier, tags, evidence and the decision, which is
where a person reads classification in the UI. When Lacuna cannot be asked, the check fails
(closed) with the reason.

>>> defs = dg.Definitions(assets=assets, asset_checks=build_lacuna_checks(assets),
...                       resources={"lacuna": LacunaResource()})   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from lacuna_orchestration.integrations.dagster.gate import VIA, fail_closed_decision
from lacuna_orchestration.integrations.dagster.lineage import (
    COLUMN_SCHEMA_KEY,
    AssetOperation,
    columns_of_schema,
)
from lacuna_orchestration.integrations.dagster.metadata import (
    classification_metadata,
    decision_metadata,
)
from lacuna_orchestration.model import (
    Classification,
    Decision,
    Evidence,
    Layer,
    Operation,
    Tier,
)

if TYPE_CHECKING:
    from lacuna_orchestration.integrations.dagster.backend import Backend
    from lacuna_orchestration.integrations.dagster.resource import LacunaResource

__all__ = ["CHECK_NAME", "build_lacuna_checks", "evaluate_output"]

CHECK_NAME = "lacuna_governance"


def build_lacuna_checks(
    assets: Iterable[dg.AssetsDefinition | Any],
    *,
    resource_key: str = "lacuna",
    name: str = CHECK_NAME,
    blocking: bool = True,
) -> list[dg.AssetChecksDefinition]:
    """One blocking governance check per asset key in ``assets`` (specs and source assets,
    which Dagster does not materialize, are skipped)."""
    checks: list[dg.AssetChecksDefinition] = []
    seen: set[dg.AssetKey] = set()
    for item in assets:
        if not isinstance(item, dg.AssetsDefinition) or not item.is_materializable:
            continue
        for key, spec in item.specs_by_key.items():
            if key in seen:
                continue
            seen.add(key)
            checks.append(_check_for(spec, resource_key=resource_key, name=name,
                                     blocking=blocking))
    return checks


def _check_for(spec: dg.AssetSpec, *, resource_key: str, name: str,
               blocking: bool) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=spec.key,
        name=name,
        blocking=blocking,
        required_resource_keys={resource_key},
        description="Lacuna: classification of the materialized columns vs the declared "
        "floor, and the policy decision for this output.",
    )
    def _lacuna_check(context):  # type: ignore[no-untyped-def]  # Dagster reads this signature

        resource: LacunaResource = getattr(context.resources, resource_key)
        return evaluate_output(resource, spec, context)

    return _lacuna_check


def _runtime_metadata(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> dict[str, Any]:
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event is not None else None
    return dict(materialization.metadata) if materialization is not None else {}


def evaluate_output(resource: LacunaResource, spec: dg.AssetSpec,
                    context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """The check's body; public so a custom check can reuse it."""
    key = spec.key.to_user_string()
    step = resource.step(context.run.run_id, key)
    if step is not None and step.finished == "COMPLETE":
        # Gated in this process: the step knows the asset's operation and what it wrote
        # (no metadata parsing, no event-log read).
        op = step.op
        columns = op.columns
    else:
        try:
            op = resource.get_translator().get_operation_for(spec)
        except Exception as err:  # noqa: BLE001 - bad lacuna/* metadata fails the check
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                       description=f"Lacuna cannot read asset {key}: {err}")
        runtime = _runtime_metadata(context, spec.key)
        columns = columns_of_schema(runtime.get(COLUMN_SCHEMA_KEY)) or op.columns
    try:
        backend = resource.backend()
        classification, per_column = _classify(backend, op, [c[0] for c in columns])
        decision = _decision(resource, backend, op, context.run.run_id)
    except Exception as err:  # noqa: BLE001 - no answer is a failed check (fail closed)
        decision = fail_closed_decision(op, err)
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description=decision.message,
                                   metadata=decision_metadata(decision))
    problems = []
    inferred = _inferred_tier(classification, per_column)
    if op.declared_tier is not None and inferred > op.declared_tier:
        culprits = sorted(n for n, c in per_column.items() if c.tier > op.declared_tier)
        problems.append(
            f"{key} is declared {op.declared_tier.name} but its data classifies as "
            f"{inferred.name}" + (f" (columns: {', '.join(culprits)})" if culprits else "")
        )
    if not decision.allow:
        problems.append(decision.reasons[0] if decision.reasons else "denied by policy")
    metadata: dict[str, Any] = {}
    metadata.update(classification_metadata(classification, dataset=op.output, columns=per_column))
    metadata["lacuna/declared_tier"] = dg.MetadataValue.text(
        op.declared_tier.name if op.declared_tier else "none"
    )
    metadata["lacuna/columns_checked"] = dg.MetadataValue.int(len(columns))
    metadata.update(decision_metadata(decision))
    if problems:
        description = "; ".join(problems)
        if not decision.allow:
            description += "\n\n" + decision.message
    else:
        description = f"{classification.describe()} — {decision.message.splitlines()[0]}"
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=description,
    )


def _inferred_tier(classification: Classification,
                   per_column: dict[str, Classification]) -> Tier:
    """The tier the data itself supports: columns' tiers and inherited evidence, but not the
    declaration (a floor is what we compare against, it cannot be its own proof)."""
    tiers = [c.tier for c in per_column.values()]
    if classification.layer is not Layer.EXPLICIT:
        tiers.append(classification.tier)
    return max(tiers, default=Tier.PUBLIC)


def _classify(backend: Backend, op: AssetOperation,
              columns: Sequence[str]) -> tuple[Classification, dict[str, Classification]]:
    """Lacuna's view of the output (ingested at COMPLETE), or a direct classification of its
    columns when the output never reached Lacuna (an ungoverned asset)."""
    known = backend.classification(op.output)
    per_column = backend.column_classifications(op.output)
    missing = [c for c in columns if c not in per_column]
    if missing:
        per_column.update(backend.classify_columns(missing, dataset=op.output.name))
    if known is None:
        known = Classification.unknown("Lacuna has no lineage for this output")
        for col in per_column.values():
            known = col if known.is_unknown else known.merge(col)
        if op.declared_tier is not None or op.declared_tags:
            floor = Classification(
                op.declared_tier or Tier.PUBLIC, op.declared_tags, 1.0, Layer.EXPLICIT,
                (Evidence(Layer.EXPLICIT, "dagster", op.output.key, "declared on the asset", 1.0),),
            )
            known = floor if known.is_unknown else known.merge(floor)
    if columns:
        per_column = {c: per_column[c] for c in columns if c in per_column}
    return known, per_column


def _decision(resource: LacunaResource, backend: Backend, op: AssetOperation,
              run_id: str) -> Decision:
    """Reuse the gate's decision from this run when the step was gated in this process."""
    step = resource.step(run_id, op.asset_key)
    if step is not None and step.decision is not None:
        return step.decision
    return backend.check(
        Operation(kind=op.kind, sources=op.inputs, destination=op.output, user=backend.user,
                  purpose=op.purpose or resource.purpose or "", environment=backend.environment,
                  code=f"dagster:{op.asset_key}", run_id=run_id,
                  context={"orchestrator": "dagster", "asset": op.asset_key}),
        via=f"{VIA}.check",
    )
