"""A seeded synthetic warehouse lineage graph for the propagation, gate, lineage and memory
benchmarks: what 100,000 datasets of a real data platform look like to Lacuna.

Shape (the reason for each choice):

* **layers** like a warehouse — raw sources (15 %), then staging, intermediate, marts,
  reports, exports — 12 of them, each a little smaller than the one before, so lineage is
  up to a dozen hops deep and most nodes sit in the middle;
* **fan-in** per dataset drawn from what dbt projects show: one parent for ~45 % of models,
  2–4 for most others, a long tail up to 20 (mean ≈ 2.4);
* **fan-out** heavy-tailed: parents are picked Zipf-like within a layer, so a few hub tables
  (``dim_customers``) feed thousands of models while most feed one or two;
* parents mostly from the layer just above (60 %), else from any earlier layer (skip links);
* **operations**: a single parent is a transform, filter, aggregate or anonymization; several
  parents are a join or an aggregate;
* **columns**: every dataset has a schema drawn from ``n / 5`` distinct templates (4-12 columns
  named from the words the L1 benchmark uses), classified by the real L1 cascade, so ``own``
  and the column classifications are what the governor would hold (about a third of the
  sources carry PII, some FINANCIAL, many nothing).

``build_graph(n)`` returns a ``LineageGraph`` with every effective classification settled;
``copy_into_catalog`` writes it into a PostgreSQL catalog (``lacuna_datasets``, ``lacuna_edges``).
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classify import NEUTRAL, SENSITIVE, style

from lacuna_orchestration.catalog import CatalogStore
from lacuna_orchestration.classify.pipeline import CascadeClassifier, ColumnContext
from lacuna_orchestration.lineage.graph import DatasetNode, LineageGraph
from lacuna_orchestration.lineage.openlineage import FieldInfo
from lacuna_orchestration.model import (
    Classification,
    DatasetRef,
    OperationKind,
    format_timestamp,
    utcnow,
)
from lacuna_orchestration.settings import Settings

__all__ = ["Schema", "build_graph", "copy_into_catalog", "layer_sizes", "schema_pool"]

LAYERS = ("raw", "stg", "base", "int", "int2", "int3", "core", "mart", "agg", "rpt", "dash",
          "export")
FAN_IN = ((1, 0.45), (2, 0.25), (3, 0.12), (4, 0.08), (6, 0.05), (8, 0.03), (12, 0.015),
          (20, 0.005))
SINGLE_PARENT_OPS = ((OperationKind.TRANSFORM, 0.5), (OperationKind.FILTER, 0.3),
                     (OperationKind.AGGREGATE, 0.15), (OperationKind.ANONYMIZE, 0.05))
MULTI_PARENT_OPS = ((OperationKind.JOIN, 0.85), (OperationKind.AGGREGATE, 0.15))
NAMESPACE = "warehouse"


@dataclass(frozen=True, slots=True)
class Schema:
    """A table shape and what L1 says about it."""

    fields: tuple[FieldInfo, ...]
    own: Classification
    columns: dict[str, Classification]


def _pick(rng: random.Random, table: tuple[tuple[object, float], ...]) -> object:
    x = rng.random()
    for value, p in table:
        x -= p
        if x < 0:
            return value
    return table[-1][0]


def schema_pool(count: int, *, sensitive_share: float, seed: int) -> list[Schema]:
    """``count`` table schemas (4-12 columns), classified by the L1 cascade."""
    rng = random.Random(seed)
    classifier = CascadeClassifier.from_settings(
        Settings.load(database_url="sqlite:///:memory:", embeddings_enabled=False)
    )
    out = []
    for i in range(count):
        names: dict[str, None] = {"id": None}
        sensitive = rng.random() < sensitive_share
        while len(names) < rng.randint(4, 12):
            word = rng.choice(SENSITIVE) if sensitive and rng.random() < 0.3 else rng.choice(
                NEUTRAL)
            extra = [rng.choice(NEUTRAL)] if rng.random() < 0.3 else []
            names.setdefault(style([*word.split("_"), *extra], 0), None)
        ref = DatasetRef(NAMESPACE, f"template_{i}")
        contexts = [ColumnContext(n, data_type="varchar", dataset_key=ref.key,
                                  dataset_name=ref.name) for n in names]
        own, columns = classifier.classify_dataset(ref, contexts)
        out.append(Schema(tuple(FieldInfo(n, "varchar") for n in names), own, columns))
    return out


def layer_sizes(n: int, layers: int = len(LAYERS), source_share: float = 0.15) -> list[int]:
    sources = max(1, round(n * source_share))
    rest = n - sources
    weights = [0.85**i for i in range(layers - 1)]
    sizes = [max(1, int(rest * w / sum(weights))) for w in weights]
    sizes[0] += rest - sum(sizes)
    return [sources, *sizes]


def _parent_index(rng: random.Random, size: int) -> int:
    return min(size - 1, int(size * rng.random() ** 2.5))  # Zipf-like: low indexes are hubs


def build_graph(n: int, *, seed: int = 11, templates: int | None = None,
                settle: bool = True) -> LineageGraph:
    """An ``n``-node lineage graph (see the module docstring for its shape), with every
    effective classification computed unless ``settle`` is false. ``templates`` distinct
    schemas (default one per five datasets: staging copies and snapshots share schemas,
    most others differ) are split between sources and derived datasets."""
    rng = random.Random(seed)
    templates = templates or max(200, n // 10)
    raw_schemas = schema_pool(templates, sensitive_share=0.35, seed=seed)
    derived_schemas = schema_pool(templates, sensitive_share=0.15, seed=seed + 1)
    graph = LineageGraph()
    keys: list[list[str]] = []
    for layer, size in enumerate(layer_sizes(n)):
        prefix = LAYERS[min(layer, len(LAYERS) - 1)]
        members: list[str] = []
        for i in range(size):
            ref = DatasetRef(NAMESPACE, f"{prefix}.table_{layer}_{i}")
            schema = rng.choice(raw_schemas if layer == 0 else derived_schemas)
            graph.put(DatasetNode(ref, fields=schema.fields, columns=dict(schema.columns),
                                  own=schema.own))
            members.append(ref.key)
        rng.shuffle(members)  # hub positions are not tied to names
        if layer:
            for key in members:
                fan_in = int(_pick(rng, FAN_IN))  # type: ignore[call-overload]
                ops = SINGLE_PARENT_OPS if fan_in == 1 else MULTI_PARENT_OPS
                op = _pick(rng, ops)
                assert isinstance(op, OperationKind)
                for _ in range(fan_in):
                    src_layer = layer - 1 if rng.random() < 0.6 else rng.randrange(layer)
                    pool = keys[src_layer]
                    graph.g.add_edge(pool[_parent_index(rng, len(pool))], key, operation=op,
                                     job=f"job.{key}")
        keys.append(members)
    if settle:
        graph.recompute_all()
    return graph


def copy_into_catalog(engine: Engine, graph: LineageGraph, tenant: str = "default", *,
                      datasets: bool = True) -> None:
    """Write ``graph`` into the catalog tables of a PostgreSQL ``engine`` with ``COPY`` (the
    rows ``CatalogStore.save`` would write, 20x faster): the benchmarks' setup, not a
    measurement. ``datasets=False`` writes the edges only."""
    now = format_timestamp(utcnow())
    CatalogStore(engine, tenant).create_schema()
    raw = engine.raw_connection()
    try:
        pg = raw.driver_connection
        with pg.cursor() as cur:
            with cur.copy("COPY lacuna_edges (tenant, src, dst, operation, job, updated_at) "
                          "FROM STDIN") as copy:
                for src, dst, op, job in graph.edges():
                    copy.write_row((tenant, src, dst, op.value, job, now))
            if datasets:
                with cur.copy("COPY lacuna_datasets (tenant, key, namespace, name, tier, "
                              "document, updated_at) FROM STDIN") as copy:
                    for node in graph.nodes():
                        copy.write_row((tenant, node.ref.key, node.ref.namespace, node.ref.name,
                                        node.effective.tier.name,
                                        orjson.dumps(node.to_dict()).decode(), now))
        pg.commit()
        pg.autocommit = True
        with pg.cursor() as cur:
            cur.execute("ANALYZE lacuna_edges")
            cur.execute("ANALYZE lacuna_datasets")
        pg.autocommit = False
    finally:
        raw.close()
