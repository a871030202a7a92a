"""The read API over the catalog and lineage graph, and steward overrides.

Datasets are named by key (``namespace::name``) or by a name the graph resolves unambiguously;
keys contain ``/`` and ``:``, so lineage queries take the dataset as a query parameter.
Walks are depth-limited (``depth`` 1–``MAX_DEPTH``) so a question about a hub of a large
catalog stays cheap.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from lacuna_orchestration.errors import NotFound
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.server.deps import AppState, Caller, app_state, graph_lock
from lacuna_orchestration.server.responses import JSON
from lacuna_orchestration.server.schemas import OverrideRequest
from lacuna_orchestration.server.views import dataset_detail, dataset_row, graph_view

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["catalog and lineage"])

MAX_DEPTH = 50
MAX_PAGE = 1000
Depth = Annotated[int, Query(ge=1, le=MAX_DEPTH, description="How many edges to follow.")]
DatasetParam = Annotated[str, Query(min_length=1, description="Key (ns::name) or name.")]


def _gov(request: Request, tenant: str) -> Governor:
    state: AppState = app_state(request)
    return state.governors.get(tenant)


@router.get("/datasets", summary="Datasets with their classification")
def list_datasets(
    request: Request, who: Caller.CATALOG_READ,
    tier: Annotated[str | None, Query(description="PUBLIC, INTERNAL, PROPRIETARY, UNKNOWN")] = None,
    tag: str | None = None,
    q: Annotated[str | None, Query(description="Substring of the key.")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> JSON:
    gov = _gov(request, who.tenant)
    with graph_lock(gov):
        rows = [dataset_row(gov, n) for n in gov.graph.nodes()]
    rows.sort(key=lambda r: r["key"])
    if tier:
        rows = [r for r in rows if r["tier"] == tier.upper()]
    if tag:
        wanted = tag.upper()
        rows = [r for r in rows if wanted in r["tags"]]
    if q:
        rows = [r for r in rows if q.lower() in r["key"].lower()]
    return JSON({"total": len(rows), "offset": offset, "limit": limit,
                 "datasets": rows[offset:offset + limit]})


@router.get("/datasets/{dataset:path}",
            summary="One dataset: classification with evidence, columns, lineage, decisions")
def get_dataset(request: Request, dataset: str, who: Caller.CATALOG_READ) -> JSON:
    gov = _gov(request, who.tenant)
    with graph_lock(gov):
        node = gov.graph.node(gov.graph.resolve(dataset))
        return JSON(dataset_detail(gov, node))


def _walk(request: Request, tenant: str, dataset: str, direction: str,
          depth: int) -> dict[str, Any]:
    gov = _gov(request, tenant)
    with graph_lock(gov):
        key = gov.graph.resolve(dataset)
        walk = gov.graph.upstream if direction == "upstream" else gov.graph.downstream
        keys = walk(key, depth)
        return {"dataset": key, "direction": direction, "depth": depth,
                "datasets": [dataset_row(gov, gov.graph.node(k)) for k in keys]}


@router.get("/lineage/upstream", summary="Datasets a dataset is derived from")
def upstream(request: Request, who: Caller.CATALOG_READ, dataset: DatasetParam,
             depth: Depth = 10) -> JSON:
    return JSON(_walk(request, who.tenant, dataset, "upstream", depth))


@router.get("/lineage/downstream", summary="Datasets derived from a dataset")
def downstream(request: Request, who: Caller.CATALOG_READ, dataset: DatasetParam,
               depth: Depth = 10) -> JSON:
    return JSON(_walk(request, who.tenant, dataset, "downstream", depth))


@router.get("/lineage/impact", summary="What a change to a dataset touches, by tier")
def impact(request: Request, who: Caller.CATALOG_READ, dataset: DatasetParam,
           depth: Depth = MAX_DEPTH) -> JSON:
    gov = _gov(request, who.tenant)
    with graph_lock(gov):
        key = gov.graph.resolve(dataset)
        keys = gov.graph.downstream(key, depth)
        by_tier: dict[str, list[str]] = {}
        for k in keys:
            by_tier.setdefault(dataset_row(gov, gov.graph.node(k))["tier"], []).append(k)
        return JSON({"dataset": key, "depth": depth, "count": len(keys), "datasets": keys,
                     "by_tier": by_tier})


@router.get("/lineage/columns", summary="Column-level lineage: the columns feeding one column")
def column_lineage(request: Request, who: Caller.CATALOG_READ, dataset: DatasetParam,
                   column: Annotated[str, Query(min_length=1)]) -> JSON:
    gov = _gov(request, who.tenant)
    with graph_lock(gov):
        key = gov.graph.resolve(dataset)
        node = gov.graph.node(key)
        known = {f.name for f in node.fields} | set(node.column_lineage)
        if column not in known:
            raise NotFound(f"dataset {key} has no column {column!r}")
        sources = gov.graph.column_upstream(key, column)
        column_c = node.columns.get(column)
        return JSON({
            "dataset": key, "column": column,
            "classification": column_c.to_dict() if column_c else None,
            "upstream": [{"dataset": d, "column": c, "transformation": t}
                         for d, c, t in sources],
        })


@router.get("/lineage/graph", summary="Nodes and edges (the web view's data)")
def lineage_graph(request: Request, who: Caller.CATALOG_READ,
                  dataset: Annotated[str | None, Query()] = None, depth: Depth = 3,
                  max_nodes: Annotated[int, Query(ge=1, le=5000)] = 500) -> JSON:
    gov = _gov(request, who.tenant)
    with graph_lock(gov):
        center = gov.graph.resolve(dataset) if dataset else None
        return JSON(graph_view(gov, center, depth, max_nodes))


@router.post("/overrides", summary="Steward override of a dataset's classification (audited)")
async def override(request: Request, body: OverrideRequest, who: Caller.OVERRIDE) -> JSON:
    gov = await run_in_threadpool(_gov, request, who.tenant)
    result = await run_in_threadpool(
        gov.override, body.dataset, tier=body.tier, tags=body.tags, steward=who.name,
        reason=body.reason, via=who.via,
    )
    key = gov.graph.resolve(body.dataset)
    return JSON({"dataset": key, "classification": result.to_dict()})

