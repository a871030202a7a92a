"""The Airflow plugin that registers Lacuna's listener.

Airflow finds it through the ``airflow.plugins`` entry point of lacuna-orchestration (nothing
to copy into ``$AIRFLOW_HOME/plugins``). Loading it must never break the scheduler: if the
listener cannot be imported (a missing dependency, an old Airflow), the plugin registers no
listener and logs one line saying why and what goes unrecorded.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin

__all__ = ["LacunaPlugin"]

log = logging.getLogger(__name__)


def _load_listeners() -> list[Any]:
    try:
        from lacuna_orchestration.integrations.airflow.listener import LacunaListener

        return [LacunaListener()]
    except Exception as err:  # noqa: BLE001 - a plugin must never break the scheduler
        log.error(
            "Lacuna plugin loaded without its listener (%s: %s); Airflow runs normally but "
            "sends no lineage to Lacuna until this is fixed (is lacuna-orchestration[airflow] "
            "installed in this environment?)", type(err).__name__, err,
        )
        return []


class LacunaPlugin(AirflowPlugin):
    """Registers ``LacunaListener`` (task and DAG run events → Lacuna)."""

    name = "lacuna"
    listeners = _load_listeners()
