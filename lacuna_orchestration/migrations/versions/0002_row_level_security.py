"""PostgreSQL row-level security on the tenant tables; no UPDATE/DELETE on the audit table.

Each tenant table gets the policy ``tenant = current_setting('lacuna.tenant', true)`` for every
command (``USING`` and ``WITH CHECK``): a session sees and writes only the rows of the tenant
it was opened for, and a session that names no tenant sees nothing. The service opens each
tenant's connections with ``options=-c lacuna.tenant=<tenant>`` (``server.database``).

``FORCE ROW LEVEL SECURITY`` makes the policies bind the table owner too — the service role
usually owns the tables, since the core creates missing ones at start. One exception:
``lacuna_audit`` gets the policy without FORCE, because PostgreSQL refuses ``COPY FROM`` on a
table whose policies apply to the current role, and the core appends audit batches with COPY
(its fast path). There the owner (the service, whose audit store always filters by tenant)
is not bound by the policy, while every other role — auditors' read-only logins, BI tools —
is. Forcing it too needs the core to append with INSERT when RLS applies (see the report).

``lacuna_exceptions`` has no tenant column yet; the service confines exceptions through
``lacuna_exception_owners`` (under RLS). ``lacuna_api_keys`` is looked up before the tenant is
known and stays without a policy.

The audit table's UPDATE, DELETE and TRUNCATE privileges are revoked from PUBLIC, from the
migrating role unless it is a superuser (an owner may revoke its own privileges), and from a
separate ``service_role`` when one is named; the triggers of 0001 refuse them anyway.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import re

from alembic import context, op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FORCED = (
    "lacuna_datasets", "lacuna_edges", "lacuna_decisions", "lacuna_audit_head",
    "lacuna_feedback", "lacuna_exception_owners",
)
NOT_FORCED = ("lacuna_audit",)
POLICY = "lacuna_tenant_isolation"
CONDITION = "tenant = current_setting('lacuna.tenant', true)"
_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _service_role() -> str | None:
    role = context.config.attributes.get("service_role")
    if role is None:
        role = context.get_x_argument(as_dictionary=True).get("service_role")
    if role is not None and not _ROLE.match(role):
        raise ValueError(f"service_role {role!r} is not a plain role name")
    return role


def _superuser() -> bool:
    return bool(op.get_bind().execute(text(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar())


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no row-level security; development runs one tenant per file
    for table in FORCED + NOT_FORCED:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({CONDITION}) "
                   f"WITH CHECK ({CONDITION})")
    for table in FORCED:
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON lacuna_audit FROM PUBLIC")
    if not _superuser():
        op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON lacuna_audit FROM CURRENT_USER")
    role = _service_role()
    if role:
        op.execute(f"GRANT USAGE ON SCHEMA {_schema()} TO {role}")
        op.execute(f"GRANT SELECT, INSERT ON lacuna_audit TO {role}")
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON lacuna_audit_head TO {role}")
        for table in ("lacuna_datasets", "lacuna_edges", "lacuna_decisions", "lacuna_exceptions",
                      "lacuna_api_keys", "lacuna_feedback", "lacuna_exception_owners"):
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")
        op.execute(f"GRANT EXECUTE ON FUNCTION lacuna_audit_refuse_change() TO {role}")


def _schema() -> str:
    return str(op.get_bind().execute(text("SELECT current_schema()")).scalar())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    role = _service_role()
    if role:
        for table in FORCED + NOT_FORCED + ("lacuna_exceptions", "lacuna_api_keys"):
            op.execute(f"REVOKE ALL ON {table} FROM {role}")
        op.execute(f"REVOKE USAGE ON SCHEMA {_schema()} FROM {role}")
    if not _superuser():
        op.execute("GRANT UPDATE, DELETE, TRUNCATE ON lacuna_audit TO CURRENT_USER")
    for table in FORCED + NOT_FORCED:
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
