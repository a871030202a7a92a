"""The gate before a dbt build: decide every selected node before dbt touches the warehouse.

For each node a command will build, parents first, ``DbtGate.plan`` sends Lacuna a START
RunEvent (job = the node, inputs = its relation parents, output = its relation, ``meta`` as
floor) through the same ingest path as every producer: Lacuna records the lineage, classifies
the columns, propagates tiers from the parents and evaluates the policies. Nodes that declare a
``meta.lacuna.domain`` are also asked through ``check`` with that domain as context (events do
not carry it).

A node's columns come from, in order: what Lacuna recorded when it was last built (the
warehouse's own columns, sent again by nobody), the catalog (``target/catalog.json`` from
``dbt docs generate``), schema.yml (or a seed's CSV header), and finally the union of the
parents' columns (a pessimistic guess: every parent column may flow through).

A *floor violation* is a node whose declared ``meta.classification`` is below the tier Lacuna
derives for it (its parents and columns say it holds more sensitive data than it claims).
With guessed columns an aggregate or anonymize step cannot be judged yet (which columns
survive decides the tier); those are checked after the build from the real columns.

The plan's ``vars()`` is what the ``lacuna`` dbt package reads: ``lacuna_denied`` stops a node
in its ``lacuna.gate()`` pre-hook with the policy's message; ``lacuna_floor_violations`` makes
``lacuna.verify_compliance()`` fail the run if the node is built anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from lacuna_orchestration.integrations.dbt.manifest import GATED_TYPES, DbtManifest, DbtNode
from lacuna_orchestration.integrations.dbt.translator import DbtTranslator, Floor
from lacuna_orchestration.model import (
    Classification,
    DatasetRef,
    Decision,
    Operation,
    OperationKind,
    Tier,
)

__all__ = ["DbtGate", "FloorViolation", "GatePlan", "GovernorLike", "NodeDecision",
           "floor_violation"]

log = logging.getLogger(__name__)

COLUMN_DEPENDENT = frozenset({OperationKind.AGGREGATE, OperationKind.ANONYMIZE})


class GovernorLike(Protocol):
    """What the dbt integration needs from ``Governor`` (or ``RemoteGovernor``)."""

    def ingest(self, event: Any, *, via: str = ..., actor: str | None = ...) -> Any: ...

    def check(self, operation: Operation, *, via: str = ...) -> Decision: ...


@dataclass(frozen=True, slots=True)
class FloorViolation:
    unique_id: str
    declared: Tier
    derived: Classification

    @property
    def message(self) -> str:
        origin = sorted({e.source.rsplit("::", 1)[-1] for e in self.derived.evidence
                         if e.layer.value == "propagated"})
        where = f" (from {', '.join(origin[:3])})" if origin else ""
        return (f"declares {self.declared.name} but Lacuna classifies its data "
                f"{self.derived.describe()}{where}; raise meta.classification to "
                f"{self.derived.tier.name} or stop the sensitive columns from reaching it")


@dataclass(frozen=True, slots=True)
class NodeDecision:
    """The gate's answer for one node."""

    unique_id: str
    dataset: DatasetRef
    operation: OperationKind
    decision: Decision | None
    columns_known: bool
    violation: FloorViolation | None = None

    @property
    def allowed(self) -> bool:
        return self.decision is None or self.decision.allow


@dataclass(slots=True)
class GatePlan:
    """Decisions for every selected node of one invocation."""

    run_id: str
    nodes: dict[str, NodeDecision] = field(default_factory=dict)

    @property
    def denied(self) -> dict[str, Decision]:
        return {u: n.decision for u, n in self.nodes.items()
                if n.decision is not None and not n.decision.allow}

    @property
    def violations(self) -> dict[str, FloorViolation]:
        return {u: n.violation for u, n in self.nodes.items() if n.violation is not None}

    def vars(self) -> dict[str, Any]:
        """The dbt vars the ``lacuna`` package reads."""
        return {
            "lacuna_denied": {u: d.message for u, d in self.denied.items()},
            "lacuna_floor_violations": {u: v.message for u, v in self.violations.items()},
        }


def floor_violation(unique_id: str, floor: Floor, derived: Classification | None) -> (
    FloorViolation | None
):
    """A violation when the declared tier is below what Lacuna derives."""
    if floor.tier is None or derived is None or derived.is_unknown:
        return None
    if derived.tier > floor.tier:
        return FloorViolation(unique_id, floor.tier, derived)
    return None


class DbtGate:
    """Plans the decisions for one invocation.

    >>> plan = DbtGate(gov, manifest, target).plan(selected, run_id=run_id)   # doctest: +SKIP
    >>> plan.vars()["lacuna_denied"]                                          # doctest: +SKIP
    {'model.lacuna_shop.customer_contacts_export': '❌ Governance Policy Violation ...'}
    """

    def __init__(
        self,
        governor: GovernorLike,
        manifest: DbtManifest,
        target: Mapping[str, Any],
        *,
        translator: DbtTranslator | None = None,
        catalog_path: str | Path | None = None,
        project: str = "",
        command: str = "build",
        user: str | None = None,
    ) -> None:
        self.governor = governor
        self.manifest = manifest
        self.target = dict(target)
        self.translator = translator or DbtTranslator()
        self.catalog = _read_catalog(catalog_path)
        self.project = project or manifest.project_name
        self.command = command
        self.user = user
        self._planned: dict[str, list[tuple[str, str]]] = {}

    # -- columns -------------------------------------------------------------------------------
    def recorded_columns(self, node: DbtNode) -> list[tuple[str, str]] | None:
        """The columns Lacuna recorded when the node was last built (None: never seen)."""
        graph = getattr(self.governor, "graph", None)
        if graph is None:
            return None
        key = self.translator.get_dataset_ref(node, self.target).key
        if key not in graph:
            return None
        fields = graph.node(key).fields
        return [(f.name, f.type) for f in fields] if fields else None

    def known_columns(self, node: DbtNode) -> list[tuple[str, str]] | None:
        """The best-known columns: what Lacuna recorded at the last build (the warehouse's
        own), else the catalog, else schema.yml or the seed's header."""
        return (self.recorded_columns(node) or self.catalog.get(node.unique_id)
                or self.translator.get_declared_columns(node) or None)

    def input_columns(self, parent: DbtNode) -> list[tuple[str, str]] | None:
        """Columns to describe a parent with in a child's event: none when Lacuna already
        knows the parent (its own events describe it), else what the project declares."""
        if parent.resource_type == "source" or parent.unique_id in self._planned:
            return None
        graph = getattr(self.governor, "graph", None)
        if graph is not None and self.translator.get_dataset_ref(parent, self.target).key in graph:
            return None
        return self.known_columns(parent)

    def guessed_columns(self, parents: Sequence[DbtNode]) -> list[tuple[str, str]]:
        """The union of the parents' columns, in order."""
        out: dict[str, str] = {}
        for parent in parents:
            for name, kind in self._planned.get(parent.unique_id) or self.known_columns(
                    parent) or ():
                out.setdefault(name, kind)
        return list(out.items())

    # -- decisions -----------------------------------------------------------------------------
    def plan(self, selected: Iterable[str], *, run_id: str) -> GatePlan:
        """Decide every selected model/seed/snapshot, parents before children."""
        plan = GatePlan(run_id)
        wanted = [u for u in selected
                  if u in self.manifest and self.manifest.node(u).resource_type in GATED_TYPES
                  and self.manifest.node(u).materialized != "ephemeral"]
        for uid in self.manifest.in_build_order(wanted):
            plan.nodes[uid] = self.decide(self.manifest.node(uid), run_id)
        return plan

    def decide(self, node: DbtNode, run_id: str) -> NodeDecision:
        parents = self.manifest.relation_parents(node.unique_id)
        recorded = self.recorded_columns(node)
        columns = recorded or self.known_columns(node)
        known = columns is not None
        if columns is None:
            columns = self.guessed_columns(parents)
        self._planned[node.unique_id] = columns
        event = self.translator.get_run_event(
            node,
            event_type="START",
            target=self.target,
            parents=[(p, self.input_columns(p)) for p in parents],
            # what Lacuna recorded stays as it is; anything else is sent
            columns=None if recorded else (columns or None),
            invocation=(run_id, self.project, self.command),
            user=self.user,
        )
        operation = self.translator.get_operation(node, parents)
        dataset = self.translator.get_dataset_ref(node, self.target)
        result = self.governor.ingest(event, via="dbt", actor=self.user)
        decision = _decision_for(result)
        context = self.translator.get_context(node)
        if context and parents and (decision is None or decision.allow):
            decision = self.governor.check(Operation(
                kind=operation,
                sources=tuple(self.translator.get_dataset_ref(p, self.target) for p in parents),
                destination=dataset,
                user=self.translator.get_user(node) or self.user or "unknown",
                purpose=self.translator.get_purpose(node) or "",
                code=node.unique_id,
                run_id=self.translator.get_run_id(run_id, node.unique_id),
                context=context,
            ), via="dbt")
        violation = None
        if known or operation not in COLUMN_DEPENDENT:
            violation = floor_violation(node.unique_id, self.translator.get_floor(node),
                                        derived_classification(self.governor, dataset))
        return NodeDecision(node.unique_id, dataset, operation, decision, known, violation)


def derived_classification(governor: Any, ref: DatasetRef) -> Classification | None:
    """What Lacuna now says ``ref`` is (None for a governor that cannot tell, e.g. remote)."""
    lookup = getattr(governor, "classification", None)
    if lookup is None:
        return None
    try:
        result = lookup(ref)
    except Exception:  # noqa: BLE001 - unknown to this governor: nothing to compare
        return None
    return result if isinstance(result, Classification) else None


def _decision_for(result: Any) -> Decision | None:
    """The decision about the event's output (its one output: the node's relation)."""
    decisions: list[Decision] = list(getattr(result, "decisions", ()) or ())
    for decision in decisions:
        if not decision.allow:
            return decision
    return decisions[0] if decisions else None


def _read_catalog(path: str | Path | None) -> dict[str, list[tuple[str, str]]]:
    """``catalog.json`` columns by unique id, in column order (missing file: empty)."""
    if path is None:
        return {}
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    out: dict[str, list[tuple[str, str]]] = {}
    for section in ("nodes", "sources"):
        for uid, entry in (data.get(section) or {}).items():
            cols = (entry or {}).get("columns") or {}
            ordered = sorted(cols.values(), key=lambda c: c.get("index") or 0)
            out[uid] = [(str(c.get("name")), str(c.get("type") or "")) for c in ordered
                        if c.get("name")]
    return out
