"""Lacuna for Dagster: a resource that turns governance on, a gate that stops a forbidden
materialization before it writes, blocking governance checks, OpenLineage emission into Lacuna,
and tier/tag metadata for the Dagster UI.

Needs the ``dagster`` extra (``pip install "lacuna-orchestration[dagster]"``); Lacuna's core
never imports this package.

>>> import dagster as dg
>>> from lacuna_orchestration.integrations.dagster import (
...     LacunaResource, build_lacuna_checks, governed)
>>> @dg.asset(deps=["regional_summary"],
...           metadata={"lacuna/destination": "file:///tmp/exports/report.csv"})
... @governed
... def report_export() -> None:
...     ...
>>> defs = dg.Definitions(assets=[report_export],
...                       asset_checks=build_lacuna_checks([report_export]),
...                       resources={"lacuna": LacunaResource(environment="production")})
"""

from lacuna_orchestration.integrations.dagster.backend import (
    Backend,
    attach_governor,
    detach_governor,
)
from lacuna_orchestration.integrations.dagster.checks import (
    CHECK_NAME,
    build_lacuna_checks,
    evaluate_output,
)
from lacuna_orchestration.integrations.dagster.definitions import (
    LacunaIOManager,
    governed_definitions,
    governed_resources,
)
from lacuna_orchestration.integrations.dagster.gate import (
    EXCEPTION_TAG,
    PURPOSE_TAG,
    GovernedStep,
    governed,
)
from lacuna_orchestration.integrations.dagster.lineage import (
    DAGSTER_PRODUCER,
    AssetOperation,
    DagsterTranslator,
    DagsterTranslatorSettings,
    LineageEmitter,
    columns_of_value,
    destination_ref,
)
from lacuna_orchestration.integrations.dagster.metadata import (
    TIER_TAG,
    annotate_assets,
    classification_metadata,
    decision_metadata,
    tier_tags,
)
from lacuna_orchestration.integrations.dagster.resource import LacunaResource

__all__ = [
    "CHECK_NAME",
    "DAGSTER_PRODUCER",
    "EXCEPTION_TAG",
    "PURPOSE_TAG",
    "TIER_TAG",
    "AssetOperation",
    "Backend",
    "DagsterTranslator",
    "DagsterTranslatorSettings",
    "GovernedStep",
    "LacunaIOManager",
    "LacunaResource",
    "LineageEmitter",
    "annotate_assets",
    "attach_governor",
    "build_lacuna_checks",
    "classification_metadata",
    "columns_of_value",
    "decision_metadata",
    "destination_ref",
    "detach_governor",
    "evaluate_output",
    "governed",
    "governed_definitions",
    "governed_resources",
    "tier_tags",
]
