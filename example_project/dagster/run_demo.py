"""The Dagster example end to end, in process: ``python example_project/dagster/run_demo.py``.

1. Materialize the pipeline with ``dagster.materialize``: every asset is gated, its lineage goes
   into Lacuna, and a blocking check shows its tier. The export of customer contacts to a
   Downloads folder is stopped by the gate *before* it writes.
2. A steward approves a time-boxed exception for exactly that export.
3. Materialize the export again: it passes, under the exception, and the audit says so.

``run_demo()`` returns what happened so ``make demo`` (and the tests) can check it.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg

from lacuna_orchestration.integrations.dagster import (
    LacunaResource,
    build_lacuna_checks,
    governed_resources,
)

HERE = Path(__file__).resolve().parent
EXAMPLE_MODULE = "lacuna_dagster_example_definitions"


def _example() -> ModuleType:
    """``definitions.py`` next to this file, imported under a name of its own (a bare
    ``import definitions`` could find another project's module first)."""
    if EXAMPLE_MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(EXAMPLE_MODULE, HERE / "definitions.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {HERE / 'definitions.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[EXAMPLE_MODULE] = module
        spec.loader.exec_module(module)
    return sys.modules[EXAMPLE_MODULE]


example = _example()
DEFAULT_OUT: Path = example.DEFAULT_OUT
build_assets = example.build_assets
export_path = example.export_path

STEWARD = "data-governance@example.com"
ANALYST = "analyst@example.com"
EXPORT = dg.AssetKey("regional_report_export")
# Dagster's console logger would print every event (and the denial twice, with a stack trace);
# the demo prints what matters itself.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class DemoOutcome:
    tiers: dict[str, str] = field(default_factory=dict)
    denial: str = ""
    written_before_exception: bool = False
    exception_id: str = ""
    allowed_under: str = ""
    written_after_exception: bool = False
    audit_ok: bool = False


def _materialize(assets: list[Any], resources: dict[str, Any],
                 selection: Any = None) -> dg.ExecuteInProcessResult:
    checks = build_lacuna_checks(assets)
    return dg.materialize([*assets, *checks], resources=resources, selection=selection,
                          raise_on_error=False, run_config=QUIET)


def _tiers(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        md = mat.metadata
        if "lacuna/tier" in md:
            tags = md["lacuna/tags"].value
            out[mat.asset_key.to_user_string()] = f"{md['lacuna/tier'].value} ({tags})"
    return out


def _failure(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_key == key.to_python_identifier():
            error = event.event_specific_data.error
            while error is not None and "Governance" not in (error.message or ""):
                error = error.cause
            if error is not None:
                return error.message.split(": ", 1)[-1].strip()
    return ""


def run_demo(out: Path | None = None, *, echo: Callable[[str], None] = print) -> DemoOutcome:
    from lacuna_orchestration.governor import Governor

    out = out or DEFAULT_OUT
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    database_url = f"sqlite:///{out / 'lacuna.db'}"
    lacuna = LacunaResource(database_url=database_url, environment="production",
                            user=ANALYST)
    assets = build_assets(export_path(out))
    resources = governed_resources(
        assets, lacuna, {"io_manager": dg.FilesystemIOManager(base_dir=str(out / "storage"))}
    )
    target = export_path(out)
    outcome = DemoOutcome()

    echo("== 1. Materialize the pipeline (environment: production)")
    first = _materialize(assets, resources)
    outcome.tiers = _tiers(first)
    for key, tier in outcome.tiers.items():
        echo(f"   {key:<24} {tier}")
    outcome.denial = _failure(first, EXPORT)
    outcome.written_before_exception = target.exists()
    echo("   regional_report_export was stopped by the gate:" if outcome.denial
         else "   regional_report_export was NOT stopped (unexpected)")
    echo("\n".join("     " + line for line in outcome.denial.splitlines()))
    echo(f"   export file written: {outcome.written_before_exception} ({target})")

    echo("== 2. A steward approves a 7-day exception for this one export")
    with Governor.open(database_url=database_url) as gov:
        translator = lacuna.get_translator()
        request = gov.request_exception(
            operation_kind="export",
            sources=(translator.get_dataset_ref(dg.AssetKey("regional_summary")).key,
                     translator.get_dataset_ref(dg.AssetKey("customer_sales")).key),
            destination=f"file::{target.resolve()}",
            purpose="board report",
            justification="Quarterly regional report for the board, deleted after the meeting",
            requested_by=ANALYST,
            via="demo",
        )
        approved = gov.approve_exception(request.id, steward=STEWARD, duration=timedelta(days=7),
                                         via="demo")
    outcome.exception_id = approved.id
    echo(f"   {approved.id}: {approved.status.value} by {approved.approver} "
         f"until {approved.valid_until:%Y-%m-%d %H:%M} UTC")

    echo("== 3. Materialize the export again")
    second = _materialize(assets, resources, selection=[EXPORT])
    for event in second.get_asset_materialization_events():
        md = event.event_specific_data.materialization.metadata
        if "lacuna/decision" in md:
            outcome.allowed_under = str(md.get("lacuna/exception_id", dg.MetadataValue.text(""))
                                        .value)
            echo(f"   {event.asset_key.to_user_string()}: {md['lacuna/decision'].value}")
    outcome.written_after_exception = target.exists()
    echo(f"   export file written: {outcome.written_after_exception}")

    with Governor.open(database_url=database_url) as gov:
        report = gov.verify_audit()
        outcome.audit_ok = report.ok
        gated = [r for r in gov.audit.tail(50) if r.action == "gate.check"
                 and (r.decision or {}).get("exception_id")]
    echo(f"== Audit chain: {report.message}; gate decisions under an exception: {len(gated)}")
    return outcome


if __name__ == "__main__":
    result = run_demo()
    ok = (result.denial and not result.written_before_exception
          and result.written_after_exception and result.allowed_under == result.exception_id
          and result.audit_ok)
    sys.exit(0 if ok else 1)
