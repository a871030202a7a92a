"""dbt's manifest, reduced to the facts Lacuna needs about each node.

dbt describes a project in ``target/manifest.json`` (written by ``dbt parse``, ``compile``,
``build`` ...). ``DbtManifest`` reads it into ``DbtNode`` values — one per model, seed,
snapshot and source — with where the node lives, what it declares in ``meta``, its declared
columns and its parents. The same ``DbtNode`` is built from a lineage record of the ``lacuna``
dbt package (``records.py``), so the translator answers every question once, whichever way the
node arrived.

>>> manifest = DbtManifest.load("example_project/dbt/target/manifest.json")   # doctest: +SKIP
>>> [p.name for p in manifest.relation_parents("model.lacuna_shop.customer_orders")]  # doctest: +SKIP
['stg_customers', 'stg_orders', 'stg_payments']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import orjson

from lacuna_orchestration.errors import NotFound, ValidationError

__all__ = ["GATED_TYPES", "RELATION_TYPES", "DbtColumn", "DbtManifest", "DbtNode", "columns_from"]

# Node kinds that are relations in the warehouse (what lineage connects).
RELATION_TYPES = frozenset({"model", "seed", "snapshot", "source"})
# Node kinds a dbt command builds, and so the kinds the gate decides about.
GATED_TYPES = frozenset({"model", "seed", "snapshot"})


@dataclass(frozen=True, slots=True)
class DbtColumn:
    """A column as schema.yml (or the warehouse) describes it."""

    name: str
    data_type: str = ""
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DbtNode:
    """One dbt node: a model, seed, snapshot or source."""

    unique_id: str
    resource_type: str
    name: str
    database: str | None = None
    schema: str | None = None
    identifier: str | None = None
    package: str = ""
    config_schema: str | None = None  # the `schema` config (e.g. "exports"), before dbt prefixes it
    materialized: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    columns: tuple[DbtColumn, ...] = ()
    depends_on: tuple[str, ...] = ()
    code: str = ""  # compiled SQL when known, else raw
    description: str = ""
    fqn: tuple[str, ...] = ()
    pre_hooks: tuple[str, ...] = ()
    file_path: str = ""  # absolute path of the node's file (seeds: the CSV)
    grouped: bool | None = None  # whether the SQL groups rows (a record says; else from code)

    @property
    def is_relation(self) -> bool:
        return self.resource_type in RELATION_TYPES and self.materialized != "ephemeral"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def lacuna_meta(self) -> Mapping[str, Any]:
        """The ``meta.lacuna`` block (operation, location, purpose, domain, user)."""
        ours = self.meta.get("lacuna") if isinstance(self.meta, Mapping) else None
        return ours if isinstance(ours, Mapping) else {}

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any], project_root: str | None = None) -> DbtNode:
        """A node from its ``manifest.json`` entry (``nodes`` or ``sources``)."""
        config = data.get("config") or {}
        meta = dict(data.get("meta") or {})
        meta.update(config.get("meta") or {})
        root = data.get("root_path") or project_root or ""
        file_path = str(Path(root) / data["original_file_path"]) if data.get(
            "original_file_path") and root else ""
        hooks = tuple(
            str(h.get("sql", "")) if isinstance(h, Mapping) else str(h)
            for h in config.get("pre-hook") or ()
        )
        return cls(
            unique_id=str(data["unique_id"]),
            resource_type=str(data["resource_type"]),
            name=str(data["name"]),
            database=data.get("database"),
            schema=data.get("schema"),
            identifier=data.get("alias") or data.get("identifier") or data.get("name"),
            package=str(data.get("package_name") or ""),
            config_schema=config.get("schema"),
            materialized=config.get("materialized"),
            meta=meta,
            columns=columns_from(data.get("columns") or {}),
            depends_on=tuple((data.get("depends_on") or {}).get("nodes") or ()),
            code=str(data.get("compiled_code") or data.get("raw_code") or ""),
            description=str(data.get("description") or ""),
            fqn=tuple(data.get("fqn") or ()),
            pre_hooks=hooks,
            file_path=file_path,
        )


def columns_from(columns: Mapping[str, Any]) -> tuple[DbtColumn, ...]:
    """Columns from a manifest/record ``columns`` mapping (``{name: {data_type|type, meta}}``)."""
    out = []
    for name, col in columns.items():
        col = col if isinstance(col, Mapping) else {}
        meta = dict(col.get("meta") or {})
        meta.update((col.get("config") or {}).get("meta") or {})
        out.append(DbtColumn(
            name=str(col.get("name") or name),
            data_type=str(col.get("data_type") or col.get("type") or ""),
            description=str(col.get("description") or ""),
            meta=meta,
        ))
    return tuple(out)


class DbtManifest:
    """The nodes of one dbt project, with their parents resolved to relations."""

    def __init__(self, nodes: Iterable[DbtNode], *, project_name: str = "",
                 adapter_type: str = "", invocation_id: str = "", path: str = "",
                 default_selector: bool = False) -> None:
        self.nodes: dict[str, DbtNode] = {n.unique_id: n for n in nodes}
        self.project_name = project_name
        self.adapter_type = adapter_type
        self.invocation_id = invocation_id
        self.path = path
        self.default_selector = default_selector  # selectors.yml has a `default: true` one

    @classmethod
    def load(cls, path: str | Path) -> DbtManifest:
        """Read ``manifest.json``; a missing or unreadable file is a one-line error that says
        how to produce it."""
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.json"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(
                f"no dbt manifest at {path}; run `dbt parse` (or `lacuna dbt build`, which "
                "parses first) in the project"
            ) from None
        except OSError as err:
            raise NotFound(f"cannot read dbt manifest {path}: {err.strerror}") from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise ValidationError(f"dbt manifest {path} is not valid JSON: {err}") from None
        return cls.from_dict(data, path=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str = "") -> DbtManifest:
        if not isinstance(data, Mapping) or "nodes" not in data:
            raise ValidationError(f"{path or 'data'} is not a dbt manifest (no 'nodes')")
        meta = data.get("metadata") or {}
        nodes = [
            DbtNode.from_manifest(n)
            for section in ("nodes", "sources")
            for n in (data.get(section) or {}).values()
            if isinstance(n, Mapping) and n.get("resource_type") in RELATION_TYPES
        ]
        selectors = data.get("selectors") or {}
        return cls(
            nodes,
            project_name=str(meta.get("project_name") or ""),
            adapter_type=str(meta.get("adapter_type") or ""),
            invocation_id=str(meta.get("invocation_id") or ""),
            path=path,
            default_selector=any(isinstance(v, Mapping) and v.get("default")
                                 for v in selectors.values()),
        )

    def __contains__(self, unique_id: object) -> bool:
        return unique_id in self.nodes

    def node(self, unique_id: str) -> DbtNode:
        try:
            return self.nodes[unique_id]
        except KeyError:
            raise NotFound(f"{unique_id} is not a model, seed, snapshot or source of this "
                           "dbt project") from None

    def relation_parents(self, unique_id: str) -> list[DbtNode]:
        """The relations a node reads: its ``ref``/``source`` parents, looking through
        ephemeral models (CTEs, not relations) to what they read."""
        seen: set[str] = set()
        out: list[DbtNode] = []
        queue = list(self.node(unique_id).depends_on)
        while queue:
            uid = queue.pop(0)
            if uid in seen:
                continue
            seen.add(uid)
            parent = self.nodes.get(uid)
            if parent is None:
                continue  # macros, functions, tests: not relations
            if parent.materialized == "ephemeral" and parent.resource_type == "model":
                queue.extend(parent.depends_on)
            elif parent.is_relation:
                out.append(parent)
        return out

    def in_build_order(self, unique_ids: Iterable[str]) -> list[str]:
        """``unique_ids`` (those of this manifest), parents before children."""
        wanted = [u for u in dict.fromkeys(unique_ids) if u in self.nodes]
        chosen = set(wanted)
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for uid in wanted:
            sorter.add(uid, *(p for p in self._ancestors_within(uid, chosen)))
        try:
            return list(sorter.static_order())
        except CycleError as err:
            raise ValidationError(f"the dbt DAG has a cycle: {err.args[1]}") from None

    def _ancestors_within(self, uid: str, chosen: set[str]) -> Sequence[str]:
        return [p.unique_id for p in self.relation_parents(uid) if p.unique_id in chosen]

    def gated(self) -> list[DbtNode]:
        """Every node a dbt command builds (models, seeds, snapshots), ephemerals excluded."""
        return [n for n in self.nodes.values()
                if n.resource_type in GATED_TYPES and n.materialized != "ephemeral"]
