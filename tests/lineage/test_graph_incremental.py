"""Incremental propagation gives exactly what the previous algorithm gave, whatever the graph:
a worklist ordered by maintained topological levels against the reference that sorted every
descendant each time — on random graphs with cycles, self-loops, new nodes and edges added
through the API or behind its back (``graph.g``)."""

from __future__ import annotations

import itertools
import random

import networkx as nx
import pytest

from lacuna_orchestration.lineage.graph import (
    MAX_CYCLE_ROUNDS,
    DatasetNode,
    Interner,
    LineageGraph,
)
from lacuna_orchestration.lineage.inheritance import InheritanceRules, ParentView
from lacuna_orchestration.lineage.openlineage import ColumnSource
from lacuna_orchestration.model import Classification, DatasetRef, Layer, OperationKind, Tier

TAGS = ["PII", "FINANCIAL", "PHI", "EMAIL", "GDPR"]
OPS = [OperationKind.JOIN, OperationKind.TRANSFORM, OperationKind.AGGREGATE,
       OperationKind.ANONYMIZE, OperationKind.FILTER]


def reference_propagate(graph: LineageGraph, changed: list[str]) -> list[str]:
    """The previous ``LineageGraph.propagate``: all descendants, sorted, recomputed in order."""
    dirty = {k for k in changed if k in graph.g}
    if not dirty:
        return []
    affected = set(dirty)
    for k in list(dirty):
        affected.update(nx.descendants(graph.g, k))
    sub = graph.g.subgraph(affected)
    if nx.is_directed_acyclic_graph(sub):
        order: list[list[str]] = [[k] for k in nx.topological_sort(sub)]
    else:
        cond = nx.condensation(sub)
        order = [sorted(cond.nodes[c]["members"]) for c in nx.topological_sort(cond)]
    updated: list[str] = []
    for members in order:
        if not dirty.intersection(members):
            continue
        for _ in range(MAX_CYCLE_ROUNDS if len(members) > 1 else 1):
            moved = False
            for k in members:
                node = graph.node(k)
                new = graph.compute(k)
                if new != node.effective:
                    node.effective = new
                    moved = True
                    if k not in updated:
                        updated.append(k)
                    dirty.update(graph.g.successors(k))
            if not moved:
                break
    return updated


def _classification(rng: random.Random) -> Classification | None:
    if rng.random() < 0.3:
        return None
    return Classification(Tier(rng.randrange(3)), frozenset(rng.sample(TAGS, rng.randrange(3))),
                          round(rng.random(), 2), Layer.HEURISTIC)


def _random_history(seed: int) -> None:
    rng = random.Random(seed)
    ours, ref = LineageGraph(), LineageGraph()
    refs = [DatasetRef("f", f"n{i}") for i in range(rng.randint(3, 30))]
    for r in refs:
        own = _classification(rng)
        for g in (ours, ref):
            g.ensure(r).own = own
    for _ in range(40):
        if rng.random() < 0.5:
            i, j = rng.randrange(len(refs)), rng.randrange(len(refs))
            if i == j and rng.random() < 0.9:
                continue
            if i > j and rng.random() < 0.85:
                i, j = j, i  # mostly downstream; sometimes a cycle
            op = rng.choice(OPS)
            if rng.random() < 0.2 and not ours.g.has_edge(refs[i].key, refs[j].key):
                for g in (ours, ref):  # behind the graph's back, as a bulk load does
                    g.g.add_edge(refs[i].key, refs[j].key, operation=op, job="")
                changed = [refs[j].key]
            else:
                added = ours.add_edge(refs[i], refs[j], op)
                assert ref.add_edge(refs[i], refs[j], op) == added
                changed = [refs[j].key] if added else []
        else:
            k, own = rng.randrange(len(refs)), _classification(rng)
            for g in (ours, ref):
                g.node(refs[k].key).own = own
            changed = [refs[k].key]
        if rng.random() < 0.1:
            refs.append(DatasetRef("f", f"n{len(refs)}"))
            for g in (ours, ref):
                g.ensure(refs[-1])
        assert set(ours.propagate(changed)) == set(reference_propagate(ref, changed)), seed
        for r in refs:
            assert ours.node(r.key).effective == ref.node(r.key).effective, (seed, r.key)


@pytest.mark.parametrize("chunk", range(4))
def test_same_results_as_the_previous_algorithm(chunk: int) -> None:
    for seed in range(chunk * 60, (chunk + 1) * 60):
        _random_history(seed)


def _pii(tag: str = "PII") -> Classification:
    return Classification(Tier.PROPRIETARY, frozenset({tag}), 0.95, Layer.HEURISTIC)


def test_levels_follow_new_edges_and_rebuild_when_a_cycle_closes() -> None:
    g = LineageGraph()
    a, b, c, d = (DatasetRef("f", x) for x in "abcd")
    g.add_edge(a, b, OperationKind.TRANSFORM)
    g.add_edge(b, c, OperationKind.TRANSFORM)
    levels, cycles = g._order.current(g.g)
    assert (levels[a.key], levels[b.key], levels[c.key], cycles) == (0, 1, 2, {})
    g.add_edge(d, a, OperationKind.TRANSFORM)  # a new source above everything: pushed, kept
    assert g._order.levels is not None
    assert g._order.levels[a.key] > g._order.levels[d.key]
    g.add_edge(c, a, OperationKind.TRANSFORM)  # closes a -> b -> c -> a
    assert g._order.levels is None
    g.node(d.key).own = _pii()
    assert set(g.propagate([d.key])) == {d.key, a.key, b.key, c.key}
    _, cycles = g._order.current(g.g)
    assert cycles[a.key] == (a.key, b.key, c.key)


def test_a_wave_stops_where_results_stop_changing() -> None:
    g = LineageGraph()
    chain = [DatasetRef("f", f"n{i}") for i in range(50)]
    for src, dst in itertools.pairwise(chain):
        g.add_edge(src, dst, OperationKind.TRANSFORM)
    g.node(chain[0].key).own = _pii()
    assert len(g.propagate([chain[0].key])) == 50
    computed: list[str] = []
    compute = g.compute
    g.compute = lambda key: computed.append(key) or compute(key)  # type: ignore[method-assign]
    g.node(chain[30].key).own = _pii()  # already PII from upstream: the wave is short
    g.propagate([chain[30].key])
    assert len(computed) <= 4
    assert g.recompute_all() == []


def test_interner_shares_equal_values_across_documents() -> None:
    node = DatasetNode(DatasetRef("f", "x"), columns={"email": _pii()}, own=_pii())
    shared = Interner()
    one = DatasetNode.from_dict(node.to_dict(), shared=shared)
    two = DatasetNode.from_dict({**node.to_dict(), "name": "y", "key": "f::y"}, shared=shared)
    assert one.columns["email"] is two.columns["email"] is one.own
    assert one.to_dict() == node.to_dict()
    assert DatasetNode.from_dict(node.to_dict()).columns["email"] is not one.columns["email"]


def _fresh_copy(graph: LineageGraph) -> LineageGraph:
    """The same datasets and edges with nothing propagated yet. Each dataset's inputs are
    added in their original order: the rules see parents grouped by operation in that order,
    and it shows in the order of the evidence and the reasoning."""
    fresh = LineageGraph()
    for node in graph.nodes():
        fresh.put(DatasetNode(node.ref, node.fields, dict(node.columns), node.own, node.explicit,
                              dict(node.column_lineage)))
    for node in graph.nodes():
        for src, dst, op, job in graph.in_edges(node.ref.key):
            fresh.add_edge(DatasetRef.from_key(src), DatasetRef.from_key(dst), op, job)
    return fresh


@pytest.mark.parametrize("seed", range(40))
def test_incremental_equals_full_recomputation_on_random_dags(seed: int) -> None:
    """After any sequence of events propagated one by one, every dataset holds what a full
    recomputation from scratch gives, to the byte (DAGs: on a cycle the fixed point reached
    depends on where it started, by design)."""
    rng = random.Random(seed)
    graph = LineageGraph()
    refs = [DatasetRef("f", f"n{i:02d}") for i in range(rng.randint(5, 40))]
    for r in refs:
        node = graph.ensure(r)
        node.own = _classification(rng)
        node.columns = {"email": _pii("EMAIL")} if rng.random() < 0.3 else {}
    graph.recompute_all()
    for _ in range(60):
        roll = rng.random()
        if roll < 0.4:
            i, j = sorted(rng.sample(range(len(refs)), 2))
            changed = [refs[j].key] if graph.add_edge(refs[i], refs[j], rng.choice(OPS)) else []
        elif roll < 0.8:
            k = rng.randrange(len(refs))
            graph.node(refs[k].key).own = _classification(rng)
            changed = [refs[k].key]
        else:
            k = rng.randrange(len(refs))
            graph.node(refs[k].key).explicit = _classification(rng) if rng.random() < 0.7 else None
            changed = [refs[k].key]
        graph.propagate(changed)
    assert graph.recompute_all() == []
    full = _fresh_copy(graph)
    full.recompute_all()
    for r in refs:
        assert graph.node(r.key).effective.to_dict() == full.node(r.key).effective.to_dict()
        assert graph.node(r.key).effective == full.node(r.key).effective


class _CountingRules(InheritanceRules):
    """Rules with their own ``inherit``: the graph must hand them parent views for every
    operation, join-like ones included."""

    def __init__(self) -> None:
        self.calls: list[OperationKind] = []

    def inherit(self, op, parents, child):  # type: ignore[no-untyped-def]
        assert all(isinstance(p, ParentView) for p in parents.values())
        self.calls.append(op)
        return super().inherit(op, parents, child)


@pytest.mark.parametrize("seed", range(20))
def test_compute_equals_the_rules_applied_through_parent_views(seed: int) -> None:
    """``compute`` skips the views join-like operations never read; every dataset of a random
    graph (every operation kind, columns, column lineage, floors) must get the value, to the
    byte, that ``InheritanceRules.inherit`` over parent and child views gives."""
    rng = random.Random(seed)
    graph, counted = LineageGraph(), LineageGraph(_CountingRules())
    refs = [DatasetRef("f", f"n{i:02d}") for i in range(rng.randint(5, 40))]
    for g in (graph, counted):
        for r in refs:
            g.ensure(r)
    for r in refs:
        own, explicit = _classification(rng), _classification(rng) if rng.random() < 0.2 else None
        columns = {"email": _pii("EMAIL")} if rng.random() < 0.4 else {}
        for g in (graph, counted):
            node = g.node(r.key)
            node.own, node.explicit, node.columns = own, explicit, dict(columns)
    for _ in range(rng.randint(5, 80)):
        i, j = sorted(rng.sample(range(len(refs)), 2))
        op = rng.choice(list(OperationKind))
        for g in (graph, counted):
            g.add_edge(refs[i], refs[j], op)
        if rng.random() < 0.2:
            lineage = (ColumnSource(refs[i], "email", rng.choice(["IDENTITY", "AGGREGATION",
                                                                  "MASKED"])),)
            for g in (graph, counted):
                g.node(refs[j].key).column_lineage = {"email": lineage}
    graph.recompute_all()
    counted.recompute_all()
    for r in refs:
        node = graph.node(r.key)
        fast, viewed = graph.compute(r.key), graph._compute_through_views(r.key, node)
        assert fast == viewed and fast.to_dict() == viewed.to_dict()
        assert counted.node(r.key).effective.to_dict() == node.effective.to_dict()
    assert set(counted.rules.calls) == {op for _, _, op, _ in graph.edges()}
