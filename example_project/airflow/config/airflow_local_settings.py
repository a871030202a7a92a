"""Airflow cluster policies for the example: every task passes Lacuna's gate before it runs.

Airflow imports ``airflow_local_settings`` from ``$AIRFLOW_HOME/config`` (or anywhere on
``PYTHONPATH``) and applies ``task_policy`` to each task it parses. Lacuna's policy installs a
``pre_execute`` check of the task's inlets → outlets; a denied task fails with the policy
message in its log and never executes.
"""

from __future__ import annotations

from lacuna_orchestration.integrations.airflow.gate import task_policy

__all__ = ["task_policy"]
