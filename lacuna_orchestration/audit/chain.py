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
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.model import AuditRecord

__all__ = [
    "GENESIS_HASH",
    "ROW_FIELDS",
    "ChainHead",
    "SealedRecord",
    "body_bytes",
    "canonical_json",
    "encode",
    "iter_place",
    "link",
    "place",
    "place_rows",
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

ROW_FIELDS = (
    "tenant", "seq", "record_id", "timestamp", "actor", "action", "resource", "reason", "via",
    "run_id", "decision", "details", "prev_hash", "hash",
)  # fmt: skip
"""The order of the values :func:`place_rows` hands to its writer: the stores' column order
(``decision``/``details`` as their canonical JSON text)."""


def _linked_record_factory() -> Callable[..., AuditRecord]:
    """A constructor for linked records that bypasses the frozen dataclass ``__init__``.

    A frozen dataclass's ``__init__`` sets each of its 14 fields through
    ``object.__setattr__``, ~2 µs per record: more than hashing it, on the append path that
    makes millions. ``AuditRecord`` uses slots and has no ``__post_init__``, so writing the
    slots directly through their descriptors builds an equal object (tests hold it equal) in
    half the time. Should the model ever gain a ``__post_init__`` or lose its slots, the
    ordinary constructor is used instead.
    """
    slots = [AuditRecord.__dict__.get(name) for name in _FIELD_ORDER]
    if hasattr(AuditRecord, "__post_init__") or not all(
        isinstance(slot, types.MemberDescriptorType) for slot in slots
    ):
        return AuditRecord
    (
        set_actor, set_action, set_resource, set_reason, set_via, set_run_id, set_decision,
        set_details, set_tenant, set_record_id, set_timestamp, set_seq, set_prev, set_hash,
    ) = (slot.__set__ for slot in slots)  # type: ignore[union-attr]  # fmt: skip
    new = object.__new__

    def linked(
        actor: str, action: str, resource: str, reason: str, via: str, run_id: str,
        decision: Any, details: Any, tenant: str, record_id: str, timestamp: str, seq: int,
        prev_hash: str, digest: str,
    ) -> AuditRecord:  # fmt: skip
        record = new(AuditRecord)
        set_actor(record, actor)
        set_action(record, action)
        set_resource(record, resource)
        set_reason(record, reason)
        set_via(record, via)
        set_run_id(record, run_id)
        set_decision(record, decision)
        set_details(record, details)
        set_tenant(record, tenant)
        set_record_id(record, record_id)
        set_timestamp(record, timestamp)
        set_seq(record, seq)
        set_prev(record, prev_hash)
        set_hash(record, digest)
        return record

    return linked


_new_linked = _linked_record_factory()
_new_sealed = tuple.__new__  # SealedRecord(...) without the Python-level __new__ frame


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
    decision = record.decision
    if decision is not None and type(decision) is not dict:
        decision = dict(decision)
    details = record.details
    if type(details) is not dict:
        details = dict(details)
    if not _is_json(details):
        _check_json(details, "$.details")  # raises, naming the offending value
    if decision is not None and not _is_json(decision):
        _check_json(decision, "$.decision")
    try:
        decision_json = None if decision is None else _dumps_sorted(decision).decode()
        details_json = _dumps_sorted(details).decode()
    except orjson.JSONEncodeError as err:  # e.g. a lone surrogate, an int beyond 64 bits
        raise ValidationError(f"value cannot be written as canonical JSON: {err}") from None
    return _new_sealed(SealedRecord, (record, decision_json, details_json))  # type: ignore[no-any-return]


def place(encoded: Iterable[SealedRecord], head: ChainHead) -> list[SealedRecord]:
    """Number and hash already-encoded records one after another, the first right after
    ``head``."""
    return list(iter_place(encoded, head))


def iter_place(encoded: Iterable[SealedRecord], head: ChainHead) -> Iterator[SealedRecord]:
    """:func:`place`, one record at a time."""
    rows: list[tuple[Any, ...]] = []
    for item in encoded:
        [linked] = place_rows((item,), head, rows.append)
        row = rows.pop()
        yield _new_sealed(SealedRecord, (linked, row[10], row[11]))
        head = ChainHead(linked.seq, linked.hash)


def place_rows(
    encoded: Iterable[SealedRecord], head: ChainHead, write: Callable[[tuple[Any, ...]], object]
) -> list[AuditRecord]:
    """:func:`place` for a store: hand each record's row (:data:`ROW_FIELDS` order) to
    ``write`` as soon as it is hashed, and return the linked records.

    A store passes its ``COPY`` writer, so the database indexes the rows already sent while
    the next ones are hashed (the server works on one core while we hash on another). This
    loop is the append path's hot spot: everything is a local, each value is read once.
    """
    seq, prev = head.seq, head.hash
    sha256 = hashlib.sha256
    dumps = orjson.dumps
    fragment = orjson.Fragment
    fields = _CONTENT_FIELDS
    new = _new_linked
    linked: list[AuditRecord] = []
    keep = linked.append
    for record, decision_json, details_json in encoded:
        seq += 1
        (
            actor, action, resource, reason, via, run_id, decision, details, tenant, record_id,
            timestamp,
        ) = fields(record)  # fmt: skip
        # The body_bytes() layout, inlined, its keys written in sorted order: the nested
        # values are canonical fragments already, so orjson's key sort (~0.2 µs) is not needed
        # to produce the same bytes (tests compare with canonical_json on random content).
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
                }
            )
        ).hexdigest()
        write(
            (
                tenant, seq, record_id, timestamp, actor, action, resource, reason, via, run_id,
                decision_json, details_json, prev, digest,
            )
        )  # fmt: skip
        keep(
            new(
                actor, action, resource, reason, via, run_id, decision, details, tenant,
                record_id, timestamp, seq, prev, digest,
            )
        )  # fmt: skip
        prev = digest
    return linked


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
    decision, details = record.decision, record.details
    if type(details) is dict and (decision is None or type(decision) is dict):
        return  # the usual case; isinstance() against the Mapping ABC costs ~0.5 µs a record
    if decision is not None and not isinstance(decision, Mapping):
        raise ValidationError(
            f"audit record 'decision' must be a mapping or None, got {type(decision).__name__}"
        )
    if not isinstance(details, Mapping):
        raise ValidationError(
            f"audit record 'details' must be a mapping, got {type(details).__name__}"
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
