"""`make demo`: one governed data platform across Dagster, dbt and Airflow, on the embedded
defaults (SQLite store, embedded Rego policies, local classifier — no service running).

Dagster loads CRM contacts, payments, patient visits and country data into a DuckDB warehouse;
dbt builds staging views and marts from them; Airflow exports two marts. All three report to one
Lacuna in this process under the same dataset names, so the lineage runs unbroken from a
Dagster asset through dbt models to an Airflow export. Along the way Lacuna classifies every
table, propagates tiers, stops what the policies forbid (with the reason, the alternatives, the
policy and its steward), honours a steward's time-boxed exception until it expires, and writes
a hash-chained audit log it then verifies.

The story itself is ``example_project/platform/story.py``; this file shows it. A failing step
stops the demo with one line: which step, why, and what to run. Everything is written under
``example_project/out/platform`` (or ``--out``). The per-orchestrator examples
(``example_project/{dagster,dbt,airflow}``) still run on their own.

``--service`` runs the same platform against Lacuna as a service instead: a ``lacuna dev``
server on a free port (store under ``<out>/service``), each orchestrator configured with its
URL and an API key, the results read back through the HTTP API, the server stopped at the end
(``platform/service_story.py``).
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out" / "platform"
PLATFORM_MODULE = "lacuna_platform_example"
# Wide enough for the decisions table when the output is a log file, not a terminal.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)


def load_platform() -> ModuleType:
    """The platform's ``story`` module. ``example_project/platform`` is deliberately not a
    regular package (no ``__init__.py``): run as a script, this file puts ``example_project/``
    first on ``sys.path``, and a regular package named ``platform`` there would shadow the
    standard library's ``platform`` for every library imported afterwards. It is mounted here
    under a name of its own instead, so its modules' relative imports work."""
    if PLATFORM_MODULE not in sys.modules:
        package = ModuleType(PLATFORM_MODULE, "One governed platform (example_project/platform)")
        package.__path__ = [str(HERE / "platform")]
        sys.modules[PLATFORM_MODULE] = package
    return importlib.import_module(f"{PLATFORM_MODULE}.story")


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False)


def _summary(title: str, run: Any) -> str:
    """One line on what a step did, read from the run (an in-process or a service run: the
    steps after Dagster's read only what both kinds hold)."""
    if title.startswith("Open"):
        return f"store {run.paths.store}"
    if title.startswith("Dagster"):
        gov = run.governor
        tables = [run.paths.raw(t) for t in ("crm_contacts", "transactions", "patient_visits",
                                             "country_codes")]
        return "; ".join(f"{t.name.rsplit('.', 1)[-1]}: {gov.classification(t).describe()}"
                         for t in tables)
    if title.startswith("dbt"):
        built = sum(1 for r in run.dbt.results if r.status == "success"
                    and r.resource_type == "model")
        stopped = ", ".join(sorted(u.rsplit(".", 1)[-1] for u in run.dbt.denied))
        return f"{built} models built; stopped before they built: {stopped}"
    if title.startswith("Airflow"):
        return (f"{run.pii_export.task_id}: {run.pii_export.state} (blocked by "
                f"{run.pii_export.denial.policy_id}); {run.revenue_export.task_id}: "
                f"{run.revenue_export.state}, wrote {run.revenue_export.written}")
    if title.startswith("A steward"):
        exc = run.exception
        return (f"{exc.id} approved by {exc.approver} until {exc.valid_until:%H:%M} UTC: export "
                f"{run.pii_export_under_exception.state}; after expiry: "
                f"{run.pii_export_after_expiry.state}")
    if title.startswith("Scratch"):
        dev = "allowed" if run.scratch_in_development.allow else "denied"
        prod = "allowed" if run.scratch_in_production.allow else "denied"
        return f"development: {dev}; production: {prod} ({run.scratch_in_production.policy_id})"
    if title.startswith("Verify"):
        return str(run.verification.message)
    return f"report {run.paths.report_html}, picture {run.paths.lineage_svg}"


def _run_steps(steps: list[Any], run: Any, summarize: Callable[[str, Any], str]) -> Any:
    """Run ``steps`` on ``run`` with a progress bar and one summary line each; on the first
    failure close the run (which stops a server it started) and exit with one line."""
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("starting", total=len(steps))
        for number, step in enumerate(steps, 1):
            progress.update(bar, description=step.title)
            started = time.perf_counter()
            try:
                step.run(run)
                line = summarize(step.title, run)
            except Exception as err:  # noqa: BLE001 - the demo reports one line, no traceback
                progress.stop()
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
                console.print(f"[bold red]demo failed at step {number} '{step.title}':[/] ",
                              end="")
                _say(f"{reason}\n  → {step.hint}")
                run.close()
                sys.exit(1)
            progress.advance(bar)
            console.print(f"[green]✓[/] [bold]{step.title}[/] "
                          f"[dim]({time.perf_counter() - started:.1f} s)[/]")
            _say(f"   {line}")
    return run


def _show(run: Any) -> None:
    from lacuna_orchestration.cli import decisions_table

    gov = run.governor
    console.rule("[bold]Lineage: Dagster → dbt → Airflow, with tiers")
    for model in ("revenue_by_country", "contacts_anonymized"):
        key = run.table(model).key
        exports = [k for k in gov.graph.downstream(key, depth=1) if k.startswith("file::")]
        _say(gov.graph.tree(exports[0] if exports else key))
        _say("")

    console.rule("[bold]What the gate stopped")
    _gate_panels(run)

    console.rule("[bold]Decisions")
    console.print(decisions_table(_interesting(gov.catalog.decisions(limit=500))))

    summary = run.report["sections"]["summary"]
    console.rule("[bold]Written")
    _say(f"ISO 27001 A.9.4 report: {run.paths.report_html} (and .json): "
         f"{summary['access_attempts']} access decisions, {summary['denied']} denied, "
         f"{summary['allowed_under_exception']} allowed under an exception")
    _say(f"Lineage picture:        {run.paths.lineage_svg}")
    _say(f"Lacuna store:           {run.paths.store}")
    _say(f"Audit chain:            {run.verification.message}")


def _gate_panels(run: Any) -> None:
    """The gate's full messages: the Airflow PII export, the dbt models stopped before they
    built, the same export after the exception expired (same fields in both variants)."""
    shown = [("Airflow: the PII export", run.pii_export.denial)]
    for uid, decision in sorted(run.dbt.denied.items()):
        shown.append((f"dbt: {uid.rsplit('.', 1)[-1]}", decision))
    shown.append(("Airflow: the same export after the exception expired",
                  run.pii_export_after_expiry.denial))
    for title, decision in shown:
        console.print(Panel(decision.message, title=title, border_style="red",
                            title_align="left"), markup=False)


def _same(a: Any, b: Any) -> bool:
    return (a.allow, a.action, a.source, a.destination, a.policy_id, a.exception_id) == (
        b.allow, b.action, b.source, b.destination, b.policy_id, b.exception_id)


def _interesting(decisions: Any) -> list[Any]:
    """Denials, exceptions and exports, oldest first; a task's START event (listener) and its
    gate check decide the same question: the answer is shown once."""
    wanted = sorted((d for d in decisions if not d.allow or d.exception_id or d.action == "export"),
                    key=lambda d: d.decided_at)
    return [d for i, d in enumerate(wanted) if i == 0 or _same(wanted[i - 1], d) is False]


# -- the service variant (--service) -----------------------------------------------------------

def load_service_story() -> ModuleType:
    """The service variant's steps (``platform/service_story.py``)."""
    load_platform()
    return importlib.import_module(f"{PLATFORM_MODULE}.service_story")


def _service_summary(title: str, run: Any) -> str:
    """One line on what a service step did; the tables' tiers are asked of the server."""
    if title.startswith("Start"):
        return f"{run.url} (store {run.server.store}); API keys: {', '.join(run.keys)}"
    if title.startswith("Dagster"):
        from urllib.parse import quote

        reader = run.api(load_service_story().AUDITOR)
        parts = []
        for table in ("crm_contacts", "transactions", "patient_visits", "country_codes"):
            row = reader.get("/api/v1/datasets/" + quote(run.paths.raw(table).key, safe=""))
            tags = f" ({', '.join(row['tags'])})" if row["tags"] else ""
            parts.append(f"{table}: {row['tier']}{tags}")
        return "; ".join(parts)
    if title.startswith("A steward"):
        exc = run.exception
        return (f"{exc['id']} approved by {exc['approver']} until {exc['valid_until']}: export "
                f"{run.pii_export_under_exception.state}; after expiry: "
                f"{run.pii_export_after_expiry.state}")
    if title.startswith("Read"):
        return (f"{len(run.datasets)} datasets, {len(run.edges)} edges; the governed export has "
                f"{len(run.export_upstream)} upstream datasets back to the raw tables")
    if title.startswith("Verify"):
        return f"{run.verification['message']}; report {run.paths.report_html}"
    return _summary(title, run)


def _show_service(run: Any) -> None:
    from lacuna_orchestration.cli import decisions_table

    service = load_service_story()
    console.rule(f"[bold]Lineage read back from {run.url or 'the server'}: Dagster → dbt → "
                 "Airflow, with tiers")
    for model in ("revenue_by_country", "contacts_anonymized"):
        key = run.table(model).key
        exports = sorted(e["target"] for e in run.edges
                         if e["source"] == key and e["target"].startswith("file::"))
        _say(service.lineage_tree(run.datasets, run.edges, exports[0] if exports else key))
        _say("")

    console.rule("[bold]What the gate stopped (decisions from the server)")
    _gate_panels(run)

    console.rule("[bold]Decisions (GET /api/v1/decisions)")
    console.print(decisions_table(_interesting(run.decisions)))

    summary = run.report["sections"]["summary"]
    console.rule("[bold]Written")
    _say(f"ISO 27001 A.9.4 report: {run.paths.report_html} (and .json, from GET "
         f"/api/v1/reports/iso27001-a94): {summary['access_attempts']} access decisions, "
         f"{summary['denied']} denied, {summary['allowed_under_exception']} allowed under an "
         "exception")
    _say(f"Lacuna store:           {run.state_dir / 'dev.db'} (server log: "
         f"{run.state_dir / 'server.log'})")
    _say(f"Audit chain:            {run.verification['message']} (GET /api/v1/audit/verify)")
    _say(f"Exception expiry:       shown in real time — approved for "
         f"{service.EXCEPTION_SECONDS:g} s, then waited out (the in-process demo moves the "
         "governor's clock past a 4-hour exception instead)")
    _say(f"lacuna dev:             stopped ({_exit_text(run.server_exit)})")


def _exit_text(code: int | None) -> str:
    if code in (0, -signal.SIGTERM):
        return "shut down on SIGTERM"
    return "not started" if code is None else f"exit code {code}"


def run_service(out: Path) -> Any:
    """The service variant: start ``lacuna dev``, run the platform against it, read the
    results back over HTTP, stop the server (also when a step fails), show the results."""
    service = load_service_story()
    console.rule("[bold]Lacuna as a service: Dagster → dbt → Airflow → `lacuna dev`")
    run = service.ServiceRun(service.PlatformPaths.under(out))
    try:
        _run_steps(list(service.steps()), run, _service_summary)
    finally:
        run.close()
    _show_service(run)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder, emptied first (default {DEFAULT_OUT})")
    parser.add_argument("--service", action="store_true",
                        help="run Lacuna as a `lacuna dev` server and point the three "
                             "orchestrators at its URL instead of an in-process governor")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        story = load_platform()
    except Exception as err:  # noqa: BLE001
        _say(f"demo failed before it started: cannot load the platform ({err})\n"
             "  → run `make install`")
        return 1
    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    if args.service:
        run_service(out)
        _say(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")
        return 0
    console.rule("[bold]Lacuna: one governed platform — Dagster → dbt → Airflow")
    run = story.PlatformRun(story.PlatformPaths.under(out))
    _run_steps(list(story.steps()), run, _summary)
    try:
        _show(run)
    finally:
        run.close()
    _say(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
