"""The lineage records the ``lacuna`` dbt package writes, and where to find them.

Each hook of the package (``dbt_macros/macros/hooks.sql``) sends one JSON record, by two
transports carrying the same text:

* a dbt log line ``lacuna.record {json}`` (debug level): in ``logs/dbt.log`` (text or JSON log
  format) and in the event stream a ``dbtRunner`` callback receives — ``RecordCollector``
  gathers them live during a wrapped run;
* a row of the outbox table ``lacuna.events`` (``payload`` column), for plain ``dbt build``
  runs; ``outbox.py`` reads and acknowledges those rows.

A record (``v`` 1)::

    {"v": 1, "kind": "run_start" | "model" | "run_end",
     "record_id": "<invocation>:<kind>:<unique_id>", "invocation_id": ..., "unique_id": ...,
     "recorded_at": "...Z", "project": ..., "user": ..., "target": {"type", "host", "port",
     "path", "database", "schema", ...}, "lacuna": {"run_id": ...} | null,
     # run_start: "command", "run_started_at", "selected", "dbt_version"
     # model:     "resource_type", "name", "relation": {database, schema, identifier},
     #            "config_schema", "materialized", "meta", "columns": [{name, type}] (as the
     #            warehouse has them after the build), "declared_columns", "grouped",
     #            "parents": [{unique_id, resource_type, database, schema, identifier,
     #                         config_schema, materialized, meta,
     #                         columns (sources only: their declared columns)}]
     # run_end:   "command", "results": [{unique_id, resource_type, status, message}],
     #            "violations", "stopped"}

>>> rec = parse_record_line('lacuna.record {"v": 1, "kind": "run_start", "record_id": "i:r:p", '
...     '"invocation_id": "i", "unique_id": "p", "project": "p"}')
>>> rec.kind, rec.invocation_id
('run_start', 'i')
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lacuna_orchestration.errors import NotFound, ValidationError
from lacuna_orchestration.integrations.dbt.manifest import DbtColumn, DbtNode, columns_from

__all__ = [
    "MARKER",
    "LineageRecord",
    "RecordCollector",
    "parse_record",
    "parse_record_line",
    "read_log_records",
]

MARKER = "lacuna.record "
KINDS = frozenset({"run_start", "model", "run_end"})
LOG_EVENTS = frozenset({"JinjaLogDebug", "JinjaLogInfo"})


@dataclass(frozen=True, slots=True)
class LineageRecord:
    """One record, with typed access to what the ingest path needs."""

    kind: str
    record_id: str
    invocation_id: str
    unique_id: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return str(self.data.get("project") or "")

    @property
    def command(self) -> str:
        return str(self.data.get("command") or "")

    @property
    def user(self) -> str | None:
        value = self.data.get("user")
        return str(value) if value and value != "unknown" else None

    @property
    def target(self) -> Mapping[str, Any]:
        target = self.data.get("target")
        return target if isinstance(target, Mapping) else {}

    @property
    def lacuna_run_id(self) -> str | None:
        """Lacuna's run id when the ``lacuna dbt`` wrapper governed the run."""
        ours = self.data.get("lacuna")
        if isinstance(ours, Mapping) and ours.get("run_id"):
            return str(ours["run_id"])
        return None

    @property
    def run_key(self) -> str:
        """The invocation's run id: Lacuna's when governed, else dbt's invocation id."""
        return self.lacuna_run_id or self.invocation_id

    @property
    def results(self) -> list[Mapping[str, Any]]:
        return [r for r in self.data.get("results") or () if isinstance(r, Mapping)]

    @property
    def columns(self) -> list[tuple[str, str]]:
        """The columns the warehouse reported after the build (model records)."""
        out = []
        for col in self.data.get("columns") or ():
            if isinstance(col, Mapping) and col.get("name"):
                out.append((str(col["name"]), str(col.get("type") or "")))
        return out

    def node(self) -> DbtNode:
        """The built node as a ``DbtNode`` (model records)."""
        relation = self.data.get("relation") or {}
        return DbtNode(
            unique_id=self.unique_id,
            resource_type=str(self.data.get("resource_type") or "model"),
            name=str(self.data.get("name") or self.unique_id.rsplit(".", 1)[-1]),
            database=relation.get("database"),
            schema=relation.get("schema"),
            identifier=relation.get("identifier"),
            package=str(self.data.get("package") or ""),
            config_schema=self.data.get("config_schema"),
            materialized=self.data.get("materialized"),
            meta=dict(self.data.get("meta") or {}),
            columns=columns_from(self.data.get("declared_columns") or {}),
            grouped=bool(self.data.get("grouped")),
        )

    def parents(self) -> list[DbtNode]:
        """The relation parents the post-hook saw, as ``DbtNode`` values."""
        out = []
        for p in self.data.get("parents") or ():
            if not isinstance(p, Mapping) or not p.get("unique_id"):
                continue
            out.append(DbtNode(
                unique_id=str(p["unique_id"]),
                resource_type=str(p.get("resource_type") or "model"),
                name=str(p.get("name") or p["unique_id"]),
                database=p.get("database"),
                schema=p.get("schema"),
                identifier=p.get("identifier"),
                config_schema=p.get("config_schema"),
                materialized=p.get("materialized"),
                meta=dict(p.get("meta") or {}),
                columns=_declared(p.get("columns")),
            ))
        return out


def _declared(columns: Any) -> tuple[DbtColumn, ...]:
    return columns_from(columns) if isinstance(columns, Mapping) else ()


def parse_record(data: Mapping[str, Any] | str | bytes) -> LineageRecord:
    """A record from its JSON (text or already decoded)."""
    if isinstance(data, (str, bytes)):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise ValidationError(f"lacuna record is not valid JSON: {err}") from None
    if not isinstance(data, Mapping):
        raise ValidationError("lacuna record must be a JSON object")
    kind = str(data.get("kind") or "")
    if kind not in KINDS:
        raise ValidationError(f"lacuna record has unknown kind {kind!r}; expected one of "
                              f"{', '.join(sorted(KINDS))}")
    for key in ("invocation_id", "unique_id"):
        if not data.get(key):
            raise ValidationError(f"lacuna {kind} record lacks {key}")
    return LineageRecord(
        kind=kind,
        record_id=str(data.get("record_id") or f"{data['invocation_id']}:{kind}:{data['unique_id']}"),
        invocation_id=str(data["invocation_id"]),
        unique_id=str(data["unique_id"]),
        data=dict(data),
    )


def parse_record_line(line: str) -> LineageRecord | None:
    """The record in one log message (``lacuna.record {...}``), or None for other lines."""
    at = line.find(MARKER)
    if at < 0:
        return None
    return parse_record(line[at + len(MARKER):].strip())


def read_log_records(path: str | Path) -> list[LineageRecord]:
    """Every record in a dbt log file, text or JSON format (``--log-format-file json``)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no dbt log file at {path}")
    return list(_records_in_lines(path.read_text(encoding="utf-8", errors="replace").splitlines()))


def _records_in_lines(lines: Iterable[str]) -> Iterator[LineageRecord]:
    for line in lines:
        if MARKER not in line:
            continue
        text = line
        if line.lstrip().startswith("{"):
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, Mapping):
                text = str((doc.get("data") or {}).get("msg") or doc.get("info", {}).get("msg")
                           or "")
        record = parse_record_line(text)
        if record is not None:
            yield record


class RecordCollector:
    """A ``dbtRunner`` callback that keeps the ``lacuna.record`` log lines of a run.

    dbt fires events from its worker threads; the collector is thread-safe. An optional
    ``on_record`` is called for each record as it arrives (the wrapper uses it to ingest while
    dbt keeps building).
    """

    def __init__(self, on_record: Any = None) -> None:
        self._lock = threading.Lock()
        self._records: list[LineageRecord] = []
        self.errors: list[str] = []
        self.on_record = on_record

    def __call__(self, event: Any) -> None:
        info = getattr(event, "info", None)
        if getattr(info, "name", None) not in LOG_EVENTS:
            return
        msg = str(getattr(getattr(event, "data", None), "msg", "") or "")
        if not msg.startswith(MARKER):
            return
        try:
            record = parse_record_line(msg)
        except ValidationError as err:
            with self._lock:
                self.errors.append(str(err))
            return
        if record is None:
            return
        with self._lock:
            self._records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    @property
    def records(self) -> list[LineageRecord]:
        with self._lock:
            return list(self._records)
