"""JSON views of the core's objects shared by several routers (and the web page's data)."""

from __future__ import annotations

from typing import Any

from lacuna_orchestration.governor import Governor
from lacuna_orchestration.lineage.graph import DatasetNode
from lacuna_orchestration.model import Decision

__all__ = ["dataset_detail", "dataset_row", "decisions_for", "graph_view"]

DECISION_SCAN = 2000
"""How many recent decisions are searched for the ones about one dataset."""


def tier_of(node: DatasetNode) -> str:
    return "UNKNOWN" if node.effective.is_unknown else node.effective.tier.name


def dataset_row(gov: Governor, node: DatasetNode) -> dict[str, Any]:
    key = node.ref.key
    c = node.effective
    return {
        "key": key,
        "namespace": node.ref.namespace,
        "name": node.ref.name,
        "tier": tier_of(node),
        "tags": c.sorted_tags(),
        "layer": c.layer.value,
        "confidence": c.confidence,
        "columns": len(node.fields),
        "upstream": gov.graph.g.in_degree(key),
        "downstream": gov.graph.g.out_degree(key),
    }


def _labels(node: DatasetNode) -> set[str]:
    """The ways a decision's ``source``/``destination`` text can name this dataset."""
    ref = node.ref
    return {ref.key, ref.name, f"{ref.namespace.rstrip('/')}/{ref.name.lstrip('/')}"}


def decisions_for(gov: Governor, node: DatasetNode, limit: int = 50) -> list[Decision]:
    labels = _labels(node)
    found = []
    for d in gov.catalog.decisions(limit=DECISION_SCAN):
        sources = {s.strip() for s in d.source.split(",")}
        if d.destination in labels or sources & labels:
            found.append(d)
            if len(found) >= limit:
                break
    return found


def dataset_detail(gov: Governor, node: DatasetNode) -> dict[str, Any]:
    key = node.ref.key
    doc = node.to_dict()
    return {
        **dataset_row(gov, node),
        "description": node.description,
        "classification": node.effective.to_dict(),
        "own": doc["own"],
        "explicit": doc["explicit"],
        "fields": doc["fields"],
        "column_classifications": doc["columns"],
        "column_lineage": doc["column_lineage"],
        "upstream_datasets": sorted(gov.graph.g.predecessors(key)),
        "downstream_datasets": sorted(gov.graph.g.successors(key)),
        "edges_in": [
            {"source": src, "operation": data["operation"].value, "job": data.get("job", "")}
            for src, _, data in gov.graph.g.in_edges(key, data=True)
        ],
        "decisions": [d.to_dict() | {"message": d.message} for d in decisions_for(gov, node)],
    }


def graph_view(gov: Governor, center: str | None, depth: int,
               max_nodes: int) -> dict[str, Any]:
    """Nodes and edges around ``center`` (up to ``depth`` both ways), or the whole graph."""
    graph = gov.graph
    if center is None:
        keys = list(graph.g.nodes)
    else:
        keys = list(dict.fromkeys(
            [center, *graph.upstream(center, depth), *graph.downstream(center, depth)]
        ))
    truncated = len(keys) > max_nodes
    keys = keys[:max_nodes]
    chosen = set(keys)
    nodes = [dataset_row(gov, graph.node(k)) for k in keys]
    edges = [
        {"source": s, "target": t, "operation": op.value, "job": job}
        for s, t, op, job in graph.edges()
        if s in chosen and t in chosen
    ]
    return {"center": center, "depth": depth, "nodes": nodes, "edges": edges,
            "truncated": truncated}
