"""Where the platform keeps its files and how it names its datasets — one place for both.

The three orchestrators must agree on dataset names, or the lineage graph falls apart into
three islands. They agree because every name comes from here:

* the warehouse is one DuckDB file; its datasets are named the way Lacuna's dbt translator
  names warehouse relations (the OpenLineage convention): namespace ``duckdb://<file>``, name
  ``<database>.<schema>.<table>``, where the database is the file's stem, as DuckDB calls it;
* Dagster writes the raw tables into schema ``raw`` (dbt reads them there as sources), dbt
  builds into ``main``, Airflow reads the marts from ``main``;
* exports name their real destinations (a partner share, the governed workspace); the demo
  cannot write to ``/srv`` or ``/governed``, so it writes each file under ``mount_root`` at the
  same path — a stand-in for the mounted shares, while policies judge the real location.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lacuna_orchestration.model import DatasetRef

__all__ = [
    "ANALYST",
    "GOVERNED_EXPORT",
    "MARKETING_STEWARD",
    "PARTNER_EXPORT",
    "RAW_SCHEMA",
    "SCHEDULER",
    "SCRATCH_EXPORT",
    "STEWARD",
    "WAREHOUSE_SCHEMA",
    "PlatformPaths",
]

RAW_SCHEMA = "raw"
WAREHOUSE_SCHEMA = "main"

STEWARD = "data-governance@example.com"
MARKETING_STEWARD = "marketing-governance@example.com"
ANALYST = "analyst@example.com"
SCHEDULER = "scheduler@example.com"

# Real destinations: a folder synced to a partner (unmanaged: a Downloads folder) and the
# governed workspace (policies/data.json lists it as governed).
PARTNER_EXPORT = "/srv/partner-share/Downloads/customer_transactions.csv"
GOVERNED_EXPORT = "/governed/workspace/revenue_by_country.csv"
SCRATCH_EXPORT = "/tmp/lacuna-scratch/revenue_sample.csv"


@dataclass(frozen=True, slots=True)
class PlatformPaths:
    """Every file one run of the platform writes lives under ``out``."""

    out: Path

    @classmethod
    def under(cls, out: Path | str) -> PlatformPaths:
        return cls(Path(out).resolve())

    @property
    def store(self) -> Path:
        """Lacuna's SQLite store (catalog, decisions, audit chain)."""
        return self.out / "lacuna.db"

    @property
    def warehouse(self) -> Path:
        return self.out / "warehouse.duckdb"

    @property
    def dbt_project(self) -> Path:
        """Where the dbt project is copied to run (dbt writes target/ and logs/ beside it)."""
        return self.out / "dbt"

    @property
    def mount_root(self) -> Path:
        return self.out / "mnt"

    @property
    def report_html(self) -> Path:
        return self.out / "iso27001-a94.html"

    @property
    def report_json(self) -> Path:
        return self.out / "iso27001-a94.json"

    @property
    def lineage_svg(self) -> Path:
        return self.out / "lineage.svg"

    # -- names ------------------------------------------------------------------------------
    @property
    def warehouse_namespace(self) -> str:
        """``duckdb://<file>``: what the dbt translator derives from the profile's ``path``."""
        return f"duckdb://{self.warehouse}"

    @property
    def warehouse_database(self) -> str:
        """DuckDB names a file's catalog after its stem."""
        return self.warehouse.stem

    def table(self, name: str, schema: str = WAREHOUSE_SCHEMA) -> DatasetRef:
        """A warehouse relation, named as every orchestrator here names it."""
        return DatasetRef(self.warehouse_namespace,
                          f"{self.warehouse_database}.{schema}.{name}")

    def raw(self, name: str) -> DatasetRef:
        return self.table(name, RAW_SCHEMA)

    def mounted(self, destination: str) -> Path:
        """The local stand-in for a real destination path."""
        return self.mount_root / destination.lstrip("/")
