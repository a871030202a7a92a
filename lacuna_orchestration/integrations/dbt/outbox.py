"""From the ``lacuna`` package's records to OpenLineage events in Lacuna.

The transport (see ``dbt_macros/README.md``): the package's hooks write each record to an
outbox table in the warehouse (``lacuna.events``; created by ``register_run`` on the first run)
and to dbt's log as a ``lacuna.record`` line. A plain ``dbt build`` leaves its records in the
outbox; ``collect`` reads them through dbt itself (``run-operation lacuna.outbox_dump``: the
user's own profile and adapter, no second set of credentials), turns each into a standard
OpenLineage RunEvent, ingests it with ``Governor.ingest`` — the path every producer takes — and
only then deletes the ingested rows (``run-operation lacuna.outbox_ack``). A failure before the
acknowledgement leaves the rows for the next collection. Records can also be read from a dbt
log file (``collect(log_file=...)``) when the outbox is turned off.

Event mapping (``EventAssembler``):

* ``run_start``  → START of the invocation job ``<project>.<command>`` (run id = Lacuna's run id
  when the wrapper governed the run, else dbt's invocation id);
* ``model``      → COMPLETE of the node's job (its unique id): inputs = its relation parents,
  output = its relation with the columns the warehouse reported, ``meta`` as floor; the run id
  is derived from the invocation's, and its ``parent`` facet names the invocation;
* ``run_end``    → FAIL for every node that errored (with dbt's message), ABORT for skipped
  ones, then COMPLETE (or FAIL) of the invocation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lacuna_orchestration.errors import IngestError, NotFound, StoreError, ValidationError
from lacuna_orchestration.integrations.dbt.gate import (
    GovernorLike,
    derived_classification,
    floor_violation,
)
from lacuna_orchestration.integrations.dbt.invoke import DbtArgs, invoke
from lacuna_orchestration.integrations.dbt.manifest import GATED_TYPES, DbtManifest
from lacuna_orchestration.integrations.dbt.records import (
    LineageRecord,
    RecordCollector,
    read_log_records,
)
from lacuna_orchestration.integrations.dbt.translator import DbtTranslator

__all__ = ["CollectResult", "EventAssembler", "ack_outbox", "collect", "read_outbox"]

log = logging.getLogger(__name__)

FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
SKIPPED_STATUSES = frozenset({"skipped"})
BUILT_STATUSES = frozenset({"success", "pass", "warn"})


class EventAssembler:
    """Builds the OpenLineage events of dbt nodes from records, run results and the manifest.

    ``manifest`` (optional) describes nodes that left no record (failed or skipped ones, or
    models without the post-hook); ``target`` names their relations when no record did.
    """

    def __init__(self, translator: DbtTranslator | None = None,
                 manifest: DbtManifest | None = None,
                 target: Mapping[str, Any] | None = None) -> None:
        self.translator = translator or DbtTranslator()
        self.manifest = manifest
        self.target = dict(target or {})

    def invocation_event(self, event_type: str, *, run_key: str, project: str, command: str,
                         user: str | None = None, error: str | None = None) -> dict[str, Any]:
        return self.translator.get_invocation_event(
            event_type=event_type, run_id=run_key, project=project, command=command, user=user,
            error=error)

    def record_event(self, record: LineageRecord, *, event_type: str = "COMPLETE",
                     command: str = "") -> dict[str, Any]:
        """The event of a ``model`` record: the node as built, with its real columns."""
        if record.kind != "model":
            raise ValidationError(f"{record.kind} records describe runs, not nodes")
        node = record.node()
        parents = [(p, None) for p in record.parents()]
        return self.translator.get_run_event(
            node,
            event_type=event_type,
            target=record.target or self.target,
            parents=parents,
            columns=record.columns or self.translator.get_declared_columns(node) or None,
            invocation=(record.run_key, record.project, command or record.command or "run"),
            user=record.user,
        )

    def node_event(self, unique_id: str, event_type: str, *, run_key: str, project: str,
                   command: str, user: str | None = None, error: str | None = None,
                   columns: Sequence[tuple[str, str]] | None = None) -> dict[str, Any] | None:
        """The event of a node known only by id (from the manifest); None when the manifest
        does not describe it."""
        if self.manifest is None or unique_id not in self.manifest:
            return None
        node = self.manifest.node(unique_id)
        parents = [(p, None) for p in self.manifest.relation_parents(unique_id)]
        return self.translator.get_run_event(
            node,
            event_type=event_type,
            target=self.target,
            parents=parents,
            columns=columns if columns is not None else (
                self.translator.get_declared_columns(node) or None),
            invocation=(run_key, project, command),
            user=user,
            error=error,
        )

    def from_records(self, records: Iterable[LineageRecord],
                     errors: list[str] | None = None) -> list[tuple[LineageRecord, dict[str, Any]]]:
        """Every event the records describe, in order, each with the record it came from.

        A record that cannot become an event (an unknown tier typed into ``meta``, say) raises
        ``ValidationError`` — or, when ``errors`` is given, is noted there and skipped so one
        bad record does not block the others."""
        out: list[tuple[LineageRecord, dict[str, Any]]] = []
        commands: dict[str, str] = {}
        built: dict[str, set[str]] = {}
        for record in records:
            inv = record.invocation_id
            try:
                if record.kind == "run_start":
                    commands[inv] = record.command
                    out.append((record, self.invocation_event(
                        "START", run_key=record.run_key, project=record.project,
                        command=record.command, user=record.user)))
                elif record.kind == "model":
                    event = self.record_event(record, command=commands.get(inv, ""))
                    built.setdefault(inv, set()).add(record.unique_id)
                    out.append((record, event))
                else:
                    out.extend((record, e) for e in self._run_end_events(
                        record, built.get(inv, set())))
            except ValidationError as err:
                if errors is None:
                    raise
                errors.append(f"{record.record_id}: {err}")
        return out

    def _run_end_events(self, record: LineageRecord, built: set[str]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        failed = False
        for result in record.results:
            uid = str(result.get("unique_id") or "")
            status = str(result.get("status") or "").lower()
            if status in FAILED_STATUSES:
                failed = True
            if str(result.get("resource_type")) not in GATED_TYPES or uid in built:
                continue
            kind = ("FAIL" if status in FAILED_STATUSES else
                    "ABORT" if status in SKIPPED_STATUSES else None)
            if kind is None:
                continue
            event = self.node_event(
                uid, kind, run_key=record.run_key, project=record.project,
                command=record.command, user=record.user,
                error=str(result.get("message") or "") if kind == "FAIL" else None)
            if event is not None:
                events.append(event)
        violations = [str(v) for v in record.data.get("violations") or ()]
        failed = failed or bool(violations)
        events.append(self.invocation_event(
            "FAIL" if failed else "COMPLETE", run_key=record.run_key, project=record.project,
            command=record.command, user=record.user,
            error="\n".join(violations) or ("dbt reported failing nodes" if failed else None)))
        return events


@dataclass(slots=True)
class CollectResult:
    """What one collection did."""

    records: int = 0
    events: int = 0
    rejected: list[str] = field(default_factory=list)
    denials: list[Any] = field(default_factory=list)  # Decision values
    violations: dict[str, str] = field(default_factory=dict)  # unique_id -> floor violation
    acknowledged: int = 0
    results: list[Any] = field(default_factory=list)  # IngestResult values

    @property
    def ok(self) -> bool:
        """Every record became an event Lacuna accepted."""
        return not self.rejected

    @property
    def compliant(self) -> bool:
        """Nothing collected was denied by policy or violates its declared floor."""
        return not self.denials and not self.violations


def read_outbox(dbt_args: Sequence[str] | DbtArgs, *, limit: int | None = None) -> (
    list[LineageRecord]
):
    """The records waiting in the outbox, oldest first, read through dbt's own connection."""
    args = dbt_args if isinstance(dbt_args, DbtArgs) else DbtArgs.parse(dbt_args)
    collector = RecordCollector()
    missing: list[str] = []

    def watch(event: Any) -> None:
        msg = str(getattr(getattr(event, "data", None), "msg", "") or "")
        if msg.startswith("lacuna.outbox missing"):
            missing.append(msg.rsplit(" ", 1)[-1])

    op_args = {"limit": limit} if limit else {}
    command = ["run-operation", "lacuna.outbox_dump", *args.location_args(),
               *_vars_args(args), "--args", json.dumps(op_args)]
    result = invoke(command, callbacks=[collector, watch], quiet=True)
    if not result.success:
        raise StoreError(f"dbt could not read the Lacuna outbox: {result.exception}")
    if missing:
        raise NotFound(
            f"the warehouse has no Lacuna outbox {missing[0]}; it is created by the lacuna "
            "package's register_run hook on the first dbt run (on-run-start: "
            "[\"{{ lacuna.register_run() }}\"])")
    if collector.errors:
        log.warning("ignored %d malformed outbox record(s): %s", len(collector.errors),
                    collector.errors[0])
    return collector.records


def ack_outbox(dbt_args: Sequence[str] | DbtArgs, record_ids: Sequence[str]) -> int:
    """Delete ingested records from the outbox; returns how many ids were acknowledged."""
    if not record_ids:
        return 0
    args = dbt_args if isinstance(dbt_args, DbtArgs) else DbtArgs.parse(dbt_args)
    command = ["run-operation", "lacuna.outbox_ack", *args.location_args(), *_vars_args(args),
               "--args", json.dumps({"record_ids": list(record_ids)})]
    result = invoke(command, quiet=True)
    if not result.success:
        raise StoreError(f"dbt could not acknowledge outbox records: {result.exception}")
    return len(record_ids)


def _vars_args(args: DbtArgs) -> list[str]:
    return ["--vars", json.dumps(dict(args.vars))] if args.vars else []


def collect(
    governor: GovernorLike,
    dbt_args: Sequence[str] | DbtArgs = (),
    *,
    log_file: str | Path | None = None,
    translator: DbtTranslator | None = None,
    manifest: DbtManifest | None = None,
    acknowledge: bool = True,
) -> CollectResult:
    """Ingest what plain dbt runs recorded: the outbox (default) or a dbt log file.

    Each built model is checked like the wrapper checks it after a run: its policy decision
    (``denials``) and its declared floor against what Lacuna derives from its real columns
    (``violations``).

    ``manifest`` (default: the project's ``target/manifest.json`` when present) describes
    nodes that failed or were skipped, so they get FAIL/ABORT events with their datasets.
    Invalid events are reported in ``rejected`` and still acknowledged (they would never
    become valid); a store failure stops the collection before anything is acknowledged.
    """
    args = dbt_args if isinstance(dbt_args, DbtArgs) else DbtArgs.parse(dbt_args)
    if log_file is not None:
        records = read_log_records(log_file)
        acknowledge = False
    else:
        records = read_outbox(args)
    if manifest is None:
        path = args.target_dir() / "manifest.json"
        manifest = DbtManifest.load(path) if path.is_file() else None
    translator = translator or DbtTranslator()
    assembler = EventAssembler(translator, manifest, _record_target(records))
    result = CollectResult(records=len(records))
    for record, event in assembler.from_records(records, result.rejected):
        try:
            ingested = governor.ingest(event, via="dbt", actor=record.user)
        except IngestError as err:
            result.rejected.append(f"{record.record_id}: {err}")
            continue
        result.events += 1
        result.results.append(ingested)
        result.denials.extend(getattr(ingested, "denials", ()))
        if record.kind == "model":
            node = record.node()
            violation = floor_violation(node.unique_id, translator.get_floor(node),
                                        derived_classification(governor, translator.get_dataset_ref(
                                            node, record.target or assembler.target)))
            if violation is not None:
                result.violations[node.unique_id] = violation.message
    # Everything read is acknowledged once every event was offered: rejected records would
    # never become valid, and a store failure raised above leaves all rows for the next try.
    if acknowledge and records:
        result.acknowledged = ack_outbox(args, list(dict.fromkeys(r.record_id for r in records)))
    return result


def _record_target(records: Sequence[LineageRecord]) -> dict[str, Any]:
    for record in records:
        if record.target:
            return dict(record.target)
    return {}
