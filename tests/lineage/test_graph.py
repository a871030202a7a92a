"""The lineage graph: queries, the printed tree, incremental propagation and cycles."""

from __future__ import annotations

import pytest

from lacuna_orchestration.errors import NotFound
from lacuna_orchestration.lineage.graph import LineageGraph
from lacuna_orchestration.model import Classification, DatasetRef, Layer, OperationKind, Tier

PII = Classification(Tier.PROPRIETARY, frozenset({"PII"}), 0.95, Layer.HEURISTIC)
FIN = Classification(Tier.INTERNAL, frozenset({"FINANCIAL"}), 0.95, Layer.HEURISTIC)


def ref(name: str) -> DatasetRef:
    return DatasetRef("file", name)


def seed_graph() -> LineageGraph:
    g = LineageGraph()
    g.add_edge(ref("raw.customers"), ref("customers.csv"), OperationKind.FILTER)
    g.add_edge(ref("customers.csv"), ref("analysis.csv"), OperationKind.JOIN)
    g.add_edge(ref("sales.csv"), ref("analysis.csv"), OperationKind.JOIN)
    g.add_edge(ref("analysis.csv"), ref("summary.csv"), OperationKind.AGGREGATE)
    g.node(ref("raw.customers").key).own = PII
    g.node(ref("sales.csv").key).own = FIN
    for name in ("summary.csv",):
        g.node(ref(name).key).own = Classification(Tier.PUBLIC, frozenset(), 0.3,
                                                    Layer.HEURISTIC)
    g.propagate([n.ref.key for n in g.nodes()])
    return g


def test_propagation_follows_the_rules() -> None:
    g = seed_graph()
    analysis = g.node(ref("analysis.csv").key).effective
    assert analysis.tier is Tier.PROPRIETARY and analysis.tags == {"PII", "FINANCIAL"}
    summary = g.node(ref("summary.csv").key).effective
    assert summary.tier is Tier.INTERNAL and "DERIVED_FROM_PII" in summary.tags


def test_queries() -> None:
    g = seed_graph()
    a = ref("analysis.csv").key
    assert set(g.upstream(a)) == {ref(n).key for n in ("customers.csv", "sales.csv",
                                                        "raw.customers")}
    assert set(g.upstream(a, depth=1)) == {ref("customers.csv").key, ref("sales.csv").key}
    assert g.downstream(ref("raw.customers").key) == [ref("customers.csv").key, a,
                                                      ref("summary.csv").key]
    impact = g.impact(ref("customers.csv").key)
    assert impact["count"] == 2 and impact["by_tier"]["PROPRIETARY"] == [a]
    assert g.resolve("analysis.csv") == a
    with pytest.raises(NotFound):
        g.resolve("nope")


def test_a_limited_walk_is_the_unlimited_walk_cut_short() -> None:
    """The gate keeps the nearest ancestors only; stopping the walk at the limit must give the
    same datasets, in the same (nearest first) order, as listing all and cutting the list."""
    import random

    rng = random.Random(3)
    g = LineageGraph()
    names = [f"t{i}" for i in range(300)]
    for i, name in enumerate(names[1:], start=1):
        for parent in rng.sample(names[:i], min(i, rng.randint(1, 4))):
            g.add_edge(ref(parent), ref(name), OperationKind.JOIN)
    for name in names[-20:]:
        key = ref(name).key
        for depth in (None, 1, 3, 10):
            whole_up, whole_down = g.upstream(key, depth), g.downstream(ref("t0").key, depth)
            for limit in (0, 1, 7, 50, 200, 10_000):
                assert g.upstream(key, depth, limit) == whole_up[:limit]
                assert g.downstream(ref("t0").key, depth, limit) == whole_down[:limit]


def test_tree_prints_like_the_seed() -> None:
    tree = seed_graph().tree(ref("analysis.csv").key)
    assert tree.splitlines() == [
        "analysis.csv (PROPRIETARY, tags: FINANCIAL, PII)",
        "├─ customers.csv (PROPRIETARY, tags: PII)",
        "│  └─ raw.customers (PROPRIETARY, tags: PII)",
        "└─ sales.csv (INTERNAL, tags: FINANCIAL)",
    ]


def test_incremental_propagation_touches_only_what_changes() -> None:
    g = seed_graph()
    g.add_edge(ref("other.src"), ref("other.out"), OperationKind.TRANSFORM)
    before = {n.ref.key: n.effective for n in g.nodes()}
    g.node(ref("sales.csv").key).own = Classification(Tier.INTERNAL, frozenset({"FINANCIAL",
                                                                               "PCI"}), 0.9,
                                                       Layer.HEURISTIC)
    updated = g.propagate([ref("sales.csv").key])
    assert updated == [ref(n).key for n in ("sales.csv", "analysis.csv", "summary.csv")]
    assert g.node(ref("other.out").key).effective == before[ref("other.out").key]
    assert "DERIVED_FROM_PCI" in g.node(ref("summary.csv").key).effective.tags
    # nothing changed → nothing recomputed downstream
    assert g.propagate([ref("sales.csv").key]) == []


def test_cycles_terminate() -> None:
    g = LineageGraph()
    g.add_edge(ref("a"), ref("b"), OperationKind.TRANSFORM)
    g.add_edge(ref("b"), ref("c"), OperationKind.TRANSFORM)
    g.add_edge(ref("c"), ref("a"), OperationKind.TRANSFORM)
    g.add_edge(ref("c"), ref("d"), OperationKind.AGGREGATE)
    g.node(ref("a").key).own = PII
    g.propagate([ref("a").key])
    for name in ("a", "b", "c"):
        assert g.node(ref(name).key).effective.tier is Tier.PROPRIETARY
    assert g.node(ref("d").key).effective.tier is Tier.INTERNAL
    assert "(cycle)" in g.tree(ref("c").key)


def test_column_upstream() -> None:
    from lacuna_orchestration.lineage.openlineage import ColumnSource

    g = seed_graph()
    g.node(ref("analysis.csv").key).column_lineage = {
        "contact": (ColumnSource(ref("customers.csv"), "email"),)}
    g.node(ref("customers.csv").key).column_lineage = {
        "email": (ColumnSource(ref("raw.customers"), "email_address"),)}
    assert g.column_upstream(ref("analysis.csv").key, "contact") == [
        (ref("customers.csv").key, "email", "IDENTITY"),
        (ref("raw.customers").key, "email_address", "IDENTITY"),
    ]


def test_column_graph() -> None:
    from lacuna_orchestration.lineage.openlineage import ColumnSource, FieldInfo

    g = seed_graph()
    node = g.node(ref("analysis.csv").key)
    node.fields = (FieldInfo("contact"),)
    node.columns = {"contact": PII}
    node.column_lineage = {"contact": (ColumnSource(ref("customers.csv"), "email"),)}
    cg = g.column_graph()
    target = f"{ref('analysis.csv').key}#contact"
    assert cg.nodes[target]["classification"] == PII
    assert list(cg.predecessors(target)) == [f"{ref('customers.csv').key}#email"]
    assert cg.edges[f"{ref('customers.csv').key}#email", target]["transformation"] == "IDENTITY"


def test_node_round_trip() -> None:
    from lacuna_orchestration.lineage.graph import DatasetNode

    g = seed_graph()
    node = g.node(ref("analysis.csv").key)
    assert DatasetNode.from_dict(node.to_dict()).to_dict() == node.to_dict()
