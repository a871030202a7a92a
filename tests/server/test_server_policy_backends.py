"""Policy backends behind the service: OPA's REST Data API (against the policy tests'
conformance server), fail-closed when OPA is away, and bundle reload without restart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fastapi.testclient import TestClient
from policy_opa_server import ConformanceServer
from server_helpers import ADMIN_KEY, POLICIES, app_for, auth, pipeline_lines, server_settings

H = auth(ADMIN_KEY)
EXPORT = {"kind": "export", "sources": ["file::analysis.csv"],
          "destination": "file::/tmp/export.csv", "purpose": "reporting"}


def _load_pipeline(client: TestClient) -> None:
    for line in pipeline_lines():
        assert client.post("/api/v1/lineage", content=line,
                           headers=H | {"Content-Type": "application/json"}).status_code == 201


def test_opa_rest_backend_gives_the_embedded_decisions(tmp_path: Path) -> None:
    with ConformanceServer(POLICIES) as opa:
        opa_settings = server_settings(f"sqlite:///{tmp_path / 'opa.db'}", tmp=tmp_path,
                                       core={"policy_backend": "opa", "opa_url": opa.url})
        embedded = server_settings(f"sqlite:///{tmp_path / 'emb.db'}", tmp=tmp_path)
        answers = []
        for settings in (opa_settings, embedded):
            with TestClient(app_for(settings)) as client:
                _load_pipeline(client)
                answers.append(client.post("/api/v1/check", json=EXPORT, headers=H).json())
                policy = client.get("/api/v1/policy", headers=H).json()
                assert policy["backend"] == settings.core.policy_backend
        assert opa.requests > 0
    via_opa, in_process = answers
    assert via_opa["allow"] is False and in_process["allow"] is False
    for field in ("policy_id", "policy_version", "reasons", "alternatives", "steward"):
        assert via_opa["decision"][field] == in_process["decision"][field], field
    assert via_opa["decision"]["bundle_revision"].startswith("opa:")


def test_opa_unreachable_fails_closed(tmp_path: Path) -> None:
    with ConformanceServer(POLICIES) as opa:
        url = opa.url
    settings = server_settings(f"sqlite:///{tmp_path / 'opa.db'}", tmp=tmp_path,
                               core={"policy_backend": "opa", "opa_url": url,
                                     "opa_timeout_s": 0.5})
    with TestClient(app_for(settings)) as client:
        r = client.post("/api/v1/check", headers=H,
                        json={"kind": "read", "sources": ["file::sales.csv"]})
        assert r.status_code == 200
        decision = r.json()["decision"]
        assert decision["allow"] is False and decision["error"]
        assert decision["policy_id"] == "lacuna.fail-closed"


def test_policy_bundle_reloads_without_restart(tmp_path: Path) -> None:
    bundle = tmp_path / "policies"
    shutil.copytree(POLICIES, bundle)
    settings = server_settings(f"sqlite:///{tmp_path / 'l.db'}", tmp=tmp_path,
                               core={"policy_dir": str(bundle)})
    with TestClient(app_for(settings)) as client:
        _load_pipeline(client)
        assert client.post("/api/v1/check", json=EXPORT, headers=H).json()["allow"] is False
        data = json.loads((bundle / "data.json").read_text())
        data["lacuna"]["config"]["locations"]["governed_prefixes"].append("file:///tmp/")
        data["lacuna"]["config"]["enabled_policies"] = ["export_governance"]
        data["lacuna"]["config"]["disabled_policies"] = [
            "scratch_space", "purpose_limitation", "marketing_domain"]
        (bundle / "data.json").write_text(json.dumps(data))
        r = client.post("/api/v1/policy/reload", headers=H).json()
        assert r["changed"] is True
        after = client.post("/api/v1/check", json=EXPORT, headers=H).json()
        assert after["allow"] is True, after["message"]
        assert after["decision"]["bundle_revision"] == r["after"]
        reloads = client.get("/api/v1/audit/records?action=policy.reload", headers=H).json()
        assert len(reloads["records"]) == 1
