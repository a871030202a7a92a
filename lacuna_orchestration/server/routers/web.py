"""The lineage web view: one static page (``/lineage``, ``/lineage/<dataset>``) whose script
reads the JSON API with the visitor's API key. The page itself holds no data, so serving it
needs no key; the key stays in the browser's session storage (``#key=`` in a link made by
``lacuna dev`` puts it there and is removed from the address bar at once)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import HTMLResponse, RedirectResponse

__all__ = ["WEB_DIR", "router"]

router = APIRouter(tags=["web"], include_in_schema=False)
WEB_DIR = resources.files("lacuna_orchestration.server") / "web"
_HEADERS = {
    # Only this server's own scripts and API: no inline script, no third party.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _page() -> HTMLResponse:
    return HTMLResponse((WEB_DIR / "lineage.html").read_text(encoding="utf-8"),
                        headers=_HEADERS)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/lineage")


@router.get("/lineage")
def lineage_page() -> HTMLResponse:
    return _page()


@router.get("/lineage/{dataset:path}")
def lineage_dataset_page(dataset: str) -> HTMLResponse:
    return _page()
