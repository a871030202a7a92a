"""API keys: hashing, roles on every route, revocation, and the key store itself."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from server_helpers import ADMIN_KEY, auth, export_event, make_key
from sqlalchemy import select

from lacuna_orchestration.db import make_engine
from lacuna_orchestration.server.auth import ApiKeyStore, AuthError, Role
from lacuna_orchestration.server.tables import api_keys_table, ensure_server_schema

CHECK = {"kind": "export", "sources": ["file::customers.csv"],
         "destination": "file::/tmp/export.csv"}

# (method, path, json body) → roles that may call it
MATRIX: list[tuple[str, str, object, set[str]]] = [
    ("POST", "/api/v1/lineage", export_event(), {"producer", "admin"}),
    ("POST", "/api/v1/check", CHECK, {"producer", "steward", "admin"}),
    ("GET", "/api/v1/datasets", None, {"producer", "steward", "auditor", "admin"}),
    ("GET", "/api/v1/decisions", None, {"producer", "steward", "auditor", "admin"}),
    ("GET", "/api/v1/metrics", None, {"producer", "steward", "auditor", "admin"}),
    ("GET", "/api/v1/audit/records", None, {"auditor", "admin"}),
    ("GET", "/api/v1/audit/verify", None, {"auditor", "admin"}),
    ("GET", "/api/v1/reports/iso27001-a94", None, {"auditor", "admin"}),
    ("POST", "/api/v1/overrides",
     {"dataset": "file::customers.csv", "tier": "PROPRIETARY", "reason": "contains PII"},
     {"steward", "admin"}),
    ("POST", "/api/v1/exceptions/expire", None, {"steward", "admin"}),
    ("GET", "/api/v1/keys", None, {"admin"}),
    ("POST", "/api/v1/audit/archive", {"older_than_days": 3650}, {"admin"}),
]


@pytest.fixture()
def keys(sqlite_client: TestClient) -> dict[str, str]:
    # a dataset to override, so the steward's 200 is a real success
    sqlite_client.post("/api/v1/lineage", json=export_event(), headers=auth(ADMIN_KEY))
    return {role: make_key(sqlite_client, role) for role in ("producer", "steward", "auditor")
            } | {"admin": ADMIN_KEY}


@pytest.mark.parametrize(("method", "path", "body", "allowed"), MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_every_route_enforces_its_role(sqlite_client: TestClient, keys: dict[str, str],
                                       method: str, path: str, body: object,
                                       allowed: set[str]) -> None:
    for role, token in keys.items():
        r = sqlite_client.request(method, path, json=body, headers=auth(token))
        if role in allowed:
            assert r.status_code < 300, (role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)
            assert r.json()["error"]["field"] == "Authorization"


def test_refusals_are_audited_for_the_a94_report(sqlite_client: TestClient,
                                                 keys: dict[str, str]) -> None:
    r = sqlite_client.get("/api/v1/audit/records", headers=auth(keys["producer"]))
    assert r.status_code == 403
    records = sqlite_client.get("/api/v1/audit/records?action=access.denied",
                                headers=auth(ADMIN_KEY)).json()["records"]
    assert records and records[-1]["resource"] == "/api/v1/audit/records"
    assert records[-1]["details"]["permission"] == "audit:read"


@pytest.mark.parametrize("header", [
    {}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
    {"Authorization": "Bearer " + ADMIN_KEY[:-1] + "B"},
])
def test_missing_or_wrong_keys_are_401(sqlite_client: TestClient, header) -> None:
    r = sqlite_client.get("/api/v1/datasets", headers=header)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["error"]["code"] == "unauthorized"


def test_x_api_key_header_works_too(sqlite_client: TestClient) -> None:
    assert sqlite_client.get("/api/v1/datasets", headers={"X-API-Key": ADMIN_KEY}).status_code \
        == 200


def test_create_list_revoke_keys(sqlite_client: TestClient) -> None:
    r = sqlite_client.post("/api/v1/keys", json={"role": "auditor", "name": "ext-auditor"},
                           headers=auth(ADMIN_KEY))
    created = r.json()
    token = created.pop("key")
    assert token.startswith("lcn_") and created["tenant"] == "default"
    listed = sqlite_client.get("/api/v1/keys", headers=auth(ADMIN_KEY)).json()["keys"]
    assert any(k["key_id"] == created["key_id"] for k in listed)
    assert all("digest" not in k and "salt" not in k for k in listed)
    assert sqlite_client.get("/api/v1/audit/head", headers=auth(token)).status_code == 200
    r = sqlite_client.delete(f"/api/v1/keys/{created['key_id']}", headers=auth(ADMIN_KEY))
    assert r.json()["active"] is False
    r = sqlite_client.get("/api/v1/audit/head", headers=auth(token))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    actions = [x["action"] for x in sqlite_client.get(
        "/api/v1/audit/records", headers=auth(ADMIN_KEY)).json()["records"]]
    assert "apikey.create" in actions and "apikey.revoke" in actions


def test_keys_are_stored_hashed_with_a_salt_each(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    ensure_server_schema(engine)
    store = ApiKeyStore(engine, cache_s=0)
    t1, _ = store.create(tenant="acme", role="producer", name="a", created_by="t")
    t2, _ = store.create(tenant="acme", role=Role.STEWARD, name="b", created_by="t")
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys_table)).all()
    # lcn_<hex key id>_<secret>: the url-safe secret may itself contain "_"
    secrets = {t1.split("_", 2)[2], t2.split("_", 2)[2]}
    assert all(len(s) >= 40 for s in secrets)
    for row in rows:
        assert not any(s in value for s in secrets for value in map(str, row))
    assert rows[0].salt != rows[1].salt
    assert store.authenticate(t1).role is Role.PRODUCER
    assert store.authenticate(t2).tenant == "acme"
    with pytest.raises(AuthError):
        store.authenticate(t1[:-2] + "xx")
    with pytest.raises(Exception, match="unknown role"):
        store.create(tenant="acme", role="root", name="x", created_by="t")
    with pytest.raises(Exception, match="invalid tenant"):
        store.create(tenant="a b", role="admin", name="x", created_by="t")
