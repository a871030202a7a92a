"""Dagster assets as OpenLineage: the translator that names things, and the emitter that sends
one START / COMPLETE / FAIL event per asset materialization into Lacuna's ingest path.

``DagsterTranslator`` turns an asset (its key and ``AssetSpec``) into what Lacuna reasons about:
the dataset it produces, the datasets it reads, the operation kind, the declared floors and the
columns. Each decision is one public ``get_*`` method, so a project with odd naming overrides
exactly one of them::

    class WarehouseTranslator(DagsterTranslator):
        def get_dataset_ref(self, asset_key):
            return DatasetRef("postgres://warehouse:5432", ".".join(asset_key.path))

What the default translator reads from an asset definition (metadata first, then tags):

=========================  =================================================================
``lacuna/operation``       read, join, aggregate, filter, transform, anonymize, export
``lacuna/destination``     where an export writes (``file:///tmp/x.csv``, ``s3://b/k``,
                           ``ns::name``); the asset's output dataset becomes this location
``lacuna/classification``  declared tier floor (PUBLIC / INTERNAL / PROPRIETARY)
``lacuna/tags``            declared tags: a list, or one string split on ``,`` ``.`` or space
``lacuna/purpose``         purpose passed to the purpose-limitation policy
``dagster/column_schema``  the columns (``TableSchema``); column tags ``lacuna/tags`` /
                           ``lacuna/classification`` label single columns
``dagster/column_lineage`` column lineage (``TableColumnLineage``) → ``columnLineage`` facet
=========================  =================================================================

Why our own events rather than ``dagster-openlineage`` (0.2.1, evaluated): it emits *after* the
fact — from a sensor (needs the daemon, so nothing under ``dagster.materialize``) or from an
``EventLogStorage`` wrapper configured in ``dagster.yaml`` that subclasses private Dagster
classes (``dagster._core.storage.event_log.base``, ``dagster._serdes``) — so it can neither gate
nor run in process; and its materialization events carry no inputs (its adapter accepts
upstream keys, no caller passes them), while inputs are what inheritance needs. Building the
events here with ``lineage.events.build_run_event`` keeps one code path for every producer, and
adds no dependency.

Emission never fails a run: every error is logged once with the asset and the event type and
swallowed. Only the gate (``gate.py``) may stop an asset, and it fails closed.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.lineage.events import PRODUCER, DatasetSpec, build_run_event, facet
from lacuna_orchestration.model import DatasetRef, OperationKind, Tier, normalize_tags

if TYPE_CHECKING:
    import dagster as dg

__all__ = [
    "DAGSTER_PRODUCER",
    "AssetOperation",
    "DagsterTranslator",
    "DagsterTranslatorSettings",
    "LineageEmitter",
    "columns_of_schema",
    "columns_of_value",
    "destination_ref",
    "openlineage_run_id",
]

log = logging.getLogger(__name__)

DAGSTER_PRODUCER = f"{PRODUCER}#dagster"
RUN_NAMESPACE = uuid.UUID("6c1c3f0e-7a4b-4a53-9f53-3f3c4c0a8d11")

OPERATION_KEY = "lacuna/operation"
DESTINATION_KEY = "lacuna/destination"
CLASSIFICATION_KEY = "lacuna/classification"
TAGS_KEY = "lacuna/tags"
PURPOSE_KEY = "lacuna/purpose"
COLUMN_SCHEMA_KEY = "dagster/column_schema"
COLUMN_LINEAGE_KEY = "dagster/column_lineage"

_TAG_SPLIT = re.compile(r"[,.;\s]+")

Column = tuple[str, str] | tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class DagsterTranslatorSettings:
    """Feature flags of the default translator.

    ``namespace``: OpenLineage namespace of the datasets named after asset keys (and of the
    jobs). ``key_separator``: how the parts of a multi-part asset key join into a dataset name.
    """

    namespace: str = "dagster"
    key_separator: str = "/"


@dataclass(frozen=True, slots=True)
class AssetOperation:
    """What one asset materialization does, in Lacuna's terms."""

    asset_key: str
    job: tuple[str, str]
    kind: OperationKind
    inputs: tuple[DatasetRef, ...]
    output: DatasetRef
    declared_tier: Tier | None = None
    declared_tags: frozenset[str] = frozenset()
    columns: tuple[Column, ...] = ()
    column_tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    column_lineage: Mapping[str, tuple[tuple[DatasetRef, str], ...]] = field(default_factory=dict)
    purpose: str = ""
    description: str = ""

    def with_columns(self, columns: Sequence[Column]) -> AssetOperation:
        return replace(self, columns=tuple(columns)) if columns else self

    def output_spec(self) -> DatasetSpec:
        return DatasetSpec(
            self.output,
            columns=self.columns,
            tier=self.declared_tier,
            tags=sorted(self.declared_tags),
            column_tags={c: list(t) for c, t in self.column_tags.items()},
            column_lineage={c: list(s) for c, s in self.column_lineage.items()},
            description=self.description,
        )

    def input_specs(self) -> list[DatasetSpec]:
        return [DatasetSpec(ref) for ref in self.inputs]


def _lookup(spec: dg.AssetSpec, key: str) -> Any:
    """Metadata wins over tags: metadata can carry lists, tags only short strings."""
    value = (spec.metadata or {}).get(key)
    if value is None:
        value = (spec.tags or {}).get(key)
    return getattr(value, "value", value)  # unwrap MetadataValue


class DagsterTranslator:
    """Maps Dagster assets to Lacuna datasets and operations; override any ``get_*``."""

    def __init__(self, settings: DagsterTranslatorSettings | None = None) -> None:
        self.settings = settings or DagsterTranslatorSettings()

    def get_dataset_ref(self, asset_key: dg.AssetKey) -> DatasetRef:
        """The dataset an asset key names (inputs and outputs alike)."""
        return DatasetRef(self.settings.namespace, self.settings.key_separator.join(asset_key.path))

    def get_job(self, asset_key: dg.AssetKey) -> tuple[str, str]:
        """The OpenLineage job of one asset's materializations."""
        return (self.settings.namespace, asset_key.to_user_string())

    def get_destination(self, spec: dg.AssetSpec) -> DatasetRef | None:
        """Where an export asset writes, from ``lacuna/destination``; None for ordinary assets."""
        value = _lookup(spec, DESTINATION_KEY)
        if value in (None, ""):
            return None
        return destination_ref(str(value))

    def get_output_ref(self, spec: dg.AssetSpec) -> DatasetRef:
        return self.get_destination(spec) or self.get_dataset_ref(spec.key)

    def get_input_refs(self, spec: dg.AssetSpec) -> tuple[DatasetRef, ...]:
        """Upstream asset dependencies, sorted (Dagster does not keep declaration order)."""
        return tuple(sorted({self.get_dataset_ref(dep.asset_key) for dep in spec.deps}))

    def get_operation(self, spec: dg.AssetSpec) -> OperationKind:
        value = _lookup(spec, OPERATION_KEY)
        if value not in (None, ""):
            try:
                return OperationKind.parse(str(value))
            except ValidationError as err:
                raise ValidationError(f"asset {spec.key.to_user_string()}: {err}") from None
        return OperationKind.EXPORT if self.get_destination(spec) else OperationKind.TRANSFORM

    def get_declared_tier(self, spec: dg.AssetSpec) -> Tier | None:
        value = _lookup(spec, CLASSIFICATION_KEY)
        if value in (None, ""):
            return None
        try:
            return Tier.parse(str(value))
        except ValidationError as err:
            raise ValidationError(f"asset {spec.key.to_user_string()}: {err}") from None

    def get_declared_tags(self, spec: dg.AssetSpec) -> frozenset[str]:
        return _tags(_lookup(spec, TAGS_KEY))

    def get_purpose(self, spec: dg.AssetSpec) -> str:
        value = _lookup(spec, PURPOSE_KEY)
        return str(value) if value else ""

    def get_columns(self, spec: dg.AssetSpec) -> tuple[Column, ...]:
        """Columns declared on the definition (``dagster/column_schema``)."""
        return columns_of_schema((spec.metadata or {}).get(COLUMN_SCHEMA_KEY))

    def get_column_tags(self, spec: dg.AssetSpec) -> dict[str, tuple[str, ...]]:
        """Per-column labels from ``TableColumn.tags`` (``lacuna/tags``, ``lacuna/classification``)."""
        schema = (spec.metadata or {}).get(COLUMN_SCHEMA_KEY)
        schema = getattr(schema, "schema", schema)
        out: dict[str, tuple[str, ...]] = {}
        for col in getattr(schema, "columns", ()) or ():
            tags = dict(getattr(col, "tags", None) or {})
            labels = sorted(_tags(tags.get(TAGS_KEY)))
            if tags.get(CLASSIFICATION_KEY):
                labels.append(Tier.parse(str(tags[CLASSIFICATION_KEY])).name)
            if labels:
                out[col.name] = tuple(labels)
        return out

    def get_column_lineage(
        self, metadata: Mapping[str, Any]
    ) -> dict[str, tuple[tuple[DatasetRef, str], ...]]:
        """``dagster/column_lineage`` (a ``TableColumnLineage``) as ``{out: ((ref, col), ...)}``."""
        lineage = metadata.get(COLUMN_LINEAGE_KEY)
        lineage = getattr(lineage, "column_lineage", lineage)
        deps = getattr(lineage, "deps_by_column", None) or {}
        return {
            str(column): tuple(
                (self.get_dataset_ref(dep.asset_key), str(dep.column_name)) for dep in sources
            )
            for column, sources in deps.items()
        }

    def get_description(self, spec: dg.AssetSpec) -> str:
        return spec.description or ""

    def get_operation_for(self, spec: dg.AssetSpec) -> AssetOperation:
        """Everything above, for one asset, before it runs."""
        return AssetOperation(
            asset_key=spec.key.to_user_string(),
            job=self.get_job(spec.key),
            kind=self.get_operation(spec),
            inputs=self.get_input_refs(spec),
            output=self.get_output_ref(spec),
            declared_tier=self.get_declared_tier(spec),
            declared_tags=self.get_declared_tags(spec),
            columns=self.get_columns(spec),
            column_tags=self.get_column_tags(spec),
            column_lineage=self.get_column_lineage(spec.metadata or {}),
            purpose=self.get_purpose(spec),
            description=self.get_description(spec),
        )


def destination_ref(value: str) -> DatasetRef:
    """``file:///tmp/x.csv`` → ``file::/tmp/x.csv``; ``s3://bucket/k`` → ``s3://bucket::k``
    (the OpenLineage naming convention); ``ns::name`` as is; a bare path → ``file``."""
    text = value.strip()
    if "::" in text:  # a dataset key; URIs never contain "::"
        return DatasetRef.from_key(text)
    if text.startswith("file://"):
        return DatasetRef("file", text[len("file://") :] or "/")
    if "://" in text:
        scheme, rest = text.split("://", 1)
        authority, _, path = rest.partition("/")
        return DatasetRef(f"{scheme}://{authority}", path or "/")
    if text.startswith("/"):
        return DatasetRef("file", text)
    raise ValidationError(
        f"lacuna/destination {value!r} is not a location: use a URI (file:///path, s3://bucket/key)"
        " or a dataset key (namespace::name)"
    )


def _tags(value: Any) -> frozenset[str]:
    if value in (None, ""):
        return frozenset()
    if isinstance(value, str):
        return normalize_tags(t for t in _TAG_SPLIT.split(value) if t)
    if isinstance(value, Iterable):
        return normalize_tags(str(t) for t in value if str(t).strip())
    return normalize_tags([str(value)])


def columns_of_schema(schema: Any) -> tuple[Column, ...]:
    """Columns of a ``TableSchema`` (or its metadata value wrapper)."""
    schema = getattr(schema, "schema", schema)
    out: list[Column] = []
    for col in getattr(schema, "columns", ()) or ():
        if col.description:
            out.append((col.name, str(col.type or ""), col.description))
        else:
            out.append((col.name, str(col.type or "")))
    return tuple(out)


def columns_of_value(value: Any) -> tuple[Column, ...]:
    """The columns of what an asset returned, when it is table-like: a pandas/polars frame, a
    pyarrow table, a list of row dicts or a dict of columns. Never imports those libraries."""
    if value is None:
        return ()
    schema = getattr(value, "schema", None)
    names, types = getattr(schema, "names", None), getattr(schema, "types", None)
    if isinstance(names, list) and types is not None:  # pyarrow Table / Schema
        return tuple((str(n), str(t)) for n, t in zip(names, types, strict=False))
    dtypes = getattr(value, "dtypes", None)
    columns = getattr(value, "columns", None)
    if columns is not None and dtypes is not None and not isinstance(value, Mapping):
        # pandas: dtypes is a Series aligned with columns; polars: a list of the same length
        return tuple((str(c), str(t)) for c, t in zip(list(columns), list(dtypes),
                                                       strict=False))
    if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
        first = next(iter(value.values()))
        if isinstance(first, (list, tuple)):
            return tuple((k, _py_type(v[0] if v else None)) for k, v in value.items())
        return ()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping):
        return tuple((str(k), _py_type(v)) for k, v in value[0].items())
    return ()


def _py_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "double", str: "string"}.get(
        type(value), type(value).__name__ if value is not None else ""
    )


def openlineage_run_id(dagster_run_id: str, asset_key: str) -> str:
    """One OpenLineage run per asset per Dagster run, stable so START/COMPLETE/FAIL match."""
    return str(uuid.uuid5(RUN_NAMESPACE, f"{dagster_run_id}/{asset_key}"))


class _Ingests(Protocol):
    def ingest(self, event: dict[str, Any], *, via: str) -> Any: ...


class LineageEmitter:
    """Sends an asset's run events to a backend; logs and swallows every failure.

    ``backend.ingest(event, via=...)`` is ``Governor.ingest`` in process or the HTTP client
    against a server; both take the same OpenLineage RunEvent dict.
    """

    def __init__(self, backend: _Ingests, *, producer: str = DAGSTER_PRODUCER,
                 via: str = "dagster") -> None:
        self.backend = backend
        self.producer = producer
        self.via = via

    def event(
        self,
        op: AssetOperation,
        event_type: str,
        *,
        run_id: str,
        parent: tuple[str, str] | None = None,
        user: str | None = None,
        error: str | None = None,
        include_output: bool = True,
    ) -> dict[str, Any]:
        """The RunEvent for one state of one asset materialization."""
        run_facets: dict[str, Any] = {}
        if parent is not None:
            job_name, dagster_run_id = parent
            run_facets["parent"] = facet(
                {"job": {"namespace": op.job[0], "name": job_name},
                 "run": {"runId": dagster_run_id}},
                "https://openlineage.io/spec/facets/1-0-1/ParentRunFacet.json#/$defs/ParentRunFacet",
                self.producer,
            )
        if error:
            run_facets["errorMessage"] = facet(
                {"message": error[:4000], "programmingLanguage": "python"},
                "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json"
                "#/$defs/ErrorMessageRunFacet",
                self.producer,
            )
        return build_run_event(
            job=op.job,
            event_type=event_type,
            inputs=op.input_specs(),
            outputs=[op.output_spec()] if include_output else [],
            operation=op.kind,
            run_id=run_id,
            user=user,
            purpose=op.purpose or None,
            producer=self.producer,
            run_facets=run_facets,
        )

    def emit(self, event: dict[str, Any]) -> Any | None:
        """Ingest one event; returns the backend's result, or None when it failed (logged)."""
        try:
            return self.backend.ingest(event, via=self.via)
        except Exception as err:  # noqa: BLE001 - emission must never fail the run
            log.warning(
                "Lacuna lineage: %s event for %s was not recorded: %s",
                event.get("eventType"), event.get("job", {}).get("name"), err,
            )
            return None
