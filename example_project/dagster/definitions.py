"""The example pipeline as Dagster assets, governed by Lacuna.

    customers (PII) ─┐
                     ├─ customer_sales (join → PROPRIETARY, union of tags)
    sales (FINANCIAL)┘        │
                              ├─ regional_summary (aggregate → INTERNAL + DERIVED_FROM_PII)
                              │           │
                              └───────────┴─ regional_report_export → a Downloads folder
                                             (PII to an unmanaged location: the gate blocks it
                                             until a steward approves an exception)

The four table assets return rows and let the IO manager write them: ``governed_definitions``
gates them there and adds one blocking governance check per asset. The export writes its CSV
itself, so it is gated with ``@governed`` — the body (and the write) runs only when allowed.

Load it in the UI (see README.md)::

    dagster dev -w example_project/dagster/workspace.yaml

Paths come from the environment so tests and the demo can point them elsewhere:
``LACUNA_DEMO_OUT`` (default ``example_project/out/dagster``) holds the IO manager's storage and
the export folder; Lacuna's own store is the usual setting (``LACUNA_DATABASE_URL``, default
``<LACUNA_DEMO_OUT>/lacuna.db``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import dagster as dg

from lacuna_orchestration.integrations.dagster import (
    LacunaResource,
    annotate_assets,
    governed,
    governed_definitions,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "out" / "dagster"

CUSTOMERS = [
    {"customer_id": 1, "full_name": "Ada Lovelace", "email": "ada@example.com", "region": "EU"},
    {"customer_id": 2, "full_name": "Grace Hopper", "email": "grace@example.com", "region": "US"},
    {"customer_id": 3, "full_name": "Alan Turing", "email": "alan@example.com", "region": "EU"},
]
SALES = [
    {"order_id": 10, "customer_id": 1, "amount": 120.0, "region": "EU"},
    {"order_id": 11, "customer_id": 2, "amount": 80.5, "region": "US"},
    {"order_id": 12, "customer_id": 3, "amount": 42.0, "region": "EU"},
    {"order_id": 13, "customer_id": 1, "amount": 17.5, "region": "EU"},
]


def _schema(*columns: tuple[str, str]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns])


def out_dir() -> Path:
    return Path(os.environ.get("LACUNA_DEMO_OUT") or DEFAULT_OUT)


def export_path(base: Path | None = None) -> Path:
    """The export lands in a Downloads folder: an unmanaged location in every environment."""
    return (base or out_dir()) / "Downloads" / "regional_report.csv"


def build_assets(export_to: Path) -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="lacuna_example",
        kinds={"python"},
        description="Customer master data.",
        metadata={
            "lacuna/tags": ["PII"],
            "dagster/column_schema": _schema(("customer_id", "integer"), ("full_name", "string"),
                                             ("email", "string"), ("region", "string")),
        },
    )
    def customers() -> list[dict[str, Any]]:
        return [dict(row) for row in CUSTOMERS]

    @dg.asset(
        group_name="lacuna_example",
        kinds={"python"},
        description="Orders with amounts.",
        metadata={
            "lacuna/tags": ["FINANCIAL"],
            "dagster/column_schema": _schema(("order_id", "integer"), ("customer_id", "integer"),
                                             ("amount", "double"), ("region", "string")),
        },
    )
    def sales() -> list[dict[str, Any]]:
        return [dict(row) for row in SALES]

    @dg.asset(
        group_name="lacuna_example",
        kinds={"python"},
        description="Customers joined with their sales.",
        metadata={"lacuna/operation": "join"},
    )
    def customer_sales(customers: list[dict[str, Any]],
                       sales: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_id = {c["customer_id"]: c for c in customers}
        return [
            {"customer_id": s["customer_id"], "email": by_id[s["customer_id"]]["email"],
             "region": s["region"], "amount": s["amount"]}
            for s in sales
        ]

    @dg.asset(
        group_name="lacuna_example",
        kinds={"python"},
        description="Revenue per region; no row identifies a customer.",
        metadata={"lacuna/operation": "aggregate", "lacuna/classification": "INTERNAL"},
    )
    def regional_summary(customer_sales: list[dict[str, Any]]) -> list[dict[str, Any]]:
        totals: dict[str, dict[str, Any]] = {}
        for row in customer_sales:
            entry = totals.setdefault(row["region"], {"region": row["region"], "revenue": 0.0,
                                                      "customer_count": set()})
            entry["revenue"] += row["amount"]
            entry["customer_count"].add(row["customer_id"])
        return [
            {"region": r, "revenue": round(e["revenue"], 2),
             "customer_count": len(e["customer_count"])}
            for r, e in sorted(totals.items())
        ]

    @dg.asset(
        group_name="lacuna_example",
        kinds={"csv"},
        description="Per-region revenue with the contacts of the region's customers, written "
        "to a Downloads folder.",
        metadata={"lacuna/destination": export_to.resolve().as_uri()},
    )
    @governed
    def regional_report_export(regional_summary: list[dict[str, Any]],
                               customer_sales: list[dict[str, Any]]) -> dg.MaterializeResult:
        contacts: dict[str, set[str]] = {}
        for row in customer_sales:
            contacts.setdefault(row["region"], set()).add(row["email"])
        export_to.parent.mkdir(parents=True, exist_ok=True)
        with export_to.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["region", "revenue", "contacts"])
            for row in regional_summary:
                writer.writerow([row["region"], row["revenue"],
                                 " ".join(sorted(contacts.get(row["region"], ())))])
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(export_to)),
            "dagster/column_schema": _schema(("region", "string"), ("revenue", "double"),
                                             ("contacts", "string")),
        })

    return [customers, sales, customer_sales, regional_summary, regional_report_export]


def build_definitions(
    *,
    out: Path | None = None,
    lacuna: LacunaResource | None = None,
    annotate: bool = True,
) -> dg.Definitions:
    """The example's ``Definitions``. ``annotate`` adds each asset's current Lacuna tier (from
    the store) as a tag and a kind, so the asset graph shows classification on every node."""
    base = out or out_dir()
    local_store = None
    if lacuna is None:
        if not os.environ.get("LACUNA_DATABASE_URL"):
            local_store = base / "lacuna.db"
            base.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not the folder
        lacuna = LacunaResource(database_url=f"sqlite:///{local_store}" if local_store else None)
    assets: list[Any] = build_assets(export_path(base))
    # Nothing to read before the first run: loading definitions never creates the store.
    if annotate and (local_store is None or local_store.exists()):
        assets = annotate_assets(assets, lacuna.classifications_for(assets))
    return governed_definitions(
        assets=assets,
        lacuna=lacuna,
        resources={"io_manager": dg.FilesystemIOManager(base_dir=str(base / "storage"))},
    )


defs = build_definitions()
