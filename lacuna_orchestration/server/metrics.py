"""Governance metrics: how often the gate denies, how often exceptions are needed, how often
stewards say a denial was wrong, and how much of the catalog is classified and connected.

Definitions (each rate is ``None`` when its denominator is zero, never a made-up 0):

* ``violation_rate`` — denied decisions / decisions in the window;
* ``exception_rate`` — decisions allowed under an exception / decisions;
* ``false_positive_rate`` — denials a steward marked ``false_positive`` / denials a steward
  reviewed (``review_rate`` says how many were reviewed at all);
* ``coverage`` — datasets (and columns) with a known classification / all of them;
* ``lineage_completeness`` — datasets with at least one lineage edge / all datasets, and
  derived datasets whose every column has column-level lineage / derived datasets;
* ``layer_usage`` — how many column classifications each layer produced.
"""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from lacuna_orchestration.governor import Governor
from lacuna_orchestration.model import Layer, format_timestamp, parse_timestamp
from lacuna_orchestration.server.feedback import FeedbackStore

__all__ = ["governance_metrics"]

DECISION_WINDOW_LIMIT = 200_000


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def governance_metrics(gov: Governor, feedback: FeedbackStore, *, since: str | None = None,
                       until: str | None = None,
                       lock: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
    """The metrics for the window; ``lock`` is held only while the graph is read."""
    since_text = format_timestamp(parse_timestamp(since)) if since else None
    until_text = format_timestamp(parse_timestamp(until)) if until else None
    decisions = [
        d for d in gov.catalog.decisions(limit=DECISION_WINDOW_LIMIT, since=since_text)
        if until_text is None or d.decided_at < until_text
    ]
    total = len(decisions)
    denied = [d for d in decisions if not d.allow]
    under_exception = sum(1 for d in decisions if d.allow and d.exception_id)
    fail_closed = sum(1 for d in denied if d.error)
    verdicts = feedback.for_decisions()
    reviewed = [verdicts[d.decision_id] for d in denied if d.decision_id in verdicts]
    false_positives = sum(1 for f in reviewed if f.verdict == "false_positive")
    by_policy = Counter(d.policy_id for d in denied)

    with lock if lock is not None else nullcontext():
        graph = _graph_figures(gov)
    exceptions = Counter(e.status.value for e in gov.exceptions.list())
    return {
        "window": {"since": since_text, "until": until_text},
        "decisions": {
            "total": total, "denied": len(denied), "allowed": total - len(denied),
            "allowed_under_exception": under_exception, "fail_closed": fail_closed,
            "denials_by_policy": dict(by_policy.most_common()),
        },
        "violation_rate": _rate(len(denied), total),
        "exception_rate": _rate(under_exception, total),
        "false_positive_rate": _rate(false_positives, len(reviewed)),
        "review_rate": _rate(len(reviewed), len(denied)),
        "feedback": {"reviewed_denials": len(reviewed), "false_positives": false_positives},
        **graph,
        "exceptions": dict(exceptions.most_common()),
    }


def _graph_figures(gov: Governor) -> dict[str, Any]:
    nodes = list(gov.graph.nodes())
    classified = sum(1 for n in nodes if not n.effective.is_unknown)
    columns = [c for n in nodes for c in n.columns.values()]
    columns_classified = sum(1 for c in columns if c.layer is not Layer.UNKNOWN)
    g = gov.graph.g
    connected = sum(1 for n in nodes if g.degree(n.ref.key) > 0)
    derived = [n for n in nodes if g.in_degree(n.ref.key) > 0]
    with_columns = sum(
        1 for n in derived
        if n.fields and all(f.name in n.column_lineage for f in n.fields)
    )
    layers = Counter(c.layer.value for c in columns)
    tiers = Counter("UNKNOWN" if n.effective.is_unknown else n.effective.tier.name
                    for n in nodes)
    return {
        "coverage": {
            "datasets": len(nodes), "datasets_classified": classified,
            "dataset_coverage": _rate(classified, len(nodes)),
            "columns": len(columns), "columns_classified": columns_classified,
            "column_coverage": _rate(columns_classified, len(columns)),
        },
        "lineage_completeness": {
            "datasets_with_lineage": connected,
            "dataset_lineage_rate": _rate(connected, len(nodes)),
            "derived_datasets": len(derived),
            "derived_with_column_lineage": with_columns,
            "column_lineage_rate": _rate(with_columns, len(derived)),
        },
        "layer_usage": dict(layers.most_common()),
        "tiers": dict(tiers.most_common()),
    }
