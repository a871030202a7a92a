"""The SVG lineage picture: read back with xml.etree — nodes, tier colours, edges, layout."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from lacuna_orchestration.errors import NotFound
from lacuna_orchestration.lineage.graph import LineageGraph
from lacuna_orchestration.lineage.render import (
    TIER_COLOURS,
    UNCLASSIFIED_COLOUR,
    layout,
    render_svg,
)
from lacuna_orchestration.model import (
    Classification,
    DatasetRef,
    Layer,
    OperationKind,
    Tier,
)

NS = {"svg": "http://www.w3.org/2000/svg"}
CUSTOMERS = DatasetRef("file", "/data/customers.csv")
SALES = DatasetRef("file", "/data/sales.csv")
ANALYSIS = DatasetRef("file", "/data/analysis.csv")
SUMMARY = DatasetRef("file", "/data/summary.csv")


def _graph() -> LineageGraph:
    """customers (PII) + sales (FINANCIAL) → analysis (join) → summary (aggregate)."""
    g = LineageGraph()
    g.ensure(CUSTOMERS).own = Classification(Tier.PROPRIETARY, frozenset({"PII"}), 0.95,
                                             Layer.HEURISTIC)
    g.ensure(SALES).own = Classification(Tier.INTERNAL, frozenset({"FINANCIAL"}), 0.9,
                                         Layer.HEURISTIC)
    g.add_edge(CUSTOMERS, ANALYSIS, OperationKind.JOIN, "join_job")
    g.add_edge(SALES, ANALYSIS, OperationKind.JOIN, "join_job")
    g.add_edge(ANALYSIS, SUMMARY, OperationKind.AGGREGATE, "agg_job")
    g.recompute_all()
    return g


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _nodes(root: ET.Element) -> dict[str, ET.Element]:
    return {g.attrib["data-key"]: g for g in root.iterfind(".//svg:g[@class='node']", NS)}


def test_every_dataset_is_a_box_filled_by_its_tier() -> None:
    root = _parse(render_svg(_graph()))
    nodes = _nodes(root)
    assert set(nodes) == {CUSTOMERS.key, SALES.key, ANALYSIS.key, SUMMARY.key}
    expected = {CUSTOMERS.key: Tier.PROPRIETARY, SALES.key: Tier.INTERNAL,
                ANALYSIS.key: Tier.PROPRIETARY, SUMMARY.key: Tier.INTERNAL}
    for key, tier in expected.items():
        node = nodes[key]
        assert node.attrib["data-tier"] == tier.name
        rect = node.find("svg:rect", NS)
        assert rect is not None and rect.attrib["fill"] == TIER_COLOURS[tier]


def test_name_on_the_first_line_tier_and_tags_on_the_second() -> None:
    nodes = _nodes(_parse(render_svg(_graph())))
    lines = [t.text for t in nodes[ANALYSIS.key].iterfind("svg:text", NS)]
    assert lines == ["analysis.csv", "PROPRIETARY · FINANCIAL, PII"]
    summary = [t.text for t in nodes[SUMMARY.key].iterfind("svg:text", NS)]
    assert summary[1] == "INTERNAL · DERIVED_FROM_FINANCIAL, DERIVED_FROM_PII"


def test_edges_join_parent_to_child_with_their_operation() -> None:
    root = _parse(render_svg(_graph()))
    edges = {(p.attrib["data-source"], p.attrib["data-target"], p.attrib["data-operation"])
             for p in root.iterfind(".//svg:path[@class='edge']", NS)}
    assert edges == {(CUSTOMERS.key, ANALYSIS.key, "join"), (SALES.key, ANALYSIS.key, "join"),
                     (ANALYSIS.key, SUMMARY.key, "aggregate")}
    for path in root.iterfind(".//svg:path[@class='edge']", NS):
        assert path.attrib["d"].startswith("M ") and " C " in path.attrib["d"]
        assert path.attrib["marker-end"] == "url(#arrow)"


def test_layers_follow_the_topological_order() -> None:
    boxes, _, width, height = layout(_graph())
    x = {b.key: b.x for b in boxes}
    assert x[CUSTOMERS.key] == x[SALES.key] < x[ANALYSIS.key] < x[SUMMARY.key]
    for b in boxes:
        assert b.x + b.width <= width and b.y + b.height <= height


def test_keys_restrict_the_picture_to_a_subgraph() -> None:
    g = _graph()
    root = _parse(render_svg(g, [ANALYSIS.key, SUMMARY.key]))
    assert set(_nodes(root)) == {ANALYSIS.key, SUMMARY.key}
    edges = [(p.attrib["data-source"], p.attrib["data-target"])
             for p in root.iterfind(".//svg:path[@class='edge']", NS)]
    assert edges == [(ANALYSIS.key, SUMMARY.key)]


def test_unclassified_datasets_are_grey_not_public() -> None:
    g = LineageGraph()
    g.add_edge(DatasetRef("s3://b", "raw/new.parquet"), DatasetRef("s3://b", "clean.parquet"),
               OperationKind.TRANSFORM)
    nodes = _nodes(_parse(render_svg(g)))
    for node in nodes.values():
        assert node.attrib["data-tier"] == "UNCLASSIFIED"
        rect = node.find("svg:rect", NS)
        assert rect is not None and rect.attrib["fill"] == UNCLASSIFIED_COLOUR
        assert [t.text for t in node.iterfind("svg:text", NS)][1] == "unclassified"


def test_cycles_are_drawn_without_looping() -> None:
    g = LineageGraph()
    a, b = DatasetRef("db", "a"), DatasetRef("db", "b")
    g.add_edge(a, b, OperationKind.TRANSFORM)
    g.add_edge(b, a, OperationKind.TRANSFORM)
    root = _parse(render_svg(g))
    assert set(_nodes(root)) == {a.key, b.key}
    assert len(list(root.iterfind(".//svg:path[@class='edge']", NS))) == 2


def test_names_are_escaped_and_the_legend_lists_every_tier() -> None:
    g = LineageGraph()
    g.add_edge(DatasetRef("file", "/x/<a&b>.csv"), DatasetRef("file", "/x/out\".csv"),
               OperationKind.EXPORT)
    svg = render_svg(g)
    root = _parse(svg)  # parses: every name was escaped
    titles = {t.text for t in root.iterfind(".//svg:g[@class='node']/svg:text", NS)}
    assert "<a&b>.csv" in titles and 'out".csv' in titles
    legend = {r.attrib["data-tier"] for r in root.iterfind(".//svg:g[@class='legend']/svg:rect",
                                                            NS)}
    assert legend == {"PUBLIC", "INTERNAL", "PROPRIETARY", "UNCLASSIFIED"}


def test_an_unknown_key_is_a_clear_error() -> None:
    with pytest.raises(NotFound, match="'db::missing'"):
        render_svg(_graph(), ["db::missing"])


def test_an_empty_graph_is_still_a_valid_picture() -> None:
    root = _parse(render_svg(LineageGraph()))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert _nodes(root) == {}


def test_long_labels_are_shortened_and_the_tooltip_keeps_them_whole() -> None:
    g = LineageGraph()
    ref = DatasetRef("db", "a_" + "very_" * 20 + "long_table")
    tags = frozenset(f"TAG_NUMBER_{i}" for i in range(8))
    g.ensure(ref).own = Classification(Tier.PROPRIETARY, tags, 0.9, Layer.HEURISTIC)
    g.recompute_all()
    node = _nodes(_parse(render_svg(g)))[ref.key]
    title, subtitle = (t.text or "" for t in node.iterfind("svg:text", NS))
    assert title.endswith("…") and len(title) <= 64
    assert subtitle.endswith("…") and len(subtitle) <= 64
    tooltip = node.find("svg:title", NS)
    assert tooltip is not None and tooltip.text is not None
    assert ref.key in tooltip.text and "TAG_NUMBER_7" in tooltip.text
