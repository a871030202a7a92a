"""A writer process for the concurrency and crash tests: appends to one tenant's chain as fast
as it can and logs, outside the database, what it was about to write and what was acknowledged.

Each batch writes two lines to ``--log`` with ``os.write`` on an ``O_APPEND`` descriptor (in the
kernel once the call returns, so they survive the process being killed):

* ``{"pending": [record ids]}`` before ``append_many`` is called;
* ``{"acked": [[seq, record id], ...]}`` after it returned, i.e. after the commit.

The test compares these logs with the table: every acknowledged record must be there, at its
seq, and a batch that was in flight when the process died must be there entirely or not at all.

Start-up is synchronised through files so that all writers really run at the same time: each
one touches ``<log>.ready`` once connected and waits for ``--go`` to exist.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from pathlib import Path

import orjson

from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.db import make_engine
from lacuna_orchestration.model import AuditRecord


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--go", required=True, help="start once this file exists")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--min-batch", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=50)
    args = parser.parse_args(argv)

    engine = make_engine(args.url, schema=args.schema)
    store = AuditStore(engine, args.tenant)
    store.head()  # connect now, not on the clock
    rng = random.Random(args.worker)
    fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    Path(f"{args.log}.ready").touch()
    go = Path(args.go)
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            print("never told to start", file=sys.stderr)
            return 2
        time.sleep(0.005)

    stop = time.monotonic() + args.duration
    batch_no = 0
    while time.monotonic() < stop:
        size = rng.randint(args.min_batch, args.max_batch)
        records = [
            AuditRecord(
                actor=f"writer{args.worker}",
                action="reliability.append",
                resource=f"warehouse::t{args.worker}",
                reason=f"batch {batch_no} record {i}",
                via="test",
                run_id=str(uuid.uuid4()),
                details={"worker": args.worker, "batch": batch_no, "i": i},
                tenant=args.tenant,
            )
            for i in range(size)
        ]
        os.write(fd, orjson.dumps({"pending": [r.record_id for r in records]}) + b"\n")
        written = store.append_many(records)
        os.write(fd, orjson.dumps({"acked": [[r.seq, r.record_id] for r in written]}) + b"\n")
        batch_no += 1
    os.close(fd)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
