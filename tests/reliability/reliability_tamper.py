"""An attacker with superuser access to the audit database, for the tamper-evidence tests.

Everything here bypasses the append-only triggers the way a database owner could (SQLite: drop
the triggers for the transaction's duration; PostgreSQL: ``session_replication_role = replica``,
which needs a superuser), and can re-hash what it changes so the chain still links: the cases
only signed checkpoints can catch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import text

from lacuna_orchestration.audit.chain import ChainHead, canonical_json, link
from lacuna_orchestration.audit.store import AuditStore, audit_table, head_table
from lacuna_orchestration.db import is_sqlite
from lacuna_orchestration.model import AuditRecord


class Attacker:
    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self.engine = store.engine
        self.tenant = store.tenant

    def run(self, work: Callable[[Any], None]) -> None:
        """``work(conn)`` in one transaction with the triggers out of the way."""
        with self.engine.begin() as conn:
            if is_sqlite(self.engine):
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS lacuna_audit_refuse_update")
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS lacuna_audit_refuse_delete")
            else:
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            work(conn)
        self.store.create_schema()  # SQLite gets its triggers back; a no-op on PostgreSQL

    def sql(self, statement: str, **params: Any) -> None:
        self.run(lambda conn: conn.execute(text(statement), {"t": self.tenant, **params}))

    def records(self) -> list[AuditRecord]:
        return list(self.store.records())

    # -- the cases ------------------------------------------------------------------------

    def delete(self, *seqs: int) -> None:
        for seq in seqs:
            self.sql("DELETE FROM lacuna_audit WHERE tenant = :t AND seq = :s", s=seq)

    def truncate(self, keep: int, *, move_head: bool) -> None:
        """Delete every record after ``keep``; with ``move_head`` also set the head row to the
        new last record, so the chain is complete and valid again."""
        records = self.records()

        def work(conn: Any) -> None:
            conn.execute(
                text("DELETE FROM lacuna_audit WHERE tenant = :t AND seq > :k"),
                {"t": self.tenant, "k": keep},
            )
            if move_head:
                last = records[keep - 1]
                self._set_head(conn, last.seq, last.hash)

        self.run(work)

    def swap(self, a: int, b: int) -> None:
        """Exchange the contents of two records, each keeping its position (seq)."""
        rows = {r.seq: r for r in self.records()}

        def work(conn: Any) -> None:
            conn.execute(
                text("DELETE FROM lacuna_audit WHERE tenant = :t AND seq IN (:a, :b)"),
                {"t": self.tenant, "a": a, "b": b},
            )
            self._insert(conn, [dataclasses.replace(rows[b], seq=a),
                                dataclasses.replace(rows[a], seq=b)])

        self.run(work)

    def set_field(self, seq: int, column: str, value: Any) -> None:
        self.sql(
            f'UPDATE lacuna_audit SET "{column}" = :v WHERE tenant = :t AND seq = :s',
            v=value, s=seq,
        )

    def rewrite(self, seq: int, change: Mapping[str, Any] | None = None,
                insert: AuditRecord | None = None) -> None:
        """Rewrite history from ``seq`` on and re-hash it so every link holds, then move the
        head row to the new end: ``change`` edits record ``seq``; ``insert`` puts a forged
        record at ``seq`` and shifts the rest up by one."""
        records = self.records()
        before = records[: seq - 1]
        after = records[seq - 1 :]
        if change:
            after[0] = dataclasses.replace(after[0], **change)
        if insert is not None:
            after.insert(0, insert)
        prev = ChainHead(before[-1].seq, before[-1].hash) if before else ChainHead.genesis()
        relinked = link(after, prev)

        def work(conn: Any) -> None:
            conn.execute(
                text("DELETE FROM lacuna_audit WHERE tenant = :t AND seq >= :s"),
                {"t": self.tenant, "s": seq},
            )
            self._insert(conn, relinked)
            self._set_head(conn, relinked[-1].seq, relinked[-1].hash)

        self.run(work)

    def append_forged(self, record: AuditRecord, *, move_head: bool) -> AuditRecord:
        """A well-formed record linked after the current last one."""
        last = self.records()[-1]
        (forged,) = link([dataclasses.replace(record, tenant=self.tenant)],
                         ChainHead(last.seq, last.hash))

        def work(conn: Any) -> None:
            self._insert(conn, [forged])
            if move_head:
                self._set_head(conn, forged.seq, forged.hash)

        self.run(work)
        return forged

    # -- plumbing -------------------------------------------------------------------------

    def _insert(self, conn: Any, records: Iterable[AuditRecord]) -> None:
        rows = [
            {
                "tenant": self.tenant,
                "seq": r.seq,
                "record_id": r.record_id,
                "timestamp": r.timestamp,
                "actor": r.actor,
                "action": r.action,
                "resource": r.resource,
                "reason": r.reason,
                "via": r.via,
                "run_id": r.run_id,
                "decision": None if r.decision is None
                else canonical_json(dict(r.decision)).decode(),
                "details": canonical_json(dict(r.details)).decode(),
                "prev_hash": r.prev_hash,
                "hash": r.hash,
            }
            for r in records
        ]
        if rows:
            conn.execute(audit_table.insert(), rows)

    def _set_head(self, conn: Any, seq: int, hash_: str) -> None:
        conn.execute(
            head_table.update().where(head_table.c.tenant == self.tenant).values(seq=seq,
                                                                               hash=hash_)
        )
