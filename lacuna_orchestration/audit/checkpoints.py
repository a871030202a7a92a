"""Signed checkpoints: what makes a truncated or consistently rewritten chain detectable.

The hash chain proves that the records in the table link to each other, and the head row says
where the chain ends. Someone with write access to the database (a superuser, a stolen
backup restored over the live one) can do more than break a link: delete the last records
*and* move the head row back, or rewrite a record and re-hash everything after it. The result
is a perfectly valid, shorter or different, chain. Only a witness kept outside the database
can tell.

A checkpoint is that witness: ``(tenant, seq, count, head hash, time)`` signed with a key the
database never sees, appended to a per-tenant JSON Lines file (``<directory>/<tenant>.jsonl``)
apart from the audit table. Each line also carries the SHA-256 of the line before it, so lines
cannot be dropped from the middle or reordered without breaking that link.

Why a file and not another table: a second table (even in another schema) falls to the same
superuser who rewrites the audit table. A file can live on another volume or host, be shipped
to write-once storage or simply be backed up on a different schedule, and its owner need not
be the database's. What the file does not protect against is an attacker who controls the
database *and* the checkpoint file *and* the signing key; ship the file somewhere else if that
matters.

Keys: **Ed25519** (``cryptography``; preferred — auditors verify with the public key alone and
cannot forge a checkpoint) or **HMAC-SHA256** with a secret of at least 32 bytes (stdlib only;
whoever verifies can also sign). :func:`generate_key` writes either; :func:`load_key` reads a
PEM private key, a PEM public key (verification only) or a hex/raw HMAC secret.

What verification with checkpoints adds (:meth:`CheckpointLog.check`, called by
``audit.verify(store, checkpoints=log)``):

==========================================  ==============================================
tampering                                   what verification reports
==========================================  ==============================================
a checkpoint line altered or forged         its line: signature invalid
a checkpoint line removed or moved          the next line: its ``prev`` does not link
tail truncated, head row moved back to fit  the first missing ``seq``: a checkpoint
                                            attests more records than the chain has
history rewritten and re-hashed to the end  the first checkpointed record whose hash
                                            differs, and the range that was rewritten
==========================================  ==============================================

Records appended after the latest checkpoint are covered by the chain alone: write checkpoints
as often as the window of undetectable truncation you accept (the server can write one every
few seconds; ``lacuna audit checkpoint`` from cron works too).

>>> from lacuna_orchestration.db import make_engine
>>> from lacuna_orchestration.audit.store import AuditStore
>>> from lacuna_orchestration.model import AuditRecord
>>> import tempfile
>>> store = AuditStore(make_engine("sqlite:///:memory:"), tenant="acme")
>>> store.create_schema()
>>> _ = store.append(AuditRecord("ana", "gate", "wh::orders"))
>>> log = CheckpointLog(tempfile.mkdtemp(), "acme", HmacKey(b"k" * 32))
>>> write_checkpoint(store, log).seq
1
>>> from lacuna_orchestration.audit.verify import verify
>>> verify(store, checkpoints=log).ok
True
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

from lacuna_orchestration.audit.chain import GENESIS_HASH, ChainHead
from lacuna_orchestration.audit.store import AUDIT_COLUMNS, AuditStore, ChainScan
from lacuna_orchestration.errors import AuditIntegrityError, ConfigError, StoreError
from lacuna_orchestration.model import format_timestamp, utcnow

if TYPE_CHECKING:
    from lacuna_orchestration.audit.verify import VerifyReport

try:  # POSIX: serialise writers of one log across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer per log, by deployment
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Checkpoint",
    "CheckpointKey",
    "CheckpointLog",
    "Ed25519Key",
    "HmacKey",
    "MalformedCheckpoint",
    "generate_key",
    "load_key",
    "parse_key",
    "write_checkpoint",
]

FORMAT_VERSION = 1
DOMAIN = b"lacuna-audit-checkpoint-v1\n"
"""Prefixed to every signed message, so a checkpoint key signs nothing else by accident."""

MIN_HMAC_KEY_BYTES = 32
_HASH = re.compile(r"^[0-9a-f]{64}$")
_HASH_COLUMN = AUDIT_COLUMNS.index("hash")
_ID_COLUMN = AUDIT_COLUMNS.index("record_id")


# -- keys --------------------------------------------------------------------------------------


class CheckpointKey(Protocol):
    """Signs and verifies checkpoint bodies. ``key_id`` names the key in each checkpoint so a
    verifier holding several keys (rotation) knows which one to use."""

    algorithm: str
    key_id: str

    @property
    def can_sign(self) -> bool: ...

    def sign(self, message: bytes) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...


class HmacKey:
    """HMAC-SHA256 with a shared secret (at least 32 bytes). Whoever can verify can sign."""

    algorithm = "hmac-sha256"

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_HMAC_KEY_BYTES:
            raise ConfigError(
                f"an HMAC checkpoint key needs at least {MIN_HMAC_KEY_BYTES} bytes of secret, "
                f"got {len(secret)}"
            )
        self._secret = bytes(secret)
        # A hash of the secret under a fixed label: names the key without revealing it.
        self.key_id = hashlib.sha256(b"lacuna-checkpoint-key-id\n" + self._secret).hexdigest()[:16]

    @property
    def can_sign(self) -> bool:
        return True

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def verify(self, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(message), signature)

    def __repr__(self) -> str:
        return f"HmacKey(key_id={self.key_id!r})"  # never the secret


class Ed25519Key:
    """An Ed25519 key pair, or a public key alone (verification only)."""

    algorithm = "ed25519"

    def __init__(self, private_key: Any = None, public_key: Any = None) -> None:
        from cryptography.hazmat.primitives import serialization

        if private_key is None and public_key is None:
            raise ConfigError("an Ed25519 checkpoint key needs a private or a public key")
        self._private = private_key
        self._public = public_key if public_key is not None else private_key.public_key()
        raw = self._public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def generate(cls) -> Ed25519Key:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @property
    def can_sign(self) -> bool:
        return self._private is not None

    def public(self) -> Ed25519Key:
        """The verification-only half (what an auditor gets)."""
        return Ed25519Key(public_key=self._public)

    def sign(self, message: bytes) -> bytes:
        if self._private is None:
            raise ConfigError(
                f"checkpoint key {self.key_id} is a public key: it verifies, it cannot sign"
            )
        return bytes(self._private.sign(message))

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        if self._private is None:
            raise ConfigError(f"checkpoint key {self.key_id} has no private half")
        return bytes(
            self._private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return bytes(
            self._public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def __repr__(self) -> str:
        role = "private" if self.can_sign else "public"
        return f"Ed25519Key({role}, key_id={self.key_id!r})"


def parse_key(data: bytes, source: str = "key") -> CheckpointKey:
    """A key from its text: PEM private/public Ed25519 key, or an HMAC secret (hex when it is
    hex, the raw bytes otherwise). ``source`` names where it came from, for errors."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
            Ed25519PublicKey,
        )

        try:
            if b"PRIVATE KEY" in text.split(b"\n", 1)[0]:
                private = serialization.load_pem_private_key(text, password=None)
                if not isinstance(private, Ed25519PrivateKey):
                    raise ConfigError(f"{source}: not an Ed25519 private key")
                return Ed25519Key(private)
            public = serialization.load_pem_public_key(text)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{source}: unreadable PEM key: {err}") from None
        if not isinstance(public, Ed25519PublicKey):
            raise ConfigError(f"{source}: not an Ed25519 public key")
        return Ed25519Key(public_key=public)
    try:
        secret = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        secret = text
    try:
        return HmacKey(secret)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_key(path: str | os.PathLike[str]) -> CheckpointKey:
    """Read a checkpoint key file (see :func:`parse_key`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read checkpoint key {os.fspath(path)}: {err.strerror}") from None
    return parse_key(data, os.fspath(path))


def generate_key(path: str | os.PathLike[str], algorithm: str = "ed25519") -> CheckpointKey:
    """Write a new key to ``path`` (owner-only permissions) and return it. For Ed25519 the
    public half goes to ``<path>.pub``: hand that to auditors. Refuses to overwrite."""
    target = Path(path)
    if algorithm == "ed25519":
        key: CheckpointKey = Ed25519Key.generate()
        secret = key.private_pem()  # type: ignore[attr-defined]
    elif algorithm == "hmac-sha256":
        raw = os.urandom(MIN_HMAC_KEY_BYTES)
        key = HmacKey(raw)
        secret = raw.hex().encode() + b"\n"
    else:
        raise ConfigError(f"unknown checkpoint key algorithm {algorithm!r}: ed25519 or hmac-sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"checkpoint key {target} already exists; not overwriting it") from None
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    if isinstance(key, Ed25519Key):
        Path(f"{target}.pub").write_bytes(key.public_pem())
    return key


# -- checkpoints -------------------------------------------------------------------------------


class MalformedCheckpoint(ValueError):
    """A log line that is not a checkpoint (reported by the reader, never raised to callers)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed statement: "tenant's chain had ``count`` records ending at ``seq`` with hash
    ``head_hash`` at ``time``". ``prev`` is the SHA-256 of the previous line of the log."""

    tenant: str
    seq: int
    count: int
    head_hash: str
    time: str
    algorithm: str
    key_id: str
    prev: str
    signature: str = ""

    def body(self) -> dict[str, Any]:
        """Everything the signature covers."""
        return {
            "v": FORMAT_VERSION,
            "tenant": self.tenant,
            "seq": self.seq,
            "count": self.count,
            "head_hash": self.head_hash,
            "time": self.time,
            "alg": self.algorithm,
            "key_id": self.key_id,
            "prev": self.prev,
        }

    def message(self) -> bytes:
        return DOMAIN + orjson.dumps(self.body(), option=orjson.OPT_SORT_KEYS)

    def line(self) -> bytes:
        """The JSON line as written to the log (no newline)."""
        return orjson.dumps({**self.body(), "sig": self.signature}, option=orjson.OPT_SORT_KEYS)

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.seq, self.head_hash)

    @classmethod
    def from_line(cls, line: bytes) -> Checkpoint:
        """Parse one line; ``MalformedCheckpoint`` naming what is wrong."""
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            raise MalformedCheckpoint(f"not JSON ({err})") from None
        if not isinstance(data, dict):
            raise MalformedCheckpoint("not a JSON object")
        if data.get("v") != FORMAT_VERSION:
            raise MalformedCheckpoint(f"unknown checkpoint format {data.get('v')!r}")
        expected = {"v", "tenant", "seq", "count", "head_hash", "time", "alg", "key_id", "prev",
                    "sig"}  # fmt: skip
        if set(data) != expected:
            raise MalformedCheckpoint(
                f"fields {sorted(set(data) ^ expected)} missing or unexpected"
            )
        for name in ("tenant", "head_hash", "time", "alg", "key_id", "prev", "sig"):
            if not isinstance(data[name], str):
                raise MalformedCheckpoint(f"{name} is not a string")
        for name in ("seq", "count"):
            if type(data[name]) is not int or data[name] < 0:
                raise MalformedCheckpoint(f"{name} is not a non-negative integer")
        return cls(
            tenant=data["tenant"],
            seq=data["seq"],
            count=data["count"],
            head_hash=data["head_hash"],
            time=data["time"],
            algorithm=data["alg"],
            key_id=data["key_id"],
            prev=data["prev"],
            signature=data["sig"],
        )


def _line_digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _tenant_file_name(tenant: str) -> str:
    """A file name that is the tenant when that is safe, and an unambiguous encoding of it
    otherwise (a tenant named ``../x`` must not write outside the directory)."""
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,100}", tenant):
        return f"{tenant}.jsonl"
    return f"tenant-{tenant.encode('utf-8').hex()}.jsonl"


@dataclass(frozen=True, slots=True)
class LogReading:
    """The checkpoints of a log that check out, in order, and the first problem (if any) that
    stopped the reading: lines after a bad line are not trusted."""

    checkpoints: tuple[Checkpoint, ...]
    problem: str = ""
    line: int | None = None


class CheckpointLog:
    """One tenant's checkpoint file and the keys that sign and verify it.

    ``keys``: the first one signs (it must be able to); any of them verifies, matched by
    ``key_id`` — keep old public keys here after a rotation.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        tenant: str,
        keys: CheckpointKey | Sequence[CheckpointKey],
    ) -> None:
        if not tenant or not isinstance(tenant, str):
            raise ConfigError(f"a checkpoint log needs a tenant, got {tenant!r}")
        self.directory = Path(directory)
        self.tenant = tenant
        self.keys: tuple[CheckpointKey, ...] = (
            tuple(keys) if isinstance(keys, Sequence) else (keys,)
        )
        if not self.keys:
            raise ConfigError("a checkpoint log needs at least one key")
        self.path = self.directory / _tenant_file_name(tenant)

    def __repr__(self) -> str:
        return f"CheckpointLog({str(self.path)!r}, keys={[k.key_id for k in self.keys]})"

    # -- reading --------------------------------------------------------------------------

    def read(self) -> LogReading:
        """Every line, checked: format, tenant, signature, the link to the line before, and
        order (``seq`` never goes down; the same ``seq`` means the same hash)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return LogReading(())
        except OSError as err:
            raise StoreError(f"cannot read checkpoint log {self.path}: {err.strerror}") from None
        return self._check_lines(data)

    def _check_lines(self, data: bytes) -> LogReading:
        by_id = {key.key_id: key for key in self.keys}
        good: list[Checkpoint] = []
        prev = GENESIS_HASH
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        # A line is written whole, newline included: no newline at the end means the last
        # write was torn (power loss) or the file was edited; that line is reported.

        def bad(number: int, problem: str) -> LogReading:
            return LogReading(tuple(good), f"{self.path} line {number}: {problem}", number)

        for number, line in enumerate(lines, 1):
            try:
                cp = Checkpoint.from_line(line)
            except MalformedCheckpoint as err:
                return bad(number, f"not a checkpoint: {err}")
            if number == len(lines) and not data.endswith(b"\n"):
                return bad(number, "the line is not terminated (a torn write or an edit)")
            if cp.tenant != self.tenant:
                return bad(number, f"checkpoint of tenant {cp.tenant!r}, not {self.tenant!r}")
            key = by_id.get(cp.key_id)
            if key is None:
                return bad(number, f"signed by unknown key {cp.key_id!r} (signature unverifiable)")
            if cp.algorithm != key.algorithm:
                return bad(number, f"algorithm {cp.algorithm!r} does not match key {cp.key_id}")
            try:
                signature = base64.b64decode(cp.signature, validate=True)
            except (binascii.Error, ValueError):
                return bad(number, "signature invalid (not base64)")
            if not key.verify(cp.message(), signature):
                return bad(number, "signature invalid (the checkpoint was altered or forged)")
            if cp.prev != prev:
                return bad(
                    number,
                    "does not link to the line before it (a checkpoint was removed, "
                    "inserted or moved)",
                )
            if not _HASH.match(cp.head_hash) or cp.count != cp.seq:
                return bad(number, "malformed checkpoint (head hash or count)")
            if good:
                last = good[-1]
                if cp.seq < last.seq:
                    return bad(number, f"goes back from seq {last.seq} to {cp.seq}")
                if cp.seq == last.seq and cp.head_hash != last.head_hash:
                    return bad(number, f"names another hash for seq {cp.seq} than the line before")
            good.append(cp)
            prev = _line_digest(line)
        return LogReading(tuple(good))

    def latest(self) -> Checkpoint | None:
        """The last checkpoint, once the whole log checks out; ``AuditIntegrityError`` when it
        does not."""
        reading = self.read()
        if reading.problem:
            raise AuditIntegrityError(f"checkpoint log is not intact: {reading.problem}")
        return reading.checkpoints[-1] if reading.checkpoints else None

    # -- writing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        """The log file opened for appending, locked against other writers (processes)."""
        created = not self.path.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot open checkpoint log {self.path}: {err.strerror}") from None
        handle = os.fdopen(fd, "r+b", buffering=0)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            if created:
                _fsync_directory(self.directory)
            yield handle
        finally:
            handle.close()  # releases the lock

    def append(self, build: Any) -> Checkpoint:
        """Under the writers' lock: check the log, call ``build(latest) -> Checkpoint | None``
        (unsigned; ``None`` = nothing to write), link, sign and append it durably."""
        key = self.keys[0]
        if not key.can_sign:
            raise ConfigError(f"checkpoint key {key.key_id} cannot sign (a public key)")
        with self._locked() as handle:
            handle.seek(0)
            data = handle.read()
            reading = self._check_lines(data)
            if reading.problem:
                raise AuditIntegrityError(
                    f"refusing to extend a checkpoint log that is not intact: {reading.problem}"
                )
            latest = reading.checkpoints[-1] if reading.checkpoints else None
            draft: Checkpoint | None = build(latest)
            if draft is None:
                assert latest is not None
                return latest
            last_line = data.rstrip(b"\n").rsplit(b"\n", 1)[-1] if data else b""
            unsigned = dataclasses.replace(
                draft,
                tenant=self.tenant,
                algorithm=key.algorithm,
                key_id=key.key_id,
                prev=_line_digest(last_line) if data else GENESIS_HASH,
                signature="",
            )
            signature = base64.b64encode(key.sign(unsigned.message())).decode("ascii")
            signed = dataclasses.replace(unsigned, signature=signature)
            try:
                handle.write(signed.line() + b"\n")
                os.fsync(handle.fileno())
            except OSError as err:
                raise StoreError(
                    f"cannot write checkpoint log {self.path}: {err.strerror}"
                ) from None
            return signed

    # -- verification ---------------------------------------------------------------------

    def check(self, snapshot: ChainScan, report: VerifyReport) -> VerifyReport:
        """Hold the chain walk's ``report`` (made from ``snapshot``) against this log.

        The report's first problem stays first unless a checkpoint shows an earlier one. A
        problem in the log itself is added to the message, and fails an otherwise clean
        report: a log that does not check out proves nothing either way.
        """
        reading = self.read()
        checkpoints = reading.checkpoints
        found = _rewritten(snapshot, report, checkpoints)
        if found is None:
            found = _truncated(report, checkpoints)
        if found is None:
            found = report
        latest = checkpoints[-1].seq if checkpoints else None
        found = dataclasses.replace(found, checkpoints=len(checkpoints), checkpoint_seq=latest)
        if reading.problem:
            found = dataclasses.replace(
                found,
                ok=False,
                checkpoint_problem=reading.problem,
            )
        return found


def _hash_at(snapshot: ChainScan, seq: int) -> tuple[str, str] | None:
    """(hash, record id) of record ``seq`` in the snapshot, ``None`` when there is none."""
    row = next(iter(snapshot.rows(first_seq=seq, last_seq=seq)), None)
    snapshot.close()
    if row is None:
        return None
    return str(row[_HASH_COLUMN]), str(row[_ID_COLUMN])


def _rewritten(
    snapshot: ChainScan, report: VerifyReport, checkpoints: Sequence[Checkpoint]
) -> VerifyReport | None:
    """The first checkpoint whose record no longer has the signed hash, among those inside the
    verified prefix of the chain.

    Inside that prefix every record links to the one before it, so a record matching its
    checkpoint proves every earlier record unchanged too: matches form a prefix of the
    (ordered) checkpoints, and a binary search finds the first mismatch in O(log n) reads.
    """
    candidates = [c for c in checkpoints if 0 < c.seq <= report.count]
    lo, hi = 0, len(candidates)
    while lo < hi:  # invariant: candidates[:lo] match, candidates[hi:] do not
        mid = (lo + hi) // 2
        found = _hash_at(snapshot, candidates[mid].seq)
        if found is not None and found[0] == candidates[mid].head_hash:
            lo = mid + 1
        else:
            hi = mid
    if lo == len(candidates):
        return None
    cp = candidates[lo]
    found = _hash_at(snapshot, cp.seq)
    record_id = found[1] if found else None
    good = candidates[lo - 1] if lo > 0 else None
    good_seq = good.seq if good else 0
    first_suspect = good_seq + 1
    span = f"record {cp.seq}" if first_suspect == cp.seq else f"records {first_suspect}..{cp.seq}"
    return dataclasses.replace(
        report,
        ok=False,
        count=good_seq,
        head_hash=good.head_hash if good else GENESIS_HASH,
        first_bad_seq=cp.seq,
        first_bad_record_id=record_id,
        problem=(
            f"its hash is not the one checkpoint signed at {cp.time} attests: history was "
            f"rewritten and re-hashed within {span}"
            + (f" (the checkpoint at seq {good_seq} still agrees)" if good else "")
        ),
    )


def _truncated(report: VerifyReport, checkpoints: Sequence[Checkpoint]) -> VerifyReport | None:
    """A checkpoint attesting more records than the intact chain holds."""
    if not report.ok or not checkpoints:
        return None
    latest = checkpoints[-1]
    if latest.seq <= report.count:
        return None
    missing = report.count + 1
    return dataclasses.replace(
        report,
        ok=False,
        first_bad_seq=missing,
        first_bad_record_id=None,
        problem=(
            f"record {missing} is missing: the checkpoint signed at {latest.time} attests "
            f"{latest.count:,} records but the chain ends at {report.count} "
            f"(records {missing}..{latest.seq} were removed and the head row moved back)"
        ),
    )


def _fsync_directory(directory: Path) -> None:
    """Make a newly created file's directory entry durable (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- writing a checkpoint ------------------------------------------------------------------------


def write_checkpoint(
    store: AuditStore,
    log: CheckpointLog,
    *,
    now: datetime | None = None,
    force: bool = False,
) -> Checkpoint:
    """Sign the current head of ``store``'s chain into ``log`` and return the checkpoint.

    Never signs a chain it has not verified: the records since the latest checkpoint are
    walked (all of them the first time) and the record at the latest checkpoint must still
    carry its signed hash; otherwise ``AuditIntegrityError`` and nothing is written. When
    nothing was appended since the latest checkpoint, that one is returned unless ``force``
    (a fresh checkpoint then re-attests the same head at a new time).
    """
    from lacuna_orchestration.audit.verify import verify_after

    if log.tenant != store.tenant:
        raise ConfigError(
            f"checkpoint log is for tenant {log.tenant!r}, the store for {store.tenant!r}"
        )
    moment = format_timestamp(now or utcnow())

    def build(latest: Checkpoint | None) -> Checkpoint | None:
        with store.scan() as snapshot:
            head = snapshot.head or ChainHead.genesis()
            after = latest.head if latest is not None else ChainHead.genesis()
            if head.seq < after.seq:
                raise AuditIntegrityError(
                    f"audit chain {store.tenant!r} ends at seq {head.seq} but the checkpoint "
                    f"of {latest.time if latest else ''} attests {after.seq}: the tail was "
                    "truncated; run `lacuna audit verify`",
                    seq=head.seq + 1,
                )
            if latest is not None and head == after and not force:
                return None
            report = verify_after(snapshot, after, tenant=store.tenant)
            if not report.ok:
                raise AuditIntegrityError(
                    f"not signing a checkpoint over a broken chain: {report.message}",
                    seq=report.first_bad_seq,
                    record_id=report.first_bad_record_id,
                )
        return Checkpoint(
            tenant=store.tenant,
            seq=head.seq,
            count=head.seq,
            head_hash=head.hash,
            time=moment,
            algorithm="",
            key_id="",
            prev="",
        )

    return log.append(build)
