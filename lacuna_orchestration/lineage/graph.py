"""The lineage graph: datasets as nodes, "was produced from" as edges, classifications on both.

A ``networkx.DiGraph`` whose node ids are ``DatasetRef.key`` and whose edges point downstream
(input → output) and carry the operation kind and the job. Column lineage lives on the output
node (``column_lineage``: output column → input columns) and is expanded into a column graph on
demand.

Propagation is incremental: ``propagate(changed)`` recomputes only the changed nodes and the
part of their downstream that actually changes (a node whose result is unchanged stops the
wave). The wave is a worklist ordered by a topological *level* kept for every node (the level
of its strongly connected component in the condensation), so an event costs what it changes,
not the size of the graph downstream of it: levels are maintained incrementally as edges are
added and rebuilt only when a new edge closes a cycle or the graph was changed behind the
graph's back. Strongly connected components (cycles) are iterated to a fixed point with a
bound, so a cycle never loops forever.

>>> g = LineageGraph()
>>> g.add_edge(DatasetRef("f", "customers"), DatasetRef("f", "analysis"), OperationKind.JOIN)
>>> g.upstream(DatasetRef("f", "analysis").key)
['f::customers']
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import networkx as nx

from lacuna_orchestration.errors import NotFound
from lacuna_orchestration.lineage.inheritance import (
    ChildView,
    InheritanceRules,
    ParentView,
    child_view,
    effective,
    parent_view,
)
from lacuna_orchestration.lineage.openlineage import ColumnSource, FieldInfo
from lacuna_orchestration.model import Classification, DatasetRef, OperationKind

__all__ = ["DatasetNode", "Interner", "LineageGraph"]

MAX_CYCLE_ROUNDS = 8
_T = TypeVar("_T")
_PLAIN_INHERIT = InheritanceRules.inherit
# What ``InheritanceRules.inherit`` hands to ``for_join`` as plain classifications.
_JOIN_LIKE = frozenset(OperationKind) - {OperationKind.AGGREGATE, OperationKind.ANONYMIZE}


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
    def from_dict(cls, data: Mapping[str, Any], *, shared: Interner | None = None) -> DatasetNode:
        """The node a ``to_dict`` document describes. With ``shared`` (a bulk load), equal
        schemas and classifications decoded from many documents are kept once."""
        one = _identity if shared is None else shared
        return cls(
            ref=DatasetRef(data["namespace"], data["name"]),
            fields=one(tuple(one(FieldInfo(f["name"], f.get("type", ""), f.get("description", "")))
                             for f in data.get("fields", ()))),
            columns={k: one(Classification.from_dict(v))
                     for k, v in data.get("columns", {}).items()},
            own=one(Classification.from_dict(data["own"])) if data.get("own") else None,
            explicit=one(Classification.from_dict(data["explicit"]))
            if data.get("explicit") else None,
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


class Interner:
    """Keeps one copy of each distinct immutable value handed to it (``shared(value)``).

    A catalog of 100,000 datasets decoded from JSON holds the same column classification
    ("``email``: PROPRIETARY, PII, matched rule ``email``") and the same schemas thousands of
    times over; the values are frozen, so equal ones can be one object. Used for the length of
    a bulk load, then dropped.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[Any, Any] = {}

    def __call__(self, value: _T) -> _T:
        return self._seen.setdefault(value, value)  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self._seen)


def _identity(value: _T) -> _T:
    return value


class _VersionedDiGraph(nx.DiGraph):
    """A ``networkx.DiGraph`` that counts its structural changes (``version``), so the
    propagation order can tell whether the graph changed since it was computed — also when a
    caller edits ``LineageGraph.g`` directly. Attribute updates are not structural."""

    def __init__(self, incoming_graph_data: Any = None, **attr: Any) -> None:
        self.version = 0
        super().__init__(incoming_graph_data, **attr)

    def add_node(self, node_for_adding: Any, **attr: Any) -> None:
        if node_for_adding not in self._succ:
            self.version += 1
        super().add_node(node_for_adding, **attr)

    def add_edge(self, u_of_edge: Any, v_of_edge: Any, **attr: Any) -> None:
        if v_of_edge not in self._succ.get(u_of_edge, ()):
            self.version += 1
        super().add_edge(u_of_edge, v_of_edge, **attr)

    def add_nodes_from(self, nodes_for_adding: Any, **attr: Any) -> None:
        self.version += 1
        super().add_nodes_from(nodes_for_adding, **attr)

    def add_edges_from(self, ebunch_to_add: Any, **attr: Any) -> None:
        self.version += 1
        super().add_edges_from(ebunch_to_add, **attr)

    def remove_node(self, n: Any) -> None:
        self.version += 1
        super().remove_node(n)

    def remove_nodes_from(self, nodes: Any) -> None:
        self.version += 1
        super().remove_nodes_from(nodes)

    def remove_edge(self, u: Any, v: Any) -> None:
        self.version += 1
        super().remove_edge(u, v)

    def remove_edges_from(self, ebunch: Any) -> None:
        self.version += 1
        super().remove_edges_from(ebunch)

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def clear_edges(self) -> None:
        self.version += 1
        super().clear_edges()


class LineageGraph:
    """Datasets and their lineage, with classification propagated along it."""

    def __init__(self, rules: InheritanceRules | None = None) -> None:
        self.g: nx.DiGraph = _VersionedDiGraph()
        self.rules = rules or InheritanceRules()
        self._order = _TopologicalLevels()

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
            self._order.added_node(self.g, ref.key)
        return self.node(ref.key)

    def put(self, node: DatasetNode) -> None:
        new = node.ref.key not in self.g
        self.g.add_node(node.ref.key, data=node)
        if new:
            self._order.added_node(self.g, node.ref.key)

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
        if old is None:
            self._order.added_edge(self.g, src.key, dst.key)
        return True

    def edges(self) -> Iterator[tuple[str, str, OperationKind, str]]:
        for src, dst, data in self.g.edges(data=True):
            yield src, dst, data["operation"], data.get("job", "")

    def in_edges(self, key: str) -> Iterator[tuple[str, str, OperationKind, str]]:
        """The edges into ``key`` (what a changed node needs saved), without scanning the graph."""
        if key not in self.g:
            return
        for src, dst, data in self.g.in_edges(key, data=True):
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
    def upstream(self, key: str, depth: int | None = None, limit: int | None = None) -> list[str]:
        """Datasets feeding ``key``, nearest first (breadth first), at most ``depth`` levels
        and ``limit`` datasets: the walk stops at the limit instead of listing the rest."""
        return self._walk(key, self.g._pred, depth, limit)

    def downstream(self, key: str, depth: int | None = None, limit: int | None = None,
                   ) -> list[str]:
        """Datasets fed by ``key``, nearest first; ``depth`` and ``limit`` as in ``upstream``."""
        return self._walk(key, self.g._succ, depth, limit)

    def impact(self, key: str) -> dict[str, Any]:
        """Everything downstream, grouped by tier: what a change to ``key`` would touch."""
        down = self.downstream(key)
        by_tier: dict[str, list[str]] = {}
        for k in down:
            by_tier.setdefault(self.node(k).effective.tier.name, []).append(k)
        return {"dataset": key, "count": len(down), "datasets": down, "by_tier": by_tier}

    def _walk(self, key: str, adjacency: Mapping[str, Mapping[str, Any]],
              depth: int | None, limit: int | None = None) -> list[str]:
        """Breadth first over networkx's own adjacency dicts (``_pred`` or ``_succ``): the
        gate walks every source's upstream on each decision, and going through the
        ``predecessors()`` iterator doubles the cost of a walk of thousands of datasets.
        With a ``limit`` the walk ends as soon as it has found that many: the gate keeps the
        nearest 200 of an ancestry that runs to thousands in a warehouse."""
        if key not in adjacency:
            raise NotFound(f"unknown dataset {key!r}")
        if limit is not None and limit <= 0:
            return []
        seen: dict[str, None] = {}
        frontier = [key]
        level = 0
        while frontier and (depth is None or level < depth):
            level += 1
            nxt = []
            for k in frontier:
                for other in adjacency[k]:
                    if other not in seen and other != key:
                        seen[other] = None
                        if len(seen) == limit:
                            return list(seen)
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
        # The hot loop of propagation: read networkx's adjacency dicts directly (``_pred``,
        # ``_node``) instead of through its view objects, which cost more than the rest.
        groups: dict[OperationKind, dict[str, ParentView]] = {}
        nodes = self.g._node
        for parent, edge in self.g._pred[key].items():
            pnode = nodes[parent]["data"]
            op = edge["operation"]
            group = groups.get(op)
            if group is None:
                group = groups[op] = {}
            group[parent] = parent_view(parent, pnode.effective, pnode.columns)
        return groups

    def compute(self, key: str) -> Classification:
        """The effective classification of one node from its floor, own evidence and parents.

        What ``InheritanceRules.inherit`` does for each operation, minus the views a join-like
        operation never reads: join, filter, transform, read and export see only each parent's
        effective classification, so their parents go to ``for_join`` as such, without a
        ``ParentView`` each and a ``ChildView`` (a wave computes ~4 parents per dataset, and
        the views were a fifth of it). Rules that override ``inherit`` get the views as ever.
        """
        nodes = self.g._node
        try:
            node = nodes[key]["data"]
        except KeyError:
            raise NotFound(f"unknown dataset {key!r}") from None
        rules = self.rules
        if type(rules).inherit is not _PLAIN_INHERIT:
            return self._compute_through_views(key, node)
        groups: dict[OperationKind, dict[str, Any]] = {}
        join_like = _JOIN_LIKE
        for parent, edge in self.g._pred[key].items():
            op = edge["operation"]
            group = groups.get(op)
            if group is None:
                group = groups[op] = {}
            pnode = nodes[parent]["data"]
            group[parent] = (pnode.effective if op in join_like
                             else parent_view(parent, pnode.effective, pnode.columns))
        inherited = []
        child: ChildView | None = None
        for op, parents in groups.items():
            if op in join_like:
                inherited.append(rules.for_join(parents, target=key, op=op))
                continue
            if child is None:
                child = child_view(key, node.columns, node.column_lineage)
            inherited.append(rules.inherit(op, parents, child))
        return effective(explicit=node.explicit, own=node.own, inherited=inherited)

    def _compute_through_views(self, key: str, node: DatasetNode) -> Classification:
        """``compute`` for rules with their own ``inherit``: every group as parent views."""
        child = child_view(key, node.columns, node.column_lineage)
        inherit = self.rules.inherit
        inherited = [inherit(op, parents, child) for op, parents in self.parents_view(key).items()]
        return effective(explicit=node.explicit, own=node.own, inherited=inherited)

    def prepare(self) -> None:
        """Compute the propagation order now (after a bulk load) rather than on the first
        event: O(nodes + edges), about 0.3 s for 100,000 datasets."""
        self._order.current(self.g)

    def recompute_all(self) -> list[str]:
        """Recompute every node in topological order (cycles to a fixed point); return the keys
        whose effective classification changed. The full recomputation that ``propagate``
        avoids: used after a bulk load, and the benchmark's baseline."""
        cond = nx.condensation(self.g)
        updated: dict[str, None] = {}
        for c in nx.topological_sort(cond):
            self._settle(sorted(cond.nodes[c]["members"]), updated)
        return list(updated)

    def propagate(self, changed: Iterable[str]) -> list[str]:
        """Recompute ``changed`` and whatever downstream of them changes as a result; return the
        keys whose effective classification changed, in the order they were settled.

        A worklist ordered by topological level: a node is recomputed only once every
        ancestor that could still change has settled, and its children are queued only when
        its own result changed — so the cost follows the nodes that change (and their direct
        children), however large the graph downstream of them is.
        """
        dirty = [k for k in dict.fromkeys(changed) if k in self.g]
        if not dirty:
            return []
        updated: dict[str, None] = {}
        while True:
            levels, cycles = self._order.current(self.g)
            stale = self._wave(dirty, levels, cycles, updated)
            if not stale:
                return list(updated)
            # A successor sat at or below its parent's level: the graph changed without
            # telling the levels. Rebuild them and resume from everything not yet settled.
            self._order.invalidate()
            dirty = list(dict.fromkeys([*dirty, *updated, *(
                s for k in updated for s in self.g.successors(k))]))

    def _wave(self, dirty: list[str], levels: dict[str, int],
              cycles: dict[str, tuple[str, ...]], updated: dict[str, None]) -> bool:
        """Settle ``dirty`` and what follows; True when the levels proved stale."""
        heap: list[tuple[int, str]] = []
        queued: set[str] = set()
        push = heapq.heappush
        for k in dirty:
            if k not in levels:
                return True
            unit = cycles[k][0] if k in cycles else k
            if unit not in queued:
                queued.add(unit)
                push(heap, (levels[unit], unit))
        succ = self.g._succ
        while heap:
            level, unit = heapq.heappop(heap)
            members = cycles.get(unit, (unit,))
            for k in self._settle(members, updated):
                for child in succ[k]:
                    if child in queued:
                        continue
                    if child in cycles:
                        if cycles[child] is members:
                            continue  # settled together with k
                        child = cycles[child][0]
                        if child in queued:
                            continue
                    below = levels.get(child, -1)
                    if below <= level:
                        if child == k:
                            continue  # a self-loop: k settled already
                        return True
                    queued.add(child)
                    push(heap, (below, child))
        return False

    def _settle(self, members: tuple[str, ...] | list[str], updated: dict[str, None]) -> list[str]:
        """Recompute one node, or one cycle to a fixed point (bounded); return the keys whose
        effective classification changed."""
        moved: dict[str, None] = {}
        rounds = MAX_CYCLE_ROUNDS if len(members) > 1 else 1
        nodes = self.g._node
        for _ in range(rounds):
            changed = False
            for k in members:
                node = nodes[k]["data"]
                new = self.compute(k)
                if new != node.effective:
                    node.effective = new
                    changed = True
                    moved[k] = None
                    updated[k] = None
            if not changed:
                break
        return list(moved)


def _version(g: nx.DiGraph) -> int:
    """Structural version of ``g``; -1 (always stale) for a plain DiGraph someone assigned."""
    return int(getattr(g, "version", -1))


class _TopologicalLevels:
    """A topological level for every node, kept up to date as the graph grows.

    The level of a node is that of its strongly connected component in the condensation: every
    edge between two components goes from a lower level to a higher one, so processing a
    worklist by level settles every parent before its children. A new node starts at level 0;
    a new edge ``u → v`` with ``level[v] <= level[u]`` pushes ``v`` and, as far as needed, its
    descendants up — and if that push reaches ``u`` the edge closed a cycle, so the levels are
    rebuilt. Any other structural change (a bulk load through ``LineageGraph.g``, a removal)
    shows as a version the levels were not told about, and they are rebuilt once: O(nodes +
    edges), with the condensation computed only over the part of the graph that has cycles.
    """

    __slots__ = ("cycles", "levels", "synced")

    def __init__(self) -> None:
        self.levels: dict[str, int] | None = None
        self.cycles: dict[str, tuple[str, ...]] = {}
        self.synced = -2

    def invalidate(self) -> None:
        self.levels = None

    def current(self, g: nx.DiGraph) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
        version = _version(g)
        if self.levels is None or version < 0 or self.synced != version:
            self._rebuild(g)
        assert self.levels is not None
        return self.levels, self.cycles

    def _rebuild(self, g: nx.DiGraph) -> None:
        # Kahn's algorithm gives the longest-path level of every node not downstream of a cycle.
        pending = {k: d for k, d in g.in_degree() if d}
        levels: dict[str, int] = {k: 0 for k in g if k not in pending}
        frontier = list(levels)
        succ = g.succ
        while frontier:
            nxt = []
            for k in frontier:
                below = levels[k] + 1
                for child in succ[k]:
                    if levels.get(child, -1) < below:
                        levels[child] = below
                    pending[child] -= 1
                    if not pending[child]:
                        del pending[child]
                        nxt.append(child)
            frontier = nxt
        cycles: dict[str, tuple[str, ...]] = {}
        if pending:  # cycles (self-loops included) and what lies below them: condense that part
            for k in pending:
                levels.pop(k, None)
            cond = nx.condensation(g.subgraph(pending))
            pred = g.pred
            for c in nx.topological_sort(cond):
                members = tuple(sorted(cond.nodes[c]["members"]))
                inside = set(members)
                level = max((levels[p] + 1 for k in members for p in pred[k] if p not in inside),
                            default=0)
                for k in members:
                    levels[k] = level
                if len(members) > 1:
                    for k in members:
                        cycles[k] = members
        self.levels, self.cycles, self.synced = levels, cycles, _version(g)

    def _follows(self, g: nx.DiGraph) -> bool:
        """True when the levels were in sync just before the one change being reported."""
        version = _version(g)
        if self.levels is not None and version >= 0 and self.synced == version - 1:
            self.synced = version
            return True
        self.levels = None
        return False

    def added_node(self, g: nx.DiGraph, key: str) -> None:
        if self._follows(g):
            assert self.levels is not None
            self.levels[key] = 0

    def added_edge(self, g: nx.DiGraph, src: str, dst: str) -> None:
        if not self._follows(g):
            return
        levels, cycles = self.levels, self.cycles
        assert levels is not None
        if src == dst or (src in cycles and cycles[src] is cycles.get(dst)):
            return  # a self-loop or an edge inside a known cycle: the order holds
        if levels[src] < levels[dst]:
            return
        source_unit = cycles.get(src, (src,))
        stack = [(dst, levels[src] + 1)]
        while stack:
            key, level = stack.pop()
            if levels[key] >= level:
                continue
            members = cycles.get(key, (key,))
            if src in members or key in source_unit:
                self.levels = None  # the new edge closed a cycle: rebuild
                return
            for k in members:
                levels[k] = level
            for k in members:
                for child in g.succ[k]:
                    if child not in members:
                        stack.append((child, level + 1))
