"""Adapters that connect orchestrators (Dagster, Airflow, dbt) to the governor; each is an
optional extra and imports its orchestrator only when used."""
