"""The gate's decisions over a hand-written manifest, with a real Governor (no dbt run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbt_helpers import POLICIES

from lacuna_orchestration.governor import Governor
from lacuna_orchestration.integrations.dbt import DbtGate, DbtManifest
from lacuna_orchestration.model import OperationKind, Tier

TARGET = {"type": "duckdb", "path": "/data/shop.duckdb"}
RUN = "11111111-2222-4333-8444-555555555555"


def node(name: str, *, kind: str = "model", parents: tuple[str, ...] = (),
         meta: dict[str, Any] | None = None, columns: tuple[str, ...] = (),
         sql: str = "select 1") -> dict[str, Any]:
    return {
        "unique_id": f"{kind}.shop.{name}", "resource_type": kind, "name": name,
        "database": "shop", "schema": "main", "alias": name, "package_name": "shop",
        "config": {"materialized": "table", "meta": meta or {}},
        "columns": {c: {"name": c} for c in columns},
        "depends_on": {"nodes": list(parents)}, "raw_code": sql, "fqn": ["shop", name],
    }


def manifest(*extra: dict[str, Any]) -> DbtManifest:
    nodes = [
        node("customers", kind="seed", columns=("customer_id", "first_name", "email", "phone",
                                                "country")),
        node("stg_customers", parents=("seed.shop.customers",)),
        node("by_country", parents=("model.shop.stg_customers",),
             sql="select country, count(*) as customer_count from x group by country",
             meta={"classification": "INTERNAL"}),
        *extra,
    ]
    return DbtManifest.from_dict({"metadata": {"project_name": "shop"},
                                  "nodes": {n["unique_id"]: n for n in nodes}})


@pytest.fixture()
def gov(tmp_path: Path) -> Iterator[Governor]:
    with Governor.open(database_url=f"sqlite:///{tmp_path / 'lacuna.db'}",
                       policy_dir=str(POLICIES)) as g:
        yield g


def test_export_to_an_unmanaged_location_is_denied_with_the_policy_message(
        gov: Governor) -> None:
    export = node("contacts", parents=("model.shop.stg_customers",),
                  meta={"lacuna": {"location": "file:///home/ana/Desktop/"}})
    m = manifest(export)
    plan = DbtGate(gov, m, TARGET).plan(list(m.nodes), run_id=RUN)
    assert list(plan.denied) == ["model.shop.contacts"]
    decision = plan.denied["model.shop.contacts"]
    assert decision.action == "export" and decision.policy_id == "export-governance"
    assert "Cannot export" in decision.message and "Desktop" in decision.message
    assert plan.vars()["lacuna_denied"] == {"model.shop.contacts": decision.message}
    # parents first: the seed was decided (and classified) before the models that read it
    assert next(iter(plan.nodes)) == "seed.shop.customers"
    assert plan.nodes["model.shop.contacts"].operation is OperationKind.EXPORT
    # the gate's questions and answers are in the audit chain
    starts = [r for r in gov.audit.tail(100) if r.reason == "run event START"]
    assert len(starts) == len(m.nodes)
    assert gov.verify_audit().ok


def test_floor_violations_where_the_columns_allow_a_verdict(gov: Governor) -> None:
    public = node("directory", parents=("model.shop.stg_customers",),
                  meta={"classification": "PUBLIC"})
    m = manifest(public)
    plan = DbtGate(gov, m, TARGET).plan(list(m.nodes), run_id=RUN)
    # a transform of PII data cannot be PUBLIC, whatever its columns
    violation = plan.violations["model.shop.directory"]
    assert violation.declared is Tier.PUBLIC and violation.derived.tier is Tier.PROPRIETARY
    assert "declares PUBLIC" in plan.vars()["lacuna_floor_violations"]["model.shop.directory"]
    # an aggregate's verdict waits for its real columns: guessed ones are not evidence
    assert not plan.nodes["model.shop.by_country"].columns_known
    assert "model.shop.by_country" not in plan.violations
    assert plan.nodes["model.shop.by_country"].operation is OperationKind.AGGREGATE


def test_declared_columns_and_guessed_columns(gov: Governor) -> None:
    m = manifest()
    gate = DbtGate(gov, m, TARGET)
    seed = m.node("seed.shop.customers")
    assert [c for c, _ in gate.known_columns(seed) or ()] == [
        "customer_id", "first_name", "email", "phone", "country"]
    stg = m.node("model.shop.stg_customers")
    assert gate.known_columns(stg) is None
    assert [c for c, _ in gate.guessed_columns(m.relation_parents(stg.unique_id))] == [
        "customer_id", "first_name", "email", "phone", "country"]
    gate.plan(list(m.nodes), run_id=RUN)
    # what a START recorded is what Lacuna knows next time
    assert gate.known_columns(stg) is not None


def test_a_declared_domain_is_asked_with_its_context(gov: Governor) -> None:
    to_marketing = node("campaign_list", parents=("model.shop.stg_customers",),
                        meta={"lacuna": {"domain": "marketing"}})
    m = manifest(to_marketing)
    plan = DbtGate(gov, m, TARGET).plan(list(m.nodes), run_id=RUN)
    decision = plan.denied["model.shop.campaign_list"]
    assert decision.policy_id == "marketing-data-use"
    assert "only aggregated or anonymized" in decision.message


def test_catalog_columns_are_used_when_schema_yml_has_none(gov: Governor, tmp_path: Path) -> (
        None):
    catalog = tmp_path / "catalog.json"
    catalog.write_text('{"nodes": {"model.shop.stg_customers": {"columns": {'
                       '"b": {"name": "email", "type": "TEXT", "index": 2},'
                       '"a": {"name": "customer_id", "type": "INT", "index": 1}}}}}')
    gate = DbtGate(gov, manifest(), TARGET, catalog_path=catalog)
    assert gate.known_columns(gate.manifest.node("model.shop.stg_customers")) == [
        ("customer_id", "INT"), ("email", "TEXT")]
