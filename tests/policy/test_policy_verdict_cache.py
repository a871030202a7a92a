"""PolicyDecider remembers the verdict of answers it has combined before (keyed by the result
objects' identities); a remembered verdict must be exactly what combining them again gives."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lacuna_orchestration.model import Decision
from lacuna_orchestration.policy.decide import PolicyDecider, _verdict_of, _VerdictCache
from lacuna_orchestration.policy.engine import PolicyEngine, PolicyResult

_ALLOW_NOTE = PolicyResult("a", "1", "A", "a@x", True, ("noted",))
_ALLOW = PolicyResult("b", "2", "B", "b@x", True)
_DENY = PolicyResult("c", "3", "C", "c@x", False, ("no", "never"), ("ask", "wait"))
_DENY_TOO = PolicyResult("d", "4", "D", "d@x", False, ("never",), ("wait", "other"))


class _Fixed(PolicyEngine):
    """Answers whatever ``answers`` holds now, as a fresh list (like the embedded engine)."""

    kind = "fixed"

    def __init__(self, answers: list[PolicyResult]) -> None:
        self.answers = answers

    @classmethod
    def from_settings(cls, settings: Any) -> _Fixed:
        raise NotImplementedError

    def evaluate(self, input_doc: Mapping[str, Any]) -> list[PolicyResult]:
        return list(self.answers)

    def reload(self) -> None:
        return None

    @property
    def revision(self) -> str:
        return "rev"


def _static_fields(decision: Decision) -> dict[str, Any]:
    """Everything but what differs per call by design (id and time)."""
    fields = dataclasses.asdict(decision)
    del fields["decision_id"], fields["decided_at"]
    return fields


def test_verdicts_follow_the_combination_rules() -> None:
    allowed = _verdict_of([_ALLOW_NOTE, _ALLOW])
    assert allowed.allow is True
    assert allowed.reasons == ("noted",)
    assert allowed.alternatives == ()
    assert allowed.policy_id == "a@1, b@2"
    assert allowed.policy_title == "all 2 policies allow"
    assert (allowed.policy_version, allowed.steward) == ("", "")

    denied = _verdict_of([_ALLOW_NOTE, _DENY, _DENY_TOO])
    assert denied.allow is False
    assert (denied.policy_id, denied.policy_version, denied.policy_title, denied.steward) == (
        "c",
        "3",
        "C",
        "c@x",
    )
    assert denied.reasons == ("no", "never")  # the allowing policy's note is not a reason
    assert denied.alternatives == ("ask", "wait", "other")


def test_a_remembered_verdict_equals_a_fresh_combination() -> None:
    engine = _Fixed([_ALLOW_NOTE, _DENY])
    decider = PolicyDecider(engine)
    first = decider.decide({}, action="export", source_label="s", destination_label="d")
    again = decider.decide({}, action="export", source_label="s", destination_label="d")
    fresh = PolicyDecider(engine).decide({}, action="export", source_label="s", destination_label="d")
    assert _static_fields(first) == _static_fields(again) == _static_fields(fresh)
    assert first.decision_id != again.decision_id


def test_other_answers_are_not_served_a_remembered_verdict() -> None:
    engine = _Fixed([_ALLOW_NOTE, _ALLOW])
    decider = PolicyDecider(engine)
    assert decider.decide({}, action="read").allow is True
    engine.answers = [_ALLOW_NOTE, _DENY]
    denied = decider.decide({}, action="read")
    assert denied.allow is False and denied.policy_id == "c"
    engine.answers = [_DENY, _ALLOW_NOTE]  # same objects, other order: another verdict
    assert decider.decide({}, action="read").reasons == ("no", "never")
    engine.answers = [_ALLOW_NOTE]
    assert decider.decide({}, action="read").policy_id == "a@1"
    # Equal results that are other objects get a verdict of their own, equal in content.
    engine.answers = [dataclasses.replace(_ALLOW_NOTE), dataclasses.replace(_DENY)]
    assert _static_fields(decider.decide({}, action="read")) == _static_fields(
        PolicyDecider(_Fixed([_ALLOW_NOTE, _DENY])).decide({}, action="read")
    )


def test_the_cache_is_bounded_and_keeps_its_results_alive() -> None:
    cache = _VerdictCache(limit=4)
    for i in range(10):
        results = [PolicyResult(f"p{i}", "1", "T", "s", True)]
        assert cache.verdict(results).policy_id == f"p{i}@1"
        assert len(cache._entries) <= 4
    # The entry holds its results, so their ids cannot be reused by new objects while cached.
    held = [PolicyResult("kept", "1", "T", "s", False, ("r",))]
    key = (id(held[0]),)
    cache.verdict(held)
    del held
    entry = cache._entries[key]
    assert entry[0][0].policy_id == "kept"
