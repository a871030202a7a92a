"""Load the platform example the way ``make demo`` does (``example_project/platform`` is not a
regular package: see ``demo.load_platform``). Named ``platform_helpers`` so it never shadows
anything."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "example_project" / "demo.py"


def load_demo() -> ModuleType:
    name = "lacuna_platform_demo_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DEMO)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def load_story() -> ModuleType:
    story: ModuleType = load_demo().load_platform()
    return story


PARTNER_EXPORT = "/srv/partner-share/Downloads/customer_transactions.csv"


def assert_partner_export_denied(task: Any, tags: list[str]) -> None:
    """The PII export to the partner share failed before writing, with the seed's full
    message (action, reason, classification, tags, alternatives, policy, steward) as the
    Airflow task's failure text — in process and through the service alike."""
    assert task.state == "failed" and task.written is None
    denial = task.denial
    assert denial is not None and denial.policy_id == "export-governance"
    message = denial.message
    assert re.search(r"Reason: Cannot export [A-Z_, ]*PII[A-Z_, ]* data to unmanaged location "
                     + re.escape("file://" + PARTNER_EXPORT), message)
    for expected in (
        "Action: Export warehouse.main.customer_transactions → " + PARTNER_EXPORT,
        "Classification: PROPRIETARY",
        "Tags: " + ", ".join(tags),
        "Alternatives:\n1. Export an anonymized version",
        "Save to a governed location instead, e.g. file:///governed/workspace/",
        "Policy: export-governance v2.0.0",
        "Steward: data-governance@example.com",
    ):
        assert expected in message
    assert message in task.error  # the task failed with exactly that text

