"""Incremental propagation after one event, on a 100,000-node synthetic warehouse graph,
against recomputing the whole graph — and against the previous incremental algorithm.

Target (issue 11): < 50 ms per event and >= 100x faster than full recomputation.

The graph is ``synthetic.build_graph`` (layers, heavy-tailed fan-out, fan-in 1-20, joins,
aggregates, anonymizations; columns classified by the real L1 cascade). Events, each applied
the way ``Governor._apply`` applies an OpenLineage event, then ``graph.propagate(touched)``:

* ``reclassify``  a schema change adds a sensitive column (PII / FINANCIAL / PHI ...) to a
  random dataset: its own classification rises and the wave runs downstream until results
  stop changing — the expensive kind, and the headline;
* ``new dataset`` a new job writes a new dataset from 1-3 existing ones;
* ``new input``   an existing job gains an input from an earlier layer (a new edge);
* ``re-run``      a job runs again with the same schema: nothing changes.

Baselines, same process, same graph: ``full`` = ``graph.recompute_all()`` (every node in
topological order: what a system without incremental propagation does after each event);
``descendants`` = the previous ``propagate`` (``nx.descendants`` of every changed node,
``subgraph``, acyclicity test, topological sort of the whole affected set), timed on the same
reclassification events from the same state and on the same re-runs.

    python benchmarks/bench_propagation.py            # 100k nodes, 300 events per kind
    python benchmarks/bench_propagation.py --quick    # 100k nodes, 60 events, no A/B
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import networkx as nx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Check, Row, print_rows, stats, write_results
from synthetic import NAMESPACE, build_graph

from lacuna_orchestration.lineage.graph import MAX_CYCLE_ROUNDS, LineageGraph
from lacuna_orchestration.model import (
    Classification,
    DatasetRef,
    Layer,
    OperationKind,
    Tier,
)

TARGET_MS = 50.0
TARGET_SPEEDUP = 100.0
ADDED = [
    Classification(Tier.PROPRIETARY, frozenset({"PII", "EMAIL", "CONTACT"}), 0.95,
                   Layer.HEURISTIC),
    Classification(Tier.INTERNAL, frozenset({"FINANCIAL"}), 0.9, Layer.HEURISTIC),
    Classification(Tier.PROPRIETARY, frozenset({"PHI", "HEALTH"}), 0.95, Layer.HEURISTIC),
    Classification(Tier.PROPRIETARY, frozenset({"PII", "NATIONAL_ID"}), 0.97, Layer.HEURISTIC),
    Classification(Tier.PROPRIETARY, frozenset({"CREDENTIALS"}), 0.99, Layer.HEURISTIC),
]


def propagate_by_descendants(graph: LineageGraph, changed: Iterable[str]) -> list[str]:
    """The previous ``LineageGraph.propagate``, kept here as the A/B baseline: it finds every
    descendant of the changed nodes and sorts that whole subgraph before recomputing, even when
    the wave stops after one node."""
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
    updated: dict[str, None] = {}
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
                    updated[k] = None
                    dirty.update(graph.g.successors(k))
            if not moved:
                break
    return list(updated)


class Events:
    """Seeded events over one graph; each returns the keys ``propagate`` must start from."""

    def __init__(self, graph: LineageGraph, seed: int) -> None:
        self.graph = graph
        self.rng = random.Random(seed)
        self.keys = list(graph.g.nodes)
        levels, _ = graph._order.current(graph.g)
        self.levels = levels
        self.by_level: dict[int, list[str]] = {}
        for k, lv in levels.items():
            self.by_level.setdefault(lv, []).append(k)
        self.created = 0

    def reclassify(self) -> tuple[str, Classification | None, Classification]:
        """Raise a random dataset's own classification; return it, before and after."""
        key = self.rng.choice(self.keys)
        before = self.graph.node(key).own
        added = self.rng.choice(ADDED)
        return key, before, added if before is None else before.merge(added)

    def new_dataset(self) -> str:
        self.created += 1
        ref = DatasetRef(NAMESPACE, f"new.output_{self.created}")
        node = self.graph.ensure(ref)
        node.own = self.rng.choice(ADDED) if self.rng.random() < 0.3 else None
        op = self.rng.choice([OperationKind.JOIN, OperationKind.TRANSFORM,
                              OperationKind.AGGREGATE])
        for _ in range(self.rng.randint(1, 3)):
            src = self.rng.choice(self.keys)
            self.graph.add_edge(self.graph.node(src).ref, ref, op, f"job.new_{self.created}")
        return ref.key

    def new_input(self) -> str:
        while True:
            dst = self.rng.choice(self.keys)
            level = self.levels.get(dst, 0)
            if level > 0:
                break
        src = self.rng.choice(self.by_level[self.rng.randrange(level)])
        parents = self.graph.g.pred[dst]
        op = next(iter(parents.values()))["operation"] if parents else OperationKind.TRANSFORM
        self.graph.add_edge(self.graph.node(src).ref, self.graph.node(dst).ref, op, "job.extra")
        return dst

    def rerun(self) -> str:
        return self.rng.choice(self.keys)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(nodes: int, events: int, full_repeats: int, ab: bool, seed: int) -> dict[str, Any]:
    build_s, graph = timed(lambda: build_graph(nodes, seed=seed))
    order_s, _ = timed(graph.prepare)
    gc.collect()
    gc.freeze()  # 100k nodes are long-lived: keep the collector from rescanning them per event
    full = []
    for _ in range(full_repeats):
        seconds, changed = timed(graph.recompute_all)
        assert not changed, "a settled graph must not change on recomputation"
        full.append(seconds)
    full_ms = statistics.median(full) * 1e3

    ev = Events(graph, seed + 1)
    ms: dict[str, list[float]] = {"reclassify": [], "new dataset": [], "new input": [],
                                  "re-run": []}
    waves: list[int] = []
    previous: list[float] = []
    previous_rerun: list[float] = []
    for _ in range(events):
        key, before, after = ev.reclassify()
        node = graph.node(key)
        node.own = after
        seconds, updated = timed(lambda k=key: graph.propagate([k]))
        ms["reclassify"].append(seconds * 1e3)
        waves.append(len(updated))
        if ab:  # the same event from the same state, through the previous algorithm
            node.own = before
            graph.propagate([key])
            node.own = after
            s_prev, up_prev = timed(lambda k=key: propagate_by_descendants(graph, [k]))
            assert set(up_prev) == set(updated), "both algorithms must change the same nodes"
            previous.append(s_prev * 1e3)
        seconds, _ = timed(lambda: graph.propagate([ev.new_dataset()]))
        ms["new dataset"].append(seconds * 1e3)
        seconds, _ = timed(lambda: graph.propagate([ev.new_input()]))
        ms["new input"].append(seconds * 1e3)
        key = ev.rerun()
        seconds, _ = timed(lambda k=key: graph.propagate([k]))
        ms["re-run"].append(seconds * 1e3)
        if ab:
            s_prev, up_prev = timed(lambda k=key: propagate_by_descendants(graph, [k]))
            assert not up_prev, "a re-run changes nothing"
            previous_rerun.append(s_prev * 1e3)
    gc.unfreeze()
    return {
        "nodes": len(graph),
        "edges": graph.g.number_of_edges(),
        "depth": max(ev.levels.values()) if ev.levels else 0,
        "build_s": round(build_s, 2),
        "order_build_ms": round(order_s * 1e3, 1),
        "full_recompute_ms_runs": [round(s * 1e3, 1) for s in full],
        "full_recompute_ms": full_ms,
        "events_per_kind": events,
        "ms": {kind: stats(values) for kind, values in ms.items()},
        "wave": stats([float(w) for w in waves]),
        "ab": {"previous_ms": stats(previous), "ours_ms": stats(ms["reclassify"]),
               "previous_rerun_ms": stats(previous_rerun), "ours_rerun_ms": stats(ms["re-run"])}
        if ab else None,
    }


def rows_of(report: dict[str, Any]) -> list[Row]:
    n = f"{report['nodes'] // 1000}k nodes"
    full = report["full_recompute_ms"]
    checks = (Check("ours", "<", TARGET_MS), Check("ratio", ">=", TARGET_SPEEDUP))
    wave = report["wave"]
    rows = []
    for kind, q in (("reclassify", "p50"), ("reclassify", "p99"), ("new dataset", "p99"),
                    ("new input", "p99"), ("re-run", "p99")):
        ours = report["ms"][kind][q]
        note = ""
        if kind == "reclassify":
            note = f"wave {wave[q]:.0f} datasets changed at {q} (max {wave['max']:.0f})"
        rows.append(Row(
            f"incremental propagation, {kind}, {n} ({q})", "ms", ours, baseline=full,
            baseline_label="full recomputation", ratio=full / max(ours, 1e-6),
            ratio_label="full / incremental", checks=checks, note=note,
        ))
    ab = report.get("ab")
    if ab:
        for kind, ours_key, prev_key in (("reclassify", "ours_ms", "previous_ms"),
                                         ("re-run", "ours_rerun_ms", "previous_rerun_ms")):
            for q in ("p50", "p99"):
                ours, prev = ab[ours_key][q], ab[prev_key][q]
                rows.append(Row(
                    f"propagation vs previous algorithm, {kind} ({q})", "ms", ours,
                    baseline=prev, baseline_label="descendants + subgraph sort",
                    ratio=prev / max(ours, 1e-6), ratio_label="previous / ours",
                ))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer events, no A/B")
    parser.add_argument("--tiny", action="store_true", help="2,000 nodes: the harness's test")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if args.tiny:
        nodes, events, repeats, ab = 2_000, 10, 1, True
    elif args.quick:
        nodes, events, repeats, ab = 100_000, 60, 1, False
    else:
        nodes, events, repeats, ab = 100_000, 300, 3, True
    report = run(args.nodes or nodes, args.events or events, repeats, ab, args.seed)
    rows = rows_of(report)
    print_rows(rows, f"lineage propagation: {report['nodes']:,} datasets, "
                     f"{report['edges']:,} edges, depth {report['depth']}; "
                     f"{report['events_per_kind']} events per kind")
    print(f"full recomputation {report['full_recompute_ms']:.0f} ms; propagation order built in "
          f"{report['order_build_ms']:.0f} ms; graph built in {report['build_s']:.1f} s")
    print(f"wrote {write_results('propagation', rows, report)}")


if __name__ == "__main__":
    main()
