"""``python tests/server/cli_main.py <args>``: ``lacuna`` with the service commands, in a
subprocess (for ``dev``/``serve`` tests, before the lead registers them in ``cli.py``)."""

from __future__ import annotations

import sys

from server_helpers import lacuna_parser

from lacuna_orchestration.errors import LacunaError

if __name__ == "__main__":
    args = lacuna_parser().parse_args(sys.argv[1:])
    try:
        sys.exit(int(args.handler(args)))
    except LacunaError as err:
        sys.stderr.write(f"lacuna: error: {err}\n")
        sys.exit(2)
