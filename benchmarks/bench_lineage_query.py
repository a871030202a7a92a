"""Lineage query — upstream 10 levels — on a 100,000-dataset catalog in PostgreSQL.

Target (issue 11): < 100 ms.

The synthetic warehouse graph (``synthetic.build_graph``: 12 layers, fan-in 1-20, hub tables)
is written into a fresh schema's ``lacuna_edges`` (and, in the full run, ``lacuna_datasets``
with every dataset's document), then each sampled dataset's upstream within 10 hops is asked
three ways, and the answers compared:

* ``cte``       ``CatalogStore.lineage(key, depth=10)``: one recursive query over
  ``lacuna_edges``, walking the ``(tenant, dst)`` index — what a process that has not loaded
  the graph (a second replica, a report, the CLI on a large store) does;
* ``per level`` the baseline: one indexed ``SELECT src ... WHERE dst = ANY(frontier)`` per
  level from Python, ten round trips;
* ``memory``    ``LineageGraph.upstream(key, depth=10)`` on the graph ``CatalogStore.load``
  built from the same tables — what the governor and the server answer from (load time
  reported separately).

Half the sampled datasets are uniformly random among those with any upstream, half come from
the three deepest layers (the longest upstream: the worst case).

    python benchmarks/bench_lineage_query.py           # 100k datasets with documents, 300 queries
    python benchmarks/bench_lineage_query.py --quick   # 100k datasets, edges only, 100 queries
    python benchmarks/bench_lineage_query.py --edges-only   # what `make bench` runs
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PG_URL, Check, Row, fresh_schema, pg_reachable, print_rows, stats, write_results
from synthetic import build_graph, copy_into_catalog

from lacuna_orchestration.catalog import CatalogStore
from lacuna_orchestration.lineage.graph import LineageGraph

TARGET_MS = 100.0
DEPTH = 10
TENANT = "bench"




def per_level(engine: Engine, key: str, depth: int) -> list[tuple[str, int]]:
    """The baseline: breadth-first from Python, one indexed query per level."""
    seen: dict[str, int] = {}
    frontier = [key]
    query = text("SELECT DISTINCT src FROM lacuna_edges WHERE tenant = :t AND dst = ANY(:keys)")
    with engine.connect() as conn:
        for hops in range(1, depth + 1):
            if not frontier:
                break
            found = [k for (k,) in conn.execute(query, {"t": TENANT, "keys": frontier})]
            frontier = [k for k in found if k not in seen and k != key]
            for k in frontier:
                seen[k] = hops
    return sorted(seen.items(), key=lambda item: (item[1], item[0]))


def sample(graph: LineageGraph, count: int, seed: int) -> list[str]:
    levels, _ = graph._order.current(graph.g)
    deepest = max(levels.values())
    deep = [k for k, lv in levels.items() if lv >= deepest - 2]
    rng = random.Random(seed)
    keys = [k for k in levels if graph.g.in_degree(k)]  # a dataset with upstream lineage
    half = count // 2
    return rng.sample(keys, count - half) + rng.sample(deep, min(half, len(deep)))


def timed_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1e3, result


def run(nodes: int, queries: int, documents: bool, seed: int) -> dict[str, Any]:
    graph = build_graph(nodes, seed=seed, settle=documents)
    keys = sample(graph, queries, seed)
    with fresh_schema("bench_lineage") as engine:
        setup_s = time.perf_counter()
        copy_into_catalog(engine, graph, TENANT, datasets=documents)
        setup_s = time.perf_counter() - setup_s
        catalog = CatalogStore(engine, TENANT)
        if documents:
            load_ms, loaded = timed_ms(lambda: catalog.load(LineageGraph()))
        else:  # edges only: the graph's structure, as the load would build it
            def load_edges() -> LineageGraph:
                g = LineageGraph()
                with engine.connect() as conn:
                    g.g.add_edges_from(conn.execute(text(
                        "SELECT src, dst FROM lacuna_edges WHERE tenant = :t"), {"t": TENANT}))
                return g

            load_ms, loaded = timed_ms(load_edges)
        del graph
        for key in keys[:10]:  # warm the connection pool, the plan cache and the buffers
            catalog.lineage(key, depth=DEPTH)
            per_level(engine, key, DEPTH)
        ms: dict[str, list[float]] = {"cte": [], "per level": [], "memory": []}
        found: list[float] = []
        for i, key in enumerate(keys):
            runs = [("cte", lambda k=key: catalog.lineage(k, depth=DEPTH)),
                    ("per level", lambda k=key: per_level(engine, k, DEPTH)),
                    ("memory", lambda k=key: loaded.upstream(k, depth=DEPTH))]
            answers = {}
            for name, fn in runs if i % 2 == 0 else runs[::-1]:
                elapsed, answers[name] = timed_ms(fn)
                ms[name].append(elapsed)
            cte = {k for k, _ in answers["cte"]}
            if cte != {k for k, _ in answers["per level"]} or cte != set(answers["memory"]):
                raise RuntimeError(f"the three lineage answers differ for {key}")
            found.append(float(len(cte)))
        plan = explain(engine, keys[-1])
    return {
        "nodes": nodes, "queries": len(keys), "depth": DEPTH, "with_documents": documents,
        "setup_s": round(setup_s, 2), "load_ms": round(load_ms, 1),
        "ms": {name: stats(values) for name, values in ms.items()},
        "upstream_datasets": stats(found), "cte_plan": plan,
    }


def explain(engine: Engine, key: str) -> list[str]:
    """The recursive query's plan, to show which index it walks."""
    query = text(
        "EXPLAIN WITH RECURSIVE walk(key, hops) AS ("
        " SELECT e.src, 1 FROM lacuna_edges e WHERE e.tenant = :t AND e.dst = :k"
        " UNION SELECT e.src, w.hops + 1 FROM walk w JOIN lacuna_edges e"
        " ON e.tenant = :t AND e.dst = w.key WHERE w.hops < 10)"
        " SELECT key, MIN(hops) FROM walk WHERE key <> :k GROUP BY key")
    with engine.connect() as conn:
        return [line for (line,) in conn.execute(query, {"t": TENANT, "k": key})]


def rows_of(report: dict[str, Any]) -> list[Row]:
    n = f"{report['nodes'] // 1000}k nodes" if report["nodes"] >= 1000 else \
        f"{report['nodes']} nodes"
    ms, up = report["ms"], report["upstream_datasets"]
    checks = (Check("ours", "<", TARGET_MS),)
    note = f"upstream found p50 {up['p50']:.0f}, p99 {up['p99']:.0f}, max {up['max']:.0f} datasets"
    rows = [
        Row(f"lineage query, upstream 10 levels, {n}, PostgreSQL ({q})", "ms", ms["cte"][q],
            baseline=ms["per level"][q], baseline_label="one query per level",
            ratio_label="CTE / per level", checks=checks,
            note=note if q == "p99" else "recursive CTE over lacuna_edges")
        for q in ("p50", "p99")
    ]
    loaded = "datasets and edges" if report["with_documents"] else "edges"
    rows.append(Row(
        f"lineage query, upstream 10 levels, {n}, in-memory graph (p99)", "ms",
        ms["memory"]["p99"], baseline=ms["cte"]["p99"], baseline_label="recursive CTE",
        ratio_label="memory / CTE", checks=checks,
        note=f"graph loaded from PostgreSQL ({loaded}) in {report['load_ms'] / 1000:.1f} s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="edges only, 100 queries")
    parser.add_argument("--edges-only", action="store_true",
                        help="write and load the edges only (the datasets' documents cost "
                             "time and do not change the query)")
    parser.add_argument("--tiny", action="store_true", help="2,000 datasets, 20 queries")
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if reason := pg_reachable():
        raise SystemExit(f"PostgreSQL unreachable at {PG_URL}: {reason}")
    if args.tiny:
        nodes, queries, documents = 2_000, 20, True
    elif args.quick:
        nodes, queries, documents = 100_000, 100, False
    else:
        nodes, queries, documents = 100_000, 300, True
    documents = documents and not args.edges_only
    report = run(args.nodes or nodes, args.queries or queries, documents, args.seed)
    rows = rows_of(report)
    print_rows(rows, f"lineage queries: {report['nodes']:,} datasets, {report['queries']} "
                     f"queries, upstream {DEPTH} levels")
    print("plan:", " / ".join(line.strip() for line in report["cte_plan"][:8]))
    print(f"wrote {write_results('lineage_query', rows, report)}")


if __name__ == "__main__":
    main()
