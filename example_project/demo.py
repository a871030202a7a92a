"""`make demo`: the governance spine end to end on the embedded defaults.

A scripted pipeline (customers + sales → join → aggregate → export) arrives as OpenLineage events;
Lacuna classifies every column, propagates tiers along the lineage, decides each output with the
Rego policies, and writes a hash-chained audit log — SQLite, embedded Rego, no service running.

Each step prints what it did; a failing step stops the demo with one line naming the step, the
reason and what to run.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
console = Console(highlight=False)


def step(title: str, fn: Callable[[], Any], hint: str) -> Any:
    console.rule(f"[bold]{title}")
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - the demo reports one line, never a traceback
        console.print(f"[bold red]demo failed at step '{title}':[/] {err}\n  → {hint}")
        sys.exit(1)


def main() -> None:
    from lacuna_orchestration.cli import decisions_table
    from lacuna_orchestration.governor import Governor
    from lacuna_orchestration.lineage.openlineage import parse_events

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    db = OUT / "lacuna.db"

    gov = step(
        "Open Lacuna (SQLite store, embedded Rego policies)",
        lambda: Governor.open(database_url=f"sqlite:///{db}", policy_dir=str(ROOT / "policies")),
        "check that policies/ exists and `make install` succeeded",
    )
    events = parse_events((HERE / "openlineage" / "pipeline.ndjson").read_bytes())

    def ingest_all() -> list[Any]:
        from rich.progress import track

        results = []
        for raw in track(events, description=f"ingesting {len(events)} OpenLineage events"):
            results.append(gov.ingest(raw, via="demo"))
        return results

    results = step("Ingest the pipeline's OpenLineage events", ingest_all,
                   "run `lacuna ingest example_project/openlineage/pipeline.ndjson` to see why")
    console.print(f"{len(results)} events ingested, {len(gov.graph)} datasets in the lineage graph")

    step("Lineage of analysis.csv with tiers",
         lambda: console.print(gov.graph.tree(gov.graph.resolve("analysis.csv")), markup=False),
         "run `lacuna lineage tree analysis.csv`")
    step("Lineage of the aggregate",
         lambda: console.print(gov.graph.tree(gov.graph.resolve("regional_summary.csv"), depth=1),
                               markup=False),
         "run `lacuna lineage tree regional_summary.csv`")

    # START and COMPLETE of one run share a decision: show each once.
    denials = list({d.decision_id: d for r in results for d in r.denials}.values())

    def show_denials() -> None:
        if not denials:
            raise RuntimeError("expected the PII export to be denied, but nothing was")
        for d in denials:
            console.print(Panel(d.message, title="gate", border_style="red"), markup=False)

    step("The PII export is stopped by policy", show_denials, "run `lacuna policy test`")
    step("Decisions",
         lambda: console.print(decisions_table(list(gov.catalog.decisions(limit=20)))),
         "run `lacuna decisions`")

    def verify() -> None:
        report = gov.verify_audit()
        console.print(report.message, markup=False)
        if not report.ok:
            raise RuntimeError(report.message)

    step("Verify the audit chain", verify, "run `lacuna audit verify`")
    gov.close()
    console.print(f"\nStore written to {db}")

    dagster = _load(HERE / "dagster" / "run_demo.py", "lacuna_demo_dagster")
    step("Dagster: assets gated before they write, tiers on every asset",
         lambda: dagster.run_demo(OUT / "dagster", echo=_echo),
         "run `python example_project/dagster/run_demo.py` to see the full error")
    dbt = _load(HERE / "dbt" / "run_demo.py", "lacuna_demo_dbt")
    step("dbt: models classified from meta and columns, the PII export stopped before it builds",
         lambda: dbt.run_demo(out_dir=OUT / "dbt"),
         "run `python example_project/dbt/run_demo.py` to see the full error")


def _echo(text: str) -> None:
    console.print(text, markup=False, highlight=False)


def _load(path: Path, name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
