"""Compliance reports for a period, built from the audit chain (JSON and readable HTML).

=================  =========================================================================
report             what it shows, from which records
=================  =========================================================================
``iso27001-a94``   ISO/IEC 27001 A.9.4 (system and application access control): every access
                   attempt the gate judged (``gate.check``, ``policy.decision``) and every
                   request the API refused for its role (``access.denied``); denials by
                   user, by policy, and each denial listed
``iso27001-a124``  A.12.4 (logging and monitoring): the chain's verification result, record
                   volume by action, and the administrative actions (keys, overrides,
                   exception decisions, archiving, feedback)
``gdpr``           processing of personal data: events and decisions touching datasets whose
                   classification carries a personal tag (PII, GDPR, ...), per dataset, with
                   purposes, and the exceptions requested / decided in the period
``hipaa``          access to protected health information: every record touching a dataset
                   tagged PHI, by user, and the denials among them
=================  =========================================================================

A report is a plain dict (``kind``, ``title``, ``period``, ``generated_at``, ``sections``); the
HTML rendering escapes every value. The inputs are given explicitly (records, verification,
a classification lookup, exceptions) so a report can be built from a live governor
(``build_for_governor``) or from an archive.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.model import (
    AuditRecord,
    Classification,
    format_timestamp,
    parse_timestamp,
    utcnow,
)

__all__ = [
    "REPORT_KINDS",
    "ReportInputs",
    "build_for_governor",
    "build_report",
    "render_html",
]

ACCESS_ACTIONS = frozenset({"gate.check", "policy.decision"})
ADMIN_ACTIONS = frozenset({
    "apikey.create", "apikey.revoke", "classification.override", "exception.approve",
    "exception.deny", "exception.revoke", "exception.expire", "audit.archive",
    "decision.feedback", "policy.reload",
})
PERSONAL_TAGS = frozenset({"PII", "GDPR", "GDPR_SPECIAL_CATEGORY", "PHI", "BIOMETRIC",
                           "DERIVED_FROM_PII"})
PHI_TAGS = frozenset({"PHI", "DERIVED_FROM_PHI"})
LIST_LIMIT = 500
"""Longest list a section prints in full; the totals always count everything."""


@dataclass(frozen=True, slots=True)
class ReportInputs:
    """What a report reads. ``classify`` returns a dataset key's current classification
    (or ``None`` when unknown); ``verification`` is a ``VerifyReport``-like object."""

    tenant: str
    records: Sequence[AuditRecord]
    verification: Any
    classify: Callable[[str], Classification | None]
    exceptions: Sequence[Mapping[str, Any]] = ()


def _period(since: datetime | str | None, until: datetime | str | None) -> tuple[str, str]:
    start = format_timestamp(parse_timestamp(since)) if since else "1970-01-01T00:00:00.000000Z"
    end = format_timestamp(parse_timestamp(until)) if until else format_timestamp(utcnow())
    if start >= end:
        raise ValidationError(f"the period is empty: since {start} is not before until {end}")
    return start, end


def _decision(record: AuditRecord) -> Mapping[str, Any]:
    return record.decision or {}


def _denied(record: AuditRecord) -> bool:
    return record.decision is not None and not record.decision.get("allow", True)


def _row(record: AuditRecord) -> dict[str, Any]:
    d = _decision(record)
    return {
        "seq": record.seq, "time": record.timestamp, "actor": record.actor,
        "action": record.action, "resource": record.resource, "via": record.via,
        "allow": d.get("allow"), "policy": d.get("policy_id", ""),
        "reason": record.reason, "exception": d.get("exception_id", ""),
    }


def _limited(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"total": len(rows), "shown": min(len(rows), LIST_LIMIT),
            "rows": rows[:LIST_LIMIT]}


def _datasets_of(record: AuditRecord) -> list[str]:
    """Dataset keys an audit record is about (ingest inputs/outputs, a check's operation)."""
    details = record.details or {}
    keys = [str(k) for k in details.get("inputs", ()) or ()]
    keys += [str(k) for k in details.get("outputs", ()) or ()]
    operation = details.get("operation")
    if isinstance(operation, Mapping):
        for src in operation.get("sources", ()) or ():
            if isinstance(src, Mapping):
                keys.append(f"{src.get('namespace')}::{src.get('name')}")
        dest = operation.get("destination")
        if isinstance(dest, Mapping):
            keys.append(f"{dest.get('namespace')}::{dest.get('name')}")
    if "::" in record.resource:
        keys.append(record.resource)
    return list(dict.fromkeys(keys))


def _tags_of(record: AuditRecord, inputs: ReportInputs) -> tuple[set[str], list[str]]:
    """Tags the record's data carried (the decision's classification, else the datasets'
    current classification) and the datasets that carried them."""
    tags: set[str] = set()
    classification = _decision(record).get("classification")
    if isinstance(classification, Mapping):
        tags.update(str(t) for t in classification.get("tags", ()) or ())
    datasets = []
    for key in _datasets_of(record):
        c = inputs.classify(key)
        if c is not None and c.tags:
            tags.update(c.tags)
            datasets.append(key)
    return tags, datasets


def _tags(c: Classification | None) -> frozenset[str]:
    return c.tags if c is not None else frozenset()


def _a94(inputs: ReportInputs) -> dict[str, Any]:
    attempts = [r for r in inputs.records if r.action in ACCESS_ACTIONS]
    denied = [r for r in attempts if _denied(r)]
    refused = [r for r in inputs.records if r.action == "access.denied"]
    by_actor: dict[str, Counter[str]] = defaultdict(Counter)
    for r in attempts:
        by_actor[r.actor]["attempts"] += 1
        by_actor[r.actor]["denied" if _denied(r) else "allowed"] += 1
    return {
        "summary": {
            "access_attempts": len(attempts), "allowed": len(attempts) - len(denied),
            "denied": len(denied),
            "allowed_under_exception": sum(1 for r in attempts
                                           if _decision(r).get("exception_id")),
            "fail_closed": sum(1 for r in denied if _decision(r).get("error")),
            "api_refusals": len(refused),
        },
        "by_user": [{"user": u, **dict(c)} for u, c in
                    sorted(by_actor.items(), key=lambda kv: -kv[1]["attempts"])],
        "denials_by_policy": dict(Counter(_decision(r).get("policy_id", "")
                                          for r in denied).most_common()),
        "denials": _limited([_row(r) for r in denied]),
        # what a policy denied but a steward's exception let through, and the exceptions'
        # own lifecycle: an auditor checks these next to the denials
        "allowed_under_exception": _limited([_row(r) for r in attempts
                                             if _decision(r).get("exception_id")]),
        "exception_workflow": _limited([_row(r) for r in inputs.records
                                        if r.action.startswith("exception.")]),
        "api_refusals": _limited([_row(r) for r in refused]),
    }


def _a124(inputs: ReportInputs) -> dict[str, Any]:
    v = inputs.verification
    admin = [r for r in inputs.records if r.action in ADMIN_ACTIONS]
    seqs = [r.seq for r in inputs.records]
    return {
        "verification": {
            "ok": bool(v.ok), "records_verified": v.count, "head_hash": v.head_hash,
            "first_bad_seq": v.first_bad_seq, "problem": v.problem, "message": v.message,
        },
        "logging": {
            "records_in_period": len(inputs.records),
            "first_seq": min(seqs) if seqs else None, "last_seq": max(seqs) if seqs else None,
            "by_action": dict(Counter(r.action for r in inputs.records).most_common()),
            "by_channel": dict(Counter(r.via.split("/", 1)[0] or "unknown"
                                       for r in inputs.records).most_common()),
        },
        "admin_actions": _limited([_row(r) for r in admin]),
    }


def _data_processing(inputs: ReportInputs, wanted: frozenset[str]) -> dict[str, Any]:
    per_dataset: dict[str, dict[str, Any]] = {}
    by_user: dict[str, Counter[str]] = defaultdict(Counter)
    touching: list[AuditRecord] = []
    for r in inputs.records:
        if r.action not in ACCESS_ACTIONS and r.action != "lineage.ingest":
            continue
        tags, datasets = _tags_of(r, inputs)
        hit = tags & wanted
        if not hit:
            continue
        touching.append(r)
        by_user[r.actor]["records"] += 1
        if _denied(r):
            by_user[r.actor]["denied"] += 1
        keys = [k for k in datasets if _tags(inputs.classify(k)) & wanted] or [r.resource]
        for key in keys:
            c = inputs.classify(key)
            entry = per_dataset.setdefault(key, {
                "dataset": key, "tags": sorted(c.tags) if c else sorted(hit),
                "events": 0, "decisions": 0, "denied": 0, "jobs": set(), "users": set(),
                "purposes": set(),
            })
            if r.action == "lineage.ingest":
                entry["events"] += 1
                entry["jobs"].add(r.resource)
            else:
                entry["decisions"] += 1
                entry["denied"] += int(_denied(r))
            entry["users"].add(r.actor)
            operation = (r.details or {}).get("operation")
            if isinstance(operation, Mapping) and operation.get("purpose"):
                entry["purposes"].add(str(operation["purpose"]))
    datasets_out = [
        {**e, "jobs": sorted(e["jobs"]), "users": sorted(e["users"]),
         "purposes": sorted(e["purposes"])}
        for e in sorted(per_dataset.values(), key=lambda e: e["dataset"])
    ]
    return {
        "summary": {"records": len(touching), "datasets": len(datasets_out),
                    "denied": sum(1 for r in touching if _denied(r)),
                    "users": len(by_user)},
        "datasets": datasets_out,
        "by_user": [{"user": u, **dict(c)} for u, c in sorted(by_user.items())],
        "records": _limited([_row(r) for r in touching]),
    }


def _exceptions_section(inputs: ReportInputs) -> dict[str, Any]:
    steps = [r for r in inputs.records if r.action.startswith("exception.")]
    return {
        "steps_in_period": _limited([_row(r) for r in steps]),
        "by_step": dict(Counter(r.action for r in steps).most_common()),
        "current": [dict(e) for e in inputs.exceptions],
    }


def _gdpr(inputs: ReportInputs) -> dict[str, Any]:
    return {"processing": _data_processing(inputs, PERSONAL_TAGS),
            "exceptions": _exceptions_section(inputs),
            "overrides": _limited([_row(r) for r in inputs.records
                                   if r.action == "classification.override"])}


def _hipaa(inputs: ReportInputs) -> dict[str, Any]:
    return {"phi_access": _data_processing(inputs, PHI_TAGS)}


REPORT_KINDS: dict[str, tuple[str, Callable[[ReportInputs], dict[str, Any]]]] = {
    "iso27001-a94": ("ISO/IEC 27001 A.9.4 — access control: attempts and denials", _a94),
    "iso27001-a124": ("ISO/IEC 27001 A.12.4 — logging and monitoring", _a124),
    "gdpr": ("GDPR — processing of personal data and exceptions", _gdpr),
    "hipaa": ("HIPAA — access to protected health information", _hipaa),
}


def build_report(kind: str, inputs: ReportInputs, *, since: datetime | str | None = None,
                 until: datetime | str | None = None) -> dict[str, Any]:
    """The report ``kind`` over ``inputs.records`` (already restricted to the period)."""
    try:
        title, build = REPORT_KINDS[kind]
    except KeyError:
        raise ValidationError(
            f"unknown report {kind!r}; choose one of {', '.join(REPORT_KINDS)}"
        ) from None
    start, end = _period(since, until)
    return {
        "kind": kind, "title": title, "tenant": inputs.tenant,
        "period": {"since": start, "until": end},
        "generated_at": format_timestamp(utcnow()),
        "chain": {"verified": bool(inputs.verification.ok),
                  "message": inputs.verification.message},
        "sections": build(inputs),
    }


def build_for_governor(gov: Any, kind: str, *, since: datetime | str | None = None,
                       until: datetime | str | None = None,
                       lock: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
    """Read the period's records, verify the chain and build the report from a governor.

    The graph's classifications are copied first (under ``lock`` when given: a service
    passes the governor's lock so ingests may continue while the chain is read and verified).
    """
    start, end = _period(since, until)
    with lock if lock is not None else nullcontext():
        labels = {n.ref.key: n.effective for n in gov.graph.nodes()
                  if not n.effective.is_unknown}
    records = list(gov.audit.records(since=start, until=end))
    exceptions = [e.to_dict() for e in gov.exceptions.list()]
    inputs = ReportInputs(gov.settings.tenant, records, gov.verify_audit(), labels.get,
                          exceptions)
    return build_report(kind, inputs, since=start, until=end)


# -- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1d2330}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:1.8rem;
border-bottom:2px solid #e3e6ee;padding-bottom:.2rem}h3{font-size:1rem;margin-top:1.2rem}
.meta{color:#5b6275}.ok{color:#0a7d38;font-weight:600}.bad{color:#b42318;font-weight:600}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #d7dbe5;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f9}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}
dt{font-weight:600}.note{color:#5b6275;font-size:.85rem}
"""


def _esc(value: Any) -> str:
    if isinstance(value, (list, tuple, set)):
        return html.escape(", ".join(str(v) for v in value))
    if value is None:
        return "—"
    return html.escape(str(value))


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _render(value: Any, level: int) -> str:
    if isinstance(value, Mapping):
        if set(value) >= {"total", "shown", "rows"}:
            note = (f'<p class="note">{value["total"]} in total'
                    + (f', first {value["shown"]} shown' if value["shown"] < value["total"]
                       else "") + "</p>")
            return note + _table(value["rows"])
        scalars = {k: v for k, v in value.items() if not isinstance(v, (Mapping, list))
                   or (isinstance(v, list) and all(not isinstance(i, Mapping) for i in v))}
        nested = {k: v for k, v in value.items() if k not in scalars}
        out = ""
        if scalars:
            out += "<dl>" + "".join(f"<dt>{_esc(_label(k))}</dt><dd>{_esc(v)}</dd>"
                                    for k, v in scalars.items()) + "</dl>"
        tag = f"h{min(level, 4)}"
        for k, v in nested.items():
            out += f"<{tag}>{_esc(_label(k))}</{tag}>" + _render(v, level + 1)
        return out
    if isinstance(value, list):
        return _table(value) if value and isinstance(value[0], Mapping) else _esc(value)
    return _esc(value)


def _table(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    if not rows:
        return '<p class="note">none</p>'
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_esc(_label(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Mapping[str, Any]) -> str:
    """A standalone HTML page (no scripts, no external resources) for one report."""
    chain = report["chain"]
    status = ('<span class="ok">verified</span>' if chain["verified"]
              else '<span class="bad">BROKEN</span>')
    period = report["period"]
    sections = "".join(f"<h2>{_esc(_label(name))}</h2>{_render(body, 3)}"
                       for name, body in report["sections"].items())
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_esc(report['title'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(report['title'])}</h1>"
        f"<p class=\"meta\">Tenant <b>{_esc(report['tenant'])}</b> · period "
        f"{_esc(period['since'])} – {_esc(period['until'])} · generated "
        f"{_esc(report['generated_at'])}</p>"
        f"<p>Audit chain: {status} — {_esc(chain['message'])}</p>"
        f"{sections}</body></html>"
    )
