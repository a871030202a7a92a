"""Each inheritance rule, and the property that a join never lowers a tier."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lacuna_orchestration.lineage.inheritance import (
    ChildView,
    InheritanceRules,
    ParentView,
    effective,
)
from lacuna_orchestration.lineage.openlineage import ColumnSource
from lacuna_orchestration.model import Classification, DatasetRef, Layer, OperationKind, Tier

RULES = InheritanceRules()
PII = Classification(Tier.PROPRIETARY, frozenset({"PII", "GDPR"}), 0.95, Layer.HEURISTIC)
FIN = Classification(Tier.INTERNAL, frozenset({"FINANCIAL"}), 0.95, Layer.HEURISTIC)
PLAIN = Classification(Tier.PUBLIC, frozenset(), 0.4, Layer.HEURISTIC)


def parents(**items: Classification) -> dict[str, ParentView]:
    return {k: ParentView(k, c, {"email": PII} if "PII" in c.tags else {}) for k, c in
            items.items()}


def test_join_is_max_tier_and_union_of_tags() -> None:
    out = RULES.inherit(OperationKind.JOIN, parents(customers=PII, sales=FIN), ChildView("a"))
    assert out.tier is Tier.PROPRIETARY
    assert out.tags == {"PII", "GDPR", "FINANCIAL"}
    assert out.layer is Layer.PROPAGATED
    assert {e.source for e in out.evidence} == {"customers", "sales"}


def test_filter_and_transform_inherit() -> None:
    for op in (OperationKind.FILTER, OperationKind.TRANSFORM, OperationKind.EXPORT):
        out = RULES.inherit(op, parents(customers=PII), ChildView("x"))
        assert (out.tier, out.tags) == (PII.tier, PII.tags)


def test_aggregate_downgrades_one_tier_and_keeps_derived_tags() -> None:
    child = ChildView("summary", {"region": PLAIN, "customer_count": PLAIN})
    out = RULES.inherit(OperationKind.AGGREGATE, parents(analysis=PII.merge(FIN)), child)
    assert out.tier is Tier.INTERNAL
    assert out.tags == {"DERIVED_FROM_PII", "DERIVED_FROM_GDPR", "DERIVED_FROM_FINANCIAL"}


def test_aggregate_with_surviving_identifier_does_not_downgrade() -> None:
    child = ChildView("summary", {"email": PII, "n": PLAIN})
    out = RULES.inherit(OperationKind.AGGREGATE, parents(analysis=PII), child)
    assert out.tier is Tier.PROPRIETARY
    assert "PII" in out.tags
    assert "email" in out.reasoning


def test_aggregate_surviving_identifier_through_column_lineage() -> None:
    src = DatasetRef("f", "x")
    child = ChildView("summary", {"contact": PLAIN},
                      {"contact": (ColumnSource(src, "email", "IDENTITY"),)})
    view = {src.key: ParentView(src.key, PII, {"email": PII})}
    assert RULES.inherit(OperationKind.AGGREGATE, view, child).tier is Tier.PROPRIETARY
    aggregated = ChildView("summary", {"n": PLAIN},
                           {"n": (ColumnSource(src, "email", "AGGREGATION"),)})
    assert RULES.inherit(OperationKind.AGGREGATE, view, aggregated).tier is Tier.INTERNAL


def test_anonymize_verified() -> None:
    hashed = Classification(Tier.INTERNAL, frozenset({"ANONYMIZED"}), 0.9, Layer.HEURISTIC)
    child = ChildView("anon", {"email_sha256": hashed, "country": PLAIN})
    out = RULES.inherit(OperationKind.ANONYMIZE, parents(customers=PII), child)
    assert out.tier is Tier.INTERNAL
    assert "ANONYMIZED" in out.tags and "PII" not in out.tags
    assert "DERIVED_FROM_PII" in out.tags


def test_anonymize_not_verified_when_a_sensitive_column_survives() -> None:
    child = ChildView("anon", {"email": PII})
    out = RULES.inherit(OperationKind.ANONYMIZE, parents(customers=PII), child)
    assert out.tier is Tier.PROPRIETARY
    assert "not verified" in out.reasoning


def test_anonymize_masking_in_column_lineage_counts() -> None:
    src = DatasetRef("f", "customers")
    view = {src.key: ParentView(src.key, PII, {"email": PII})}
    masked = ChildView("anon", {"contact": PLAIN},
                       {"contact": (ColumnSource(src, "email", "TRANSFORMATION", masking=True),)})
    clear = ChildView("anon", {"contact": PLAIN},
                      {"contact": (ColumnSource(src, "email", "TRANSFORMATION"),)})
    assert RULES.inherit(OperationKind.ANONYMIZE, view, masked).tier is Tier.INTERNAL
    assert RULES.inherit(OperationKind.ANONYMIZE, view, clear).tier is Tier.PROPRIETARY


def test_explicit_is_a_floor() -> None:
    floor = Classification(Tier.PROPRIETARY, frozenset({"CUSTOMER_DATA"}), 1.0, Layer.EXPLICIT)
    out = effective(explicit=floor, own=PLAIN, inherited=[FIN])
    assert out.tier is Tier.PROPRIETARY
    assert out.tags == {"CUSTOMER_DATA", "FINANCIAL"}
    assert out.layer is Layer.EXPLICIT


def test_unknown_parent_is_reported_not_public() -> None:
    out = RULES.for_join({"a": Classification.unknown(), "b": FIN}, target="x")
    assert "unclassified upstream" in out.reasoning and "a" in out.reasoning


classifications = st.builds(
    Classification,
    tier=st.sampled_from(list(Tier)),
    tags=st.frozensets(st.sampled_from(["PII", "PHI", "FINANCIAL", "GDPR", "X"]), max_size=3),
    confidence=st.floats(0.01, 1.0),
    layer=st.just(Layer.HEURISTIC),
)


@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4), classifications,
                       min_size=1, max_size=6))
def test_join_never_lowers_a_tier_nor_drops_a_tag(items: dict[str, Classification]) -> None:
    out = RULES.for_join(items, target="out")
    assert out.tier == max(c.tier for c in items.values())
    for c in items.values():
        assert c.tags <= out.tags


@given(classifications, classifications, classifications)
def test_effective_never_below_explicit(floor, own, inherited) -> None:
    explicit = Classification(floor.tier, floor.tags, 1.0, Layer.EXPLICIT)
    out = effective(explicit=explicit, own=own, inherited=[inherited])
    assert out.tier >= explicit.tier and explicit.tags <= out.tags
