"""The inheritance rules, ``effective`` and ``Classification.merge`` give exactly what their
plain definitions give — equal values and byte-identical JSON — on random inputs.

The shipped versions are tuned for propagation waves (trusted constructors, one pass over the
parents, a cached ``describe()``, a dedupe that skips hashing when no ``(source, target)`` pair
repeats); the references below are the rules written the obvious way, so any drift in tier,
tags, confidence, layer, evidence order or reasoning shows here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping

import pytest

from lacuna_orchestration.lineage.inheritance import (
    DERIVED_PREFIX,
    NEUTRAL_TAGS,
    ChildView,
    InheritanceRules,
    ParentView,
    effective,
)
from lacuna_orchestration.lineage.openlineage import ColumnSource
from lacuna_orchestration.model import (
    Classification,
    DatasetRef,
    Evidence,
    Layer,
    OperationKind,
    Tier,
    derived_tag,
)

RULES = InheritanceRules()
TAGS = ["PII", "EMAIL", "FINANCIAL", "PHI", "ANONYMIZED", "DERIVED_FROM_PII", "GDPR"]
LAYERS = [Layer.HEURISTIC, Layer.EMBEDDING, Layer.PROPAGATED, Layer.EXPLICIT, Layer.OVERRIDE]


def ref_merge(a: Classification, b: Classification, layer: Layer | None = None) -> Classification:
    top = a if a.tier >= b.tier else b
    evidence: list[Evidence] = []
    for item in a.evidence + b.evidence:
        if item not in evidence:
            evidence.append(item)
    return Classification(
        max(a.tier, b.tier), a.tags | b.tags,
        max(a.confidence, b.confidence) if a.tier == b.tier else top.confidence,
        layer or top.layer, tuple(evidence), ref_reasoning(a.reasoning, b.reasoning),
    )


def ref_reasoning(first: str, second: str) -> str:
    """The first text as it is, then every clause of the second it does not hold, once."""
    if not first:
        return second
    clauses = first.split("; ")
    text = first
    for clause in (second.split("; ") if second else []):
        if clause not in clauses:
            clauses.append(clause)
            text += "; " + clause
    return text


def ref_join(parents: Mapping[str, Classification], target: str,
             op: OperationKind = OperationKind.JOIN) -> Classification:
    known = {k: c for k, c in parents.items() if not c.is_unknown}
    unknown = sorted(k for k in parents if k not in known)
    tier = max((c.tier for c in known.values()), default=Tier.PUBLIC)
    tags = frozenset().union(*(c.tags for c in known.values()))
    evidence = tuple(
        Evidence(Layer.PROPAGATED, k, target, f"{op.value}: {known[k].describe()}",
                 known[k].confidence)
        for k in sorted(known)
    )
    reasoning = f"{op.value}: max tier and union of tags of {len(parents)} parent(s)"
    if unknown:
        reasoning += f"; unclassified upstream (treated as unknown): {', '.join(unknown)}"
    confidence = min((c.confidence for c in known.values()), default=0.0)
    return Classification(tier, tags, confidence, Layer.PROPAGATED, evidence, reasoning)


def ref_inherit(op: OperationKind, parents: Mapping[str, ParentView],
                child: ChildView) -> Classification:
    if not parents:
        return Classification.unknown("no upstream datasets")
    joined = ref_join({k: p.classification for k, p in parents.items()}, child.key, op)
    if op not in (OperationKind.AGGREGATE, OperationKind.ANONYMIZE):
        return joined
    masked = op is OperationKind.ANONYMIZE
    survivor = RULES.surviving_identifier(parents, child, allow_masked=masked)
    if survivor:
        reason = (f"anonymization not verified: {survivor} survives unmasked" if masked
                  else f"aggregate keeps individual-level column {survivor}: no downgrade")
        return Classification(joined.tier, joined.tags, joined.confidence, joined.layer,
                              joined.evidence, reason)
    if op is OperationKind.AGGREGATE:
        tags = frozenset(t if t in NEUTRAL_TAGS or t.startswith(DERIVED_PREFIX)
                         else derived_tag(t) for t in joined.tags)
        lowered = Tier(max(joined.tier.value - 1, 0))
        return Classification(
            lowered, tags, joined.confidence, Layer.PROPAGATED, joined.evidence,
            f"aggregate without individual-level columns: {joined.tier.name} lowered to "
            f"{lowered.name}, tags kept as DERIVED_FROM_*",
        )
    tags = frozenset({"ANONYMIZED"} | {derived_tag(t) for t in joined.tags
                                       if t not in NEUTRAL_TAGS})
    return Classification(
        min(joined.tier, Tier.INTERNAL), tags, joined.confidence, Layer.PROPAGATED,
        joined.evidence, "verified anonymization: every sensitive column masked, hashed or dropped",
    )


def ref_effective(explicit: Classification | None, own: Classification | None,
                  inherited: list[Classification]) -> Classification:
    parts = [c for c in (explicit, own, *inherited) if c is not None and not c.is_unknown]
    if not parts:
        return Classification.unknown("no classification evidence for this dataset")
    result = parts[0]
    for part in parts[1:]:
        result = ref_merge(result, part)
    if explicit is not None and not explicit.is_unknown and result.tier == explicit.tier:
        layer = Layer.OVERRIDE if explicit.layer is Layer.OVERRIDE else Layer.EXPLICIT
        result = Classification(result.tier, result.tags, result.confidence, layer,
                                result.evidence, result.reasoning)
    return result


def same(a: Classification, b: Classification) -> None:
    assert a == b
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert a.describe() == b.describe()


def _evidence(rng: random.Random, pool: list[Evidence]) -> tuple[Evidence, ...]:
    if pool and rng.random() < 0.3:
        return tuple(rng.choice(pool) for _ in range(rng.randint(1, 3)))  # repeats on purpose
    items = tuple(
        Evidence(rng.choice(LAYERS), f"rule.{rng.randrange(4)}", f"t.c{rng.randrange(4)}",
                 rng.choice(["", "x", "y"]), rng.choice([0.0, 0.5, 0.9]))
        for _ in range(rng.randrange(4))
    )
    pool.extend(items)
    return items


def _classification(rng: random.Random, pool: list[Evidence]) -> Classification:
    if rng.random() < 0.15:
        return Classification.unknown(rng.choice(["", "not yet"]))
    return Classification(
        Tier(rng.randrange(3)), frozenset(rng.sample(TAGS, rng.randrange(4))),
        rng.choice([0.0, -0.0, 0.3, 0.3, 0.8, 1.0]), rng.choice(LAYERS),
        _evidence(rng, pool), rng.choice(["", "why", "because"]),
    )


@pytest.mark.parametrize("seed", range(300))
def test_rules_match_their_plain_definitions(seed: int) -> None:
    rng = random.Random(seed)
    pool: list[Evidence] = []
    child_ref = DatasetRef("f", "child")
    parents = {}
    for i in rng.sample(range(12), rng.randint(0, 6)):
        key = f"f::p{i}"
        columns = {f"c{j}": _classification(rng, pool) for j in range(rng.randrange(3))}
        parents[key] = ParentView(key, _classification(rng, pool), columns)
    lineage = {
        f"c{j}": tuple(
            ColumnSource(DatasetRef.from_key(rng.choice([*parents, "f::elsewhere"])),
                         f"c{rng.randrange(3)}",
                         rng.choice(["IDENTITY", "AGGREGATION", "MASKED", "INDIRECT"]),
                         rng.random() < 0.3)
            for _ in range(rng.randint(1, 2))
        )
        for j in range(rng.randrange(3))
    } if rng.random() < 0.5 else {}
    child = ChildView(child_ref.key,
                      {f"c{j}": _classification(rng, pool) for j in range(rng.randrange(3))},
                      lineage)
    inherited = []
    for op in OperationKind:
        got = RULES.inherit(op, parents, child)
        same(got, ref_inherit(op, parents, child))
        inherited.append(got)
    a, b = _classification(rng, pool), _classification(rng, pool)
    same(a.merge(b), ref_merge(a, b))
    same(a.merge(b, layer=Layer.EXPLICIT), ref_merge(a, b, Layer.EXPLICIT))
    explicit = _classification(rng, pool) if rng.random() < 0.4 else None
    own = _classification(rng, pool) if rng.random() < 0.8 else None
    chosen = rng.sample(inherited, rng.randrange(3))
    same(effective(explicit=explicit, own=own, inherited=chosen),
         ref_effective(explicit, own, chosen))


def test_zero_confidences_keep_the_parents_order_not_the_sorted_one() -> None:
    """``min`` keeps the first of two equal confidences; 0.0 and -0.0 are equal but print
    differently, so the join must take them in the parents' order as it always did."""
    pos = Classification(Tier.INTERNAL, frozenset({"X"}), 0.0, Layer.HEURISTIC)
    neg = Classification(Tier.INTERNAL, frozenset({"Y"}), -0.0, Layer.HEURISTIC)
    for parents in ({"f::b": pos, "f::a": neg}, {"f::b": neg, "f::a": pos}):
        same(RULES.for_join(parents, target="t"), ref_join(parents, "t"))


def test_reasoning_merges_like_its_plain_definition() -> None:
    """``merge_reasoning`` (with its one-clause shortcut) against ``ref_reasoning`` on random
    texts of repeated, overlapping and prefix-sharing clauses; merging again changes nothing."""
    from lacuna_orchestration.model import merge_reasoning

    rnd = random.Random(11)
    clauses = ["a", "b", "ab", "a b", "declared", "declared by the producer", "x; y"]
    for _ in range(20_000):
        first = "; ".join(rnd.sample(clauses, rnd.randint(0, 3)))
        second = "; ".join(rnd.sample(clauses, rnd.randint(0, 3)))
        merged = merge_reasoning(first, second)
        assert merged == ref_reasoning(first, second), (first, second)
        assert merge_reasoning(merged, second) == merged
