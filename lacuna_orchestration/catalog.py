"""Persistence of the catalog: datasets (with classifications), lineage edges and decisions.

The lineage graph lives in memory for speed and is written through to these tables after every
change, so that another process (the next CLI call, a second server replica) sees the same graph
and classifications. Rows are JSON documents keyed by tenant + dataset key: the shape of a
``DatasetNode`` changes more often than the schema should.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Index,
    String,
    Table,
    Text,
    and_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.db import metadata
from lacuna_orchestration.errors import StoreError
from lacuna_orchestration.lineage.graph import DatasetNode, LineageGraph
from lacuna_orchestration.model import Decision, OperationKind, format_timestamp, utcnow

datasets_table = Table(
    "lacuna_datasets",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("tier", String(16), nullable=False),
    Column("document", Text, nullable=False),
    Column("updated_at", String(32), nullable=False),
)

edges_table = Table(
    "lacuna_edges",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("src", Text, primary_key=True),
    Column("dst", Text, primary_key=True),
    Column("operation", String(16), nullable=False),
    Column("job", Text, nullable=False, default=""),
    Column("updated_at", String(32), nullable=False),
)
Index("ix_lacuna_edges_dst", edges_table.c.tenant, edges_table.c.dst)

decisions_table = Table(
    "lacuna_decisions",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("decision_id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False, default=""),
    Column("allow", Boolean, nullable=False),
    Column("action", String(32), nullable=False),
    Column("source", Text, nullable=False),
    Column("destination", Text, nullable=False),
    Column("policy_id", Text, nullable=False),
    Column("document", Text, nullable=False),
    Column("decided_at", String(32), nullable=False),
)
Index("ix_lacuna_decisions_time", decisions_table.c.tenant, decisions_table.c.decided_at)


def _insert(engine: Engine, table: Table) -> Any:
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _fail(engine: Engine, what: str, err: SQLAlchemyError) -> StoreError:
    reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
    url = engine.url.render_as_string(hide_password=True)
    return StoreError(f"cannot {what} in {url}: {reason}")


class CatalogStore:
    """Reads and writes the catalog tables for one tenant."""

    def __init__(self, engine: Engine, tenant: str = "default") -> None:
        self.engine = engine
        self.tenant = tenant

    def create_schema(self) -> None:
        try:
            metadata.create_all(
                self.engine, tables=[datasets_table, edges_table, decisions_table]
            )
        except SQLAlchemyError as err:
            raise _fail(self.engine, "create the catalog tables", err) from None

    def save(self, nodes: Iterable[DatasetNode], edges: Iterable[tuple[str, str, OperationKind,
                                                                       str]] = ()) -> None:
        now = format_timestamp(utcnow())
        rows = [
            {
                "tenant": self.tenant,
                "key": n.ref.key,
                "namespace": n.ref.namespace,
                "name": n.ref.name,
                "tier": n.effective.tier.name,
                "document": orjson.dumps(n.to_dict()).decode(),
                "updated_at": now,
            }
            for n in nodes
        ]
        edge_rows = [
            {"tenant": self.tenant, "src": s, "dst": d, "operation": op.value, "job": job,
             "updated_at": now}
            for s, d, op, job in edges
        ]
        try:
            with self.engine.begin() as conn:
                if rows:
                    stmt = _insert(self.engine, datasets_table)
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["tenant", "key"],
                        set_={c: stmt.excluded[c] for c in ("tier", "document", "updated_at")},
                    )
                    conn.execute(stmt, rows)
                if edge_rows:
                    stmt = _insert(self.engine, edges_table)
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["tenant", "src", "dst"],
                        set_={c: stmt.excluded[c] for c in ("operation", "job", "updated_at")},
                    )
                    conn.execute(stmt, edge_rows)
        except SQLAlchemyError as err:
            raise _fail(self.engine, "save the catalog", err) from None

    def load(self, graph: LineageGraph) -> LineageGraph:
        """Fill ``graph`` with every dataset and edge of the tenant."""
        try:
            with self.engine.connect() as conn:
                for (doc,) in conn.execute(
                    select(datasets_table.c.document).where(
                        datasets_table.c.tenant == self.tenant
                    )
                ):
                    graph.put(DatasetNode.from_dict(orjson.loads(doc)))
                for src, dst, op, job in conn.execute(
                    select(edges_table.c.src, edges_table.c.dst, edges_table.c.operation,
                           edges_table.c.job).where(edges_table.c.tenant == self.tenant)
                ):
                    graph.g.add_edge(src, dst, operation=OperationKind(op), job=job)
        except SQLAlchemyError as err:
            raise _fail(self.engine, "load the catalog", err) from None
        return graph

    def save_decisions(self, decisions: Iterable[Decision], run_id: str = "") -> None:
        rows = [
            {
                "tenant": self.tenant,
                "decision_id": d.decision_id,
                "run_id": run_id,
                "allow": d.allow,
                "action": d.action,
                "source": d.source,
                "destination": d.destination,
                "policy_id": d.policy_id,
                "document": orjson.dumps(d.to_dict()).decode(),
                "decided_at": d.decided_at,
            }
            for d in decisions
        ]
        if not rows:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(decisions_table.insert(), rows)
        except SQLAlchemyError as err:
            raise _fail(self.engine, "save decisions", err) from None

    def decisions(self, *, limit: int = 100, allow: bool | None = None,
                  since: str | None = None) -> Iterator[Decision]:
        cond = [decisions_table.c.tenant == self.tenant]
        if allow is not None:
            cond.append(decisions_table.c.allow == allow)
        if since:
            cond.append(decisions_table.c.decided_at >= since)
        query = (
            select(decisions_table.c.document)
            .where(and_(*cond))
            .order_by(decisions_table.c.decided_at.desc())
            .limit(limit)
        )
        try:
            with self.engine.connect() as conn:
                docs = [doc for (doc,) in conn.execute(query)]
        except SQLAlchemyError as err:
            raise _fail(self.engine, "read decisions", err) from None
        for doc in docs:
            yield Decision.from_dict(orjson.loads(doc))
