"""The catalog store: the graph written through and loaded back (streamed, with shared values),
and lineage answered by one recursive query without loading the graph — on SQLite and on
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from lacuna_orchestration import catalog as catalog_module
from lacuna_orchestration.catalog import CatalogStore
from lacuna_orchestration.db import make_engine
from lacuna_orchestration.lineage.graph import LineageGraph
from lacuna_orchestration.model import Classification, DatasetRef, Layer, OperationKind, Tier

PII = Classification(Tier.PROPRIETARY, frozenset({"PII"}), 0.95, Layer.HEURISTIC)


def ref(name: str) -> DatasetRef:
    return DatasetRef("wh", name)


def sample_graph() -> LineageGraph:
    """raw → stg → (int_a, int_b) → mart → report, a diamond, plus a cycle c1 ⇄ c2 → mart."""
    g = LineageGraph()
    for src, dst in [("raw", "stg"), ("stg", "int_a"), ("stg", "int_b"), ("int_a", "mart"),
                     ("int_b", "mart"), ("mart", "report"), ("c1", "c2"), ("c2", "c1"),
                     ("c2", "mart")]:
        g.add_edge(ref(src), ref(dst), OperationKind.JOIN, job=f"job.{dst}")
    for node in list(g.nodes()):
        node.columns = {"email": PII} if node.ref.name in ("raw", "c1") else {}
        node.own = PII if node.ref.name in ("raw", "c1") else None
    g.recompute_all()
    return g


def saved(engine: Engine) -> tuple[CatalogStore, LineageGraph]:
    store = CatalogStore(engine, "t1")
    store.create_schema()
    graph = sample_graph()
    store.save(graph.nodes(), graph.edges())
    CatalogStore(engine, "other").save([], [("wh::x", ref("report").key, OperationKind.JOIN, "")])
    return store, graph


def check_lineage(store: CatalogStore, graph: LineageGraph) -> None:
    report = ref("report").key
    assert store.lineage(report) == [
        (ref("mart").key, 1), (ref("c2").key, 2), (ref("int_a").key, 2), (ref("int_b").key, 2),
        (ref("c1").key, 3), (ref("stg").key, 3), (ref("raw").key, 4),
    ]
    assert [k for k, _ in store.lineage(report, depth=2)] == [
        ref("mart").key, ref("c2").key, ref("int_a").key, ref("int_b").key]
    for key in graph.g.nodes:
        for depth in (1, 3, 10):
            assert {k for k, _ in store.lineage(key, depth=depth)} == set(
                graph.upstream(key, depth=depth))
            assert {k for k, _ in store.lineage(key, direction="downstream", depth=depth)} == \
                set(graph.downstream(key, depth=depth))
    # a cycle leads back to the start: the start is not its own ancestor
    assert store.lineage(ref("c1").key) == [(ref("c2").key, 1)]
    assert store.lineage(report, depth=0) == []
    assert store.lineage("wh::nothing") == []


def check_load(store: CatalogStore, graph: LineageGraph) -> None:
    loaded = store.load(LineageGraph())
    assert sorted(loaded.g.nodes) == sorted(graph.g.nodes)
    assert sorted(loaded.edges()) == sorted(graph.edges())
    for node in graph.nodes():
        assert loaded.node(node.ref.key).to_dict() == node.to_dict()
    # equal values decoded from different rows are one object
    assert loaded.node(ref("raw").key).columns["email"] is loaded.node(ref("c1").key).columns[
        "email"]
    # the propagation order is ready, and propagation works on the loaded graph
    assert loaded._order.levels is not None
    loaded.node(ref("int_b").key).own = Classification(Tier.INTERNAL, frozenset({"FINANCIAL"}),
                                                       0.9, Layer.HEURISTIC)
    changed = loaded.propagate([ref("int_b").key])
    assert changed[:3] == [ref("int_b").key, ref("mart").key, ref("report").key]
    assert "FINANCIAL" in loaded.node(ref("report").key).effective.tags


def test_catalog_on_sqlite(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        store, graph = saved(engine)
        check_lineage(store, graph)
        check_load(store, graph)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_catalog_on_postgres(pg_engine: Engine) -> None:
    store, graph = saved(pg_engine)
    check_lineage(store, graph)
    check_load(store, graph)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_edge_whose_dataset_row_is_missing_loads_as_a_bare_node(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """A load that reads edges committed after its dataset read (another writer between the two
    statements) must not leave networkx nodes without a dataset: every node can be read."""
    engine = (request.getfixturevalue("pg_engine") if backend == "postgres"
              else make_engine(request.getfixturevalue("sqlite_url")))
    store, _ = saved(engine)
    late = LineageGraph()
    late.add_edge(ref("late_source"), ref("stg"), OperationKind.JOIN, job="job.late")
    store.save((), late.edges())  # the edge only, as a reader between two statements sees it
    graph = store.load(LineageGraph())
    node = graph.node("wh::late_source")
    assert node.own is None and "wh::stg" in graph.g.successors("wh::late_source")
    assert {n.ref.key for n in graph.nodes()} == set(graph.g)
    changed = store.load_keys(graph, ["wh::stg", "wh::raw"])
    assert changed == []  # reloading unchanged datasets changes nothing


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_batch_of_changes_is_written_together_and_the_later_row_wins(
    backend: str, sqlite_url: str, request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A group commit writes many governor writes' rows in one statement per table; the same
    dataset changed twice in the batch ends as the later change left it, and a step that
    cannot be merged still runs in its place in the order."""
    from lacuna_orchestration.audit.store import run_steps
    from lacuna_orchestration.catalog import CatalogChanges

    engine = make_engine(sqlite_url) if backend == "sqlite" else request.getfixturevalue(
        "pg_engine")
    store = CatalogStore(engine, "batch")
    store.create_schema()
    graph = sample_graph()
    raw = graph.node(ref("raw").key)
    first = store.changes([raw], list(graph.in_edges(ref("stg").key)))
    raw.description = "changed by the second write"
    second = store.changes([raw], list(graph.in_edges(ref("stg").key)))
    assert isinstance(first, CatalogChanges) and isinstance(second, CatalogChanges)
    order: list[str] = []

    def plain_step(conn: object) -> None:
        order.append("plain")

    statements: list[str] = []
    real_run = catalog_module._DriverStatement.run

    def counted(self: Any, cursor: Any, rows: Any) -> None:
        rows = list(rows)
        statements.append(f"{self.sql.split()[2]} x{len(rows)}")
        real_run(self, cursor, rows)

    monkeypatch.setattr(catalog_module._DriverStatement, "run", counted)
    with engine.begin() as conn:
        run_steps(conn, [first, second, plain_step])
    assert order == ["plain"]
    # one statement per table, not one per change; the dataset once (the later row)
    assert sorted(statements) == ["lacuna_datasets x1", "lacuna_edges x1"]
    loaded = store.load(LineageGraph())
    assert loaded.node(ref("raw").key).description == "changed by the second write"
    if backend == "sqlite":
        engine.dispose()
