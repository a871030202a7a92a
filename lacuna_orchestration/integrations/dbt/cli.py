"""``lacuna dbt ...`` — the dbt commands of the ``lacuna`` command line.

::

    lacuna dbt build [--no-gate] [--strict] [--lacuna-user U] [dbt args ...]
    lacuna dbt run | seed | snapshot | test [...]          same, for the other dbt commands
    lacuna dbt gate [build|run|seed|snapshot] [dbt args]   decide only, build nothing
    lacuna dbt collect [--log-file F] [--keep] [dbt args]  ingest what plain dbt runs recorded

Lacuna runs in process on the configured store, or — with ``--lacuna-url`` (or
``LACUNA_URL``) and ``--lacuna-api-key`` (``LACUNA_API_KEY``) — against a Lacuna service, whose
answers are the gate's (an unreachable service stops the build: the gate fails closed).

Every argument Lacuna does not know goes to dbt unchanged (``--project-dir``, ``--select``,
``--target`` ...), so ``lacuna dbt build -s customer_orders+`` reads like ``dbt build -s
customer_orders+``. Exit codes: dbt's (0 ok, 1 failures) or 1 when Lacuna found a denial or a
floor violation; 2 when dbt or Lacuna could not run at all.

``add_dbt_parser`` registers the commands on the main parser's subparsers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lacuna_orchestration.errors import ConfigError
from lacuna_orchestration.integrations.dbt.runner import BUILD_COMMANDS

__all__ = ["add_dbt_parser", "cmd_dbt"]


class _PassThroughParser(argparse.ArgumentParser):
    """Keeps the arguments it does not know, in order, as ``dbt_args`` (they are dbt's)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        parsed.dbt_args = [*(getattr(parsed, "dbt_args", None) or ()), *extras]
        return parsed, []


def add_dbt_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dbt`` and its commands to ``subparsers`` (from ``add_subparsers``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dbt", help="run dbt governed by Lacuna, or collect what plain dbt runs recorded")
    commands = parser.add_subparsers(dest="dbt_command", required=True,
                                     parser_class=_PassThroughParser)
    for name in BUILD_COMMANDS:
        p = commands.add_parser(name, allow_abbrev=False,
                                help=f"dbt {name} with the Lacuna gate and lineage")
        p.add_argument("--no-gate", action="store_true",
                       help="record lineage but decide nothing before the build")
        p.add_argument("--strict", action="store_true",
                       help="the lacuna package refuses to run without Lacuna's decisions")
        p.add_argument("--lacuna-user", help="who runs this (default: the profile's user)")
        _remote_options(p)
    p = commands.add_parser("gate", allow_abbrev=False,
                            help="decide what a dbt command would build, build nothing")
    p.add_argument("--command", dest="gate_command", default="build",
                   choices=[c for c in BUILD_COMMANDS if c != "test"])
    p.add_argument("--lacuna-user")
    _remote_options(p)
    p = commands.add_parser("collect", allow_abbrev=False,
                            help="ingest the records plain dbt runs left in the outbox")
    p.add_argument("--log-file", help="read records from this dbt log file instead")
    p.add_argument("--keep", action="store_true",
                   help="leave the ingested records in the outbox")
    _remote_options(p)
    return parser


def _remote_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lacuna-url", default=os.environ.get("LACUNA_URL"),
                        help="a Lacuna service to ask instead of the local store "
                             "(default: $LACUNA_URL)")
    parser.add_argument("--lacuna-api-key", default=os.environ.get("LACUNA_API_KEY"),
                        help="API key for --lacuna-url (default: $LACUNA_API_KEY)")
    parser.set_defaults(handler=cmd_dbt, dbt_args=[])


@contextmanager
def _governor(args: argparse.Namespace) -> Iterator[Any]:
    """The local governor on the configured store, or a client of ``--lacuna-url``."""
    if getattr(args, "lacuna_url", None):
        from lacuna_orchestration.client import RemoteGovernor

        try:
            remote = RemoteGovernor(args.lacuna_url, api_key=args.lacuna_api_key)
        except ValueError as err:
            raise ConfigError(f"--lacuna-url: {err}") from None
        yield remote
        return
    from lacuna_orchestration.governor import Governor

    with Governor.open(getattr(args, "config", None),
                       database_url=getattr(args, "database_url", None)) as gov:
        yield gov


def cmd_dbt(args: argparse.Namespace) -> int:
    from lacuna_orchestration.integrations.dbt.outbox import collect
    from lacuna_orchestration.integrations.dbt.runner import plan_dbt, run_dbt

    dbt_args = [a for a in args.dbt_args if a != "--"]
    with _governor(args) as gov:
        if args.dbt_command == "collect":
            result = collect(gov, dbt_args, log_file=args.log_file, acknowledge=not args.keep)
            print(f"Lacuna: collected {result.records} record(s) → {result.events} event(s), "
                  f"{len(result.denials)} denial(s), {len(result.violations)} floor "
                  f"violation(s), {result.acknowledged} acknowledged")
            for problem in result.rejected:
                print(f"rejected: {problem}", file=sys.stderr)
            for decision in result.denials:
                print(f"\n{decision.message}")
            for uid, message in result.violations.items():
                print(f"\n{uid} violates its declared floor: {message}")
            return 0 if result.ok and result.compliant else 1
        if args.dbt_command == "gate":
            plan = plan_dbt(args.gate_command, dbt_args, governor=gov, user=args.lacuna_user)
            for uid, node in plan.nodes.items():
                verdict = "ALLOW" if node.allowed else "DENY "
                print(f"{verdict} {node.operation.value:<9} {uid} → {node.dataset.key}")
            for uid, decision in plan.denied.items():
                print(f"\n{uid}:\n{decision.message}")
            for uid, violation in plan.violations.items():
                print(f"\n{uid} violates its declared floor: {violation.message}")
            return 1 if plan.denied or plan.violations else 0
        outcome = run_dbt(args.dbt_command, dbt_args, governor=gov, gate=not args.no_gate,
                          strict=args.strict, user=args.lacuna_user)
        print()
        print(outcome.summary())
        return outcome.exit_code
