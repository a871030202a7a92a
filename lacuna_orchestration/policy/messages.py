"""Turn a ``Decision`` into the text an orchestrator shows a person.

A denial reads like a colleague's note: what was stopped, why, what the data is, how to proceed,
which policy said so and whom to ask::

    ❌ Governance Policy Violation

    Action: Export analysis → file:///tmp/export.csv
    Reason: Cannot export PII data to an unmanaged location
    Classification: PROPRIETARY (inherited from customers)
    Tags: FINANCIAL, GDPR, PII

    Alternatives:
    1. ...

    Policy: export-governance v1.2.0 (PII Export Restrictions)
    Steward: data-governance@example.com
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lacuna_orchestration.model import Decision


def _classification_line(decision: Decision) -> tuple[str, str]:
    c = decision.classification
    if c is None:
        return "unknown", "none"
    origin = ""
    inherited = sorted(
        {e.source.rsplit("::", 1)[-1] for e in c.evidence if e.layer.value == "propagated"}
    )
    if inherited:
        origin = f" (inherited from {', '.join(inherited[:3])})"
    tags = ", ".join(c.sorted_tags()) or "none"
    return f"{c.tier.name}{origin}", tags


def render_decision(decision: Decision) -> str:
    """The full multi-line message; allowed decisions get a short confirmation instead."""
    target = decision.destination or "(no destination)"
    action = f"{decision.action.capitalize()} {decision.source} → {target}".replace("  ", " ")
    policy = decision.policy_id or "none"
    if decision.policy_version:
        policy += f" v{decision.policy_version}"
    if decision.policy_title:
        policy += f" ({decision.policy_title})"
    steward = decision.steward or "your data governance team"
    tier, tags = _classification_line(decision)

    if decision.allow:
        head = "✅ Allowed"
        if decision.exception_id:
            head += f" under exception {decision.exception_id}"
        return f"{head}: {action}\nClassification: {tier}\nTags: {tags}\nPolicy: {policy}"

    lines = ["❌ Governance Policy Violation", "", f"Action: {action}"]
    reasons = list(decision.reasons) or ["denied by policy"]
    lines.append(f"Reason: {reasons[0]}")
    lines.extend(f"        {r}" for r in reasons[1:])
    if decision.error:
        lines.append(f"Policy evaluation failed (the gate fails closed): {decision.error}")
    lines += [f"Classification: {tier}", f"Tags: {tags}"]
    if decision.alternatives:
        lines += ["", "Alternatives:"]
        lines += [f"{i}. {alt}" for i, alt in enumerate(decision.alternatives, 1)]
    lines += ["", f"Policy: {policy}", f"Steward: {steward}"]
    return "\n".join(lines)


def one_line(decision: Decision) -> str:
    """A single line for logs and tables."""
    verdict = "ALLOW" if decision.allow else "DENY"
    reason = decision.reasons[0] if decision.reasons else ""
    return f"{verdict} {decision.action} {decision.source} → {decision.destination}: {reason}"
