"""dbt integration: the ``lacuna`` dbt package's records in, a policy gate before every build.

* ``run_dbt`` — ``lacuna dbt build|run|seed|snapshot|test``: parse, gate every selected node with
  the policies, run dbt in process with the decisions, then record COMPLETE/FAIL events.
* ``plan_dbt`` — the gate alone: what a command would build and what policy says about it.
* ``collect`` — ingest what plain ``dbt build`` runs left in the warehouse outbox (or a log).
* ``DbtTranslator`` — how dbt nodes become dataset names, operations and floors; subclass it
  for odd naming.
* ``DbtGate`` / ``DbtManifest`` / ``EventAssembler`` — the pieces, for custom orchestration.

dbt itself is imported only when a command runs, so importing this package needs no dbt.
"""

from lacuna_orchestration.integrations.dbt.gate import DbtGate, FloorViolation, GatePlan
from lacuna_orchestration.integrations.dbt.invoke import DbtArgs, DbtInvocationError
from lacuna_orchestration.integrations.dbt.manifest import DbtColumn, DbtManifest, DbtNode
from lacuna_orchestration.integrations.dbt.outbox import (
    CollectResult,
    EventAssembler,
    ack_outbox,
    collect,
    read_outbox,
)
from lacuna_orchestration.integrations.dbt.records import (
    LineageRecord,
    RecordCollector,
    read_log_records,
)
from lacuna_orchestration.integrations.dbt.runner import DbtRunOutcome, plan_dbt, run_dbt
from lacuna_orchestration.integrations.dbt.translator import (
    DBT_PRODUCER,
    DbtTranslator,
    DbtTranslatorSettings,
    Floor,
)

__all__ = [
    "DBT_PRODUCER",
    "CollectResult",
    "DbtArgs",
    "DbtColumn",
    "DbtGate",
    "DbtInvocationError",
    "DbtManifest",
    "DbtNode",
    "DbtRunOutcome",
    "DbtTranslator",
    "DbtTranslatorSettings",
    "EventAssembler",
    "Floor",
    "FloorViolation",
    "GatePlan",
    "LineageRecord",
    "RecordCollector",
    "ack_outbox",
    "collect",
    "plan_dbt",
    "read_log_records",
    "read_outbox",
    "run_dbt",
]
