"""`make demo` (example_project/demo.py): the whole story in a subprocess, and the one-line
stop when a step fails."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from platform_helpers import DEMO, REPO, load_demo


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160",
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    done = subprocess.run([sys.executable, str(DEMO), "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=540, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    svg = out / "lineage.svg"
    assert svg.is_file() and ET.parse(svg).getroot().tag.endswith("svg")
    assert (out / "iso27001-a94.html").is_file() and (out / "iso27001-a94.json").is_file()
    assert "export_customer_transactions: failed (blocked by export-governance)" in output
    assert "Cannot export PII data to unmanaged location" in output
    assert "Steward: marketing-governance@example.com" in output
    assert "audit chain 'default' verified" in output
    assert str(svg) in output and "Traceback" not in output


def test_a_failing_step_stops_the_demo_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    demo = load_demo()
    story = demo.load_platform()

    def broken(run: Any) -> None:
        raise RuntimeError("warehouse file is locked\n  (second line never shown)")

    def steps() -> Any:
        yield story.Step("Open Lacuna", story._open, "check the store")
        yield story.Step("Dagster: load the raw sources", broken, "run the Dagster example")

    monkeypatch.setattr(story, "steps", steps)
    with pytest.raises(SystemExit) as stopped:
        demo.main(["--out", str(tmp_path / "out")])
    assert stopped.value.code == 1
    output = capsys.readouterr().out
    assert ("demo failed at step 2 'Dagster: load the raw sources': warehouse file is locked"
            in " ".join(output.split()))
    assert "→ run the Dagster example" in output
    assert "second line" not in output and "Traceback" not in output
