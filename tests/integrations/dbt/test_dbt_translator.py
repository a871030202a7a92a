"""DbtTranslator, DbtManifest, records and argument handling — no dbt run needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import lacuna_orchestration.integrations.dbt as dbt_integration
from lacuna_orchestration.errors import NotFound, ValidationError
from lacuna_orchestration.integrations.dbt import (
    DbtArgs,
    DbtManifest,
    DbtNode,
    DbtTranslator,
    DbtTranslatorSettings,
    EventAssembler,
    RecordCollector,
    read_log_records,
)
from lacuna_orchestration.integrations.dbt.manifest import DbtColumn
from lacuna_orchestration.integrations.dbt.records import parse_record, parse_record_line
from lacuna_orchestration.lineage.openlineage import parse_event
from lacuna_orchestration.model import DatasetRef, OperationKind, Tier

DUCK = {"type": "duckdb", "path": "/data/shop.duckdb", "database": "shop", "schema": "main"}
PG = {"type": "postgres", "host": "db.internal", "port": 5432, "database": "wh"}


def manifest_node(name: str, *, kind: str = "model", parents: tuple[str, ...] = (),
                  meta: dict[str, Any] | None = None, columns: tuple[str, ...] = (),
                  sql: str = "select 1", materialized: str = "table",
                  schema: str = "main", config_schema: str | None = None,
                  pre_hook: str = "{{ lacuna.gate() }}") -> dict[str, Any]:
    prefix = {"model": "model", "seed": "seed", "source": "source"}[kind]
    return {
        "unique_id": f"{prefix}.shop.{name}", "resource_type": kind, "name": name,
        "database": "shop", "schema": schema, "alias": name, "package_name": "shop",
        "config": {"schema": config_schema, "materialized": materialized, "meta": meta or {},
                   "pre-hook": [{"sql": pre_hook, "transaction": True}]},
        "columns": {c: {"name": c, "data_type": None, "meta": {}} for c in columns},
        "depends_on": {"nodes": list(parents)}, "raw_code": sql, "fqn": ["shop", name],
        "original_file_path": f"models/{name}.sql",
    }


def shop_manifest() -> DbtManifest:
    nodes = [
        manifest_node("raw_customers", kind="seed"),
        manifest_node("stg_customers", parents=("seed.shop.raw_customers",),
                      columns=("customer_id", "email", "country")),
        manifest_node("orders_eph", parents=("seed.shop.raw_customers",),
                      materialized="ephemeral"),
        manifest_node("joined", parents=("model.shop.stg_customers", "model.shop.orders_eph")),
        manifest_node("by_country", parents=("model.shop.joined",),
                      sql="select country, count(*) as n\nfrom x\nGROUP  BY country"),
    ]
    return DbtManifest.from_dict({"metadata": {"project_name": "shop", "adapter_type": "duckdb"},
                                  "nodes": {n["unique_id"]: n for n in nodes}, "sources": {}})


# -- translator --------------------------------------------------------------------------------

def test_warehouse_names_follow_the_openlineage_convention() -> None:
    t = DbtTranslator()
    assert t.get_relation_ref("shop", "main", "orders", DUCK) == DatasetRef(
        "duckdb:///data/shop.duckdb", "shop.main.orders")
    assert t.get_relation_ref("wh", "analytics", "orders", PG) == DatasetRef(
        "postgres://db.internal:5432", "wh.analytics.orders")
    assert t.get_namespace({"type": "snowflake", "account": "acme"}) == "snowflake://acme"


def test_declared_location_names_where_the_data_ends_up() -> None:
    t = DbtTranslator()
    node = DbtNode("model.shop.export", "model", "export", "shop", "main_exports", "export",
                   meta={"lacuna": {"location": "file:///srv/share/Downloads/"}})
    assert t.get_dataset_ref(node, DUCK) == DatasetRef("file", "/srv/share/Downloads/export")
    assert t.get_location_ref("s3://bucket/out/", "x") == DatasetRef("s3://bucket", "out/x")
    assert t.get_operation(node, []) is OperationKind.EXPORT


def test_operation_inference_and_override() -> None:
    manifest = shop_manifest()
    t = DbtTranslator()

    def op(uid: str) -> OperationKind:
        return t.get_operation(manifest.node(uid), manifest.relation_parents(uid))

    assert op("model.shop.stg_customers") is OperationKind.TRANSFORM
    assert op("model.shop.joined") is OperationKind.JOIN
    assert op("model.shop.by_country") is OperationKind.AGGREGATE
    declared = DbtNode("model.shop.m", "model", "m", meta={"lacuna": {"operation": "anonymize"}})
    assert t.get_operation(declared, []) is OperationKind.ANONYMIZE
    commented = DbtNode("model.shop.c", "model", "c", code="-- group by later\nselect 1")
    assert t.get_operation(commented, [declared]) is OperationKind.TRANSFORM
    plain = DbtTranslator(DbtTranslatorSettings(infer_operation=False))
    assert plain.get_operation(manifest.node("model.shop.by_country"),
                               manifest.relation_parents("model.shop.by_country")
                               ) is OperationKind.TRANSFORM


def test_floor_from_meta_and_bad_tiers_name_the_node() -> None:
    t = DbtTranslator()
    node = DbtNode("model.shop.m", "model", "m",
                   meta={"classification": "proprietary", "tags": ["pii", "Customer-Data"]})
    floor = t.get_floor(node)
    assert floor.tier is Tier.PROPRIETARY and floor.tags == ("PII", "CUSTOMER_DATA")
    bad = DbtNode("model.shop.bad", "model", "bad", meta={"classification": "SECRET"})
    with pytest.raises(ValidationError, match=r"model.shop.bad declares meta.classification "
                                              r"'SECRET'.*PUBLIC, INTERNAL, PROPRIETARY"):
        t.get_floor(bad)
    with pytest.raises(ValidationError, match="model.shop.t meta.tags must be a list"):
        t.get_floor(DbtNode("model.shop.t", "model", "t", meta={"tags": {"a": 1}}))
    col = DbtNode("model.shop.c", "model", "c", columns=(
        DbtColumn("email", meta={"classification": "PROPRIETARY", "tags": ["PII"]}),))
    labels = t.get_column_labels(col)
    assert labels["email"].tier is Tier.PROPRIETARY and labels["email"].tags == ("PII",)


def test_run_event_is_valid_openlineage_with_floors_and_column_labels() -> None:
    t = DbtTranslator()
    node = DbtNode("model.shop.m", "model", "m", "shop", "main", "m",
                   meta={"classification": "INTERNAL", "tags": ["DERIVED_FROM_PII"],
                         "lacuna": {"purpose": "analytics", "domain": "marketing"}},
                   columns=(DbtColumn("email", meta={"classification": "PROPRIETARY",
                                                     "tags": ["PII"]}),))
    parent = DbtNode("seed.shop.raw", "seed", "raw", "shop", "main", "raw")
    event = t.get_run_event(node, event_type="COMPLETE", target=DUCK,
                            parents=[(parent, [("email", "varchar")])],
                            columns=[("email", "varchar"), ("n", "bigint")],
                            invocation=("run-1", "shop", "build"), user="ada",
                            error=None)
    parsed = parse_event(json.dumps(event))
    assert parsed.job == "dbt.model.shop.m"
    assert [i.ref.name for i in parsed.inputs] == ["shop.main.raw"]
    out = parsed.outputs[0]
    assert out.explicit_tier is Tier.INTERNAL and "DERIVED_FROM_PII" in out.explicit_tags
    assert out.column_labels["email"] == (Tier.PROPRIETARY, frozenset({"PII"}))
    assert [f.name for f in out.fields] == ["email", "n"]
    assert parsed.purpose == "analytics" and parsed.user == "ada"
    assert event["run"]["facets"]["lacuna"]["domain"] == "marketing"
    assert event["run"]["facets"]["parent"]["run"]["runId"] == "run-1"
    assert event["run"]["runId"] == t.get_run_id("run-1", "model.shop.m")


def test_seed_columns_come_from_the_csv_header(tmp_path: Path) -> None:
    csv = tmp_path / "seeds" / "raw.csv"
    csv.parent.mkdir()
    csv.write_text("id,email,phone\n1,a@b.c,123\n")
    node = DbtNode("seed.shop.raw", "seed", "raw", file_path=str(csv))
    assert DbtTranslator().get_declared_columns(node) == [("id", ""), ("email", ""),
                                                          ("phone", "")]


# -- manifest ------------------------------------------------------------------------------

def test_relation_parents_look_through_ephemeral_models_and_order_is_topological() -> None:
    manifest = shop_manifest()
    assert [p.unique_id for p in manifest.relation_parents("model.shop.joined")] == [
        "model.shop.stg_customers", "seed.shop.raw_customers"]
    order = manifest.in_build_order(["model.shop.by_country", "model.shop.joined",
                                     "seed.shop.raw_customers", "model.shop.stg_customers"])
    assert order.index("seed.shop.raw_customers") < order.index("model.shop.stg_customers")
    assert order.index("model.shop.joined") < order.index("model.shop.by_country")
    assert "model.shop.orders_eph" not in {n.unique_id for n in manifest.gated()}


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"no dbt manifest at .*run `dbt parse`"):
        DbtManifest.load(tmp_path / "target")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValidationError, match="not valid JSON"):
        DbtManifest.load(tmp_path / "manifest.json")
    with pytest.raises(NotFound, match="model.shop.nope is not a model"):
        shop_manifest().node("model.shop.nope")


# -- records -----------------------------------------------------------------------------------

def _record(kind: str, uid: str, **data: Any) -> dict[str, Any]:
    return {"v": 1, "kind": kind, "record_id": f"inv-1:{kind}:{uid}", "invocation_id": "inv-1",
            "unique_id": uid, "project": "shop", "target": DUCK, "lacuna": None, **data}


def test_records_from_text_and_json_log_files(tmp_path: Path) -> None:
    rec = _record("run_start", "shop", command="build")
    text_log = tmp_path / "dbt.log"
    text_log.write_text(f"10:00:00.1 [debug] [Thread-1  ]: lacuna.record {json.dumps(rec)}\n"
                        "10:00:00.2 [info ] other line\n")
    json_log = tmp_path / "dbt.json.log"
    json_log.write_text(json.dumps({"info": {"name": "JinjaLogDebug"},
                                    "data": {"msg": f"lacuna.record {json.dumps(rec)}"}}) + "\n")
    for path in (text_log, json_log):
        records = read_log_records(path)
        assert [(r.kind, r.command, r.run_key) for r in records] == [("run_start", "build",
                                                                      "inv-1")]
    with pytest.raises(NotFound):
        read_log_records(tmp_path / "missing.log")
    assert parse_record_line("no marker here") is None
    with pytest.raises(ValidationError, match="unknown kind"):
        parse_record({"kind": "other", "invocation_id": "i", "unique_id": "u"})


def test_collector_keeps_only_lacuna_records() -> None:
    class Info:
        def __init__(self, name: str) -> None:
            self.name = name

    class Data:
        def __init__(self, msg: str) -> None:
            self.msg = msg

    class Event:
        def __init__(self, name: str, msg: str) -> None:
            self.info, self.data = Info(name), Data(msg)

    seen: list[str] = []
    collector = RecordCollector(on_record=lambda r: seen.append(r.kind))
    collector(Event("JinjaLogDebug", "lacuna.record " + json.dumps(_record("run_end", "shop"))))
    collector(Event("JinjaLogDebug", "lacuna.record {broken"))
    collector(Event("SQLQuery", "lacuna.record " + json.dumps(_record("run_end", "shop"))))
    collector(Event("JinjaLogInfo", "hello"))
    assert [r.kind for r in collector.records] == ["run_end"] == seen
    assert len(collector.errors) == 1


def test_records_become_events_failures_and_aborts_included() -> None:
    manifest = shop_manifest()
    model = _record(
        "model", "model.shop.stg_customers", resource_type="model", name="stg_customers",
        relation={"database": "shop", "schema": "main", "identifier": "stg_customers"},
        meta={"classification": "PROPRIETARY"}, columns=[{"name": "email", "type": "VARCHAR"}],
        parents=[{"unique_id": "seed.shop.raw_customers", "resource_type": "seed",
                  "database": "shop", "schema": "main", "identifier": "raw_customers"}],
        grouped=False)
    end = _record("run_end", "shop", command="build", results=[
        {"unique_id": "model.shop.stg_customers", "resource_type": "model", "status": "success"},
        {"unique_id": "model.shop.joined", "resource_type": "model", "status": "error",
         "message": "boom"},
        {"unique_id": "model.shop.by_country", "resource_type": "model", "status": "skipped"},
    ])
    records = [parse_record(_record("run_start", "shop", command="build")),
               parse_record(model), parse_record(end)]
    events = [e for _, e in EventAssembler(DbtTranslator(), manifest, DUCK).from_records(records)]
    summary = [(e["job"]["name"], e["eventType"]) for e in events]
    assert summary == [("shop.build", "START"), ("model.shop.stg_customers", "COMPLETE"),
                       ("model.shop.joined", "FAIL"), ("model.shop.by_country", "ABORT"),
                       ("shop.build", "FAIL")]
    assert events[2]["run"]["facets"]["errorMessage"]["message"] == "boom"
    complete = parse_event(events[1])
    assert complete.outputs[0].explicit_tier is Tier.PROPRIETARY
    assert [f.name for f in complete.outputs[0].fields] == ["email"]
    bad = parse_record(_record("model", "model.shop.x", meta={"classification": "nope"},
                               relation={"database": "shop", "schema": "main",
                                         "identifier": "x"}))
    errors: list[str] = []
    assert EventAssembler().from_records([bad], errors) == []
    assert "not a tier" in errors[0]


# -- arguments and public surface ----------------------------------------------------------

def test_dbt_args_reads_what_lacuna_needs_and_keeps_the_rest() -> None:
    args = DbtArgs.parse(["--project-dir", "p", "--profiles-dir=q", "-t", "prod", "-s", "a",
                          "b+", "--exclude", "c", "--vars", "{x: 1}", "--full-refresh"])
    assert (args.project_dir, args.profiles_dir, args.target) == ("p", "q", "prod")
    assert args.selection == ("-s", "a", "b+", "--exclude", "c")
    assert args.vars == {"x": 1}
    assert args.without_vars() == ["--project-dir", "p", "--profiles-dir=q", "-t", "prod",
                                   "-s", "a", "b+", "--exclude", "c", "--full-refresh"]
    with pytest.raises(Exception, match="--vars must be a YAML mapping"):
        DbtArgs.parse(["--vars", "[1, 2]"])


def test_public_surface_imports_once_each() -> None:
    names = dbt_integration.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(dbt_integration, name) is not None


def test_inputs_describe_sources_but_only_name_tracked_parents() -> None:
    t = DbtTranslator()
    source = DbtNode("source.shop.crm.contacts", "source", "contacts", "crm", "public", "contacts",
                     meta={"classification": "PROPRIETARY"},
                     columns=(DbtColumn("email", "text"),))
    described = t.get_input(source, PG)
    assert described["facets"]["schema"]["fields"] == [{"name": "email", "type": "text"}]
    assert described["facets"]["lacuna"]["classification"] == "PROPRIETARY"
    model = DbtNode("model.shop.m", "model", "m", "wh", "analytics", "m",
                    meta={"classification": "INTERNAL"}, columns=(DbtColumn("a"),))
    assert t.get_input(model, PG) == {"namespace": "postgres://db.internal:5432",
                                      "name": "wh.analytics.m", "facets": {}}
    # a parent Lacuna has not seen yet is described with the columns the caller knows
    assert "schema" in t.get_input(model, PG, [("a", "int")])["facets"]
