"""Compliance reports (JSON, HTML, CLI), retention archives that verify on their own, and
webhook alerts on denials and tampering — against a local receiver."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from server_helpers import (
    ADMIN_KEY,
    Receiver,
    app_for,
    auth,
    export_event,
    make_key,
    pipeline_lines,
    run_cli,
    server_settings,
)

from lacuna_orchestration.audit.reports import render_html
from lacuna_orchestration.audit.retention import (
    archive_records,
    verify_archive,
    verify_continuity,
)
from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.model import DatasetRef

H = auth(ADMIN_KEY)
JSON_CT = {"Content-Type": "application/json"}


def _phi_event() -> dict:
    visits = DatasetSpec(DatasetRef("postgres://ehr:5432", "clinic.visits"),
                         columns=("patient_id", "diagnosis_code", "visit_date"))
    out = DatasetSpec(DatasetRef("s3://research", "cohort.parquet"))
    return build_run_event(job=("airflow", "research.build_cohort"), inputs=[visits],
                           outputs=[out], operation="transform", user="rita@example.com",
                           purpose="care")


@pytest.fixture()
def loaded(sqlite_client: TestClient) -> TestClient:
    producer = make_key(sqlite_client, "producer", "etl")
    for line in pipeline_lines():
        sqlite_client.post("/api/v1/lineage", content=line, headers=auth(producer) | JSON_CT)
    sqlite_client.post("/api/v1/lineage", json=_phi_event(), headers=auth(producer))
    sqlite_client.post("/api/v1/check", headers=auth(producer), json={
        "kind": "export", "sources": ["file::analysis.csv"],
        "destination": "file::/tmp/export.csv", "user": "mallory"})
    sqlite_client.get("/api/v1/audit/records", headers=auth(producer))  # refused: 403
    steward = make_key(sqlite_client, "steward", "stella")
    sqlite_client.post("/api/v1/overrides", headers=auth(steward), json={
        "dataset": "sales.csv", "tier": "PROPRIETARY", "reason": "negotiated prices"})
    return sqlite_client


def test_iso27001_a94_access_attempts_and_denials(loaded: TestClient) -> None:
    report = loaded.get("/api/v1/reports/iso27001-a94", headers=H).json()
    s = report["sections"]["summary"]
    assert s["access_attempts"] == 8  # 7 event decisions + 1 gate check
    assert s["denied"] == 2 and s["api_refusals"] == 1
    users = {u["user"]: u for u in report["sections"]["by_user"]}
    assert users["mallory"]["denied"] == 1
    assert report["sections"]["denials_by_policy"] == {"export-governance": 2}
    assert report["sections"]["api_refusals"]["rows"][0]["resource"] == "/api/v1/audit/records"
    assert report["chain"]["verified"] is True


def test_iso27001_a124_logging_and_admin_actions(loaded: TestClient) -> None:
    report = loaded.get("/api/v1/reports/iso27001-a124", headers=H).json()
    sec = report["sections"]
    assert sec["verification"]["ok"] is True
    assert sec["verification"]["records_verified"] == sec["logging"]["last_seq"]
    actions = {r["action"] for r in sec["admin_actions"]["rows"]}
    assert {"apikey.create", "classification.override"} <= actions
    assert sec["logging"]["by_action"]["lineage.ingest"] == 13


def test_gdpr_and_hipaa(loaded: TestClient) -> None:
    gdpr = loaded.get("/api/v1/reports/gdpr", headers=H).json()["sections"]
    datasets = {d["dataset"] for d in gdpr["processing"]["datasets"]}
    assert {"file::customers.csv", "file::analysis.csv"} <= datasets
    assert "file::sales.csv" not in datasets  # FINANCIAL, not personal data
    assert gdpr["processing"]["summary"]["denied"] == 2
    assert gdpr["overrides"]["total"] == 1
    hipaa = loaded.get("/api/v1/reports/hipaa", headers=H).json()["sections"]["phi_access"]
    phi = {d["dataset"]: d for d in hipaa["datasets"]}
    assert "postgres://ehr:5432::clinic.visits" in phi
    assert "file::customers.csv" not in phi
    assert [u["user"] for u in hipaa["by_user"]] == ["rita@example.com"]


def test_period_filter_and_html(loaded: TestClient) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    until = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    empty = loaded.get("/api/v1/reports/iso27001-a94", params={"since": future, "until": until},
                       headers=H).json()
    assert empty["sections"]["summary"]["access_attempts"] == 0
    page = loaded.get("/api/v1/reports/gdpr?format=html", headers=H)
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>GDPR" in page.text and "customers.csv" in page.text
    assert "<script" not in page.text
    bad = loaded.get("/api/v1/reports/sox", headers=H)
    assert bad.status_code == 422


def test_html_escapes_values() -> None:
    report = {"kind": "x", "title": "T", "tenant": "<b>t</b>",
              "period": {"since": "a", "until": "b"}, "generated_at": "now",
              "chain": {"verified": False, "message": "<script>alert(1)</script>"},
              "sections": {"s": {"rows_like": [{"actor": "<img src=x onerror=1>"}]}}}
    page = render_html(report)
    assert "<script>" not in page and "<img" not in page and "BROKEN" in page


def test_cli_report_writes_html(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with TestClient(app_for(server_settings(url, tmp=tmp_path))) as client:
        client.post("/api/v1/lineage", json=export_event(), headers=H)
    out = tmp_path / "a94.html"
    code = run_cli(["--database-url", url, "report", "iso27001-a94", "--since",
                    "2020-01-01T00:00:00Z", "--format", "html", "-o", str(out)])
    assert code == 0
    text = out.read_text()
    assert "A.9.4" in text and "export-governance" in text


def test_archive_verifies_on_its_own_and_detects_tampering(loaded: TestClient,
                                                           tmp_path: Path) -> None:
    gov = loaded.app.state.lacuna.governors.get("default")
    total = gov.audit.head().seq
    later = datetime.now(UTC) + timedelta(days=1)
    first = archive_records(gov.audit, tmp_path / "arch", older_than=later - timedelta(
        days=400))
    assert first.path is None  # nothing that old
    result = archive_records(gov.audit, tmp_path / "arch", older_than=timedelta(0),
                             now=later)
    assert result.count == total and result.first_seq == 1
    check = verify_archive(result.path)
    assert check.ok and check.count == total and check.last_hash == gov.audit.head().hash
    loaded.post("/api/v1/lineage", json=export_event(), headers=H)  # the live chain goes on
    assert verify_continuity(tmp_path / "arch", "default", gov.audit).ok
    second = archive_records(gov.audit, tmp_path / "arch", older_than=timedelta(0),
                             now=later)
    assert second.first_seq == total + 1 and second.prev_hash == result.last_hash
    assert verify_continuity(tmp_path / "arch", "default", gov.audit).count == \
        gov.audit.head().seq

    lines = gzip.decompress(result.path.read_bytes()).splitlines()
    original = list(lines)
    record = orjson.loads(lines[3])
    record["actor"] = "someone-else"
    lines[3] = orjson.dumps(record)
    forged = tmp_path / "forged.ndjson.gz"
    forged.write_bytes(gzip.compress(b"\n".join(lines)))
    broken = verify_archive(forged)
    assert not broken.ok and f"seq {record['seq']}" in broken.problem
    truncated = tmp_path / "truncated.ndjson.gz"
    truncated.write_bytes(gzip.compress(b"\n".join(original[:-2])))
    assert "trailer" in verify_archive(truncated).problem
    result.path.write_bytes(forged.read_bytes())
    assert "changed since written" in verify_continuity(tmp_path / "arch", "default").problem


def test_archive_route_audits_the_run(sqlite_client: TestClient) -> None:
    sqlite_client.post("/api/v1/lineage", json=export_event(), headers=H)
    r = sqlite_client.post("/api/v1/audit/archive", json={"older_than_days": 0}, headers=H)
    body = r.json()
    assert r.status_code == 200 and body["archive"]["count"] >= 2
    assert body["continuity"]["ok"] is True
    last = sqlite_client.get("/api/v1/audit/records?action=audit.archive", headers=H).json()
    assert last["records"][0]["details"]["last_hash"] == body["archive"]["last_hash"]


def test_webhook_alerts_on_denials_and_tampering(tmp_path: Path) -> None:
    with Receiver() as receiver:
        settings = server_settings(f"sqlite:///{tmp_path / 'l.db'}", tmp=tmp_path,
                                   alert_webhook_url=receiver.url)
        with TestClient(app_for(settings)) as client:
            run_id = "0b1b3f5e-7a8e-4c86-9f38-6a1b7a9e0b61"
            client.post("/api/v1/lineage", json=export_event("START", run_id), headers=H)
            client.post("/api/v1/lineage", json=export_event("COMPLETE", run_id), headers=H)
            bodies = receiver.wait_for(1)
            assert len(bodies) == 1  # START and COMPLETE share one decision: one alert
            assert set(bodies[0]) == {"text"}
            assert "export-governance" in bodies[0]["text"]
            assert "ann@example.com" in bodies[0]["text"]
            gov = client.app.state.lacuna.governors.get("default")
            with gov.engine.begin() as conn:  # tamper behind the triggers' back
                conn.exec_driver_sql("DROP TRIGGER lacuna_audit_refuse_update")
                conn.exec_driver_sql("UPDATE lacuna_audit SET actor = 'mallory' WHERE seq = 1")
            verdict = client.get("/api/v1/audit/verify", headers=H).json()
            assert verdict["ok"] is False and verdict["first_bad_seq"] == 1
            bodies = receiver.wait_for(2)
            assert "Audit chain broken at seq 1" in bodies[1]["text"]


def test_alert_delivery_failures_never_fail_requests(tmp_path: Path) -> None:
    with Receiver(status=500) as receiver:
        settings = server_settings(f"sqlite:///{tmp_path / 'l.db'}", tmp=tmp_path,
                                   alert_webhook_url=receiver.url)
        app = app_for(settings)
        with TestClient(app) as client:
            r = client.post("/api/v1/lineage", json=export_event(), headers=H)
            assert r.status_code == 201
            dispatcher = app.state.lacuna.alerts
            dispatcher.retry_delay_s = 0.01
            assert dispatcher.flush(10)
            assert dispatcher.failed == 1 and dispatcher.sent == 0
            assert len(receiver.bodies) == 2  # tried twice
