"""Tables only the service uses: API keys, steward feedback on decisions, exception ownership
(which tenant asked, and the approver and duration the request named).

They live on their own ``MetaData`` so the core's ``create_all`` calls never touch them; the
Alembic migrations create both sets, and ``ensure_server_schema`` creates these for a store
that was not migrated (``lacuna dev`` on a fresh SQLite file).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Engine, Index, MetaData, String, Table, Text
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.errors import StoreError

__all__ = [
    "api_keys_table",
    "ensure_server_schema",
    "exception_owners_table",
    "feedback_table",
    "server_metadata",
]

server_metadata = MetaData()

api_keys_table = Table(
    "lacuna_api_keys",
    server_metadata,
    Column("key_id", String(32), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", Text, nullable=False),
    Column("salt", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("revoked_at", String(32), nullable=True),
)
Index("ix_lacuna_api_keys_tenant", api_keys_table.c.tenant)

feedback_table = Table(
    "lacuna_feedback",
    server_metadata,
    Column("tenant", String(128), primary_key=True),
    Column("decision_id", String(64), primary_key=True),
    Column("verdict", String(16), nullable=False),
    Column("steward", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
)

exception_owners_table = Table(
    "lacuna_exception_owners",
    server_metadata,
    Column("exception_id", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    # What the request asked for beyond the core's fields: who should approve, for how long.
    Column("approver", Text, nullable=False),
    Column("duration_s", BigInteger, nullable=True),
)
Index("ix_lacuna_exception_owners_tenant", exception_owners_table.c.tenant)


def ensure_server_schema(engine: Engine) -> None:
    """Create the service tables that are missing (no-op on a migrated database)."""
    try:
        server_metadata.create_all(engine, checkfirst=True)
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
        raise StoreError(f"cannot create the service tables: {reason}") from None
