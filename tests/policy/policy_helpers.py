"""Builders shared by the policy tests (named apart from other folders' helpers: the test
folders are not packages, so module names must be unique)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lacuna_orchestration.model import (
    Classification,
    DatasetRef,
    Evidence,
    Layer,
    Operation,
    OperationKind,
    Tier,
)
from lacuna_orchestration.policy.decide import build_input

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
TMP_EXPORT = DatasetRef("file", "/tmp/export.csv")
CUSTOMERS = DatasetRef("file", "/data/customers.csv")


def classification(tier: Tier, *tags: str, inherited_from: str = "") -> Classification:
    evidence = (
        (Evidence(Layer.PROPAGATED, inherited_from, "dataset", "inherited"),)
        if inherited_from
        else ()
    )
    return Classification(
        tier, frozenset(tags), 0.95, Layer.PROPAGATED if evidence else Layer.HEURISTIC, evidence
    )


def scenario(
    kind: str = "export",
    *,
    tier: Tier = Tier.PROPRIETARY,
    tags: tuple[str, ...] = ("PII", "GDPR", "FINANCIAL"),
    destination: DatasetRef | None = TMP_EXPORT,
    environment: str = "production",
    purpose: str = "",
    domain: str = "",
    encrypted: bool = False,
    managed: bool | None = None,
    sources: tuple[DatasetRef, ...] = (CUSTOMERS,),
) -> tuple[dict[str, Any], Classification]:
    """An input document and the source classification it was built from."""
    c = classification(tier, *tags, inherited_from=sources[0].key) if sources else None
    op = Operation(
        OperationKind.parse(kind),
        sources,
        destination,
        user="alice",
        purpose=purpose,
        environment=environment,
        code="export_job",
        context={"domain": domain} if domain else {},
    )
    doc = build_input(
        op,
        {s: c for s in sources} if c is not None else {},
        encrypted=encrypted,
        managed=managed,
    )
    return doc, c or Classification.unknown()
