"""The lineage graph: datasets as nodes, "was produced from" as edges, classifications on both.

A ``networkx.DiGraph`` whose node ids are ``DatasetRef.key`` and whose edges point downstream
(input → output) and carry the operation kind and the job. Column lineage lives on the output
node (``column_lineage``: output column → input columns) and is expanded into a column graph on
demand.

Propagation is incremental: ``propagate(changed)`` recomputes only the changed nodes and the
part of their downstream that actually changes (a node whose result is unchanged stops the
wave), in topological order of the affected subgraph; strongly connected components (cycles)
are iterated to a fixed point with a bound, so a cycle never loops forever.

>>> g = LineageGraph()
>>> g.add_edge(DatasetRef("f", "customers"), DatasetRef("f", "analysis"), OperationKind.JOIN)
>>> g.upstream(DatasetRef("f", "analysis").key)
['f::customers']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from lacuna_orchestration.errors import NotFound
from lacuna_orchestration.lineage.inheritance import (
    ChildView,
    InheritanceRules,
    ParentView,
    effective,
)
from lacuna_orchestration.lineage.openlineage import ColumnSource, FieldInfo
from lacuna_orchestration.model import Classification, DatasetRef, OperationKind

__all__ = ["DatasetNode", "LineageGraph"]

MAX_CYCLE_ROUNDS = 8


@dataclass(slots=True)
class DatasetNode:
    """Everything known about one dataset. ``own`` comes from its columns and name, ``explicit``
    is a floor (dbt meta, Dagster tags, steward override), ``effective`` is the result of the
    inheritance rules and is what policies see."""

    ref: DatasetRef
    fields: tuple[FieldInfo, ...] = ()
    columns: dict[str, Classification] = field(default_factory=dict)
    own: Classification | None = None
    explicit: Classification | None = None
    column_lineage: dict[str, tuple[ColumnSource, ...]] = field(default_factory=dict)
    effective: Classification = field(default_factory=Classification.unknown)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.ref.namespace,
            "name": self.ref.name,
            "key": self.ref.key,
            "fields": [{"name": f.name, "type": f.type, "description": f.description}
                       for f in self.fields],
            "columns": {k: v.to_dict() for k, v in self.columns.items()},
            "own": self.own.to_dict() if self.own else None,
            "explicit": self.explicit.to_dict() if self.explicit else None,
            "column_lineage": {
                col: [
                    {"namespace": s.dataset.namespace, "name": s.dataset.name,
                     "field": s.column, "transformation": s.transformation, "masking": s.masking}
                    for s in sources
                ]
                for col, sources in self.column_lineage.items()
            },
            "effective": self.effective.to_dict(),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetNode:
        return cls(
            ref=DatasetRef(data["namespace"], data["name"]),
            fields=tuple(FieldInfo(f["name"], f.get("type", ""), f.get("description", ""))
                         for f in data.get("fields", ())),
            columns={k: Classification.from_dict(v) for k, v in data.get("columns", {}).items()},
            own=Classification.from_dict(data["own"]) if data.get("own") else None,
            explicit=Classification.from_dict(data["explicit"]) if data.get("explicit") else None,
            column_lineage={
                col: tuple(
                    ColumnSource(DatasetRef(s["namespace"], s["name"]), s["field"],
                                 s.get("transformation", "IDENTITY"), bool(s.get("masking")))
                    for s in sources
                )
                for col, sources in data.get("column_lineage", {}).items()
            },
            effective=Classification.from_dict(data["effective"])
            if data.get("effective") else Classification.unknown(),
            description=data.get("description", ""),
        )


class LineageGraph:
    """Datasets and their lineage, with classification propagated along it."""

    def __init__(self, rules: InheritanceRules | None = None) -> None:
        self.g: nx.DiGraph = nx.DiGraph()
        self.rules = rules or InheritanceRules()

    # -- structure -------------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return key in self.g

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    def node(self, key: str) -> DatasetNode:
        try:
            return self.g.nodes[key]["data"]  # type: ignore[no-any-return]
        except KeyError:
            raise NotFound(f"unknown dataset {key!r}") from None

    def nodes(self) -> Iterator[DatasetNode]:
        for _, data in self.g.nodes(data="data"):
            yield data

    def ensure(self, ref: DatasetRef) -> DatasetNode:
        if ref.key not in self.g:
            self.g.add_node(ref.key, data=DatasetNode(ref))
        return self.node(ref.key)

    def put(self, node: DatasetNode) -> None:
        self.g.add_node(node.ref.key, data=node)

    def add_edge(
        self, src: DatasetRef, dst: DatasetRef, operation: OperationKind, job: str = ""
    ) -> bool:
        """Add or update an edge; True when something changed (a new edge or a new operation)."""
        self.ensure(src)
        self.ensure(dst)
        old = self.g.get_edge_data(src.key, dst.key)
        if old and old["operation"] is operation and old.get("job") == job:
            return False
        self.g.add_edge(src.key, dst.key, operation=operation, job=job)
        return True

    def edges(self) -> Iterator[tuple[str, str, OperationKind, str]]:
        for src, dst, data in self.g.edges(data=True):
            yield src, dst, data["operation"], data.get("job", "")

    def resolve(self, name: str) -> str:
        """Find a node from a key, a name, or a short name; refuse ambiguous names."""
        if name in self.g:
            return name
        matches = [
            k for k, n in self.g.nodes(data="data")
            if n.ref.name == name or n.ref.short_name == name
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFound(f"no dataset named {name!r} in the lineage graph")
        raise NotFound(f"{name!r} is ambiguous; use one of: {', '.join(sorted(matches))}")

    # -- queries ---------------------------------------------------------------------------
    def upstream(self, key: str, depth: int | None = None) -> list[str]:
        return self._walk(key, self.g.predecessors, depth)

    def downstream(self, key: str, depth: int | None = None) -> list[str]:
        return self._walk(key, self.g.successors, depth)

    def impact(self, key: str) -> dict[str, Any]:
        """Everything downstream, grouped by tier: what a change to ``key`` would touch."""
        down = self.downstream(key)
        by_tier: dict[str, list[str]] = {}
        for k in down:
            by_tier.setdefault(self.node(k).effective.tier.name, []).append(k)
        return {"dataset": key, "count": len(down), "datasets": down, "by_tier": by_tier}

    def _walk(self, key: str, step: Any, depth: int | None) -> list[str]:
        if key not in self.g:
            raise NotFound(f"unknown dataset {key!r}")
        seen: dict[str, None] = {}
        frontier = [key]
        level = 0
        while frontier and (depth is None or level < depth):
            level += 1
            nxt = []
            for k in frontier:
                for other in step(k):
                    if other not in seen and other != key:
                        seen[other] = None
                        nxt.append(other)
            frontier = nxt
        return list(seen)

    def column_upstream(self, key: str, column: str) -> list[tuple[str, str, str]]:
        """(dataset key, column, transformation) feeding ``key.column``, transitively."""
        out: list[tuple[str, str, str]] = []
        seen = set()
        stack = [(key, column)]
        while stack:
            k, col = stack.pop()
            if k not in self.g:
                continue
            for src in self.node(k).column_lineage.get(col, ()):
                item = (src.dataset.key, src.column)
                if item not in seen:
                    seen.add(item)
                    out.append((src.dataset.key, src.column, src.transformation))
                    stack.append(item)
        return out

    def column_graph(self, keys: Iterable[str] | None = None) -> nx.DiGraph:
        """Column nodes (``dataset_key#column``) with edges from the ``columnLineage`` facets,
        each node carrying its column classification where one is known."""
        cg: nx.DiGraph = nx.DiGraph()
        for key in keys if keys is not None else list(self.g.nodes):
            node = self.node(key)
            for col in node.fields:
                cg.add_node(f"{key}#{col.name}", classification=node.columns.get(col.name))
            for out_col, sources in node.column_lineage.items():
                for src in sources:
                    cg.add_edge(f"{src.dataset.key}#{src.column}", f"{key}#{out_col}",
                                transformation=src.transformation, masking=src.masking)
        return cg

    def tree(self, key: str, depth: int = 10) -> str:
        """The upstream tree with tiers, as the seed printed it::

            analysis.csv (PROPRIETARY, tags: FINANCIAL, PII)
            ├─ customers.csv (PROPRIETARY, tags: PII)
            └─ sales.csv (INTERNAL, tags: FINANCIAL)
        """
        lines = [self._label(key)]

        def walk(k: str, prefix: str, level: int, path: frozenset[str]) -> None:
            if level >= depth:
                return
            parents = sorted(self.g.predecessors(k))
            for i, parent in enumerate(parents):
                last = i == len(parents) - 1
                branch = "└─ " if last else "├─ "
                if parent in path:
                    lines.append(f"{prefix}{branch}{self._label(parent)} (cycle)")
                    continue
                lines.append(f"{prefix}{branch}{self._label(parent)}")
                walk(parent, prefix + ("   " if last else "│  "), level + 1, path | {parent})

        walk(key, "", 0, frozenset({key}))
        return "\n".join(lines)

    def _label(self, key: str) -> str:
        node = self.node(key)
        c = node.effective
        text = "unclassified" if c.is_unknown else c.describe()
        return f"{node.ref.name} ({text})"

    # -- classification ---------------------------------------------------------------------
    def parents_view(self, key: str) -> dict[OperationKind, dict[str, ParentView]]:
        groups: dict[OperationKind, dict[str, ParentView]] = {}
        for parent in self.g.predecessors(key):
            op = self.g.edges[parent, key]["operation"]
            pnode = self.node(parent)
            groups.setdefault(op, {})[parent] = ParentView(parent, pnode.effective, pnode.columns)
        return groups

    def compute(self, key: str) -> Classification:
        """The effective classification of one node from its floor, own evidence and parents."""
        node = self.node(key)
        child = ChildView(key, node.columns, node.column_lineage)
        inherited = [
            self.rules.inherit(op, parents, child)
            for op, parents in self.parents_view(key).items()
        ]
        return effective(explicit=node.explicit, own=node.own, inherited=inherited)

    def propagate(self, changed: Iterable[str]) -> list[str]:
        """Recompute ``changed`` and whatever downstream of them changes as a result; return the
        keys whose effective classification changed, in the order they were settled."""
        dirty = {k for k in changed if k in self.g}
        if not dirty:
            return []
        affected = set(dirty)
        for k in list(dirty):
            affected.update(nx.descendants(self.g, k))
        sub = self.g.subgraph(affected)
        updated: list[str] = []
        if nx.is_directed_acyclic_graph(sub):
            order: list[list[str]] = [[k] for k in nx.topological_sort(sub)]
        else:
            cond = nx.condensation(sub)
            order = [sorted(cond.nodes[c]["members"]) for c in nx.topological_sort(cond)]
        for members in order:
            if not dirty.intersection(members):
                continue
            rounds = MAX_CYCLE_ROUNDS if len(members) > 1 else 1
            for _ in range(rounds):
                moved = False
                for k in members:
                    node = self.node(k)
                    new = self.compute(k)
                    if new != node.effective:
                        node.effective = new
                        moved = True
                        if k not in updated:
                            updated.append(k)
                        dirty.update(self.g.successors(k))
                if not moved:
                    break
        return updated
