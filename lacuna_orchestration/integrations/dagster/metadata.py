"""What a person sees of Lacuna in the Dagster UI: tier and tags on every materialization and
check result, the decision that let an asset run, and (optionally) the tier as an asset tag and
kind so the asset graph shows classification along the lineage.

Keys are stable, prefixed ``lacuna/``:

=====================  ==================================================================
``lacuna/tier``        PUBLIC / INTERNAL / PROPRIETARY (text)
``lacuna/tags``        the labels, comma separated (text)
``lacuna/dataset``     the dataset Lacuna tracks for this asset (``namespace::name``)
``lacuna/evidence``    why: layer, rule or upstream, target (markdown)
``lacuna/decision``    ALLOW / DENY, with the exception id when one applied
``lacuna/policy``      policy id and version that decided
``lacuna/steward``     whom to ask
=====================  ==================================================================

>>> from lacuna_orchestration.model import Classification, Tier
>>> md = classification_metadata(Classification(Tier.PROPRIETARY, frozenset({"PII"})))
>>> md["lacuna/tier"].value, md["lacuna/tags"].value
('PROPRIETARY', 'PII')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from lacuna_orchestration.model import Classification, DatasetRef, Decision

__all__ = [
    "TIER_TAG",
    "annotate_assets",
    "classification_metadata",
    "decision_metadata",
    "evidence_markdown",
    "tier_tags",
]

TIER_TAG = "lacuna/tier"
MAX_EVIDENCE_ROWS = 20


def classification_metadata(
    classification: Classification,
    *,
    dataset: DatasetRef | None = None,
    columns: Mapping[str, Classification] | None = None,
) -> dict[str, dg.MetadataValue]:
    """Tier, tags and evidence of a dataset (and its columns) as Dagster metadata."""
    md: dict[str, dg.MetadataValue] = {
        "lacuna/tier": dg.MetadataValue.text(classification.tier.name),
        "lacuna/tags": dg.MetadataValue.text(", ".join(classification.sorted_tags()) or "none"),
    }
    if dataset is not None:
        md["lacuna/dataset"] = dg.MetadataValue.text(dataset.key)
    evidence = evidence_markdown(classification, columns or {})
    if evidence:
        md["lacuna/evidence"] = dg.MetadataValue.md(evidence)
    return md


def decision_metadata(decision: Decision) -> dict[str, dg.MetadataValue]:
    """The gate's answer: verdict, policy, steward, reasons and alternatives."""
    verdict = "ALLOW" if decision.allow else "DENY"
    if decision.exception_id:
        verdict += f" (exception {decision.exception_id})"
    md: dict[str, dg.MetadataValue] = {
        "lacuna/decision": dg.MetadataValue.text(verdict),
        "lacuna/policy": dg.MetadataValue.text(
            f"{decision.policy_id} v{decision.policy_version}".strip()
            if decision.policy_version else (decision.policy_id or "none")
        ),
        "lacuna/decision_id": dg.MetadataValue.text(decision.decision_id),
    }
    if decision.steward:
        md["lacuna/steward"] = dg.MetadataValue.text(decision.steward)
    if decision.exception_id:
        md["lacuna/exception_id"] = dg.MetadataValue.text(decision.exception_id)
    if decision.reasons:
        md["lacuna/reasons"] = dg.MetadataValue.md(_bullets(decision.reasons))
    if decision.alternatives:
        md["lacuna/alternatives"] = dg.MetadataValue.md(_bullets(decision.alternatives))
    if decision.error:
        md["lacuna/error"] = dg.MetadataValue.text(decision.error)
    if decision.classification is not None:
        md["lacuna/source_tier"] = dg.MetadataValue.text(decision.classification.tier.name)
    return md


def evidence_markdown(classification: Classification,
                      columns: Mapping[str, Classification]) -> str:
    """A small markdown table: which column or upstream made the dataset what it is."""
    rows: list[tuple[str, str, str, str]] = []
    for name, col in sorted(columns.items()):
        if col.is_unknown:
            continue
        source = ", ".join(sorted({e.source for e in col.evidence})) or col.layer.value
        rows.append((name, col.describe(), col.layer.value, source))
    for ev in classification.evidence:
        rows.append((ev.target, ev.detail or "", ev.layer.value, ev.source))
    if not rows:
        return ""
    unique = list(dict.fromkeys(rows))
    lines = ["| target | classification | layer | evidence |", "|---|---|---|---|"]
    for row in unique[:MAX_EVIDENCE_ROWS]:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    if len(unique) > MAX_EVIDENCE_ROWS:
        lines.append(f"| … {len(unique) - MAX_EVIDENCE_ROWS} more | | | |")
    return "\n".join(lines)


def tier_tags(classification: Classification) -> dict[str, str]:
    """Definition tags for an asset (tag values allow only ``[A-Za-z0-9_.-]``, so the labels
    are joined with dots)."""
    tags = {TIER_TAG: classification.tier.name}
    if classification.tags:
        joined = ".".join(classification.sorted_tags())
        if len(joined) <= 63:
            tags["lacuna/labels"] = joined
    return tags


def annotate_assets(
    assets: Sequence[Any],
    classifications: Mapping[str, Classification],
    *,
    as_kind: bool = True,
) -> list[Any]:
    """Copies of ``assets`` whose specs carry their Lacuna tier as a tag (and as a kind, which
    the asset graph draws on each node). ``classifications`` maps user-string asset keys to
    classifications — e.g. from the Lacuna store when definitions load (see
    ``LacunaResource.classifications_for``). Assets not in the mapping are returned as they are.
    """
    out: list[Any] = []
    for item in assets:
        if not isinstance(item, dg.AssetsDefinition):
            out.append(item)
            continue

        def annotate(spec: dg.AssetSpec) -> dg.AssetSpec:
            found = classifications.get(spec.key.to_user_string())
            if found is None:
                return spec
            kinds = set(spec.kinds or ())
            if as_kind and len(kinds) < 10:
                kinds.add(found.tier.name.lower())
            return spec.replace_attributes(tags={**(spec.tags or {}), **tier_tags(found)},
                                           kinds=kinds)

        out.append(item.map_asset_specs(annotate))
    return out


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"{i}. {text}" for i, text in enumerate(items, 1))


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
