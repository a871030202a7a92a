"""The whole platform, start to finish, against ONE in-process Lacuna — what ``make demo`` runs
and what the tests assert.

1. Dagster loads the raw sources (contacts, transactions, patient visits, country codes).
2. dbt builds staging → marts: the PII join, the aggregate, the anonymized view; the gate stops
   a health-data model built for advertising (purpose) and a mailing list for marketing (the
   marketing steward's domain policy).
3. Airflow exports two marts: the PII export to a partner's Downloads folder is blocked, the
   aggregate to the governed workspace is allowed.
4. A steward approves a time-boxed exception for the PII export: it runs; the clock moves past
   the exception's end: blocked again.
5. A developer may dump the aggregate to ``/tmp`` in development, not in production.
6. The audit chain is verified; the ISO 27001 A.9.4 report and the lineage picture are written.

Each step is a ``Step`` (title, the function, and what to run when it fails), so the demo can
show progress and stop with one line naming the step. The governor's clock is injectable
(``MovableClock``) so the exception really expires, rather than being faked in the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from lacuna_orchestration.model import DatasetRef, Decision, Operation, OperationKind, utcnow

from . import airflow_exports as af
from .config import (
    ANALYST,
    PARTNER_EXPORT,
    SCHEDULER,
    SCRATCH_EXPORT,
    STEWARD,
    PlatformPaths,
)

__all__ = ["EXCEPTION_HOURS", "MovableClock", "PlatformRun", "Step", "export_marts",
           "export_under_exception",
           "open_governor", "scratch_space", "steps"]

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
EXCEPTION_HOURS = 4


class MovableClock:
    """Wall-clock time plus an offset the story moves forward (the governor's ``clock``)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


def open_governor(paths: PlatformPaths, clock: Callable[[], datetime]) -> Any:
    """Lacuna on the embedded defaults: SQLite under ``out``, embedded Rego, local classifier,
    production environment."""
    from lacuna_orchestration.governor import Governor
    from lacuna_orchestration.settings import Settings

    paths.out.mkdir(parents=True, exist_ok=True)
    settings = Settings.load(database_url=f"sqlite:///{paths.store}", policy_dir=str(POLICIES),
                             environment="production", user=SCHEDULER, tenant="default")
    return Governor(settings, clock=clock)


@dataclass
class PlatformRun:
    """Everything the story produced, for the demo's output and the tests."""

    paths: PlatformPaths
    governor: Any = None
    clock: MovableClock = field(default_factory=MovableClock)
    dagster: Any = None
    dbt: Any = None
    pii_export: af.TaskRun | None = None
    revenue_export: af.TaskRun | None = None
    exception: Any = None
    pii_export_under_exception: af.TaskRun | None = None
    pii_export_after_expiry: af.TaskRun | None = None
    scratch_in_development: Decision | None = None
    scratch_in_production: Decision | None = None
    verification: Any = None
    report: dict[str, Any] = field(default_factory=dict)

    def table(self, model: str) -> DatasetRef:
        return self.paths.table(model)

    def close(self) -> None:
        if self.governor is not None:
            self.governor.close()
            self.governor = None


RunT = TypeVar("RunT")


@dataclass(frozen=True)
class Step(Generic[RunT]):
    """One step of a story: its title, what it does to the run (a ``PlatformRun`` here, a
    ``ServiceRun`` in the service variant) and what to run when it fails."""

    title: str
    run: Callable[[RunT], Any]
    hint: str


# -- the steps ---------------------------------------------------------------------------------

def _open(run: PlatformRun) -> None:
    run.governor = open_governor(run.paths, run.clock)


def _dagster(run: PlatformRun) -> None:
    from .dagster_sources import load_sources

    run.dagster = load_sources(run.governor, run.paths, user=SCHEDULER)


def _dbt(run: PlatformRun) -> None:
    from .dbt_models import build_models

    run.dbt = build_models(run.governor, run.paths, user=SCHEDULER)


def _airflow(run: PlatformRun) -> None:
    export_marts(run, run.governor)


def export_marts(run: Any, lacuna: Any) -> None:
    """Run the export DAG's two tasks against ``lacuna`` (a governor, or the Airflow
    integration's backend for a server) and insist on the story's outcome: the PII export is
    blocked, the aggregate export runs. ``run`` is a ``PlatformRun`` or a service run."""
    from .config import GOVERNED_EXPORT

    dag = af.build_dag(run.paths)
    run.pii_export = af.run_task(dag, af.PII_EXPORT_TASK, lacuna, run_id="scheduled__1",
                                 destination=run.paths.mounted(PARTNER_EXPORT))
    if run.pii_export.state != "failed" or run.pii_export.denial is None:
        raise RuntimeError("the PII export to the partner share was not blocked")
    run.revenue_export = af.run_task(dag, af.REVENUE_EXPORT_TASK, lacuna,
                                     run_id="scheduled__1",
                                     destination=run.paths.mounted(GOVERNED_EXPORT))
    if run.revenue_export.state != "success":
        raise RuntimeError(f"the aggregate export failed: {run.revenue_export.error}")


def _exception(run: PlatformRun) -> None:
    gov = run.governor
    destination = DatasetRef("file", PARTNER_EXPORT)
    requested = gov.request_exception(
        operation_kind="export", sources=[run.table("customer_transactions").key],
        destination=destination.key, purpose="analytics",
        justification="quarterly reconciliation the partner must receive this week",
        requested_by=ANALYST, via="demo",
    )
    run.exception = gov.approve_exception(requested.id, steward=STEWARD,
                                          duration=timedelta(hours=EXCEPTION_HOURS), via="demo")
    export_under_exception(run, gov, lambda: run.clock.advance(
        timedelta(hours=EXCEPTION_HOURS + 1)))


def export_under_exception(run: Any, lacuna: Any, expire: Callable[[], None],
                           hint: str = "") -> None:
    """The PII export with the steward's exception approved: it must run; then ``expire``
    moves past the exception's end (the governor's clock, or real time against a server) and
    the same export must be blocked again. Shared by the in-process and service stories."""
    dag = af.build_dag(run.paths)
    target = run.paths.mounted(PARTNER_EXPORT)
    run.pii_export_under_exception = af.run_task(dag, af.PII_EXPORT_TASK, lacuna,
                                                 run_id="manual__exception",
                                                 destination=target)
    if run.pii_export_under_exception.state != "success":
        raise RuntimeError(f"the approved exception did not let the export run{hint}: "
                           f"{run.pii_export_under_exception.error.splitlines()[:3]}")
    target.unlink()  # so the run after expiry shows it writes nothing
    expire()
    run.pii_export_after_expiry = af.run_task(dag, af.PII_EXPORT_TASK, lacuna,
                                              run_id="manual__after_expiry",
                                              destination=target)
    if run.pii_export_after_expiry.state != "failed":
        raise RuntimeError("the export still ran after the exception expired")


def _scratch(run: PlatformRun) -> None:
    scratch_space(run, run.governor.check)


def scratch_space(run: Any, check: Callable[..., Decision]) -> None:
    """The same export to scratch space, asked by a developer in two environments. ``check``
    is ``Governor.check`` or ``RemoteGovernor.check`` (same signature)."""
    def ask(environment: str) -> Decision:
        return check(Operation(
            kind=OperationKind.EXPORT, sources=(run.table("revenue_by_country"),),
            destination=DatasetRef("file", SCRATCH_EXPORT), user=ANALYST, purpose="analytics",
            environment=environment, code="notebook.sample_revenue",
        ), via="demo")

    run.scratch_in_development = ask("development")
    run.scratch_in_production = ask("production")
    if not run.scratch_in_development.allow or run.scratch_in_production.allow:
        raise RuntimeError("the scratch-space policy did not separate development from "
                           "production")


def _verify(run: PlatformRun) -> None:
    run.verification = run.governor.verify_audit()
    if not run.verification.ok:
        raise RuntimeError(run.verification.message)


def _write_outputs(run: PlatformRun) -> None:
    from lacuna_orchestration.audit.reports import build_for_governor, render_html
    from lacuna_orchestration.lineage.render import render_svg

    run.report = build_for_governor(run.governor, "iso27001-a94")
    run.paths.report_json.write_text(json.dumps(run.report, indent=2, default=str))
    run.paths.report_html.write_text(render_html(run.report))
    run.paths.lineage_svg.write_text(render_svg(run.governor.graph))


def steps() -> Iterator[Step[PlatformRun]]:
    """The story in order; ``hint`` is what to run when that step fails."""
    yield Step("Open Lacuna (SQLite store, embedded Rego policies, local classifier)", _open,
               "check that policies/ exists and `make install` succeeded")
    yield Step("Dagster: load the raw sources into the warehouse", _dagster,
               "run `python example_project/dagster/run_demo.py` to check the Dagster setup")
    yield Step("dbt: staging → marts, every model gated", _dbt,
               "look at out/platform/dbt/logs/dbt.log, or `python example_project/dbt/run_demo.py`")
    yield Step("Airflow: export the marts", _airflow,
               "run `pytest tests/integrations/airflow -q` to check the Airflow integration")
    yield Step("A steward's time-boxed exception: allowed, then expired", _exception,
               "run `lacuna exceptions list` against out/platform/lacuna.db")
    yield Step("Scratch space: /tmp in development only", _scratch, "run `lacuna policy test`")
    yield Step("Verify the audit chain", _verify, "run `lacuna audit verify`")
    yield Step("Write the ISO 27001 A.9.4 report and the lineage picture", _write_outputs,
               "check that the output folder is writable")


def run_all(out: Path | str,
            on_step: Callable[[Step[PlatformRun]], None] | None = None) -> PlatformRun:
    """Every step in order (no progress display, exceptions propagate): for tests."""
    run = PlatformRun(PlatformPaths.under(out))
    try:
        for step in steps():
            if on_step is not None:
                on_step(step)
            step.run(run)
    except BaseException:
        run.close()
        raise
    return run
