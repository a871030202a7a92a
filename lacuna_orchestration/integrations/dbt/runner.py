"""``lacuna dbt build|run|seed|snapshot|test``: a dbt command with Lacuna wired in.

One call of ``run_dbt`` is:

1. ``dbt deps`` when the project's packages are not installed yet, then ``dbt parse`` (partial
   parsing applies) — the manifest, passed on to the later commands so dbt does not parse again;
2. ``dbt ls`` with the user's selection — which nodes this command will build (without a
   selection, every enabled node of the command's kinds: no ``ls`` needed);
3. the gate (``gate.DbtGate``): a START event per selected node, parents first, decided by the
   policies; denials and floor violations become the dbt vars the ``lacuna`` package reads;
4. the command itself, in process (``dbtRunner``), with those vars: a denied node's
   ``lacuna.gate()`` pre-hook raises the policy's message, so the node is never built and dbt
   skips its children; ``lacuna.verify_compliance()`` fails the invocation if a denied node or
   a floor violation was built anyway. A denied node without the gate pre-hook is excluded from
   the selection instead (with its children), so nothing denied builds either way;
5. one event per node: COMPLETE with the columns the post-hook read from the warehouse —
   ingested by a worker thread *while dbt keeps building* (the store's commits overlap the
   warehouse's work) — then, from the run results, FAIL with dbt's message and ABORT for
   skipped nodes; finally the floors are checked again against the real columns.

The exit code is dbt's, or 1 when dbt succeeded but Lacuna found a violation only the real
columns revealed (or excluded a denied node).

>>> outcome = run_dbt("build", ["--project-dir", "example_project/dbt",
...                             "--profiles-dir", "example_project/dbt"], governor=gov)  # doctest: +SKIP
>>> outcome.exit_code, sorted(outcome.denied)                                             # doctest: +SKIP
(1, ['model.lacuna_shop.customer_contacts_export'])
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lacuna_orchestration.errors import LacunaError
from lacuna_orchestration.integrations.dbt.gate import (
    DbtGate,
    FloorViolation,
    GatePlan,
    GovernorLike,
    derived_classification,
    floor_violation,
)
from lacuna_orchestration.integrations.dbt.invoke import (
    DbtArgs,
    DbtInvocationError,
    invoke,
    load_target,
)
from lacuna_orchestration.integrations.dbt.manifest import GATED_TYPES, DbtManifest
from lacuna_orchestration.integrations.dbt.outbox import (
    BUILT_STATUSES,
    FAILED_STATUSES,
    SKIPPED_STATUSES,
    EventAssembler,
)
from lacuna_orchestration.integrations.dbt.records import LineageRecord, RecordCollector
from lacuna_orchestration.integrations.dbt.translator import DbtTranslator
from lacuna_orchestration.model import Decision

__all__ = ["BUILD_COMMANDS", "DbtRunOutcome", "NodeResult", "plan_dbt", "run_dbt"]

log = logging.getLogger(__name__)

# What each command builds (the gate decides these kinds); `test` builds nothing.
BUILD_COMMANDS: Mapping[str, frozenset[str]] = {
    "build": GATED_TYPES,
    "run": frozenset({"model"}),
    "seed": frozenset({"seed"}),
    "snapshot": frozenset({"snapshot"}),
    "test": frozenset(),
}
GATE_MACRO = "lacuna.gate"


@dataclass(frozen=True, slots=True)
class NodeResult:
    unique_id: str
    resource_type: str
    status: str
    message: str = ""


@dataclass(slots=True)
class DbtRunOutcome:
    """What ``run_dbt`` did."""

    command: str
    run_id: str
    exit_code: int = 0
    dbt_success: bool = False
    plan: GatePlan | None = None
    results: list[NodeResult] = field(default_factory=list)
    violations: dict[str, str] = field(default_factory=dict)  # unique_id -> message
    excluded: list[str] = field(default_factory=list)
    events: int = 0
    emit_errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    records: list[LineageRecord] = field(default_factory=list, repr=False)
    dbt_result: Any = field(default=None, repr=False)

    @property
    def success(self) -> bool:
        return self.exit_code == 0

    @property
    def denied(self) -> dict[str, Decision]:
        return self.plan.denied if self.plan else {}

    def status_of(self, unique_id: str) -> str | None:
        return next((r.status for r in self.results if r.unique_id == unique_id), None)

    def summary(self) -> str:
        """A few lines for a terminal: what was built, stopped and why."""
        built = sum(1 for r in self.results if r.status in BUILT_STATUSES
                    and r.resource_type in GATED_TYPES)
        lines = [(f"Lacuna dbt {self.command}: {built} node(s) built, "
                  f"{len(self.denied)} denied by policy, {len(self.violations)} floor "
                  f"violation(s), {self.events} event(s) ingested (run {self.run_id})")]
        for uid, decision in self.denied.items():
            how = "excluded" if uid in self.excluded else "stopped by lacuna.gate()"
            lines += ["", f"{uid} ({how}):", decision.message]
        for uid, message in self.violations.items():
            lines += ["", f"{uid} violates its declared floor: {message}"]
        if self.emit_errors:
            lines += ["", (f"{len(self.emit_errors)} lineage event(s) not recorded: "
                           f"{self.emit_errors[0]}")]
        return "\n".join(lines)


def run_dbt(
    command: str,
    dbt_args: Sequence[str] = (),
    *,
    governor: GovernorLike,
    translator: DbtTranslator | None = None,
    gate: bool = True,
    strict: bool = False,
    user: str | None = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
) -> DbtRunOutcome:
    """Run ``dbt <command> <dbt_args>`` governed by Lacuna (see the module docstring).

    Raises ``DbtInvocationError`` when dbt cannot run at all (bad project or profile) and
    ``StoreError`` when the gate cannot record its decisions (the gate fails closed: nothing is
    built). ``strict`` makes the package refuse to run without Lacuna's decisions.
    """
    if command not in BUILD_COMMANDS:
        raise LacunaError(f"lacuna dbt supports {', '.join(BUILD_COMMANDS)}, not {command!r}")
    translator = translator or DbtTranslator()
    clock = time.perf_counter()
    prep = _prepare(command, dbt_args, user)
    args, manifest, target, project, gate_user = (prep.args, prep.manifest, prep.target,
                                                  prep.project, prep.user)
    run_id = str(uuid.uuid4())
    outcome = DbtRunOutcome(command=command, run_id=run_id)
    clock = _lap(outcome, "prepare", clock)
    assembler = EventAssembler(translator, manifest, target)
    _emit(governor, outcome, assembler.invocation_event(
        "START", run_key=run_id, project=project, command=command, user=gate_user), gate_user)
    if gate and prep.selected:
        outcome.plan = _gate(governor, prep, translator, command).plan(prep.selected,
                                                                       run_id=run_id)
    else:
        outcome.plan = GatePlan(run_id)
    outcome.violations = {u: v.message for u, v in outcome.plan.violations.items()}
    clock = _lap(outcome, "gate", clock)

    dbt_vars: dict[str, Any] = {**args.vars,
                                "lacuna": {"run_id": run_id, "governed_by": "lacuna dbt"},
                                "lacuna_outbox": False, **outcome.plan.vars()}
    if strict:
        dbt_vars["lacuna_strict"] = True
    extra: list[str] = []
    for uid in outcome.plan.denied:
        node = manifest.node(uid)
        if not any(GATE_MACRO in hook for hook in node.pre_hooks):
            outcome.excluded.append(uid)
            extra += ["--exclude", f"{'.'.join(node.fqn) or node.name}+"]
    live = _LiveIngestor(governor, assembler, outcome, command, gate_user)
    collector = RecordCollector(on_record=live.submit)
    try:
        result = invoke([command, *args.without_vars(), "--vars", json.dumps(dbt_vars),
                         *extra], callbacks=[collector, *callbacks], manifest=prep.manifest_obj)
    except DbtInvocationError as err:
        live.close()
        _emit(governor, outcome, assembler.invocation_event(
            "FAIL", run_key=run_id, project=project, command=command, user=gate_user,
            error=str(err)), gate_user)
        raise
    live.close()
    outcome.dbt_result = result
    outcome.dbt_success = bool(result.success)
    outcome.results = _node_results(result, args)
    outcome.records = collector.records
    clock = _lap(outcome, "dbt", clock)

    post = _after_run(governor, outcome, assembler, outcome.records, translator, manifest,
                      target, project, command, gate_user, live.done)
    for uid, violation in post.items():
        outcome.violations.setdefault(uid, violation.message)
    failed = any(r.status in FAILED_STATUSES for r in outcome.results)
    _emit(governor, outcome, assembler.invocation_event(
        "COMPLETE" if outcome.dbt_success and not post and not outcome.excluded else "FAIL",
        run_key=run_id, project=project, command=command, user=gate_user,
        error="dbt reported failing nodes" if failed else None), gate_user)
    outcome.exit_code = 0 if outcome.dbt_success and not post and not outcome.excluded else 1
    _lap(outcome, "events", clock)
    return outcome


def _lap(outcome: DbtRunOutcome, phase: str, since: float) -> float:
    now = time.perf_counter()
    outcome.timings[phase] = now - since
    return now


def plan_dbt(
    command: str,
    dbt_args: Sequence[str] = (),
    *,
    governor: GovernorLike,
    translator: DbtTranslator | None = None,
    user: str | None = None,
) -> GatePlan:
    """The gate alone (``lacuna dbt gate``): decide what ``dbt <command> <dbt_args>`` would
    build, without building anything. The START events are recorded like any gate's."""
    if command not in BUILD_COMMANDS:
        raise LacunaError(f"lacuna dbt supports {', '.join(BUILD_COMMANDS)}, not {command!r}")
    translator = translator or DbtTranslator()
    prep = _prepare(command, dbt_args, user)
    return _gate(governor, prep, translator, command).plan(prep.selected,
                                                          run_id=str(uuid.uuid4()))


@dataclass(frozen=True, slots=True)
class _Prepared:
    args: DbtArgs
    manifest_obj: Any
    manifest: DbtManifest
    target: dict[str, Any]
    project: str
    user: str | None
    selected: list[str]


def _prepare(command: str, dbt_args: Sequence[str], user: str | None) -> _Prepared:
    """deps (when needed), parse, the profile's target and the selection."""
    args = DbtArgs.parse(dbt_args)
    _ensure_packages(args)
    parsed = invoke(["parse", *args.location_args(), *_user_vars(args)], quiet=True)
    manifest = DbtManifest.load(args.target_dir() / "manifest.json")
    target = load_target(args)
    kinds = BUILD_COMMANDS[command]
    if not kinds:
        selected: list[str] = []
    elif args.selection or manifest.default_selector:
        selected = _selected(args, parsed.result, kinds)
    else:  # no selection: every enabled node of these kinds, as dbt itself picks them
        selected = [n.unique_id for n in manifest.gated() if n.resource_type in kinds]
    return _Prepared(args, parsed.result, manifest, target, manifest.project_name,
                     user or _profile_user(target), selected)


def _gate(governor: GovernorLike, prep: _Prepared, translator: DbtTranslator,
          command: str) -> DbtGate:
    return DbtGate(governor, prep.manifest, prep.target, translator=translator,
                   catalog_path=prep.args.target_dir() / "catalog.json", project=prep.project,
                   command=command, user=prep.user)


class _LiveIngestor:
    """Ingests the COMPLETE event of each built node as its post-hook record arrives, on a
    worker thread, so the store's commits overlap dbt's work instead of following it.

    The queue is bounded; a record that does not fit is left to the post-run pass (which
    emits COMPLETE for every built node not in ``done``). Failures are reported in
    ``outcome.emit_errors`` like every other emission failure, never raised into dbt.
    """

    def __init__(self, governor: GovernorLike, assembler: EventAssembler,
                 outcome: DbtRunOutcome, command: str, user: str | None,
                 capacity: int = 10_000) -> None:
        self.governor, self.assembler, self.outcome = governor, assembler, outcome
        self.command, self.user = command, user
        self.done: set[str] = set()
        self._queue: queue.Queue[LineageRecord | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._work, name="lacuna-dbt-events",
                                        daemon=True)
        self._thread.start()

    def submit(self, record: LineageRecord) -> None:
        if record.kind != "model":
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            log.warning("Lacuna event queue full; %s is recorded after the run",
                        record.unique_id)

    def _work(self) -> None:
        while (record := self._queue.get()) is not None:
            try:
                event = self.assembler.record_event(record, command=self.command)
            except LacunaError as err:
                self.outcome.emit_errors.append(f"{record.unique_id}: {err}")
                continue
            if _emit(self.governor, self.outcome, event, self.user):
                self.done.add(record.unique_id)

    def close(self) -> None:
        """Wait until every submitted record is ingested."""
        self._queue.put(None)
        self._thread.join()


def _after_run(governor: GovernorLike, outcome: DbtRunOutcome, assembler: EventAssembler,
               records: Sequence[LineageRecord], translator: DbtTranslator,
               manifest: DbtManifest, target: Mapping[str, Any], project: str, command: str,
               user: str | None, done: set[str]) -> dict[str, FloorViolation]:
    """FAIL/ABORT per node (COMPLETE for built nodes the live pass did not record), then the
    floors against the real columns."""
    by_node = {r.unique_id: r for r in records if r.kind == "model"}
    found: dict[str, FloorViolation] = {}
    for res in outcome.results:
        uid = res.unique_id
        if res.resource_type not in GATED_TYPES or uid not in manifest:
            continue
        if res.status in FAILED_STATUSES:
            denial = outcome.denied.get(uid)
            _emit_node(governor, outcome, assembler.node_event(
                uid, "FAIL", run_key=outcome.run_id, project=project, command=command,
                user=user, error=denial.message if denial is not None else res.message), user)
        elif res.status in SKIPPED_STATUSES:
            _emit_node(governor, outcome, assembler.node_event(
                uid, "ABORT", run_key=outcome.run_id, project=project, command=command,
                user=user), user)
        elif res.status in BUILT_STATUSES:
            if uid not in done:
                record = by_node.get(uid)
                event = (assembler.record_event(record, command=command) if record is not None
                         else assembler.node_event(uid, "COMPLETE", run_key=outcome.run_id,
                                                   project=project, command=command,
                                                   user=user))
                if not _emit_node(governor, outcome, event, user):
                    continue
            if uid in outcome.violations:
                continue
            node = manifest.node(uid)
            violation = floor_violation(
                uid, translator.get_floor(node),
                derived_classification(governor, translator.get_dataset_ref(node, target)))
            if violation is not None:
                found[uid] = violation
    return found


def _emit_node(governor: GovernorLike, outcome: DbtRunOutcome,
               event: Mapping[str, Any] | None, user: str | None) -> bool:
    return event is not None and _emit(governor, outcome, event, user)


def _emit(governor: GovernorLike, outcome: DbtRunOutcome, event: Mapping[str, Any],
          user: str | None) -> bool:
    """Ingest one event; a failure is reported, never fatal (the models are
    already built: lineage emission must not fail the orchestrator)."""
    try:
        governor.ingest(event, via="dbt", actor=user)
    except LacunaError as err:
        outcome.emit_errors.append(f"{event['job']['name']} {event['eventType']}: {err}")
        log.error("Lacuna could not record %s %s: %s", event["job"]["name"],
                  event["eventType"], err)
        return False
    outcome.events += 1
    return True


def _ensure_packages(args: DbtArgs) -> None:
    """``dbt deps`` when packages.yml lists packages that are not installed."""
    root = args.project_path
    if not (root / "packages.yml").is_file() and not (root / "dependencies.yml").is_file():
        return
    installed = root / "dbt_packages"
    if installed.is_dir() and any(installed.iterdir()):
        return
    invoke(["deps", "--project-dir", str(root)], quiet=True)


def _user_vars(args: DbtArgs) -> list[str]:
    return ["--vars", json.dumps(dict(args.vars))] if args.vars else []


def _selected(args: DbtArgs, manifest_obj: Any, kinds: frozenset[str]) -> list[str]:
    """Unique ids of the nodes of ``kinds`` the user's selection picks (``dbt ls``)."""
    result = invoke(["ls", *args.location_args(), *args.selection, *_user_vars(args),
                     "--output", "json", "--output-keys", "unique_id", "resource_type",
                     "--log-level", "none"],  # ls prints its list even when quiet
                    manifest=manifest_obj, quiet=True)
    out = []
    for line in result.result or ():
        try:
            item = orjson.loads(line)
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(item, Mapping) and item.get("resource_type") in kinds:
            out.append(str(item["unique_id"]))
    return out


def _node_results(result: Any, args: DbtArgs) -> list[NodeResult]:
    """Node statuses from the in-memory result, else from ``run_results.json``."""
    items: list[NodeResult] = []
    run = getattr(result, "result", None)
    for res in getattr(run, "results", None) or ():
        node = getattr(res, "node", None)
        if node is None:
            continue
        items.append(NodeResult(str(node.unique_id), str(node.resource_type),
                                str(getattr(res.status, "value", res.status)).lower(),
                                str(res.message or "")))
    if items:
        return items
    path = args.target_dir() / "run_results.json"
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    for res in data.get("results") or ():
        uid = str(res.get("unique_id") or "")
        items.append(NodeResult(uid, uid.split(".", 1)[0], str(res.get("status") or "").lower(),
                                str(res.get("message") or "")))
    return items


def _profile_user(target: Mapping[str, Any]) -> str | None:
    user = target.get("user")
    return str(user) if user else None
