"""Scaling of the ingestor from one worker process to two: the same load, back to back.

``bench_server.py`` (the service's own benchmark) is run twice in a row with identical short
settings — 8 keep-alive connections posting OpenLineage events, audit committed before each
201 — once with ``--workers 1`` and once with ``--workers 2``, each into a results folder of
its own; the ratio of the two throughputs is the 1 → 2 worker scaling on this machine.

Read it with the machine in mind: on 2 CPUs the workers share them with PostgreSQL and the load
generator, so the ratio says how much of a second core the service can use, not what a second
machine would give (see docs/scaling.md for the multi-replica design).

    python benchmarks/bench_scaling.py               # 10 s measured per worker count
    python benchmarks/bench_scaling.py --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, RESULTS_ENV, ROOT, Row, print_rows, write_results

SERVER_BENCH = HERE / "bench_server.py"
CONNECTIONS = 8


def run_server(workers: int, seconds: float, folder: Path) -> dict[str, Any]:
    """One ``bench_server.py`` run; its JSON (rows and phases)."""
    env = {**os.environ, RESULTS_ENV: str(folder)}
    done = subprocess.run(
        [sys.executable, str(SERVER_BENCH), "--workers", str(workers), "--concurrency",
         str(CONNECTIONS), "--seconds", str(seconds), "--warmup", "2", "--baseline-seconds", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        raise SystemExit(f"bench_server.py --workers {workers} failed: "
                         f"{tail[-1] if tail else done.returncode}")
    return dict(json.loads((folder / "server.json").read_text(encoding="utf-8")))


def throughput(result: dict[str, Any]) -> tuple[float, float]:
    phase = max(result["phases"], key=lambda p: p["concurrency"])
    return float(phase["events_per_s"]), float(phase["latency_ms"].get("p99", 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="4 s per worker count")
    args = parser.parse_args()
    if not SERVER_BENCH.is_file():
        raise SystemExit("benchmarks/bench_server.py does not exist: nothing to scale")
    seconds = 4.0 if args.quick else args.seconds
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lacuna-scaling-") as tmp:
        for workers in (1, 2):
            folder = Path(tmp) / f"workers-{workers}"
            folder.mkdir()
            results[workers] = run_server(workers, seconds, folder)
    one, one_p99 = throughput(results[1])
    two, two_p99 = throughput(results[2])
    rows = [Row(
        f"scaling 1 -> 2 workers, ingest events/s at {CONNECTIONS} connections", "/s", two,
        baseline=one, baseline_label="1 worker, same load, same minute",
        ratio_label="2 workers / 1 worker",
        note=f"p99 {two_p99:.0f} ms vs {one_p99:.0f} ms; {os.cpu_count()} CPUs shared with "
             "PostgreSQL and the load generator",
    )]
    print_rows(rows, f"ingestor scaling, {seconds:.0f} s per worker count")
    payload = {"seconds": seconds, "connections": CONNECTIONS,
               "events_per_s": {"1": one, "2": two}, "p99_ms": {"1": one_p99, "2": two_p99},
               "runs": {str(k): {"phases": v["phases"], "environment": v.get("environment")}
                        for k, v in results.items()}}
    print(f"wrote {write_results('scaling', rows, payload)}")


if __name__ == "__main__":
    main()
