"""OpenLineage events in, Lacuna's view of them out.

``parse_event`` accepts what any OpenLineage producer sends — a dict, a JSON string/bytes or an
``openlineage-python`` event object — checks it against the 2-0-2 spec's required envelope by
building the library's own models (``event_v2.RunEvent`` / ``DatasetEvent`` / ``JobEvent``:
they validate ``eventTime`` and ``runId``), and returns a ``LineageEvent``: the datasets, their
schema fields, column lineage, classification labels and the operation kind. Facets Lacuna does
not understand are kept untouched in ``raw``.

Labels travel in two places, both read here:

* the standard ``tags`` dataset facet (``{"key": "classification", "value": "PII",
  "field": "email"}``) — a tier name sets a floor, any other value is a tag;
* a ``lacuna`` facet (dataset: ``{"classification": "PROPRIETARY", "tags": [...],
  "columns": {"email": {"classification": ..., "tags": [...]}}}``; run or job:
  ``{"operation": "join", "purpose": "...", "user": "..."}``).

>>> ev = parse_event({"eventType": "START", "eventTime": "2024-01-01T00:00:00Z",
...     "producer": "https://example.com/p", "schemaURL": SPEC_URL,
...     "run": {"runId": "3f5e2a56-7a8e-4c86-9f38-6a1b7a9e0b61"},
...     "job": {"namespace": "dagster", "name": "join"},
...     "inputs": [{"namespace": "file", "name": "customers.csv"}],
...     "outputs": [{"namespace": "file", "name": "analysis.csv"}]})
>>> [d.ref.name for d in ev.inputs], ev.operation.value
(['customers.csv'], 'transform')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from lacuna_orchestration.errors import IngestError, ValidationError
from lacuna_orchestration.model import (
    DatasetRef,
    OperationKind,
    Tier,
    normalize_tag,
)

__all__ = [
    "MAX_EVENT_BYTES",
    "SPEC_URL",
    "ColumnSource",
    "DatasetSnapshot",
    "FieldInfo",
    "LineageEvent",
    "OpenLineageTranslator",
    "parse_event",
    "parse_events",
]

SPEC_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
MAX_EVENT_BYTES = 8 * 1024 * 1024
MAX_NESTING = 64
RUN_STATES = frozenset({"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"})
LACUNA_FACET = "lacuna"


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One column from a ``schema`` facet (nested fields are flattened as ``parent.child``)."""

    name: str
    type: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class ColumnSource:
    """One input column feeding an output column (``columnLineage`` facet)."""

    dataset: DatasetRef
    column: str
    transformation: str = "IDENTITY"  # IDENTITY | TRANSFORMATION | AGGREGATION | INDIRECT ...
    masking: bool = False


@dataclass(frozen=True, slots=True)
class DatasetSnapshot:
    """A dataset as one event describes it."""

    ref: DatasetRef
    fields: tuple[FieldInfo, ...] = ()
    column_lineage: Mapping[str, tuple[ColumnSource, ...]] = field(default_factory=dict)
    explicit_tier: Tier | None = None
    explicit_tags: frozenset[str] = frozenset()
    column_labels: Mapping[str, tuple[Tier | None, frozenset[str]]] = field(default_factory=dict)
    samples: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""
    facets: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_explicit(self) -> bool:
        return self.explicit_tier is not None or bool(self.explicit_tags)


@dataclass(frozen=True, slots=True)
class LineageEvent:
    """What Lacuna needs from one OpenLineage event, plus the event itself in ``raw``."""

    kind: str  # "run" | "dataset" | "job"
    event_type: str  # START/COMPLETE/... for run events, "" otherwise
    event_time: str
    producer: str
    run_id: str
    job_namespace: str
    job_name: str
    inputs: tuple[DatasetSnapshot, ...]
    outputs: tuple[DatasetSnapshot, ...]
    operation: OperationKind
    user: str = ""
    purpose: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def job(self) -> str:
        return f"{self.job_namespace}.{self.job_name}" if self.job_namespace else self.job_name

    @property
    def datasets(self) -> tuple[DatasetSnapshot, ...]:
        return self.inputs + self.outputs


class OpenLineageTranslator:
    """Maps OpenLineage facets to Lacuna's view. Override a ``get_*`` method for odd producers
    (e.g. one that encodes the operation in the job name)."""

    def get_operation(self, run_facets: Mapping[str, Any], job_facets: Mapping[str, Any]) -> (
        OperationKind
    ):
        for facets in (run_facets, job_facets):
            ours = facets.get(LACUNA_FACET)
            if isinstance(ours, Mapping) and ours.get("operation"):
                try:
                    return OperationKind.parse(str(ours["operation"]))
                except ValidationError as err:
                    raise IngestError(f"facet lacuna.operation: {err}") from None
        return OperationKind.TRANSFORM

    def get_context(self, run_facets: Mapping[str, Any], job_facets: Mapping[str, Any]) -> (
        dict[str, str]
    ):
        out: dict[str, str] = {}
        for facets in (job_facets, run_facets):
            ours = facets.get(LACUNA_FACET)
            if isinstance(ours, Mapping):
                for key in ("user", "purpose"):
                    if ours.get(key):
                        out[key] = str(ours[key])
        return out

    def get_fields(self, facets: Mapping[str, Any]) -> tuple[FieldInfo, ...]:
        schema = facets.get("schema")
        if not isinstance(schema, Mapping):
            return ()
        return tuple(_flatten_fields(schema.get("fields") or (), prefix=""))

    def get_column_lineage(self, facets: Mapping[str, Any]) -> dict[str, tuple[ColumnSource, ...]]:
        facet = facets.get("columnLineage")
        if not isinstance(facet, Mapping):
            return {}
        out: dict[str, tuple[ColumnSource, ...]] = {}
        for column, spec in _object(facet.get("fields"), "columnLineage.fields").items():
            if not isinstance(spec, Mapping):
                continue
            sources = []
            for src in _list(spec.get("inputFields"), f"columnLineage.fields.{column}"):
                if not isinstance(src, Mapping) or not src.get("name") or not src.get("field"):
                    continue
                kind, masking = _transformation(src.get("transformations"), spec)
                sources.append(
                    ColumnSource(
                        DatasetRef(str(src.get("namespace") or "unknown"), str(src["name"])),
                        str(src["field"]),
                        kind,
                        masking,
                    )
                )
            out[str(column)] = tuple(sources)
        return out

    def get_labels(
        self, facets: Mapping[str, Any]
    ) -> tuple[Tier | None, frozenset[str], dict[str, tuple[Tier | None, frozenset[str]]]]:
        """Dataset floor tier, dataset tags and per-column labels from ``tags`` and ``lacuna``."""
        tier: Tier | None = None
        tags: set[str] = set()
        columns: dict[str, tuple[Tier | None, frozenset[str]]] = {}

        def label(column: str | None, value: Any) -> None:
            nonlocal tier
            text = str(value).strip()
            if not text:
                return
            try:
                found: Tier | None = Tier.parse(text)
            except ValidationError:
                found = None
            if column:
                ctier, ctags = columns.get(column, (None, frozenset()))
                if found is not None:
                    ctier = found if ctier is None else max(ctier, found)
                else:
                    ctags = ctags | {normalize_tag(text)}
                columns[column] = (ctier, ctags)
            elif found is not None:
                tier = found if tier is None else max(tier, found)
            else:
                tags.add(normalize_tag(text))

        tag_facet = facets.get("tags")
        if isinstance(tag_facet, Mapping):
            for entry in _list(tag_facet.get("tags"), "tags.tags"):
                if not isinstance(entry, Mapping):
                    continue
                key = str(entry.get("key", "")).lower()
                if key in ("classification", "tier", "lacuna", "sensitivity", "tag"):
                    column = entry.get("field")
                    if column is not None and not isinstance(column, str):
                        raise IngestError("facet tags: a tag's field must be a column name")
                    label(column, entry.get("value"))
        ours = facets.get(LACUNA_FACET)
        if isinstance(ours, Mapping):
            if ours.get("classification"):
                try:
                    found = Tier.parse(str(ours["classification"]))
                except ValidationError as err:
                    raise IngestError(f"facet lacuna.classification: {err}") from None
                tier = found if tier is None else max(tier, found)
            for t in _list(ours.get("tags"), "lacuna.tags"):
                tags.add(normalize_tag(str(t)))
            for column, spec in _object(ours.get("columns"), "lacuna.columns").items():
                if isinstance(spec, Mapping):
                    if spec.get("classification"):
                        label(str(column), spec["classification"])
                    for t in _list(spec.get("tags"), f"lacuna.columns.{column}.tags"):
                        label(str(column), t)
        return tier, frozenset(tags), columns

    def get_samples(self, facets: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
        ours = facets.get(LACUNA_FACET)
        if not isinstance(ours, Mapping):
            return {}
        samples = _object(ours.get("samples"), "lacuna.samples")
        return {
            str(k): tuple(str(v) for v in _list(vals, f"lacuna.samples.{k}")[:50])
            for k, vals in samples.items()
        }

    def get_description(self, facets: Mapping[str, Any]) -> str:
        doc = facets.get("documentation")
        if isinstance(doc, Mapping) and doc.get("description"):
            return str(doc["description"])
        return ""

    def dataset(self, data: Mapping[str, Any], where: str) -> DatasetSnapshot:
        if not isinstance(data, Mapping):
            raise IngestError(f"{where} must be an object with namespace and name")
        namespace, name = data.get("namespace"), data.get("name")
        if not isinstance(namespace, str) or not namespace:
            raise IngestError(f"{where}.namespace is missing (a dataset needs a namespace)")
        if not isinstance(name, str) or not name:
            raise IngestError(f"{where}.name is missing (a dataset needs a name)")
        facets = data.get("facets") or {}
        if not isinstance(facets, Mapping):
            raise IngestError(f"{where}.facets must be an object")
        tier, tags, columns = self.get_labels(facets)
        return DatasetSnapshot(
            ref=DatasetRef(namespace, name),
            fields=self.get_fields(facets),
            column_lineage=self.get_column_lineage(facets),
            explicit_tier=tier,
            explicit_tags=tags,
            column_labels=columns,
            samples=self.get_samples(facets),
            description=self.get_description(facets),
            facets=dict(facets),
        )


def _object(value: Any, where: str) -> Mapping[str, Any]:
    """A facet part that must be a JSON object (absent or null: empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise IngestError(f"facet {where:.80} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    """A facet part that must be a JSON array (absent or null: empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise IngestError(f"facet {where:.80} must be a list, got {type(value).__name__}")
    return value


def _flatten_fields(fields: Any, prefix: str) -> list[FieldInfo]:
    out: list[FieldInfo] = []
    if not isinstance(fields, Sequence):
        return out
    for item in fields:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        name = f"{prefix}{item['name']}"
        out.append(FieldInfo(name, str(item.get("type") or ""), str(item.get("description") or "")))
        if item.get("fields"):
            out.extend(_flatten_fields(item["fields"], prefix=f"{name}."))
    return out


def _transformation(transformations: Any, spec: Mapping[str, Any]) -> tuple[str, bool]:
    """Reduce a column lineage entry's transformations to (kind, masked)."""
    kind, masking = "IDENTITY", False
    if isinstance(transformations, Sequence) and transformations:
        kinds = []
        for t in transformations:
            if isinstance(t, Mapping):
                masking = masking or bool(t.get("masking"))
                if str(t.get("type") or "").upper() == "INDIRECT":
                    kinds.append("INDIRECT")
                else:
                    kinds.append(str(t.get("subtype") or "IDENTITY").upper())
        if "AGGREGATION" in kinds:
            kind = "AGGREGATION"
        elif "TRANSFORMATION" in kinds:
            kind = "TRANSFORMATION"
        elif kinds and all(k == "INDIRECT" for k in kinds):
            kind = "INDIRECT"
    else:
        legacy = str(spec.get("transformationType") or "").upper()
        if legacy == "INDIRECT":
            kind = "INDIRECT"
        elif legacy and legacy not in ("IDENTITY", "DIRECT"):
            kind = "TRANSFORMATION"
        masking = "mask" in str(spec.get("transformationDescription") or "").lower()
    return kind, masking


def _load(payload: Any) -> dict[str, Any]:
    from_text = isinstance(payload, (bytes, bytearray, memoryview, str))
    if from_text:
        raw = bytes(payload, "utf-8") if isinstance(payload, str) else bytes(payload)
        if len(raw) > MAX_EVENT_BYTES:
            raise IngestError(
                f"event is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES:,} bytes"
            )
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise IngestError(f"event is not valid JSON: {err}") from None
    elif not isinstance(payload, Mapping):
        payload = _from_openlineage_object(payload)
    if not isinstance(payload, Mapping):
        raise IngestError(
            f"an OpenLineage event must be a JSON object, got {type(payload).__name__}"
        )
    _check_depth(payload)
    if not from_text:
        # Already parsed: hold it to the same size limit as JSON text, and refuse what cannot
        # be written as JSON (lone surrogates, integers beyond 64 bits, non-string keys) now,
        # not half-way through the catalog and audit writes.
        try:
            size = len(orjson.dumps(payload))
        except orjson.JSONEncodeError as err:
            raise IngestError(f"event cannot be written as JSON: {err}") from None
        if size > MAX_EVENT_BYTES:
            raise IngestError(f"event is {size:,} bytes; the limit is {MAX_EVENT_BYTES:,} bytes")
    return dict(payload)


def _from_openlineage_object(obj: Any) -> Any:
    """An ``openlineage-python`` event object → its JSON dict (through the library's Serde)."""
    module = type(obj).__module__
    if not module.startswith("openlineage."):
        raise IngestError(
            f"cannot ingest a {type(obj).__name__}: pass a dict, JSON text or an OpenLineage event"
        )
    from openlineage.client.serde import Serde

    return orjson.loads(Serde.to_json(obj))


_SCALARS = frozenset({int, float, bool, type(None)})


def _check_depth(payload: Any) -> None:
    """Refuse events nested deeper than ``MAX_NESTING`` and text no store can hold the same:
    a NUL character (PostgreSQL text cannot contain one) anywhere, in a key or a value.

    Runs on every event, so the common shapes (dicts, lists, strings) are tested by exact
    type first; any other mapping falls back to the ``Mapping`` check."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_NESTING:
            raise IngestError(f"event is nested deeper than {MAX_NESTING} levels")
        if type(node) is list:
            items: Iterable[tuple[Any, Any]] = ((None, v) for v in node)
        elif type(node) is dict or isinstance(node, Mapping):
            items = node.items()
        else:
            continue
        for key, value in items:
            kind = type(value)
            if kind is dict or kind is list:
                push((value, depth + 1))
            elif isinstance(value, str):
                if "\x00" in value:
                    where = "in a list" if key is None else f"at {key!r:.60}"
                    raise IngestError(f"event contains a NUL character (\\u0000) {where}")
            elif kind not in _SCALARS and isinstance(value, Mapping):
                push((value, depth + 1))
            if type(key) is str and "\x00" in key:
                raise IngestError("event contains a NUL character (\\u0000) in a key")


def _require_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise IngestError(f"{where}{key} is missing or not a string")
    return value


# The shapes nearly every producer sends, which openlineage-python's validators accept exactly
# when the values are in range (checked by ``datetime``): these skip dateutil's parser and
# ``UUID``. Anything else goes to the validators themselves.
_PLAIN_EVENT_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:[0-5]\d)", re.ASCII)
_PLAIN_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.ASCII)


def _plain_event_time(value: Any) -> bool:
    if not isinstance(value, str) or _PLAIN_EVENT_TIME.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False  # out of range here; the validator decides (and names the problem)
    return True


def _validate_with_models(data: Mapping[str, Any], kind: str) -> None:
    """Run openlineage-python's own field validators on the envelope: ``eventTime`` (ISO 8601
    with a time), ``run.runId`` (a UUID), ``producer`` (a URL). Calling them directly checks
    the same things as building the model objects, at a tenth of the cost (the model's
    ``__init__`` also runs attrs converters and redaction set-up nobody here needs); values
    in the common plain shapes are checked without them (a sixth of a Dagster step's ingest
    time went to dateutil, ``urlparse`` and ``UUID``)."""
    from openlineage.client.generated import base

    event_time, producer = data["eventTime"], data["producer"]
    checks: list[tuple[str, Any, Any]] = []
    if not _plain_event_time(event_time):
        checks.append(("eventTime", base.BaseEvent.eventtime_check, event_time))
    # urlparse only ever refuses brackets (IPv6 hosts) and non-ASCII host names
    if not (isinstance(producer, str) and producer.isascii() and "[" not in producer
            and "]" not in producer):
        checks.append(("producer", base.BaseEvent.producer_check, producer))
    if kind == "run":
        run_id = str(data["run"]["runId"])
        if _PLAIN_UUID.fullmatch(run_id) is None:
            checks.append(("run.runId", base.Run.runid_check, run_id))
    for name, check, value in checks:
        try:
            check(None, None, value)
        except (ValueError, TypeError, OverflowError) as err:
            raise IngestError(f"{name} is invalid: {err}") from None


def _check_facet_map(facets: Any, where: str, deletable: bool) -> None:
    """Every facet is an object carrying ``_producer`` and ``_schemaURL`` (the spec's
    BaseFacet); dataset and job facets may carry a boolean ``_deleted``."""
    if facets is None:
        return
    if not isinstance(facets, Mapping):
        raise IngestError(f"{where} must be an object of facets")
    for name, facet in facets.items():
        if not isinstance(facet, Mapping):
            raise IngestError(f"{where}.{name} must be an object")
        for key in ("_producer", "_schemaURL"):
            if not isinstance(facet.get(key), str):
                raise IngestError(f"{where}.{name}.{key} is missing or not a string")
        if deletable and "_deleted" in facet and not isinstance(facet["_deleted"], bool):
            raise IngestError(f"{where}.{name}._deleted must be true or false")


def _check_facets(data: Mapping[str, Any], kind: str) -> None:
    if kind == "run":
        _check_facet_map(data["run"].get("facets"), "run.facets", deletable=False)
    if kind in ("run", "job"):
        _check_facet_map(data["job"].get("facets"), "job.facets", deletable=True)
    if kind == "dataset":
        _check_facet_map(data["dataset"].get("facets"), "dataset.facets", deletable=True)
    for key, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        items = data.get(key)
        if items is not None and not isinstance(items, list):
            raise IngestError(f"{key} must be a list of datasets")
        for i, item in enumerate(items or ()):
            if isinstance(item, Mapping):
                _check_facet_map(item.get("facets"), f"{key}[{i}].facets", deletable=True)
                _check_facet_map(item.get(extra), f"{key}[{i}].{extra}", deletable=False)


def parse_event(payload: Any, translator: OpenLineageTranslator | None = None) -> LineageEvent:
    """Validate one OpenLineage event and return Lacuna's view of it.

    Raises ``IngestError`` naming the missing or invalid field. An already parsed
    ``LineageEvent`` is returned as it is (the service validates before it ingests).
    """
    if isinstance(payload, LineageEvent):
        return payload
    tr = translator or OpenLineageTranslator()
    data = _load(payload)
    _require_str(data, "eventTime", "")
    _require_str(data, "producer", "")
    _require_str(data, "schemaURL", "")

    if "run" in data or "eventType" in data:
        kind = "run"
        run = data.get("run")
        if not isinstance(run, Mapping):
            raise IngestError("run is missing (a RunEvent needs run.runId)")
        _require_str(run, "runId", "run.")
        job = data.get("job")
        if not isinstance(job, Mapping):
            raise IngestError("job is missing (a RunEvent needs job.namespace and job.name)")
        _require_str(job, "namespace", "job.")
        _require_str(job, "name", "job.")
        event_type = data.get("eventType")
        if event_type is not None and (
            not isinstance(event_type, str) or event_type not in RUN_STATES
        ):
            raise IngestError(
                f"eventType {event_type!r} is not one of {', '.join(sorted(RUN_STATES))}"
            )
    elif "dataset" in data:
        kind = "dataset"
        dataset = data.get("dataset")
        if not isinstance(dataset, Mapping):
            raise IngestError("dataset must be an object with namespace and name")
        _require_str(dataset, "namespace", "dataset.")
        _require_str(dataset, "name", "dataset.")
    elif "job" in data:
        kind = "job"
        job = data["job"]
        if not isinstance(job, Mapping):
            raise IngestError("job must be an object with namespace and name")
        _require_str(job, "namespace", "job.")
        _require_str(job, "name", "job.")
    else:
        raise IngestError(
            "not an OpenLineage event: expected a RunEvent (run, job), "
            "a DatasetEvent (dataset) or a JobEvent (job)"
        )
    _validate_with_models(data, kind)
    _check_facets(data, kind)

    def datasets(key: str) -> tuple[DatasetSnapshot, ...]:
        items = data.get(key) or []
        if not isinstance(items, list):
            raise IngestError(f"{key} must be a list of datasets")
        return tuple(tr.dataset(item, f"{key}[{i}]") for i, item in enumerate(items))

    if kind == "dataset":
        inputs: tuple[DatasetSnapshot, ...] = ()
        outputs: tuple[DatasetSnapshot, ...] = (tr.dataset(data["dataset"], "dataset"),)
        run_facets: Mapping[str, Any] = {}
        job_facets: Mapping[str, Any] = {}
        job_ns = job_name = ""
    else:
        job_obj = data["job"]
        inputs, outputs = datasets("inputs"), datasets("outputs")
        run_facets = (data.get("run") or {}).get("facets") or {}
        job_facets = job_obj.get("facets") or {}
        job_ns, job_name = job_obj["namespace"], job_obj["name"]
    context = tr.get_context(run_facets, job_facets)
    return LineageEvent(
        kind=kind,
        event_type=str(data.get("eventType") or ("" if kind != "run" else "OTHER")),
        event_time=data["eventTime"],
        producer=data["producer"],
        run_id=str((data.get("run") or {}).get("runId", "")),
        job_namespace=job_ns,
        job_name=job_name,
        inputs=inputs,
        outputs=outputs,
        operation=tr.get_operation(run_facets, job_facets),
        user=context.get("user", ""),
        purpose=context.get("purpose", ""),
        raw=data,
    )


def parse_events(text: str | bytes) -> list[Any]:
    """Split a JSON array, a single object or NDJSON into raw event objects (not yet parsed),
    naming the line of a broken one."""
    blob = text.encode() if isinstance(text, str) else text
    stripped = blob.strip()
    if not stripped:
        return []
    if stripped[:1] == b"[":
        try:
            items = orjson.loads(stripped)
        except orjson.JSONDecodeError as err:
            raise IngestError(f"not valid JSON: {err}") from None
        return list(items)
    try:
        return [orjson.loads(stripped)]
    except orjson.JSONDecodeError:
        pass
    out = []
    for number, line in enumerate(stripped.splitlines(), 1):
        if line.strip():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError as err:
                raise IngestError(f"line {number} is not valid JSON: {err}") from None
    return out
