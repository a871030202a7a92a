"""Retention: archive old audit records to compressed NDJSON that verifies on its own.

An archive file (``<tenant>-<first>-<last>.ndjson.gz``) is one header line, the records in
``seq`` order (``AuditRecord.to_dict()``, hash included), and one trailer line::

    {"lacuna_archive": 1, "tenant": "acme", "first_seq": 1, "prev_hash": "000…", ...}
    {"seq": 1, "prev_hash": "000…", "hash": "9f2…", ...}
    ...
    {"lacuna_archive_end": 1, "count": 5000, "last_seq": 5000, "last_hash": "c41…"}

The header's ``prev_hash`` and the trailer's ``last_hash`` are the *chain anchors*: with them,
``verify_archive`` re-hashes every record, checks every link and the count, and needs no
database. Archives of one tenant chain into each other (the next file's ``prev_hash`` is the
previous file's ``last_hash``, the first one's is the genesis hash), and the live table's first
unarchived record links to the last archive (``verify_continuity``). A ``manifest.json`` next
to the files lists them with their anchors and SHA-256, so a missing or swapped file shows.

Archiving is export + verification; it deletes nothing. The audit table is append-only by
design (triggers refuse DELETE). Pruning archived rows needs a deliberate, separate step:

1. verify the archive files and their continuity with the live chain (this module);
2. as the table owner, in one transaction: ``ALTER TABLE lacuna_audit DISABLE TRIGGER
   lacuna_audit_refuse_update_delete``, ``DELETE ... WHERE tenant = :t AND seq <= :last``,
   re-enable the trigger, and record the pruned range with its anchor hash in the chain;
3. verification of the live table must then start from that anchor instead of genesis
   (``verify`` would otherwise report the pruned records as missing) — a core change that
   is proposed, not made, here.

>>> from lacuna_orchestration.db import make_engine  # doctest: +SKIP
>>> result = archive_records(store, "archive/", older_than=timedelta(days=365))  # doctest: +SKIP
>>> verify_archive(result.path).ok  # doctest: +SKIP
True
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from lacuna_orchestration.audit.chain import GENESIS_HASH, record_hash
from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.errors import StoreError, ValidationError
from lacuna_orchestration.model import AuditRecord, format_timestamp, utcnow

__all__ = [
    "ARCHIVE_FORMAT",
    "ArchiveCheck",
    "ArchiveResult",
    "archive_records",
    "last_archived",
    "read_manifest",
    "verify_archive",
    "verify_continuity",
]

ARCHIVE_FORMAT = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """What one archiving run wrote (``path`` is None when nothing was old enough)."""

    tenant: str
    path: Path | None
    count: int
    first_seq: int | None
    last_seq: int | None
    prev_hash: str | None
    last_hash: str | None
    cutoff: str

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "path": str(self.path) if self.path else None,
                "count": self.count, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "prev_hash": self.prev_hash, "last_hash": self.last_hash,
                "cutoff": self.cutoff}


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """The outcome of verifying one archive file (or a series with ``verify_continuity``)."""

    ok: bool
    count: int
    first_seq: int | None = None
    last_seq: int | None = None
    prev_hash: str | None = None
    last_hash: str | None = None
    problem: str = ""

    @property
    def message(self) -> str:
        if self.ok:
            return (f"archive verified: {self.count:,} records, seq {self.first_seq}"
                    f"..{self.last_seq}, last hash {str(self.last_hash)[:16]}")
        return f"archive does not verify: {self.problem}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "count": self.count, "first_seq": self.first_seq,
                "last_seq": self.last_seq, "prev_hash": self.prev_hash,
                "last_hash": self.last_hash, "problem": self.problem,
                "message": self.message}


def _cutoff(older_than: timedelta | datetime, now: datetime | None) -> str:
    if isinstance(older_than, datetime):
        return format_timestamp(older_than)
    if older_than < timedelta(0):
        raise ValidationError("older_than cannot be negative")
    return format_timestamp((now or utcnow()) - older_than)


def read_manifest(directory: str | os.PathLike[str], tenant: str) -> list[dict[str, Any]]:
    path = Path(directory) / tenant / MANIFEST
    if not path.is_file():
        return []
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as err:
        raise StoreError(f"archive manifest {path} is unreadable: {err}") from None
    return list(data.get("archives", []))


def last_archived(directory: str | os.PathLike[str], tenant: str) -> tuple[int, str]:
    """``(seq, hash)`` of the last archived record of ``tenant`` (``(0, genesis)`` if none)."""
    archives = read_manifest(directory, tenant)
    if not archives:
        return 0, GENESIS_HASH
    last = archives[-1]
    return int(last["last_seq"]), str(last["last_hash"])


def archive_records(
    store: AuditStore,
    directory: str | os.PathLike[str],
    *,
    older_than: timedelta | datetime,
    now: datetime | None = None,
    max_records: int = 1_000_000,
) -> ArchiveResult:
    """Export the not yet archived records older than ``older_than`` (a contiguous run from
    the last archive on: the first newer record ends it) and verify the file written.

    Raises ``StoreError`` when the file cannot be written or does not verify, or when the
    live chain no longer links to the last archive.
    """
    cutoff = _cutoff(older_than, now)
    folder = Path(directory) / store.tenant
    folder.mkdir(parents=True, exist_ok=True)
    after_seq, expected_prev = last_archived(directory, store.tenant)
    records = _old_records(store, after_seq, cutoff, max_records)
    first = next(records, None)
    if first is None:
        return ArchiveResult(store.tenant, None, 0, None, None, None, None, cutoff)
    if first.prev_hash != expected_prev:
        raise StoreError(
            f"audit chain {store.tenant!r}: record {first.seq} does not link to the last "
            f"archive (expected prev_hash {expected_prev[:16]}, found {first.prev_hash[:16]})"
        )
    tmp = folder / f".{store.tenant}-{first.seq}.partial"
    count, last = _write(tmp, store.tenant, first, records, cutoff)
    path = folder / f"{store.tenant}-{first.seq:012d}-{last.seq:012d}.ndjson.gz"
    os.replace(tmp, path)
    check = verify_archive(path)
    if not check.ok:
        raise StoreError(f"archive {path} does not verify after writing: {check.problem}")
    _append_manifest(folder, path, check)
    return ArchiveResult(store.tenant, path, count, first.seq, last.seq, first.prev_hash,
                         last.hash, cutoff)


def _old_records(store: AuditStore, after_seq: int, cutoff: str,
                 max_records: int) -> Iterator[AuditRecord]:
    for n, record in enumerate(store.records(after_seq=after_seq), 1):
        if record.timestamp >= cutoff or n > max_records:
            return
        yield record


def _write(path: Path, tenant: str, first: AuditRecord, rest: Iterator[AuditRecord],
           cutoff: str) -> tuple[int, AuditRecord]:
    header = {"lacuna_archive": ARCHIVE_FORMAT, "tenant": tenant, "first_seq": first.seq,
              "prev_hash": first.prev_hash, "cutoff": cutoff,
              "created_at": format_timestamp(utcnow()),
              "hash": "sha256 over canonical JSON of each record body (audit.chain)"}
    count = 0
    last = first
    try:
        with gzip.open(path, "wb", compresslevel=6) as out:
            out.write(orjson.dumps(header) + b"\n")
            for record in _chain(first, rest):
                out.write(orjson.dumps(record.to_dict(), option=orjson.OPT_SORT_KEYS) + b"\n")
                count += 1
                last = record
            out.write(orjson.dumps({"lacuna_archive_end": ARCHIVE_FORMAT, "count": count,
                                    "last_seq": last.seq, "last_hash": last.hash}) + b"\n")
            out.flush()
    except OSError as err:
        path.unlink(missing_ok=True)
        raise StoreError(f"cannot write archive {path}: {err.strerror}") from None
    with open(path, "rb") as done:
        os.fsync(done.fileno())
    return count, last


def _chain(first: AuditRecord, rest: Iterator[AuditRecord]) -> Iterator[AuditRecord]:
    yield first
    yield from rest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _append_manifest(folder: Path, path: Path, check: ArchiveCheck) -> None:
    manifest = folder / MANIFEST
    archives = read_manifest(folder.parent, folder.name)
    archives.append({"file": path.name, "sha256": _sha256(path), "count": check.count,
                     "first_seq": check.first_seq, "last_seq": check.last_seq,
                     "prev_hash": check.prev_hash, "last_hash": check.last_hash})
    tmp = folder / (MANIFEST + ".partial")
    tmp.write_bytes(orjson.dumps({"tenant": folder.name, "archives": archives},
                                 option=orjson.OPT_INDENT_2))
    os.replace(tmp, manifest)


def verify_archive(path: str | os.PathLike[str]) -> ArchiveCheck:
    """Re-hash and re-link every record of one archive file against its own anchors
    (streamed: memory does not grow with the archive)."""
    try:
        with gzip.open(path, "rb") as f:
            return _verify_lines(line for line in f if line.strip())
    except (OSError, EOFError) as err:
        return ArchiveCheck(False, 0, problem=f"cannot read {path}: {err}")


def _verify_lines(lines: Iterator[bytes]) -> ArchiveCheck:
    try:
        header = orjson.loads(next(lines))
    except StopIteration:
        return ArchiveCheck(False, 0, problem="the archive is empty")
    except orjson.JSONDecodeError as err:
        return ArchiveCheck(False, 0, problem=f"the header is not JSON: {err}")
    if not isinstance(header, dict) or header.get("lacuna_archive") != ARCHIVE_FORMAT:
        return ArchiveCheck(False, 0, problem="not a lacuna audit archive (no header)")
    prev = str(header.get("prev_hash", ""))
    expected_seq = int(header.get("first_seq", 0))
    count = 0
    trailer: dict[str, Any] | None = None
    for number, line in enumerate(lines, 2):
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            return _broken(header, count, prev, f"line {number} is not JSON: {err}")
        if trailer is not None:
            return _broken(header, count, prev, f"line {number} follows the trailer")
        if isinstance(data, dict) and "lacuna_archive_end" in data:
            trailer = data
            continue
        try:
            record = AuditRecord.from_dict(data)
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            return _broken(header, count, prev, f"line {number} is not a record: {err}")
        if record.seq != expected_seq:
            return _broken(header, count, prev,
                           f"seq {expected_seq} expected, found {record.seq} (line {number})")
        if record.prev_hash != prev:
            return _broken(header, count, prev, f"seq {record.seq}: prev_hash does not link")
        if record_hash(record) != record.hash:
            return _broken(header, count, prev,
                           f"seq {record.seq}: content does not hash to its stored hash")
        if record.tenant != header.get("tenant"):
            return _broken(header, count, prev, f"seq {record.seq} belongs to another tenant")
        prev = record.hash
        expected_seq += 1
        count += 1
    if trailer is None:
        return _broken(header, count, prev, "no trailer: the archive is truncated")
    if count != trailer.get("count") or prev != trailer.get("last_hash") or (
        count and expected_seq - 1 != trailer.get("last_seq")
    ):
        return _broken(header, count, prev,
                       "the trailer's count/last hash disagree with the records")
    return ArchiveCheck(True, count, header.get("first_seq"), expected_seq - 1,
                        header.get("prev_hash"), prev)


def _broken(header: dict[str, Any], count: int, prev: str, problem: str) -> ArchiveCheck:
    return ArchiveCheck(False, count, header.get("first_seq"), None, header.get("prev_hash"),
                        prev, problem)


def verify_continuity(directory: str | os.PathLike[str], tenant: str,
                      store: AuditStore | None = None) -> ArchiveCheck:
    """Verify every archive of ``tenant`` listed in the manifest (file hash and content),
    that they chain from genesis one into the next, and — with ``store`` — that the live
    chain's next record links to the last archive."""
    folder = Path(directory) / tenant
    prev, next_seq, total = GENESIS_HASH, 1, 0
    archives: Sequence[dict[str, Any]] = read_manifest(directory, tenant)
    for entry in archives:
        path = folder / entry["file"]
        if not path.is_file():
            return ArchiveCheck(False, total, problem=f"{entry['file']} is missing")
        if _sha256(path) != entry["sha256"]:
            return ArchiveCheck(False, total, problem=f"{entry['file']} changed since written")
        check = verify_archive(path)
        if not check.ok:
            return ArchiveCheck(False, total, problem=f"{entry['file']}: {check.problem}")
        if check.prev_hash != prev or check.first_seq != next_seq:
            return ArchiveCheck(False, total,
                                problem=f"{entry['file']} does not continue the previous "
                                        f"archive (seq {next_seq})")
        prev, next_seq, total = str(check.last_hash), int(check.last_seq or 0) + 1, \
            total + check.count
    if store is not None:
        following = next(iter(store.records(after_seq=next_seq - 1, limit=1)), None)
        if following is not None and (following.seq != next_seq or following.prev_hash != prev):
            return ArchiveCheck(False, total, problem=f"live record {following.seq} does not "
                                "link to the last archive")
    return ArchiveCheck(True, total, 1 if archives else None, next_seq - 1 or None,
                        GENESIS_HASH, prev)
