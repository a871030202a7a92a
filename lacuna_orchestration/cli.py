"""``lacuna`` — the command line.

Every command opens the one configured store (``LACUNA_DATABASE_URL``, default a SQLite file
under ``./.lacuna/``), so ``lacuna ingest`` in one process and ``lacuna lineage tree`` in the next
see the same graph. Errors print one line and exit non-zero; ``--json`` prints machine-readable
output where it makes sense.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from lacuna_orchestration.errors import LacunaError
from lacuna_orchestration.model import Classification, Operation, OperationKind

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

Handler = Callable[[argparse.Namespace], int]


def _governor(args: argparse.Namespace) -> Any:
    from lacuna_orchestration.governor import Governor

    overrides = {"database_url": getattr(args, "database_url", None)}
    return Governor.open(getattr(args, "config", None), **overrides)


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _tier_style(tier: str) -> str:
    return {"PROPRIETARY": "bold red", "INTERNAL": "yellow", "PUBLIC": "green"}.get(tier, "")


def _read_text(path_arg: str, args: argparse.Namespace | None = None) -> bytes:
    """A file named on the command line, only from the working directory or an allowed root
    (``--allow-dir``, ``LACUNA_FILE_ROOTS``): see ``lacuna_orchestration.safepath``."""
    import os

    from lacuna_orchestration.safepath import read_file
    from lacuna_orchestration.settings import Settings

    roots = [Path.cwd(), *(getattr(args, "allow_dir", None) or [])]
    configured = Settings.load(getattr(args, "config", None)).file_roots
    roots += [r for r in configured.split(os.pathsep) if r]
    return read_file(path_arg, roots=roots)


# -- classify ---------------------------------------------------------------------------------
def cmd_classify(args: argparse.Namespace) -> int:
    from lacuna_orchestration.classify.pipeline import CascadeClassifier, ColumnContext
    from lacuna_orchestration.settings import Settings

    contexts: list[ColumnContext] = []
    if args.schema:
        contexts = _schema_contexts(args.schema, args.dataset, args)
    contexts += [ColumnContext(name=n, dataset_name=args.dataset) for n in args.columns]
    if not contexts:
        raise LacunaError("give column names or --schema FILE")
    classifier = CascadeClassifier.from_settings(Settings.load(getattr(args, "config", None)))
    results = classifier.classify_many(contexts)
    rows = [_column_row(c.name, r) for c, r in zip(contexts, results, strict=True)]
    if args.json:
        _print_json(rows)
        return 0
    table = Table(title="Column classification")
    for col in ("column", "tier", "tags", "confidence", "layer", "evidence"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["column"],
            f"[{_tier_style(row['tier'])}]{row['tier']}[/]",
            ", ".join(row["tags"]),
            f"{row['confidence']:.2f}",
            row["layer"],
            "; ".join(f"{e['source']}: {e['detail']}" for e in row["evidence"])[:80],
        )
    console.print(table)
    return 0


def _column_row(name: str, c: Classification) -> dict[str, Any]:
    return {
        "column": name,
        "tier": c.tier.name,
        "tags": c.sorted_tags(),
        "confidence": round(c.confidence, 4),
        "layer": c.layer.value,
        "evidence": [e.to_dict() for e in c.evidence],
    }


def _schema_contexts(path: str, dataset: str | None,
                     args: argparse.Namespace | None = None) -> list[Any]:
    """A schema file: JSON/YAML list of names or of {name, type, description}, or an
    OpenLineage schema facet ({"fields": [...]})."""
    import yaml

    from lacuna_orchestration.classify.pipeline import ColumnContext

    try:
        data = yaml.safe_load(_read_text(path, args))
    except yaml.YAMLError as err:
        raise LacunaError(f"{path}: not valid JSON or YAML: {err}") from None
    if isinstance(data, dict):
        dataset = dataset or data.get("name")
        data = data.get("fields") or data.get("columns") or []
    if not isinstance(data, list):
        raise LacunaError(f"{path}: expected a list of columns or an object with 'fields'")
    out = []
    for item in data:
        if isinstance(item, str):
            out.append(ColumnContext(name=item, dataset_name=dataset))
        elif isinstance(item, dict) and item.get("name"):
            out.append(ColumnContext(name=str(item["name"]), data_type=item.get("type"),
                                     description=item.get("description"),
                                     dataset_name=dataset))
        else:
            raise LacunaError(f"{path}: each column needs a name, got {item!r}")
    return out


# -- ingest -----------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from lacuna_orchestration.lineage.openlineage import parse_events

    events: list[tuple[str, Any]] = []
    for path in args.files:
        events += [(path, e) for e in parse_events(_read_text(path, args))]
    accepted = refused = denied = 0
    problems: list[str] = []
    with _governor(args) as gov, Progress(console=err_console, transient=True,
                                          disable=len(events) < 50) as progress:
        task = progress.add_task("ingesting", total=len(events))
        for i, (path, raw) in enumerate(events, 1):
            try:
                result = gov.ingest(raw, via="cli")
            except LacunaError as err:
                if type(err).__name__ == "StoreError":
                    raise
                refused += 1
                problems.append(f"{path} event {i}: {err}")
            else:
                accepted += 1
                for d in result.denials:
                    denied += 1
                    if not args.quiet:
                        console.print(d.message, markup=False)
                        console.print()
            progress.advance(task)
    for problem in problems:
        err_console.print(f"refused: {problem}", markup=False)
    console.print(f"ingested {accepted} event(s), refused {refused}, denied {denied} operation(s)")
    return 1 if refused else 0


# -- lineage ----------------------------------------------------------------------------------
def cmd_lineage(args: argparse.Namespace) -> int:
    with _governor(args) as gov:
        g = gov.graph
        key = g.resolve(args.dataset)
        if args.column:
            if args.view != "upstream":
                raise LacunaError("--column works with 'lineage upstream'")
            rows = [{"dataset": k, "column": c, "transformation": t}
                    for k, c, t in g.column_upstream(key, args.column)]
            if args.json:
                _print_json(rows)
                return 0
            table = Table(title=f"upstream of {g.node(key).ref.name}.{args.column}")
            for col in ("dataset", "column", "transformation"):
                table.add_column(col)
            for row in rows:
                table.add_row(row["dataset"], row["column"], row["transformation"])
            console.print(table)
            return 0
        if args.view == "tree":
            console.print(g.tree(key, depth=args.depth or 10), markup=False)
            return 0
        if args.view == "impact":
            data = g.impact(key)
            if args.json:
                _print_json(data)
                return 0
            console.print(f"Changing {g.node(key).ref.name} impacts {data['count']} dataset(s)")
            keys = data["datasets"]
        else:
            walk = g.upstream if args.view == "upstream" else g.downstream
            keys = walk(key, args.depth)
            if args.json:
                _print_json([_dataset_row(g.node(k)) for k in keys])
                return 0
        table = Table(title=f"{args.view} of {g.node(key).ref.name}")
        for col in ("dataset", "namespace", "tier", "tags"):
            table.add_column(col)
        for k in keys:
            row = _dataset_row(g.node(k))
            table.add_row(row["name"], row["namespace"],
                          f"[{_tier_style(row['tier'])}]{row['tier']}[/]", ", ".join(row["tags"]))
        console.print(table)
    return 0


def _dataset_row(node: Any) -> dict[str, Any]:
    c = node.effective
    return {"key": node.ref.key, "namespace": node.ref.namespace, "name": node.ref.name,
            "tier": "UNKNOWN" if c.is_unknown else c.tier.name, "tags": c.sorted_tags()}


# -- check ------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    with _governor(args) as gov:
        op = Operation(
            kind=OperationKind.parse(args.action),
            sources=tuple(gov.ref(s) for s in args.source),
            destination=gov.ref(args.destination) if args.destination else None,
            user=args.user or gov.settings.user,
            purpose=args.purpose or "",
            environment=args.environment or gov.settings.environment,
            exception_id=args.exception_id or "",
        )
        decision = gov.check(op, via="cli")
    if args.json:
        _print_json(decision.to_dict())
    else:
        console.print(decision.message, markup=False)
    return 0 if decision.allow else 3


# -- audit ------------------------------------------------------------------------------------
def cmd_audit(args: argparse.Namespace) -> int:
    if args.audit_command == "keygen":
        from lacuna_orchestration.audit.checkpoints import generate_key

        key = generate_key(args.path, args.algorithm)
        console.print(f"wrote {key.algorithm} checkpoint key {key.key_id} to {args.path}"
                      + (f" (public key: {args.path}.pub)" if key.algorithm == "ed25519" else ""),
                      markup=False)
        return 0
    with _governor(args) as gov:
        if args.audit_command == "verify":
            report = gov.verify_audit()
            if args.json:
                _print_json(report.to_dict())
            else:
                console.print(report.message, markup=False)
            return 0 if report.ok else 4
        if args.audit_command == "checkpoint":
            cp = gov.write_checkpoint(force=args.force)
            if args.json:
                _print_json({**cp.body(), "sig": cp.signature})
            else:
                console.print(f"checkpoint of {cp.tenant!r}: {cp.count:,} records, head "
                              f"{cp.head_hash[:16]}, {cp.algorithm} key {cp.key_id}, {cp.time}",
                              markup=False)
            return 0
        records = gov.audit.tail(args.n)
        if args.json:
            _print_json([r.to_dict() for r in records])
            return 0
        table = Table(title=f"Last {len(records)} audit record(s)")
        for col in ("seq", "time", "actor", "action", "resource", "reason", "hash"):
            table.add_column(col)
        for r in records:
            table.add_row(str(r.seq), r.timestamp[:19], r.actor, r.action, r.resource[:48],
                          r.reason[:60], r.hash[:12])
        console.print(table)
    return 0


# -- decisions, policy ------------------------------------------------------------------------
def cmd_decisions(args: argparse.Namespace) -> int:
    with _governor(args) as gov:
        decisions = list(gov.catalog.decisions(limit=args.limit,
                                               allow=False if args.denied else None))
    if args.json:
        _print_json([d.to_dict() for d in decisions])
        return 0
    console.print(decisions_table(decisions))
    return 0


def decisions_table(decisions: Sequence[Any]) -> Table:
    table = Table(title="Decisions")
    table.add_column("time", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("source → destination", overflow="fold", max_width=48)
    table.add_column("policy / reason", overflow="ellipsis", max_width=60)
    for d in decisions:
        verdict = "[green]ALLOW[/]" if d.allow else "[bold red]DENY[/]"
        if d.exception_id:
            verdict += " (exception)"
        reason = d.reasons[0] if d.reasons and not d.allow or d.exception_id else ""
        policy = d.policy_id if not d.allow else ""
        table.add_row(d.decided_at[11:19], verdict, d.action,
                      f"{d.source} → {d.destination}",
                      " — ".join(p for p in (policy, reason) if p) or "allowed")
    return table


def cmd_policy(args: argparse.Namespace) -> int:
    from lacuna_orchestration.policy.rego import EmbeddedRegoEngine
    from lacuna_orchestration.settings import Settings

    settings = Settings.load(getattr(args, "config", None))
    engine = EmbeddedRegoEngine(args.policy_dir or settings.policy_dir)
    results = engine.run_rego_tests()
    failed = [name for name, ok in results if not ok]
    table = Table(title=f"Rego tests in {args.policy_dir or settings.policy_dir}")
    table.add_column("test")
    table.add_column("result")
    for name, ok in results:
        table.add_row(name, "[green]PASS[/]" if ok else "[bold red]FAIL[/]")
    console.print(table)
    console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lacuna", description="Data governance for Dagster, Airflow and dbt."
    )
    parser.add_argument("--config", help="settings YAML file (default: $LACUNA_CONFIG or "
                        "./lacuna.yaml)")
    parser.add_argument("--database-url", help="store URL (default: $LACUNA_DATABASE_URL or "
                        "sqlite:///.lacuna/lacuna.db)")
    parser.add_argument("--allow-dir", action="append", default=[], metavar="DIR",
                        help="also read file arguments from DIR (the working directory and "
                        "$LACUNA_FILE_ROOTS always may)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify column names or a schema file")
    p.add_argument("columns", nargs="*", help="column names")
    p.add_argument("--schema", help="JSON/YAML file listing columns")
    p.add_argument("--dataset", help="dataset name, used as context")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_classify)

    p = sub.add_parser("ingest", help="ingest OpenLineage events (JSON, JSON array or NDJSON)")
    p.add_argument("files", nargs="+")
    p.add_argument("--quiet", action="store_true", help="do not print denial messages")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("lineage", help="show lineage of a dataset")
    p.add_argument("view", choices=["tree", "upstream", "downstream", "impact"])
    p.add_argument("dataset", help="dataset key (namespace::name) or name")
    p.add_argument("--depth", type=int)
    p.add_argument("--column", help="column-level lineage of one column (upstream only)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_lineage)

    p = sub.add_parser("check", help="ask the gate whether an operation is allowed")
    p.add_argument("--action", default="export", help="read, join, aggregate, filter, "
                   "transform, anonymize or export")
    p.add_argument("--source", action="append", default=[], required=True)
    p.add_argument("--destination")
    p.add_argument("--user")
    p.add_argument("--purpose")
    p.add_argument("--environment")
    p.add_argument("--exception-id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("audit", help="verify or read the audit chain")
    asub = p.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="recompute every link of the chain (and check the "
                        "signed checkpoints when a key is configured)")
    v.add_argument("--json", action="store_true")
    c = asub.add_parser("checkpoint", help="sign the chain's head into the checkpoint log")
    c.add_argument("--force", action="store_true", help="sign even if nothing was appended")
    c.add_argument("--json", action="store_true")
    k = asub.add_parser("keygen", help="write a new checkpoint signing key")
    k.add_argument("path")
    k.add_argument("--algorithm", choices=["ed25519", "hmac-sha256"], default="ed25519")
    t = asub.add_parser("tail", help="show the newest records")
    t.add_argument("-n", type=int, default=20)
    t.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_audit)

    p = sub.add_parser("decisions", help="list recent policy decisions")
    p.add_argument("--denied", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_decisions)

    p = sub.add_parser("policy", help="policy tools")
    psub = p.add_subparsers(dest="policy_command", required=True)
    pt = psub.add_parser("test", help="run the Rego unit tests")
    pt.add_argument("--policy-dir")
    p.set_defaults(handler=cmd_policy)

    from lacuna_orchestration.integrations.dbt.cli import add_dbt_parser
    from lacuna_orchestration.server_cli import add_server_parsers

    add_server_parsers(sub)
    add_dbt_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except LacunaError as err:
        err_console.print(f"lacuna: error: {err}", markup=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("lacuna: interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
