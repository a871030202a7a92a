"""Lacuna for Apache Airflow 3: a listener plugin that feeds Lacuna every task and DAG run, a
``pre_execute`` gate applied by cluster policy, and ``LacunaGateOperator``.

Names are imported on first use, so importing this package (as Airflow's plugin loader does)
costs nothing and never fails because an optional part cannot load.

>>> from lacuna_orchestration.integrations.airflow import LacunaGateOperator  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lacuna_orchestration.integrations.airflow.backend import Backend, get_backend
    from lacuna_orchestration.integrations.airflow.facets import LacunaRunFacet, lacuna_run_facets
    from lacuna_orchestration.integrations.airflow.gate import (
        LacunaGateOperator,
        TaskGate,
        apply_gate,
        task_policy,
    )
    from lacuna_orchestration.integrations.airflow.listener import LacunaListener
    from lacuna_orchestration.integrations.airflow.plugin import LacunaPlugin
    from lacuna_orchestration.integrations.airflow.translator import (
        AirflowTranslator,
        AirflowTranslatorSettings,
        TaskLineage,
    )

__all__ = [
    "AirflowTranslator",
    "AirflowTranslatorSettings",
    "Backend",
    "LacunaGateOperator",
    "LacunaListener",
    "LacunaPlugin",
    "LacunaRunFacet",
    "TaskGate",
    "TaskLineage",
    "apply_gate",
    "get_backend",
    "lacuna_run_facets",
    "task_policy",
]

_HOMES = {
    "AirflowTranslator": "translator",
    "AirflowTranslatorSettings": "translator",
    "TaskLineage": "translator",
    "Backend": "backend",
    "get_backend": "backend",
    "LacunaGateOperator": "gate",
    "TaskGate": "gate",
    "apply_gate": "gate",
    "task_policy": "gate",
    "LacunaListener": "listener",
    "LacunaPlugin": "plugin",
    "LacunaRunFacet": "facets",
    "lacuna_run_facets": "facets",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
