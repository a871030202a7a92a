"""Regenerate ``pipeline.ndjson``: the scripted pipeline `make demo` ingests.

customers + sales → join → aggregate → export, as an orchestrator would report it in OpenLineage
RunEvents (START and COMPLETE per job, schema facets, the operation in a ``lacuna`` run facet).
Run ids and times are fixed so the file is stable under version control.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson

from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.model import DatasetRef

CRM = "postgres://crm.internal:5432"
WAREHOUSE = "postgres://warehouse.internal:5432"
FILES = "file"
PRODUCER = "https://example.com/acme/pipelines"

contacts = DatasetSpec(DatasetRef(CRM, "salesforce.contacts"), columns=(
    ("contact_id", "bigint"), ("first_name", "text"), ("last_name", "text"), ("email", "text"),
    ("phone", "text"), ("date_of_birth", "date"), ("country", "text")))
master = DatasetSpec(DatasetRef(WAREHOUSE, "raw.customer_master"), columns=(
    ("customer_id", "bigint"), ("first_name", "text"), ("last_name", "text"), ("email", "text"),
    ("phone", "text"), ("date_of_birth", "date"), ("country", "text")))
customers = DatasetSpec(DatasetRef(FILES, "customers.csv"), columns=(
    ("customer_id", "bigint"), ("full_name", "text"), ("email", "text"), ("country", "text")))
transactions = DatasetSpec(DatasetRef(WAREHOUSE, "raw.transactions"), columns=(
    ("transaction_id", "bigint"), ("customer_id", "bigint"), ("amount", "numeric"),
    ("currency", "text"), ("booked_at", "timestamp")))
sales = DatasetSpec(DatasetRef(FILES, "sales.csv"), columns=(
    ("transaction_id", "bigint"), ("customer_id", "bigint"), ("amount", "numeric"),
    ("currency", "text")))
analysis = DatasetSpec(DatasetRef(FILES, "analysis.csv"), columns=(
    ("customer_id", "bigint"), ("email", "text"), ("country", "text"), ("amount", "numeric")))
summary = DatasetSpec(DatasetRef(FILES, "regional_summary.csv"), columns=(
    ("country", "text"), ("customer_count", "bigint"), ("total_revenue", "numeric")),
    column_lineage={"total_revenue": [(analysis.ref, "amount")]})
export = DatasetSpec(DatasetRef(FILES, "/tmp/export.csv"), columns=(
    ("customer_id", "bigint"), ("email", "text"), ("country", "text"), ("amount", "numeric")))

JOBS = [
    ("crm.load_customer_master", [contacts], master, "transform"),
    ("crm.extract_customers", [master], customers, "filter"),
    ("finance.extract_sales", [transactions], sales, "transform"),
    ("analytics.join_customers_sales", [customers, sales], analysis, "join"),
    ("analytics.regional_summary", [analysis], summary, "aggregate"),
    ("analytics.export_analysis", [analysis], export, "export"),
]


def main() -> None:
    lines = []
    for i, (job, inputs, output, operation) in enumerate(JOBS):
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"lacuna-demo/{job}"))
        for state, minute in (("START", 0), ("COMPLETE", 1)):
            event = build_run_event(
                job=("acme", job), event_type=state, inputs=inputs, outputs=[output],
                operation=operation, run_id=run_id, user="analyst@example.com",
                producer=PRODUCER,
            )
            event["eventTime"] = f"2026-11-23T08:{i * 2 + minute:02d}:00.000000Z"
            lines.append(orjson.dumps(event).decode())
    Path(__file__).with_name("pipeline.ndjson").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
