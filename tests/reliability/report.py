"""Write ``docs/reliability.md`` from the numbers the last test run measured.

    pytest tests/reliability          # records test-artifacts/reliability.json
    python tests/reliability/report.py [--results FILE] [--output FILE]

Each row names a scenario of issue 10, how the suite tests it, and the last measured result
(from a passing test: the tests record their numbers after their assertions). A scenario
missing from the results file is shown as "not measured".
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_results import RESULTS, ROOT, load

DOC = ROOT / "docs" / "reliability.md"

Numbers = Mapping[str, Any]
Row = tuple[str, str, str, Callable[[dict[str, Numbers]], str] | None]


def _param(test: str) -> str:
    match = re.search(r"\[(.+)\]$", test)
    return match.group(1) if match else ""


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return str(value)


def generic(runs: dict[str, Numbers]) -> str:
    parts = []
    for test, numbers in sorted(runs.items()):
        label = _param(test)
        text = ", ".join(f"{k.replace('_', ' ')}: {_plain(v)}" for k, v in numbers.items())
        parts.append(f"{label}: {text}" if label else text)
    return "<br>".join(parts)


def acked(runs: dict[str, Numbers]) -> str:
    parts = []
    for test, n in sorted(runs.items()):
        text = (f"**{n['acknowledged']:,} acknowledged, {n['found']:,} found**"
                + (f" ({n['writers']} writers, {n['batches']:,} batches, "
                   f"~{n['records_per_s']:,} records/s on a shared 2-core box)"
                   if "writers" in n else ""))
        if "in_flight_records" in n:
            text += (f"; the batch in flight at the kill ({n['in_flight_records']:,} records) "
                     f"{'was committed whole' if n['in_flight_batches_committed'] else 'left nothing'}")
        if "acked_before_kill" in n:
            text += (f"; {n['committed_not_acknowledged']:,} committed but never acknowledged "
                     "(requests cut by the kill: whole events, batch prefixes only)")
        if "outage" in n:
            text += (f"; during the outage ingest/check/readyz answered "
                     f"{n['outage']['ingest']}/{n['outage']['check']}/{n['outage']['readyz']}, "
                     f"the gate client denied (fail closed); recovered "
                     f"{n['recovered_in_s']} s after PostgreSQL came back, no restart")
        label = _param(test)
        parts.append(f"{label}: {text}" if label else text)
    return "<br>".join(parts) + "; chain verifies"


def fuzz(runs: dict[str, Numbers]) -> str:
    parts = []
    for _test, n in sorted(runs.items()):
        parts.append(f"**{n['cases']:,} cases, {n['5xx']} × 5xx**, {n['2xx']:,} × 2xx, "
                     f"{n['4xx']:,} × 4xx (each refusal left the chain and catalog unchanged), "
                     f"{n['seconds']} s")
    return "<br>".join(parts)


def property_ingest(runs: dict[str, Numbers]) -> str:
    return "<br>".join(
        f"{n['backend']}: **{n['cases']:,} events, {n['other_exceptions']} other exception "
        f"types**, {n['accepted']:,} accepted, {n['refused']:,} refused with nothing written"
        for _t, n in sorted(runs.items())
    )


def named(runs: dict[str, Numbers]) -> str:
    parts = []
    for test, n in sorted(runs.items()):
        where = f" (window {n['window']})" if "window" in n else ""
        expected = n.get("expected", n.get("inserted_at", n.get("rewritten")))
        parts.append(f"{_param(test)}: tampered at {expected}, verify named seq "
                     f"**{n['named']}**{where}")
    return "<br>".join(parts)


def fields(runs: dict[str, Numbers]) -> str:
    by_backend: dict[str, int] = {}
    for test, n in runs.items():
        backend = _param(test).split("-")[0]
        by_backend[backend] = by_backend.get(backend, 0) + len(n)
    return "; ".join(f"{b}: **{c} of {c} fields** detected at the altered record"
                     for b, c in sorted(by_backend.items()))


def truncated(runs: dict[str, Numbers]) -> str:
    parts = []
    for test, n in sorted(runs.items()):
        ((key, seq),) = n.items()
        parts.append(f"{_param(test)}: kept {key.split('_')[1]}, named **{seq}**")
    return "; ".join(parts) + " (the chain alone verified each of these as intact)"


ROWS: list[tuple[str, list[Row]]] = [
    ("Concurrency", [
        ("concurrency: 8 writer processes, PostgreSQL",
         "8 processes append to one tenant's chain at full speed",
         ("`test_crash_and_concurrency.py::test_eight_writer_processes_one_valid_chain` — each "
         "writer logs the ids of every batch before `append_many` and the acknowledged "
         "(seq, id) after; the table must hold exactly those, at those seqs, seq 1..n without "
         "gap or fork, and verify"), acked),
    ]),
    ("Crash safety", [
        ("crash: writer kill -9 mid-batch, PostgreSQL",
         "a writer process SIGKILLed inside a batch, then restarted",
         ("`test_writer_killed_mid_batch_postgres`: kill lands while the writer's log shows a "
         "batch pending (500–3000 records); a new writer continues; every acknowledged record "
         "present, the pending batch all-or-nothing, no record nobody sent"), acked),
        ("crash: writer kill -9 mid-batch, SQLite", "the same on SQLite (WAL, synchronous=FULL)",
         "`test_writer_killed_mid_batch_sqlite`", acked),
        ("crash: server kill -9 mid-batch, PostgreSQL",
         "the service SIGKILLed while producers post single events and NDJSON batches",
         ("`test_service_crash.py::test_server_killed_mid_batch_and_restarted`: restart on the "
         "same store; every acknowledged event has both its records, side by side; a cut "
         "batch left a prefix of its events"), acked),
        ("crash: a write fails half-way through ingest",
         "the audit append, or the catalog save after it, fails inside `Governor.ingest`",
         ("`test_core_write_failures.py`: the graph in memory equals the store, nothing is in "
         "the catalog that the chain lacks, and the retried event's denial is audited"),
         generic),
        ("crash: PostgreSQL stopped mid-run, service recovers",
         "PostgreSQL crashes (`pg_ctl stop -m immediate`) under the running service",
         ("`test_postgres_stopped_mid_run_503_then_recovers` on a private PostgreSQL "
         "(initdb + pg_ctl on a free port; the shared server is never stopped)"), acked),
    ]),
    ("Tamper evidence (superuser SQL past the triggers; SQLite and PostgreSQL)", [
        ("tamper: alter one field", "any single field of a random record",
         "`test_tamper_evidence.py::test_any_single_field_of_a_random_record` (all 14 columns)",
         fields),
        ("tamper: delete a record", "a record deleted", "`test_deleted_record`", named),
        ("tamper: swap two records", "two records swapped", "`test_swapped_records`", named),
        ("tamper: forged record appended", "a forged record behind the head row",
         "`test_forged_record_behind_the_head`", named),
        ("tamper: forged record inserted mid-chain, re-hashed",
         "a forged record inserted, everything after it renumbered and re-hashed, head moved",
         "`test_forged_record_inserted_mid_chain_and_rehashed` (checkpoints every 5 records)",
         named),
        ("tamper: truncate tail", "tail deleted, head row left", ("`test_truncated_tail_with_"
         "head_row_intact`"), named),
        ("tamper: truncate tail + move head row",
         "tail deleted **and** head row moved back to match",
         "`test_truncated_tail_with_head_row_moved_back` — only the signed checkpoints see it",
         truncated),
        ("tamper: history rewritten and re-hashed",
         "a record rewritten and every later record re-hashed",
         ("`test_history_rewritten_and_rehashed_to_the_end`; with a checkpoint per record the "
         "exact record is named (`test_a_checkpoint_per_record_names_the_exact_rewritten_"
         "record`)"), named),
        ("tamper: checkpoint altered", ("a checkpoint line edited, removed, re-signed with "
         "another key, torn"), ("`test_altered_checkpoint_signature_is_invalid` and the other "
         "checkpoint-log tests"), generic),
        ("tamper: CLI checkpoint + verify after truncation",
         "`lacuna audit keygen / checkpoint / verify` end to end",
         "`test_checkpoint_cli.py` — operator key and auditor's public key both catch it",
         generic),
    ]),
    ("Hostile input", [
        ("hostile: property-based ingest fuzzing", ("generated OpenLineage-ish events into "
         "`Governor.ingest`"), ("`test_hostile_input.py::test_property_ingest_only_refuses_with_"
         "our_errors_*` (hypothesis: any field replaced or removed, hostile text, random JSON "
         "and bytes)"), property_ingest),
        ("hostile: property-based ingest fuzzing (PostgreSQL)", "the same on PostgreSQL",
         "`..._postgres`", property_ingest),
        ("hostile: HTTP fuzzing POST /api/v1/lineage", "`POST /api/v1/lineage`",
         "`test_http_fuzz.py` (hypothesis + TestClient; bodies, content types, gzip lies)", fuzz),
        ("hostile: HTTP fuzzing POST /api/v1/lineage/batch", "`POST /api/v1/lineage/batch`",
         "`test_fuzz_batch_ingest` (NDJSON and arrays with bad lines)", fuzz),
        ("hostile: HTTP fuzzing POST /api/v1/check", "`POST /api/v1/check`",
         "`test_fuzz_gate_check` (every answer audited)", fuzz),
        ("hostile: HTTP fuzzing exception routes", "exception request/get/approve/deny/revoke",
         "`test_fuzz_exception_routes` (fuzzed ids, bodies; real ids too)", fuzz),
        ("hostile: SQL metacharacters and Unicode names", ("SQL, quotes, RTL, bidi override, "
         "zero-width, emoji, 2,000-char names"), ("`test_hostile_names_are_stored_and_returned_"
         "verbatim` — read back by a fresh governor from the store"), generic),
        ("hostile: oversize event", "an event over 8 MiB (bytes or already parsed)",
         "`test_oversize_event_is_refused`", generic),
        ("hostile: deeply nested event", "nesting 65, 5,000 and 200,000 deep",
         "`test_deeply_nested_event_is_refused`", generic),
        ("hostile: prompt injection, cascade", ("column names/descriptions telling the model to "
         "answer PUBLIC"), ("`test_injection_through_the_cascade_never_lowers_a_tier` (a layer "
         "that obeys every injection)"), generic),
        ("hostile: prompt injection, OpenAI-compatible endpoint", ("the same through the real L3 "
         "client and a server that follows injections"), ("`test_injection_through_a_real_llm_"
         "endpoint`"), generic),
        ("hostile: prompt injection, governor + export gate", ("injection up- and downstream of "
         "a PII column"), "`test_injection_through_the_governor_still_denies_the_export`",
         generic),
        ("hostile: path traversal in CLI file arguments", ("`..`, absolute paths, symlinks out, "
         "devices, FIFOs"), ("`test_safepath.py` (unit) and `test_cli_refuses_file_arguments_"
         "outside_the_project` (the real CLI)"), generic),
    ]),
    ("Access control", [
        ("access control: every route x every caller", ("every API route × no key, unknown "
         "key, wrong secret, revoked key, garbage, Basic auth, each role"),
         ("`test_access_control.py::test_every_route_every_caller` — routes are read from the "
         "app (a new route must join the matrix); refusals are audited; no key secret in any "
         "log line"), generic),
        ("access control: foreign tenant key", ("another tenant's admin key on this tenant's "
         "resources"), ("`test_foreign_tenant_sees_and_touches_nothing`; constant-time "
         "comparison: `test_keys_are_compared_in_constant_time`"), generic),
    ]),
    ("Policy failure modes", [
        ("policy: broken bundle", "a Rego file that does not parse, at start",
         "`test_policy_failure_modes.py::test_broken_bundle_at_start` (check and ingest)",
         generic),
        ("policy: bundle broken while running", "a policy edited into a broken state and back",
         "`test_bundle_broken_while_running_then_fixed`", generic),
        ("policy: engine exception", ("the engine raises (RuntimeError, KeyError, MemoryError, "
         "empty answer)"), "`test_engine_exception`", generic),
        ("policy: OPA REST timeout", "OPA answers after the timeout, then again in time",
         "`test_opa_timeout_denies_and_recovers` (the OPA conformance server with a delay)",
         generic),
    ]),
]


def render(data: Mapping[str, Any]) -> str:
    scenarios = data.get("scenarios", {})
    lines = [
        "# Reliability and security",
        "",
        ("What issue 10 asks of Lacuna — nothing acknowledged is lost, tampering is always "
        "found, hostile input is refused — each as an automated, time-bounded test under "
        "`tests/reliability/` (loopback only), with the result the last run measured. "
        "Regenerate with `pytest tests/reliability && python tests/reliability/report.py`."),
        "",
        f"Last measured: {data.get('updated', 'never')}.",
        "",
    ]
    for section, rows in ROWS:
        lines += [f"## {section}", "", "| scenario | how it is tested | last measured result |",
                  "|---|---|---|"]
        for key, scenario, how, formatter in rows:
            entry = scenarios.get(key)
            if entry is None:
                result = "not measured"
            else:
                result = (formatter or generic)(entry["runs"])
                result += f" <sub>({entry['measured_at']})</sub>"
            lines.append(f"| {scenario} | {how} | {result} |")
        lines.append("")
    lines += NOTES
    return "\n".join(lines) + "\n"


NOTES = [
    "## Design notes",
    "",
    ("**Signed checkpoints** (`lacuna_orchestration/audit/checkpoints.py`). The hash chain "
    "proves that records link; it cannot prove that the chain is as long as it was, nor that a "
    "consistently re-hashed history is the original. A checkpoint signs "
    "`(tenant, seq, count, head hash, time)` with Ed25519 (auditors verify with the public key "
    "and cannot forge) or HMAC-SHA256, and is appended to `<checkpoint_dir>/<tenant>.jsonl`, "
    "each line carrying the SHA-256 of the line before it. A file, not a table: a second "
    "table falls to the same superuser as the first, a file can live on another volume or "
    "host and be shipped to write-once storage. `write_checkpoint` never signs a chain it has "
    "not verified (it walks the records since the previous checkpoint), and "
    "`verify(store, checkpoints=log)` reports: a checkpoint whose signature does not verify or "
    "whose link is broken; a chain shorter than a checkpoint (the first missing seq); a "
    "checkpointed record whose hash differs (history rewritten, with the window between the "
    "last agreeing checkpoint and it)."),
    "",
    ("**Limits.** Records appended after the latest checkpoint are protected by the chain "
    "alone: someone who can write the database can append well-formed records there or drop "
    "them again unseen, so checkpoint as often as that window matters (the CLI from cron, or "
    "the service on a timer). Someone holding the database, the checkpoint file *and* the "
    "signing key can rewrite everything: keep the key off the database host and ship the "
    "checkpoint file elsewhere."),
    "",
    ("**What input is refused.** NUL characters (PostgreSQL text cannot hold them, so SQLite and "
    "PostgreSQL would disagree) and lone surrogates (not Unicode) anywhere in an event; events "
    "over 8 MiB or nested deeper than 64 levels; facets of the wrong shape where Lacuna reads "
    "them (a `tags` or `lacuna` facet that is not what the spec says could otherwise drop a "
    "classification floor). Everything else — SQL metacharacters, quotes, control characters, "
    "right-to-left text and bidi overrides, emoji — is stored and returned verbatim; "
    "displays must escape it."),
    "",
    ("**File arguments** (`lacuna_orchestration/safepath.py`): a CLI file argument must resolve, "
    "after symlinks, inside the working directory or a configured root, be a regular file and "
    "at most 256 MiB; it is opened without following a final symlink and checked again on "
    "the descriptor."),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--output", default=str(DOC))
    args = parser.parse_args(argv)
    text = render(load(Path(args.results)))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
