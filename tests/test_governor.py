"""The governance spine end to end: event → classify → propagate → decide → audit."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from lacuna_orchestration.errors import IngestError, StoreError, ValidationError
from lacuna_orchestration.governor import Governor
from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.lineage.openlineage import parse_events
from lacuna_orchestration.model import DatasetRef, Layer, Operation, OperationKind, Tier
from lacuna_orchestration.settings import Settings
from tests.conftest import shared_dir

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "example_project" / "openlineage" / "pipeline.ndjson"
EVAL = shared_dir() / "eval" / "openlineage" / "concretized"
EXPORT = DatasetRef("file", "/tmp/export.csv")


def open_gov(url: str, **kw) -> Governor:
    return Governor(Settings.load(database_url=url, policy_dir=str(ROOT / "policies"), **kw))


@pytest.fixture()
def gov(sqlite_url):
    with open_gov(sqlite_url) as g:
        yield g


def ingest_pipeline(gov: Governor) -> list:
    return [gov.ingest(e, via="test") for e in parse_events(PIPELINE.read_bytes())]


def test_seed_scenarios(gov: Governor) -> None:
    results = ingest_pipeline(gov)
    analysis = gov.classification("analysis.csv")
    assert analysis.tier is Tier.PROPRIETARY
    assert {"PII", "FINANCIAL"} <= analysis.tags
    assert gov.classification("sales.csv").tier is Tier.INTERNAL
    summary = gov.classification("regional_summary.csv")
    assert summary.tier is Tier.INTERNAL
    assert "DERIVED_FROM_PII" in summary.tags and "PII" not in summary.tags

    denials = {d.decision_id: d for r in results for d in r.denials}
    assert len(denials) == 1
    (denial,) = denials.values()
    message = denial.message
    for needle in ("Governance Policy Violation", "Export analysis.csv", "/tmp/export.csv",
                   "PII", "PROPRIETARY", "Alternatives:", "export-governance", "Steward:"):
        assert needle in message
    assert denial.policy_version and denial.steward and denial.alternatives

    tree = gov.graph.tree(gov.graph.resolve("analysis.csv"))
    assert tree.splitlines()[0].startswith("analysis.csv (PROPRIETARY")
    assert "└─ sales.csv (INTERNAL, tags: FINANCIAL)" in tree

    report = gov.verify_audit()
    assert report.ok, report.message
    actions = [r.action for r in gov.audit.records()]
    assert actions.count("lineage.ingest") == 12
    assert actions.count("policy.decision") == 6  # one per run, START and COMPLETE share it


def test_state_survives_a_new_governor(sqlite_url) -> None:
    with open_gov(sqlite_url) as g:
        ingest_pipeline(g)
    with open_gov(sqlite_url) as g:
        assert g.classification("analysis.csv").tier is Tier.PROPRIETARY
        assert len(g.graph) == 8
        assert len(list(g.catalog.decisions(limit=100))) == 6
        assert g.verify_audit().ok


def test_explicit_floor_is_never_lowered(gov: Governor) -> None:
    out = DatasetSpec(DatasetRef("dbt", "marts.customer_analytics"), columns=("region", "n"),
                      tier="PROPRIETARY", tags=["CUSTOMER_DATA"])
    gov.ingest(build_run_event(job=("dbt", "model.x"), outputs=[out],
                               inputs=[DatasetSpec(DatasetRef("dbt", "ref.countries"),
                                                   columns=("country_code",))],
                               operation="aggregate"))
    c = gov.classification("marts.customer_analytics")
    assert c.tier is Tier.PROPRIETARY and "CUSTOMER_DATA" in c.tags
    assert c.layer is Layer.EXPLICIT


def test_a_restated_explicit_floor_changes_nothing(gov: Governor, monkeypatch) -> None:
    """Orchestrators restate a dataset's declared classification in every event: the second
    and later events neither reclassify it nor grow its stored explanation (the floor's
    reasoning used to be appended to itself once per event)."""
    out = DatasetSpec(DatasetRef("dbt", "marts.customer_analytics"), columns=("region", "n"),
                      tier="PROPRIETARY", tags=["CUSTOMER_DATA"])
    event = build_run_event(job=("dbt", "model.x"), outputs=[out], operation="aggregate")
    gov.ingest(event)
    node = gov.graph.node(gov.graph.resolve("marts.customer_analytics"))
    explicit = node.explicit
    classified: list[str] = []
    real = gov._classify_node
    monkeypatch.setattr(gov, "_classify_node",
                        lambda n, snap=None: (classified.append(n.ref.key), real(n, snap)))
    for _ in range(3):
        result = gov.ingest(build_run_event(job=("dbt", "model.x"), outputs=[out],
                                            operation="aggregate"))
        assert result.reclassified == ()
    assert classified == []
    assert node.explicit == explicit
    assert node.explicit.reasoning == "explicit classification declared by the producer"


def test_steward_override_is_audited_and_propagates(gov: Governor) -> None:
    ingest_pipeline(gov)
    gov.override("sales.csv", tier="PROPRIETARY", tags=["TRADE_SECRET"],
                 steward="steward@example.com", reason="contains negotiated prices")
    assert "TRADE_SECRET" in gov.classification("regional_summary.csv").tags or \
        "DERIVED_FROM_TRADE_SECRET" in gov.classification("regional_summary.csv").tags
    last = gov.audit.tail(1)[0]
    assert last.action == "classification.override" and last.actor == "steward@example.com"


def test_check_and_exception_lifecycle(sqlite_url) -> None:
    clock = [datetime(2026, 11, 23, 9, 0, tzinfo=UTC)]
    with Governor(Settings.load(database_url=sqlite_url, policy_dir=str(ROOT / "policies")),
                  clock=lambda: clock[0]) as g:
        ingest_pipeline(g)
        op = Operation(OperationKind.EXPORT, (g.ref("analysis.csv"),), EXPORT, user="ann")
        assert not g.check(op).allow
        exc = g.request_exception(operation_kind="export", sources=[g.ref("analysis.csv").key],
                                  destination=EXPORT.key, purpose="billing",
                                  justification="regulator asked for the file",
                                  requested_by="ann")
        g.approve_exception(exc.id, steward="steward@example.com", duration=timedelta(days=1))
        allowed = g.check(op)
        assert allowed.allow and allowed.exception_id == exc.id
        clock[0] += timedelta(days=2)
        expired = g.check(op)
        assert not expired.allow and not expired.exception_id
        actions = [r.action for r in g.audit.records()]
        assert {"exception.request", "exception.approve", "gate.check"} <= set(actions)


def test_development_environment_allows_tmp(sqlite_url) -> None:
    with open_gov(sqlite_url, environment="development") as g:
        ingest_pipeline(g)
        op = Operation(OperationKind.EXPORT, (g.ref("analysis.csv"),), EXPORT,
                       environment="development")
        assert g.check(op).allow


def test_broken_rego_fails_closed(sqlite_url, tmp_path) -> None:
    bad = tmp_path / "policies"
    bad.mkdir()
    (bad / "broken.rego").write_text("package lacuna\n\ndecisions := [x | \n")
    with Governor(Settings.load(database_url=sqlite_url, policy_dir=str(bad))) as g:
        result = g.register_lineage(["customers.csv"], "out.csv", "transform")
        (decision,) = result.decisions
        assert not decision.allow
        assert decision.error and "broken.rego" in decision.message
        assert g.audit.tail(1)[0].decision["error"]


def test_bad_events_write_nothing(gov: Governor) -> None:
    before = gov.audit.count()
    with pytest.raises(IngestError, match="run.runId"):
        gov.ingest({"eventType": "START", "eventTime": "2026-01-01T00:00:00Z",
                    "producer": "p", "schemaURL": "s", "run": {},
                    "job": {"namespace": "n", "name": "j"}})
    with pytest.raises(ValidationError, match="unknown operation kind"):
        gov.register_lineage(["a"], "b", "teleport")
    assert gov.audit.count() == before


def test_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot reach database"):
        Governor(Settings.load(database_url="postgresql://nobody@127.0.0.1:1/none"))


def test_whole_conformance_set_through_the_governor(gov: Governor) -> None:
    valid = {(r.split("\t")[0], int(r.split("\t")[1])) for r in
             (EVAL / "VALIDATION.tsv").read_text().splitlines() if r.endswith("\tY")}
    accepted = refused = 0
    for path in sorted(EVAL.glob("*.ndjson")):
        for number, raw in enumerate(parse_events(path.read_bytes()), 1):
            if (path.name, number) in valid:
                gov.ingest(raw, via="conformance")
                accepted += 1
            else:
                with pytest.raises(IngestError):
                    gov.ingest(raw)
                refused += 1
    assert accepted > 490 and refused > 0
    assert gov.audit.count() >= accepted
    assert gov.verify_audit().ok


def test_column_lineage_carries_pii_to_a_renamed_column(gov: Governor) -> None:
    src = DatasetSpec(DatasetRef("f", "crm"), columns=("email", "region"))
    out = DatasetSpec(DatasetRef("f", "summary"), columns=("region", "contact", "n"),
                      column_lineage={"contact": [(src.ref, "email")]})
    gov.ingest(build_run_event(job=("j", "agg"), inputs=[src], outputs=[out],
                               operation="aggregate"))
    c = gov.classification("summary")
    assert c.tier is Tier.PROPRIETARY and "contact" in c.reasoning


@pytest.mark.postgres
def test_spine_on_postgresql(pg_schema) -> None:
    from tests.conftest import PG_URL

    with Governor(Settings.load(database_url=PG_URL, database_schema=pg_schema,
                                policy_dir=str(ROOT / "policies"))) as g:
        ingest_pipeline(g)
        assert g.classification("analysis.csv").tier is Tier.PROPRIETARY
        assert g.verify_audit().ok
        with g.engine.connect() as conn:
            n = conn.execute(text("select count(*) from lacuna_audit")).scalar_one()
        assert n == 18
    with Governor(Settings.load(database_url=PG_URL, database_schema=pg_schema,
                                policy_dir=str(ROOT / "policies"))) as g:
        assert len(g.graph) == 8


def test_ingest_json_text_and_bytes(gov: Governor) -> None:
    event = build_run_event(job=("j", str(uuid.uuid4())),
                            inputs=[DatasetSpec(DatasetRef("f", "a"), columns=("email",))],
                            outputs=[DatasetSpec(DatasetRef("f", "b"))])
    gov.ingest(json.dumps(event))
    gov.ingest(json.dumps(event).encode())
    assert gov.classification("b").tier is Tier.PROPRIETARY


def test_policy_input_carries_the_near_upstream_only(gov: Governor, monkeypatch) -> None:
    names = [f"t{i}" for i in range(15)]
    for a, b in itertools.pairwise(names):
        gov.register_lineage([a], b, "transform")
    seen = {}
    real = gov.decider.decide

    def spy(input_doc, **kw):
        seen.update(input_doc)
        return real(input_doc, **kw)

    monkeypatch.setattr(gov.decider, "decide", spy)
    gov.check(Operation(OperationKind.EXPORT, (gov.ref("t14"),), EXPORT))
    upstream = seen["lineage"]["upstream"]
    assert len(upstream) == 10 and upstream[0].endswith("t13") and upstream[-1].endswith("t4")


def test_policy_input_upstream_is_the_nearest_of_every_source_in_order(
    gov: Governor, monkeypatch
) -> None:
    """Each source's walk stops at UPSTREAM_LIMIT; the joined list must still be the first
    UPSTREAM_LIMIT of every source's whole (depth-limited) ancestry, sources in order."""
    from lacuna_orchestration import governor as governor_module

    monkeypatch.setattr(governor_module, "UPSTREAM_LIMIT", 8)
    for chain in ([f"s{i}" for i in range(5)], [f"y{i}" for i in range(10)]):
        for a, b in itertools.pairwise(chain):
            gov.register_lineage([a], b, "transform")
    gov.register_lineage(["s4", "x0"], "left", "join")  # 6 ancestors, all within the limit
    gov.register_lineage(["s4", "y9"], "right", "join")  # 15, shares the s chain with left
    seen: dict = {}
    real = gov.decider.decide

    def spy(input_doc, **kw):
        seen.update(input_doc)
        return real(input_doc, **kw)

    monkeypatch.setattr(gov.decider, "decide", spy)
    sources = (gov.ref("left"), gov.ref("right"))
    gov.check(Operation(OperationKind.EXPORT, sources, EXPORT))
    whole = [k for r in sources for k in gov.graph.upstream(r.key, depth=10)]
    assert seen["lineage"]["upstream"] == list(dict.fromkeys(whole))[:8]
    assert seen["lineage"]["upstream"][-2:] == [gov.ref("y9").key, gov.ref("y8").key]


def test_a_dataset_nothing_describes_is_unclassified_not_public(gov: Governor) -> None:
    """No schema, no parents, a name no rule knows: the export policy must treat it as
    unknown data, not as PUBLIC."""
    from lacuna_orchestration.lineage.events import DatasetSpec

    gov.register_lineage([], DatasetSpec(DatasetRef("s3://lake", "drop/batch_0042.parquet")),
                         code="upload")
    assert gov.classification("drop/batch_0042.parquet").is_unknown
    decision = gov.check(Operation(
        OperationKind.EXPORT, (DatasetRef("s3://lake", "drop/batch_0042.parquet"),),
        DatasetRef("file", "/home/ann/Downloads/batch.csv"), user="ann"))
    assert not decision.allow
    assert "unclassified" in decision.message
    # once a schema arrives, the dataset is classified like any other
    gov.register_lineage([], DatasetSpec(DatasetRef("s3://lake", "drop/batch_0042.parquet"),
                                         columns=("order_id", "order_total")), code="upload")
    assert not gov.classification("drop/batch_0042.parquet").is_unknown


def test_repeated_column_labels_classify_once_and_new_labels_reclassify(gov: Governor) -> None:
    """Orchestrators send a dataset's declared column labels in every event: the same labels
    again cost no classification; different labels replace the old ones."""
    calls: list[str] = []
    original = gov.classifier.classify_dataset

    def counting(ref, contexts):  # type: ignore[no-untyped-def]
        calls.append(ref.key)
        return original(ref, contexts)

    gov.classifier.classify_dataset = counting  # type: ignore[method-assign]
    ref = DatasetRef("dagster", "points_ledger")

    def emit(tags: list[str]) -> None:
        spec = DatasetSpec(ref, columns=("points", "tier_code"), column_tags={"points": tags})
        gov.ingest(build_run_event(job=("dagster", "points"), event_type="COMPLETE",
                                   outputs=[spec], run_id=str(uuid.uuid4())))

    emit(["PII"])
    emit(["PII"])
    assert calls == [ref.key]
    assert "PII" in gov.classification(ref).tags
    emit(["FINANCIAL"])
    assert calls == [ref.key, ref.key]
    tags = gov.classification(ref).tags
    assert "FINANCIAL" in tags and "PII" not in tags


def test_an_unsynced_ingest_commits_now_and_syncs_later_unless_denied(
    gov: Governor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``synced=False`` (an orchestrator's COMPLETE): the commit is made and readable when
    ingest returns, the fsync is left to the committer; a denial is synced before it is
    returned, as every denial is durable before anyone hears of it."""
    import threading

    syncs: list[str] = []
    real = gov.audit.sync

    def syncing() -> None:
        syncs.append(threading.current_thread().name)
        real()

    monkeypatch.setattr(gov.audit, "sync", syncing)
    results = [gov.ingest(e, via="test", synced=False) for e in parse_events(PIPELINE.read_bytes())]
    denied = [i for i, r in enumerate(results) if r.denials]
    assert denied, "the pipeline holds the denied export"
    allowed = [r for r in results if not r.denials]
    assert all(r.audit for r in allowed)  # committed: linked records came back
    assert syncs.count("MainThread") == len(denied)  # only the denials waited for the disk
    assert gov.audit.count() >= len(results)
    gov.flush()  # and a flush leaves nothing unsynced
    assert gov._committer._sync_left() == float("inf")
