"""Canonical JSON, record hashes and linking (no database)."""

from __future__ import annotations

import dataclasses
import doctest
import enum
import hashlib
import importlib
import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from audit_helpers import make_record, make_records
from hypothesis import given, settings
from hypothesis import strategies as st

import lacuna_orchestration.audit as audit_package
from lacuna_orchestration.audit.chain import (
    GENESIS_HASH,
    ChainHead,
    body_bytes,
    canonical_json,
    encode,
    link,
    place,
    record_hash,
)
from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.model import AuditRecord


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 2


def test_canonical_json_sorts_keys_recursively_without_whitespace() -> None:
    a = {"b": 1, "a": {"z": [1, {"y": 2, "x": 1}], "c": None}}
    b = {"a": {"c": None, "z": [1, {"x": 1, "y": 2}]}, "b": 1}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == b'{"a":{"c":null,"z":[1,{"x":1,"y":2}]},"b":1}'


def test_canonical_json_writes_unicode_as_utf8_and_escapes_controls() -> None:
    assert canonical_json({"k": "é✓漢"}) == '{"k":"é✓漢"}'.encode()
    assert canonical_json({"k": 'a"b\\c\n'}) == b'{"k":"a\\"b\\\\c\\n"}'


def test_canonical_json_accepts_int_and_str_enums_as_their_values() -> None:
    assert canonical_json({"c": Colour.RED, "l": Level.HIGH}) == b'{"c":"red","l":2}'


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), "datetime"),
        ({1, 2}, "set"),
        (uuid.UUID(int=1), "UUID"),
        (b"raw", "bytes"),
        (object(), "object"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
    ],
)
def test_canonical_json_rejects_non_json_values_naming_where(value: Any, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment) as err:
        canonical_json({"outer": [{"inner": value}]})
    assert "$.outer[0].inner" in str(err.value)


def test_canonical_json_rejects_non_string_keys_and_lone_surrogates() -> None:
    with pytest.raises(ValidationError, match="keys must be strings"):
        canonical_json({1: "x"})
    with pytest.raises(ValidationError, match="canonical JSON"):
        canonical_json({"k": "\ud800"})


def test_record_hash_is_sha256_of_the_canonical_body() -> None:
    record = make_record(1)
    expected = hashlib.sha256(canonical_json(record.body())).hexdigest()
    assert record_hash(record) == expected
    assert len(expected) == 64


def test_record_hash_does_not_depend_on_key_order() -> None:
    one = make_record(1, decision={"a": 1, "b": [1, 2]}, details={"x": "é", "y": None})
    two = dataclasses.replace(one, decision={"b": [1, 2], "a": 1}, details={"y": None, "x": "é"})
    assert record_hash(one) == record_hash(two)


@pytest.mark.parametrize(
    "field",
    [f.name for f in dataclasses.fields(AuditRecord) if f.name != "hash"],
)
def test_every_field_but_hash_changes_the_hash(field: str) -> None:
    record = make_record(1)
    value = getattr(record, field)
    if isinstance(value, int):
        changed: Any = value + 1
    elif isinstance(value, str):
        changed = value + "x"
    elif value is None:
        changed = {"new": True}
    else:
        changed = {**value, "extra": 1}
    assert record_hash(dataclasses.replace(record, **{field: changed})) != record_hash(record)
    assert record_hash(dataclasses.replace(record, hash="f" * 64)) == record_hash(record)


def test_link_numbers_and_chains_records_after_the_head() -> None:
    records = make_records(5)
    first = link(records[:2], ChainHead.genesis())
    rest = link(records[2:], ChainHead(first[-1].seq, first[-1].hash))
    linked = first + rest
    assert [r.seq for r in linked] == [1, 2, 3, 4, 5]
    assert linked[0].prev_hash == GENESIS_HASH == "0" * 64
    for before, after in itertools.pairwise(linked):
        assert after.prev_hash == before.hash
    for record in linked:
        assert record.hash == record_hash(record)
    # the inputs are untouched (frozen records are copied, not mutated)
    assert all(r.seq == 0 and r.hash == "" for r in records)


def test_link_ignores_the_inputs_own_position_fields() -> None:
    record = dataclasses.replace(make_record(1), seq=99, prev_hash="x" * 64, hash="y" * 64)
    [linked] = link([record], ChainHead(7, "a" * 64))
    assert (linked.seq, linked.prev_hash) == (8, "a" * 64)
    assert linked.hash == record_hash(linked)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"actor": 5}, "'actor' must be a string"),
        ({"reason": "nul\x00here"}, "NUL"),
        ({"details": ["not", "a", "mapping"]}, "'details' must be a mapping"),
        ({"decision": "allow"}, "'decision' must be a mapping"),
        ({"details": {"when": datetime(2026, 1, 1)}}, "datetime"),
    ],
)
def test_link_refuses_records_that_would_not_read_back_identically(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        link([make_record(1, **overrides)], ChainHead.genesis())


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


@settings(max_examples=150, deadline=None)
@given(
    decision=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    details=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    actor=texts,
    reason=texts,
    seq=st.integers(min_value=0, max_value=2**40),
)
def test_spliced_fast_path_equals_the_canonical_definition(
    decision: dict[str, Any] | None, details: dict[str, Any], actor: str, reason: str, seq: int
) -> None:
    """The append and verify paths splice stored JSON text into the body; it must be exactly
    ``canonical_json(record.body())`` for any content."""
    record = AuditRecord(actor, "gate", "wh::t", reason=reason, decision=decision, details=details)
    [sealed] = place([encode(record)], ChainHead(seq, "c" * 64))
    linked = sealed.record
    assert linked.hash == record_hash(linked)
    spliced = body_bytes(
        seq=linked.seq,
        tenant=linked.tenant,
        record_id=linked.record_id,
        timestamp=linked.timestamp,
        actor=linked.actor,
        action=linked.action,
        resource=linked.resource,
        reason=linked.reason,
        via=linked.via,
        run_id=linked.run_id,
        decision_json=sealed.decision_json,
        details_json=sealed.details_json,
        prev_hash=linked.prev_hash,
    )
    assert spliced == canonical_json(linked.body())


@pytest.mark.parametrize("name", ["", ".chain", ".store", ".verify", ".batcher"])
def test_docstring_examples_run(name: str) -> None:
    # importlib: the package's ``verify`` attribute is the function, not the module
    module = importlib.import_module("lacuna_orchestration.audit" + name)
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


def test_public_surface_imports_once_each() -> None:
    names = audit_package.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(audit_package, name) is not None
