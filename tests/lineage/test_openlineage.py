"""The ingest parser against the OpenLineage project's own events and against bad input."""

from __future__ import annotations

import csv
import json
import uuid

import pytest

from lacuna_orchestration.errors import IngestError
from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.lineage.openlineage import (
    MAX_EVENT_BYTES,
    parse_event,
    parse_events,
)
from lacuna_orchestration.model import DatasetRef, OperationKind, Tier
from tests.conftest import shared_dir

EVAL = shared_dir() / "eval" / "openlineage"


def _expected() -> dict[tuple[str, int], bool]:
    with (EVAL / "concretized" / "VALIDATION.tsv").open() as fh:
        return {(r[0], int(r[1])): r[4] == "Y" for r in csv.reader(fh, delimiter="\t")}


def test_conformance_set_is_present() -> None:
    assert (EVAL / "concretized" / "VALIDATION.tsv").is_file(), f"missing {EVAL}"


def test_whole_conformance_set_accepts_valid_and_refuses_invalid() -> None:
    expected = _expected()
    seen = 0
    for path in sorted((EVAL / "concretized").glob("*.ndjson")):
        for number, raw in enumerate(parse_events(path.read_bytes()), 1):
            valid = expected[(path.name, number)]
            seen += 1
            if valid:
                event = parse_event(raw)
                assert event.run_id or event.kind != "run"
            else:
                with pytest.raises(IngestError) as err:
                    parse_event(raw)
                assert any(word in str(err.value) for word in ("namespace", "_deleted"))
    assert seen == len(expected) > 500


def test_raw_published_events() -> None:
    ok = {p.name: parse_event(p.read_bytes()) for p in sorted((EVAL / "raw").glob("*.json"))
          if "nominal_time" not in p.name and "no_run_id" not in p.name}
    assert ok["client_python_tests_serde_example_dataset_event.json"].kind == "dataset"
    assert ok["client_python_tests_serde_example_job_event.json"].kind == "job"
    full = ok["client_python_tests_example_full_event.json"]
    assert full.inputs and full.outputs
    # a facet-only document is not an event
    with pytest.raises(IngestError, match="eventTime"):
        parse_event((EVAL / "raw" / "client_python_tests_nominal_time_without_end.json").read_bytes())


def test_unknown_facets_are_kept() -> None:
    event = build_run_event(job=("ns", "job"), inputs=[DatasetSpec(DatasetRef("f", "a"))],
                            outputs=[DatasetSpec(DatasetRef("f", "b"))])
    event["outputs"][0]["facets"]["vendorThing"] = {
        "_producer": "https://x", "_schemaURL": "https://x/s", "deep": {"a": [1, 2]}}
    parsed = parse_event(event)
    assert parsed.outputs[0].facets["vendorThing"]["deep"] == {"a": [1, 2]}


def _base() -> dict:
    return build_run_event(job=("ns", "job"), inputs=[DatasetSpec(DatasetRef("f", "a"))],
                           outputs=[DatasetSpec(DatasetRef("f", "b"))])


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda e: e["run"].pop("runId"), "run.runId"),
        (lambda e: e["run"].update(runId="not-a-uuid"), "run.runId"),
        (lambda e: e.pop("eventTime"), "eventTime"),
        (lambda e: e.update(eventTime="yesterday"), "eventTime"),
        (lambda e: e["job"].pop("name"), "job.name"),
        (lambda e: e.update(eventType="EXPLODED"), "eventType"),
        (lambda e: e["inputs"][0].pop("namespace"), "inputs[0].namespace"),
        (lambda e: e.update(outputs="nope"), "outputs"),
        (lambda e: e["run"]["facets"].update(x={"no": "producer"}), "run.facets.x._producer"),
        (lambda e: e["run"]["facets"]["lacuna"].update(operation="teleport"),
         "unknown operation kind"),
    ],
)
def test_invalid_events_name_the_problem(mutate, needle) -> None:
    event = _base()
    event["run"]["facets"]["lacuna"] = {"_producer": "p", "_schemaURL": "s", "operation": "join"}
    mutate(event)
    with pytest.raises(IngestError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        parse_event(event)


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b"42", "\"text\"", b"{}"])
def test_not_openlineage(payload) -> None:
    with pytest.raises(IngestError):
        parse_event(payload)


def test_huge_and_deep_payloads_are_refused() -> None:
    with pytest.raises(IngestError, match="limit"):
        parse_event(b"{" + b" " * (MAX_EVENT_BYTES + 1) + b"}")
    deep: dict = {}
    cur = deep
    for _ in range(100):
        cur["x"] = {}
        cur = cur["x"]
    event = _base()
    event["run"]["facets"]["deep"] = {"_producer": "p", "_schemaURL": "s", "d": deep}
    with pytest.raises(IngestError, match="nested"):
        parse_event(json.dumps(event))


def test_openlineage_python_objects_are_accepted() -> None:
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import schema_dataset

    event = RunEvent(
        eventType=RunState.COMPLETE, eventTime="2026-01-01T00:00:00Z",
        run=Run(runId=str(uuid.uuid4())), job=Job(namespace="ns", name="job"),
        inputs=[InputDataset(namespace="f", name="customers", facets={
            "schema": schema_dataset.SchemaDatasetFacet(fields=[
                schema_dataset.SchemaDatasetFacetFields(name="email", type="text")])})],
        outputs=[OutputDataset(namespace="f", name="out")],
    )
    parsed = parse_event(event)
    assert parsed.inputs[0].fields[0].name == "email"
    assert parsed.operation is OperationKind.TRANSFORM


def test_labels_from_tags_facet_and_lacuna_facet() -> None:
    event = _base()
    event["outputs"][0]["facets"] = {
        "tags": {"_producer": "p", "_schemaURL": "s", "tags": [
            {"key": "classification", "value": "PROPRIETARY", "source": "steward"},
            {"key": "classification", "value": "pii", "field": "tax_id"},
        ]},
        "lacuna": {"_producer": "p", "_schemaURL": "s", "tags": ["customer-data"],
                   "columns": {"notes": {"classification": "INTERNAL"}}},
    }
    snap = parse_event(event).outputs[0]
    assert snap.explicit_tier is Tier.PROPRIETARY
    assert snap.explicit_tags == {"CUSTOMER_DATA"}
    assert snap.column_labels["tax_id"] == (None, frozenset({"PII"}))
    assert snap.column_labels["notes"] == (Tier.INTERNAL, frozenset())


def test_column_lineage_facet() -> None:
    raw = json.loads(
        (EVAL / "raw" / "facets" / "ColumnLineageDatasetFacet_1.json").read_text()
    )["columnLineage"]
    event = _base()
    raw.setdefault("_producer", "p")
    raw.setdefault("_schemaURL", "s")
    event["outputs"][0]["facets"] = {"columnLineage": raw}
    lineage = parse_event(event).outputs[0].column_lineage
    assert lineage["NAME"][0].transformation == "IDENTITY"
    assert lineage["NAME"][1].transformation == "INDIRECT"
    assert all(src.column for sources in lineage.values() for src in sources)


def test_batch_formats() -> None:
    one = json.dumps(_base())
    assert len(parse_events(one)) == 1
    assert len(parse_events(f"[{one}, {one}]")) == 2
    assert len(parse_events(f"{one}\n\n{one}\n")) == 2
    with pytest.raises(IngestError, match="line 2"):
        parse_events(f"{one}\n{{broken\n")


def test_the_plain_shape_fast_paths_accept_nothing_the_validators_refuse() -> None:
    """eventTime / runId / producer in their common shapes skip openlineage-python's
    validators; on 30,000 generated timestamps (out-of-range fields and offsets included)
    and odd producers, every value the fast path accepts the validator accepts too."""
    import random

    from openlineage.client.generated import base

    from lacuna_orchestration.lineage.openlineage import (
        _PLAIN_UUID,
        _plain_event_time,
        _validate_with_models,
    )

    def validator_accepts(value: str) -> bool:
        try:
            base.BaseEvent.eventtime_check(None, None, value)  # type: ignore[arg-type]
        except (ValueError, OverflowError):
            return False
        return True

    rnd = random.Random(7)
    values = ["2026-11-23T10:00:00Z", "2026-11-23T24:00:00Z", "2026-11-23T10:00:00+24:00"]
    for _ in range(30_000):
        frac = rnd.choice(["", "." + str(rnd.randint(0, 999_999))[: rnd.randint(1, 6)]])
        hours, minutes = rnd.randint(0, 25), rnd.randint(0, 61)
        offset = rnd.choice(["Z", f"{rnd.choice('+-')}{hours:02d}:{minutes:02d}"])
        values.append(f"{rnd.randint(0, 9999):04d}-{rnd.randint(0, 14):02d}-"
                      f"{rnd.randint(0, 33):02d}T{rnd.randint(0, 25):02d}:"
                      f"{rnd.randint(0, 61):02d}:{rnd.randint(0, 61):02d}{frac}{offset}")
    fast = [v for v in values if _plain_event_time(v)]
    assert len(fast) > 10_000  # the fast path is really taken
    assert [v for v in fast if not validator_accepts(v)] == []
    assert _PLAIN_UUID.fullmatch(str(uuid.uuid4()))
    # what the fast paths pass on is still refused, by the validators, with the field named
    envelope = {"eventTime": "2026-11-23T10:00:00Z", "producer": "https://x",
                "run": {"runId": str(uuid.uuid4())}}
    for field, value, where in (("producer", "http://[::1", "producer"),
                                ("eventTime", "2026-02-30T10:00:00Z", "eventTime"),
                                ("run", {"runId": "not-a-uuid"}, "run.runId")):
        with pytest.raises(IngestError, match=where):
            _validate_with_models({**envelope, field: value}, "run")
