"""POST /api/v1/lineage: the real OpenLineage client, gzip, the batch endpoint, bad input."""

from __future__ import annotations

import gzip
import uuid

import orjson
import pytest
from fastapi.testclient import TestClient
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import schema_dataset
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)
from server_helpers import (
    ADMIN_KEY,
    app_for,
    auth,
    export_event,
    make_key,
    pipeline_lines,
    running_server,
    server_settings,
)

from lacuna_orchestration.model import format_timestamp, utcnow
from tests.conftest import count_commits

JSON_HEADERS = {"Content-Type": "application/json"}


def _ol_event(run_id: str) -> RunEvent:
    fields = [schema_dataset.SchemaDatasetFacetFields(name=n, type="text")
              for n in ("customer_id", "email", "date_of_birth")]
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=format_timestamp(utcnow()),
        run=Run(runId=run_id),
        job=Job(namespace="airflow", name="crm.extract_customers"),
        producer="https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
        inputs=[InputDataset(namespace="postgres://crm:5432", name="public.customers",
                             facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)})],
        outputs=[OutputDataset(namespace="s3://lake", name="raw/customers.parquet")],
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_openlineage_http_transport_against_uvicorn_on_postgres(pg_settings) -> None:
    """The openlineage-python client, pointed at the service by URL only, plain and gzip."""
    app = app_for(pg_settings)
    with running_server(app) as (url, _server):
        with TestClient(app) as admin:
            producer_key = make_key(admin, "producer", "airflow")
        for compression in (None, HttpCompression.GZIP):
            config = HttpConfig(url=url, timeout=5.0, compression=compression,
                                auth=ApiKeyTokenProvider({"apiKey": producer_key}),
                                retry={"total": 0})
            client = OpenLineageClient(transport=HttpTransport(config))
            run_id = str(uuid.uuid4())
            client.emit(_ol_event(run_id))
            gov = app.state.lacuna.governors.get("default")
            assert "postgres://crm:5432::public.customers" in gov.graph
            records = list(gov.audit.records(run_id=run_id))
            assert [r.action for r in records] == ["lineage.ingest", "policy.decision"]
            assert records[0].via.startswith("api/key:")
        c = gov.classification("public.customers")
        assert "PII" in c.tags
        assert gov.verify_audit().ok


def test_ingest_returns_decisions_and_audit_position(sqlite_client: TestClient) -> None:
    key = make_key(sqlite_client, "producer")
    for line in pipeline_lines():
        r = sqlite_client.post("/api/v1/lineage", content=line,
                               headers=auth(key) | JSON_HEADERS)
        assert r.status_code == 201, r.text
    r = sqlite_client.post("/api/v1/lineage", json=export_event(), headers=auth(key))
    body = r.json()
    assert r.status_code == 201
    assert body["allowed"] is False and body["denials"] == 1
    denial = body["decisions"][0]
    assert denial["policy_id"] == "export-governance"
    assert "Governance Policy Violation" in denial["message"]
    assert body["audit"]["last_seq"] > body["audit"]["first_seq"] >= 1
    assert body["event"] == {"kind": "run", "eventType": "COMPLETE",
                             "runId": body["event"]["runId"], "job": "tests.export_analysis",
                             "operation": "export"}


def test_gzip_body_is_accepted(sqlite_client: TestClient) -> None:
    raw = orjson.dumps(export_event())
    r = sqlite_client.post("/api/v1/lineage", content=gzip.compress(raw),
                           headers=auth(ADMIN_KEY) | JSON_HEADERS | {"Content-Encoding": "gzip"})
    assert r.status_code == 201, r.text


def test_dataset_and_job_events_are_accepted(sqlite_client: TestClient) -> None:
    now = format_timestamp(utcnow())
    schema = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent"
    dataset_event = {"eventTime": now, "producer": "https://example.com/p",
                     "schemaURL": schema, "dataset": {"namespace": "s3://lake",
                                                      "name": "ref/countries"}}
    job_event = {"eventTime": now, "producer": "https://example.com/p",
                 "schemaURL": schema.replace("DatasetEvent", "JobEvent"),
                 "job": {"namespace": "dbt", "name": "model.countries"},
                 "inputs": [], "outputs": [{"namespace": "s3://lake", "name": "ref/countries"}]}
    for event, kind in ((dataset_event, "dataset"), (job_event, "job")):
        r = sqlite_client.post("/api/v1/lineage", json=event, headers=auth(ADMIN_KEY))
        assert r.status_code == 201, r.text
        assert r.json()["event"]["kind"] == kind


@pytest.mark.parametrize(
    ("body", "headers", "status", "field"),
    [
        (b"{not json", {}, 400, "body"),
        (b"", {}, 400, "body"),
        (b"[1, 2]", {}, 400, "body"),
        (orjson.dumps({"eventTime": "2026-01-01T00:00:00Z"}), {}, 400, "producer"),
        (orjson.dumps(export_event() | {"eventType": "EXPLODE"}), {}, 400, "eventType"),
        (orjson.dumps(export_event() | {"eventTime": "yesterday"}), {}, 400, "eventTime"),
        (orjson.dumps(export_event() | {"eventType": ["START"]}), {}, 400, "eventType"),
        (orjson.dumps({**export_event(), "run": {"runId": "not-a-uuid"}}), {}, 400,
         "run.runId"),
        (orjson.dumps({**export_event(), "inputs": [{"namespace": "file"}]}), {}, 400,
         "inputs[0].name"),
        (orjson.dumps(export_event()), {"Content-Encoding": "br"}, 415, "Content-Encoding"),
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400, "Content-Encoding"),
        (orjson.dumps(export_event()), {"Content-Type": "application/x-www-form-urlencoded"},
         415, "Content-Type"),
    ],
    ids=["not-json", "empty", "array", "missing-producer", "unknown-event-type", "bad-time",
         "event-type-list",
         "bad-run-id", "dataset-without-name", "brotli", "broken-gzip", "form-encoded"],
)
def test_bad_input_is_4xx_naming_the_field(sqlite_client: TestClient, body: bytes,
                                           headers: dict[str, str], status: int,
                                           field: str) -> None:
    gov = sqlite_client.app.state.lacuna.governors.get("default")
    before = gov.audit.head().seq
    r = sqlite_client.post("/api/v1/lineage", content=body,
                           headers=auth(ADMIN_KEY) | JSON_HEADERS | headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["field"] == field, error
    assert error["message"]
    assert gov.audit.head().seq == before  # nothing written for a refused event
    assert len(gov.graph) == 0


def test_oversized_bodies_are_413(tmp_path) -> None:
    settings = server_settings(f"sqlite:///{tmp_path / 'l.db'}", tmp=tmp_path,
                               max_body_bytes=4096)
    event = export_event()
    event["run"]["facets"]["padding"] = {"_producer": "x", "_schemaURL": "y",
                                         "blob": "z" * 10_000}
    raw = orjson.dumps(event)
    with TestClient(app_for(settings)) as client:
        plain = client.post("/api/v1/lineage", content=raw,
                            headers=auth(ADMIN_KEY) | JSON_HEADERS)
        assert plain.status_code == 413 and plain.json()["error"]["field"] == "body"
        bomb = gzip.compress(raw)  # small on the wire, too large once inflated
        assert len(bomb) < 4096
        inflated = client.post("/api/v1/lineage", content=bomb,
                               headers=auth(ADMIN_KEY) | JSON_HEADERS
                               | {"Content-Encoding": "gzip"})
        assert inflated.status_code == 413
        assert "decompressed" in inflated.json()["error"]["message"]


def test_batch_endpoint_ingests_ndjson_in_order(sqlite_client: TestClient) -> None:
    key = make_key(sqlite_client, "producer")
    body = b"\n".join([*pipeline_lines(), orjson.dumps(export_event())]) + b"\n"
    r = sqlite_client.post("/api/v1/lineage/batch", content=body,
                           headers=auth(key) | {"Content-Type": "application/x-ndjson"})
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["accepted"] == len(pipeline_lines()) + 1
    assert [x["line"] for x in data["results"]] == list(range(1, data["accepted"] + 1))
    assert data["denied"] >= 2  # the pipeline's own export and ours
    gov = sqlite_client.app.state.lacuna.governors.get("default")
    assert gov.verify_audit().ok


def test_batch_with_one_bad_line_writes_nothing(sqlite_client: TestClient) -> None:
    lines = pipeline_lines()
    lines.insert(2, orjson.dumps(export_event() | {"eventType": "NOPE"}))
    r = sqlite_client.post("/api/v1/lineage/batch", content=b"\n".join(lines),
                           headers=auth(ADMIN_KEY) | {"Content-Type": "application/x-ndjson"})
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "line 3: eventType"
    gov = sqlite_client.app.state.lacuna.governors.get("default")
    assert gov.audit.head().seq == 0 and len(gov.graph) == 0


def test_batch_limit(tmp_path) -> None:
    settings = server_settings(f"sqlite:///{tmp_path / 'l.db'}", tmp=tmp_path,
                               max_batch_events=2)
    with TestClient(app_for(settings)) as client:
        body = b"\n".join(pipeline_lines()[:3])
        r = client.post("/api/v1/lineage/batch", content=body,
                        headers=auth(ADMIN_KEY) | {"Content-Type": "application/x-ndjson"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"


@pytest.mark.postgres
def test_database_down_is_503_not_500(pg_settings, pg_schema) -> None:
    from sqlalchemy import text

    from lacuna_orchestration.db import make_engine

    with TestClient(app_for(pg_settings)) as client:
        assert client.post("/api/v1/lineage", json=export_event(),
                           headers=auth(ADMIN_KEY)).status_code == 201
        admin = make_engine("postgresql://postgres@127.0.0.1:5432/test")
        with admin.begin() as conn:  # the store disappears under the running service
            conn.execute(text(f'ALTER TABLE "{pg_schema}".lacuna_audit '
                              "RENAME TO lacuna_audit_gone"))
        try:
            r = client.post("/api/v1/lineage", json=export_event(), headers=auth(ADMIN_KEY))
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "store_unavailable"
            assert r.headers["Retry-After"]
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'ALTER TABLE "{pg_schema}".lacuna_audit_gone '
                                  "RENAME TO lacuna_audit"))
            admin.dispose()


def test_concurrent_posts_are_group_committed_on_postgres(
        pg_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many producers at once: every 201 is a committed event (its record is in the chain the
    moment the answer arrives), commits carry several events each, and the chain verifies."""
    import threading
    import urllib.request

    app = app_for(pg_settings)
    with running_server(app) as (url, _server):
        gov = app.state.lacuna.governors.get("default")
        commits = count_commits(gov, monkeypatch)
        acknowledged: list[str] = []
        problems: list[str] = []

        def producer(n: int) -> None:
            for i in range(15):
                run_id = str(uuid.uuid4())
                body = orjson.dumps(export_event("START", run_id=run_id))
                request = urllib.request.Request(
                    url + "/api/v1/lineage", data=body, method="POST",
                    headers=auth(ADMIN_KEY) | JSON_HEADERS)
                with urllib.request.urlopen(request, timeout=30) as answer:
                    if answer.status != 201:
                        problems.append(f"{n}/{i}: {answer.status}")
                        continue
                if not list(gov.audit.records(run_id=run_id)):
                    problems.append(f"{n}/{i}: acknowledged but not in the chain")
                acknowledged.append(run_id)

        threads = [threading.Thread(target=producer, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert problems == [] and len(acknowledged) == 180
        assert len(commits) < 180  # several events per transaction under load
        assert gov.verify_audit().ok
