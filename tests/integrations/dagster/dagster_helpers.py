"""Helpers shared by the Dagster integration tests (a unique module name: several test folders
have a conftest.py, and ``import conftest`` would pick whichever was loaded last)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"
EXAMPLE = REPO / "example_project" / "dagster"

# Dagster's console logger prints every event; the assertions read the events instead.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _load(name: str, path: Path) -> ModuleType:
    """Import an example file under a name of its own (``definitions`` is too common)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


example = _load("lacuna_dagster_example_definitions", EXAMPLE / "definitions.py")
demo = _load("lacuna_dagster_example_run_demo", EXAMPLE / "run_demo.py")
build_assets = example.build_assets
build_definitions = example.build_definitions
export_path = example.export_path


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Asset key → its materialization metadata (plain values)."""
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {
            k: getattr(v, "value", v) for k, v in mat.metadata.items()
        }
    return out


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """Asset key → its governance check evaluation."""
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            out[data.asset_key.to_user_string()] = data
    return out


def failure_message(result: dg.ExecuteInProcessResult, step_key: str) -> str:
    """The text of the ``dg.Failure`` that failed ``step_key`` ('' when it did not fail)."""
    for event in result.all_events:
        if event.is_step_failure and event.step_key == step_key:
            error = event.event_specific_data.error
            while error is not None:
                if error.cls_name == "Failure":
                    return error.message
                error = error.cause
            return event.event_specific_data.error.message
    return ""
