"""``python service_main.py --url URL [--schema S] --port P --admin-key K``: the Lacuna service
under uvicorn in a process of its own, so a test can SIGKILL it and start it again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn

from lacuna_orchestration.server.app import create_app
from lacuna_orchestration.server.config import ServerSettings
from lacuna_orchestration.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-key", required=True)
    parser.add_argument("--archive-dir", default=".lacuna/archive")
    args = parser.parse_args(argv)
    core = Settings.load(database_url=args.url, database_schema=args.schema,
                         policy_dir=str(ROOT / "policies"))
    settings = ServerSettings.load(
        core=core, bootstrap_admin_key=args.admin_key, port=args.port,
        migrate_on_start=args.url.startswith("postgres"), alert_on_denials=False,
        archive_dir=args.archive_dir,
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=args.port, log_level="warning",
                lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
