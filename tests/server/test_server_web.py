"""The lineage web view in headless Chromium (Debian's, driven by Playwright; no browser
download): nodes coloured by tier with their tags, click-through to evidence and decisions.
Screenshots are saved under test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_helpers import (
    ADMIN_KEY,
    ROOT,
    app_for,
    auth,
    pipeline_lines,
    running_server,
    server_settings,
)

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROPRIETARY_BG = "rgb(254, 228, 226)"
INTERNAL_BG = "rgb(254, 240, 199)"

pytestmark = pytest.mark.slow


@pytest.fixture()
def site(tmp_path) -> Iterator[str]:
    app = app_for(server_settings(f"sqlite:///{tmp_path / 'l.db'}", tmp=tmp_path))
    with TestClient(app) as client:
        for line in pipeline_lines():
            assert client.post("/api/v1/lineage", content=line, headers=auth(ADMIN_KEY) | {
                "Content-Type": "application/json"}).status_code == 201
    with running_server(app_for(server_settings(f"sqlite:///{tmp_path / 'l.db'}",
                                                tmp=tmp_path))) as (url, _):
        yield url


@pytest.fixture()
def page(tmp_path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is required for the web view test"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS, viewport={"width": 1500, "height": 900})
        pg = context.new_page()
        pg.errors = []  # type: ignore[attr-defined]
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))  # type: ignore[attr-defined]
        pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))  # type: ignore
        try:
            yield pg
        finally:
            context.close()


def _fill(page, key: str) -> str:
    return page.eval_on_selector(f'g.node[data-key="{key}"] rect',
                                 "r => getComputedStyle(r).fill")


def test_lineage_view_colours_tiers_and_clicks_through(site: str, page) -> None:
    page.goto(f"{site}/lineage#key={ADMIN_KEY}")
    page.wait_for_selector("g.node", timeout=15_000)
    assert page.locator("g.node").count() == 8
    assert page.locator("path.edge").count() >= 7
    assert "#key=" not in page.url  # the key left the address bar
    assert _fill(page, "file::analysis.csv") == PROPRIETARY_BG
    assert _fill(page, "file::sales.csv") == INTERNAL_BG
    analysis = page.locator('g.node[data-key="file::analysis.csv"]')
    assert analysis.get_attribute("data-tier") == "PROPRIETARY"
    assert "PII" in analysis.locator("text.tags").text_content()

    analysis.click()
    page.wait_for_selector("#dataset-name")
    assert page.text_content("#dataset-name") == "analysis.csv"
    assert "PROPRIETARY" in page.text_content("#classification")
    assert "PII" in page.text_content("#classification")
    assert page.locator("#panel table").first.locator("tbody tr").count() >= 1  # evidence
    decisions = page.text_content("#decisions")
    assert "DENY" in decisions and "export-governance" in decisions
    assert "Governance Policy Violation" in page.text_content("#decisions pre")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lineage.png"), full_page=True)

    page.click('a.dataset-link[data-key="file::customers.csv"]')
    page.wait_for_selector("#dataset-name:text-is('customers.csv')")
    assert page.locator('g.node.selected').get_attribute("data-key") == "file::customers.csv"
    assert page.errors == []  # type: ignore[attr-defined]


def test_dataset_page_focuses_and_login_is_asked(site: str, page) -> None:
    page.goto(f"{site}/lineage/sales.csv#key={ADMIN_KEY}")
    # (selectors, not wait_for_function: the page's CSP forbids eval, as it should)
    page.wait_for_selector("#dataset-name:text-is('sales.csv')", timeout=15_000)
    keys = {page.locator("g.node").nth(i).get_attribute("data-key")
            for i in range(page.locator("g.node").count())}
    assert "file::sales.csv" in keys and "file::customers.csv" not in keys  # depth 3 around
    assert page.locator('g.node.selected').get_attribute("data-key") == "file::sales.csv"
    page.screenshot(path=str(ARTIFACTS / "lineage-sales.png"), full_page=True)

    page.evaluate("sessionStorage.clear()")
    page.goto(f"{site}/lineage")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#api-key", ADMIN_KEY)
    page.click("#login-form button")
    page.wait_for_selector("g.node")
    assert page.errors == []  # type: ignore[attr-defined]
