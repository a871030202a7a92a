"""`make bench`'s harness: it runs the benchmark scripts, collects their rows into one table and
``latest.json``, and shows a benchmark that cannot run as "not run: <reason>" instead of
crashing. No timing is asserted here — only that the machinery works and the JSON is sound."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import run as harness
from common import RESULTS_ENV, Check, Row

ROW_KEYS = {"metric", "unit", "ours", "baseline", "baseline_label", "ratio", "ratio_label",
            "checks", "target", "pass", "status", "reason", "note", "bench"}


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.mark.postgres
@pytest.mark.slow
def test_tiny_run_writes_a_well_formed_latest_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--tiny", "--out", str(out),
         "--only", "classify,propagation,gate,lineage_query,airflow"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    latest = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    assert latest["mode"] == "tiny"
    statuses = {b["name"]: b["status"] for b in latest["benches"]}
    assert statuses == {"classify": "ok", "propagation": "ok", "gate": "ok",
                        "lineage_query": "ok", "airflow": "not run"}
    rows = latest["rows"]
    assert {r["bench"] for r in rows} == set(statuses)
    for row in rows:
        assert ROW_KEYS <= row.keys(), row
        assert row["status"] in ("ok", "not run")
        assert row["pass"] in (True, False, None)
        if row["status"] == "ok":
            assert isinstance(row["ours"], (int, float)), row
        else:
            assert row["reason"] and row["ours"] is None and row["pass"] is None
        Row.from_dict(row)  # every row reads back
    assert any(r["metric"].startswith("incremental propagation") for r in rows)
    assert any(r["metric"].startswith("lineage query") for r in rows)
    summary = latest["summary"]
    assert summary["rows"] == len(rows)
    assert summary["pass"] + summary["fail"] + summary["not_run"] + summary["no_target"] == len(rows)
    # the table names every metric, including the one that did not run
    assert "not run: no --tiny mode" in done.stdout
    # each bench wrote its own results and log next to latest.json
    assert (out / "propagation.json").is_file() and (out / "logs" / "gate.log").is_file()


def test_benches_that_cannot_run_become_not_run_rows(tmp_path: Path, monkeypatch) -> None:
    out, logs = tmp_path / "out", tmp_path / "logs"
    out.mkdir()
    logs.mkdir()
    monkeypatch.setenv(RESULTS_ENV, str(out))
    crash = _script(tmp_path, "crash", "raise SystemExit('database exploded')\n")
    slow = _script(tmp_path, "slow", "import time; time.sleep(30)\n")
    rowless = _script(tmp_path, "rowless", f"""
        import json, os, pathlib
        path = pathlib.Path(os.environ[{RESULTS_ENV!r}]) / "rowless.json"
        path.write_text(json.dumps({{"rate": 12}}))
    """)
    cases = [
        (harness.Bench("absent", str(tmp_path / "absent.py"), ("m1", "m2"), tiny=()),
         "does not exist yet"),
        (harness.Bench("crash", str(crash), ("m",), tiny=()), "exit 1: database exploded"),
        (harness.Bench("slow", str(slow), ("m",), tiny=(), timeout_s=0.5), "timed out"),
        (harness.Bench("rowless", str(rowless), ("m",), tiny=()), "no 'rows' list"),
        (harness.Bench("quickless", str(crash), ("m",), quick=None, skip_reason="too slow"),
         "skipped in --quick: too slow"),
        (harness.Bench("pg", str(crash), ("m",), tiny=(), needs_postgres=True),
         "PostgreSQL unreachable: refused"),
    ]
    for bench, reason in cases:
        mode = "quick" if bench.name == "quickless" else "tiny"
        outcome = harness.run_bench(bench, mode, out, logs, postgres="refused")
        assert outcome.status == "not run", bench.name
        assert reason in outcome.reason, (bench.name, outcome.reason)
        assert [r.metric for r in outcome.rows] == list(bench.metrics)
        assert all(r.status == "not run" and r.passed is None for r in outcome.rows)


def test_rows_from_a_script_are_collected(tmp_path: Path, monkeypatch) -> None:
    out, logs = tmp_path / "out", tmp_path / "logs"
    out.mkdir()
    logs.mkdir()
    monkeypatch.setenv(RESULTS_ENV, str(out))
    good = _script(tmp_path, "good", f"""
        import sys
        sys.path.insert(0, {str(BENCHMARKS)!r})
        from common import Check, Row, write_results
        write_results("good", [
            Row("speed", "/s", 30000, baseline=20000, checks=(Check("ours", ">=", 25000),)),
            Row("latency", "ms", 7.0, checks=(Check("ours", "<", 5),)),
        ])
    """)
    outcome = harness.run_bench(harness.Bench("good", str(good), ("speed",), tiny=()), "tiny",
                                out, logs, postgres="")
    assert outcome.status == "ok"
    speed, latency = outcome.rows
    assert (speed.ratio, speed.passed, latency.passed) == (1.5, True, False)
    assert {r.bench for r in outcome.rows} == {"good"}
    counts = harness.summary(outcome.rows)
    assert (counts["pass"], counts["fail"], counts["not_run"]) == (1, 1, 0)


def test_adapters_turn_older_result_files_into_rows() -> None:
    airflow = harness.adapt_airflow({
        "hooks": {"rows": {"per task, total": {"p50_ms": 2.4, "p95_ms": 2.9}}},
        "dag_test": {"added_per_task_ms": 4.3, "tasks": 5, "without_lacuna": {"p50_ms": 210}},
    })
    assert [(r.ours, r.passed) for r in airflow] == [(2.9, True), (4.3, True)]
    assert airflow[1].baseline == 42.0
    accuracy = harness.adapt_accuracy({"latency_ms_per_column": {
        "l2_batched": 12.5, "raw_encode_same_strings": 11.0, "cascade": 16.1}})
    assert accuracy[0].passed is False and round(accuracy[0].ratio or 0, 3) == 1.136
    assert accuracy[1].status == "not run"
    measured = harness.adapt_accuracy({
        "cascade_under_1ms_share": 0.975,
        "cascade_under_1ms": {"first_sight_share": 0.975, "seen_before_share": 1.0,
                              "first_sight_p50_ms": 0.03},
    })
    assert [(r.ours, r.passed) for r in measured] == [(97.5, False)]
    assert "seen before 100.0 %" in measured[0].note


def test_row_checks_and_round_trip() -> None:
    row = Row("p99", "ms", 40.0, baseline=4000.0, ratio=100.0,
              checks=(Check("ours", "<", 50), Check("ratio", ">=", 100)))
    assert row.passed is True and row.target == "< 50 ms; ratio >= 100x"
    assert Row.from_dict(json.loads(json.dumps(row.to_dict()))) == row
    assert Row("p99", "ms", 60.0, checks=(Check("ours", "<", 50),)).passed is False
    assert Row("info", "ms", 1.0).passed is None
    assert Row.not_run("x", "PostgreSQL down").to_dict()["pass"] is None
    with pytest.raises(ValueError):
        Row.from_dict({"metric": "x", "status": "maybe"})
