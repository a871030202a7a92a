"""`make bench`: run every benchmark, print one table, write ``benchmarks/results/latest.json``.

Each benchmark is a script in this folder, run in a subprocess of its own (so one that
crashes, hangs or holds a gigabyte cannot take the others with it, and each RSS is its own).
A script writes ``<results>/<name>.json`` with a ``rows`` list in the format of
``common.Row``; for the scripts that predate that format an adapter here turns their JSON into
rows. A benchmark that cannot run — its script not written yet, PostgreSQL down, a crash, a
timeout — still shows its metrics, as ``not run: <reason>``.

Every timing in the table is a ratio against a baseline measured in the same script run: the
machines are noisy, and only same-minute ratios compare. The load average is recorded with the
results for the same reason.

    python benchmarks/run.py                  # everything, < 10 minutes on 2 cores
    python benchmarks/run.py --quick          # smaller runs, heavy ones skipped, < 1 minute
    python benchmarks/run.py --only gate,propagation
    python benchmarks/run.py --list           # what would run, with arguments
    python benchmarks/run.py --strict         # exit 1 when a target is missed
    python benchmarks/run.py --markdown benchmarks/results/latest.json   # as a Markdown table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HERE,
    RESULTS_ENV,
    ROOT,
    Check,
    Row,
    environment,
    fmt,
    fmt_ratio,
    pg_reachable,
    print_rows,
    results_dir,
)

Adapter = Callable[[Mapping[str, Any]], list[Row]]
Mode = str  # "full" | "quick" | "tiny"


@dataclass(frozen=True)
class Bench:
    """One benchmark script and how to run it in each mode (``None``: skipped there, with
    ``skip_reason``)."""

    name: str
    script: str
    metrics: tuple[str, ...]  # shown as "not run" rows when the script cannot run
    full: tuple[str, ...] | None = ()
    quick: tuple[str, ...] | None = ("--quick",)
    tiny: tuple[str, ...] | None = None
    needs_postgres: bool = False
    timeout_s: float = 240.0
    skip_reason: str = ""
    adapter: Adapter | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def args(self, mode: Mode) -> tuple[str, ...] | None:
        return {"full": self.full, "quick": self.quick, "tiny": self.tiny}[mode]


# -- adapters for scripts written before the shared row format ---------------------------------


def _get(data: Mapping[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def adapt_accuracy(data: Mapping[str, Any]) -> list[Row]:
    """classification_accuracy.py (issue 7): L2 batched cost vs raw encode, cascade latency."""
    rows = []
    l2 = _get(data, "latency_ms_per_column", "l2_batched")
    encode = _get(data, "latency_ms_per_column", "raw_encode_same_strings")
    if l2 is not None:
        rows.append(Row("L2 classify per column, batched", "ms", float(l2),
                        baseline=None if encode is None else float(encode),
                        baseline_label="raw SentenceTransformer.encode",
                        ratio_label="L2 / encode",
                        checks=(Check("ours", "<", 5.0), Check("ratio", "<=", 1.2))))
    share = _get(data, "cascade_under_1ms_share")
    if share is None:
        share = _get(data, "latency", "cascade_share_under_1ms")
    if share is not None:
        detail = _get(data, "cascade_under_1ms") or {}
        note = ""
        if "seen_before_share" in detail:
            note = (f"first sight, one column per call (p50 "
                    f"{float(detail['first_sight_p50_ms']):.3f} ms); seen before "
                    f"{100 * float(detail['seen_before_share']):.1f} %")
        rows.append(Row("cascade: share of evaluation columns < 1 ms (L1 + cache)", "%",
                        100 * float(share), checks=(Check("ours", ">=", 98.0),), note=note))
    else:
        cascade = _get(data, "latency_ms_per_column", "cascade")
        if cascade is not None:
            rows.append(Row.not_run(
                "cascade: share of evaluation columns < 1 ms (L1 + cache)",
                f"the script reports only the mean ({float(cascade):.2f} ms/column), "
                "not the share under 1 ms", unit="%", checks=(Check("ours", ">=", 98.0),)))
    f1 = _get(data, "scores", "cascade", "tag_micro", "f1")
    if f1 is not None:
        rows.append(Row("cascade tag F1 on the evaluation set", "", float(f1),
                        checks=(Check("ours", ">=", 0.95),)))
    tier = _get(data, "scores", "cascade", "tier_accuracy")
    if tier is not None:
        rows.append(Row("cascade tier accuracy on the evaluation set", "", float(tier),
                        checks=(Check("ours", ">=", 0.95),)))
    shares = _get(data, "layer_usage", "shares") or {}
    if "decided_by_l1" in shares:
        rows.append(Row("cascade: share decided by L1", "%", 100 * float(shares["decided_by_l1"]),
                        checks=(Check("ours", ">=", 85.0),)))
    if "asked_l3_or_would" in shares:
        rows.append(Row("cascade: share sent (or due) to L3", "%",
                        100 * float(shares["asked_l3_or_would"]),
                        checks=(Check("ours", "<=", 3.0),)))
    probe, torch_probe = _get(data, "model_probe"), _get(data, "model_probe_torch")
    if probe:
        rows.append(Row(f"L2 model first call in a fresh process ({probe['encoder']})", "s",
                        float(probe["first_call_total_s"]),
                        baseline=(float(torch_probe["first_call_total_s"])
                                  if torch_probe else None),
                        baseline_label="sentence-transformers (torch)",
                        ratio_label="ours / torch", checks=(Check("ours", "<", 3.0),)))
        rows.append(Row("L2 model memory (RSS added by import + load)", "MB",
                        float(probe["model_only_mb"]),
                        baseline=float(torch_probe["model_only_mb"]) if torch_probe else None,
                        baseline_label="sentence-transformers (torch)",
                        ratio_label="ours / torch", checks=(Check("ours", "<=", 300.0),),
                        note=f"whole process {probe['process_mb']:.0f} MB"))
    return rows


def adapt_airflow(data: Mapping[str, Any]) -> list[Row]:
    """bench_airflow.py (issue 6): time added per task by listener + gate."""
    hooks = _get(data, "hooks", "rows", "per task, total")
    added = _get(data, "dag_test", "added_per_task_ms")
    plain = _get(data, "dag_test", "without_lacuna", "p50_ms")
    tasks = _get(data, "dag_test", "tasks") or 1
    rows = []
    if hooks:
        rows.append(Row("Airflow: listener + gate per task (hooks, p95)", "ms",
                        float(hooks["p95_ms"]), checks=(Check("ours", "<", 5.0),),
                        note=f"p50 {hooks['p50_ms']:.2f} ms"))
    if added is not None:
        rows.append(Row("Airflow: added per task in dag.test()", "ms", float(added),
                        baseline=None if plain is None else float(plain) / tasks,
                        baseline_label="task without Lacuna", ratio_label="added / task",
                        checks=(Check("ours", "<", 5.0),)))
    return rows


def adapt_generic(name: str) -> Adapter:
    """A script whose JSON has no ``rows``: say so rather than guess at its fields."""

    def adapt(data: Mapping[str, Any]) -> list[Row]:
        return [Row.not_run(f"{name}: results", f"results/{name}.json has no 'rows' list "
                                                "(see benchmarks/common.py)")]

    return adapt


# -- the suite ------------------------------------------------------------------------------------

SLOW = "make bench runs it"

BENCHES: tuple[Bench, ...] = (
    Bench("classify", "bench_classify.py",
          ("L1 classify per column, first sight (p99)", "L1 classify throughput, first sight"),
          tiny=("--names", "1000", "--repeats", "1"), timeout_s=120),
    Bench("classification_accuracy", "classification_accuracy.py",
          ("L2 classify per column, batched",
           "cascade: share of evaluation columns < 1 ms (L1 + cache)"),
          full=("--repeats", "1", "--no-probe", "--errors", "0"), quick=None,
          skip_reason=f"loads the embedding model (torch); {SLOW}",
          timeout_s=300, adapter=adapt_accuracy, env={"HF_HUB_OFFLINE": "1"}),
    Bench("policy", "bench_policy.py",
          ("embedded policy evaluation, seed scenario", "embedded policy evaluation, mix"),
          timeout_s=180),
    Bench("gate", "bench_gate.py",
          ("gate decision in process, audit enqueued, SQLite (p99)",
           "gate decision in process, audit enqueued, PostgreSQL (p99)"),
          full=("--decisions", "800"), quick=("--quick", "--decisions", "150"),
          tiny=("--tiny",), timeout_s=300),
    Bench("audit", "bench_audit.py",
          ("audit append, PostgreSQL, chained and committed", "audit verify, PostgreSQL"),
          full=("--rows", "100000", "--repeats", "2"), needs_postgres=True, timeout_s=300),
    Bench("propagation", "bench_propagation.py",
          ("incremental propagation, reclassify, 100k nodes (p99)",),
          full=("--events", "200"), quick=("--nodes", "25000", "--events", "60", "--quick"),
          tiny=("--tiny",),
          timeout_s=300),
    Bench("lineage_query", "bench_lineage_query.py",
          ("lineage query, upstream 10 levels, 100k nodes, PostgreSQL (p99)",),
          full=("--edges-only",), quick=("--quick", "--nodes", "30000"),
          tiny=("--tiny",), needs_postgres=True,
          timeout_s=300),
    Bench("memory", "bench_memory.py",
          ("memory: governor RSS with 100k datasets loaded",
           "memory: server RSS with 100k datasets loaded"),
          quick=None, skip_reason=f"writes and loads 100k datasets; {SLOW}",
          tiny=("--tiny",), needs_postgres=True, timeout_s=420),
    Bench("server", "bench_server.py",
          ("ingest events/s, audit committed, 8 connections",
           "ingest latency p99, 8 connections",
           "ingest events/s, audit committed, 32 connections",
           "ingest latency p99, 32 connections"),
          full=("--seconds", "7"), quick=None, skip_reason=f"starts the service; {SLOW}",
          needs_postgres=True, timeout_s=300),
    Bench("scaling", "bench_scaling.py",
          ("scaling 1 -> 2 workers, ingest events/s at 8 connections",),
          full=("--seconds", "6"), quick=None,
          skip_reason=f"runs the service twice; {SLOW}", needs_postgres=True, timeout_s=400),
    Bench("dagster", "bench_dagster.py", ("Dagster: Lacuna time per materialization",),
          full=("--quick",), quick=None, skip_reason=f"runs Dagster materializations; {SLOW}",
          timeout_s=300),
    Bench("dbt", "bench_dbt.py", ("dbt: added wall time per build",),
          full=("--rounds", "1", "--models", "120"), quick=None,
          skip_reason=f"runs dbt builds; {SLOW}", timeout_s=300),
    Bench("airflow", "bench_airflow.py",
          ("Airflow: listener + gate per task (hooks, p95)",
           "Airflow: added per task in dag.test()"),
          full=("--runs", "100", "--dag-runs", "8"), quick=None,
          skip_reason=f"Airflow start-up and dag.test() runs; {SLOW}",
          timeout_s=300, adapter=adapt_airflow),
)


@dataclass
class Outcome:
    bench: Bench
    rows: list[Row]
    status: str  # "ok" | "not run"
    seconds: float = 0.0
    reason: str = ""
    log: str = ""


def not_run(bench: Bench, reason: str, seconds: float = 0.0, log: str = "") -> Outcome:
    rows = [Row.not_run(metric, reason, bench=bench.name) for metric in bench.metrics]
    return Outcome(bench, rows, "not run", seconds, reason, log)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def read_rows(bench: Bench, path: Path) -> list[Row]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data.get("rows"), list):
        return [Row.from_dict(r).with_bench(bench.name) for r in data["rows"]]
    if bench.adapter is None:
        raise ValueError(f"{path.name} has no 'rows' list")
    return [r.with_bench(bench.name) for r in bench.adapter(data)]


def run_bench(bench: Bench, mode: Mode, out: Path, logs: Path, postgres: str) -> Outcome:
    script = HERE / bench.script
    if not script.is_file():
        return not_run(bench, f"benchmarks/{bench.script} does not exist yet")
    args = bench.args(mode)
    if args is None:
        reason = bench.skip_reason if mode == "quick" else f"no --{mode} mode"
        return not_run(bench, f"skipped in --{mode}: {reason}" if mode == "quick" else reason)
    if bench.needs_postgres and postgres:
        return not_run(bench, f"PostgreSQL unreachable: {postgres}")
    log = logs / f"{bench.name}.log"
    env = {**os.environ, RESULTS_ENV: str(out), **bench.env}
    start_wall = time.time()
    start = time.perf_counter()
    try:
        with log.open("w", encoding="utf-8") as sink:
            done = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=env,
                                  stdout=sink, stderr=subprocess.STDOUT, timeout=bench.timeout_s,
                                  check=False)
    except subprocess.TimeoutExpired:
        return not_run(bench, f"timed out after {bench.timeout_s:.0f} s",
                       time.perf_counter() - start, str(log))
    seconds = time.perf_counter() - start
    text = log.read_text(encoding="utf-8", errors="replace")
    if done.returncode != 0:
        return not_run(bench, f"exit {done.returncode}: {_last_line(text)}", seconds, str(log))
    # Scripts written before LACUNA_BENCH_RESULTS existed write to benchmarks/results.
    candidates = [out / f"{bench.name}.json", HERE / "results" / f"{bench.name}.json"]
    fresh = [p for p in candidates if p.is_file() and p.stat().st_mtime >= start_wall - 1]
    if not fresh:
        return not_run(bench, f"wrote no results/{bench.name}.json", seconds, str(log))
    try:
        rows = read_rows(bench, fresh[0])
    except (ValueError, KeyError, TypeError) as err:
        return not_run(bench, f"unreadable results: {err}", seconds, str(log))
    if not rows:
        return not_run(bench, "its results hold no rows", seconds, str(log))
    return Outcome(bench, rows, "ok", seconds, "", str(log))


def summary(rows: Sequence[Row]) -> dict[str, int]:
    verdicts = [r.passed for r in rows]
    return {
        "rows": len(rows),
        "pass": sum(v is True for v in verdicts),
        "fail": sum(v is False for v in verdicts),
        "not_run": sum(r.status != "ok" for r in rows),
        "no_target": sum(r.passed is None and r.status == "ok" for r in rows),
    }


def markdown(latest: Mapping[str, Any]) -> str:
    """``latest.json`` as a Markdown table (for the README and reports)."""
    env = latest.get("environment", {})
    before = env.get("load_average_before") or [float("nan")]
    load = f"{float(before[0]):.1f}"
    title = (f"`{latest.get('mode')}` run of {latest.get('generated_at')}, "
             f"{latest.get('duration_s')} s, {env.get('cpus')} CPUs, load average {load}")
    lines = [title, "", "| metric | ours | baseline (same run) | ratio | target | result |",
             "|---|---|---|---|---|---|"]
    for data in latest.get("rows", []):
        r = Row.from_dict(data)
        if r.status != "ok":
            lines.append(f"| {r.metric} | - | - | - | {r.target or '-'} | not run: {r.reason} |")
            continue
        base = fmt(r.baseline, r.unit) if r.baseline is not None else "-"
        if r.baseline_label and r.baseline is not None:
            base += f" ({r.baseline_label})"
        ratio = fmt_ratio(r.ratio, r.ratio_label)
        verdict = {True: "pass", False: "**FAIL**", None: "-"}[r.passed]
        note = f" {r.note}" if r.note else ""
        lines.append(f"| {r.metric} | {fmt(r.ours, r.unit)} | {base} | {ratio} | "
                     f"{r.target or '-'} | {verdict}{note} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, < 1 minute")
    parser.add_argument("--tiny", action="store_true",
                        help="the harness's own test: tiny inputs, only benches with a tiny mode")
    parser.add_argument("--only", default="", help="comma-separated bench names")
    parser.add_argument("--list", action="store_true", help="print the suite and exit")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default ${RESULTS_ENV} or benchmarks/results)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--markdown", type=Path, metavar="LATEST_JSON",
                        help="print a results file as a Markdown table and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text(encoding="utf-8"))))
        return 0
    mode: Mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = wanted - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"unknown bench(es) {', '.join(sorted(unknown))}; "
                     f"known: {', '.join(b.name for b in BENCHES)}")
    benches = [b for b in BENCHES if not wanted or b.name in wanted]
    if args.list:
        for b in benches:
            bench_args = b.args(mode)
            how = "skipped" if bench_args is None else " ".join([b.script, *bench_args])
            print(f"{b.name:24} {how}")
        return 0

    out = args.out or results_dir()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    postgres = pg_reachable() if any(b.needs_postgres for b in benches) else ""
    began = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = list(os.getloadavg())
    outcomes: list[Outcome] = []
    for i, bench in enumerate(benches, 1):
        print(f"[{i}/{len(benches)}] {bench.name} ...", end=" ", flush=True)
        outcome = run_bench(bench, mode, out, logs, postgres)
        outcomes.append(outcome)
        verdict = "ok" if outcome.status == "ok" else f"not run: {outcome.reason}"
        print(f"{verdict} ({outcome.seconds:.1f} s)", flush=True)
    duration = time.perf_counter() - began

    rows = [row for o in outcomes for row in o.rows]
    print()
    print_rows(rows, f"lacuna-orchestration benchmarks ({mode}), {duration:.0f} s, "
                     f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} "
                     f"on {os.cpu_count()} CPUs")
    counts = summary(rows)
    print(f"\n{counts['pass']} pass, {counts['fail']} fail, {counts['not_run']} not run, "
          f"{counts['no_target']} without a target")
    latest = {
        "generated_at": started_at,
        "mode": mode,
        "duration_s": round(duration, 1),
        "environment": {**environment(), "load_average_before": load_before},
        "summary": counts,
        "benches": [
            {"name": o.bench.name, "script": o.bench.script, "status": o.status,
             "seconds": round(o.seconds, 1), "reason": o.reason,
             "log": os.path.relpath(o.log, ROOT) if o.log else ""}
            for o in outcomes
        ],
        "rows": [r.to_dict() for r in rows],
    }
    path = out / "latest.json"
    path.write_text(json.dumps(latest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 1 if args.strict and counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
