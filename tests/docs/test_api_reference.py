"""``docs/api.md`` is generated from the service's OpenAPI schema (``docs/gen_api.py``); this
fails when a route, parameter or schema changed and the committed page was not regenerated."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "docs" / "gen_api.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_api_reference_is_what_the_schema_generates() -> None:
    generated = _generator().generate()
    committed = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == generated, "docs/api.md is stale: run `python docs/gen_api.py`"


def test_every_route_of_the_app_is_documented_with_its_permission() -> None:
    gen = _generator()
    schema, permissions = gen.build_app_schema()
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for path, operations in schema["paths"].items():
        for method in operations:
            assert f"### `{method.upper()} {path}`" in text
            permission = permissions[(method.upper(), path)]
            if path.startswith("/api/"):
                assert permission, f"{method.upper()} {path} names no permission"
    assert "Permission: `audit:read` (roles: auditor, admin)" in text


def test_check_mode_reports_a_stale_page(tmp_path: Path) -> None:
    stale = tmp_path / "api.md"
    stale.write_text("# old\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(GENERATOR), "--check", "-o", str(stale)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "is stale: run python docs/gen_api.py" in proc.stderr
