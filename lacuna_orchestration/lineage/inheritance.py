"""How a dataset's classification follows from its parents — the inheritance rules.

* **join / filter / transform / read / export** — the output is at least as sensitive as its
  most sensitive parent: max tier, union of tags.
* **aggregate** — lowers the tier by one step *only when no individual-level column survives*
  into the output, and renames every inherited tag ``T`` to ``DERIVED_FROM_T`` so the history
  stays visible; if an identifier survives, it is a transform.
* **anonymize** — ``INTERNAL`` + ``ANONYMIZED`` (never above what the parents were) *only when
  every sensitive parent column was masked, hashed or dropped*; otherwise it is a transform and
  the reasoning says which column survived.

Explicit labels (dbt ``meta``, Dagster tags, steward overrides) are floors combined by
``effective()``: inference may raise them, never lower them.

>>> pii = Classification(Tier.PROPRIETARY, frozenset({"PII"}), 0.95, Layer.HEURISTIC)
>>> fin = Classification(Tier.INTERNAL, frozenset({"FINANCIAL"}), 0.95, Layer.HEURISTIC)
>>> InheritanceRules().for_join({"c": pii, "s": fin}, target="a").describe()
'PROPRIETARY, tags: FINANCIAL, PII'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter

from lacuna_orchestration.lineage.openlineage import ColumnSource
from lacuna_orchestration.model import (
    DERIVED_PREFIX,
    Classification,
    Evidence,
    Layer,
    OperationKind,
    Tier,
    derived_classification,
    derived_evidence,
    derived_tag,
    slot_setter,
)

__all__ = ["SENSITIVE_TAGS", "InheritanceRules", "ParentView"]

# Tags that mark individual-level or regulated data: what anonymization must remove and what an
# aggregate must not let through.
SENSITIVE_TAGS = frozenset(
    {"PII", "PHI", "PCI", "SSN", "EMAIL", "PHONE", "CONTACT", "GDPR", "GDPR_SPECIAL_CATEGORY",
     "CREDENTIALS", "HEALTH", "BIOMETRIC", "NATIONAL_ID", "LOCATION"}
)
NEUTRAL_TAGS = frozenset({"ANONYMIZED", "AGGREGATED", "PUBLIC_REFERENCE"})
MASKED_KINDS = frozenset({"MASKED", "HASH", "HASHED"})
# "join: " once per kind rather than ``op.value`` (an enum property) once per parent.
_OPERATION_LABELS = {op: f"{op.value}: " for op in OperationKind}
_evidence_source = attrgetter("source")
# Every aggregate and anonymization of a wave renames the same few tags, and ``derived_tag``
# normalizes with a regular expression first. Tags are set members, so always hashable.
_derived_tag = lru_cache(maxsize=4096)(derived_tag)


def is_sensitive(c: Classification) -> bool:
    return not _no_sensitive_tag(c.tags)


# ``isdisjoint`` answers without building the intersection ``c.tags & SENSITIVE_TAGS`` would.
_no_sensitive_tag = SENSITIVE_TAGS.isdisjoint


@dataclass(frozen=True, slots=True)
class ParentView:
    """What the rules need to know about one parent: its effective classification and the
    classification of each of its columns."""

    key: str
    classification: Classification
    columns: Mapping[str, Classification] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChildView:
    """What the rules need to know about the output itself."""

    key: str
    columns: Mapping[str, Classification] = field(default_factory=dict)
    column_lineage: Mapping[str, tuple[ColumnSource, ...]] = field(default_factory=dict)


# Trusted constructors for ``LineageGraph.compute``, which builds one ``ParentView`` per parent
# and one ``ChildView`` per recomputed dataset: the frozen dataclasses' ``__init__`` assigns each
# field through ``object.__setattr__``; the slots' own descriptors do the same, 2-3x cheaper.
_new_object = object.__new__
_set_parent_key = slot_setter(ParentView, "key")
_set_parent_classification = slot_setter(ParentView, "classification")
_set_parent_columns = slot_setter(ParentView, "columns")
_set_child_key = slot_setter(ChildView, "key")
_set_child_columns = slot_setter(ChildView, "columns")
_set_child_lineage = slot_setter(ChildView, "column_lineage")


def parent_view(key: str, classification: Classification,
                columns: Mapping[str, Classification]) -> ParentView:
    """``ParentView(key, classification, columns)``, built without the dataclass ``__init__``."""
    view: ParentView = _new_object(ParentView)
    _set_parent_key(view, key)
    _set_parent_classification(view, classification)
    _set_parent_columns(view, columns)
    return view


def child_view(key: str, columns: Mapping[str, Classification],
               column_lineage: Mapping[str, tuple[ColumnSource, ...]]) -> ChildView:
    """``ChildView(key, columns, column_lineage)``, built without the dataclass ``__init__``."""
    view: ChildView = _new_object(ChildView)
    _set_child_key(view, key)
    _set_child_columns(view, columns)
    _set_child_lineage(view, column_lineage)
    return view


class InheritanceRules:
    """The rules as overridable methods, one per operation kind (``for_<kind>``)."""

    def inherit(self, op: OperationKind, parents: Mapping[str, ParentView], child: ChildView) -> (
        Classification
    ):
        if not parents:
            return Classification.unknown("no upstream datasets")
        if op is OperationKind.AGGREGATE:
            return self.for_aggregate(parents, child)
        if op is OperationKind.ANONYMIZE:
            return self.for_anonymize(parents, child)
        return self.for_join(
            {k: p.classification for k, p in parents.items()}, target=child.key, op=op
        )

    def for_join(
        self,
        parents: Mapping[str, Classification],
        *,
        target: str,
        op: OperationKind = OperationKind.JOIN,
    ) -> Classification:
        """Max tier and union of tags over every parent (also filter, transform, export)."""
        # One pass in the parents' own order (``min`` of the confidences keeps the first of
        # two equal ones, 0.0 or -0.0, as it always did), then evidence sorted by parent key.
        # Run once per dataset of a propagation wave, for ~4 parents each: kept lean.
        tier = Tier.PUBLIC
        tags: set[str] = set()
        evidence: list[Evidence] = []
        unknown: list[str] = []
        lowest = 0.0
        label = _OPERATION_LABELS[op]
        propagated, unknown_layer = Layer.PROPAGATED, Layer.UNKNOWN
        for key, c in parents.items():
            if c.layer is unknown_layer and c.is_unknown:
                unknown.append(key)
                continue
            if c.tier > tier:  # noqa: PLR1730 - max() is a call, and this runs per parent
                tier = c.tier
            tags.update(c.tags)
            confidence = c.confidence
            if not evidence or confidence < lowest:
                lowest = confidence
            evidence.append(
                derived_evidence(propagated, key, target, label + c.describe(), confidence)
            )
        if len(evidence) > 1:
            evidence.sort(key=_evidence_source)
        reasoning = f"{label}max tier and union of tags of {len(parents)} parent(s)"
        if unknown:
            unknown.sort()
            reasoning += f"; unclassified upstream (treated as unknown): {', '.join(unknown)}"
        return derived_classification(
            tier, frozenset(tags), lowest, propagated, tuple(evidence), reasoning
        )

    for_filter = for_join
    for_transform = for_join

    def for_aggregate(self, parents: Mapping[str, ParentView], child: ChildView) -> Classification:
        joined = self.inherit_as_transform(parents, child, OperationKind.AGGREGATE)
        survivor = self.surviving_identifier(parents, child)
        if survivor:
            return _with_reason(
                joined, f"aggregate keeps individual-level column {survivor}: no downgrade"
            )
        tags = frozenset(
            t if t in NEUTRAL_TAGS or t.startswith(DERIVED_PREFIX) else _derived_tag(t)
            for t in joined.tags
        )
        return derived_classification(
            joined.tier.lowered(),
            tags,
            joined.confidence,
            Layer.PROPAGATED,
            joined.evidence,
            f"aggregate without individual-level columns: {joined.tier.name} lowered to "
            f"{joined.tier.lowered().name}, tags kept as DERIVED_FROM_*",
        )

    def for_anonymize(self, parents: Mapping[str, ParentView], child: ChildView) -> Classification:
        joined = self.inherit_as_transform(parents, child, OperationKind.ANONYMIZE)
        survivor = self.surviving_identifier(parents, child, allow_masked=True)
        if survivor:
            return _with_reason(joined, f"anonymization not verified: {survivor} survives unmasked")
        tags = {"ANONYMIZED"} | {
            _derived_tag(t) for t in joined.tags if t not in NEUTRAL_TAGS
        }
        tier = min(joined.tier, Tier.INTERNAL)
        return derived_classification(
            tier,
            frozenset(tags),
            joined.confidence,
            Layer.PROPAGATED,
            joined.evidence,
            "verified anonymization: every sensitive column masked, hashed or dropped",
        )

    def inherit_as_transform(
        self, parents: Mapping[str, ParentView], child: ChildView, op: OperationKind
    ) -> Classification:
        return self.for_join({k: p.classification for k, p in parents.items()}, target=child.key,
                             op=op)

    def surviving_identifier(
        self, parents: Mapping[str, ParentView], child: ChildView, *, allow_masked: bool = False
    ) -> str:
        """Name an output column that still carries individual-level data, or ``""``.

        With column lineage, a sensitive input column reaching an output column unaggregated
        (and, for anonymization, unmasked) survives. Without it, an output column named like a
        sensitive parent column, or classified sensitive on its own, survives.
        """
        no_sensitive_tag = _no_sensitive_tag
        for column, c in child.columns.items():
            if not no_sensitive_tag(c.tags):
                return column
        sensitive_inputs = {
            (key, col)
            for key, parent in parents.items()
            for col, cc in parent.columns.items()
            if not no_sensitive_tag(cc.tags)
        }
        if child.column_lineage:
            for out_col, sources in child.column_lineage.items():
                for src in sources:
                    if (src.dataset.key, src.column) not in sensitive_inputs:
                        continue
                    if src.transformation in ("AGGREGATION", "INDIRECT"):
                        continue
                    if allow_masked and (src.masking or src.transformation in MASKED_KINDS):
                        continue
                    return out_col
            return ""
        sensitive_names = {col.lower() for _, col in sensitive_inputs}
        for column in child.columns:
            if column.lower() in sensitive_names:
                return column
        return ""


def _with_reason(c: Classification, reason: str) -> Classification:
    return derived_classification(c.tier, c.tags, c.confidence, c.layer, c.evidence, reason)


def effective(
    *, explicit: Classification | None, own: Classification | None,
    inherited: Iterable[Classification]
) -> Classification:
    """Combine floors, the dataset's own evidence and what its parents pass down: every
    part that is not unknown merged in that order (once per dataset of a wave, so the test
    for unknown is ``is_unknown`` inlined behind its cheapest clause)."""
    result: Classification | None = None
    unknown_layer = Layer.UNKNOWN
    for part in (explicit, own, *inherited):
        if part is None or (part.layer is unknown_layer and not part.tags
                            and part.confidence == 0.0):
            continue
        result = part if result is None else result.merge(part)
    if result is None:
        return Classification.unknown("no classification evidence for this dataset")
    if explicit is not None and not explicit.is_unknown and result.tier == explicit.tier:
        layer = Layer.EXPLICIT if explicit.layer is not Layer.OVERRIDE else Layer.OVERRIDE
        result = derived_classification(result.tier, result.tags, result.confidence, layer,
                                        result.evidence, result.reasoning)
    return result
