"""The hash chain: canonical JSON, the SHA-256 of one record, and linking records to a head.

A record's hash is ``sha256(canonical_json(record.body()))`` and the body includes ``seq`` and
``prev_hash``, so every record commits to its position and to its predecessor: changing,
removing, reordering or inserting a record breaks a link that :mod:`.verify` can name.

Canonical JSON is orjson with sorted keys, UTF-8, no whitespace. Only JSON values are accepted
(``str``, ``int``, finite ``float``, ``bool``, ``None``, lists/tuples, dicts with ``str`` keys):
anything else would be coerced silently by a serializer (a ``datetime``, a ``NaN`` written as
``null``) and the stored record would no longer be the record that was hashed.

>>> records = [AuditRecord("ana", "gate", "wh::t"), AuditRecord("bo", "gate", "wh::u")]
>>> first, second = link(records, ChainHead.genesis())
>>> (first.seq, second.seq, second.prev_hash == first.hash, record_hash(second) == second.hash)
(1, 2, True, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.model import AuditRecord

__all__ = [
    "GENESIS_HASH",
    "ChainHead",
    "SealedRecord",
    "body_bytes",
    "canonical_json",
    "encode",
    "iter_place",
    "link",
    "place",
    "record_hash",
]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of a chain's first record (and the head hash of an empty chain)."""

_SORT = orjson.OPT_SORT_KEYS
_TEXT_FIELDS = (
    "tenant", "record_id", "timestamp", "actor", "action", "resource", "reason", "via", "run_id",
)  # fmt: skip
_FIELD_ORDER = (
    "actor", "action", "resource", "reason", "via", "run_id", "decision", "details", "tenant",
    "record_id", "timestamp", "seq", "prev_hash", "hash",
)  # fmt: skip
_CONTENT_FIELDS = operator.attrgetter(*_FIELD_ORDER[:11])  # all but seq/prev_hash/hash
if tuple(f.name for f in dataclasses.fields(AuditRecord)) != _FIELD_ORDER:
    # iter_place() and body_bytes() spell the fields out, positionally, for speed; a new or
    # moved model field must be handled there too, or it would silently leave the hash.
    # Fail at import, not in production.
    raise ImportError("lacuna_orchestration.audit.chain does not match model.AuditRecord's fields")


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last link of a chain: its sequence number and hash (``0``/genesis when empty)."""

    seq: int
    hash: str

    @classmethod
    def genesis(cls) -> ChainHead:
        return cls(0, GENESIS_HASH)


class SealedRecord(NamedTuple):
    """A record (linked once :func:`place` returns it) plus the canonical JSON of its two
    free-form fields, exactly as stored.

    Stores keep ``decision`` and ``details`` as this text so that verification can splice it
    back into the body unchanged instead of parsing and re-serialising every row. (A named
    tuple: millions are made on the append path.)
    """

    record: AuditRecord
    decision_json: str | None
    details_json: str


def _dumps_sorted(obj: Any) -> bytes:
    """orjson with sorted keys and no validation: only for values already checked."""
    return orjson.dumps(obj, option=_SORT)


def canonical_json(obj: Any) -> bytes:
    """The canonical bytes of a JSON value; raises ``ValidationError`` on anything else.

    >>> canonical_json({"b": 1, "a": ["é", None]})
    b'{"a":["\\xc3\\xa9",null],"b":1}'
    """
    _check_json(obj, "$")
    try:
        return orjson.dumps(obj, option=_SORT)
    except orjson.JSONEncodeError as err:  # e.g. a lone surrogate, an int beyond 64 bits
        raise ValidationError(f"value cannot be written as canonical JSON: {err}") from None


def record_hash(record: AuditRecord) -> str:
    """SHA-256 (hex) of the canonical JSON of every field of ``record`` except ``hash``."""
    return hashlib.sha256(canonical_json(record.body())).hexdigest()


def body_bytes(
    *,
    seq: int,
    tenant: str,
    record_id: str,
    timestamp: str,
    actor: str,
    action: str,
    resource: str,
    reason: str,
    via: str,
    run_id: str,
    decision_json: str | bytes | None,
    details_json: str | bytes,
    prev_hash: str,
) -> bytes:
    """``canonical_json(record.body())`` built from already-canonical ``decision``/``details``
    text: the same bytes, without parsing that text again.

    This is the reference layout; :func:`iter_place` and the verifier inline the same dict in
    their loops (tests hold all three equal). Text that was not canonical simply produces
    different bytes, hence a hash mismatch.
    """
    return orjson.dumps(
        {
            "action": action,
            "actor": actor,
            "decision": None if decision_json is None else orjson.Fragment(decision_json),
            "details": orjson.Fragment(details_json),
            "prev_hash": prev_hash,
            "reason": reason,
            "record_id": record_id,
            "resource": resource,
            "run_id": run_id,
            "seq": seq,
            "tenant": tenant,
            "timestamp": timestamp,
            "via": via,
        },
        option=_SORT,
    )


def encode(record: AuditRecord) -> SealedRecord:
    """Validate ``record`` and write its ``decision``/``details`` as canonical JSON.

    Encoding does not depend on the record's place in the chain, so stores do it before they
    take the chain lock; :func:`place` then only numbers and hashes.
    """
    _check_fields(record)
    decision = None if record.decision is None else _plain(record.decision)
    details = _plain(record.details)
    if not _is_json(details):
        _check_json(details, "$.details")  # raises, naming the offending value
    if decision is not None and not _is_json(decision):
        _check_json(decision, "$.decision")
    try:
        decision_json = None if decision is None else _dumps_sorted(decision).decode()
        details_json = _dumps_sorted(details).decode()
    except orjson.JSONEncodeError as err:  # e.g. a lone surrogate, an int beyond 64 bits
        raise ValidationError(f"value cannot be written as canonical JSON: {err}") from None
    return SealedRecord(record, decision_json, details_json)


def place(encoded: Iterable[SealedRecord], head: ChainHead) -> list[SealedRecord]:
    """Number and hash already-encoded records one after another, the first right after
    ``head``."""
    return list(iter_place(encoded, head))


def iter_place(encoded: Iterable[SealedRecord], head: ChainHead) -> Iterator[SealedRecord]:
    """:func:`place`, one record at a time, so a store can stream each row to the database
    while the next one is hashed (the server works on one core while we hash on another)."""
    seq, prev = head.seq, head.hash
    sha256 = hashlib.sha256
    dumps = orjson.dumps
    fragment = orjson.Fragment
    fields = _CONTENT_FIELDS
    new = AuditRecord
    for record, decision_json, details_json in encoded:
        seq += 1
        (
            actor, action, resource, reason, via, run_id, decision, details, tenant, record_id,
            timestamp,
        ) = fields(record)  # fmt: skip
        # The body_bytes() layout, inlined: this loop is the append path's hot spot.
        digest = sha256(
            dumps(
                {
                    "action": action,
                    "actor": actor,
                    "decision": None if decision_json is None else fragment(decision_json),
                    "details": fragment(details_json),
                    "prev_hash": prev,
                    "reason": reason,
                    "record_id": record_id,
                    "resource": resource,
                    "run_id": run_id,
                    "seq": seq,
                    "tenant": tenant,
                    "timestamp": timestamp,
                    "via": via,
                },
                option=_SORT,
            )
        ).hexdigest()
        # Positional, in _FIELD_ORDER (checked at import): dataclasses.replace() would cost
        # more than the hash.
        linked = new(
            actor, action, resource, reason, via, run_id, decision, details, tenant, record_id,
            timestamp, seq, prev, digest,
        )  # fmt: skip
        yield SealedRecord(linked, decision_json, details_json)
        prev = digest


def link(records: Sequence[AuditRecord], head: ChainHead) -> list[AuditRecord]:
    """Return copies of ``records`` numbered ``head.seq + 1 ...``, each hashed over its
    predecessor. The input records' own ``seq``/``prev_hash``/``hash`` are ignored."""
    return [item.record for item in place(map(encode, records), head)]


def _check_fields(record: AuditRecord) -> None:
    """Typed fields must really be text: a number written to a TEXT column comes back as a
    string and would no longer hash the same. NUL cannot be stored by PostgreSQL."""
    texts = (
        record.tenant, record.record_id, record.timestamp, record.actor, record.action,
        record.resource, record.reason, record.via, record.run_id,
    )  # fmt: skip
    try:
        joined = "".join(texts)  # one C call checks every type and NUL on the hot path
    except TypeError:
        joined = None
    if joined is None or "\x00" in joined:
        for name, value in zip(_TEXT_FIELDS, texts, strict=True):
            if not isinstance(value, str):
                raise ValidationError(
                    f"audit record field {name!r} must be a string, got {type(value).__name__}"
                )
            if "\x00" in value:
                raise ValidationError(f"audit record field {name!r} contains a NUL character")
    if record.decision is not None and not isinstance(record.decision, Mapping):
        raise ValidationError(
            "audit record 'decision' must be a mapping or None, "
            f"got {type(record.decision).__name__}"
        )
    if not isinstance(record.details, Mapping):
        raise ValidationError(
            f"audit record 'details' must be a mapping, got {type(record.details).__name__}"
        )


_LEAVES = frozenset({str, int, bool, type(None)})


def _is_json(obj: Any) -> bool:
    """Fast structural check (no paths built): plain JSON values only. Leaves are tested
    inline rather than by recursion: this runs for every appended record."""
    kind = type(obj)
    if kind in _LEAVES:
        return True
    leaves = _LEAVES
    if kind is dict:
        for key, value in obj.items():
            if type(key) is not str:
                return False
            if type(value) not in leaves and not _is_json(value):
                return False
        return True
    if kind is list or kind is tuple:
        for value in obj:
            if type(value) not in leaves and not _is_json(value):
                return False
        return True
    if kind is float:
        return math.isfinite(obj)
    # Subclasses (StrEnum, IntEnum) serialise as their plain value and read back the same.
    return isinstance(obj, (str, int)) or (isinstance(obj, float) and math.isfinite(obj))


def _check_json(obj: Any, path: str) -> None:
    """Raise ``ValidationError`` naming the first non-JSON value and where it is (the slow
    path, taken only once :func:`_is_json` has said no)."""
    if _is_json(obj):
        return
    kind = type(obj)
    if kind is dict:
        for key, value in obj.items():
            if type(key) is not str:
                raise ValidationError(f"JSON object keys must be strings; {path} has {key!r}")
            _check_json(value, f"{path}.{key}")
    elif kind is list or kind is tuple:
        for index, value in enumerate(obj):
            _check_json(value, f"{path}[{index}]")
    elif isinstance(obj, float):
        raise ValidationError(f"JSON has no {obj!r}; found at {path}")
    else:
        raise ValidationError(f"{kind.__name__} is not a JSON value (at {path}); convert it first")


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return mapping if type(mapping) is dict else dict(mapping)
