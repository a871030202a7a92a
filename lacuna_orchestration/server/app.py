"""The Lacuna ingestor service: ``create_app(settings) -> FastAPI``.

::

    POST /api/v1/lineage            one OpenLineage event (what HttpTransport sends), 201
    POST /api/v1/lineage/batch      NDJSON / JSON array of events
    POST /api/v1/check              the gate
    GET  /api/v1/datasets[/<key>]   catalog with classification and evidence
    GET  /api/v1/lineage/{upstream,downstream,impact,columns,graph}
    GET  /api/v1/decisions          + POST /api/v1/decisions/<id>/feedback
    GET  /api/v1/metrics            governance metrics
    POST /api/v1/overrides          steward override (audited)
    *    /api/v1/exceptions         request / approve / deny / revoke / expire
    GET  /api/v1/audit/{records,head,verify}, POST /api/v1/audit/archive
    GET  /api/v1/reports/<kind>     iso27001-a94, iso27001-a124, gdpr, hipaa (JSON or HTML)
    *    /api/v1/keys, /api/v1/policy[/reload], /healthz, /readyz
    GET  /lineage[/<dataset>]       the lineage web view;  /docs  OpenAPI

The store is opened when the app is created (a database that cannot be reached fails here,
with one line); background duties (exception expiry, periodic verification) start with the
lifespan and stop on shutdown, after uvicorn has let in-flight requests finish. Every
acknowledged write was committed before its response, so shutdown loses nothing that a
client was told is stored; closing the governors and the alert queue happens last.

>>> app = create_app(ServerSettings.load(core=Settings.load(
...     database_url="sqlite:///:memory:")))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.alerts import AlertDispatcher, WebhookSink
from lacuna_orchestration.db import check_connection
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.server.auth import ApiKeyStore, Role
from lacuna_orchestration.server.config import ServerSettings
from lacuna_orchestration.server.database import ensure_database_schema, system_engine
from lacuna_orchestration.server.deps import AppState
from lacuna_orchestration.server.errors import install_error_handlers
from lacuna_orchestration.server.maintenance import Duty, Maintenance
from lacuna_orchestration.server.routers import admin, audit, catalog, exceptions, gate, ingest, web
from lacuna_orchestration.server.tables import ensure_server_schema
from lacuna_orchestration.server.tenancy import GovernorFactory, TenantGovernors
from lacuna_orchestration.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)
EXPIRY_PERIOD_S = 3600.0


def _rls_warning(state: AppState) -> None:
    """Row-level security does not bind a superuser or a BYPASSRLS role: say so once."""
    if not state.settings.is_postgres or not state.settings.row_level_security:
        return
    try:
        with state.system_engine.connect() as conn:
            row = conn.execute(text(
                "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
            )).first()
    except SQLAlchemyError:
        return
    if row and row[0]:
        log.warning("the database role bypasses row-level security: tenant isolation rests "
                    "on the tenant filters alone; run the service as a non-superuser role")


def _build_state(settings: ServerSettings, factory: GovernorFactory | None) -> AppState:
    if settings.migrate_on_start and settings.is_postgres:
        from lacuna_orchestration.migrations import upgrade

        upgrade(settings.core)
    ensure_database_schema(settings.core)
    engine = system_engine(settings.core)
    check_connection(engine)
    ensure_server_schema(engine)
    keys = ApiKeyStore(engine, cache_s=settings.key_cache_s)
    if settings.bootstrap_admin_key:
        keys.ensure(settings.bootstrap_admin_key, tenant=settings.bootstrap_tenant,
                    role=Role.ADMIN, name="bootstrap-admin")
    governors = TenantGovernors(settings, factory or Governor)
    alerts = None
    if settings.alert_webhook_url:
        alerts = AlertDispatcher([WebhookSink(settings.alert_webhook_url,
                                              settings.alert_timeout_s)])
    return AppState(settings, keys, governors, engine, alerts)


def _maintenance(state: AppState) -> Maintenance:
    def expire_all() -> None:
        for gov in state.governors.loaded().values():
            exceptions.expire_due(gov)

    def verify_all() -> None:
        for gov in state.governors.loaded().values():
            audit.verify_and_alert(state, gov)

    duties = [Duty("expire-exceptions", EXPIRY_PERIOD_S, expire_all)]
    if state.settings.verify_interval_s:
        duties.append(Duty("verify-audit", state.settings.verify_interval_s, verify_all))
    return Maintenance(duties)


def shutdown(state: AppState) -> None:
    """Stop background duties, deliver queued alerts, close every governor (idempotent)."""
    if state.stopping.is_set():
        return
    state.stopping.set()
    if state.maintenance is not None:
        state.maintenance.stop()
    if state.alerts is not None:
        state.alerts.close(timeout_s=state.settings.shutdown_timeout_s)
    state.governors.close()
    state.system_engine.dispose()
    log.info("lacuna service stopped")


def create_app(settings: ServerSettings | Settings | None = None, *,
               governor_factory: GovernorFactory | None = None) -> FastAPI:
    """The service for ``settings`` (a plain ``Settings`` gets the server defaults);
    ``governor_factory`` builds each tenant's governor (tests inject a clock with it)."""
    if settings is None:
        settings = ServerSettings.load()
    elif isinstance(settings, Settings):
        settings = ServerSettings.load(core=settings)
    state = _build_state(settings, governor_factory)
    _rls_warning(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.maintenance = _maintenance(state)
        state.maintenance.start()
        try:
            yield
        finally:
            shutdown(state)

    app = FastAPI(
        title="Lacuna ingestor",
        version="1.0",
        summary="OpenLineage-compatible governance service: classify, gate, audit.",
        lifespan=lifespan,
        docs_url=None,  # served below from local files: no CDN on air-gapped networks
    )
    app.state.lacuna = state
    install_error_handlers(app)
    for module in (ingest, gate, catalog, exceptions, audit, admin, web):
        app.include_router(module.router)
    app.mount("/lineage-assets", StaticFiles(directory=str(web.WEB_DIR)), name="lineage-assets")
    _serve_api_docs(app)
    return app


def _serve_api_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle`` package when it is installed (the
    ``server`` extra), so the page works where the default CDN is unreachable; FastAPI's
    CDN page otherwise."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        js, css = None, None
    else:
        app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
        js, css = "/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        openapi_url, title = app.openapi_url or "/openapi.json", f"{app.title} — API"
        if js and css:
            return get_swagger_ui_html(openapi_url=openapi_url, title=title,
                                       swagger_js_url=js, swagger_css_url=css)
        return get_swagger_ui_html(openapi_url=openapi_url, title=title)


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the
    environment / config files (``lacuna serve`` exports them before starting workers)."""
    logging.basicConfig(level=logging.INFO)
    return create_app(ServerSettings.load())
