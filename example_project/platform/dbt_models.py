"""Step 2 of the platform — dbt builds staging views and marts, every model gated by Lacuna.

``build_models`` copies the project (``dbt/`` beside this file) under the run's output folder,
so dbt's ``target/`` and ``logs/`` never land in the source tree and two runs never share them,
points its ``lacuna`` package at this checkout's ``dbt_macros`` (linked, as ``dbt deps`` would
for a local package, which saves an invocation), and runs ``lacuna dbt build`` in process with
the warehouse file the Dagster step wrote.

Two models are stopped by design before they build, each with its policy's message:
``patient_outreach`` (health data for advertising — purpose limitation) and
``marketing_contacts`` (raw personal data into the marketing domain — the marketing steward's
policy). dbt therefore exits 1; anything else denied, or any model that fails, is an error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .config import PlatformPaths

__all__ = ["EXPECTED_DENIED", "PROJECT", "build_models", "unique_id"]

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "dbt"
MACROS = HERE.parents[1] / "dbt_macros"
PROJECT = "lacuna_platform"
EXPECTED_DENIED = frozenset({"patient_outreach", "marketing_contacts"})
_IGNORED = shutil.ignore_patterns("target", "logs", "dbt_packages", "package-lock.yml",
                                  "*.duckdb", "*.wal")


def unique_id(model: str) -> str:
    return f"model.{PROJECT}.{model}"


def prepare_project(paths: PlatformPaths) -> Path:
    """A fresh copy of the project for this run, with the ``lacuna`` package installed."""
    project = paths.dbt_project
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(SOURCE, project, ignore=_IGNORED)
    (project / "packages.yml").write_text(f"packages:\n  - local: {MACROS}\n")
    (project / "dbt_packages").mkdir()
    (project / "dbt_packages" / "lacuna").symlink_to(MACROS, target_is_directory=True)
    return project


def build_models(governor: Any, paths: PlatformPaths, *, user: str) -> Any:
    """``lacuna dbt build`` of the platform project; returns the ``DbtRunOutcome``.

    Raises ``RuntimeError`` naming the model when a model fails or a model other than the two
    expected ones is denied.
    """
    from lacuna_orchestration.integrations.dbt import run_dbt

    project = prepare_project(paths)
    # dbt's own log goes to <project>/logs/dbt.log; the terminal shows Lacuna's summary only
    args = ["--project-dir", str(project), "--profiles-dir", str(project),
            "--log-level", "none",
            "--vars", json.dumps({"platform_duckdb": str(paths.warehouse)})]
    outcome = run_dbt("build", args, governor=governor, user=user)
    denied = {uid.rsplit(".", 1)[-1] for uid in outcome.denied}
    if denied != EXPECTED_DENIED:
        unexpected = sorted(denied ^ EXPECTED_DENIED)
        raise RuntimeError(f"dbt gate decided differently than expected for {unexpected}: "
                           f"denied {sorted(denied) or 'nothing'}")
    failed = [r for r in outcome.results
              if r.status == "error" and r.unique_id not in outcome.denied]
    if failed:
        raise RuntimeError(f"dbt model {failed[0].unique_id} failed: {failed[0].message}")
    return outcome
