"""From policy answers to one gate ``Decision`` — and the input document policies read.

The input document (what ``input`` is in every policy; ``build_input`` assembles it)::

    {
      "action": "export" | "join" | "aggregate" | "filter" | "transform" | "anonymize" | "read",
      "source": {                      # the combined classification of everything that flows
        "datasets": ["ns::name", ...],
        "tier": "PUBLIC" | "INTERNAL" | "PROPRIETARY",   # max over the classified sources
        "tags": ["GDPR", "PII", ...],                    # union, sorted, upper snake case
        "unclassified": ["ns::name", ...]                # sources with no classification yet
      },
      "destination": {                 # null when the operation writes nowhere (read)
        "key": "ns::name", "namespace": "file", "name": "/tmp/export.csv",
        "location": "file:///tmp/export.csv",   # see location_of()
        "tier": "INTERNAL" | ... | null, "tags": [...],
        "encrypted": false,
        "managed": true | false | null          # null: unknown, policies look at the location
      },
      "user": "alice",
      "context": {"environment": "production", "purpose": "analytics", "domain": "marketing",
                  "job": "daily_export", ...},   # plus scalar entries of Operation.context
      "lineage": {"upstream": ["ns::name", ...]}
    }

``unclassified`` exists because an unclassified source is not PUBLIC: the export policy treats
it as sensitive (``Cannot export unclassified data ...``) until someone classifies it.

How answers combine (``PolicyDecider.decide``): any denial denies; the decision is named after
the first denying policy in bundle order (id, version, title, steward) and carries every
denying policy's reasons and alternatives, in order, without duplicates. An allow names every
policy that answered (``id@version, ...``) and keeps their notes as reasons. No answer at all —
an engine error, a timeout, a malformed or empty answer — is a denial with ``error`` set and
``policy_id="lacuna.fail-closed"``: the gate fails closed.

>>> from lacuna_orchestration.model import DatasetRef
>>> location_of(DatasetRef("file", "/tmp/export.csv"))
'file:///tmp/export.csv'
>>> location_of(DatasetRef("s3://bucket", "exports/x.csv"))
's3://bucket/exports/x.csv'
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lacuna_orchestration.model import Classification, DatasetRef, Decision, Operation, Tier

if TYPE_CHECKING:
    from lacuna_orchestration.policy.engine import PolicyEngine, PolicyResult
    from lacuna_orchestration.policy.exceptions import PolicyException

__all__ = [
    "FAIL_CLOSED_POLICY",
    "PolicyDecider",
    "SourceClassification",
    "allow_under_exception",
    "build_input",
    "location_of",
]

log = logging.getLogger(__name__)

FAIL_CLOSED_POLICY = "lacuna.fail-closed"
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)

SourceClassification = (
    Classification
    | Mapping[DatasetRef, Classification]
    | Mapping[str, Classification]
    | Iterable[Classification]
)
"""One combined classification, one per source (by ref or key), or one per source in order."""
_SCALARS = (str, int, float, bool, type(None))


# -- decision ids and timestamps, cheaply ---------------------------------------------------------
# ``Decision``'s defaults (uuid4 + datetime.strftime) cost ~4 µs, a tenth of a whole policy
# evaluation; the gate makes tens of thousands a second. Same formats, a quarter of the cost:
# a random UUID-4-shaped id from a private generator (seeded from the OS, reseeded in forked
# children so processes never share a sequence) and the second's prefix formatted once.

_rng = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))
_VERSION_MASK = ~((0xF << 76) | (0x3 << 62))
_VERSION_BITS = (0x4 << 76) | (0x2 << 62)  # UUID version 4, RFC 4122 variant


def _decision_id() -> str:
    h = f"{(_rng.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Clock(threading.local):
    second = -1
    prefix = ""


_clock = _Clock()


def _decided_at() -> str:
    """``format_timestamp(utcnow())``: UTC, microseconds, ``Z``."""
    micros = time.time_ns() // 1000
    second, fraction = divmod(micros, 1_000_000)
    clock = _clock
    if second != clock.second:
        clock.second = second
        clock.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{clock.prefix}.{fraction:06d}Z"


def location_of(ref: DatasetRef) -> str:
    """A dataset's place as one URI-ish string: namespace and name joined the way a person
    reads them, so policies can match prefixes (``file:///tmp/``) and schemes (``s3://``)."""
    namespace, name = ref.namespace, ref.name
    if "://" in namespace:
        return f"{namespace.rstrip('/')}/{name.lstrip('/')}"
    return f"{namespace}://{name}"


def _combine(
    operation: Operation, sources: SourceClassification
) -> tuple[Classification, list[str]]:
    """The merged classification of what flows, and which sources have none."""
    if isinstance(sources, Classification):
        known = [] if sources.is_unknown else [sources]
        unclassified = [s.key for s in operation.sources] if sources.is_unknown else []
    elif isinstance(sources, Mapping):
        by_key: dict[str, Classification] = {
            (k.key if isinstance(k, DatasetRef) else str(k)): v for k, v in sources.items()
        }
        keys = [s.key for s in operation.sources] or list(by_key)
        known = [by_key[k] for k in keys if k in by_key and not by_key[k].is_unknown]
        unclassified = [k for k in keys if k not in by_key or by_key[k].is_unknown]
    else:
        items = list(sources)
        known = [c for c in items if not c.is_unknown]
        unclassified = [
            s.key for s, c in zip(operation.sources, items, strict=False) if c.is_unknown
        ] + [s.key for s in operation.sources[len(items) :]]
    combined = Classification(Tier.PUBLIC)
    for classification in known:
        combined = combined.merge(classification)
    return combined, unclassified


def build_input(
    operation: Operation,
    source_classification: SourceClassification,
    *,
    destination_classification: Classification | None = None,
    encrypted: bool = False,
    managed: bool | None = None,
    upstream: Iterable[DatasetRef | str] = (),
) -> dict[str, Any]:
    """Assemble the input document (schema in the module docstring) for ``operation``.

    ``source_classification``: one already-combined classification, a mapping from source
    (ref or key) to its classification, or classifications in the order of
    ``operation.sources``; sources without one (or with an unknown one) are listed as
    ``unclassified``. ``domain`` and other scalar entries of
    ``operation.context`` become ``context`` fields.
    """
    combined, unclassified = _combine(operation, source_classification)
    context: dict[str, Any] = {
        k: v for k, v in operation.context.items() if isinstance(v, _SCALARS) and k != "domain"
    }
    context.update(
        environment=operation.environment,
        purpose=operation.purpose,
        domain=str(operation.context.get("domain", "") or ""),
        job=operation.code,
    )
    destination: dict[str, Any] | None = None
    if operation.destination is not None:
        ref = operation.destination
        dest_c = destination_classification
        if dest_c is not None and dest_c.is_unknown:
            dest_c = None
        destination = {
            "key": ref.key,
            "namespace": ref.namespace,
            "name": ref.name,
            "location": location_of(ref),
            "tier": dest_c.tier.name if dest_c is not None else None,
            "tags": dest_c.sorted_tags() if dest_c is not None else [],
            "encrypted": bool(encrypted),
            "managed": managed,
        }
    return {
        "action": operation.kind.value,
        "source": {
            "datasets": [s.key for s in operation.sources],
            "tier": combined.tier.name,
            "tags": combined.sorted_tags(),
            "unclassified": unclassified,
        },
        "destination": destination,
        "user": operation.user,
        "context": context,
        "lineage": {"upstream": [u.key if isinstance(u, DatasetRef) else str(u) for u in upstream]},
    }


def _unique(groups: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """Concatenated in order, first occurrence kept.

    Runs twice per decision; usually one group has anything in it (one denying policy, one
    note), which is returned without the generic merge.
    """
    present = [group for group in groups if group]
    if not present:
        return ()
    if len(present) == 1 and len(present[0]) == 1:
        return tuple(present[0])
    return tuple(dict.fromkeys(item for group in present for item in group))


@dataclasses.dataclass(frozen=True, slots=True)
class _Verdict:
    """What a decision takes from its policy answers alone (not from the question)."""

    allow: bool
    reasons: tuple[str, ...]
    alternatives: tuple[str, ...]
    policy_id: str
    policy_version: str
    policy_title: str
    steward: str


def _verdict_of(results: Sequence[PolicyResult]) -> _Verdict:
    """The combination rules of the module docstring, applied to ``results``."""
    denials = [r for r in results if not r.allow]
    if denials:
        first = denials[0]
        return _Verdict(
            allow=False,
            reasons=_unique(r.reasons for r in denials),
            alternatives=_unique(r.alternatives for r in denials),
            policy_id=first.policy_id,
            policy_version=first.version,
            policy_title=first.title,
            steward=first.steward,
        )
    return _Verdict(
        allow=True,
        reasons=_unique(r.reasons for r in results),
        alternatives=(),
        policy_id=", ".join(f"{r.policy_id}@{r.version}" for r in results),
        policy_version="",
        policy_title=f"all {len(results)} policies allow",
        steward="",
    )


class _VerdictCache:
    """Verdicts of answers seen before, keyed by the identities of their results.

    Engines hand out the same (immutable, interned) ``PolicyResult`` objects for the same
    answers, so the same few verdicts are combined over and over; this skips that (~3 µs of
    a ~40 µs decision). An entry holds its results, so none of them can be freed and its
    ``id`` reused while the entry exists: a key that matches names exactly those objects.
    Results that are equal but not the same objects simply miss. Bounded: cleared when full.
    ``dict.get`` and item assignment are atomic under the GIL, so threads may share it.
    """

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = 1024) -> None:
        self._entries: dict[tuple[int, ...], tuple[Sequence[PolicyResult], _Verdict]] = {}
        self._limit = limit

    def verdict(self, results: Sequence[PolicyResult]) -> _Verdict:
        key = tuple(map(id, results))
        entry = self._entries.get(key)
        if entry is not None:
            return entry[1]
        held = tuple(results)
        verdict = _verdict_of(held)
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = (held, verdict)
        return verdict


class PolicyDecider:
    """Asks the engine, combines the answers into one ``Decision``, never raises.

    >>> decider = PolicyDecider(engine)  # doctest: +SKIP
    >>> decider.decide(doc, action="export", source_label="customers",
    ...                destination_label="file:///tmp/x.csv", classification=c).allow  # doctest: +SKIP
    False
    """

    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine
        self._verdicts = _VerdictCache()

    @classmethod
    def failing(cls, reason: str) -> PolicyDecider:
        """A decider whose every decision is a fail-closed denial naming ``reason``: what to
        use when the configured engine cannot even be built (broken Rego, missing folder)."""
        from lacuna_orchestration.policy.engine import UnavailableEngine

        return cls(UnavailableEngine(reason))

    def _revision(self) -> str:
        try:
            return self.engine.revision
        except Exception:  # noqa: BLE001 - a revision is context, never a reason to fail
            return ""

    def decide(
        self,
        input_doc: Mapping[str, Any],
        *,
        action: str,
        source_label: str = "",
        destination_label: str = "",
        classification: Classification | None = None,
    ) -> Decision:
        try:
            results = self.engine.evaluate(input_doc)
            if not results:
                raise LookupError("the policy bundle answered with no policies")
        except BaseException as err:
            if isinstance(err, _FATAL):
                raise
            return self.fail_closed(
                err,
                action=action,
                source_label=source_label,
                destination_label=destination_label,
                classification=classification,
            )
        return self.combine(
            results,
            action=action,
            source_label=source_label,
            destination_label=destination_label,
            classification=classification,
        )

    def combine(
        self,
        results: Sequence[PolicyResult],
        *,
        action: str,
        source_label: str = "",
        destination_label: str = "",
        classification: Classification | None = None,
    ) -> Decision:
        """One decision from the answers (see the module docstring for the rules)."""
        verdict = self._verdicts.verdict(results)
        return Decision(
            allow=verdict.allow,
            action=action,
            reasons=verdict.reasons,
            alternatives=verdict.alternatives,
            policy_id=verdict.policy_id,
            policy_version=verdict.policy_version,
            policy_title=verdict.policy_title,
            steward=verdict.steward,
            source=source_label,
            destination=destination_label,
            classification=classification,
            bundle_revision=self._revision(),
            decision_id=_decision_id(),
            decided_at=_decided_at(),
        )

    def fail_closed(
        self,
        err: BaseException,
        *,
        action: str,
        source_label: str = "",
        destination_label: str = "",
        classification: Classification | None = None,
    ) -> Decision:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        log.error("policy evaluation failed, denying %s: %s", action, reason)
        return Decision(
            allow=False,
            action=action,
            reasons=(f"policy evaluation failed: {reason}",),
            alternatives=("Retry once the policy engine answers; the gate denies until then",),
            policy_id=FAIL_CLOSED_POLICY,
            policy_title="No policy decision (fail closed)",
            source=source_label,
            destination=destination_label,
            classification=classification,
            bundle_revision=self._revision(),
            error=reason,
        )


def allow_under_exception(decision: Decision, exception: PolicyException) -> Decision:
    """A denial turned into an allow by an approved, still valid exception; the original
    reasons stay, followed by the exception's terms, so the audit shows what was waived.

    A fail-closed decision is never waived: an exception covers a policy's verdict, not the
    absence of one.
    """
    if decision.allow or decision.error:
        return decision
    terms = (
        f"allowed under exception {exception.id} approved by {exception.approver} "
        f"until {exception.valid_until.isoformat() if exception.valid_until else 'revoked'}"
    )
    return dataclasses.replace(
        decision,
        allow=True,
        exception_id=exception.id,
        reasons=(*decision.reasons, terms),
    )
