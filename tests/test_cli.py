"""The ``lacuna`` command line, run as a user would: separate processes sharing one store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "example_project" / "openlineage" / "pipeline.ndjson"


@pytest.fixture()
def run(tmp_path):
    env = {**os.environ, "LACUNA_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
           "LACUNA_POLICY_DIR": str(ROOT / "policies"), "COLUMNS": "200",
           "LACUNA_FILE_ROOTS": str(ROOT)}

    def _run(*args: str, ok: bool | None = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "lacuna_orchestration.cli", *args], check=False,
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        if ok is True:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        elif ok is False:
            assert proc.returncode != 0, proc.stdout + proc.stderr
        return proc

    return _run


def test_classify_json(run) -> None:
    out = json.loads(run("classify", "customerEmail", "cust_email_addr", "E-Mail", "region",
                         "--json").stdout)
    assert [r["column"] for r in out] == ["customerEmail", "cust_email_addr", "E-Mail", "region"]
    for row in out[:3]:
        assert row["tier"] == "PROPRIETARY" and "PII" in row["tags"]
        assert row["layer"] == "heuristic" and row["evidence"][0]["source"] == "email"
        assert set(row) == {"column", "tier", "tags", "confidence", "layer", "evidence"}
    assert out[3]["tier"] in ("PUBLIC", "INTERNAL")


def test_classify_schema_file(run, tmp_path) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text("name: patients\nfields:\n  - {name: mrn, type: text}\n"
                      "  - {name: diagnosis_code}\n")
    table = run("classify", "--schema", str(schema)).stdout
    assert "mrn" in table and "PHI" in table and "PROPRIETARY" in table


def test_ingest_then_lineage_across_processes(run) -> None:
    out = run("ingest", str(PIPELINE)).stdout
    assert "ingested 12 event(s), refused 0, denied 2 operation(s)" in out
    assert "Governance Policy Violation" in out
    tree = run("lineage", "tree", "analysis.csv").stdout
    assert tree.splitlines()[0].startswith("analysis.csv (PROPRIETARY, tags: FINANCIAL, GDPR, PII)")
    up = json.loads(run("lineage", "upstream", "analysis.csv", "--json").stdout)
    assert {d["name"] for d in up} >= {"customers.csv", "sales.csv", "raw.transactions"}
    assert "impacts" in run("lineage", "impact", "customers.csv").stdout
    down = json.loads(run("lineage", "downstream", "customers.csv", "--depth", "1",
                          "--json").stdout)
    assert [d["name"] for d in down] == ["analysis.csv"]
    cols = json.loads(run("lineage", "upstream", "regional_summary.csv", "--column",
                          "total_revenue", "--json").stdout)
    assert cols == [{"dataset": "file::analysis.csv", "column": "amount",
                     "transformation": "IDENTITY"}]
    assert "verified" in run("audit", "verify").stdout
    assert "lineage.ingest" in run("audit", "tail", "-n", "5").stdout
    assert "DENY" in run("decisions", "--denied").stdout


def test_check_exit_codes(run) -> None:
    run("ingest", str(PIPELINE))
    denied = run("check", "--action", "export", "--source", "analysis.csv",
                 "--destination", "file::/tmp/out.csv", ok=None)
    assert denied.returncode == 3 and "Governance Policy Violation" in denied.stdout
    allowed = run("check", "--action", "export", "--source", "analysis.csv",
                  "--destination", "file::/governed/workspace/out.csv", "--json")
    assert json.loads(allowed.stdout)["allow"] is True


def test_errors_are_one_line(run, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"eventType": "START"')
    proc = run("ingest", str(bad), ok=False)
    assert "not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("lineage", "tree", "nothing-here", ok=False)
    assert proc.stderr.strip().startswith("lacuna: error:") and len(proc.stderr.splitlines()) == 1
    proc = run("check", "--action", "teleport", "--source", "a", ok=False)
    assert "valid kinds are" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("ingest", str(tmp_path / "missing.json"), ok=False)
    assert "no such file" in proc.stderr


def test_unreachable_database(run, tmp_path) -> None:
    env_proc = subprocess.run(
        [sys.executable, "-m", "lacuna_orchestration.cli", "audit", "verify"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
        env={**os.environ, "LACUNA_DATABASE_URL": "postgresql://x@127.0.0.1:1/none"},
    )
    assert env_proc.returncode == 2 and "cannot reach database" in env_proc.stderr
    assert "Traceback" not in env_proc.stderr


def test_policy_test_command(run) -> None:
    out = run("policy", "test").stdout
    assert "passed, 0 failed" in out


def test_every_command_is_registered() -> None:
    from lacuna_orchestration.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"classify", "ingest", "lineage", "check", "audit", "decisions", "policy", "serve",
            "dev", "report", "exception", "keys", "archive", "migrate", "dbt"} <= set(sub.choices)
