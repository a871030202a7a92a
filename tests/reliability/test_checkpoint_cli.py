"""``lacuna audit keygen | checkpoint | verify``: signed checkpoints from the command line catch
a truncated tail that the chain alone accepts, also for an auditor holding only the public key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_tamper import Attacker

from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.db import make_engine

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "example_project" / "openlineage" / "pipeline.ndjson"


@pytest.mark.slow
def test_cli_checkpoints_catch_a_truncated_tail(tmp_path: Path, record_result) -> None:
    (tmp_path / "pipeline.ndjson").write_bytes(PIPELINE.read_bytes())
    db = tmp_path / "store.db"
    key = tmp_path / "keys" / "checkpoint.key"
    base_env = {**os.environ, "LACUNA_DATABASE_URL": f"sqlite:///{db}",
                "LACUNA_POLICY_DIR": str(ROOT / "policies"), "COLUMNS": "200",
                "LACUNA_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
                "LACUNA_CHECKPOINT_KEY_FILE": str(key)}

    def lacuna(*args: str, key_file: Path = key) -> subprocess.CompletedProcess[str]:
        env = {**base_env, "LACUNA_CHECKPOINT_KEY_FILE": str(key_file)}
        return subprocess.run([sys.executable, "-m", "lacuna_orchestration.cli", *args],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
                              check=False)

    made = lacuna("audit", "keygen", str(key))
    assert made.returncode == 0 and "ed25519" in made.stdout, made.stderr
    assert lacuna("ingest", "pipeline.ndjson", "--quiet").returncode == 0
    signed = lacuna("audit", "checkpoint", "--json")
    assert signed.returncode == 0, signed.stderr
    checkpoint = json.loads(signed.stdout)
    total = checkpoint["seq"]
    assert total == checkpoint["count"] > 10 and checkpoint["alg"] == "ed25519"
    assert lacuna("audit", "verify").returncode == 0

    engine = make_engine(f"sqlite:///{db}")
    try:
        Attacker(AuditStore(engine)).truncate(total - 3, move_head=True)
    finally:
        engine.dispose()
    for key_file in (key, Path(f"{key}.pub")):  # the operator, then an auditor
        proc = lacuna("audit", "verify", "--json", key_file=key_file)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert report["ok"] is False and report["first_bad_seq"] == total - 2
        assert f"attests {total} records" in report["problem"]
    refused = lacuna("audit", "checkpoint")
    assert refused.returncode == 2 and "truncated" in refused.stderr
    record_result("tamper: CLI checkpoint + verify after truncation", records=total,
                  truncated_to=total - 3, named=total - 2, exit_code=4)
