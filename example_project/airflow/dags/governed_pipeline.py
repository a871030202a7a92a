"""A governed customers + sales pipeline: extract, join, aggregate, and an export Lacuna stops.

    extract_customers ─┐
                       ├─► join_customers_sales ─► aggregate_by_region ─► export_regional_report
    extract_sales ─────┘                                                  ✗ denied by policy

The same pipeline as the Dagster example. Each task declares what it reads and writes
(``inlets`` / ``outlets``, with schema facets so Lacuna can classify the columns) and what it
does (``params["lacuna_operation"]``). With the Lacuna plugin installed, every run reaches
Lacuna as OpenLineage events: ``customers.csv`` (email, names) is PII, the join inherits it,
the aggregate keeps only ``DERIVED_FROM_PII``. The export — per-region revenue with the
contacts of each region's customers — goes to a Downloads folder, an unmanaged location; with
the cluster policy from ``../config/airflow_local_settings.py`` it fails before it writes
anything, with the policy's message in the task log, until a steward approves a time-boxed
exception.

The extract tasks stand in for reads of the CRM and finance databases with generated rows, so
the example runs anywhere. Files go to ``LACUNA_EXAMPLE_DATA_DIR`` (default
``example_project/out/airflow``); the export target is ``LACUNA_EXAMPLE_EXPORT`` (default
``<data dir>/Downloads/regional_report.csv``).
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pendulum
from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)
from airflow.sdk import Asset, dag, task

DATA_DIR = Path(
    os.environ.get("LACUNA_EXAMPLE_DATA_DIR")
    or Path(__file__).resolve().parents[2] / "out" / "airflow"
)
EXPORT_PATH = os.environ.get("LACUNA_EXAMPLE_EXPORT") or str(
    DATA_DIR / "Downloads" / "regional_report.csv"
)
PURPOSE = "analytics"


def table(namespace: str, name: str, *columns: tuple[str, str]) -> Dataset:
    """An OpenLineage dataset with its schema: what lets Lacuna classify each column."""
    fields = [SchemaDatasetFacetFields(name=col, type=kind) for col, kind in columns]
    return Dataset(namespace=namespace, name=name,
                   facets={"schema": SchemaDatasetFacet(fields=fields)})


def local_file(filename: str, *columns: tuple[str, str]) -> Dataset:
    return table("file", str(DATA_DIR / filename), *columns)


def governed(operation: str) -> dict[str, str]:
    """The task params that tell Lacuna what a task does and why."""
    return {"lacuna_operation": operation, "lacuna_purpose": PURPOSE}


CUSTOMER_MASTER = table(
    "postgres://crm.internal:5432", "crm.public.customer_master",
    ("customer_id", "bigint"), ("first_name", "text"), ("last_name", "text"), ("email", "text"),
    ("phone", "text"), ("date_of_birth", "date"), ("country", "text"),
)
TRANSACTIONS = table(
    "postgres://warehouse.internal:5432", "finance.public.transactions",
    ("transaction_id", "bigint"), ("customer_id", "bigint"), ("amount", "numeric"),
    ("currency", "text"), ("iban", "text"), ("booked_at", "timestamp"),
)
CUSTOMERS = local_file("customers.csv", ("customer_id", "bigint"), ("full_name", "text"),
                       ("email", "text"), ("country", "text"))
SALES = local_file("sales.csv", ("transaction_id", "bigint"), ("customer_id", "bigint"),
                   ("amount", "numeric"), ("currency", "text"))
ANALYSIS = local_file("analysis.csv", ("customer_id", "bigint"), ("email", "text"),
                      ("country", "text"), ("amount", "numeric"))
SUMMARY = local_file("regional_summary.csv", ("country", "text"), ("customer_count", "bigint"),
                     ("total_revenue", "numeric"))
EXPORT = Asset(f"file://{EXPORT_PATH}")

COUNTRIES = ("DE", "FR", "NL", "US")


def write_rows(path: Path | str, header: list[str], rows: Sequence[Sequence[object]]) -> int:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return len(rows)


def read_rows(filename: str) -> list[dict[str, str]]:
    with (DATA_DIR / filename).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dag(
    dag_id="governed_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["lacuna", "example"],
    doc_md=__doc__,
)
def governed_pipeline() -> None:
    @task(inlets=[CUSTOMER_MASTER], outlets=[CUSTOMERS], params=governed("filter"))
    def extract_customers() -> int:
        rows = [[i, f"Customer {i}", f"customer{i}@example.com", COUNTRIES[i % 4]]
                for i in range(1, 21)]
        return write_rows(DATA_DIR / "customers.csv",
                          ["customer_id", "full_name", "email", "country"], rows)

    @task(inlets=[TRANSACTIONS], outlets=[SALES], params=governed("transform"))
    def extract_sales() -> int:
        rows = [[t, 1 + t % 20, f"{10 + (t * 7) % 90}.00", "EUR"] for t in range(1, 61)]
        return write_rows(DATA_DIR / "sales.csv",
                          ["transaction_id", "customer_id", "amount", "currency"], rows)

    @task(inlets=[CUSTOMERS, SALES], outlets=[ANALYSIS], params=governed("join"))
    def join_customers_sales() -> int:
        customers = {c["customer_id"]: c for c in read_rows("customers.csv")}
        rows = [[s["customer_id"], customers[s["customer_id"]]["email"],
                 customers[s["customer_id"]]["country"], s["amount"]]
                for s in read_rows("sales.csv") if s["customer_id"] in customers]
        return write_rows(DATA_DIR / "analysis.csv",
                          ["customer_id", "email", "country", "amount"], rows)

    @task(inlets=[ANALYSIS], outlets=[SUMMARY], params=governed("aggregate"))
    def aggregate_by_region() -> int:
        customers: dict[str, set[str]] = defaultdict(set)
        revenue: dict[str, float] = defaultdict(float)
        for row in read_rows("analysis.csv"):
            customers[row["country"]].add(row["customer_id"])
            revenue[row["country"]] += float(row["amount"])
        rows = [[c, len(customers[c]), f"{revenue[c]:.2f}"] for c in sorted(revenue)]
        return write_rows(DATA_DIR / "regional_summary.csv",
                          ["country", "customer_count", "total_revenue"], rows)

    @task(inlets=[SUMMARY, ANALYSIS], outlets=[EXPORT], params=governed("export"))
    def export_regional_report() -> int:
        totals = {r["country"]: r["total_revenue"] for r in read_rows("regional_summary.csv")}
        contacts = sorted({(r["country"], r["email"]) for r in read_rows("analysis.csv")})
        rows = [[country, totals[country], email] for country, email in contacts]
        return write_rows(EXPORT_PATH, ["country", "total_revenue", "contact_email"], rows)

    joined = join_customers_sales()
    [extract_customers(), extract_sales()] >> joined
    joined >> aggregate_by_region() >> export_regional_report()


pipeline = governed_pipeline()
