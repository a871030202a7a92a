"""Benchmark the time Lacuna adds to a Dagster materialization: gate + lineage + blocking check,
in process, over the example's assets.

Target (issue 4): < 5 ms p99 added per materialization, in process.

The pipeline: the example's four table assets (customers, sales → customer_sales →
regional_summary; written by the IO manager, so gated there by ``governed_resources``) plus
one ``@governed`` report asset that writes a file itself (destination declared under the
governed workspace, so every asset takes the allowed path). Two measurements, same invocation,
runs interleaved:

* ``hooks``  every Lacuna entry point timed inside real ``dagster.materialize`` runs: the gate
  (``gate_spec``: one policy decision, audited), START and COMPLETE (two ingests, each committed
  to the audit chain), and the blocking check's body (``evaluate_output``). Summed per asset per
  run: the time Lacuna itself adds to one materialization.
* ``runs``   whole ``materialize`` calls with Lacuna (gated IO manager, one check step per asset)
  and without (plain ``FilesystemIOManager``, no checks). Added per materialization = paired
  difference of interleaved runs / 5. This includes Dagster's own cost of running five more
  (check) steps, which is framework time, not Lacuna's; noisy at this scale.

The governor is attached once (``LacunaResource.from_governor``), as in a long-lived process;
what opening it costs per run (``LacunaResource(database_url=...)`` opens it lazily each run)
is reported on its own row.

Both measurements run twice: with Lacuna's SQLite store on disk and on a memory file system
(``/dev/shm``: fsync costs nothing, so what remains is the integration's and the core's CPU
time). The in-process integrations commit a step's COMPLETE without waiting for the disk (the
committer fsyncs it within 50 ms, see docs/scaling.md §3), so the two should agree; a gap is
the disk's.

Run: ``.venv/bin/python benchmarks/bench_dagster.py [--runs 60] [--quick]``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dagster as dg
from common import Check, Row, print_rows, stats, write_results

from lacuna_orchestration.governor import Governor
from lacuna_orchestration.integrations.dagster import (
    LacunaResource,
    build_lacuna_checks,
    detach_governor,
    governed,
    governed_resources,
)
from lacuna_orchestration.integrations.dagster import checks as checks_module
from lacuna_orchestration.integrations.dagster import definitions as defs_module
from lacuna_orchestration.integrations.dagster import gate as gate_module
from lacuna_orchestration.integrations.dagster.backend import Backend

TARGET_MS = 5.0
ASSETS = 5
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
GOVERNED_REPORT = "file:///governed/workspace/regional_report.csv"


def _example_assets() -> Callable[..., list[dg.AssetsDefinition]]:
    """The example's ``build_assets`` (loaded by path, under the name run_demo uses)."""
    spec = importlib.util.spec_from_file_location(
        "lacuna_dagster_example_definitions", ROOT / "example_project" / "dagster" / "definitions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.build_assets  # type: ignore[no-any-return]


build_assets = _example_assets()


def report_asset(path: Path, *, govern: bool) -> dg.AssetsDefinition:
    def write(regional_summary: list[dict[str, Any]]) -> dg.MaterializeResult:
        with path.open("w", encoding="utf-8") as handle:
            for row in regional_summary:
                handle.write(f"{row['region']},{row['revenue']}\n")
        return dg.MaterializeResult(metadata={"rows": len(regional_summary)})

    body = governed(write) if govern else write
    return dg.asset(name="regional_report", metadata={"lacuna/destination": GOVERNED_REPORT})(
        body
    )


class HookTimer:
    """Wraps the integration's entry points; sums seconds per (phase, asset) for one run."""

    PHASES: ClassVar[dict[str, list[tuple[Any, str]]]] = {
        "gate": [(gate_module, "gate_spec"), (defs_module, "gate_spec")],
        "lineage": [(gate_module, "start"), (gate_module, "complete"),
                    (defs_module, "start"), (defs_module, "complete")],
        "check": [(checks_module, "evaluate_output")],
    }

    CORE_CALLS: ClassVar[tuple[str, ...]] = ("ingest", "check", "classification",
                                             "column_classifications", "classify_columns")

    def __init__(self) -> None:
        self.current: dict[tuple[str, str], float] = defaultdict(float)
        self._saved: list[tuple[Any, str, Any]] = []
        self._asset: list[str] = []  # the asset whose hook is running (hooks nest)

    def install(self) -> None:
        for phase, targets in self.PHASES.items():
            for module, name in targets:
                original = getattr(module, name)
                self._saved.append((module, name, original))
                setattr(module, name, self._wrap(phase, original))
        for name in self.CORE_CALLS:  # the governor's share, inside the hooks above
            original = getattr(Backend, name)
            self._saved.append((Backend, name, original))
            setattr(Backend, name, self._wrap_core(original))

    def _wrap_core(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self._asset:
                    self.current[("core", self._asset[-1])] += time.perf_counter() - start

        return timed

    def uninstall(self) -> None:
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)
        self._saved.clear()

    def _wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            target = args[1]
            key = target.key.to_user_string() if hasattr(target, "key") else target.op.asset_key
            nested = bool(self._asset)
            self._asset.append(key)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self._asset.pop()
                if not nested:  # gate_spec inside a wrapped caller is counted once
                    self.current[(phase, key)] += elapsed

        return timed

    def take(self) -> dict[tuple[str, str], float]:
        out, self.current = dict(self.current), defaultdict(float)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="runs per mode (default 40)")
    parser.add_argument("--quick", action="store_true", help="8 runs per mode")
    args = parser.parse_args()
    runs = 8 if args.quick else args.runs

    stores = {"disk": None}
    if Path("/dev/shm").is_dir():
        stores["memory"] = "/dev/shm"
    rows: list[Row] = []
    payload: dict[str, Any] = {"runs_per_mode": runs, "assets_per_run": ASSETS,
                               "target_ms_p99": TARGET_MS, "stores": {},
                               "load_average_at_start": list(os.getloadavg())}
    for label, parent in stores.items():
        work = Path(tempfile.mkdtemp(prefix="lacuna-bench-dagster-", dir=parent))
        try:
            store_rows, details = bench(work, runs, label)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows += store_rows
        payload["stores"][label] = {"path": str(work), **details}
    payload["load_average_at_end"] = list(os.getloadavg())
    print_rows(rows, f"Dagster integration, in process ({runs} runs per mode, "
                     f"{ASSETS} assets per run; load average "
                     f"{payload['load_average_at_start'][0]:.1f} at start)")
    path = write_results("dagster", rows, payload)
    print(f"\nwrote {path}")


def bench(work: Path, runs: int, store: str) -> tuple[list[Row], dict[str, Any]]:
    database_url = f"sqlite:///{work / 'lacuna.db'}"
    gov = Governor.open(database_url=database_url, policy_dir=str(ROOT / "policies"),
                        environment="production", user="bench@example.com")
    lacuna = LacunaResource.from_governor(gov)

    table_assets = build_assets(work / "Downloads" / "unused.csv")[:4]
    governed_assets = [*table_assets, report_asset(work / "report-governed.csv", govern=True)]
    plain_assets = [*table_assets, report_asset(work / "report-plain.csv", govern=False)]
    governed_defs = [*governed_assets, *build_lacuna_checks(governed_assets)]
    governed_res = governed_resources(governed_assets, lacuna, {
        "io_manager": dg.FilesystemIOManager(base_dir=str(work / "storage-governed"))})
    plain_res = {"io_manager": dg.FilesystemIOManager(base_dir=str(work / "storage-plain"))}
    instance = dg.DagsterInstance.ephemeral()

    def run_governed() -> dg.ExecuteInProcessResult:
        return dg.materialize(governed_defs, resources=governed_res, run_config=QUIET,
                              instance=instance)

    def run_plain() -> dg.ExecuteInProcessResult:
        return dg.materialize(plain_assets, resources=plain_res, run_config=QUIET,
                              instance=instance)

    timer = HookTimer()
    timer.install()
    try:
        for _ in range(3):  # warm-up: imports, policy VM, SQLite pages
            assert run_governed().success and run_plain().success
            timer.take()
        governed_s: list[float] = []
        plain_s: list[float] = []
        per_asset: dict[str, list[float]] = defaultdict(list)  # phase → seconds per asset
        for i in range(runs):
            order = [("governed", run_governed), ("plain", run_plain)]
            for mode, fn in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                outcome = fn()
                elapsed = time.perf_counter() - start
                if not outcome.success:
                    raise RuntimeError(f"{mode} run {i} failed")
                (governed_s if mode == "governed" else plain_s).append(elapsed)
            hooks = timer.take()
            assets = {a for _, a in hooks}
            if len(assets) != ASSETS:
                raise RuntimeError(f"expected Lacuna hooks on {ASSETS} assets, saw {assets}")
            for asset in assets:
                phases = {p: hooks.get((p, asset), 0.0) for p in HookTimer.PHASES}
                for phase, seconds in phases.items():
                    per_asset[phase].append(seconds)
                total = sum(phases.values())
                per_asset["total"].append(total)
                per_asset["integration"].append(total - hooks.get(("core", asset), 0.0))
    finally:
        timer.uninstall()

    start = time.perf_counter()
    opens = []
    for _ in range(5):
        start = time.perf_counter()
        Governor.open(database_url=database_url, policy_dir=str(ROOT / "policies")).close()
        opens.append(time.perf_counter() - start)
    audit_records = len(gov.audit.tail(1_000_000))
    detach_governor(lacuna.attached)
    gov.close()

    ms = {phase: stats([s * 1000 for s in values]) for phase, values in per_asset.items()}
    diffs = [(g - p) * 1000 / ASSETS for g, p in zip(governed_s, plain_s, strict=True)]
    run_g = stats([s * 1000 for s in governed_s])
    run_p = stats([s * 1000 for s in plain_s])
    added = stats(diffs)
    open_ms = stats([s * 1000 for s in opens])

    tag = f"[store on {store}]"
    rows = [
        Row(f"{tag} Lacuna time per materialization, p50", "ms", ms["total"]["p50"],
            note=f"gate + START/COMPLETE + check, n={ms['total']['n']}"),
        Row(f"{tag} Lacuna time per materialization, p99", "ms", ms["total"]["p99"],
            checks=(Check("ours", "<", TARGET_MS),), note=f"max {ms['total']['max']:.2f} ms"),
        Row(f"{tag}   gate (one audited policy decision), p99", "ms", ms["gate"]["p99"],
            note=f"p50 {ms['gate']['p50']:.2f} ms"),
        Row(f"{tag}   lineage START + COMPLETE (two audited ingests), p99", "ms",
            ms["lineage"]["p99"], note=f"p50 {ms['lineage']['p50']:.2f} ms"),
        Row(f"{tag}   blocking check body, p99", "ms", ms["check"]["p99"],
            note=f"p50 {ms['check']['p50']:.2f} ms"),
        Row(f"{tag}   of which the adapter's own code (not the governor), p99", "ms",
            ms["integration"]["p99"], note=f"p50 {ms['integration']['p50']:.2f} ms"),
        Row(f"{tag} materialize() of {ASSETS} assets, p50", "ms", run_g["p50"],
            baseline=run_p["p50"], baseline_label="without Lacuna",
            ratio_label="with / without"),
        Row(f"{tag} added per materialization from whole runs, p50", "ms", added["p50"],
            note="incl. Dagster running 5 extra check steps"),
        Row(f"{tag} added per materialization from whole runs, p99", "ms", added["p99"],
            note="paired interleaved runs; noisy"),
        Row(f"{tag} open the in-process governor (per run unless attached), p50", "ms",
            open_ms["p50"], note=f"{audit_records} audit records in the store"),
    ]
    payload = {
        "lacuna_ms_per_materialization": ms,
        "run_ms": {"with_lacuna": run_g, "without_lacuna": run_p},
        "added_ms_per_materialization_from_runs": added,
        "governor_open_ms": open_ms,
        "audit_records_written": audit_records,
    }
    return rows, payload


if __name__ == "__main__":
    main()
