"""Map Airflow tasks to what Lacuna speaks: OpenLineage datasets, ``DatasetRef`` and operations.

``AirflowTranslator`` answers every question the listener and the gate ask about a task, one
overridable ``get_*`` method per question, so a deployment with odd naming subclasses it and
names the subclass in ``[lacuna] translator``::

    class MyTranslator(AirflowTranslator):
        def get_asset_ref(self, asset):
            ref = super().get_asset_ref(asset)
            return DatasetRef(ref.namespace, ref.name.removeprefix("/mnt/lake"))

What a task reads and writes comes, in this order, from:

1. operator-specific lineage of the OpenLineage provider's extractors (SQL operators, transfer
   operators, anything with ``get_openlineage_facets_on_start``) when the operator has one;
2. the task's ``inlets`` / ``outlets``: Airflow ``Asset`` objects (their URI named the
   OpenLineage way, classification from ``extra={"lacuna": {...}}``), OpenLineage ``Dataset``
   objects (facets kept: a ``schema`` facet is what lets Lacuna classify columns),
   ``DatasetRef`` values and ``"namespace::name"`` keys.

What the task does with them (``join``, ``aggregate``, ``export`` ...) is declared in the task's
``params``: ``params={"lacuna_operation": "export", "lacuna_purpose": "analytics"}``.

>>> AirflowTranslator().get_asset_ref(Asset("file:///data/customers.csv"))   # doctest: +SKIP
DatasetRef(namespace='file', name='/data/customers.csv')
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from lacuna_orchestration.errors import ConfigError, ValidationError
from lacuna_orchestration.integrations.airflow import config
from lacuna_orchestration.integrations.airflow.version_compat import Asset, AssetAlias
from lacuna_orchestration.lineage.events import DatasetSpec
from lacuna_orchestration.model import DatasetRef, OperationKind

__all__ = [
    "AirflowTranslator",
    "AirflowTranslatorSettings",
    "TaskLineage",
    "load_translator",
]

log = logging.getLogger(__name__)

PARAM_OPERATION = "lacuna_operation"
PARAM_PURPOSE = "lacuna_purpose"
PARAM_USER = "lacuna_user"
PARAM_EXCEPTION = "lacuna_exception_id"
ASSET_EXTRA_KEY = "lacuna"
DEFAULT_OWNER = "airflow"
RUN_ID_NAMESPACE = uuid.UUID("6c1f7f0e-2f4d-5a8e-9a57-6c61636e6121")
# Extractors that describe code, never data: running them costs time and yields no datasets.
CODE_ONLY_EXTRACTORS = frozenset({"PythonExtractor", "BashExtractor"})
# URI schemes whose path is database/schema/table (AIP-60), named ``db.schema.table``.
SQL_SCHEMES = frozenset({"postgres", "postgresql", "mysql", "mssql", "redshift", "trino",
                         "snowflake", "bigquery", "sqlite", "duckdb"})
SCHEME_ALIASES = {"gcs": "gs", "postgresql": "postgres"}
RECENT_LINEAGE = 64


@dataclass(frozen=True, slots=True)
class AirflowTranslatorSettings:
    """Feature flags of the translator (read from ``[lacuna]`` by ``from_config``)."""

    job_namespace: str = config.DEFAULT_JOB_NAMESPACE
    operator_lineage: bool = True

    @classmethod
    def from_config(cls) -> AirflowTranslatorSettings:
        return cls(job_namespace=config.job_namespace(), operator_lineage=config.operator_lineage())


@dataclass(frozen=True, slots=True)
class TaskLineage:
    """What one task reads and writes, as OpenLineage dataset objects (JSON dicts)."""

    inputs: tuple[dict[str, Any], ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()
    origin: str = "none"  # "operator" | "inlets/outlets" | "none"

    @property
    def sources(self) -> tuple[DatasetRef, ...]:
        return tuple(DatasetRef(d["namespace"], d["name"]) for d in self.inputs)

    @property
    def destinations(self) -> tuple[DatasetRef, ...]:
        return tuple(DatasetRef(d["namespace"], d["name"]) for d in self.outputs)

    @property
    def empty(self) -> bool:
        return not self.inputs and not self.outputs


class AirflowTranslator:
    """Turns Airflow objects into Lacuna's. Override any ``get_*`` method."""

    def __init__(self, settings: AirflowTranslatorSettings | None = None) -> None:
        self.settings = settings or AirflowTranslatorSettings()
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._recent: dict[tuple[Any, ...], tuple[Any, TaskLineage]] = {}

    # -- datasets ------------------------------------------------------------------------------
    def get_asset_ref(self, asset: Any) -> DatasetRef:
        """An Airflow ``Asset`` URI named the OpenLineage way (the same names the provider's
        ``file`` converter gives): ``file:///a/b.csv`` → ``file`` / ``/a/b.csv``;
        ``s3://bucket/key`` → ``s3://bucket`` / ``key``; ``postgres://host:5432/db/sch/t`` →
        ``postgres://host:5432`` / ``db.sch.t``; a URI without a scheme → ``airflow`` / URI."""
        uri = str(getattr(asset, "uri", "") or getattr(asset, "name", ""))
        parts = urlsplit(uri)
        scheme = SCHEME_ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
        if not scheme:
            return DatasetRef("airflow", uri)
        if scheme == "file":
            namespace = f"file://{parts.netloc}" if parts.netloc else "file"
            return DatasetRef(namespace, parts.path or "/")
        namespace = f"{scheme}://{parts.netloc}" if parts.netloc else scheme
        path = parts.path.strip("/")
        if scheme in SQL_SCHEMES:
            path = ".".join(p for p in path.split("/") if p)
        return DatasetRef(namespace, path or uri)

    def get_asset_facets(self, asset: Any) -> dict[str, Any]:
        """Facets from ``Asset(extra={"lacuna": {...}})``: ``columns`` (names or
        ``[name, type]``), ``classification``, ``tags``, ``column_tags``, ``description``."""
        extra = getattr(asset, "extra", None) or {}
        declared = extra.get(ASSET_EXTRA_KEY) if isinstance(extra, Mapping) else None
        if not isinstance(declared, Mapping):
            return {}
        columns = [c if isinstance(c, str) else tuple(c) for c in declared.get("columns") or ()]
        spec = DatasetSpec(
            self.get_asset_ref(asset),
            columns=columns,
            tier=declared.get("classification") or None,
            tags=list(declared.get("tags") or ()),
            column_tags={str(k): list(v) for k, v in (declared.get("column_tags") or {}).items()},
            description=str(declared.get("description") or ""),
        )
        return dict(spec.to_openlineage()["facets"])

    def get_dataset(self, obj: Any) -> dict[str, Any] | None:
        """One inlet/outlet as an OpenLineage dataset dict, or None for what is not a dataset
        (an ``AssetAlias`` only resolves at run time; unknown objects are logged once)."""
        if isinstance(obj, AssetAlias):
            return None
        if isinstance(obj, Asset):
            ref = self.get_asset_ref(obj)
            return {"namespace": ref.namespace, "name": ref.name,
                    "facets": self.get_asset_facets(obj)}
        if isinstance(obj, DatasetRef):
            return {"namespace": obj.namespace, "name": obj.name, "facets": {}}
        if isinstance(obj, str):
            ref = DatasetRef.from_key(obj)
            return {"namespace": ref.namespace, "name": ref.name, "facets": {}}
        if _is_openlineage_dataset(obj):
            from openlineage.client.serde import Serde

            data = Serde.to_dict(obj)
            return {"namespace": data["namespace"], "name": data["name"],
                    "facets": dict(data.get("facets") or {})}
        if isinstance(obj, Mapping) and obj.get("namespace") and obj.get("name"):
            return {"namespace": str(obj["namespace"]), "name": str(obj["name"]),
                    "facets": dict(obj.get("facets") or {})}
        self._warn_once(
            f"type:{type(obj).__qualname__}",
            "Lacuna ignores inlet/outlet %r: not an Asset, OpenLineage Dataset, DatasetRef or "
            "'namespace::name' key", obj,
        )
        return None

    def get_dataset_ref(self, obj: Any) -> DatasetRef | None:
        data = self.get_dataset(obj)
        return DatasetRef(data["namespace"], data["name"]) if data else None

    def get_datasets(self, items: Iterable[Any]) -> tuple[dict[str, Any], ...]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for item in items or ():
            data = self.get_dataset(item)
            if data is not None:
                out.setdefault((data["namespace"], data["name"]), data)
        return tuple(out.values())

    # -- a task's lineage ----------------------------------------------------------------------
    def get_lineage(self, task: Any, state: str = "running",
                    task_instance: Any = None) -> TaskLineage:
        """What ``task`` reads and writes: operator lineage first, then inlets/outlets.

        Remembered per task try and state: the listener's START event and the gate both ask
        right before ``execute()``, and an operator's extractor may be costly (SQL parsing,
        schema look-ups)."""
        key = (id(task), state, getattr(task_instance, "run_id", None),
               getattr(task_instance, "try_number", None),
               getattr(task_instance, "map_index", None))
        with self._lock:
            cached = self._recent.get(key)
        if cached is not None and cached[0] is task:
            return cached[1]
        lineage = self._compute_lineage(task, state, task_instance)
        with self._lock:
            self._recent[key] = (task, lineage)
            if len(self._recent) > RECENT_LINEAGE:
                self._recent.pop(next(iter(self._recent)))
        return lineage

    def _compute_lineage(self, task: Any, state: str, task_instance: Any) -> TaskLineage:
        from_operator = self.get_operator_lineage(task, state, task_instance)
        if from_operator is not None and not from_operator.empty:
            return from_operator
        inputs = self.get_datasets(getattr(task, "inlets", None) or ())
        outputs = self.get_datasets(getattr(task, "outlets", None) or ())
        if inputs or outputs:
            return TaskLineage(inputs, outputs, "inlets/outlets")
        return TaskLineage()

    def get_operator_lineage(self, task: Any, state: str = "running",
                             task_instance: Any = None) -> TaskLineage | None:
        """Datasets from the OpenLineage provider's extractor for this operator, if it has one
        that describes data; None when the provider is absent or has nothing to say."""
        if not self.settings.operator_lineage:
            return None
        manager = self._extractor_manager
        if manager is None:
            return None
        extractor_cls = manager.get_extractor_class(task)
        if extractor_cls is None or extractor_cls.__name__ in CODE_ONLY_EXTRACTORS:
            return None
        extractor = extractor_cls(task)
        if state == "running":
            lineage = extractor.extract()
        elif state == "failed":
            lineage = extractor.extract_on_failure(task_instance)
        else:
            lineage = extractor.extract_on_complete(task_instance)
        if lineage is None:
            return None
        return TaskLineage(self.get_datasets(lineage.inputs or ()),
                           self.get_datasets(lineage.outputs or ()), "operator")

    @cached_property
    def _extractor_manager(self) -> Any:
        try:
            from airflow.providers.openlineage.extractors.manager import ExtractorManager
        except ImportError:
            return None
        return ExtractorManager()

    # -- what the task does --------------------------------------------------------------------
    def get_param(self, task: Any, key: str) -> str:
        params = getattr(task, "params", None)
        if params is None:
            partial = getattr(task, "partial_kwargs", None) or {}
            params = partial.get("params") if isinstance(partial, Mapping) else None
        if not params or key not in params:
            return ""
        try:
            # ``get_param(key).value`` is the declared value; ``params[key]`` would validate the
            # whole Param against its JSON schema on every read (~0.25 ms each).
            get_param = getattr(params, "get_param", None)
            value = get_param(key).value if callable(get_param) else params.get(key)
        except Exception:  # noqa: BLE001 - a Param that cannot be read counts as unset
            return ""
        return str(value).strip() if value not in (None, "") else ""

    def get_operation(self, task: Any) -> OperationKind:
        """``params["lacuna_operation"]``, else ``transform`` (the neutral default)."""
        declared = self.get_param(task, PARAM_OPERATION)
        if not declared:
            return OperationKind.TRANSFORM
        try:
            return OperationKind.parse(declared)
        except ValidationError as err:
            raise ConfigError(
                f"task {getattr(task, 'task_id', '?')}: params.{PARAM_OPERATION}: {err}"
            ) from None

    def get_purpose(self, task: Any) -> str:
        return self.get_param(task, PARAM_PURPOSE)

    def get_exception_id(self, task: Any) -> str:
        return self.get_param(task, PARAM_EXCEPTION)

    def get_user(self, task: Any) -> str:
        """``params["lacuna_user"]``, else the task owner unless it is Airflow's default."""
        declared = self.get_param(task, PARAM_USER)
        if declared:
            return declared
        owner = str(getattr(task, "owner", "") or "").strip()
        return owner if owner and owner != DEFAULT_OWNER else ""

    # -- jobs and runs -------------------------------------------------------------------------
    def get_job_namespace(self) -> str:
        return self.settings.job_namespace

    def get_task_job_name(self, dag_id: str, task_id: str) -> str:
        """``<dag_id>.<task_id>``, as the OpenLineage provider names task jobs."""
        return f"{dag_id}.{task_id}"

    def get_dag_job_name(self, dag_id: str) -> str:
        return dag_id

    def get_task_run_id(self, dag_id: str, task_id: str, run_id: str, try_number: int,
                        map_index: int = -1) -> str:
        """A stable OpenLineage run id per task try: START, COMPLETE and the gate's check of
        the same try share it, so the audit trail links them."""
        key = f"airflow/{dag_id}/{run_id}/{task_id}/{try_number}/{map_index}"
        return str(uuid.uuid5(RUN_ID_NAMESPACE, key))

    def get_task_instance_run_id(self, task_instance: Any, dag_id: str, task_id: str) -> str:
        """``get_task_run_id`` for a task instance (missing attributes count as try 0 and
        an unmapped task)."""
        map_index = getattr(task_instance, "map_index", None)
        return self.get_task_run_id(
            dag_id, task_id, str(getattr(task_instance, "run_id", "") or ""),
            int(getattr(task_instance, "try_number", 0) or 0),
            -1 if map_index is None else int(map_index),
        )

    def get_dag_run_id(self, dag_id: str, run_id: str) -> str:
        return str(uuid.uuid5(RUN_ID_NAMESPACE, f"airflow/{dag_id}/{run_id}"))

    # -- helpers -------------------------------------------------------------------------------
    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning(message, *args)


def _is_openlineage_dataset(obj: Any) -> bool:
    module = type(obj).__module__
    return module.startswith("openlineage.") and hasattr(obj, "namespace") and hasattr(obj, "name")


_translator: AirflowTranslator | None = None
_translator_lock = threading.Lock()


def load_translator(*, refresh: bool = False) -> AirflowTranslator:
    """The process's translator: the class named in ``[lacuna] translator`` or the default,
    built once. ``ConfigError`` names a path that does not import or is not a translator."""
    global _translator
    with _translator_lock:
        if _translator is not None and not refresh:
            return _translator
        settings = AirflowTranslatorSettings.from_config()
        path = config.translator_path()
        if not path:
            _translator = AirflowTranslator(settings)
            return _translator
        from importlib import import_module

        module_name, _, attr = path.rpartition(".")
        try:
            cls = getattr(import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as err:
            raise ConfigError(f"[lacuna] translator = {path!r} cannot be imported: {err}") from None
        if not (isinstance(cls, type) and issubclass(cls, AirflowTranslator)):
            raise ConfigError(
                f"[lacuna] translator = {path!r} is not an AirflowTranslator subclass"
            )
        _translator = cls(settings)
        return _translator
