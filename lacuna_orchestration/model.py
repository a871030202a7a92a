"""The domain model every other module speaks: tiers, tags, classifications, dataset references,
operations, decisions and audit records.

Every type here is frozen (hashable where it makes sense) and round-trips through plain JSON with
``to_dict()`` / ``from_dict()``, because the same values travel through OpenLineage facets, Rego
input documents, the HTTP API and the audit chain.

>>> c = Classification(tier=Tier.PROPRIETARY, tags=frozenset({"PII"}), confidence=0.95,
...                    layer=Layer.HEURISTIC)
>>> Classification.from_dict(c.to_dict()) == c
True
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, IntEnum, StrEnum
from typing import Any, cast

from lacuna_orchestration.errors import ValidationError

__all__ = [
    "AuditRecord",
    "Classification",
    "ColumnRef",
    "DatasetRef",
    "Decision",
    "Evidence",
    "Layer",
    "Operation",
    "OperationKind",
    "Tier",
    "derived_tag",
    "format_timestamp",
    "normalize_tag",
    "normalize_tags",
    "utcnow",
]


class Tier(IntEnum):
    """Sensitivity tiers, ordered so that ``max()`` is "the more sensitive"."""

    PUBLIC = 0
    INTERNAL = 1
    PROPRIETARY = 2

    @classmethod
    def parse(cls, value: str | int | Tier) -> Tier:
        """Accept ``"proprietary"``, ``"PROPRIETARY"``, ``2`` or a ``Tier``; name the valid
        tiers when the value is none of them (users type these in dbt ``meta`` and YAML)."""
        if isinstance(value, Tier):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        if isinstance(value, str):
            key = value.strip().upper()
            if key in cls.__members__:
                return cls[key]
        valid = ", ".join(cls.__members__)
        raise ValidationError(f"unknown tier {value!r}; valid tiers are {valid}")

    def lowered(self) -> Tier:
        """One tier less sensitive, never below PUBLIC (used by the aggregate rule)."""
        return _LOWERED[self]


# ``Tier.lowered`` by table (indexed by the tier's int value): ``Tier(...)`` and ``.value`` are
# Python-level enum machinery, and every aggregate of a propagation wave lowers a tier.
_LOWERED = tuple(Tier(max(t.value - 1, Tier.PUBLIC.value)) for t in Tier)


class Layer(StrEnum):
    """Where a classification came from; recorded on every result so it can be explained."""

    HEURISTIC = "heuristic"
    EMBEDDING = "embedding"
    LLM = "llm"
    EXPLICIT = "explicit"
    PROPAGATED = "propagated"
    OVERRIDE = "override"
    UNKNOWN = "unknown"


class OperationKind(StrEnum):
    """What a job did to its inputs; the inheritance rule for its outputs depends on it."""

    READ = "read"
    JOIN = "join"
    AGGREGATE = "aggregate"
    FILTER = "filter"
    TRANSFORM = "transform"
    ANONYMIZE = "anonymize"
    EXPORT = "export"

    @classmethod
    def parse(cls, value: str | OperationKind) -> OperationKind:
        if isinstance(value, OperationKind):
            return value
        key = str(value).strip().lower()
        try:
            return cls(key)
        except ValueError:
            valid = ", ".join(k.value for k in cls)
            raise ValidationError(
                f"unknown operation kind {value!r}; valid kinds are {valid}"
            ) from None


_TAG_CLEAN = re.compile(r"[^A-Z0-9]+")


def normalize_tag(tag: str) -> str:
    """Tags are upper snake case (``pii`` and ``Pii`` are one tag, ``customer-data`` is
    ``CUSTOMER_DATA``) so that sets of tags compare the way a steward expects."""
    cleaned = _TAG_CLEAN.sub("_", str(tag).strip().upper()).strip("_")
    if not cleaned:
        raise ValidationError(f"empty tag {tag!r}")
    return cleaned


def normalize_tags(tags: Iterable[str] | None) -> frozenset[str]:
    return frozenset(normalize_tag(t) for t in (tags or ()))


DERIVED_PREFIX = "DERIVED_FROM_"


def derived_tag(tag: str) -> str:
    """``PII`` → ``DERIVED_FROM_PII``; already-derived tags stay as they are."""
    tag = normalize_tag(tag)
    return tag if tag.startswith(DERIVED_PREFIX) else DERIVED_PREFIX + tag


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """The one timestamp format used in canonical JSON: UTC, microseconds, ``Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.year >= 1000:  # isoformat is ten times faster and writes the same text here
        return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # glibc leaves short years unpadded


def parse_timestamp(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"invalid timestamp {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, order=True)
class DatasetRef:
    """A dataset named the OpenLineage way: a namespace (where) and a name (what).

    ``key`` is the single string used as graph node id and database key.
    """

    namespace: str
    name: str

    def __post_init__(self) -> None:
        if not self.namespace or not self.name:
            raise ValidationError(
                f"a dataset needs both a namespace and a name, got {self.namespace!r}/{self.name!r}"
            )

    @property
    def key(self) -> str:
        return f"{self.namespace}::{self.name}"

    @classmethod
    def from_key(cls, key: str) -> DatasetRef:
        namespace, sep, name = key.partition("::")
        if not sep:
            raise ValidationError(f"not a dataset key (namespace::name): {key!r}")
        return cls(namespace, name)

    @property
    def short_name(self) -> str:
        """The last path or dotted component, for trees and messages."""
        tail = self.name.rstrip("/").rsplit("/", 1)[-1]
        return tail or self.name

    def __str__(self) -> str:
        return self.key

    def to_dict(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetRef:
        return cls(str(data["namespace"]), str(data["name"]))


@dataclass(frozen=True, slots=True, order=True)
class ColumnRef:
    dataset: DatasetRef
    column: str

    @property
    def key(self) -> str:
        return f"{self.dataset.key}#{self.column}"

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset.to_dict(), "column": self.column}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnRef:
        return cls(DatasetRef.from_dict(data["dataset"]), str(data["column"]))


@dataclass(frozen=True, slots=True)
class Evidence:
    """One reason behind a classification: which rule/example/answer, about which target."""

    layer: Layer
    source: str  # rule id, example text, model name, policy id, upstream dataset key ...
    target: str  # the column or dataset the evidence is about
    detail: str = ""
    confidence: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer.value,
            "source": self.source,
            "target": self.target,
            "detail": self.detail,
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        return cls(
            layer=Layer(data["layer"]),
            source=str(data["source"]),
            target=str(data["target"]),
            detail=str(data.get("detail", "")),
            confidence=float(data.get("confidence", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Classification:
    """A tier plus tags with the confidence, layer and evidence that produced them."""

    tier: Tier
    tags: frozenset[str] = frozenset()
    confidence: float = 1.0
    layer: Layer = Layer.UNKNOWN
    evidence: tuple[Evidence, ...] = ()
    reasoning: str = ""
    # ``describe()`` computed once: propagation describes a hub's classification once for each
    # of its thousand children. Not part of the value (no compare, hash, repr or JSON).
    _description: str | None = field(default=None, init=False, repr=False, compare=False,
                                     hash=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValidationError(f"confidence must be within [0, 1], got {self.confidence}")
        if not isinstance(self.tags, frozenset):
            object.__setattr__(self, "tags", normalize_tags(self.tags))

    @classmethod
    def unknown(cls, reasoning: str = "no evidence yet") -> Classification:
        return cls(Tier.PUBLIC, frozenset(), 0.0, Layer.UNKNOWN, (), reasoning)

    @property
    def is_unknown(self) -> bool:
        return self.layer is Layer.UNKNOWN and not self.tags and self.confidence == 0.0

    def merge(self, other: Classification, *, layer: Layer | None = None) -> Classification:
        """Max tier, union of tags, union of evidence: the join rule, and how floors combine."""
        if self.tier >= other.tier:
            top = self
            confidence = (max(self.confidence, other.confidence) if self.tier == other.tier
                          else self.confidence)
        else:
            top, confidence = other, other.confidence
        return derived_classification(
            top.tier,
            self.tags | other.tags,
            confidence,
            layer or top.layer,
            merge_evidence(self.evidence, other.evidence),
            merge_reasoning(self.reasoning, other.reasoning),
        )

    def sorted_tags(self) -> list[str]:
        return sorted(self.tags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier.name,
            "tags": self.sorted_tags(),
            "confidence": self.confidence,
            "layer": self.layer.value,
            "evidence": [e.to_dict() for e in self.evidence],
            "reasoning": self.reasoning,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Classification:
        return cls(
            tier=Tier.parse(data["tier"]),
            tags=normalize_tags(data.get("tags", ())),
            confidence=float(data.get("confidence", 1.0)),
            layer=Layer(data.get("layer", Layer.UNKNOWN.value)),
            evidence=tuple(Evidence.from_dict(e) for e in data.get("evidence", ())),
            reasoning=str(data.get("reasoning", "")),
        )

    def describe(self) -> str:
        description = self._description
        if description is None:
            tags = ", ".join(self.sorted_tags())
            description = f"{self.tier.name}, tags: {tags}" if tags else self.tier.name
            _set_description(self, description)
        return description


# Trusted constructors for the inheritance rules' hot path. A frozen dataclass's ``__init__``
# assigns each field through ``object.__setattr__`` (about 0.2 µs a field) and
# ``Classification.__post_init__`` re-validates; values derived from already valid ones (a max
# of valid confidences, a union of frozensets) need neither, and a wave of 1,700 datasets
# builds ~10,000 of these. The slots' own descriptors set the fields directly: same objects,
# 2-3x cheaper. Callers outside the rules should use the classes' constructors.
_new_object = object.__new__


def slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The ``__set__`` of field ``name`` of a slots dataclass ``cls``: assigns the field of a
    frozen instance the way the dataclass's own ``__init__`` does, minus the lookups."""
    return cast(Callable[[Any, Any], None], vars(cls)[name].__set__)


_set_layer = slot_setter(Evidence, "layer")
_set_source = slot_setter(Evidence, "source")
_set_target = slot_setter(Evidence, "target")
_set_detail = slot_setter(Evidence, "detail")
_set_evidence_confidence = slot_setter(Evidence, "confidence")
_set_tier = slot_setter(Classification, "tier")
_set_tags = slot_setter(Classification, "tags")
_set_confidence = slot_setter(Classification, "confidence")
_set_classification_layer = slot_setter(Classification, "layer")
_set_evidence = slot_setter(Classification, "evidence")
_set_reasoning = slot_setter(Classification, "reasoning")
_set_description = slot_setter(Classification, "_description")


def derived_evidence(layer: Layer, source: str, target: str, detail: str,
                     confidence: float) -> Evidence:
    """``Evidence(layer, source, target, detail, confidence)`` without the dataclass
    ``__init__`` (the fields are plain values; nothing to check)."""
    item: Evidence = _new_object(Evidence)
    _set_layer(item, layer)
    _set_source(item, source)
    _set_target(item, target)
    _set_detail(item, detail)
    _set_evidence_confidence(item, confidence)
    return item


def derived_classification(tier: Tier, tags: frozenset[str], confidence: float, layer: Layer,
                           evidence: tuple[Evidence, ...], reasoning: str) -> Classification:
    """``Classification(...)`` for values computed from valid classifications: ``tags`` is
    already a frozenset of normalized tags and ``confidence`` one of (or the minimum or
    maximum of) valid confidences, so ``__post_init__`` has nothing to check or convert."""
    result: Classification = _new_object(Classification)
    _set_tier(result, tier)
    _set_tags(result, tags)
    _set_confidence(result, confidence)
    _set_classification_layer(result, layer)
    _set_evidence(result, evidence)
    _set_reasoning(result, reasoning)
    _set_description(result, None)
    return result


def merge_reasoning(first: str, second: str) -> str:
    """``first``, then each clause of ``second`` it does not hold yet: merging a floor into
    itself again (every event of a dataset restates its declared classification) must not
    grow the text — it did, and each longer text counted as a change that reclassified the
    dataset and was stored again."""
    if not second or second == first:
        return first
    if not first:
        return second
    if "; " not in second:  # one clause (most merges): a substring test answers most
        if second not in first or second not in first.split("; "):
            return f"{first}; {second}"
        return first
    known = set(first.split("; "))
    new = [c for c in dict.fromkeys(second.split("; ")) if c not in known]
    return "; ".join([first, *new]) if new else first


def merge_evidence(first: tuple[Evidence, ...], second: tuple[Evidence, ...]) -> tuple[
    Evidence, ...
]:
    """``first + second`` without repeats, first occurrence kept (``merge``'s evidence).

    Equal evidence has equal ``(source, target)``; when no pair repeats — a dataset's column
    evidence plus one item per parent, the usual case — nothing repeats, and the
    concatenation is the answer without hashing each item through the dataclass's
    Python-level ``__hash__``."""
    combined = first + second
    if len({(e.source, e.target) for e in combined}) == len(combined):
        return combined
    return tuple(dict.fromkeys(combined))


def _freeze_mapping(data: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(data or {})


@dataclass(frozen=True, slots=True)
class Operation:
    """A gate question: may ``kind`` move ``sources`` into ``destination``?"""

    kind: OperationKind
    sources: tuple[DatasetRef, ...]
    destination: DatasetRef | None = None
    user: str = "unknown"
    purpose: str = ""
    environment: str = "production"
    code: str = ""  # job / task / asset that performs it
    run_id: str = ""
    exception_id: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OperationKind.parse(self.kind))
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "context", _freeze_mapping(self.context))

    def __hash__(self) -> int:
        return hash((self.kind, self.sources, self.destination, self.user, self.code))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "sources": [s.to_dict() for s in self.sources],
            "destination": self.destination.to_dict() if self.destination else None,
            "user": self.user,
            "purpose": self.purpose,
            "environment": self.environment,
            "code": self.code,
            "run_id": self.run_id,
            "exception_id": self.exception_id,
            "context": dict(self.context),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Operation:
        destination = data.get("destination")
        return cls(
            kind=OperationKind.parse(data["kind"]),
            sources=tuple(DatasetRef.from_dict(s) for s in data.get("sources", ())),
            destination=DatasetRef.from_dict(destination) if destination else None,
            user=str(data.get("user", "unknown")),
            purpose=str(data.get("purpose", "")),
            environment=str(data.get("environment", "production")),
            code=str(data.get("code", "")),
            run_id=str(data.get("run_id", "")),
            exception_id=str(data.get("exception_id", "")),
            context=dict(data.get("context", {})),
        )


class Outcome(Enum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a gate question, with everything a person needs to act on a denial."""

    allow: bool
    action: str
    reasons: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()
    policy_id: str = ""
    policy_version: str = ""
    policy_title: str = ""
    steward: str = ""
    source: str = ""
    destination: str = ""
    classification: Classification | None = None
    exception_id: str = ""
    bundle_revision: str = ""
    error: str = ""  # set when the engine could not run and the gate failed closed
    decision_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    decided_at: str = field(default_factory=lambda: format_timestamp(utcnow()))

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", tuple(self.reasons))
        object.__setattr__(self, "alternatives", tuple(self.alternatives))

    @property
    def outcome(self) -> Outcome:
        return Outcome.ALLOW if self.allow else Outcome.DENY

    @property
    def message(self) -> str:
        """The text an orchestrator shows: what was stopped, why, how to proceed, who to ask."""
        from lacuna_orchestration.policy.messages import render_decision

        return render_decision(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "allow": self.allow,
            "action": self.action,
            "reasons": list(self.reasons),
            "alternatives": list(self.alternatives),
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "policy_title": self.policy_title,
            "steward": self.steward,
            "source": self.source,
            "destination": self.destination,
            "classification": self.classification.to_dict() if self.classification else None,
            "exception_id": self.exception_id,
            "bundle_revision": self.bundle_revision,
            "error": self.error,
            "decided_at": self.decided_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        classification = data.get("classification")
        return cls(
            allow=bool(data["allow"]),
            action=str(data["action"]),
            reasons=tuple(data.get("reasons", ())),
            alternatives=tuple(data.get("alternatives", ())),
            policy_id=str(data.get("policy_id", "")),
            policy_version=str(data.get("policy_version", "")),
            policy_title=str(data.get("policy_title", "")),
            steward=str(data.get("steward", "")),
            source=str(data.get("source", "")),
            destination=str(data.get("destination", "")),
            classification=Classification.from_dict(classification) if classification else None,
            exception_id=str(data.get("exception_id", "")),
            bundle_revision=str(data.get("bundle_revision", "")),
            error=str(data.get("error", "")),
            decision_id=str(data.get("decision_id") or uuid.uuid4()),
            decided_at=str(data.get("decided_at") or format_timestamp(utcnow())),
        )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One link of the audit chain: who did what, when, why and how, and what was decided.

    ``seq``, ``prev_hash`` and ``hash`` are filled in by the chain when the record is appended;
    the hash covers every other field (see ``audit.chain``).
    """

    actor: str  # who
    action: str  # what (ingest, gate, exception.approve, classification.override, ...)
    resource: str  # on what (dataset key, exception id, ...)
    reason: str = ""  # why
    via: str = ""  # how: integration / endpoint / CLI
    run_id: str = ""  # the OpenLineage run id, when there is one
    decision: Mapping[str, Any] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    tenant: str = "default"
    record_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: str = field(default_factory=lambda: format_timestamp(utcnow()))
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""

    def body(self) -> dict[str, Any]:
        """Every field except ``hash``: exactly what the record's hash covers."""
        return {
            "seq": self.seq,
            "tenant": self.tenant,
            "record_id": self.record_id,
            "timestamp": self.timestamp,
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "reason": self.reason,
            "via": self.via,
            "run_id": self.run_id,
            "decision": dict(self.decision) if self.decision is not None else None,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
        }

    def to_dict(self) -> dict[str, Any]:
        data = self.body()
        data["hash"] = self.hash
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        decision = data.get("decision")
        return cls(
            actor=str(data["actor"]),
            action=str(data["action"]),
            resource=str(data["resource"]),
            reason=str(data.get("reason", "")),
            via=str(data.get("via", "")),
            run_id=str(data.get("run_id", "")),
            decision=dict(decision) if decision is not None else None,
            details=dict(data.get("details", {})),
            tenant=str(data.get("tenant", "default")),
            record_id=str(data["record_id"]),
            timestamp=str(data["timestamp"]),
            seq=int(data.get("seq", 0)),
            prev_hash=str(data.get("prev_hash", "")),
            hash=str(data.get("hash", "")),
        )
