"""The dbt part of the demo: build the shop project on DuckDB through ``lacuna dbt build``.

What it shows: every model is decided before it builds; the join of customers, orders and
payments becomes PROPRIETARY with PII and FINANCIAL; the revenue aggregate drops to INTERNAL and
keeps DERIVED_FROM_PII; the partner export, which would send PII to an unmanaged folder, is
stopped by its ``lacuna.gate()`` pre-hook with the policy's message and never built.

Run it alone (``python example_project/dbt/run_demo.py``) or call ``run_demo(gov)`` from the
main demo with an open ``Governor``. Everything it writes goes under ``out_dir`` (default
``example_project/out/dbt``) and the project's own ``target/``, ``logs/``, ``dbt_packages/``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_OUT = HERE.parent / "out" / "dbt"
MODELS = ("customer_orders", "revenue_by_country", "customer_contacts_export")

console = Console(highlight=False, soft_wrap=True)


def run_demo(governor: Any = None, *, out_dir: Path | str = DEFAULT_OUT,
             quiet_dbt: bool = True) -> Any:
    """Build the project governed by Lacuna; print the outcome; return the ``DbtRunOutcome``.

    Without ``governor`` a fresh SQLite store is opened under ``out_dir``.
    """
    from lacuna_orchestration.governor import Governor
    from lacuna_orchestration.integrations.dbt import run_dbt

    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    own = governor is None
    gov = governor or Governor.open(database_url=f"sqlite:///{out / 'lacuna.db'}",
                                    policy_dir=str(ROOT / "policies"))
    try:
        args = ["--project-dir", str(HERE), "--profiles-dir", str(HERE),
                "--vars", json.dumps({"shop_duckdb": str(out / "shop.duckdb")})]
        if quiet_dbt:
            args.append("--quiet")
        outcome = run_dbt("build", args, governor=gov)
        _report(gov, outcome)
        return outcome
    finally:
        if own:
            gov.close()


def _report(gov: Any, outcome: Any) -> None:
    plan = outcome.plan
    built = sum(1 for r in outcome.results if r.status == "success"
                and r.resource_type in ("model", "seed", "snapshot"))
    console.print(f"[bold]lacuna dbt build[/]: exit code {outcome.exit_code}; "
                  f"{len(plan.nodes) if plan else 0} nodes decided before the build, {built} "
                  f"built, {len(outcome.denied)} stopped by the gate, {outcome.events} lineage "
                  "events recorded")
    for uid, node in (plan.nodes.items() if plan else ()):
        status = outcome.status_of(uid) or "not run"
        verdict = "[green]allow[/]" if node.allowed else "[bold red]DENY [/]"
        tier = _tier(gov, node.dataset)
        console.print(f"  {verdict} {node.operation.value:<9} {uid:<46} {status:<8} {tier}")
    for uid, decision in outcome.denied.items():
        console.print(f"\n[bold red]{uid}[/] was stopped before it built:")
        console.print(decision.message, markup=False)
    for uid, message in outcome.violations.items():
        console.print(f"\n[bold red]{uid}[/] violates its declared floor: {message}",
                      markup=False)
    revenue = next((n.dataset.key for u, n in (plan.nodes.items() if plan else ())
                    if u.endswith(".revenue_by_country")), None)
    if revenue:
        console.print("\nLineage of revenue_by_country:")
        console.print(gov.graph.tree(revenue), markup=False)


def _tier(gov: Any, ref: Any) -> str:
    try:
        return str(gov.classification(ref).describe())
    except Exception:  # noqa: BLE001 - a dataset the graph does not know yet
        return "unclassified"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    result = run_demo()
    blocked = sorted(result.denied)
    expected = ["model.lacuna_shop.customer_contacts_export"]
    sys.exit(0 if blocked == expected else 1)
