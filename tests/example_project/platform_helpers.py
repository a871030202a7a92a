"""Load the platform example the way ``make demo`` does (``example_project/platform`` is not a
regular package: see ``demo.load_platform``). Named ``platform_helpers`` so it never shadows
anything."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
