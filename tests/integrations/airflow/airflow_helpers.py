"""Builders shared by the Airflow integration tests: real task SDK DAGs, tasks and task
instances (named ``airflow_helpers`` so it never shadows the ``airflow`` package)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Self

import pendulum


def make_ti(task: Any, run_id: str = "manual__2026-01-01T00:00:00+00:00",
            try_number: int = 1) -> Any:
    """A task SDK ``RuntimeTaskInstance`` for ``task`` (what listeners get in a task process).

    ``model_construct`` skips validation: the model refers to types only resolvable inside a
    running task process; every field the integration reads is set here.
    """
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id=task.task_id, dag_id=task.dag_id, run_id=run_id,
        try_number=try_number, map_index=-1, task=task, max_tries=0,
        dag_version_id=uuid.uuid4(), start_date=pendulum.now("UTC"),
    )


def make_context(task: Any, ti: Any) -> dict[str, Any]:
    return {"task": task, "ti": ti, "task_instance": ti, "run_id": ti.run_id}


def new_dag(dag_id: str = "test_dag") -> Any:
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))


# -- real Airflow runs (``airflow dags test`` in a subprocess) ------------------------------------

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "example_project" / "airflow"
PLUGIN_IMPORT = "lacuna_orchestration.integrations.airflow.plugin:LacunaPlugin"


def plugin_entry_point_installed() -> bool:
    """True once pyproject's ``airflow.plugins`` entry point is installed; until then the tests
    load the plugin from a plugins folder, exactly as a user without the entry point would."""
    return any(ep.value == PLUGIN_IMPORT for ep in entry_points(group="airflow.plugins"))


class AirflowHome:
    """One migrated ``AIRFLOW_HOME`` (SQLite metadata) that runs the example DAGs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plugins = root / "plugins"
        self.plugins.mkdir(parents=True, exist_ok=True)
        if not plugin_entry_point_installed():
            (self.plugins / "lacuna_plugin.py").write_text(
                "from lacuna_orchestration.integrations.airflow.plugin import LacunaPlugin"
                "  # noqa: F401\n"
            )

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW", "LACUNA_", "OPENLINEAGE"))}
        base.update({
            "AIRFLOW_HOME": str(self.root),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins),
            "PYTHONPATH": str(EXAMPLE / "config"),  # airflow_local_settings: the gate
        })
        base.update(extra)
        return base

    def airflow(self, *args: str, env: dict[str, str], timeout: float = 120) -> (
        subprocess.CompletedProcess[str]
    ):
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=env, cwd=self.root,
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def migrate(self) -> None:
        done = self.airflow("db", "migrate", env=self.env())
        assert done.returncode == 0, done.stderr[-3000:]

    def task_states(self, dag_id: str) -> dict[str, str]:
        """Task states of the DAG's latest run, from Airflow's own metadata database."""
        with closing(sqlite3.connect(self.root / "airflow.db")) as db:
            (run_id,) = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            rows = db.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ).fetchall()
        return {task_id: state for task_id, state in rows}


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ADMIN_KEY = "lcn_00000000000000ad_" + "B" * 40


class LacunaServer:
    """Lacuna's service (``create_app``) under uvicorn on a free localhost port, in a thread,
    with a ``producer`` API key for Airflow (what a deployment gives its workers)."""

    def __init__(self, database_url: str, policy_dir: Path) -> None:
        from lacuna_orchestration.server.app import create_app
        from lacuna_orchestration.server.config import ServerSettings
        from lacuna_orchestration.settings import Settings

        core = Settings.load(database_url=database_url, policy_dir=str(policy_dir),
                             environment="production")
        self.app = create_app(ServerSettings.load(core=core, bootstrap_admin_key=ADMIN_KEY))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.producer_key = ""

    def __enter__(self) -> Self:
        import threading
        import time

        import uvicorn

        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the Lacuna server did not start")
            time.sleep(0.02)
        self.producer_key = str(self.post("/api/v1/keys", {"role": "producer",
                                                            "name": "airflow"})["key"])
        return self

    def post(self, path: str, body: dict[str, Any], key: str = ADMIN_KEY) -> dict[str, Any]:
        import json
        import urllib.request

        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
        return data

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
