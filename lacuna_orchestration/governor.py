"""The facade every integration calls: ingest an event, answer a gate question, record lineage.

One ``Governor`` owns the store (catalog + audit chain + exceptions), the classifier cascade, the
policy decider and the in-memory lineage graph. Its methods are thread-safe; separate processes
share state through the store.

>>> gov = Governor.open(database_url="sqlite:///:memory:")          # doctest: +SKIP
>>> result = gov.ingest(event)                                      # doctest: +SKIP
>>> [d.allow for d in result.decisions]                             # doctest: +SKIP
[False]

The path of one event: parse & validate → catalog (graph + columns) → classify new columns →
propagate from the changed nodes → decide each output with the policies → audit records and
catalog rows handed to the group committer, committed in one transaction before ``ingest``
returns (an acknowledged record is durable).

Writes are group-committed: the in-memory work happens under the governor's lock, in order, and
the lock is released while the commit runs, so concurrent callers (the server's threads) share
one transaction and one fsync. A failed commit fails every write computed on top of it and
makes the next call reload the graph from the store, so nothing is decided on state the store
does not hold.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Self

import orjson

from lacuna_orchestration.audit.batcher import AuditBatcher
from lacuna_orchestration.audit.checkpoints import (
    Checkpoint,
    CheckpointLog,
    load_key,
    write_checkpoint,
)
from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.audit.verify import VerifyReport, verify
from lacuna_orchestration.catalog import CatalogStore
from lacuna_orchestration.classify.pipeline import CascadeClassifier, ColumnContext
from lacuna_orchestration.db import check_connection, make_engine
from lacuna_orchestration.errors import (
    ConfigError,
    LacunaError,
    NotFound,
    StoreError,
    ValidationError,
)
from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.lineage.graph import DatasetNode, LineageGraph
from lacuna_orchestration.lineage.openlineage import DatasetSnapshot, LineageEvent, parse_event
from lacuna_orchestration.model import (
    AuditRecord,
    Classification,
    DatasetRef,
    Decision,
    Evidence,
    Layer,
    Operation,
    OperationKind,
    Tier,
    normalize_tags,
    utcnow,
)
from lacuna_orchestration.policy.decide import PolicyDecider, allow_under_exception, build_input
from lacuna_orchestration.policy.engine import create_engine as create_policy_engine
from lacuna_orchestration.policy.exceptions import ExceptionRegistry, PolicyException
from lacuna_orchestration.settings import Settings

__all__ = ["Governor", "IngestResult"]

DECIDED_CACHE = 4096
COMMIT_BATCH = 1000  # audit records per group commit at most
QUEUED_LINGER_S = 0.25  # how long a queued-only write may wait for a waiting caller to carry it
SYNC_AFTER_S = 0.05  # how soon a commit made without waiting for the disk is synced
INTAKE_BATCH = 256  # events submit_ingest's thread takes at once (one catch-up for all)
CATCH_UP_LIMIT = 20_000  # records behind the chain head: beyond this, reload the whole graph
OWN_RECORDS = 100_000  # ids of this governor's records not yet read back while catching up
UPSTREAM_DEPTH = 10  # levels of lineage put into a policy's input document ...
UPSTREAM_LIMIT = 200  # ... and at most this many datasets
GATED_STATES = frozenset({"START", "RUNNING", "COMPLETE", "OTHER"})


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingested event did."""

    event: LineageEvent
    decisions: tuple[Decision, ...] = ()
    reclassified: tuple[str, ...] = ()
    audit: tuple[AuditRecord, ...] = field(default=(), repr=False)

    @property
    def allowed(self) -> bool:
        return all(d.allow for d in self.decisions)

    @property
    def denials(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if not d.allow)


class Governor:
    """Lacuna's core, in process."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        classifier: CascadeClassifier | None = None,
        decider: PolicyDecider | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings or Settings.load()
        self.clock = clock
        s = self.settings
        self.engine = make_engine(s.database_url, schema=s.database_schema)
        check_connection(self.engine)
        self.catalog = CatalogStore(self.engine, s.tenant)
        self.audit = AuditStore(self.engine, s.tenant)
        self.exceptions = ExceptionRegistry(self.engine)
        self.checkpoints = (
            CheckpointLog(s.checkpoint_dir, s.tenant, load_key(s.checkpoint_key_file))
            if s.checkpoint_key_file
            else None
        )
        for store in (self.catalog, self.audit, self.exceptions):
            store.create_schema()
        self.classifier = classifier or CascadeClassifier.from_settings(s)
        self.decider = decider or _fail_closed_decider(s)
        self._lock = threading.RLock()
        self._decided: OrderedDict[tuple[str, str, str], Decision] = OrderedDict()
        # per dataset with declared column labels: the node object last classified with them
        self._labelled: dict[str, tuple[DatasetNode, dict[str, Any]]] = {}
        self._intake: queue.SimpleQueue[Any] | None = None  # submit_ingest's thread's inbox
        self._intake_thread: threading.Thread | None = None
        self._intake_lock = threading.Lock()
        self._closing = False
        self._own: OrderedDict[str, None] = OrderedDict()  # ids of records this governor wrote
        self._feed_lock = threading.Lock()  # _own and _applied_seq: the committer moves them too
        self._generation = 0  # bumped by every reload (see _committed)
        self._applied_seq = 0  # the chain position the in-memory graph reflects
        self._graph_stale = True
        self._head = self.audit.head_probe()
        self._ensure_graph()
        # Callers that wait commit in their own thread, taking along everything queued
        # before them (commit_through: leader/follower group commit); what is only queued
        # (durable=False) is committed by the writer thread within QUEUED_LINGER_S unless a
        # waiting caller carries it sooner — one transaction per orchestrator step.
        self._committer = AuditBatcher(
            self.audit, max_batch=COMMIT_BATCH, max_delay_s=QUEUED_LINGER_S,
            sync_delay_s=SYNC_AFTER_S,
            on_failure=self._commit_failed,
        )

    @classmethod
    def open(cls, config_file: str | None = None, **overrides: Any) -> Governor:
        """A governor from the standard settings order (file, env, then ``overrides``)."""
        return cls(Settings.load(config_file, **overrides))

    def close(self) -> None:
        """Commit what is queued (graceful shutdown drains the audit batches), then let go."""
        with self._intake_lock:
            self._closing = True
            inbox, self._intake = self._intake, None
        if inbox is not None:
            inbox.put(None)  # the intake takes what was submitted before, then stops
            if self._intake_thread is not None:
                self._intake_thread.join()
        self._committer.close()
        self._head.close()
        close = getattr(self.decider.engine, "close", None)
        if close:
            close()
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingest ----------------------------------------------------------------------------
    def ingest(
        self, event: Any, *, via: str = "api", actor: str | None = None, durable: bool = True,
        synced: bool = True,
    ) -> IngestResult:
        """Take one OpenLineage event (dict, JSON text or openlineage-python object).

        Raises ``IngestError`` for an invalid event (nothing is written) and ``StoreError``
        when the store cannot be written (nothing is acknowledged). The audit records and the
        catalog rows commit in one transaction. After any failure the in-memory graph is
        reloaded from the store and no decision is remembered, so a retry decides and audits
        again.

        ``durable=False`` returns once the writes are queued for the next group commit
        (milliseconds later; see :meth:`flush`): for an orchestrator's START events, whose
        COMPLETE follows through the same queue and is waited for. ``IngestResult.audit`` is
        then empty — unless the event was denied: a denial is always committed first.

        ``synced=False`` (a durable call) returns once the commit is made, before it is on
        disk: it survives a crash of this process at once and a power loss once the
        committer synced it, within ``SYNC_AFTER_S`` (SQLite; a PostgreSQL commit is
        always synced) — for an orchestrator's step, which should not wait for the disk.
        A denial is synced before it is returned.
        """
        parsed = parse_event(event)
        with self._lock:
            self._ensure_graph()
            try:
                result, pending = self._ingest_locked(
                    parsed, via, actor, quiet=not durable, synced=synced
                )
            except BaseException:
                self._restore_graph()
                raise
        if not durable and result.allowed:  # a denial is durable before anyone hears of it
            return result
        audit = self._wait(pending, synced=synced or not result.allowed)
        return dataclasses.replace(result, audit=tuple(audit))

    def submit_ingest(
        self, event: Any, *, via: str = "api", actor: str | None = None
    ) -> Future[IngestResult]:
        """:meth:`ingest` for an asynchronous caller (the HTTP service's event loop): the event
        is parsed here (``IngestError`` at once) and handed to the governor's intake thread;
        the future gives the result, its audit records committed, or the ``StoreError``.
        Nothing is acknowledged before it resolves.

        The intake thread takes every event waiting at once as one batch: one catch-up with
        the store for the whole batch (it starts after each of them was submitted, so each
        sees every commit acknowledged before it), then each event in order, its writes
        queued for the writer thread, which commits them at once with whatever else is
        queued. The event loop never waits on the database, and requests that arrive
        together share the catch-up and the commit.
        """
        parsed = parse_event(event)
        done: Future[IngestResult] = Future()
        with self._intake_lock:
            if self._intake is None:
                if self._closing:
                    raise StoreError("the governor is closed; events can no longer be ingested")
                self._intake = queue.SimpleQueue()
                self._intake_thread = threading.Thread(
                    target=self._run_intake, args=(self._intake,), name="lacuna-intake",
                    daemon=True)
                self._intake_thread.start()
            self._intake.put((parsed, via, actor, done))
        return done

    def _run_intake(self, inbox: queue.SimpleQueue[Any]) -> None:
        while True:
            batch = [inbox.get()]
            while len(batch) < INTAKE_BATCH:
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is None for item in batch)
            events = [item for item in batch if item is not None]
            try:
                self._ingest_batch(events)
            except BaseException as err:  # noqa: BLE001 - the thread must outlive any batch
                for *_, done in events:
                    if not done.done():
                        done.set_exception(err)
            if stop:
                release = getattr(self.decider.engine, "release_thread", None)
                if callable(release):
                    release()  # this thread's policy VM, dropped where it was made
                return

    def _ingest_batch(self, batch: Sequence[tuple[LineageEvent, str, str | None,
                                                   Future[IngestResult]]]) -> None:
        with self._lock:
            # A request whose caller gave up (its future cancelled) before its turn is not
            # ingested; from here on the others can no longer be cancelled.
            batch = [item for item in batch if item[-1].set_running_or_notify_cancel()]
            if not batch:
                return
            try:
                self._ensure_graph()
            except BaseException as err:  # noqa: BLE001 - handed to every waiting request
                for *_, done in batch:
                    done.set_exception(err)
                return
            for parsed, via, actor, done in batch:
                try:
                    result, pending = self._ingest_locked(parsed, via, actor, eager=True)
                except BaseException as err:  # noqa: BLE001 - this request's answer
                    self._restore_graph()
                    done.set_exception(err)
                    continue
                pending.add_done_callback(functools.partial(_settle, result, done))

    def ingest_many(
        self, events: Sequence[Any], *, via: str = "api",
        actors: Sequence[str | None] | None = None,
    ) -> tuple[list[IngestResult], StoreError | None]:
        """Ingest ``events`` in order as one bulk import: every event is validated first
        (``IngestError`` names the first bad one; nothing is written), then they are applied
        one after another and group-committed together instead of one commit each.

        Returns the results of the events whose writes committed, in order, and the
        ``StoreError`` that stopped the rest (None when all committed): a failed commit fails
        every event after it, so the committed ones are always a prefix.
        """
        parsed = [parse_event(e) for e in events]
        who = list(actors) if actors is not None else [None] * len(parsed)
        if len(who) != len(parsed):
            raise ValidationError(f"{len(parsed)} events but {len(who)} actors")
        queued: list[tuple[IngestResult, Future[list[AuditRecord]]]] = []
        with self._lock:
            self._ensure_graph()
            for event, actor in zip(parsed, who, strict=True):
                try:
                    queued.append(self._ingest_locked(event, via, actor))
                except BaseException:
                    self._restore_graph()
                    raise
        done: list[IngestResult] = []
        for result, pending in queued:
            try:
                done.append(dataclasses.replace(result, audit=tuple(self._wait(pending))))
            except StoreError as err:
                return done, err
        return done, None

    def _ingest_locked(
        self, parsed: LineageEvent, via: str, actor: str | None, *, quiet: bool = False,
        eager: bool = False, synced: bool = True,
    ) -> tuple[IngestResult, Future[list[AuditRecord]]]:
        touched = self._apply(parsed)
        updated = self.graph.propagate(touched)
        decisions = self._decide_outputs(parsed)
        who = actor or parsed.user or self.settings.user
        records = [
            AuditRecord(
                actor=who,
                action="lineage.ingest",
                resource=parsed.job or (parsed.outputs[0].ref.key if parsed.outputs else ""),
                reason=f"{parsed.kind} event {parsed.event_type}".strip(),
                via=via,
                run_id=parsed.run_id,
                details={
                    "producer": parsed.producer,
                    "operation": parsed.operation.value,
                    "inputs": [d.ref.key for d in parsed.inputs],
                    "outputs": [d.ref.key for d in parsed.outputs],
                    "reclassified": {
                        k: self.graph.node(k).effective.describe() for k in updated
                    },
                },
                tenant=self.settings.tenant,
            )
        ]
        fresh = [(key, d) for key, d, new in decisions if new]
        records += [
            self._decision_record(d, who, via, parsed.run_id, "policy.decision")
            for _, d in fresh
        ]
        keys = set(touched) | set(updated)
        pending = self._submit(records, self.catalog.changes(
            (self.graph.node(k) for k in keys),
            (e for k in keys for e in self.graph.in_edges(k)),
            [d for _, d in fresh],
            parsed.run_id,
        ), quiet=quiet, eager=eager, synced=synced)
        # Remembered now, in commit order: a failed commit forgets every remembered decision.
        for key, decision in fresh:
            self._remember(key, decision)
        result = IngestResult(parsed, tuple(d for _, d, _ in decisions), tuple(updated))
        return result, pending

    def _submit(
        self, records: Sequence[AuditRecord], step: Callable[[Any], None] | None = None,
        *, quiet: bool = False, eager: bool = False, synced: bool = True,
    ) -> Future[list[AuditRecord]]:
        """Queue records (and the catalog rows in ``step``) for the next group commit.
        Called under the lock, so queue order is the order the graph changed in.
        ``quiet``: a non-durable call's write, which a later durable call usually carries
        (see ``AuditBatcher.submit_unit``; nobody waits for it, so its commit need not
        wait for the disk); ``eager``: the writer thread commits it at once for a caller
        that awaits the future; ``synced=False``: its commit need not wait for the disk."""
        pending = self._committer.submit_unit(
            records, [step] if step is not None else [], quiet=quiet, eager=eager,
            synced=synced and not quiet,
        )
        with self._feed_lock:
            for record in records:  # catching up skips what this governor wrote itself
                self._own[record.record_id] = None
            while len(self._own) > OWN_RECORDS:  # ids of failed commits are never read back
                self._own.popitem(last=False)
            generation = self._generation
        pending.add_done_callback(lambda done: self._committed(generation, done))
        return pending

    def _committed(self, generation: int, done: Future[list[AuditRecord]]) -> None:
        """On the committer's thread, as a write commits: when nobody else appended since the
        graph's position, move the position past it — catching up need not read it back.
        A write queued before the graph was reloaded is not in the reloaded graph: it is left
        for catching up to read."""
        if done.cancelled() or done.exception() is not None:
            return
        linked = done.result()
        with self._feed_lock:
            if generation != self._generation:
                return
            if linked and linked[0].seq == self._applied_seq + 1:
                self._applied_seq = linked[-1].seq
                for record in linked:
                    self._own.pop(record.record_id, None)

    def _wait(
        self, pending: Future[list[AuditRecord]], *, synced: bool = True
    ) -> list[AuditRecord]:
        """The committed records (``synced``: on disk); after a failed commit, the graph is
        reloaded from the store before the error reaches the caller (memory holds what the
        store holds)."""
        try:
            self._committer.commit_through(pending, synced=synced)
            return pending.result()
        except BaseException:
            with self._lock:
                self._restore_graph()
            raise

    def _commit_failed(self, err: BaseException) -> None:
        """A group commit failed (the committer's thread): the in-memory graph holds changes
        the store does not, and every write still queued was computed on top of them."""
        with self._lock, self._feed_lock:
            self._own.clear()
            self._graph_stale = True
            self._decided.clear()
            self._committer.fail_pending(err)

    def flush(self) -> None:
        """Wait until everything queued so far (non-durable calls included) is committed;
        ``StoreError`` if a commit failed since the last flush."""
        self._committer.flush()

    def _ensure_graph(self) -> None:
        """Make the in-memory graph hold what the store holds before it is used: reload it
        after a failure, else catch up with what other processes committed since."""
        if self._graph_stale:
            self._reload_graph()
        else:
            self._catch_up()

    def refresh(self) -> None:
        """Bring the in-memory graph up to what the store holds now (readers call this
        before answering from ``graph``; the write and gate paths do it themselves)."""
        with self._lock:
            self._ensure_graph()

    @contextmanager
    def reading(self) -> Iterator[LineageGraph]:
        """The graph, current with the store and held still while the caller walks it
        (ingests change the networkx graph in place; iterating a changing dict raises)."""
        with self._lock:
            self._ensure_graph()
            yield self.graph

    def append_audit(self, records: Sequence[AuditRecord]) -> list[AuditRecord]:
        """Append service-level records (key management, feedback, refusals) to the chain
        through the group committer, in order with the governor's own; returns them linked
        once committed."""
        with self._lock:
            pending = self._submit(records)
        return self._wait(pending)

    def _reload_graph(self) -> None:
        # The head first: whatever commits while the catalog loads is caught up with later
        # (reloading a dataset twice is harmless; missing one is not).
        seq = self.audit.head().seq
        graph = self.catalog.load(LineageGraph())
        with self._feed_lock:
            # Writes still queued are not in what was just loaded: forget that they are
            # ours, so catching up reads them back once they commit.
            self._generation += 1
            self._own.clear()
            self._applied_seq = seq
        self.graph = graph
        self._labelled.clear()  # it names nodes of the graph just replaced
        self._graph_stale = False

    def _restore_graph(self) -> None:
        """Put back the graph the store holds (ingest changes it in place before writing);
        if the store cannot be read now, reload before the graph is used next."""
        try:
            self._reload_graph()
        except LacunaError:
            self._graph_stale = True

    def _catch_up(self) -> None:
        """Apply what other processes (another server worker or replica, the CLI, a dbt run
        on the same store) committed since the graph was loaded: without this, a gate would
        decide on classifications the store has already raised.

        The audit chain is the change feed: appends are serialised on the chain head and
        commit with their catalog rows, so ``seq`` order is commit order. One indexed query
        when nothing changed; otherwise the datasets the new records name are reloaded with
        their incoming edges and propagated — the cost of what changed, not of the graph.
        """
        head = self._head.seq()
        with self._feed_lock:
            applied = self._applied_seq
        if head <= applied:
            return
        if head - applied > CATCH_UP_LIMIT:
            self._reload_graph()
            return
        keys: set[str] = set()
        last = applied
        for seq, record_id, action, resource, details in self._head.feed(applied, head):
            last = seq
            with self._feed_lock:
                mine = self._own.pop(record_id, False) is None
            if not mine:
                keys.update(_keys_named(action, resource, details))
        if keys:
            found = self.catalog.load_keys(self.graph, keys)
            self.graph.propagate(found)
        with self._feed_lock:
            self._applied_seq = max(self._applied_seq, last)

    def _apply(self, ev: LineageEvent) -> list[str]:
        """Update nodes and edges from the event; return the keys that need recomputing."""
        touched: list[str] = []
        for snap in ev.datasets:
            node = self.graph.ensure(snap.ref)
            if self._update_node(node, snap, ev.producer):
                touched.append(snap.ref.key)
        if ev.kind != "dataset":
            for out in ev.outputs:
                for inp in ev.inputs:
                    if inp.ref == out.ref:
                        continue
                    if self.graph.add_edge(inp.ref, out.ref, ev.operation, ev.job):
                        touched.append(out.ref.key)
        return list(dict.fromkeys(touched))

    def _update_node(self, node: DatasetNode, snap: DatasetSnapshot, producer: str) -> bool:
        changed = False
        if snap.fields and snap.fields != node.fields:
            node.fields = snap.fields
            changed = True
        if snap.description and snap.description != node.description:
            node.description = snap.description
            changed = True
        if snap.column_lineage and dict(snap.column_lineage) != node.column_lineage:
            node.column_lineage = dict(snap.column_lineage)
            changed = True
        if snap.has_explicit:
            floor = Classification(
                snap.explicit_tier or Tier.PUBLIC,
                snap.explicit_tags,
                1.0,
                Layer.EXPLICIT,
                (Evidence(Layer.EXPLICIT, producer, snap.ref.key, "declared by the producer", 1.0),),
                "explicit classification declared by the producer",
            )
            if node.explicit is None or node.explicit.layer is not Layer.OVERRIDE:
                merged = floor if node.explicit is None else node.explicit.merge(floor)
                if merged != node.explicit:
                    node.explicit = merged
                    changed = True
        if changed or node.own is None or self._new_labels(node, snap):
            self._classify_node(node, snap)
            if snap.column_labels:
                self._labelled[node.ref.key] = (node, dict(snap.column_labels))
            changed = True
        return changed

    def _new_labels(self, node: DatasetNode, snap: DatasetSnapshot) -> bool:
        """Whether ``snap`` declares column labels this node object was not classified with.
        Orchestrators repeat a dataset's labels in every event (START, COMPLETE, each run);
        classifying again for the same labels was a third of an ingest."""
        if not snap.column_labels:
            return False
        seen = self._labelled.get(node.ref.key)
        # the node object itself, not its key: a reload replaces the object, and its labels
        # may then come from another writer
        return seen is None or seen[0] is not node or seen[1] != snap.column_labels

    def _classify_node(self, node: DatasetNode, snap: DatasetSnapshot | None = None) -> None:
        contexts = [
            ColumnContext(
                name=f.name,
                data_type=f.type or None,
                description=f.description or None,
                dataset_key=node.ref.key,
                dataset_name=node.ref.name,
                dataset_description=node.description or None,
                samples=tuple(snap.samples.get(f.name, ())) if snap else (),
            )
            for f in node.fields
        ]
        own, columns = self.classifier.classify_dataset(node.ref, contexts)
        labels = snap.column_labels if snap else {}
        for col, (tier, tags) in labels.items():
            declared = Classification(
                tier or Tier.PUBLIC, tags, 1.0, Layer.EXPLICIT,
                (Evidence(Layer.EXPLICIT, "producer", f"{node.ref.key}#{col}", "declared", 1.0),),
                "declared by the producer",
            )
            columns[col] = columns[col].merge(declared) if col in columns else declared
            own = own.merge(declared)
        node.columns = dict(columns)
        node.own = own

    # -- decisions ---------------------------------------------------------------------------
    def _decide_outputs(
        self, ev: LineageEvent
    ) -> list[tuple[tuple[str, str, str], Decision, bool]]:
        """(cache key, decision, decided now?) per output of a gated run event."""
        if ev.kind != "run" or ev.event_type not in GATED_STATES:
            return []
        out = []
        for snap in ev.outputs:
            key = (ev.run_id, snap.ref.key, ev.operation.value)
            cached = self._decided.get(key)
            if cached is not None:
                out.append((key, cached, False))
                continue
            op = Operation(
                kind=ev.operation,
                sources=tuple(i.ref for i in ev.inputs),
                destination=snap.ref,
                user=ev.user or self.settings.user,
                purpose=ev.purpose,
                environment=self.settings.environment,
                code=ev.job,
                run_id=ev.run_id,
            )
            out.append((key, self._decide(op), True))
        return out

    def source_classification(self, sources: Iterable[DatasetRef]) -> Classification:
        """What flows out of ``sources`` together (the join rule over their effective labels)."""
        return self._join_sources(self._source_labels(sources))

    def _source_labels(self, sources: Iterable[DatasetRef]) -> dict[str, Classification]:
        """Each source's effective classification; unknown for a dataset not in the graph."""
        return {
            ref.key: (self.graph.node(ref.key).effective if ref.key in self.graph
                      else Classification.unknown())
            for ref in sources
        }

    def _join_sources(self, labels: Mapping[str, Classification]) -> Classification:
        if not labels:
            return Classification.unknown("no sources")
        return self.graph.rules.for_join(labels, target="operation")

    def _decide(self, op: Operation) -> Decision:
        # Per source for the policy input, so a source nothing describes is listed as
        # unclassified (an unknown joined with anything else would pass for PUBLIC data).
        per_source = self._source_labels(op.sources)
        source_c = self._join_sources(per_source)
        dest_c = None
        if op.destination is not None and op.destination.key in self.graph:
            dest_c = self.graph.node(op.destination.key).effective
        # Policies see the near upstream only: the full ancestry of a warehouse table can be
        # thousands of datasets, and walking it dominated the gate on big catalogs. Each walk
        # stops at the limit: a dataset past a source's first UPSTREAM_LIMIT ancestors has at
        # least that many distinct ones before it in the joined list, so it would be cut anyway.
        upstream: list[str] = []
        for ref in op.sources:
            if ref.key in self.graph:
                upstream.extend(self.graph.upstream(ref.key, depth=UPSTREAM_DEPTH,
                                                    limit=UPSTREAM_LIMIT))
        upstream = list(dict.fromkeys(upstream))[:UPSTREAM_LIMIT]
        input_doc = build_input(
            op, source_classification=per_source or source_c,
            destination_classification=dest_c, upstream=upstream,
        )
        decision = self.decider.decide(
            input_doc,
            action=op.kind.value,
            source_label=", ".join(r.name for r in op.sources) or "(no source)",
            destination_label=_location(op.destination),
            classification=source_c,
        )
        if not decision.allow and not decision.error:
            granted = self._find_exception(op)
            if granted is not None:
                decision = allow_under_exception(decision, granted)
        return decision

    def _find_exception(self, op: Operation) -> PolicyException | None:
        now = self.clock()
        if op.exception_id:
            try:
                exc = self.exceptions.get(op.exception_id, now=now)
            except NotFound:
                return None
            return exc if exc.is_valid(now) and exc.covers(op) else None
        return self.exceptions.find_valid(
            op.kind.value,
            [r.key for r in op.sources],
            op.destination.key if op.destination else None,
            now=now,
        )

    def check(self, operation: Operation, *, via: str = "api", durable: bool = True) -> Decision:
        """Answer a gate question without an event; the decision is audited.

        ``durable=False`` returns as soon as the audit record of an *allowed* operation is
        queued for the next group commit instead of after it (the gate's hot path; the run's
        COMPLETE, ingested durably through the same queue, cannot be acknowledged before it).
        A denial is always committed before it is returned.
        """
        with self._lock:
            self._ensure_graph()
            decision = self._decide(operation)
            record = self._decision_record(
                decision, operation.user, via, operation.run_id, "gate.check",
                details={"operation": operation.to_dict()},
            )
            pending = self._submit(
                [record], self.catalog.changes((), (), [decision], operation.run_id),
                quiet=not durable,
            )
            if operation.run_id and operation.destination is not None:
                # the run's START/COMPLETE events reuse this audited answer
                self._remember((operation.run_id, operation.destination.key,
                                operation.kind.value), decision)
        if durable or not decision.allow:  # a denial is durable before anyone hears of it
            self._wait(pending)
        return decision

    def _remember(self, key: tuple[str, str, str], decision: Decision) -> None:
        self._decided[key] = decision
        if len(self._decided) > DECIDED_CACHE:
            self._decided.popitem(last=False)

    def register_lineage(
        self,
        sources: Sequence[DatasetRef | DatasetSpec | str],
        destination: DatasetRef | DatasetSpec | str,
        operation: OperationKind | str = OperationKind.TRANSFORM,
        code: str = "manual",
        *,
        user: str | None = None,
        purpose: str | None = None,
        via: str = "api",
    ) -> IngestResult:
        """Record lineage a producer did not emit, through the same ingest path."""
        event = build_run_event(
            job=(self.settings.namespace, code),
            event_type="COMPLETE",
            inputs=[self._spec(s) for s in sources],
            outputs=[self._spec(destination)],
            operation=operation,
            user=user,
            purpose=purpose,
        )
        return self.ingest(event, via=via, actor=user)

    def _spec(self, item: DatasetRef | DatasetSpec | str) -> DatasetSpec:
        if isinstance(item, DatasetSpec):
            return item
        return DatasetSpec(self.ref(item))

    def ref(self, item: DatasetRef | str) -> DatasetRef:
        """A dataset from a ref, a key (``ns::name``), a known name, or a bare name in the
        default namespace."""
        if isinstance(item, DatasetRef):
            return item
        if "::" in item:
            return DatasetRef.from_key(item)
        try:
            return self.graph.node(self.graph.resolve(item)).ref
        except NotFound:
            return DatasetRef(self.settings.namespace, item)

    def _decision_record(
        self, d: Decision, actor: str, via: str, run_id: str, action: str,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        return AuditRecord(
            actor=actor,
            action=action,
            resource=d.destination or d.source,
            reason=(d.reasons[0] if d.reasons else ("allowed" if d.allow else "denied")),
            via=via,
            run_id=run_id,
            decision=d.to_dict(),
            details=dict(details or {}),
            tenant=self.settings.tenant,
        )

    # -- classification ----------------------------------------------------------------------
    def classify_columns(
        self, names: Sequence[str], *, dataset: str | None = None,
        samples: Mapping[str, Sequence[str]] | None = None,
    ) -> list[tuple[str, Classification]]:
        contexts = [
            ColumnContext(name=n, dataset_name=dataset,
                          samples=tuple((samples or {}).get(n, ())))
            for n in names
        ]
        results = self.classifier.classify_many(contexts)
        return list(zip(names, results, strict=True))

    def classification(self, dataset: DatasetRef | str) -> Classification:
        """The dataset's effective classification as the store holds it now."""
        with self.reading() as graph:
            key = graph.resolve(dataset.key if isinstance(dataset, DatasetRef) else dataset)
            return graph.node(key).effective

    def override(
        self, dataset: DatasetRef | str, *, tier: Tier | str, tags: Iterable[str] = (),
        steward: str, reason: str, via: str = "api",
    ) -> Classification:
        """A steward sets a dataset's floor; audited, and propagated downstream."""
        if not reason.strip():
            raise ValidationError("an override needs a reason")
        with self._lock:
            self._ensure_graph()
            key = self.graph.resolve(dataset.key if isinstance(dataset, DatasetRef) else dataset)
            node = self.graph.node(key)
            before = node.effective
            node.explicit = Classification(
                Tier.parse(tier), normalize_tags(tags), 1.0, Layer.OVERRIDE,
                (Evidence(Layer.OVERRIDE, steward, key, reason, 1.0),), f"steward override: {reason}",
            )
            updated = self.graph.propagate([key])
            node.effective = self.graph.compute(key)
            keys = {key, *updated}
            pending = self._submit([AuditRecord(
                actor=steward, action="classification.override", resource=key, reason=reason,
                via=via, details={"before": before.to_dict(), "after": node.effective.to_dict()},
                tenant=self.settings.tenant,
            )], self.catalog.changes(self.graph.node(k) for k in keys))
            after = node.effective
        self._wait(pending)
        return after

    # -- exceptions -------------------------------------------------------------------------
    def request_exception(self, *, via: str = "api", **request: Any) -> PolicyException:
        exc = self.exceptions.request(now=self.clock(), **request)
        self._audit_exception("exception.request", exc, exc.requested_by, via)
        return exc

    def approve_exception(self, exception_id: str, *, steward: str, duration: timedelta,
                          via: str = "api", now: datetime | None = None) -> PolicyException:
        exc = self.exceptions.approve(exception_id, steward, duration, now=now or self.clock())
        self._audit_exception("exception.approve", exc, steward, via)
        return exc

    def deny_exception(self, exception_id: str, *, steward: str, reason: str,
                       via: str = "api") -> PolicyException:
        exc = self.exceptions.deny(exception_id, steward, reason, now=self.clock())
        self._audit_exception("exception.deny", exc, steward, via)
        return exc

    def _audit_exception(self, action: str, exc: PolicyException, actor: str, via: str) -> None:
        self._wait(self._committer.submit_unit([AuditRecord(
            actor=actor, action=action, resource=exc.id, reason=exc.justification, via=via,
            details=exc.to_dict(), tenant=self.settings.tenant,
        )]))

    # -- audit ------------------------------------------------------------------------------
    def verify_audit(self) -> VerifyReport:
        """Verify the chain, and hold it against the signed checkpoints when a key is set."""
        return verify(self.audit, checkpoints=self.checkpoints)

    def write_checkpoint(self, *, force: bool = False) -> Checkpoint:
        """Sign the chain's current head into the checkpoint log (see audit.checkpoints)."""
        if self.checkpoints is None:
            raise ConfigError(
                "no checkpoint key configured: set checkpoint_key_file "
                "(LACUNA_CHECKPOINT_KEY_FILE); `lacuna audit keygen PATH` makes one"
            )
        return write_checkpoint(self.audit, self.checkpoints, force=force)


def _settle(result: IngestResult, done: Future[IngestResult],
            pending: Future[list[AuditRecord]]) -> None:
    """``submit_ingest``'s answer once the event's writes committed (or failed)."""
    err = pending.exception()
    if err is not None:
        done.set_exception(err)
    else:
        done.set_result(dataclasses.replace(result, audit=tuple(pending.result())))


def _keys_named(action: str, resource: str, details: str) -> list[str]:
    """The datasets an audit record says changed (what catching up must reload), from its
    action, resource and details text."""
    if action == "lineage.ingest":
        named = orjson.loads(details)
        return [*named.get("inputs", ()), *named.get("outputs", ()),
                *named.get("reclassified", {})]
    if action == "classification.override":
        return [resource]
    return []


def _location(ref: DatasetRef | None) -> str:
    if ref is None:
        return ""
    if ref.namespace in ("file", "local") or ref.namespace.startswith("file"):
        return ref.name
    return f"{ref.namespace.rstrip('/')}/{ref.name.lstrip('/')}"


def _fail_closed_decider(settings: Settings) -> PolicyDecider:
    """A decider over the configured engine; if the engine cannot even be built (broken Rego,
    missing directory), a decider whose every answer is a denial naming the reason."""
    try:
        return PolicyDecider(create_policy_engine(settings))
    except LacunaError as err:
        return PolicyDecider.failing(str(err))
