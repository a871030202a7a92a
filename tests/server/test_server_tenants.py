"""Tenants on PostgreSQL: separate chains through the API, and row-level security in the
database itself (a session for tenant A cannot read B's rows, whatever it asks)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from server_helpers import (
    ADMIN_KEY,
    PG_URL,
    app_for,
    auth,
    export_event,
    pipeline_lines,
    server_settings,
)
from sqlalchemy import text

from lacuna_orchestration.db import make_engine
from lacuna_orchestration.migrations import upgrade
from lacuna_orchestration.server.auth import ApiKeyStore
from lacuna_orchestration.server.database import database_url_for, system_engine

pytestmark = pytest.mark.postgres

TENANT_TABLES = ("lacuna_datasets", "lacuna_edges", "lacuna_decisions", "lacuna_audit_head",
                 "lacuna_feedback", "lacuna_exception_owners")


def _key(settings, tenant: str, role: str) -> str:
    engine = system_engine(settings.core)
    try:
        return ApiKeyStore(engine).create(tenant=tenant, role=role, name=f"{tenant}-{role}",
                                          created_by="test")[0]
    finally:
        engine.dispose()


@pytest.fixture()
def service_role(pg_schema) -> Iterator[str]:
    """A plain login role that owns the schema: what the service should run as."""
    role = f"lacuna_svc_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"))
        conn.execute(text(f'ALTER SCHEMA "{pg_schema}" OWNER TO {role}'))
    try:
        yield role
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{pg_schema}" CASCADE'))
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.fixture()
def rls_settings(service_role, pg_schema, tmp_path):
    url = f"postgresql://{service_role}@127.0.0.1:5432/test"
    settings = server_settings(url, pg_schema, tmp=tmp_path)
    upgrade(settings.core)  # as the service role: it owns the tables, RLS is forced
    return settings


def test_tenants_do_not_see_each_other_through_the_api(rls_settings) -> None:
    acme = _key(rls_settings, "acme", "admin")
    globex = _key(rls_settings, "globex", "admin")
    with TestClient(app_for(rls_settings)) as client:
        for line in pipeline_lines():
            assert client.post("/api/v1/lineage", content=line,
                               headers=auth(acme) | {"Content-Type": "application/json"}
                               ).status_code == 201
        r = client.post("/api/v1/lineage", json=export_event(), headers=auth(globex))
        assert r.status_code == 201
        acme_sets = {d["key"] for d in client.get("/api/v1/datasets",
                                                  headers=auth(acme)).json()["datasets"]}
        globex_sets = {d["key"] for d in client.get("/api/v1/datasets",
                                                    headers=auth(globex)).json()["datasets"]}
        assert len(acme_sets) == 8 and globex_sets == {"file::customers.csv",
                                                       "file::/tmp/export.csv"}
        assert client.get("/api/v1/datasets/analysis.csv", headers=auth(globex)
                          ).status_code == 404
        acme_head = client.get("/api/v1/audit/head", headers=auth(acme)).json()
        globex_head = client.get("/api/v1/audit/head", headers=auth(globex)).json()
        assert acme_head["seq"] > globex_head["seq"] >= 2  # two separate chains
        for token, tenant in ((acme, "acme"), (globex, "globex")):
            records = client.get("/api/v1/audit/records?limit=1000",
                                 headers=auth(token)).json()["records"]
            assert {r["tenant"] for r in records} == {tenant}
            assert records[0]["seq"] == 1
            assert client.get("/api/v1/audit/verify", headers=auth(token)).json()["ok"]
        globex_decisions = client.get("/api/v1/decisions", headers=auth(globex)).json()
        assert all("analysis" not in d["source"] for d in globex_decisions["decisions"])
        # exceptions are scoped as well (the core table has no tenant column yet)
        exc = client.post("/api/v1/exceptions", headers=auth(acme), json={
            "operation_kind": "export", "sources": ["file::analysis.csv"],
            "destination": "file::/tmp/export.csv", "purpose": "audit",
            "justification": "the regulator asked for it", "duration_days": 1}).json()
        assert client.get(f"/api/v1/exceptions/{exc['id']}", headers=auth(globex)
                          ).status_code == 404
        assert client.get("/api/v1/exceptions", headers=auth(globex)).json()["exceptions"] == []


def test_row_level_security_in_the_database(rls_settings, service_role) -> None:
    acme = _key(rls_settings, "acme", "producer")
    globex = _key(rls_settings, "globex", "producer")
    with TestClient(app_for(rls_settings)) as client:
        for token in (acme, globex):
            assert client.post("/api/v1/lineage", json=export_event(),
                               headers=auth(token)).status_code == 201
    core = rls_settings.core
    as_acme = make_engine(database_url_for(core, "acme"))
    no_tenant = make_engine(database_url_for(core, None))
    try:
        with as_acme.connect() as conn:
            for table in TENANT_TABLES[:4]:
                tenants = set(conn.execute(text(f"SELECT DISTINCT tenant FROM {table}"))
                              .scalars())
                assert tenants == {"acme"}, table  # globex's rows exist but are invisible
            # a session may not write another tenant's rows either
            with pytest.raises(Exception, match="row-level security"):
                conn.execute(text("INSERT INTO lacuna_edges VALUES "
                                  "('globex', 'a', 'b', 'join', '', 'now')"))
            conn.rollback()
        with no_tenant.connect() as conn:
            for table in TENANT_TABLES:
                assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0
        with as_acme.connect() as conn:  # the service role cannot rewrite history
            with pytest.raises(Exception, match="permission denied|append-only"):
                conn.execute(text("UPDATE lacuna_audit SET actor = 'mallory'"))
            conn.rollback()
            with pytest.raises(Exception, match="permission denied|append-only"):
                conn.execute(text("DELETE FROM lacuna_audit"))
    finally:
        as_acme.dispose()
        no_tenant.dispose()


def test_audit_table_policy_binds_other_roles(rls_settings, service_role, pg_schema) -> None:
    """lacuna_audit's policy is not FORCEd (the core appends with COPY); it confines every
    role but the owner — e.g. a read-only auditors' login."""
    with TestClient(app_for(rls_settings)) as client:
        for tenant in ("acme", "globex"):
            token = _key(rls_settings, tenant, "producer")
            client.post("/api/v1/lineage", json=export_event(), headers=auth(token))
    reader = f"lacuna_ro_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE ROLE {reader} LOGIN NOSUPERUSER"))
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{pg_schema}" TO {reader}'))
        conn.execute(text(f'GRANT SELECT ON "{pg_schema}".lacuna_audit TO {reader}'))
    core = rls_settings.core.replace(
        database_url=f"postgresql://{reader}@127.0.0.1:5432/test")
    engine = make_engine(database_url_for(core, "globex"))
    try:
        with engine.connect() as conn:
            tenants = set(conn.execute(text("SELECT DISTINCT tenant FROM lacuna_audit"))
                          .scalars())
        assert tenants == {"globex"}
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {reader}"))
            conn.execute(text(f"DROP ROLE {reader}"))
        admin.dispose()


def test_superuser_service_is_warned_about(pg_settings, caplog) -> None:
    with caplog.at_level("WARNING"):
        app_for(pg_settings)
    assert any("bypasses row-level security" in r.message for r in caplog.records)


def test_admin_keys_cannot_reach_another_tenant(rls_settings) -> None:
    acme_admin = _key(rls_settings, "acme", "admin")
    with TestClient(app_for(rls_settings)) as client:
        made = client.post("/api/v1/keys", json={"role": "producer", "name": "p"},
                           headers=auth(acme_admin)).json()
        assert made["tenant"] == "acme"
        globex_admin = _key(rls_settings, "globex", "admin")
        r = client.delete(f"/api/v1/keys/{made['key_id']}", headers=auth(globex_admin))
        assert r.status_code == 404
        assert client.get("/api/v1/datasets", headers=auth(made["key"])).status_code == 200
        assert client.get("/api/v1/datasets", headers=auth(ADMIN_KEY)).status_code == 200
