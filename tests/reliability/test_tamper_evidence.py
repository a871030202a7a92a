"""Tamper evidence: with superuser SQL past the append-only triggers, every kind of tampering is
found by ``verify(store, checkpoints=log)``, which names the first bad record — including the
cases the hash chain alone cannot see (a truncated tail with the head row moved back to match,
history rewritten and re-hashed to the end), which the signed checkpoints catch."""

from __future__ import annotations

import base64
import random
import threading
from pathlib import Path

import orjson
import pytest
from audit_helpers import make_records
from reliability_tamper import Attacker

from lacuna_orchestration.audit.checkpoints import (
    CheckpointLog,
    Ed25519Key,
    HmacKey,
    generate_key,
    load_key,
    write_checkpoint,
)
from lacuna_orchestration.audit.store import AUDIT_COLUMNS, AuditStore
from lacuna_orchestration.audit.verify import VerifyReport, verify
from lacuna_orchestration.errors import AuditIntegrityError, ConfigError
from lacuna_orchestration.model import AuditRecord

BATCHES = 8
PER_BATCH = 5
TOTAL = BATCHES * PER_BATCH  # checkpoints at 5, 10, ..., 40


@pytest.fixture()
def log(tmp_path: Path, ed25519_key: Ed25519Key) -> CheckpointLog:
    return CheckpointLog(tmp_path / "checkpoints", "default", ed25519_key)


@pytest.fixture()
def chain(store: AuditStore, log: CheckpointLog) -> list[AuditRecord]:
    """40 records in batches of 5, a checkpoint after each batch."""
    records: list[AuditRecord] = []
    for b in range(BATCHES):
        records += store.append_many(make_records(PER_BATCH, start=b * PER_BATCH))
        write_checkpoint(store, log)
    return records


def checked(store: AuditStore, log: CheckpointLog) -> VerifyReport:
    report = verify(store, checkpoints=log)
    assert report.message  # always renders
    return report


def first_checkpoint_at_or_after(seq: int) -> int:
    return -(-seq // PER_BATCH) * PER_BATCH


def test_intact_chain_and_checkpoints_verify(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord]
) -> None:
    report = checked(store, log)
    assert report.ok, report.message
    assert (report.count, report.checkpoints, report.checkpoint_seq) == (TOTAL, BATCHES, TOTAL)
    assert "8 signed checkpoint(s) agree, the latest at seq 40" in report.message
    assert report.to_dict()["checkpoint_seq"] == TOTAL
    lines = log.path.read_bytes().splitlines()
    assert len(lines) == BATCHES
    first = orjson.loads(lines[0])
    assert set(first) == {"v", "tenant", "seq", "count", "head_hash", "time", "alg", "key_id",
                          "prev", "sig"}
    assert first["alg"] == "ed25519" and first["seq"] == first["count"] == PER_BATCH


def _altered(column: str, value: object) -> object:
    if column == "seq":
        return int(value) + 1000  # type: ignore[call-overload]
    if column in ("decision", "details"):
        data = orjson.loads(str(value)) if value is not None else {}
        data["tampered"] = True
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    if column in ("hash", "prev_hash"):
        return "f" * 64 if value != "f" * 64 else "e" * 64
    return f"{value}x"


@pytest.mark.parametrize("column", AUDIT_COLUMNS)
def test_any_single_field_of_a_random_record(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord], column: str,
    record_result,
) -> None:
    seq = random.Random(column).randint(1, TOTAL)
    victim = chain[seq - 1]
    original = {
        "tenant": victim.tenant, "seq": victim.seq, "record_id": victim.record_id,
        "timestamp": victim.timestamp, "actor": victim.actor, "action": victim.action,
        "resource": victim.resource, "reason": victim.reason, "via": victim.via,
        "run_id": victim.run_id, "decision": orjson.dumps(victim.decision,
                                                          option=orjson.OPT_SORT_KEYS).decode(),
        "details": orjson.dumps(dict(victim.details), option=orjson.OPT_SORT_KEYS).decode(),
        "prev_hash": victim.prev_hash, "hash": victim.hash,
    }[column]
    Attacker(store).set_field(seq, column, _altered(column, original))
    report = checked(store, log)
    assert not report.ok
    assert report.first_bad_seq == seq, report.message
    if column not in ("seq", "tenant"):  # those move the record away from its place
        assert report.first_bad_record_id == (
            victim.record_id if column != "record_id" else f"{victim.record_id}x"
        )
    record_result("tamper: alter one field", **{str(column): report.first_bad_seq})


def test_deleted_record(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord], record_result
) -> None:
    Attacker(store).delete(17)
    report = checked(store, log)
    assert (report.ok, report.first_bad_seq) == (False, 17)
    assert "missing" in report.problem
    record_result("tamper: delete a record", expected=17, named=report.first_bad_seq)


def test_swapped_records(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord], record_result
) -> None:
    Attacker(store).swap(9, 23)
    report = checked(store, log)
    assert (report.ok, report.first_bad_seq) == (False, 9), report.message
    assert report.first_bad_record_id == chain[22].record_id  # record 23's content, now at 9
    record_result("tamper: swap two records", expected=9, named=report.first_bad_seq)


def test_forged_record_behind_the_head(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord], record_result
) -> None:
    forged = Attacker(store).append_forged(AuditRecord("mallory", "gate", "wh::x"),
                                           move_head=False)
    report = checked(store, log)
    assert (report.ok, report.first_bad_seq, report.first_bad_record_id) == (
        False, TOTAL + 1, forged.record_id
    )
    record_result("tamper: forged record appended", expected=TOTAL + 1,
                  named=report.first_bad_seq)


def test_forged_record_inserted_mid_chain_and_rehashed(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord], record_result
) -> None:
    forged = AuditRecord("mallory", "exception.approve", "exc-1", reason="approved myself")
    Attacker(store).rewrite(12, insert=forged)
    assert verify(store).ok  # the chain alone is fooled: every link holds
    report = checked(store, log)
    assert not report.ok
    assert report.first_bad_seq == first_checkpoint_at_or_after(12) == 15
    assert "records 11..15" in report.problem
    assert "checkpoint at seq 10 still agrees" in report.problem
    record_result("tamper: forged record inserted mid-chain, re-hashed", inserted_at=12,
                  named=report.first_bad_seq, window="11..15")


def test_truncated_tail_with_head_row_intact(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord], record_result
) -> None:
    Attacker(store).truncate(31, move_head=False)
    report = checked(store, log)
    assert (report.ok, report.first_bad_seq) == (False, 32)
    record_result("tamper: truncate tail", expected=32, named=report.first_bad_seq)


@pytest.mark.parametrize("keep", [35, 33, 1])
def test_truncated_tail_with_head_row_moved_back(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord], keep: int, record_result
) -> None:
    Attacker(store).truncate(keep, move_head=True)
    assert verify(store).ok  # what only a checkpoint can catch
    report = checked(store, log)
    assert (report.ok, report.first_bad_seq, report.first_bad_record_id) == (False, keep + 1, None)
    assert f"attests {TOTAL} records but the chain ends at {keep}" in report.problem
    record_result("tamper: truncate tail + move head row", **{f"keep_{keep}": report.first_bad_seq})


def test_history_rewritten_and_rehashed_to_the_end(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord], record_result
) -> None:
    Attacker(store).rewrite(22, change={"reason": "nothing to see here"})
    assert verify(store).ok
    report = checked(store, log)
    assert not report.ok and report.first_bad_seq == 25
    assert report.count == 20  # the checkpoint at 20 still vouches for 1..20
    assert report.first_bad_record_id == chain[24].record_id
    record_result("tamper: history rewritten and re-hashed", rewritten=22,
                  named=report.first_bad_seq, window="21..25")


def test_a_checkpoint_per_record_names_the_exact_rewritten_record(
    store: AuditStore, log: CheckpointLog
) -> None:
    chain = []
    for i in range(12):
        chain += store.append_many(make_records(1, start=i))
        write_checkpoint(store, log)
    Attacker(store).rewrite(7, change={"actor": "someone else"})
    report = checked(store, log)
    assert (report.first_bad_seq, report.first_bad_record_id) == (7, chain[6].record_id)
    assert "within record 7" in report.problem


def test_chain_problem_before_a_checkpoint_problem_wins(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord]
) -> None:
    attacker = Attacker(store)
    attacker.rewrite(33, change={"actor": "x"})  # checkpoints see 35
    attacker.set_field(3, "reason", "altered")  # the chain sees 3
    assert checked(store, log).first_bad_seq == 3


# -- the checkpoint log itself -------------------------------------------------------------------


def _edit_line(log: CheckpointLog, index: int, **changes: object) -> None:
    lines = log.path.read_bytes().splitlines()
    data = orjson.loads(lines[index])
    data.update(changes)
    lines[index] = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    log.path.write_bytes(b"\n".join(lines) + b"\n")


def test_altered_checkpoint_signature_is_invalid(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord], record_result
) -> None:
    _edit_line(log, 3, seq=19, count=19)
    report = checked(store, log)
    assert not report.ok and report.first_bad_seq is None
    assert "line 4: signature invalid" in report.checkpoint_problem
    assert "checkpoint log is not intact" in report.message
    assert report.checkpoints == 3  # the lines before it still count
    record_result("tamper: checkpoint altered", detected=not report.ok)


def test_checkpoint_signed_with_another_key(
    store: AuditStore, tmp_path: Path, chain: list[AuditRecord], ed25519_key: Ed25519Key
) -> None:
    rogue = CheckpointLog(tmp_path / "checkpoints", "default", Ed25519Key.generate())
    rogue.path.unlink()  # the attacker replaces the whole log with one signed by his own key
    write_checkpoint(store, rogue)
    honest = CheckpointLog(tmp_path / "checkpoints", "default", ed25519_key)
    report = verify(store, checkpoints=honest)
    assert not report.ok and "signed by unknown key" in report.checkpoint_problem


def test_removed_checkpoint_line_breaks_the_link(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord]
) -> None:
    lines = log.path.read_bytes().splitlines()
    log.path.write_bytes(b"\n".join(lines[:2] + lines[3:]) + b"\n")
    report = checked(store, log)
    assert not report.ok and "line 3: does not link" in report.checkpoint_problem


def test_torn_last_line_is_reported_and_not_extended(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord]
) -> None:
    data = log.path.read_bytes()
    log.path.write_bytes(data[:-40])
    report = checked(store, log)
    assert not report.ok and f"line {BATCHES}" in report.checkpoint_problem
    store.append_many(make_records(1, start=500))
    with pytest.raises(AuditIntegrityError, match="not intact"):
        write_checkpoint(store, log)


def test_no_signature_over_a_broken_chain(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord]
) -> None:
    store.append_many(make_records(3, start=100))
    Attacker(store).set_field(42, "actor", "mallory")
    with pytest.raises(AuditIntegrityError, match="broken chain.*seq 42"):
        write_checkpoint(store, log)
    Attacker(store).truncate(38, move_head=True)
    with pytest.raises(AuditIntegrityError, match="truncated"):
        write_checkpoint(store, log)
    assert len(log.path.read_bytes().splitlines()) == BATCHES  # nothing signed


def test_rewritten_history_is_not_signed_either(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord]
) -> None:
    Attacker(store).rewrite(4, change={"reason": "x"})
    store.append_many(make_records(2, start=200))
    with pytest.raises(AuditIntegrityError, match="seq 40"):
        write_checkpoint(store, log)


def test_unchanged_head_is_not_signed_twice_unless_forced(
    store: AuditStore, log: CheckpointLog, chain: list[AuditRecord]
) -> None:
    latest = write_checkpoint(store, log)
    assert latest.seq == TOTAL and len(log.path.read_bytes().splitlines()) == BATCHES
    again = write_checkpoint(store, log, force=True)
    assert again.seq == TOTAL and again.prev != latest.prev
    assert checked(store, log).checkpoints == BATCHES + 1


def test_hmac_keys_and_verification_only_public_keys(
    store: AuditStore, tmp_path: Path, hmac_key: HmacKey
) -> None:
    store.append_many(make_records(4))
    log = CheckpointLog(tmp_path, "default", hmac_key)
    cp = write_checkpoint(store, log)
    assert cp.algorithm == "hmac-sha256" and len(base64.b64decode(cp.signature)) == 32
    assert verify(store, checkpoints=log).ok
    wrong = CheckpointLog(tmp_path, "default", HmacKey(b"another-secret-of-32-bytes-or-more!!"))
    assert "unknown key" in verify(store, checkpoints=wrong).checkpoint_problem

    private = generate_key(tmp_path / "keys" / "checkpoint.key")
    public = load_key(tmp_path / "keys" / "checkpoint.key.pub")
    assert not public.can_sign and public.key_id == private.key_id
    assert (tmp_path / "keys" / "checkpoint.key").stat().st_mode & 0o077 == 0
    signer = CheckpointLog(tmp_path / "ed", "default", load_key(tmp_path / "keys/checkpoint.key"))
    write_checkpoint(store, signer)
    auditor = CheckpointLog(tmp_path / "ed", "default", public)
    assert verify(store, checkpoints=auditor).ok
    with pytest.raises(ConfigError, match="cannot sign"):
        write_checkpoint(store, auditor, force=True)
    with pytest.raises(ConfigError, match="already exists"):
        generate_key(tmp_path / "keys" / "checkpoint.key")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        HmacKey(b"short")
    (tmp_path / "hmac.key").write_text("ab" * 32)
    assert load_key(tmp_path / "hmac.key").algorithm == "hmac-sha256"
    assert "secret" not in repr(hmac_key) and hmac_key.key_id in repr(hmac_key)


def test_key_rotation_old_checkpoints_still_verify(store: AuditStore, tmp_path: Path) -> None:
    old, new = Ed25519Key.generate(), Ed25519Key.generate()
    store.append_many(make_records(3))
    write_checkpoint(store, CheckpointLog(tmp_path, "default", old))
    store.append_many(make_records(3, start=3))
    rotated = CheckpointLog(tmp_path, "default", [new, old.public()])
    write_checkpoint(store, rotated)
    report = verify(store, checkpoints=rotated)
    assert report.ok and report.checkpoints == 2, report.message


def test_tenant_names_cannot_escape_the_checkpoint_directory(tmp_path: Path,
                                                            hmac_key: HmacKey) -> None:
    log = CheckpointLog(tmp_path / "cp", "../../etc/passwd", hmac_key)
    assert log.path.parent == tmp_path / "cp" and "/" not in log.path.name
    assert CheckpointLog(tmp_path, "acme-eu_1", hmac_key).path.name == "acme-eu_1.jsonl"


def test_concurrent_checkpoint_writers_keep_one_linear_log(
    store: AuditStore, log: CheckpointLog
) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(6):
                store.append_many(make_records(2, start=n * 1000 + i * 2))
                write_checkpoint(store, log)
        except BaseException as err:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    reading = log.read()
    assert not reading.problem, reading.problem
    seqs = [c.seq for c in reading.checkpoints]
    assert seqs == sorted(seqs) and seqs[-1] == 48
    assert verify(store, checkpoints=log).ok
