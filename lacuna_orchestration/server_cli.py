"""The service's commands for ``lacuna``: ``serve``, ``dev``, ``report``, ``exception``,
``keys``, ``archive`` and ``migrate``. ``cli.build_parser`` registers them with
``add_server_parsers(sub)``; each handler returns the exit code.

``serve`` runs the service on the configured store (PostgreSQL in production; migrations
with ``--migrate``); ``dev`` runs it on a local SQLite file with the embedded Rego engine,
creates an admin key on first start and prints the URLs. The other commands work on the store
directly — they are how an operator creates the first keys of a tenant, answers exception
requests without a browser, or produces a report for an auditor.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from lacuna_orchestration.errors import ConfigError, LacunaError

__all__ = ["add_server_parsers"]

SNAPSHOT_ENV = "LACUNA_SERVER_SNAPSHOT"
"""``serve --workers N`` hands the resolved settings to its worker processes here."""


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _print_json(data: Any) -> None:
    _out(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _core(args: argparse.Namespace, **overrides: Any) -> Any:
    from lacuna_orchestration.settings import Settings

    overrides.setdefault("database_url", getattr(args, "database_url", None))
    return Settings.load(getattr(args, "config", None), **overrides)


def _server_settings(args: argparse.Namespace, core: Any, **overrides: Any) -> Any:
    from lacuna_orchestration.server.config import ServerSettings

    return ServerSettings.load(getattr(args, "server_config", None), core=core, **overrides)


def _tenant_governor(args: argparse.Namespace) -> Any:
    """The tenant's governor as the service builds it (tenant-scoped exceptions, RLS)."""
    from lacuna_orchestration.server.tenancy import TenantGovernors

    settings = _server_settings(args, _core(args))
    governors = TenantGovernors(settings)
    return governors, governors.get(args.tenant)


def _audit_cli(gov: Any, action: str, resource: str, reason: str,
               details: dict[str, Any]) -> None:
    from lacuna_orchestration.model import AuditRecord

    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    gov.audit.append_many([AuditRecord(actor=actor, action=action, resource=resource,
                                       reason=reason, via="cli", details=details,
                                       tenant=gov.settings.tenant)])


# -- serve / dev -----------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    core = _core(args)
    settings = _server_settings(args, core, host=args.host, port=args.port,
                                workers=args.workers,
                                migrate_on_start=True if args.migrate else None)
    if not settings.is_postgres:
        sys.stderr.write("lacuna serve: warning: the store is not PostgreSQL "
                         f"({core.database_url}); use `lacuna dev` for local work\n")
    if settings.migrate_on_start and settings.is_postgres:
        from lacuna_orchestration.migrations import upgrade

        upgrade(settings.core, service_role=args.service_role)
    settings = settings.replace(migrate_on_start=False)
    _out(f"Lacuna ingestor on http://{settings.host}:{settings.port} "
         f"({settings.workers} worker(s)); OpenAPI at /docs")
    if settings.workers > 1:
        os.environ[SNAPSHOT_ENV] = settings.model_dump_json()  # for the worker processes
        uvicorn.run("lacuna_orchestration.server_cli:app_from_snapshot", factory=True,
                    host=settings.host, port=settings.port, workers=settings.workers,
                    log_level=args.log_level,
                    timeout_graceful_shutdown=int(settings.shutdown_timeout_s))
        return 0
    from lacuna_orchestration.server.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=args.log_level,
                timeout_graceful_shutdown=int(settings.shutdown_timeout_s))
    return 0


def app_from_snapshot() -> Any:
    """Worker-process factory: the settings ``serve`` resolved, not re-read from files."""
    from lacuna_orchestration.server.app import create_app
    from lacuna_orchestration.server.config import ServerSettings

    snapshot = os.environ.get(SNAPSHOT_ENV)
    if not snapshot:
        raise ConfigError(f"{SNAPSHOT_ENV} is not set; start workers with `lacuna serve`")
    return create_app(ServerSettings.model_validate_json(snapshot))


def dev_key(state_dir: Path) -> str:
    """The development admin key, created on first use (file mode 600)."""
    path = state_dir / "dev-admin-key"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    from lacuna_orchestration.server.auth import generate_key

    state_dir.mkdir(parents=True, exist_ok=True)
    token = generate_key()[1]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


def dev_settings(args: argparse.Namespace) -> Any:
    state_dir = Path(args.state_dir)
    url = getattr(args, "database_url", None) or f"sqlite:///{state_dir / 'dev.db'}"
    core = _core(args, database_url=url,
                 environment=getattr(args, "environment", None) or "development",
                 policy_backend="embedded")
    key = args.admin_key or os.environ.get("LACUNA_SERVER_BOOTSTRAP_ADMIN_KEY") \
        or dev_key(state_dir)
    return _server_settings(args, core, host=args.host, port=args.port,
                            bootstrap_admin_key=key,
                            archive_dir=str(state_dir / "archive"))


def dev_banner(settings: Any) -> str:
    base = f"http://{settings.host}:{settings.port}"
    key = settings.bootstrap_admin_key
    return "\n".join([
        "Lacuna dev server",
        (f"  store        {settings.core.database_url} (embedded Rego, environment "
         f"{settings.core.environment})"),
        f"  lineage API  {base}/api/v1/lineage   (OpenLineage HttpTransport url: {base})",
        f"  gate         {base}/api/v1/check",
        f"  API docs     {base}/docs",
        f"  lineage view {base}/lineage#key={key}",
        f"  admin key    {key}",
        "  try          curl -s -H 'Authorization: Bearer <key>' " + base + "/api/v1/datasets",
    ])


def cmd_dev(args: argparse.Namespace) -> int:
    import uvicorn

    from lacuna_orchestration.server.app import create_app

    settings = dev_settings(args)
    app = create_app(settings)
    _out(dev_banner(settings))
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
    return 0


# -- report ----------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from lacuna_orchestration.audit.reports import build_for_governor, render_html

    governors, gov = _tenant_governor(args)
    try:
        report = build_for_governor(gov, args.kind, since=args.since, until=args.until)
    finally:
        governors.close()
    text = render_html(report) if args.format == "html" else orjson.dumps(
        report, option=orjson.OPT_INDENT_2).decode()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        _out(f"{report['title']}: written to {args.output}")
    else:
        _out(text)
    return 0 if report["chain"]["verified"] else 4


# -- exceptions ------------------------------------------------------------------------------
def cmd_exception(args: argparse.Namespace) -> int:
    from lacuna_orchestration.server.routers.exceptions import expire_due

    governors, gov = _tenant_governor(args)
    try:
        registry = gov.exceptions
        action = args.exception_command
        if action == "list":
            items = registry.list(status=args.status, now=gov.clock())
            _print_json([e.to_dict() for e in items])
            return 0
        if action == "expire":
            _print_json({"expired": expire_due(gov, f"cli:{os.environ.get('USER', '?')}",
                                               "cli")})
            return 0
        if action == "request":
            exc = registry.request(
                operation_kind=args.operation, sources=tuple(args.source),
                destination=args.destination or "", purpose=args.purpose,
                justification=args.justification, requested_by=args.requested_by,
                conditions=tuple(args.condition), approver=args.approver or "",
                duration_s=int(args.days * 86400) if args.days else None, now=gov.clock(),
            )
            step = "exception.request"
        elif action == "approve":
            if args.days is None:
                raise LacunaError("approve needs --days")
            exc = registry.approve(args.id, args.steward, timedelta(days=args.days),
                                   conditions=args.condition or None, now=gov.clock())
            step = "exception.approve"
        elif action == "deny":
            exc = registry.deny(args.id, args.steward, args.reason, now=gov.clock())
            step = "exception.deny"
        else:
            exc = registry.revoke(args.id, args.steward, args.reason, now=gov.clock())
            step = "exception.revoke"
        _audit_cli(gov, step, exc.id, getattr(args, "reason", None) or exc.justification,
                   exc.to_dict())
        _print_json(exc.to_dict())
        return 0
    finally:
        governors.close()


# -- keys ------------------------------------------------------------------------------------
def cmd_keys(args: argparse.Namespace) -> int:
    from lacuna_orchestration.server.auth import ApiKeyStore
    from lacuna_orchestration.server.database import system_engine
    from lacuna_orchestration.server.tables import ensure_server_schema

    core = _core(args)
    engine = system_engine(core)
    try:
        ensure_server_schema(engine)
        keys = ApiKeyStore(engine, cache_s=0)
        if args.keys_command == "list":
            _print_json([k.to_dict() for k in keys.list(args.tenant)])
            return 0
        if args.keys_command == "generate":
            from lacuna_orchestration.server.auth import generate_key

            _out(generate_key()[1])
            return 0
        governors, gov = _tenant_governor(args) if args.keys_command == "create" else (None,
                                                                                       None)
        try:
            if args.keys_command == "create":
                token, info = keys.create(tenant=args.tenant, role=args.role, name=args.name,
                                          created_by=f"cli:{os.environ.get('USER', '?')}")
                _audit_cli(gov, "apikey.create", info.key_id,
                           f"{info.role.value} key {info.name!r}", info.to_dict())
                _print_json({"key": token, **info.to_dict()})
                sys.stderr.write("store the key now: it is not shown again\n")
                return 0
            info = keys.revoke(args.key_id)
            governors, gov = _tenant_governor(argparse.Namespace(**{**vars(args),
                                                                    "tenant": info.tenant}))
            _audit_cli(gov, "apikey.revoke", info.key_id, f"revoked {info.name!r}",
                       info.to_dict())
            _print_json(info.to_dict())
            return 0
        finally:
            if governors is not None:
                governors.close()
    finally:
        engine.dispose()


# -- archive ---------------------------------------------------------------------------------
def cmd_archive(args: argparse.Namespace) -> int:
    from lacuna_orchestration.audit.retention import archive_records, verify_continuity

    governors, gov = _tenant_governor(args)
    try:
        directory = args.dir or _server_settings(args, gov.settings).archive_dir
        if args.archive_command == "create":
            result = archive_records(gov.audit, directory,
                                     older_than=timedelta(days=args.older_than_days))
            if result.path is not None:
                _audit_cli(gov, "audit.archive", result.path.name,
                           f"archived {result.count} record(s) older than {result.cutoff}",
                           result.to_dict() | {"path": result.path.name})
            _print_json(result.to_dict())
        check = verify_continuity(directory, args.tenant, gov.audit)
        _print_json(check.to_dict())
        return 0 if check.ok else 4
    finally:
        governors.close()


# -- migrate ---------------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    from lacuna_orchestration import migrations

    core = _core(args)
    if args.migrate_command == "upgrade":
        migrations.upgrade(core, args.revision or "head", service_role=args.service_role)
    elif args.migrate_command == "downgrade":
        migrations.downgrade(core, args.revision or "base", service_role=args.service_role)
    _out(f"revision: {migrations.current(core) or '(none)'}")
    return 0


# -- parsers ---------------------------------------------------------------------------------
def _tenant_arg(p: argparse.ArgumentParser, default: str | None = "default") -> None:
    p.add_argument("--tenant", default=default,
                   help="tenant" + (f" (default: {default})" if default else " (default: all)"))


def _leaf(sub: Any, name: str, *, tenant_default: str | None = "default",
          help: str | None = None) -> argparse.ArgumentParser:
    """A sub-subcommand with the options every store command takes."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    _tenant_arg(p, tenant_default)
    p.add_argument("--server-config", help="server settings YAML")
    return p


def add_server_parsers(sub: Any) -> None:
    """Add the service's subcommands to ``lacuna``'s subparsers."""
    p = sub.add_parser("serve", help="run the ingestor service (PostgreSQL)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="uvicorn worker processes")
    p.add_argument("--migrate", action="store_true", help="run migrations first")
    p.add_argument("--service-role", help="database role to grant the service's rights to")
    p.add_argument("--server-config", help="server settings YAML (default: "
                   "$LACUNA_SERVER_CONFIG or ./lacuna-server.yaml)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("dev", help="run the service locally on SQLite, print the URLs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--state-dir", default=".lacuna", help="where dev.db and the key live")
    p.add_argument("--admin-key", help="use this admin key instead of the generated one")
    p.add_argument("--environment", help="the environment events are decided in "
                   "(default: development; e.g. production to try production policies)")
    p.add_argument("--server-config")
    p.add_argument("--log-level", default="info")
    p.set_defaults(handler=cmd_dev)

    from lacuna_orchestration.audit.reports import REPORT_KINDS

    p = sub.add_parser("report", help="compliance report for a period (JSON or HTML)")
    p.add_argument("kind", choices=sorted(REPORT_KINDS))
    p.add_argument("--since", help="ISO 8601 start (inclusive)")
    p.add_argument("--until", help="ISO 8601 end (exclusive; default now)")
    p.add_argument("--format", choices=["json", "html"], default="json")
    p.add_argument("-o", "--output", help="write to this file")
    p.add_argument("--server-config")
    _tenant_arg(p)
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("exception", help="request, decide and list policy exceptions")
    esub = p.add_subparsers(dest="exception_command", required=True)
    e = _leaf(esub, "request")
    e.add_argument("--operation", default="export")
    e.add_argument("--source", action="append", required=True)
    e.add_argument("--destination")
    e.add_argument("--purpose", required=True)
    e.add_argument("--justification", required=True)
    e.add_argument("--requested-by", required=True)
    e.add_argument("--approver")
    e.add_argument("--days", type=float, help="how long the exception should last")
    e.add_argument("--condition", action="append", default=[])
    for verb in ("approve", "deny", "revoke"):
        e = _leaf(esub, verb)
        e.add_argument("id")
        e.add_argument("--steward", required=True)
        if verb == "approve":
            e.add_argument("--days", type=float)
            e.add_argument("--condition", action="append", default=[])
        else:
            e.add_argument("--reason", required=True)
    e = _leaf(esub, "list")
    e.add_argument("--status")
    _leaf(esub, "expire")
    p.set_defaults(handler=cmd_exception)

    p = sub.add_parser("keys", help="manage API keys (directly in the store)")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    k = _leaf(ksub, "create")
    k.add_argument("--role", required=True, choices=["producer", "steward", "auditor", "admin"])
    k.add_argument("--name", required=True)
    _leaf(ksub, "revoke").add_argument("key_id")
    _leaf(ksub, "list", tenant_default=None)
    _leaf(ksub, "generate", help="print a fresh key (for LACUNA_SERVER_BOOTSTRAP_ADMIN_KEY)")
    p.set_defaults(handler=cmd_keys)

    p = sub.add_parser("archive", help="archive old audit records / verify archives")
    asub = p.add_subparsers(dest="archive_command", required=True)
    a = _leaf(asub, "create")
    a.add_argument("--older-than-days", type=float, required=True)
    a.add_argument("--dir", help="archive directory (default: server setting archive_dir)")
    _leaf(asub, "verify").add_argument("--dir", help="archive directory")
    p.set_defaults(handler=cmd_archive)

    p = sub.add_parser("migrate", help="database migrations (Alembic)")
    msub = p.add_subparsers(dest="migrate_command", required=True)
    for verb in ("upgrade", "downgrade"):
        m = msub.add_parser(verb)
        m.add_argument("--revision")
        m.add_argument("--service-role")
    msub.add_parser("current")
    p.set_defaults(handler=cmd_migrate, service_role=None, revision=None)
