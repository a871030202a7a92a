"""The same platform against a running Lacuna service — the "service" variant of the story
(``python example_project/demo.py --service``).

A ``lacuna dev`` server starts in a child process with a fresh SQLite store under
``<out>/service``; each orchestrator then reaches it by URL with an API key of its own, exactly
as it would be configured on a real deployment, and nothing in this process opens a governor:

* Dagster: ``LacunaResource(url=..., api_key=...)`` (the platform's subclass, for its names);
* dbt: ``lacuna dbt build`` with a ``RemoteGovernor`` (what ``lacuna dbt --url`` uses);
* Airflow: the integration's remote backend (what ``[lacuna] server_url`` opens on a worker).

The in-process story's steps are reused where they do not depend on the governor's object
(the exports, scratch space). The exception cannot use the in-process story's movable clock —
the server keeps real time — so the steward approves it for ``EXCEPTION_SECONDS`` and the story
waits until it has run out. Finally the lineage, the decisions, the audit chain and the ISO
27001 report are read back through the HTTP API only: what a user of the service sees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import networkx as nx

from lacuna_orchestration.model import DatasetRef, Decision, parse_timestamp, utcnow

from . import airflow_exports as af
from .config import ANALYST, GOVERNED_EXPORT, PARTNER_EXPORT, SCHEDULER, STEWARD, PlatformPaths
from .service import DevServer, LacunaApi
from .story import Step, export_marts, export_under_exception, scratch_space

__all__ = ["AUDITOR", "EXCEPTION_SECONDS", "ServiceRun", "lineage_tree", "run_all", "steps"]

EXCEPTION_SECONDS = 8.0
AUDITOR = "auditor@example.com"
# Who gets a key: each orchestrator (producer), the analyst who asks for the exception and
# for the scratch-space checks, the steward who approves it, and an auditor who reads.
KEYS: tuple[tuple[str, str], ...] = (
    ("producer", "dagster"), ("producer", "dbt"), ("producer", "airflow"),
    ("producer", ANALYST), ("steward", STEWARD), ("auditor", AUDITOR),
)


@dataclass
class ServiceRun:
    """Everything the service variant produced, read back from the server where it can be."""

    paths: PlatformPaths
    server: DevServer | None = None
    url: str = ""
    keys: dict[str, str] = field(default_factory=dict, repr=False)
    server_exit: int | None = None
    dagster: Any = None
    dbt: Any = None
    pii_export: af.TaskRun | None = None
    revenue_export: af.TaskRun | None = None
    exception: dict[str, Any] = field(default_factory=dict)
    pii_export_under_exception: af.TaskRun | None = None
    pii_export_after_expiry: af.TaskRun | None = None
    scratch_in_development: Decision | None = None
    scratch_in_production: Decision | None = None
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, Any]] = field(default_factory=list)
    export_upstream: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        """The server's folder: its SQLite store, its log."""
        return self.paths.out / "service"

    def table(self, model: str) -> DatasetRef:
        return self.paths.table(model)

    def api(self, name: str) -> LacunaApi:
        """The HTTP API as the holder of ``name``'s key sees it."""
        return LacunaApi(self.url, self.keys[name])

    def graph(self) -> nx.DiGraph:
        """The lineage read back from ``GET /api/v1/lineage/graph``, as a networkx graph."""
        g = nx.DiGraph()
        g.add_nodes_from(self.datasets)
        for edge in self.edges:
            g.add_edge(edge["source"], edge["target"], job=edge["job"],
                       operation=edge["operation"])
        return g

    def close(self) -> None:
        """Stop the server (also after a failed step); safe to call twice."""
        if self.server is not None:
            self.server_exit = self.server.stop()
            self.server = None


# -- the steps ---------------------------------------------------------------------------------

def _start(run: ServiceRun) -> None:
    run.server = DevServer(run.state_dir)
    run.server.start()
    run.url = run.server.url
    admin = LacunaApi(run.url, run.server.admin_key)
    run.keys = {name: admin.create_key(role, name) for role, name in KEYS}


def _dagster(run: ServiceRun) -> None:
    from .dagster_sources import load_sources_via_server

    run.dagster = load_sources_via_server(run.url, run.keys["dagster"], run.paths,
                                          user=SCHEDULER)


def _dbt(run: ServiceRun) -> None:
    from lacuna_orchestration.client import RemoteGovernor

    from .dbt_models import build_models

    remote = RemoteGovernor(run.url, api_key=run.keys["dbt"], timeout_s=30.0)
    run.dbt = build_models(remote, run.paths, user=SCHEDULER)
    if run.dbt.emit_errors:
        raise RuntimeError(f"dbt's lineage did not reach the server: {run.dbt.emit_errors[0]}")


def _airflow(run: ServiceRun) -> None:
    export_marts(run, af.server_backend(run.url, run.keys["airflow"], user=SCHEDULER))


def _exception(run: ServiceRun) -> None:
    """Request (analyst) → approve for a few real seconds (steward) → the export runs → wait
    until the approval has run out → the export is blocked again."""
    analyst, steward = run.api(ANALYST), run.api(STEWARD)
    requested = analyst.post("/api/v1/exceptions", {
        "operation_kind": "export", "sources": [run.table("customer_transactions").key],
        "destination": DatasetRef("file", PARTNER_EXPORT).key, "purpose": "analytics",
        "justification": "quarterly reconciliation the partner must receive this week",
        "approver": STEWARD,
    })
    run.exception = steward.post(f"/api/v1/exceptions/{requested['id']}/approve",
                                 {"duration_days": EXCEPTION_SECONDS / 86400})
    backend = af.server_backend(run.url, run.keys["airflow"], user=SCHEDULER)
    export_under_exception(
        run, backend, lambda: _wait_until(parse_timestamp(run.exception["valid_until"])),
        hint=f" (approved for {EXCEPTION_SECONDS:g} s; a slow machine may outlast it)")


def _wait_until(moment: datetime, margin_s: float = 0.5) -> None:
    """Sleep until ``moment`` (the server's clock is this machine's) has passed."""
    remaining = (moment - utcnow()).total_seconds() + margin_s
    if remaining > 0:
        time.sleep(remaining)


def _scratch(run: ServiceRun) -> None:
    from lacuna_orchestration.client import RemoteGovernor

    scratch_space(run, RemoteGovernor(run.url, api_key=run.keys[ANALYST], timeout_s=30.0).check)


def _read_back(run: ServiceRun) -> None:
    """The lineage, tiers and decisions as the read API returns them; insists on one graph
    from a Dagster raw table through dbt to the Airflow export."""
    reader = run.api(AUDITOR)
    listed = reader.get("/api/v1/datasets", limit=1000)
    run.datasets = {row["key"]: row for row in listed["datasets"]}
    run.edges = list(reader.get("/api/v1/lineage/graph", max_nodes=5000)["edges"])
    export = DatasetRef("file", GOVERNED_EXPORT).key
    upstream = reader.get("/api/v1/lineage/upstream", dataset=export, depth=50)
    run.export_upstream = [row["key"] for row in upstream["datasets"]]
    decided = reader.get("/api/v1/decisions", limit=2000)["decisions"]
    run.decisions = [Decision.from_dict(d) for d in decided]
    raw = run.paths.raw("transactions").key
    if raw not in run.export_upstream or not nx.has_path(run.graph(), raw, export):
        raise RuntimeError(f"the server's lineage has no path from {raw} to {export}")


def _verify(run: ServiceRun) -> None:
    auditor = run.api(AUDITOR)
    run.verification = auditor.get("/api/v1/audit/verify")
    if not run.verification.get("ok"):
        raise RuntimeError(str(run.verification.get("message") or "audit chain broken"))
    run.report = auditor.get("/api/v1/reports/iso27001-a94")
    run.paths.report_json.write_text(json.dumps(run.report, indent=2, default=str))
    run.paths.report_html.write_text(auditor.text("/api/v1/reports/iso27001-a94",
                                                  format="html"))


def steps() -> Iterator[Step[ServiceRun]]:
    """The service variant in order; ``hint`` is what to run when that step fails."""
    yield Step("Start `lacuna dev` (SQLite store under out/service, embedded Rego)", _start,
               "look at <out>/service/server.log, or run `lacuna dev --state-dir /tmp/lacuna` "
               "by hand")
    yield Step("Dagster → server: load the raw sources (LacunaResource(url=...))", _dagster,
               "run `python example_project/dagster/run_demo.py` to check the Dagster setup")
    yield Step("dbt → server: `lacuna dbt build` with a remote governor", _dbt,
               "look at <out>/dbt/logs/dbt.log, or `pytest tests/integrations/dbt/"
               "test_dbt_remote.py -q`")
    yield Step("Airflow → server: export the marts (the plugin's HTTP backend)", _airflow,
               "run `pytest tests/integrations/airflow -q` to check the Airflow integration")
    yield Step(f"A steward's exception over HTTP: allowed, then expired "
               f"(real time: {EXCEPTION_SECONDS:g} s)", _exception,
               "look at GET /api/v1/exceptions, or run the in-process demo "
               "(`python example_project/demo.py`)")
    yield Step("Scratch space: /tmp in development only (POST /api/v1/check)", _scratch,
               "run `lacuna policy test`")
    yield Step("Read the lineage back (GET /api/v1/datasets, /api/v1/lineage/...)", _read_back,
               "open the server's /lineage view, or look at <out>/service/server.log")
    yield Step("Verify the audit chain and fetch the ISO 27001 A.9.4 report over HTTP", _verify,
               "run `lacuna audit verify` against <out>/service/dev.db")


def run_all(out: Path | str,
            on_step: Callable[[Step[ServiceRun]], None] | None = None) -> ServiceRun:
    """Every step in order, the server stopped at the end (no progress display; exceptions
    propagate): for tests."""
    run = ServiceRun(PlatformPaths.under(out))
    try:
        for step in steps():
            if on_step is not None:
                on_step(step)
            step.run(run)
    finally:
        run.close()
    return run


# -- showing the read-back ---------------------------------------------------------------------

def _label(row: dict[str, Any] | None, key: str) -> str:
    if row is None:
        return f"{key} (not in the catalog)"
    if row["tier"] == "UNKNOWN":
        return f"{row['name']} (unclassified)"
    tags = f", tags: {', '.join(row['tags'])}" if row["tags"] else ""
    return f"{row['name']} ({row['tier']}{tags})"


def lineage_tree(datasets: dict[str, dict[str, Any]], edges: list[dict[str, Any]],
                 root: str, depth: int = 10) -> str:
    """The upstream tree of ``root`` with tiers, from the read API's rows and edges — the same
    picture ``LineageGraph.tree`` draws in process, so the two variants read alike."""
    parents: dict[str, list[str]] = {}
    for edge in edges:
        parents.setdefault(edge["target"], []).append(edge["source"])
    lines = [_label(datasets.get(root), root)]

    def walk(key: str, prefix: str, level: int, path: frozenset[str]) -> None:
        if level >= depth:
            return
        above = sorted(set(parents.get(key, ())))
        for i, parent in enumerate(above):
            last = i == len(above) - 1
            branch = "└─ " if last else "├─ "
            cycle = " (cycle)" if parent in path else ""
            lines.append(f"{prefix}{branch}{_label(datasets.get(parent), parent)}{cycle}")
            if not cycle:
                walk(parent, prefix + ("   " if last else "│  "), level + 1, path | {parent})

    walk(root, "", 0, frozenset({root}))
    return "\n".join(lines)

