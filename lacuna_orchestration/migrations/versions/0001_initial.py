"""Every table of the store, its indexes, and the audit table's append-only triggers.

A snapshot, deliberately not generated from the live models: a migration must keep meaning
what it meant when it shipped. ``tests/server/test_server_migrations.py`` checks that the
result equals what the models' ``create_all`` makes today.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_REFUSAL = "lacuna_audit is append-only"

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION lacuna_audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{_REFUSAL}: % refused', TG_OP
        USING HINT = 'audit records can only be appended; see lacuna audit verify';
END
$$"""

PG_TRIGGERS = (
    """CREATE TRIGGER lacuna_audit_refuse_update_delete
        BEFORE UPDATE OR DELETE ON lacuna_audit
        FOR EACH ROW EXECUTE FUNCTION lacuna_audit_refuse_change()""",
    """CREATE TRIGGER lacuna_audit_refuse_truncate
        BEFORE TRUNCATE ON lacuna_audit
        FOR EACH STATEMENT EXECUTE FUNCTION lacuna_audit_refuse_change()""",
)

SQLITE_TRIGGERS = tuple(
    f"""CREATE TRIGGER IF NOT EXISTS lacuna_audit_refuse_{op_name.lower()}
        BEFORE {op_name} ON lacuna_audit
        BEGIN SELECT RAISE(ABORT, '{_REFUSAL}: {op_name} refused'); END"""
    for op_name in ("UPDATE", "DELETE")
)

TABLES = (
    "lacuna_exception_owners", "lacuna_feedback", "lacuna_api_keys", "lacuna_exceptions",
    "lacuna_decisions", "lacuna_edges", "lacuna_datasets", "lacuna_audit_head", "lacuna_audit",
)


def upgrade() -> None:
    op.create_table(
        "lacuna_audit",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("via", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "seq"),
        sa.UniqueConstraint("record_id"),
    )
    op.create_index("ix_lacuna_audit_tenant_timestamp", "lacuna_audit", ["tenant", "timestamp"])
    op.create_table(
        "lacuna_audit_head",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant"),
    )
    op.create_table(
        "lacuna_datasets",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "key"),
    )
    op.create_table(
        "lacuna_edges",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("src", sa.Text(), nullable=False),
        sa.Column("dst", sa.Text(), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "src", "dst"),
    )
    op.create_index("ix_lacuna_edges_dst", "lacuna_edges", ["tenant", "dst", "src"])
    op.create_table(
        "lacuna_decisions",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("allow", sa.Boolean(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("policy_id", sa.Text(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "decision_id"),
    )
    op.create_index("ix_lacuna_decisions_time", "lacuna_decisions", ["tenant", "decided_at"])
    op.create_table(
        "lacuna_exceptions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("operation_kind", sa.String(32), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approver", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_lacuna_exceptions_lookup", "lacuna_exceptions",
                    ["status", "operation_kind"])
    op.create_table(
        "lacuna_api_keys",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_lacuna_api_keys_tenant", "lacuna_api_keys", ["tenant"])
    op.create_table(
        "lacuna_feedback",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("steward", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "decision_id"),
    )
    op.create_table(
        "lacuna_exception_owners",
        sa.Column("exception_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("approver", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("exception_id"),
    )
    op.create_index("ix_lacuna_exception_owners_tenant", "lacuna_exception_owners", ["tenant"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        op.drop_table(table)  # indexes and triggers go with their table
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS lacuna_audit_refuse_change()")
