"""The exceptions workflow over HTTP on PostgreSQL: request → approve/deny → time-boxed
validity honoured by the gate → expiry; every step audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from server_helpers import ADMIN_KEY, auth, make_key, pipeline_lines

from lacuna_orchestration.governor import Governor

pytestmark = pytest.mark.postgres

EXPORT = {"kind": "export", "sources": ["file::analysis.csv"],
          "destination": "file::/tmp/export.csv", "user": "ann"}
REQUEST = {"operation_kind": "export", "sources": ["file::analysis.csv"],
           "destination": "file::/tmp/export.csv", "purpose": "regulatory filing",
           "justification": "the regulator asked for the raw extract",
           "approver": "stella", "duration_days": 2, "conditions": ["delete after upload"]}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def client(pg_settings, clock) -> TestClient:
    app = app_for_clock(pg_settings, clock)
    with TestClient(app) as c:
        for line in pipeline_lines():
            c.post("/api/v1/lineage", content=line,
                   headers=auth(ADMIN_KEY) | {"Content-Type": "application/json"})
        yield c


def app_for_clock(settings, clock):
    from lacuna_orchestration.server.app import create_app

    return create_app(settings, governor_factory=lambda s: Governor(s, clock=clock))


def test_request_approve_use_expire(client: TestClient, clock: Clock) -> None:
    producer = make_key(client, "producer", "ann")
    stella = make_key(client, "steward", "stella")
    sam = make_key(client, "steward", "sam")
    assert client.post("/api/v1/check", json=EXPORT, headers=auth(producer)).json()["allow"] \
        is False

    r = client.post("/api/v1/exceptions", json=REQUEST, headers=auth(producer))
    assert r.status_code == 201, r.text
    exc = r.json()
    assert exc["status"] == "requested" and exc["requested_by"] == "ann"
    assert exc["requested_approver"] == "stella" and exc["requested_duration_days"] == 2

    assert client.post(f"/api/v1/exceptions/{exc['id']}/approve", json={},
                       headers=auth(producer)).status_code == 403
    wrong = client.post(f"/api/v1/exceptions/{exc['id']}/approve", json={}, headers=auth(sam))
    assert wrong.status_code == 422 and "stella" in wrong.json()["error"]["message"]

    approved = client.post(f"/api/v1/exceptions/{exc['id']}/approve", json={},
                           headers=auth(stella)).json()
    assert approved["status"] == "approved" and approved["approver"] == "stella"
    valid_until = datetime.fromisoformat(approved["valid_until"])
    assert valid_until == clock.now + timedelta(days=2)
    assert approved["conditions"] == ["delete after upload"]

    allowed = client.post("/api/v1/check", json=EXPORT, headers=auth(producer)).json()
    assert allowed["allow"] is True and allowed["decision"]["exception_id"] == exc["id"]
    by_id = client.post("/api/v1/check", json=EXPORT | {"exception_id": exc["id"]},
                        headers=auth(producer)).json()
    assert by_id["allow"] is True

    clock.now += timedelta(days=3)  # time is up
    assert client.post("/api/v1/check", json=EXPORT, headers=auth(producer)).json()["allow"] \
        is False
    assert client.get(f"/api/v1/exceptions/{exc['id']}", headers=auth(producer)
                      ).json()["status"] == "expired"
    assert client.post("/api/v1/exceptions/expire", headers=auth(stella)).json() == {
        "expired": [exc["id"]]}

    steps = [r["action"] for r in client.get(
        "/api/v1/audit/records?limit=1000", headers=auth(ADMIN_KEY)).json()["records"]
        if r["resource"] == exc["id"]]
    assert steps == ["exception.request", "exception.approve", "exception.expire"]


def test_deny_revoke_and_four_eyes(client: TestClient) -> None:
    stella = make_key(client, "steward", "stella")
    first = client.post("/api/v1/exceptions", json=REQUEST | {"approver": ""},
                        headers=auth(ADMIN_KEY)).json()
    denied = client.post(f"/api/v1/exceptions/{first['id']}/deny",
                         json={"reason": "use the anonymised extract"}, headers=auth(stella))
    assert denied.json()["status"] == "denied"
    again = client.post(f"/api/v1/exceptions/{first['id']}/approve", json={"duration_days": 1},
                        headers=auth(stella))
    assert again.status_code == 422 and "denied" in again.json()["error"]["message"]

    own = client.post("/api/v1/exceptions", json=REQUEST | {"approver": "",
                                                            "requested_by": "stella"},
                      headers=auth(stella)).json()
    self_approval = client.post(f"/api/v1/exceptions/{own['id']}/approve",
                                json={"duration_days": 1}, headers=auth(stella))
    assert self_approval.status_code == 422
    assert "cannot approve" in self_approval.json()["error"]["message"]

    third = client.post("/api/v1/exceptions", json=REQUEST | {"approver": ""},
                        headers=auth(ADMIN_KEY)).json()
    client.post(f"/api/v1/exceptions/{third['id']}/approve", json={"duration_days": 5},
                headers=auth(stella))
    revoked = client.post(f"/api/v1/exceptions/{third['id']}/revoke",
                          json={"reason": "filing done"}, headers=auth(stella)).json()
    assert revoked["status"] == "revoked"
    assert client.post("/api/v1/check", json=EXPORT, headers=auth(ADMIN_KEY)).json()["allow"] \
        is False
    listed = client.get("/api/v1/exceptions?status=denied", headers=auth(stella)).json()
    assert [e["id"] for e in listed["exceptions"]] == [first["id"]]
    bad = client.post("/api/v1/exceptions", json=REQUEST | {"justification": "short"},
                      headers=auth(stella))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "justification"
    too_long = client.post(f"/api/v1/exceptions/{own['id']}/approve",
                           json={"duration_days": 365}, headers=auth(ADMIN_KEY))
    assert too_long.status_code == 422 and too_long.json()["error"]["field"] == "duration_days"
