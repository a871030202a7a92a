"""Where the reliability tests keep what they measured: ``test-artifacts/reliability.json``.

Each scenario keeps its latest numbers, the test that produced them and when; a partial run
updates only the scenarios it ran. ``report.py`` turns the file into ``docs/reliability.md``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("LACUNA_RELIABILITY_RESULTS", ROOT / "test-artifacts" / "reliability.json"))


def load(path: Path = RESULTS) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {"scenarios": {}}
    return data if isinstance(data, dict) and "scenarios" in data else {"scenarios": {}}


class ResultBook:
    """Numbers measured during one pytest session, merged into the results file at its end."""

    def __init__(self, path: Path = RESULTS) -> None:
        self.path = path
        self.fresh: dict[str, dict[str, Any]] = {}

    def add(self, scenario: str, test: str, numbers: dict[str, Any]) -> None:
        entry = self.fresh.setdefault(
            scenario,
            {"test": test, "measured_at": datetime.now(UTC).isoformat(timespec="seconds")},
        )
        # One scenario may be measured by several parametrised tests (SQLite and PostgreSQL):
        # keep them side by side under the test's parameter id.
        entry.setdefault("runs", {})[test] = numbers

    def save(self) -> None:
        if not self.fresh:
            return
        data = load(self.path)
        data["scenarios"].update(self.fresh)
        data["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        tmp.replace(self.path)
