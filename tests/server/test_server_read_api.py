"""The read API over a real ingested pipeline on PostgreSQL: datasets with evidence, lineage
walks (depth-limited, column-level), decisions, the gate, feedback, metrics, overrides."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from server_helpers import ADMIN_KEY, auth, make_key, pipeline_lines

pytestmark = pytest.mark.postgres

H = auth(ADMIN_KEY)


@pytest.fixture()
def client(pg_client: TestClient) -> TestClient:
    key = make_key(pg_client, "producer", "pipeline")
    for line in pipeline_lines():
        r = pg_client.post("/api/v1/lineage", content=line,
                           headers=auth(key) | {"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
    return pg_client


def test_datasets_list_and_filters(client: TestClient) -> None:
    data = client.get("/api/v1/datasets", headers=H).json()
    assert data["total"] == 8
    tiers = {d["name"]: d["tier"] for d in data["datasets"]}
    assert tiers["analysis.csv"] == "PROPRIETARY" and tiers["sales.csv"] == "INTERNAL"
    pii = client.get("/api/v1/datasets?tag=pii", headers=H).json()["datasets"]
    assert {d["name"] for d in pii} >= {"customers.csv", "analysis.csv"}
    assert "sales.csv" not in {d["name"] for d in pii}
    page = client.get("/api/v1/datasets?limit=3&offset=3", headers=H).json()
    assert len(page["datasets"]) == 3 and page["total"] == 8
    internal = client.get("/api/v1/datasets?tier=internal", headers=H).json()["datasets"]
    assert all(d["tier"] == "INTERNAL" for d in internal) and internal


def test_dataset_detail_has_evidence_columns_and_decisions(client: TestClient) -> None:
    d = client.get("/api/v1/datasets/file::analysis.csv", headers=H).json()
    assert d["tier"] == "PROPRIETARY" and {"PII", "FINANCIAL"} <= set(d["tags"])
    assert d["classification"]["evidence"], "an explained classification"
    assert d["upstream_datasets"] == ["file::customers.csv", "file::sales.csv"]
    assert d["downstream_datasets"]
    assert any(e["operation"] == "join" for e in d["edges_in"])
    email = d["column_classifications"].get("email")
    assert email and "PII" in email["tags"]
    denial = next(x for x in d["decisions"] if not x["allow"])
    assert denial["policy_id"] == "export-governance" and "Alternatives" in denial["message"]
    by_name = client.get("/api/v1/datasets/analysis.csv", headers=H).json()
    assert by_name["key"] == "file::analysis.csv"
    r = client.get("/api/v1/datasets/nope.csv", headers=H)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_lineage_walks_are_depth_limited(client: TestClient) -> None:
    one = client.get("/api/v1/lineage/upstream?dataset=file::/tmp/export.csv&depth=1",
                     headers=H).json()
    assert [d["name"] for d in one["datasets"]] == ["analysis.csv"]
    deep = client.get("/api/v1/lineage/upstream?dataset=file::/tmp/export.csv&depth=10",
                      headers=H).json()
    names = {d["name"] for d in deep["datasets"]}
    assert {"analysis.csv", "customers.csv", "sales.csv"} <= names and len(names) > 3
    down = client.get("/api/v1/lineage/downstream?dataset=customers.csv&depth=1",
                      headers=H).json()
    assert [d["name"] for d in down["datasets"]] == ["analysis.csv"]
    impact = client.get("/api/v1/lineage/impact?dataset=customers.csv", headers=H).json()
    assert impact["count"] >= 3 and "PROPRIETARY" in impact["by_tier"]
    too_deep = client.get("/api/v1/lineage/upstream?dataset=analysis.csv&depth=51", headers=H)
    assert too_deep.status_code == 422 and too_deep.json()["error"]["field"] == "depth"


def test_column_level_lineage(client: TestClient) -> None:
    r = client.get("/api/v1/lineage/columns?dataset=regional_summary.csv&column=total_revenue",
                   headers=H).json()
    assert r["upstream"], r
    assert all({"dataset", "column", "transformation"} <= set(u) for u in r["upstream"])
    assert any(u["dataset"] == "file::analysis.csv" for u in r["upstream"])
    missing = client.get("/api/v1/lineage/columns?dataset=regional_summary.csv&column=nope",
                         headers=H)
    assert missing.status_code == 404


def test_graph_view_data(client: TestClient) -> None:
    whole = client.get("/api/v1/lineage/graph", headers=H).json()
    assert len(whole["nodes"]) == 8 and len(whole["edges"]) >= 7
    around = client.get("/api/v1/lineage/graph?dataset=sales.csv&depth=1", headers=H).json()
    assert {n["name"] for n in around["nodes"]} >= {"sales.csv", "analysis.csv"}
    assert all(e["source"] in {n["key"] for n in around["nodes"]} for e in around["edges"])


def test_check_allows_and_denies_with_the_seed_message(client: TestClient) -> None:
    deny = client.post("/api/v1/check", headers=H, json={
        "action": "export", "sources": ["analysis.csv"],
        "destination": {"namespace": "file", "name": "/tmp/export.csv"}, "user": "bob"}).json()
    assert deny["allow"] is False
    assert "Governance Policy Violation" in deny["message"] and "PII" in deny["message"]
    allow = client.post("/api/v1/check", headers=H, json={
        "kind": "read", "sources": ["file::sales.csv"], "user": "bob"}).json()
    assert allow["allow"] is True
    records = client.get("/api/v1/audit/records?action=gate.check", headers=H).json()
    assert [r["actor"] for r in records["records"]] == ["bob", "bob"]
    bad = client.post("/api/v1/check", headers=H, json={"kind": "teleport",
                                                        "sources": ["x::y"]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "kind"
    # a root asset has no inputs: the gate still answers (and audits) for its destination
    root = client.post("/api/v1/check", headers=H, json={
        "kind": "transform", "sources": [], "destination": "file::/governed/workspace/r.csv"})
    assert root.status_code == 200 and root.json()["allow"] is True
    wrong = client.post("/api/v1/check", headers=H, json={"kind": "read", "sources": "x"})
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "sources"


def test_feedback_feeds_the_false_positive_rate(client: TestClient) -> None:
    steward = make_key(client, "steward", "stella")
    denial = client.get("/api/v1/decisions?allow=false", headers=H).json()["decisions"][0]
    r = client.post(f"/api/v1/decisions/{denial['decision_id']}/feedback",
                    json={"verdict": "false_positive", "note": "export was anonymised"},
                    headers=auth(steward))
    assert r.status_code == 201 and r.json()["feedback"]["steward"] == "stella"
    assert client.post("/api/v1/decisions/does-not-exist/feedback",
                       json={"verdict": "correct"}, headers=auth(steward)).status_code == 404
    m = client.get("/api/v1/metrics", headers=H).json()
    assert m["decisions"]["total"] == 6 and m["decisions"]["denied"] == 1
    assert m["violation_rate"] == pytest.approx(1 / 6, abs=1e-6)
    assert m["false_positive_rate"] == 1.0 and m["review_rate"] == 1.0
    assert m["exception_rate"] == 0.0
    assert m["coverage"]["dataset_coverage"] == 1.0
    assert 0 < m["coverage"]["column_coverage"] <= 1
    assert m["lineage_completeness"]["dataset_lineage_rate"] == 1.0
    assert m["layer_usage"] and m["tiers"]["PROPRIETARY"] >= 3
    listed = client.get("/api/v1/decisions?allow=false", headers=H).json()["decisions"][0]
    assert listed["feedback"]["verdict"] == "false_positive"


def test_override_is_audited_and_propagates(client: TestClient) -> None:
    steward = make_key(client, "steward", "stella")
    r = client.post("/api/v1/overrides", headers=auth(steward), json={
        "dataset": "sales.csv", "tier": "PROPRIETARY", "tags": ["TRADE_SECRET"],
        "reason": "negotiated prices"})
    assert r.status_code == 200, r.text
    assert r.json()["classification"]["tier"] == "PROPRIETARY"
    summary = client.get("/api/v1/datasets/regional_summary.csv", headers=H).json()
    assert any("TRADE_SECRET" in t for t in summary["tags"])
    record = client.get("/api/v1/audit/records?action=classification.override",
                        headers=H).json()["records"][0]
    assert record["actor"] == "stella" and record["reason"] == "negotiated prices"
    bad = client.post("/api/v1/overrides", headers=auth(steward), json={
        "dataset": "sales.csv", "tier": "TOP_SECRET", "reason": "x" * 5})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "tier"


def test_api_docs_are_served_without_a_cdn(sqlite_client: TestClient) -> None:
    page = sqlite_client.get("/docs")
    assert page.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text and "cdn." not in page.text
    bundle = sqlite_client.get("/docs-assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert sqlite_client.get("/openapi.json").json()["paths"]["/api/v1/lineage"]
