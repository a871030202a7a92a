"""The gate decision end to end, in process, on a warm governor: classify (cached) →
propagate → policy → audit — with the audit record enqueued for group commit, next to the same
path with the record committed synchronously, and next to ``Governor.check`` as it is today.

Target (issue 11): p99 < 5 ms for "classify cached + propagate + policy + audit enqueue".

The governor is warmed with the example pipeline (``example_project/openlineage``: CRM
contacts → customers, sales → join → aggregate → export). Each gate question alternates between
the seed's denied export (PII to ``/tmp``, every export policy answers) and an allowed
transform. Paths, interleaved round by round so they share the machine's noise:

* ``enqueue``  what an orchestrator's gate needs before it can let a task go on: the output's
  columns through the classifier cascade (cache hits, as for any column seen before), the
  output re-propagated (nothing changes: a wave of one), the policy decision over the input
  document (``Governor._decide``: classification of the sources, upstream lineage, Rego,
  exception lookup when denied), then the audit record handed to ``AuditBatcher.submit`` —
  durable within the batcher's group commit (≤ 5 ms later), not before the call returns;
* ``sync``     the same, with ``AuditStore.append_many([record])`` committed before returning;
* ``check``    ``Governor.check(op)`` as shipped: decision, a ``lacuna_decisions`` row and the
  audit record, two committed transactions;
* ``ingest``   ``Governor.ingest`` of one START event (new run id each time, so the decision
  is made, not served from the run cache): parse, catalog write-through, classify, propagate,
  decide, audit — all committed.

Both stores: SQLite (a WAL file, ``synchronous=FULL``: the development default) and
PostgreSQL (the production store). With ``--graph-nodes`` (default 100,000 in the full run) the
``enqueue`` path is timed once more with the governor's graph replaced by the synthetic
warehouse graph, gating a deep mart: what a large catalog does to the decision.

    python benchmarks/bench_gate.py            # 2,000 decisions per path and store, 100k graph
    python benchmarks/bench_gate.py --quick    # 300 decisions, SQLite and PostgreSQL, no 100k
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PG_URL, ROOT, Check, Row, pg_reachable, print_rows, stats, write_results

from lacuna_orchestration.audit.batcher import AuditBatcher
from lacuna_orchestration.classify.pipeline import ColumnContext
from lacuna_orchestration.governor import UPSTREAM_DEPTH, UPSTREAM_LIMIT, Governor
from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.lineage.openlineage import parse_events
from lacuna_orchestration.model import DatasetRef, Decision, Operation, OperationKind

TARGET_P99_MS = 5.0
PIPELINE = ROOT / "example_project" / "openlineage" / "pipeline.ndjson"
POLICIES = ROOT / "policies"


@contextmanager
def open_governor(store: str) -> Iterator[Governor]:
    """A governor on a fresh SQLite file or a fresh PostgreSQL schema (dropped afterwards)."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="lacuna-bench-gate-") as folder:
            gov = Governor.open(database_url=f"sqlite:///{folder}/lacuna.db",
                                policy_dir=str(POLICIES), environment="production")
            try:
                yield gov
            finally:
                gov.close()
        return
    from sqlalchemy import text

    schema = f"bench_gate_{uuid.uuid4().hex[:10]}"
    gov = Governor.open(database_url=PG_URL, database_schema=schema, policy_dir=str(POLICIES),
                        environment="production")
    try:
        yield gov
    finally:
        with gov.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        gov.close()


@dataclass
class GatePaths:
    """The timed callables over one warm governor (index ``i`` picks the question)."""

    gov: Governor
    batcher: AuditBatcher
    ops: list[Operation]
    contexts: list[list[ColumnContext]]
    events: Callable[[int], dict[str, Any]]

    def _decide(self, i: int) -> tuple[Operation, Decision]:
        gov, op = self.gov, self.ops[i % len(self.ops)]
        assert op.destination is not None
        gov.classifier.classify_dataset(op.destination, self.contexts[i % len(self.contexts)])
        if op.destination.key in gov.graph:
            gov.graph.propagate([op.destination.key])
        return op, gov._decide(op)

    def enqueue(self, i: int) -> Decision:
        op, decision = self._decide(i)
        self.batcher.submit(self.gov._decision_record(
            decision, op.user, "bench", op.run_id, "gate.check"))
        return decision

    def sync(self, i: int) -> Decision:
        op, decision = self._decide(i)
        self.gov.audit.append_many([self.gov._decision_record(
            decision, op.user, "bench", op.run_id, "gate.check")])
        return decision

    def check(self, i: int) -> Decision:
        return self.gov.check(self.ops[i % len(self.ops)], via="bench")

    def ingest(self, i: int) -> Any:
        return self.gov.ingest(self.events(i), via="bench")


def warm(gov: Governor) -> tuple[list[Operation], list[list[ColumnContext]],
                                 Callable[[int], dict[str, Any]]]:
    for event in parse_events(PIPELINE.read_bytes()):
        gov.ingest(event, via="bench")
    analysis = gov.graph.node(gov.graph.resolve("analysis.csv")).ref
    export = DatasetRef("file", "/tmp/export.csv")
    mart = DatasetRef("postgres://warehouse.internal:5432", "mart.regional_revenue")
    ops = [
        Operation(OperationKind.EXPORT, (analysis,), export, user="analyst@example.com",
                  purpose="analytics", code="analytics.export_analysis"),
        Operation(OperationKind.TRANSFORM, (analysis,), mart, user="analyst@example.com",
                  purpose="analytics", code="analytics.regional_revenue"),
    ]
    columns = [("email", "varchar"), ("region", "varchar"), ("amount", "numeric"),
               ("customer_id", "bigint"), ("order_date", "date")]
    contexts = [[ColumnContext(name, data_type=t, dataset_key=op.destination.key,
                               dataset_name=op.destination.name) for name, t in columns]
                for op in ops if op.destination is not None]
    inputs = [DatasetSpec(analysis)]

    def event(i: int) -> dict[str, Any]:
        out = DatasetSpec(mart, columns=columns)
        return build_run_event(job=("acme", "analytics.regional_revenue"), event_type="START",
                               inputs=inputs, outputs=[out], operation="aggregate",
                               run_id=str(uuid.UUID(int=random.getrandbits(128), version=4)),
                               user="analyst@example.com", purpose="analytics")

    return ops, contexts, event


def measure(paths: GatePaths, names: list[str], n: int, rounds: int,
            ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Milliseconds per call of each named path, ``rounds`` interleaved rounds of ``n / rounds``:
    wall clock, and on-CPU time of the calling thread (what is left when other processes on a
    busy machine preempt the call; I/O waits are excluded too)."""
    out: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    fns = {name: getattr(paths, name) for name in names}
    per_round = max(1, n // rounds)
    clock, cpu_clock = time.perf_counter, time.thread_time
    for name in names:  # warm every path (caches, prepared statements, JIT-free but lazy imports)
        for i in range(20):
            fns[name](i)
    paths.batcher.flush()
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            fn, sink, cpu_sink = fns[name], out[name], cpu[name]
            gc.collect()
            for i in range(per_round):
                cpu_start = cpu_clock()
                start = clock()
                fn(i)
                sink.append((clock() - start) * 1e3)
                cpu_sink.append((cpu_clock() - cpu_start) * 1e3)
            paths.batcher.flush()  # the next path starts without this one's commits pending
    return out, cpu


def bench_store(store: str, n: int, rounds: int) -> dict[str, Any]:
    with open_governor(store) as gov:
        ops, contexts, event = warm(gov)
        batcher = AuditBatcher(gov.audit, max_batch=1000, max_delay_s=0.005)
        try:
            paths = GatePaths(gov, batcher, ops, contexts, event)
            expected = [paths.enqueue(i).allow for i in range(len(ops))]
            if expected != [False, True]:
                raise RuntimeError(f"expected the export denied and the transform allowed, "
                                   f"got {expected}")
            samples, cpu = measure(paths, ["enqueue", "sync", "check", "ingest"], n, rounds)
            batcher.flush()
        finally:
            batcher.close()
        report = gov.verify_audit()
        if not report.ok:
            raise RuntimeError(f"audit chain broken after the benchmark: {report.message}")
        return {"ms": {name: stats(values) for name, values in samples.items()},
                "cpu_ms": {name: stats(values) for name, values in cpu.items()},
                "audit_records": report.count, "datasets": len(gov.graph)}


def bench_large_graph(nodes: int, n: int) -> dict[str, Any]:
    """The enqueue path with the governor's graph replaced by the synthetic warehouse graph."""
    from synthetic import NAMESPACE, build_graph

    graph = build_graph(nodes)
    levels, _ = graph._order.current(graph.g)
    deepest = max(levels.values())
    rng = random.Random(5)
    marts = [k for k, lv in levels.items() if lv >= deepest - 2]
    with open_governor("sqlite") as gov:
        gov.graph = graph
        ops = [Operation(OperationKind.EXPORT, (graph.node(k).ref,),
                         DatasetRef("file", f"/tmp/export_{i}.csv"), user="analyst@example.com",
                         purpose="analytics", code="export")
               for i, k in enumerate(rng.sample(marts, 50))]
        ops += [Operation(OperationKind.TRANSFORM, (graph.node(k).ref,),
                          DatasetRef(NAMESPACE, f"mart.new_{i}"), user="analyst@example.com",
                          purpose="analytics", code="transform")
                for i, k in enumerate(rng.sample(marts, 50))]
        contexts = [[ColumnContext("email", dataset_key=op.destination.key)] for op in ops
                    if op.destination is not None]
        batcher = AuditBatcher(gov.audit, max_batch=1000, max_delay_s=0.005)
        try:
            paths = GatePaths(gov, batcher, ops, contexts, lambda i: {})
            upstream = [len(graph.upstream(op.sources[0].key)) for op in ops]
            kept = [len(graph.upstream(op.sources[0].key, UPSTREAM_DEPTH, UPSTREAM_LIMIT))
                    for op in ops]
            samples, cpu = measure(paths, ["enqueue"], n, 2)
            batcher.flush()
        finally:
            batcher.close()
    return {"ms": stats(samples["enqueue"]), "cpu_ms": stats(cpu["enqueue"]), "nodes": len(graph),
            "upstream_datasets": stats([float(u) for u in upstream]),
            "upstream_kept": stats([float(u) for u in kept])}


def rows_of(report: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    p99 = (Check("ours", "<", TARGET_P99_MS),)
    for store, result in report["stores"].items():
        label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[store]
        if "error" in result:
            reason = result["error"]
            rows.append(Row.not_run(f"gate decision in process, audit enqueued, {label} (p99)",
                                    reason, unit="ms", checks=p99))
            continue
        ms, cpu = result["ms"], result["cpu_ms"]
        rows.append(Row(
            f"gate decision in process, audit enqueued, {label} (p99)", "ms",
            ms["enqueue"]["p99"], baseline=ms["sync"]["p99"],
            baseline_label="same path, audit committed", ratio_label="ours / baseline",
            checks=p99, note=f"p50 {ms['enqueue']['p50']:.2f} ms, "
                             f"on-CPU p99 {cpu['enqueue']['p99']:.2f} ms",
        ))
        rows.append(Row(
            f"Governor.check as shipped (sync audit + decision row), {label} (p99)", "ms",
            ms["check"]["p99"], baseline=ms["enqueue"]["p99"],
            baseline_label="audit enqueued", ratio_label="check / enqueued", checks=p99,
            note=f"p50 {ms['check']['p50']:.2f} ms, on-CPU p99 {cpu['check']['p99']:.2f} ms",
        ))
        rows.append(Row(
            f"ingest one START event, warm governor, {label} (p99)", "ms", ms["ingest"]["p99"],
            baseline=ms["check"]["p99"], baseline_label="Governor.check",
            ratio_label="ingest / check", note=f"p50 {ms['ingest']['p50']:.2f} ms",
        ))
    large = report.get("large_graph")
    if large:
        small = report["stores"].get("sqlite") or {}
        base = small.get("ms", {}).get("enqueue", {}).get("p99")
        rows.append(Row(
            f"gate decision, audit enqueued, {large['nodes'] // 1000}k-dataset graph (p99)",
            "ms", large["ms"]["p99"], baseline=base, baseline_label="example pipeline graph",
            ratio_label="large / small", checks=p99,
            note=f"p50 {large['ms']['p50']:.2f} ms, on-CPU p99 {large['cpu_ms']['p99']:.2f} ms; "
                 f"ancestry p50 {large['upstream_datasets']['p50']:.0f} datasets, "
                 f"{large.get('upstream_kept', {}).get('p50', 0):.0f} walked into the policy "
                 "input",
        ))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="SQLite only, 40 decisions")
    parser.add_argument("--decisions", type=int, default=None)
    parser.add_argument("--graph-nodes", type=int, default=None)
    args = parser.parse_args()
    if args.tiny:
        n, rounds, stores, nodes = 40, 2, ["sqlite"], 0
    elif args.quick:
        n, rounds, stores, nodes = 300, 3, ["sqlite", "postgres"], 0
    else:
        n, rounds, stores, nodes = 2000, 5, ["sqlite", "postgres"], 100_000
    n = args.decisions or n
    nodes = nodes if args.graph_nodes is None else args.graph_nodes
    report: dict[str, Any] = {"decisions_per_path": n, "rounds": rounds, "stores": {}}
    for store in stores:
        if store == "postgres" and (reason := pg_reachable()):
            report["stores"][store] = {"error": f"PostgreSQL unreachable: {reason}"}
            continue
        report["stores"][store] = bench_store(store, n, rounds)
    if nodes:
        report["large_graph"] = bench_large_graph(nodes, min(n, 1000))
    rows = rows_of(report)
    print_rows(rows, f"gate decision end to end, in process: {n:,} decisions per path and store")
    print(f"wrote {write_results('gate', rows, report)}")


if __name__ == "__main__":
    main()
