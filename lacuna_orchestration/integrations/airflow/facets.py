"""The ``lacuna`` run facet for Airflow's OpenLineage provider.

When the provider's HTTP transport posts straight to a Lacuna server, the provider knows a
task's inputs and outputs but not what the task does to them; Lacuna's inheritance rules and
policies need that (an ``aggregate`` lowers a tier, an ``export`` is what the export policy
judges). Naming this function in the provider's ``custom_run_facets`` option adds the same
``lacuna`` facet the in-process listener writes::

    [openlineage]
    custom_run_facets = lacuna_orchestration.integrations.airflow.facets.lacuna_run_facets

The provider calls it with the task instance and its state and merges the result into the
run facets; an exception here is logged by the provider and never fails the task.
"""

from __future__ import annotations

from typing import Any

import attr
from openlineage.client.facet_v2 import RunFacet

from lacuna_orchestration.integrations.airflow.translator import load_translator
from lacuna_orchestration.lineage.events import LACUNA_FACET_SCHEMA, PRODUCER

__all__ = ["LacunaRunFacet", "lacuna_run_facets"]

FACET_KEY = "lacuna"


@attr.define
class LacunaRunFacet(RunFacet):
    """What the run does (``operation``), for whom (``user``) and why (``purpose``)."""

    operation: str
    user: str | None = attr.field(default=None)
    purpose: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return LACUNA_FACET_SCHEMA


def lacuna_run_facets(task_instance: Any, ti_state: Any = None) -> dict[str, RunFacet]:
    """``{"lacuna": LacunaRunFacet(...)}`` for the task of ``task_instance`` (the provider's
    ``custom_run_facets`` signature); ``{}`` when the task object is not available."""
    task = getattr(task_instance, "task", None)
    if task is None:
        return {}
    translator = load_translator()
    return {
        FACET_KEY: LacunaRunFacet(
            operation=translator.get_operation(task).value,
            user=translator.get_user(task) or None,
            purpose=translator.get_purpose(task) or None,
            producer=PRODUCER,
        )
    }
