"""Memory: resident set size with 100,000 datasets loaded, governor and server.

Target (issue 11): < 1 GB.

The synthetic warehouse graph (``synthetic.build_graph``: 100k datasets, ~208k edges, every
dataset with its columns, column classifications, own and effective classification and their
evidence — ~3 KB of JSON each) is written into a fresh PostgreSQL schema. Then, each in a fresh
process so nothing else shares its heap:

* ``governor`` imports the package, opens a ``Governor`` on an empty tenant (the baseline:
  interpreter + libraries + policy engine + classifier), then opens one on the 100k tenant —
  ``CatalogStore.load`` builds the in-memory graph — and reads its RSS after a full GC;
* ``server``   (when ``lacuna_orchestration.server`` exists) starts ``create_app`` under
  uvicorn on the same store, makes the tenant's governor load with one authenticated request,
  and reads the server process's RSS; the baseline is the same server before that request.

    python benchmarks/bench_memory.py            # 100k datasets
    python benchmarks/bench_memory.py --tiny     # 2,000 datasets (the harness's test)
    python benchmarks/bench_memory.py --ab       # and the load as it was before, for comparison
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PG_URL, ROOT, Check, Row, pg_reachable, print_rows, rss_mb, write_results

TARGET_MB = 1024.0
TENANT = "default"
ADMIN_KEY = "lacuna-bench-" + uuid.uuid4().hex


def _load_as_before(catalog: Any, graph: Any) -> Any:
    """``CatalogStore.load`` as it was before streaming and sharing (the ``--ab`` baseline):
    every document fetched at once, every value decoded into its own objects."""
    import orjson
    from sqlalchemy import select

    from lacuna_orchestration.catalog import datasets_table, edges_table
    from lacuna_orchestration.lineage.graph import DatasetNode
    from lacuna_orchestration.model import OperationKind

    with catalog.engine.connect() as conn:
        for (doc,) in conn.execute(select(datasets_table.c.document).where(
                datasets_table.c.tenant == catalog.tenant)):
            graph.put(DatasetNode.from_dict(orjson.loads(doc)))
        for src, dst, op, job in conn.execute(select(
                edges_table.c.src, edges_table.c.dst, edges_table.c.operation,
                edges_table.c.job).where(edges_table.c.tenant == catalog.tenant)):
            graph.g.add_edge(src, dst, operation=OperationKind(op), job=job)
    return graph


def child_governor(schema: str, previous: bool = False) -> dict[str, Any]:
    """Runs in a fresh process: RSS of an empty governor, then of one holding the catalog."""
    from lacuna_orchestration.governor import Governor

    if previous:
        from lacuna_orchestration.catalog import CatalogStore

        CatalogStore.load = _load_as_before  # type: ignore[method-assign]

    policies = str(ROOT / "policies")
    with Governor.open(database_url=PG_URL, database_schema=schema, tenant="empty",
                       policy_dir=policies) as empty:
        gc.collect()
        empty_mb = rss_mb()
        assert len(empty.graph) == 0
    start = time.perf_counter()
    gov = Governor.open(database_url=PG_URL, database_schema=schema, tenant=TENANT,
                        policy_dir=policies)
    load_s = time.perf_counter() - start
    gc.collect()
    loaded_mb = rss_mb()
    datasets, edges = len(gov.graph), gov.graph.g.number_of_edges()
    gov.close()
    return {"empty_mb": empty_mb, "loaded_mb": loaded_mb, "load_s": load_s,
            "datasets": datasets, "edges": edges}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


SERVER_MAIN = """
import sys, uvicorn
from lacuna_orchestration.server.app import create_app
from lacuna_orchestration.server.config import ServerSettings
from lacuna_orchestration.settings import Settings
url, schema, port, key, policies = sys.argv[1:6]
core = Settings.load(database_url=url, database_schema=schema, policy_dir=policies)
app = create_app(ServerSettings.load(core=core, port=int(port), bootstrap_admin_key=key,
                                     bootstrap_tenant="default"))
uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")
"""


def _get(url: str, key: str | None = None, timeout: float = 120.0) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key
                                     else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
        return int(response.status)


def server_rss(schema: str, dataset: str) -> dict[str, Any]:
    """Start the service on the store, load the tenant with one request, read its RSS."""
    try:
        import lacuna_orchestration.server.app  # noqa: F401
    except ImportError as err:
        return {"error": f"the server does not import yet: {err}"}
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_MAIN, PG_URL, schema, str(port), ADMIN_KEY,
         str(ROOT / "policies")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                out = (proc.stdout.read() if proc.stdout else "").strip().splitlines()
                return {"error": f"the server exited: {out[-1] if out else proc.returncode}"}
            try:
                _get(f"{base}/healthz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    return {"error": "the server did not answer /healthz within 90 s"}
                time.sleep(0.3)
        idle_mb = _process_rss_mb(proc.pid)
        start = time.perf_counter()
        quoted = urllib.request.quote(dataset, safe="")
        try:
            _get(f"{base}/api/v1/datasets/{quoted}", ADMIN_KEY)
        except OSError as err:
            return {"error": f"GET /api/v1/datasets/<key> failed: {err}"}
        load_s = time.perf_counter() - start
        time.sleep(0.5)
        return {"idle_mb": idle_mb, "loaded_mb": _process_rss_mb(proc.pid), "load_s": load_s}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(nodes: int, ab: bool = False) -> dict[str, Any]:
    from synthetic import build_graph, copy_into_catalog

    from lacuna_orchestration.db import make_engine

    graph = build_graph(nodes)
    dataset = next(iter(graph.g.nodes))
    schema = f"bench_memory_{uuid.uuid4().hex[:10]}"
    engine = make_engine(PG_URL, schema=schema)
    try:
        copy_into_catalog(engine, graph, TENANT)
        del graph
        gc.collect()
        governor = _child(schema, "--child")
        previous = _child(schema, "--child-previous") if ab else None
        server = server_rss(schema, dataset)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
    return {"nodes": nodes, "governor": governor, "server": server, "previous": previous}


def _child(schema: str, flag: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, flag, schema], cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"governor child failed: {done.stderr.strip()[-500:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def rows_of(report: dict[str, Any]) -> list[Row]:
    n = report["nodes"]
    label = f"{n // 1000}k" if n >= 1000 else str(n)
    checks = (Check("ours", "<", TARGET_MB),)
    gov = report["governor"]
    per = (gov["loaded_mb"] - gov["empty_mb"]) * 1024 * 1024 / max(1, gov["datasets"])
    rows = [Row(
        f"memory: governor RSS with {label} datasets loaded", "MB", gov["loaded_mb"],
        baseline=gov["empty_mb"], baseline_label="empty governor, same process",
        ratio_label="loaded / empty", checks=checks,
        note=f"{per / 1024:.1f} KB per dataset; loaded from PostgreSQL in {gov['load_s']:.1f} s",
    )]
    before = report.get("previous")
    if before:
        rows.append(Row(
            f"memory: governor RSS, {label} datasets, loaded as before (no streaming/sharing)",
            "MB", before["loaded_mb"], baseline=gov["loaded_mb"],
            baseline_label="streamed + shared (now)", ratio_label="before / now",
            note=f"loaded in {before['load_s']:.1f} s"))
    server = report["server"]
    metric = f"memory: server RSS with {label} datasets loaded"
    if "error" in server:
        rows.append(Row.not_run(metric, server["error"], unit="MB", checks=checks))
    else:
        rows.append(Row(metric, "MB", server["loaded_mb"], baseline=server["idle_mb"],
                        baseline_label="server before the tenant loaded",
                        ratio_label="loaded / idle", checks=checks,
                        note=f"first request (tenant load) {server['load_s']:.1f} s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2,000 datasets")
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--ab", action="store_true",
                        help="also load the way CatalogStore.load did before (before/after)")
    parser.add_argument("--child", metavar="SCHEMA", help=argparse.SUPPRESS)
    parser.add_argument("--child-previous", metavar="SCHEMA", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.child_previous:
        print(json.dumps(child_governor(args.child or args.child_previous,
                                        previous=bool(args.child_previous))))
        return
    if reason := pg_reachable():
        raise SystemExit(f"PostgreSQL unreachable at {PG_URL}: {reason}")
    report = run(args.nodes or (2_000 if args.tiny else 100_000), ab=args.ab)
    rows = rows_of(report)
    print_rows(rows, f"memory with {report['nodes']:,} datasets loaded (RSS, fresh processes, "
                     f"pid {os.getpid()} parent)")
    print(f"wrote {write_results('memory', rows, report)}")


if __name__ == "__main__":
    main()
