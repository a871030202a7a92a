"""Governance for every asset without editing any: gate at the IO manager, checks for all.

Most assets return a value and let an IO manager write it. ``governed_resources`` wraps each IO
manager the assets use so that ``handle_output`` asks the gate *before* the inner IO manager
writes, sends START before and COMPLETE (or FAIL) after the write, and attaches Lacuna's tier
and tags to the materialization. ``governed_definitions`` does that plus one blocking check per
asset, in one call::

    defs = governed_definitions(
        assets=[customers, sales, customer_sales, regional_summary],
        lacuna=LacunaResource(environment="production"),
        resources={"io_manager": dg.FilesystemIOManager(base_dir="data")},
    )

Assets that write by themselves (returning ``None`` or a ``MaterializeResult``) never reach an
IO manager: gate those with ``@governed`` or ``lacuna.gate(context)``. An asset gated in its
body is not gated twice: the IO manager sees the step's state and only writes (and completes
the lineage when the body did not).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from lacuna_orchestration.integrations.dagster.checks import build_lacuna_checks
from lacuna_orchestration.integrations.dagster.gate import complete, fail, gate_spec, start

if TYPE_CHECKING:
    from lacuna_orchestration.integrations.dagster.resource import LacunaResource

__all__ = ["LacunaIOManager", "governed_definitions", "governed_resources"]

INNER_SUFFIX = "__lacuna_inner"


class LacunaIOManager(dg.IOManager):
    """Wraps another IO manager: gate → START → inner write → COMPLETE (FAIL if it raises)."""

    def __init__(self, inner: dg.IOManager, lacuna: LacunaResource) -> None:
        self.inner = inner
        self.lacuna = lacuna

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if not context.has_asset_key or context.asset_spec is None:
            self.inner.handle_output(context, obj)
            return
        spec = context.asset_spec
        step = self.lacuna.step(context.run_id, spec.key.to_user_string())
        if step is None or step.decision is None:
            step = gate_spec(self.lacuna, spec, dagster_run_id=context.run_id,
                             job_name=context.job_name or "", run_tags=_run_tags(context),
                             logger=context.log)
        if step.finished:
            self.inner.handle_output(context, obj)
            return
        start(self.lacuna, step)
        try:
            self.inner.handle_output(context, obj)
        except BaseException as err:
            fail(self.lacuna, step, err)
            raise
        metadata = complete(self.lacuna, step, value=obj,
                            runtime_metadata=_output_metadata(context))
        if metadata:
            context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> Any:
        return self.inner.load_input(context)


def _run_tags(context: dg.OutputContext) -> Mapping[str, str]:
    try:
        return context.step_context.dagster_run.tags
    except Exception:  # noqa: BLE001 - outside a run (direct invocation) there are no tags
        return {}


def _output_metadata(context: dg.OutputContext) -> Mapping[str, Any]:
    """Metadata the asset body attached at runtime (e.g. ``dagster/column_schema``)."""
    try:
        return dict(context.output_metadata or {})
    except Exception:  # noqa: BLE001
        return {}


def _gated_io_manager(inner_key: str, resource_key: str) -> dg.IOManagerDefinition:
    @dg.io_manager(
        required_resource_keys={inner_key, resource_key},
        description=f"Lacuna gate around the IO manager {inner_key!r}",
    )
    def lacuna_io_manager(init_context: dg.InitResourceContext) -> LacunaIOManager:
        inner = getattr(init_context.resources, inner_key)
        lacuna = getattr(init_context.resources, resource_key)
        return LacunaIOManager(inner, lacuna)

    return lacuna_io_manager


def _io_manager_keys(assets: Iterable[Any]) -> set[str]:
    keys = {"io_manager"}
    for item in assets:
        if isinstance(item, dg.AssetsDefinition) and item.is_executable:
            for key in item.keys:
                keys.add(item.get_io_manager_key_for_asset_key(key))
    return keys


def governed_resources(
    assets: Sequence[Any],
    lacuna: LacunaResource,
    resources: Mapping[str, Any] | None = None,
    *,
    resource_key: str = "lacuna",
) -> dict[str, Any]:
    """``resources`` with ``lacuna`` added and every IO manager the assets use wrapped by the
    gate (the default ``io_manager`` becomes a gated ``FilesystemIOManager`` when unset)."""
    out = dict(resources or {})
    if resource_key in out and out[resource_key] is not lacuna:
        raise dg.DagsterInvalidDefinitionError(
            f"resource key {resource_key!r} is already used; pass resource_key= to choose another"
        )
    out[resource_key] = lacuna
    for key in sorted(_io_manager_keys(assets)):
        inner = out.get(key)
        if inner is None:
            if key != "io_manager":
                raise dg.DagsterInvalidDefinitionError(
                    f"assets use IO manager {key!r} but no resource of that name was given"
                )
            inner = dg.FilesystemIOManager()
        inner_key = key + INNER_SUFFIX
        out[inner_key] = inner
        out[key] = _gated_io_manager(inner_key, resource_key)
    return out


def governed_definitions(
    *,
    assets: Sequence[Any],
    lacuna: LacunaResource,
    resources: Mapping[str, Any] | None = None,
    asset_checks: Sequence[Any] = (),
    checks: bool = True,
    resource_key: str = "lacuna",
    **definitions_kwargs: Any,
) -> dg.Definitions:
    """``dg.Definitions`` with every asset gated at its IO manager and, unless ``checks`` is
    False, one blocking governance check per asset."""
    all_checks = list(asset_checks)
    if checks:
        all_checks += build_lacuna_checks(assets, resource_key=resource_key)
    return dg.Definitions(
        assets=list(assets),
        asset_checks=all_checks,
        resources=governed_resources(assets, lacuna, resources, resource_key=resource_key),
        **definitions_kwargs,
    )
