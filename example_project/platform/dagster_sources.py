"""Step 1 of the platform — Dagster loads the raw sources into the warehouse, governed.

Four assets return rows; ``DuckDBTableIOManager`` writes each into ``raw.<asset>`` of the
DuckDB warehouse, wrapped by Lacuna's gated IO manager (``governed_definitions``): the gate
decides before the write, START and COMPLETE (with the declared columns) go into Lacuna, and a
blocking check shows each table's tier in Dagster.

Naming is the point of this module. By default Lacuna's Dagster translator calls an asset
``dagster::<asset key>``; here the asset *is* a warehouse table that dbt reads as a source, so
``WarehouseTranslator`` names it exactly as the dbt translator names that source
(``duckdb://<file>::<database>.raw.<table>``, see ``config.PlatformPaths``). The override is
configured from the example (a resource subclass), not patched into the integration.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from lacuna_orchestration.integrations.dagster import (
    DagsterTranslator,
    DagsterTranslatorSettings,
    LacunaResource,
    governed_definitions,
)
from lacuna_orchestration.model import DatasetRef

from . import sources
from .config import RAW_SCHEMA, PlatformPaths

__all__ = [
    "RAW_TABLES",
    "DuckDBTableIOManager",
    "PlatformLacunaResource",
    "WarehouseTranslator",
    "build_raw_assets",
    "load_sources",
    "load_sources_via_server",
]

GROUP = "raw_sources"
RAW_TABLES = ("crm_contacts", "transactions", "patient_visits", "country_codes")
# Dagster's console logger prints every event; the platform prints what matters itself.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
_DUCKDB_TYPES = {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE", str: "VARCHAR",
                 date: "DATE"}


class WarehouseTranslator(DagsterTranslator):
    """Names every asset as the warehouse table it writes: ``raw.<last part of the key>``."""

    def __init__(self, paths: PlatformPaths) -> None:
        super().__init__(DagsterTranslatorSettings(namespace="dagster"))
        self.paths = paths

    def get_dataset_ref(self, asset_key: dg.AssetKey) -> DatasetRef:
        return self.paths.raw(asset_key.path[-1])

    def get_job(self, asset_key: dg.AssetKey) -> tuple[str, str]:
        return ("dagster", asset_key.to_user_string())


class PlatformLacunaResource(LacunaResource):
    """``LacunaResource`` whose datasets are named after the platform's warehouse tables."""

    platform_out: str = Field(description="The platform's output folder (see PlatformPaths).")

    def get_translator(self) -> DagsterTranslator:
        return WarehouseTranslator(PlatformPaths.under(self.platform_out))


class DuckDBTableIOManager(dg.ConfigurableIOManager):
    """Writes an asset's rows (a list of dicts) to ``<schema_name>.<asset>`` in a DuckDB file,
    replacing the table; reads them back as rows."""

    path: str = Field(description="The DuckDB database file.")
    schema_name: str = Field(default=RAW_SCHEMA, description="Schema the tables go to.")

    def _table(self, key: dg.AssetKey) -> str:
        return f'"{self.schema_name}"."{key.path[-1]}"'

    def handle_output(self, context: dg.OutputContext, obj: Sequence[dict[str, Any]]) -> None:
        import duckdb

        if not obj:
            raise ValueError(f"{context.asset_key.to_user_string()} produced no rows")
        first = obj[0]
        columns = ", ".join(f'"{name}" {_DUCKDB_TYPES.get(type(value), "VARCHAR")}'
                            for name, value in first.items())
        marks = ", ".join("?" for _ in first)
        table = self._table(context.asset_key)
        with duckdb.connect(self.path) as con:
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema_name}"')
            con.execute(f"CREATE OR REPLACE TABLE {table} ({columns})")
            con.executemany(f"INSERT INTO {table} VALUES ({marks})",
                            [tuple(row[name] for name in first) for row in obj])
        context.add_output_metadata({"rows": len(obj), "table": table})

    def load_input(self, context: dg.InputContext) -> list[dict[str, Any]]:
        import duckdb

        with duckdb.connect(self.path) as con:
            cursor = con.execute(f"SELECT * FROM {self._table(context.asset_key)}")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _schema(*columns: tuple[str, str]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns])


def build_raw_assets() -> list[dg.AssetsDefinition]:
    """The four source loads. Columns are declared so Lacuna classifies them before the first
    write; nothing is labelled by hand except the reference data's PUBLIC_REFERENCE tag (a
    tag, not a PUBLIC floor: the classifier may still find a column worth more, and a floor
    below what the data shows fails the asset's governance check)."""

    @dg.asset(group_name=GROUP, kinds={"duckdb"}, description="CRM contacts, one per person.",
              metadata={"dagster/column_schema": _schema(
                  ("contact_id", "bigint"), ("first_name", "varchar"), ("last_name", "varchar"),
                  ("email", "varchar"), ("phone", "varchar"), ("date_of_birth", "date"),
                  ("country_code", "varchar"), ("signup_date", "date"))})
    def crm_contacts() -> list[dict[str, Any]]:
        return sources.contacts()

    @dg.asset(group_name=GROUP, kinds={"duckdb"}, description="Payments from the ledger.",
              metadata={"dagster/column_schema": _schema(
                  ("transaction_id", "bigint"), ("contact_id", "bigint"), ("amount", "double"),
                  ("currency", "varchar"), ("iban", "varchar"), ("booked_at", "date"))})
    def transactions() -> list[dict[str, Any]]:
        return sources.transactions()

    @dg.asset(group_name=GROUP, kinds={"duckdb"},
              description="Clinic visits with ICD-10 diagnosis codes.",
              metadata={"dagster/column_schema": _schema(
                  ("visit_id", "bigint"), ("patient_id", "bigint"),
                  ("diagnosis_code", "varchar"), ("visited_on", "date"))})
    def patient_visits() -> list[dict[str, Any]]:
        return sources.patient_visits()

    @dg.asset(group_name=GROUP, kinds={"duckdb"}, description="Public country reference data.",
              metadata={"lacuna/tags": ["PUBLIC_REFERENCE"],
                        "dagster/column_schema": _schema(
                            ("country_code", "varchar"), ("country_name", "varchar"),
                            ("region", "varchar"))})
    def country_codes() -> list[dict[str, Any]]:
        return sources.country_codes()

    return [crm_contacts, transactions, patient_visits, country_codes]


def build_definitions(paths: PlatformPaths, lacuna: LacunaResource) -> dg.Definitions:
    """Gated IO manager over the warehouse, one blocking governance check per asset."""
    return governed_definitions(
        assets=build_raw_assets(),
        lacuna=lacuna,
        resources={"io_manager": DuckDBTableIOManager(path=str(paths.warehouse))},
    )


def load_sources(governor: Any, paths: PlatformPaths, *, user: str) -> dg.ExecuteInProcessResult:
    """Materialize the four sources in process against ``governor``; raise with Dagster's
    reason when a step fails (the demo turns it into one line)."""
    from lacuna_orchestration.integrations.dagster.backend import attach_governor, detach_governor

    handle = attach_governor(governor)
    try:
        lacuna = PlatformLacunaResource(attached=handle, platform_out=str(paths.out), user=user)
        return _materialize(paths, lacuna)
    finally:
        detach_governor(handle)


def load_sources_via_server(url: str, api_key: str, paths: PlatformPaths, *,
                            user: str) -> dg.ExecuteInProcessResult:
    """The same run reporting to a Lacuna server: the resource is configured with the
    server's URL and a producer key — the only difference from ``load_sources``. The gate
    still decides before every write; an unreachable server fails it closed."""
    lacuna = PlatformLacunaResource(url=url, api_key=api_key, platform_out=str(paths.out),
                                    user=user, environment="production", timeout_s=30.0)
    return _materialize(paths, lacuna)


def _materialize(paths: PlatformPaths, lacuna: LacunaResource) -> dg.ExecuteInProcessResult:
    Path(paths.out).mkdir(parents=True, exist_ok=True)
    defs = build_definitions(paths, lacuna)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(run_config=QUIET, raise_on_error=False)
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        reason = failures[0].step_failure_data.error.message.strip() if failures else "unknown"
        raise RuntimeError(f"Dagster run failed: {reason}")
    return result
