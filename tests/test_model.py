"""The domain model: ordering, parsing, immutability and JSON round trips."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.model import (
    AuditRecord,
    Classification,
    ColumnRef,
    DatasetRef,
    Decision,
    Evidence,
    Layer,
    Operation,
    OperationKind,
    Tier,
    derived_classification,
    derived_evidence,
    derived_tag,
    merge_evidence,
    normalize_tag,
)


def test_tiers_are_ordered() -> None:
    assert Tier.PUBLIC < Tier.INTERNAL < Tier.PROPRIETARY
    assert max(Tier.INTERNAL, Tier.PROPRIETARY) is Tier.PROPRIETARY
    assert Tier.PROPRIETARY.lowered() is Tier.INTERNAL and Tier.PUBLIC.lowered() is Tier.PUBLIC


@pytest.mark.parametrize("text", ["proprietary", " PROPRIETARY ", 2, Tier.PROPRIETARY])
def test_tier_parse(text) -> None:
    assert Tier.parse(text) is Tier.PROPRIETARY


def test_tier_parse_names_valid_tiers() -> None:
    with pytest.raises(ValidationError, match="PUBLIC, INTERNAL, PROPRIETARY"):
        Tier.parse("SECRET")


def test_operation_kind_parse() -> None:
    assert OperationKind.parse("JOIN") is OperationKind.JOIN
    with pytest.raises(ValidationError, match="valid kinds are read, join"):
        OperationKind.parse("teleport")


def test_tags() -> None:
    assert normalize_tag("customer-data") == "CUSTOMER_DATA"
    assert derived_tag("pii") == "DERIVED_FROM_PII"
    assert derived_tag("DERIVED_FROM_PII") == "DERIVED_FROM_PII"
    with pytest.raises(ValidationError):
        normalize_tag("--")


def test_frozen() -> None:
    c = Classification(Tier.PUBLIC)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.tier = Tier.INTERNAL  # type: ignore[misc]


def test_dataset_refs() -> None:
    ref = DatasetRef("postgres://db:5432", "public.customers")
    assert DatasetRef.from_key(ref.key) == ref
    assert ColumnRef.from_dict(ColumnRef(ref, "email").to_dict()).key.endswith("#email")
    with pytest.raises(ValidationError):
        DatasetRef("", "x")


def roundtrip(obj):
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


@given(
    tier=st.sampled_from(list(Tier)),
    tags=st.frozensets(st.sampled_from(["PII", "GDPR", "FINANCIAL"])),
    confidence=st.floats(0, 1),
    layer=st.sampled_from(list(Layer)),
    detail=st.text(max_size=20),
)
def test_classification_round_trip(tier, tags, confidence, layer, detail) -> None:
    c = Classification(tier, tags, confidence, layer,
                       (Evidence(layer, "rule.email", "t.email", detail, confidence),), "why")
    assert roundtrip(c) == c


def test_operation_decision_audit_round_trip() -> None:
    op = Operation(OperationKind.EXPORT, (DatasetRef("f", "a"),), DatasetRef("f", "/tmp/x"),
                   user="ann", purpose="billing", context={"k": [1]})
    assert roundtrip(op) == op
    d = Decision(allow=False, action="export", reasons=("r",), alternatives=("a",),
                 policy_id="p", classification=Classification(Tier.INTERNAL, frozenset({"X"})))
    assert roundtrip(d) == d
    rec = AuditRecord(actor="ann", action="gate.check", resource="f::a", decision=d.to_dict(),
                      details={"ü": "ß"}, seq=3, prev_hash="0" * 64, hash="ab")
    assert roundtrip(rec) == rec
    assert "hash" not in rec.body()


def test_confidence_bounds() -> None:
    with pytest.raises(ValidationError):
        Classification(Tier.PUBLIC, confidence=1.5)


def test_core_imports_no_orchestrator() -> None:
    code = (
        "import sys, lacuna_orchestration, lacuna_orchestration.governor, "
        "lacuna_orchestration.cli\n"
        "bad = [m for m in ('dagster', 'airflow', 'dbt', 'torch', 'sentence_transformers', "
        "'openai', 'fastapi') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_describe_is_cached_outside_the_value() -> None:
    """``describe()`` is computed once per instance and is no part of equality, hashing,
    ``repr``, JSON, pickling or ``dataclasses.replace``."""
    import pickle

    c = Classification(Tier.PROPRIETARY, frozenset({"PII", "EMAIL"}), 0.9, Layer.HEURISTIC)
    twin = Classification(Tier.PROPRIETARY, frozenset({"PII", "EMAIL"}), 0.9, Layer.HEURISTIC)
    assert c.describe() == "PROPRIETARY, tags: EMAIL, PII"
    assert c.describe() is c.describe()
    assert c == twin and hash(c) == hash(twin) and repr(c) == repr(twin)
    assert c.to_dict() == twin.to_dict() and "_description" not in c.to_dict()
    assert pickle.loads(pickle.dumps(c)) == c
    lowered = dataclasses.replace(c, tier=Tier.INTERNAL, tags=frozenset())
    assert lowered.describe() == "INTERNAL"
    assert Classification.unknown().describe() == "PUBLIC"


@given(
    tier=st.sampled_from(list(Tier)),
    tags=st.frozensets(st.sampled_from(["PII", "GDPR", "FINANCIAL"])),
    confidence=st.floats(0, 1),
    layer=st.sampled_from(list(Layer)),
)
def test_trusted_constructors_build_the_same_values(tier, tags, confidence, layer) -> None:
    item = derived_evidence(layer, "rule.email", "t.email", "why", confidence)
    assert item == Evidence(layer, "rule.email", "t.email", "why", confidence)
    built = derived_classification(tier, tags, confidence, layer, (item,), "because")
    plain = Classification(tier, tags, confidence, layer, (item,), "because")
    assert built == plain and hash(built) == hash(plain) and repr(built) == repr(plain)
    assert built.to_dict() == plain.to_dict() and built.describe() == plain.describe()


def test_merge_evidence_drops_repeats_only() -> None:
    a = Evidence(Layer.HEURISTIC, "rule.email", "t.email", "x", 0.9)
    same_pair = Evidence(Layer.HEURISTIC, "rule.email", "t.email", "other detail", 0.9)
    b = Evidence(Layer.PROPAGATED, "f::p", "f::c", "join: PUBLIC", 1.0)
    assert merge_evidence((a, b), (b,)) == (a, b)
    assert merge_evidence((a,), (same_pair, a)) == (a, same_pair)
    assert merge_evidence((a, a), ()) == (a,)
    assert merge_evidence((), ()) == ()


def test_lowered_table() -> None:
    assert [t.lowered() for t in Tier] == [Tier.PUBLIC, Tier.PUBLIC, Tier.INTERNAL]
