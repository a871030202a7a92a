"""A picture of the lineage graph: a self-contained SVG with nodes coloured by tier.

Why our own renderer: the picture is one file a reviewer opens in a browser, and Graphviz or
matplotlib would be a heavy dependency for a dozen boxes. The layout is the classic layered
one, kept deliberately simple:

* each dataset sits in a column given by its *depth*: the longest chain of edges from a dataset
  with no parent (computed over the condensation, so a cycle never loops; its members share a
  column);
* within a column, datasets are ordered by the mean row of their parents (one sweep, enough to
  keep edges from crossing much in pipeline-shaped graphs), then by key, so the same graph
  always gives the same picture;
* a node is a rounded box filled by its effective tier, with its short name on the first line
  and tier + tags on the second; an edge is a cubic curve from the right side of the parent to
  the left side of the child, with an arrow head, its operation in a ``<title>`` tooltip.

Every node group carries ``data-key`` and ``data-tier``, every edge ``data-source``,
``data-target`` and ``data-operation``, so tests (and scripts) can read the picture back.

>>> from lacuna_orchestration.lineage.graph import LineageGraph
>>> from lacuna_orchestration.model import DatasetRef, OperationKind
>>> g = LineageGraph()
>>> g.add_edge(DatasetRef("f", "a"), DatasetRef("f", "b"), OperationKind.JOIN)
True
>>> render_svg(g).startswith("<svg")
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import networkx as nx

from lacuna_orchestration.errors import NotFound
from lacuna_orchestration.lineage.graph import LineageGraph
from lacuna_orchestration.model import Classification, Tier

__all__ = ["TIER_COLOURS", "UNCLASSIFIED_COLOUR", "NodeBox", "layout", "render_svg"]

TIER_COLOURS: Mapping[Tier, str] = {
    Tier.PUBLIC: "#cdebd3",  # green: may go anywhere
    Tier.INTERNAL: "#fde7b0",  # amber: stays inside the organisation
    Tier.PROPRIETARY: "#f6c1bd",  # red: personal, regulated or confidential
}
UNCLASSIFIED_COLOUR = "#e3e6ee"  # grey: unknown is not PUBLIC, and the picture says so
STROKE = "#5b6275"
TEXT = "#1d2330"

CHAR_W = 6.6  # average advance of the 11-12 px sans-serif font, for box widths
NODE_H = 44
MIN_NODE_W = 120
MAX_LABEL = 64  # longer names and tag lists are shortened with an ellipsis (the tooltip
#                 keeps the full text)
COL_GAP = 70
ROW_GAP = 18
MARGIN = 20
LEGEND_H = 34


@dataclass(frozen=True, slots=True)
class NodeBox:
    """Where one dataset is drawn and what it says."""

    key: str
    title: str
    subtitle: str
    tooltip: str
    fill: str
    tier: str
    x: float
    y: float
    width: float
    height: float = NODE_H


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _subtitle(c: Classification) -> str:
    if c.is_unknown:
        return "unclassified"
    return c.describe().replace(", tags: ", " · ")


def _fill(c: Classification) -> tuple[str, str]:
    if c.is_unknown:
        return UNCLASSIFIED_COLOUR, "UNCLASSIFIED"
    return TIER_COLOURS[c.tier], c.tier.name


def _depths(sub: nx.DiGraph) -> dict[str, int]:
    """Longest path from a root, per node; members of a cycle share their component's depth."""
    cond = nx.condensation(sub)
    component_depth: dict[int, int] = {}
    for comp in nx.topological_sort(cond):
        parents = list(cond.predecessors(comp))
        component_depth[comp] = 1 + max((component_depth[p] for p in parents), default=-1)
    mapping: Mapping[str, int] = cond.graph["mapping"]
    return {node: component_depth[mapping[node]] for node in sub.nodes}


def layout(graph: LineageGraph, keys: Iterable[str] | None = None) -> tuple[
    list[NodeBox], list[tuple[str, str, str]], float, float
]:
    """Boxes, edges ``(source, target, operation)`` and the canvas size for ``keys`` (all
    datasets when None). Raises ``NotFound`` naming a key the graph does not hold."""
    wanted = list(dict.fromkeys(keys)) if keys is not None else list(graph.g.nodes)
    for key in wanted:
        if key not in graph:
            raise NotFound(f"unknown dataset {key!r}: it is not in the lineage graph")
    sub = graph.g.subgraph(wanted)
    depths = _depths(sub)
    columns: dict[int, list[str]] = {}
    for key in sorted(wanted):
        columns.setdefault(depths[key], []).append(key)

    row_of: dict[str, float] = {}
    for depth in sorted(columns):
        def parent_rank(k: str) -> tuple[float, str]:
            rows = [row_of[p] for p in sub.predecessors(k) if p in row_of]
            return (sum(rows) / len(rows) if rows else float("inf"), k)

        columns[depth].sort(key=parent_rank)
        for row, key in enumerate(columns[depth]):
            row_of[key] = float(row)

    labels: dict[str, tuple[str, str, str, str, str]] = {}
    widths: dict[int, float] = {}
    for key in wanted:
        node = graph.node(key)
        c = node.effective
        title, subtitle = _clip(node.ref.short_name), _clip(_subtitle(c))
        fill, tier = _fill(c)
        labels[key] = (title, subtitle, fill, tier, f"{key}\n{_subtitle(c)}")
        width = max(MIN_NODE_W, CHAR_W * max(len(title), len(subtitle)) + 20)
        widths[depths[key]] = max(widths.get(depths[key], 0.0), width)

    boxes: list[NodeBox] = []
    x = float(MARGIN)
    tallest = 0
    for depth in sorted(columns):
        for row, key in enumerate(columns[depth]):
            title, subtitle, fill, tier, tooltip = labels[key]
            y = MARGIN + LEGEND_H + row * (NODE_H + ROW_GAP)
            boxes.append(NodeBox(key, title, subtitle, tooltip, fill, tier, x, y,
                                 widths[depth]))
        tallest = max(tallest, len(columns[depth]))
        x += widths[depth] + COL_GAP
    width = max(x - COL_GAP + MARGIN, 2 * MARGIN + 420.0)
    height = MARGIN * 2 + LEGEND_H + max(tallest, 1) * (NODE_H + ROW_GAP) - ROW_GAP
    edges = sorted((src, dst, data["operation"].value) for src, dst, data in sub.edges(data=True))
    return boxes, edges, width, height


def _legend() -> list[str]:
    items = [(tier.name, colour) for tier, colour in TIER_COLOURS.items()]
    items.append(("UNCLASSIFIED", UNCLASSIFIED_COLOUR))
    out = ['<g class="legend">']
    x = MARGIN
    for name, colour in items:
        out.append(f'<rect x="{x}" y="{MARGIN}" width="14" height="14" rx="3" fill="{colour}" '
                   f'stroke="{STROKE}" data-tier="{name}"/>')
        out.append(f'<text x="{x + 20}" y="{MARGIN + 11}" font-size="11">{name}</text>')
        x += 24 + int(CHAR_W * len(name)) + 16
    out.append("</g>")
    return out


def render_svg(graph: LineageGraph, keys: Iterable[str] | None = None) -> str:
    """The lineage of ``keys`` (every dataset when None) as an SVG document (a string).

    Only edges between drawn datasets are drawn: pass ``graph.upstream(k) + [k]`` to picture
    one dataset's provenance.
    """
    boxes, edges, width, height = layout(graph, keys)
    at = {b.key: b for b in boxes}
    out = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" '
        'font-family="system-ui, -apple-system, Segoe UI, sans-serif">'),
        "<title>Lacuna lineage</title>",
        ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        f'fill="{STROKE}"/></marker></defs>'),
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
        *_legend(),
        '<g class="edges">',
    ]
    for src, dst, operation in edges:
        a, b = at[src], at[dst]
        x1, y1 = a.x + a.width, a.y + a.height / 2
        x2, y2 = b.x, b.y + b.height / 2
        if x2 <= x1:  # an edge inside a cycle's column: loop around the right side
            bend = max(a.width, b.width) / 2 + 30
            d = f"M {x1:.1f} {y1:.1f} C {x1 + bend:.1f} {y1:.1f}, {b.x + b.width + bend:.1f} " \
                f"{y2:.1f}, {b.x + b.width:.1f} {y2:.1f}"
        else:
            mid = (x1 + x2) / 2
            d = f"M {x1:.1f} {y1:.1f} C {mid:.1f} {y1:.1f}, {mid:.1f} {y2:.1f}, {x2:.1f} {y2:.1f}"
        out.append(
            f'<path class="edge" d="{d}" fill="none" stroke="{STROKE}" stroke-width="1.3" '
            f'marker-end="url(#arrow)" data-source={quoteattr(src)} data-target={quoteattr(dst)} '
            f'data-operation={quoteattr(operation)}><title>{escape(operation)}: '
            f'{escape(at[src].title)} → {escape(at[dst].title)}</title></path>'
        )
    out.append("</g>")
    out.append('<g class="nodes">')
    for box in boxes:
        cx = box.x + box.width / 2
        out.append(
            f'<g class="node" data-key={quoteattr(box.key)} data-tier="{box.tier}">'
            f"<title>{escape(box.tooltip)}</title>"
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
            f'height="{box.height}" rx="7" fill="{box.fill}" stroke="{STROKE}"/>'
            f'<text x="{cx:.1f}" y="{box.y + 18:.1f}" text-anchor="middle" font-size="12" '
            f'font-weight="600" fill="{TEXT}">{escape(box.title)}</text>'
            f'<text x="{cx:.1f}" y="{box.y + 34:.1f}" text-anchor="middle" font-size="10.5" '
            f'fill="{TEXT}">{escape(box.subtitle)}</text></g>'
        )
    out.append("</g></svg>")
    return "\n".join(out)
