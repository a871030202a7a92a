"""Print how many blocks of each documentation page ran and which were skipped, and why."""

from __future__ import annotations

from typing import Any

from docs_blocks import REPORTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("documentation code blocks")
        for line in sorted(REPORTS):
            terminalreporter.write_line(line)
