"""Access control on every route of the service, found by walking the app itself: no key, a
wrong key, a revoked key, each role, and another tenant's admin key. Keys are compared in
constant time, and no secret reaches a log, an error or the audit chain.

The roles are written out here from the documented table rather than read from the server's
``GRANTS``, so a change to either shows up as a failure; the route list comes from the app, so
a new route cannot skip this matrix (it must be added to ``ROUTES``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from server_helpers import ADMIN_KEY, app_for, auth, export_event, pipeline_lines, server_settings

from lacuna_orchestration.server import auth as auth_module
from lacuna_orchestration.server.auth import GRANTS, ApiKeyStore, Role

TENANT = "default"
FOREIGN = "globex"

ROLES: dict[str, set[str]] = {
    "producer": {"lineage:write", "gate:check", "catalog:read", "exception:request"},
    "steward": {"gate:check", "catalog:read", "exception:request", "exception:decide",
                "classification:override", "decision:feedback"},
    "auditor": {"catalog:read", "audit:read"},
    "admin": {"lineage:write", "gate:check", "catalog:read", "exception:request",
              "exception:decide", "classification:override", "decision:feedback",
              "audit:read", "audit:archive", "keys:manage"},
}

# (method, path template) -> permission; request built by ``_request``.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/lineage"): "lineage:write",
    ("POST", "/api/v1/lineage/batch"): "lineage:write",
    ("POST", "/api/v1/check"): "gate:check",
    ("GET", "/api/v1/decisions"): "catalog:read",
    ("POST", "/api/v1/decisions/{decision_id}/feedback"): "decision:feedback",
    ("GET", "/api/v1/metrics"): "catalog:read",
    ("GET", "/api/v1/datasets"): "catalog:read",
    ("GET", "/api/v1/datasets/{dataset:path}"): "catalog:read",
    ("GET", "/api/v1/lineage/upstream"): "catalog:read",
    ("GET", "/api/v1/lineage/downstream"): "catalog:read",
    ("GET", "/api/v1/lineage/impact"): "catalog:read",
    ("GET", "/api/v1/lineage/columns"): "catalog:read",
    ("GET", "/api/v1/lineage/graph"): "catalog:read",
    ("POST", "/api/v1/overrides"): "classification:override",
    ("POST", "/api/v1/exceptions"): "exception:request",
    ("GET", "/api/v1/exceptions"): "catalog:read",
    ("GET", "/api/v1/exceptions/{exception_id}"): "catalog:read",
    ("POST", "/api/v1/exceptions/{exception_id}/approve"): "exception:decide",
    ("POST", "/api/v1/exceptions/{exception_id}/deny"): "exception:decide",
    ("POST", "/api/v1/exceptions/{exception_id}/revoke"): "exception:decide",
    ("POST", "/api/v1/exceptions/expire"): "exception:decide",
    ("GET", "/api/v1/audit/records"): "audit:read",
    ("GET", "/api/v1/audit/head"): "audit:read",
    ("GET", "/api/v1/audit/verify"): "audit:read",
    ("POST", "/api/v1/audit/archive"): "audit:archive",
    ("GET", "/api/v1/reports/{kind}"): "audit:read",
    ("POST", "/api/v1/keys"): "keys:manage",
    ("GET", "/api/v1/keys"): "keys:manage",
    ("DELETE", "/api/v1/keys/{key_id}"): "keys:manage",
    ("GET", "/api/v1/policy"): "catalog:read",
    ("POST", "/api/v1/policy/reload"): "keys:manage",
}
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/"), ("GET", "/lineage"),
          ("GET", "/lineage/{dataset:path}"), ("GET", "/docs")}
"""Routes without a key: liveness, readiness, the web view's page shell (its data come
from the API, with a key) and the API docs page (the OpenAPI schema, as FastAPI serves it)."""

DATASET = "file::customers.csv"


class World:
    """One service with data in tenant ``default`` and keys for every role, plus another
    tenant's admin; ``ids`` are real resources of ``default``."""

    def __init__(self, client: TestClient, keys: ApiKeyStore) -> None:
        self.client = client
        self.store = keys
        self.tokens = {"admin": ADMIN_KEY}
        for role in ("producer", "steward", "auditor"):
            self.tokens[role] = keys.create(tenant=TENANT, role=role, name=f"{role}-key",
                                            created_by="test")[0]
        self.foreign = keys.create(tenant=FOREIGN, role="admin", name="globex-admin",
                                   created_by="test")[0]
        for line in pipeline_lines():
            r = client.post("/api/v1/lineage", content=line,
                            headers=auth(ADMIN_KEY) | {"Content-Type": "application/json"})
            assert r.status_code == 201, r.text
        decision = client.post("/api/v1/lineage", json=export_event(),
                               headers=auth(ADMIN_KEY)).json()["decisions"][0]
        self.decision_id = decision["decision_id"]
        self.exception_ids = [self._exception() for _ in range(3)]
        self.secrets = {t.split("_", 2)[2] for t in (*self.tokens.values(), self.foreign)}

    def _exception(self) -> str:
        r = self.client.post("/api/v1/exceptions", headers=auth(self.tokens["producer"]), json={
            "operation_kind": "export", "sources": ["file::analysis.csv"],
            "destination": "file::/tmp/export.csv", "purpose": "audit",
            "justification": "the regulator asked for it", "duration_days": 1})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def victim_key(self) -> str:
        return self.store.create(tenant=TENANT, role="producer", name="victim",
                                 created_by="test")[1].key_id

    def head(self, tenant: str = TENANT) -> int:
        gov = self.client.app.state.lacuna.governors.get(tenant)  # type: ignore[attr-defined]
        return int(gov.audit.head().seq)

    def request(self, method: str, template: str, token: str | None,
                headers: dict[str, str] | None = None) -> Any:
        path, kwargs = self._request(method, template)
        sent = dict(headers or {})
        if token is not None:
            sent |= auth(token)
        sent |= kwargs.pop("headers", {})
        return self.client.request(method, path, headers=sent, **kwargs)

    def _request(self, method: str, template: str) -> tuple[str, dict[str, Any]]:
        exc = self.exception_ids[0]
        path = (template.replace("{decision_id}", self.decision_id)
                .replace("{dataset:path}", DATASET).replace("{exception_id}", exc)
                .replace("{kind}", "iso27001-a94").replace("{key_id}", self.victim_key()
                                                           if "{key_id}" in template else ""))
        query = {"dataset": DATASET, "column": "email"} if "/lineage/" in path else {}
        bodies: dict[str, Any] = {
            "/api/v1/lineage": {"json": export_event()},
            "/api/v1/lineage/batch": {"content": b"\n".join(pipeline_lines()[:2]),
                                      "headers": {"Content-Type": "application/x-ndjson"}},
            "/api/v1/check": {"json": {"kind": "export", "sources": ["analysis.csv"],
                                       "destination": "file::/tmp/out.csv"}},
            "/api/v1/overrides": {"json": {"dataset": DATASET, "tier": "PROPRIETARY",
                                           "reason": "contains PII"}},
            "/api/v1/exceptions": {"json": {
                "operation_kind": "export", "sources": ["file::analysis.csv"],
                "destination": "file::/tmp/x.csv", "purpose": "audit",
                "justification": "a justification long enough"}},
            "/api/v1/audit/archive": {"json": {"older_than_days": 3650}},
            "/api/v1/keys": {"json": {"role": "auditor", "name": "made-in-test"}},
        }
        kwargs: dict[str, Any] = dict(bodies.get(path, {})) if method == "POST" else {}
        if path.endswith("/feedback"):
            kwargs = {"json": {"verdict": "correct"}}
        elif path.endswith("/approve"):
            kwargs = {"json": {"duration_days": 1}}
        elif path.endswith(("/deny", "/revoke")):
            kwargs = {"json": {"reason": "not now"}}
        if query and method == "GET":
            kwargs["params"] = query
        return path, kwargs


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    app = app_for(server_settings(f"sqlite:///{tmp_path / 'acl.db'}", tmp=tmp_path,
                                  alert_on_denials=False))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield World(client, app.state.lacuna.keys)


def _route_table(client: TestClient) -> dict[tuple[str, str], str | None]:
    """Every route of the app → the permission its dependencies require (None: no key)."""

    def permissions(dependant: Any, found: set[str]) -> set[str]:
        for sub in dependant.dependencies:
            name = getattr(sub.call, "__name__", "")
            if name.startswith("require_"):
                found.add(name)
            permissions(sub, found)
        return found

    table: dict[tuple[str, str], str | None] = {}
    by_name = {f"require_{p.name.lower()}": p.value for p in auth_module.Permission}
    for route in client.app.routes:
        if not isinstance(route, APIRoute):
            continue
        needed = permissions(route.dependant, set())
        assert len(needed) <= 1, (route.path, needed)
        for method in route.methods:
            table[(method, route.path)] = by_name[needed.pop()] if needed else None
    return table


def test_the_route_inventory_matches(world: World) -> None:
    table = _route_table(world.client)
    assert {k for k, v in table.items() if v is None} == PUBLIC
    assert {k: v for k, v in table.items() if v is not None} == ROUTES
    assert {role.value: {p.value for p in perms} for role, perms in GRANTS.items()} == ROLES


@pytest.mark.slow
def test_every_route_every_caller(world: World, caplog: pytest.LogCaptureFixture,
                                  record_result: Callable[..., None]) -> None:
    caplog.set_level(logging.DEBUG)
    revoked_token, revoked = world.store.create(tenant=TENANT, role="admin", name="old",
                                                created_by="test")
    world.store.revoke(revoked.key_id)
    key_id = world.tokens["producer"].split("_")[1]
    wrong_keys = {
        "no key": None,
        "unknown key": "lcn_0123456789abcdef_" + "x" * 43,
        "wrong secret": f"lcn_{key_id}_" + "y" * 43,
        "revoked key": revoked_token,
        "garbage": "definitely-not-a-key",
    }
    checked = 0
    for (method, template), permission in sorted(ROUTES.items()):
        for label, token in wrong_keys.items():
            before = world.head()
            r = world.request(method, template, token)
            assert r.status_code == 401, (label, method, template, r.status_code, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert world.head() == before  # anonymous traffic never grows the chain
            checked += 1
        basic = world.request(method, template, None,
                              headers={"Authorization": f"Basic {ADMIN_KEY}"})
        assert basic.status_code == 401
        for role, token in world.tokens.items():
            before = world.head()
            r = world.request(method, template, token)
            assert r.status_code < 500, (role, method, template, r.status_code, r.text)
            if permission in ROLES[role]:
                assert r.status_code not in (401, 403), (role, method, template, r.text)
            else:
                assert r.status_code == 403, (role, method, template, r.status_code, r.text)
                assert r.json()["error"]["field"] == "Authorization"
                last = world.client.get("/api/v1/audit/records?action=access.denied&limit=1000",
                                        headers=auth(ADMIN_KEY)).json()["records"][-1]
                assert last["seq"] == before + 1 and last["resource"].startswith("/api/v1/")
                assert last["details"]["permission"] == permission
            checked += 1
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for secret in world.secrets | {revoked_token.split("_", 2)[2]}:
        assert secret not in text, "an API key secret reached the logs"
    record_result("access control: every route x every caller", routes=len(ROUTES),
                  requests=checked, callers=len(wrong_keys) + len(world.tokens))


def test_foreign_tenant_sees_and_touches_nothing(world: World,
                                                 record_result: Callable[..., None]) -> None:
    foreign = world.foreign
    before = world.head()
    for template in ("/api/v1/datasets/{dataset:path}", "/api/v1/exceptions/{exception_id}"):
        assert world.request("GET", template, foreign).status_code == 404, template
    for template in ("/api/v1/lineage/upstream", "/api/v1/lineage/downstream",
                     "/api/v1/lineage/impact", "/api/v1/lineage/columns"):
        r = world.request("GET", template, foreign)
        assert r.status_code == 404 or DATASET not in r.text, (template, r.status_code)
    for template in ("/api/v1/exceptions/{exception_id}/approve",
                     "/api/v1/exceptions/{exception_id}/deny",
                     "/api/v1/exceptions/{exception_id}/revoke",
                     "/api/v1/decisions/{decision_id}/feedback",
                     "/api/v1/keys/{key_id}"):
        method = "DELETE" if template.startswith("/api/v1/keys") else "POST"
        r = world.request(method, template, foreign)
        assert r.status_code == 404, (template, r.status_code, r.text)
    for path, field in (("/api/v1/datasets", "datasets"), ("/api/v1/decisions", "decisions"),
                        ("/api/v1/exceptions", "exceptions"), ("/api/v1/keys", "keys"),
                        ("/api/v1/audit/records", "records")):
        items = world.client.get(path, headers=auth(foreign)).json()[field]
        assert all(item.get("tenant", FOREIGN) == FOREIGN for item in items), path
        assert "analysis.csv" not in orjson.dumps(items).decode(), path
    # Writes with the foreign key land in the foreign chain only.
    world.request("POST", "/api/v1/check", foreign)
    world.request("POST", "/api/v1/lineage", foreign)
    assert world.head() == before
    assert world.head(FOREIGN) >= 2
    for exc_id in world.exception_ids:  # still pending in their own tenant
        r = world.client.get(f"/api/v1/exceptions/{exc_id}", headers=auth(ADMIN_KEY))
        assert r.json()["status"] == "requested"
    record_result("access control: foreign tenant key", reads_leaking=0, writes_crossing=0)


def test_keys_are_compared_in_constant_time(world: World,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = auth_module.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((len(a), len(b)))
        return bool(real(a, b))

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    store = ApiKeyStore(world.store.engine, cache_s=0)
    key_id = world.tokens["auditor"].split("_")[1]
    for token in (world.tokens["auditor"], f"lcn_{key_id}_" + "z" * 43,
                  "lcn_fedcba9876543210_" + "z" * 43):
        try:
            store.authenticate(token)
        except auth_module.AuthError:
            pass
    # Right key, wrong secret, unknown id: each one HMAC comparison of equal-length digests.
    assert calls == [(64, 64)] * 3
    assert store.authenticate(world.tokens["auditor"]).role is Role.AUDITOR


def test_revoked_key_stops_working_at_once(world: World) -> None:
    token, info = world.store.create(tenant=TENANT, role="auditor", name="leaving",
                                     created_by="test")
    assert world.client.get("/api/v1/audit/head", headers=auth(token)).status_code == 200
    r = world.client.delete(f"/api/v1/keys/{info.key_id}", headers=auth(ADMIN_KEY))
    assert r.status_code == 200
    assert world.client.get("/api/v1/audit/head", headers=auth(token)).status_code == 401


def test_no_secret_in_responses_or_the_audit_chain(world: World,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    made = world.client.post("/api/v1/keys", json={"role": "producer", "name": "ci"},
                             headers=auth(ADMIN_KEY))
    token = made.json()["key"]  # shown once, to its creator
    # the token is lcn_<hex key id>_<secret>; the secret is url-safe base64 and may itself
    # contain "_", so split after the key id, not at the last "_"
    secret = token.split("_", 2)[2]
    assert len(secret) >= 40
    listed = world.client.get("/api/v1/keys", headers=auth(ADMIN_KEY)).text
    assert secret not in listed and "salt" not in listed and "digest" not in listed
    bad = world.client.get("/api/v1/datasets", headers=auth(token[:-2] + "zz"))
    assert bad.status_code == 401 and secret[:-2] not in bad.text
    records = world.client.get("/api/v1/audit/records?limit=5000",
                               headers=auth(ADMIN_KEY)).text
    for known in world.secrets | {secret}:
        assert known not in records
        assert known not in "\n".join(r.getMessage() for r in caplog.records)
