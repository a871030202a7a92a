"""The Dagster UI shows Lacuna's tiers: a real `dagster dev`, a real run, a real browser.

The run is launched with `dagster asset materialize` against the same DAGSTER_HOME that
`dagster dev` then serves; headless Debian Chromium (driven by Playwright, never downloaded)
opens the asset page, the tier text must be there, and screenshots land in test-artifacts/.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster_helpers import POLICIES, REPO

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
DAGSTER = Path(sys.executable).parent / "dagster"
WORKSPACE = REPO / "example_project" / "dagster" / "workspace.yaml"
DEFINITIONS = REPO / "example_project" / "dagster" / "definitions.py"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def dagster_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = dict(os.environ)
    env.update({
        "DAGSTER_HOME": str(home),
        "LACUNA_DEMO_OUT": str(tmp_path / "out"),
        "LACUNA_DATABASE_URL": f"sqlite:///{tmp_path / 'lacuna.db'}",
        "LACUNA_POLICY_DIR": str(POLICIES),
        "LACUNA_ENVIRONMENT": "production",
        "DAGSTER_DISABLE_TELEMETRY": "true",
    })
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env


@pytest.fixture()
def dagster_dev(dagster_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Materialize the example through the CLI, then serve the same instance."""
    done = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-f", str(DEFINITIONS),
         "--select", "customers,sales,customer_sales,regional_summary",
         "--config-json", '{"execution": {"config": {"in_process": {}}}}'],
        env=dagster_env, cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    port = _free_port()
    log = (tmp_path / "dagster-dev.log").open("w")
    proc = subprocess.Popen(
        [str(DAGSTER), "dev", "-w", str(WORKSPACE), "-p", str(port), "-h", "127.0.0.1"],
        env=dagster_env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: one SIGTERM stops all its children
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}: "
                            f"{(tmp_path / 'dagster-dev.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("dagster dev did not answer /server_info within 120 s")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _dismiss_popups(page) -> None:  # type: ignore[no-untyped-def]
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()


def test_asset_page_shows_the_lacuna_tier(dagster_dev: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian chromium is required (make browser)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1100},
        )
        try:
            page = browser.new_page()
            page.goto(f"{dagster_dev}/assets/customer_sales", wait_until="networkidle")
            # The materialization's metadata table row "lacuna/tier  PROPRIETARY".
            page.get_by_text("lacuna/tier").first.wait_for(timeout=60_000)
            _dismiss_popups(page)
            body = page.inner_text("body")
            assert "PROPRIETARY" in body
            assert "lacuna/tier" in body
            assert "FINANCIAL, GDPR, PII" in body  # lacuna/tags on the materialization
            page.screenshot(path=str(ARTIFACTS / "dagster-asset-customer_sales.png"),
                            full_page=True)

            page.goto(f"{dagster_dev}/assets/regional_summary", wait_until="networkidle")
            page.get_by_text("lacuna/tier").first.wait_for(timeout=60_000)
            _dismiss_popups(page)
            summary = page.inner_text("body")
            assert "INTERNAL" in summary and "DERIVED_FROM_PII" in summary
            page.screenshot(path=str(ARTIFACTS / "dagster-asset-regional_summary.png"),
                            full_page=True)

            page.goto(f"{dagster_dev}/assets/customer_sales?view=lineage",
                      wait_until="networkidle")
            page.get_by_text("regional_summary").first.wait_for(timeout=60_000)
            _dismiss_popups(page)
            page.get_by_text("Loading…").first.wait_for(state="hidden", timeout=30_000)
            page.get_by_text("Loading...").first.wait_for(state="hidden", timeout=30_000)
            graph = page.inner_text("body")
            # Each node of the lineage graph carries its tier as a kind (annotate_assets).
            assert graph.count("proprietary") >= 2 and graph.count("internal") >= 2, graph
            page.screenshot(path=str(ARTIFACTS / "dagster-lineage-customer_sales.png"))
        finally:
            browser.close()
    assert (ARTIFACTS / "dagster-asset-customer_sales.png").stat().st_size > 10_000
