"""Build spec-valid OpenLineage RunEvents from Lacuna's own values.

Every producer Lacuna writes for itself (manual ``register_lineage``, the Dagster emitter, the dbt
wrapper, the Airflow listener) goes through ``build_run_event`` so that all of them enter the
ingest path exactly as an external OpenLineage producer would.

>>> ev = build_run_event(job=("lacuna", "manual.join"), event_type="COMPLETE",
...     inputs=[DatasetSpec(DatasetRef("file", "customers.csv"), columns=("email",))],
...     outputs=[DatasetSpec(DatasetRef("file", "analysis.csv"))], operation="join")
>>> ev["run"]["facets"]["lacuna"]["operation"]
'join'
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lacuna_orchestration.model import DatasetRef, OperationKind, Tier, format_timestamp, utcnow

__all__ = [
    "PRODUCER",
    "QUEUED_EVENT_TYPES",
    "SCHEMA_URL",
    "DatasetSpec",
    "build_run_event",
    "facet",
    "waits_for_commit",
]

PRODUCER = "https://pypi.org/project/lacuna-orchestration/"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACET_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/BaseFacet"
LACUNA_FACET_SCHEMA = "https://pypi.org/project/lacuna-orchestration/#LacunaFacet"


def facet(body: Mapping[str, Any], schema_url: str = FACET_SCHEMA,
          producer: str = PRODUCER) -> dict[str, Any]:
    """A facet object with the spec's required ``_producer`` and ``_schemaURL``."""
    return {"_producer": producer, "_schemaURL": schema_url, **body}


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A dataset to put in an event: its columns, labels and (for outputs) column lineage
    (``{"out_col": [("ns::name" or DatasetRef, "in_col"), ...]}``)."""

    ref: DatasetRef
    columns: Sequence[str | tuple[str, str] | tuple[str, str, str]] = ()
    tier: Tier | str | None = None
    tags: Sequence[str] = ()
    column_tags: Mapping[str, Sequence[str]] = field(default_factory=dict)
    column_lineage: Mapping[str, Sequence[tuple[DatasetRef | str, str]]] = field(
        default_factory=dict
    )
    description: str = ""

    def to_openlineage(self, producer: str = PRODUCER) -> dict[str, Any]:
        facets: dict[str, Any] = {}
        if self.columns:
            fields = []
            for col in self.columns:
                if isinstance(col, str):
                    fields.append({"name": col})
                else:
                    entry = {"name": col[0], "type": col[1]}
                    if len(col) > 2:
                        entry["description"] = col[2]  # type: ignore[misc]
                    fields.append(entry)
            facets["schema"] = facet({"fields": fields}, producer=producer)
        if self.description:
            facets["documentation"] = facet({"description": self.description}, producer=producer)
        labels: dict[str, Any] = {}
        if self.tier is not None:
            labels["classification"] = Tier.parse(self.tier).name
        if self.tags:
            labels["tags"] = list(self.tags)
        if self.column_tags:
            labels["columns"] = {c: {"tags": list(t)} for c, t in self.column_tags.items()}
        if labels:
            facets["lacuna"] = facet(labels, LACUNA_FACET_SCHEMA, producer)
        if self.column_lineage:
            fields_map = {}
            for out_col, sources in self.column_lineage.items():
                inputs = []
                for src, col in sources:
                    ref = DatasetRef.from_key(src) if isinstance(src, str) else src
                    inputs.append({"namespace": ref.namespace, "name": ref.name, "field": col})
                fields_map[out_col] = {"inputFields": inputs}
            facets["columnLineage"] = facet({"fields": fields_map}, producer=producer)
        return {"namespace": self.ref.namespace, "name": self.ref.name, "facets": facets}


def build_run_event(
    *,
    job: tuple[str, str],
    event_type: str = "COMPLETE",
    inputs: Sequence[DatasetSpec] = (),
    outputs: Sequence[DatasetSpec] = (),
    operation: OperationKind | str | None = None,
    run_id: str | None = None,
    user: str | None = None,
    purpose: str | None = None,
    producer: str = PRODUCER,
    run_facets: Mapping[str, Any] | None = None,
    job_facets: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A RunEvent dict ready for ``Governor.ingest`` or any OpenLineage transport."""
    lacuna: dict[str, Any] = {}
    if operation is not None:
        lacuna["operation"] = OperationKind.parse(operation).value
    if user:
        lacuna["user"] = user
    if purpose:
        lacuna["purpose"] = purpose
    rf: dict[str, Any] = dict(run_facets or {})
    if lacuna:
        rf["lacuna"] = facet(lacuna, LACUNA_FACET_SCHEMA, producer)
    return {
        "eventType": event_type,
        "eventTime": format_timestamp(utcnow()),
        "producer": producer,
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id or str(uuid.uuid4()), "facets": rf},
        "job": {"namespace": job[0], "name": job[1], "facets": dict(job_facets or {})},
        "inputs": [d.to_openlineage(producer) for d in inputs],
        "outputs": [d.to_openlineage(producer) for d in outputs],
    }


#: Event types an orchestrator may hand to an in-process governor without waiting for their
#: commit: the step's COMPLETE/FAIL/ABORT follows through the same group-commit queue and is
#: waited for, so a step cannot be reported done before its whole audit trail is durable.
QUEUED_EVENT_TYPES = frozenset({"START", "RUNNING"})


def waits_for_commit(event: Mapping[str, Any]) -> bool:
    """Whether an in-process integration should wait for ``event``'s commit (see
    ``QUEUED_EVENT_TYPES``); everything but START/RUNNING run events does."""
    return event.get("eventType") not in QUEUED_EVENT_TYPES

