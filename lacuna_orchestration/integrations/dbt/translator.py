"""Map dbt nodes to what Lacuna speaks: dataset names, operations, floors and OpenLineage events.

``DbtTranslator`` answers every question the gate, the wrapper and the outbox collector ask
about a dbt node, one overridable ``get_*`` method per question, so a project with odd naming
subclasses it::

    class MyTranslator(DbtTranslator):
        def get_relation_ref(self, database, schema, identifier, target):
            ref = super().get_relation_ref(database, schema, identifier, target)
            return DatasetRef(ref.namespace, ref.name.lower())

Naming follows the OpenLineage convention for warehouses: namespace ``postgres://host:port``,
``duckdb://<database file>`` (``<type>://<host>`` for other adapters), name
``database.schema.table``. A node whose ``meta.lacuna.location`` says where its data really ends
up (a schema synced to a shared folder or a bucket) is named by that location instead, so the
export policies judge the real destination.

What a node declares in ``meta`` (dbt merges ``config(meta=...)``, schema.yml and
dbt_project.yml ``+meta``)::

    meta:
      classification: PROPRIETARY          # a floor: Lacuna may raise it, never lower it
      tags: [PII, CUSTOMER_DATA]
      lacuna:
        operation: join                    # else inferred: location → export, ≥ 2 parents →
                                           # join, GROUP BY → aggregate, otherwise transform
        location: "file:///srv/share/"     # where the relation's data ends up
        purpose: analytics                 # passed to the purpose policy
        domain: marketing                  # passed to the domain policies
        user: analyst@example.com

Column meta (``columns: [{name: email, meta: {tags: [PII], classification: PROPRIETARY}}]``)
labels single columns.
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.integrations.dbt.manifest import DbtNode
from lacuna_orchestration.lineage.events import PRODUCER, DatasetSpec, build_run_event, facet
from lacuna_orchestration.model import DatasetRef, OperationKind, Tier, normalize_tag

__all__ = [
    "DBT_PRODUCER",
    "DbtTranslator",
    "DbtTranslatorSettings",
    "Floor",
]

DBT_PRODUCER = f"{PRODUCER}#dbt"
PARENT_SCHEMA = "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json#/$defs/ParentRunFacet"
ERROR_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
)
JOB_TYPE_SCHEMA = "https://openlineage.io/spec/facets/2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"
RUN_ID_NAMESPACE = uuid.UUID("0b7c6f5e-4d1a-5c55-9a3e-6c61636e6164")
MAX_ERROR_CHARS = 4000
_GROUP_BY = re.compile(r"\bgroup\s+by\b", re.IGNORECASE)
_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Floor:
    """A node's declared classification: a tier and tags that inference never lowers."""

    tier: Tier | None = None
    tags: tuple[str, ...] = ()

    @property
    def declared(self) -> bool:
        return self.tier is not None or bool(self.tags)


@dataclass(frozen=True, slots=True)
class DbtTranslatorSettings:
    """Feature flags of the translator."""

    job_namespace: str = "dbt"
    infer_operation: bool = True  # False: every node without meta.lacuna.operation is a transform
    seed_columns_from_csv: bool = True  # read a seed's header when schema.yml lists no columns


class DbtTranslator:
    """Turns dbt nodes into Lacuna's values. Override any ``get_*`` method."""

    def __init__(self, settings: DbtTranslatorSettings | None = None) -> None:
        self.settings = settings or DbtTranslatorSettings()

    # -- names -------------------------------------------------------------------------------
    def get_namespace(self, target: Mapping[str, Any]) -> str:
        """Where the warehouse is, from the profile's target (the same dict as dbt's Jinja
        ``target``): ``postgres://host:port``, ``duckdb://<path>``, ``<type>://<host>``."""
        kind = str(target.get("type") or "dbt").lower()
        if kind in ("postgres", "postgresql", "redshift"):
            scheme = "redshift" if kind == "redshift" else "postgres"
            default_port = 5439 if kind == "redshift" else 5432
            return f"{scheme}://{target.get('host') or 'localhost'}:" \
                   f"{target.get('port') or default_port}"
        if kind == "duckdb":
            return f"duckdb://{target.get('path') or ':memory:'}"
        host = target.get("host") or target.get("account") or target.get("path")
        if host:
            port = target.get("port")
            return f"{kind}://{host}:{port}" if port else f"{kind}://{host}"
        return kind

    def get_relation_ref(self, database: str | None, schema: str | None, identifier: str,
                         target: Mapping[str, Any]) -> DatasetRef:
        """A warehouse relation: ``<namespace>`` / ``database.schema.identifier``."""
        name = ".".join(p for p in (database, schema, identifier) if p)
        return DatasetRef(self.get_namespace(target), name)

    def get_location_ref(self, location: str, identifier: str) -> DatasetRef:
        """A relation named by where its data ends up (``meta.lacuna.location``):
        ``file:///srv/share/`` + ``contacts`` → ``file`` / ``/srv/share/contacts``;
        ``s3://bucket/exports/`` → ``s3://bucket`` / ``exports/contacts``."""
        parts = urlsplit(location)
        scheme = parts.scheme.lower()
        if not scheme:
            return DatasetRef("file", f"{location.rstrip('/')}/{identifier}")
        path = f"{parts.path.rstrip('/')}/{identifier}"
        if scheme == "file":
            return DatasetRef(f"file://{parts.netloc}" if parts.netloc else "file", path)
        return DatasetRef(f"{scheme}://{parts.netloc}", path.lstrip("/"))

    def get_dataset_ref(self, node: DbtNode, target: Mapping[str, Any]) -> DatasetRef:
        """The dataset a node's relation is (its declared location wins)."""
        identifier = node.identifier or node.name
        location = node.lacuna_meta.get("location")
        if location:
            return self.get_location_ref(str(location), identifier)
        return self.get_relation_ref(node.database, node.schema, identifier, target)

    def get_job(self, node: DbtNode) -> tuple[str, str]:
        """The OpenLineage job of a node: ``(job namespace, unique_id)``."""
        return self.settings.job_namespace, node.unique_id

    def get_invocation_job(self, project: str, command: str) -> tuple[str, str]:
        """The job of one dbt invocation, parent of every node's run."""
        return self.settings.job_namespace, f"{project}.{command or 'run'}"

    def get_run_id(self, invocation_run_id: str, unique_id: str) -> str:
        """A node's run id within one invocation: stable, so the gate's START and the
        post-run COMPLETE (or a collected record) are one run."""
        return str(uuid.uuid5(RUN_ID_NAMESPACE, f"{invocation_run_id}:{unique_id}"))

    # -- what a node declares ---------------------------------------------------------------
    def get_floor(self, node: DbtNode) -> Floor:
        """``meta.classification`` / ``meta.tags``; an unknown tier names the node."""
        meta = node.meta if isinstance(node.meta, Mapping) else {}
        tier = None
        declared = meta.get("classification")
        if declared is not None and declared != "":
            try:
                tier = Tier.parse(declared)
            except ValidationError:
                valid = ", ".join(Tier.__members__)
                raise ValidationError(
                    f"{node.unique_id} declares meta.classification {declared!r}, which is not "
                    f"a tier; valid tiers are {valid}"
                ) from None
        return Floor(tier, self._tags(meta.get("tags"), node, "meta.tags"))

    def get_column_labels(self, node: DbtNode) -> dict[str, Floor]:
        """Per-column floors from schema.yml column ``meta``."""
        out: dict[str, Floor] = {}
        for col in node.columns:
            meta = col.meta if isinstance(col.meta, Mapping) else {}
            tier = None
            if meta.get("classification"):
                try:
                    tier = Tier.parse(meta["classification"])
                except ValidationError:
                    valid = ", ".join(Tier.__members__)
                    raise ValidationError(
                        f"{node.unique_id} column {col.name} declares meta.classification "
                        f"{meta['classification']!r}; valid tiers are {valid}"
                    ) from None
            tags = self._tags(meta.get("tags"), node, f"column {col.name} meta.tags")
            if tier is not None or tags:
                out[col.name] = Floor(tier, tags)
        return out

    def _tags(self, value: Any, node: DbtNode, where: str) -> tuple[str, ...]:
        if value in (None, ""):
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, Sequence):
            raise ValidationError(f"{node.unique_id} {where} must be a list of tags, got {value!r}")
        try:
            return tuple(dict.fromkeys(normalize_tag(str(t)) for t in items))
        except ValidationError as err:
            raise ValidationError(f"{node.unique_id} {where}: {err}") from None

    def get_purpose(self, node: DbtNode) -> str | None:
        value = node.lacuna_meta.get("purpose")
        return str(value) if value else None

    def get_user(self, node: DbtNode) -> str | None:
        value = node.lacuna_meta.get("user")
        return str(value) if value else None

    def get_context(self, node: DbtNode) -> dict[str, str]:
        """Extra policy context (``domain``) from ``meta.lacuna``."""
        domain = node.lacuna_meta.get("domain")
        return {"domain": str(domain)} if domain else {}

    def get_operation(self, node: DbtNode, parents: Sequence[DbtNode]) -> OperationKind:
        """``meta.lacuna.operation``; else, when inference is on: a declared location is an
        export, two or more relation parents a join, a GROUP BY an aggregate, anything else a
        transform."""
        declared = node.lacuna_meta.get("operation")
        if declared:
            try:
                return OperationKind.parse(str(declared))
            except ValidationError as err:
                raise ValidationError(f"{node.unique_id} meta.lacuna.operation: {err}") from None
        if not self.settings.infer_operation:
            return OperationKind.TRANSFORM
        if node.lacuna_meta.get("location"):
            return OperationKind.EXPORT
        if len(parents) >= 2:
            return OperationKind.JOIN
        grouped = node.grouped
        if grouped is None:
            grouped = bool(_GROUP_BY.search(_SQL_COMMENT.sub(" ", node.code or "")))
        if grouped and parents:
            return OperationKind.AGGREGATE
        return OperationKind.TRANSFORM

    # -- columns -----------------------------------------------------------------------------
    def get_declared_columns(self, node: DbtNode) -> list[tuple[str, str]]:
        """Columns the project declares: schema.yml, else (seeds) the CSV header."""
        if node.columns:
            return [(c.name, c.data_type) for c in node.columns]
        if node.resource_type == "seed" and self.settings.seed_columns_from_csv and node.file_path:
            return [(name, "") for name in _csv_header(node.file_path)]
        return []

    # -- events ------------------------------------------------------------------------------
    def get_dataset_spec(self, node: DbtNode, target: Mapping[str, Any],
                         columns: Sequence[tuple[str, str]] | None = None) -> DatasetSpec:
        """The dataset of a node with its floor, column labels and ``columns`` (names with
        types; ``None``: none known, the event then carries no schema facet)."""
        floor = self.get_floor(node)
        labels = self.get_column_labels(node)
        return DatasetSpec(
            ref=self.get_dataset_ref(node, target),
            columns=[(n, t) if t else n for n, t in (columns or ())],
            tier=floor.tier,
            tags=list(floor.tags),
            column_tags={c: list(f.tags) for c, f in labels.items() if f.tags},
            description=node.description,
        )

    def get_dataset(self, node: DbtNode, target: Mapping[str, Any],
                    columns: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
        """``get_dataset_spec`` as an OpenLineage dataset, column tiers included."""
        data = self.get_dataset_spec(node, target, columns).to_openlineage(DBT_PRODUCER)
        tiers = {c: f.tier.name for c, f in self.get_column_labels(node).items() if f.tier}
        if tiers:
            facets = data["facets"]
            ours = facets.setdefault("lacuna", facet({}, producer=DBT_PRODUCER))
            cols = ours.setdefault("columns", {})
            for column, tier in tiers.items():
                cols.setdefault(column, {})["classification"] = tier
        return data

    def get_input(self, parent: DbtNode, target: Mapping[str, Any],
                  columns: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
        """A parent as an event input. A source is described in full (its declared columns
        and floor: no other event describes it). A model, seed or snapshot is named only —
        its own events carry its columns and floor, and a child repeating its schema.yml
        subset would overwrite the real columns — unless ``columns`` are given (a parent
        Lacuna has not seen yet)."""
        if parent.resource_type == "source":
            return self.get_dataset(parent, target,
                                    columns or self.get_declared_columns(parent) or None)
        if columns:
            return self.get_dataset(parent, target, columns)
        ref = self.get_dataset_ref(parent, target)
        return {"namespace": ref.namespace, "name": ref.name, "facets": {}}

    def get_run_event(
        self,
        node: DbtNode,
        *,
        event_type: str,
        target: Mapping[str, Any],
        parents: Sequence[tuple[DbtNode, Sequence[tuple[str, str]] | None]],
        columns: Sequence[tuple[str, str]] | None,
        invocation: tuple[str, str, str],
        user: str | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """The OpenLineage RunEvent of one node: job = the node, inputs = its relation
        parents (see ``get_input``; the columns are for parents Lacuna has not seen), output =
        its relation.

        ``invocation`` is ``(run id, project, command)`` of the dbt invocation (the parent run).
        """
        run_key, project, command = invocation
        parent_nodes = [p for p, _ in parents]
        job_ns, job_name = self.get_invocation_job(project, command)
        run_facets: dict[str, Any] = {
            "parent": facet({"run": {"runId": run_key},
                             "job": {"namespace": job_ns, "name": job_name}},
                            PARENT_SCHEMA, DBT_PRODUCER),
        }
        if error:
            run_facets["errorMessage"] = facet(
                {"message": error[:MAX_ERROR_CHARS], "programmingLanguage": "sql"},
                ERROR_SCHEMA, DBT_PRODUCER,
            )
        event = build_run_event(
            job=self.get_job(node),
            event_type=event_type,
            operation=self.get_operation(node, parent_nodes),
            run_id=self.get_run_id(run_key, node.unique_id),
            user=self.get_user(node) or user,
            purpose=self.get_purpose(node),
            producer=DBT_PRODUCER,
            run_facets=run_facets,
            job_facets={"jobType": facet(
                {"processingType": "BATCH", "integration": "DBT",
                 "jobType": node.resource_type.upper()}, JOB_TYPE_SCHEMA, DBT_PRODUCER)},
        )
        context = self.get_context(node)
        if context:  # e.g. domain; carried in the lacuna run facet next to operation/purpose
            event["run"]["facets"].setdefault(
                "lacuna", facet({}, producer=DBT_PRODUCER)).update(context)
        event["inputs"] = [self.get_input(p, target, cols) for p, cols in parents]
        event["outputs"] = [self.get_dataset(node, target, columns)]
        return event

    def get_invocation_event(self, *, event_type: str, run_id: str, project: str,
                             command: str, user: str | None = None,
                             error: str | None = None) -> dict[str, Any]:
        """The RunEvent of the dbt invocation itself (no datasets)."""
        facets: dict[str, Any] = {}
        if error:
            facets["errorMessage"] = facet(
                {"message": error[:MAX_ERROR_CHARS], "programmingLanguage": "sql"},
                ERROR_SCHEMA, DBT_PRODUCER,
            )
        return build_run_event(
            job=self.get_invocation_job(project, command),
            event_type=event_type,
            run_id=run_id,
            user=user,
            producer=DBT_PRODUCER,
            run_facets=facets,
            job_facets={"jobType": facet(
                {"processingType": "BATCH", "integration": "DBT", "jobType": "JOB"},
                JOB_TYPE_SCHEMA, DBT_PRODUCER)},
        )


def _csv_header(path: str) -> list[str]:
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            return [h.strip() for h in next(csv.reader(handle), []) if h.strip()]
    except (OSError, UnicodeDecodeError):
        return []
