"""The ``[lacuna]`` section of Airflow's configuration: one typed accessor per option.

Options are read through Airflow's own configuration, so each one can be set in ``airflow.cfg``
or as ``AIRFLOW__LACUNA__<OPTION>`` in the environment. They only say how Airflow reaches
Lacuna; Lacuna's own settings (store, policies, environment) come from ``LACUNA_*`` variables
or the file named by ``config_file``, exactly as for every other entry point.

============================  =========  ======================================================
option                        default    meaning
============================  =========  ======================================================
``listener_enabled``          ``True``   the plugin's listener sends task and DAG run events
``dag_run_events``            ``True``   ... including DAG run events (dataset-less records)
``server_url``                ``""``     a Lacuna server; empty = the governor in process
``api_key``                   ``""``     API key sent to ``server_url``
``timeout_s``                 ``5.0``    seconds one call to the server may take
``config_file``               ``""``     Lacuna settings YAML (else ``LACUNA_CONFIG``/defaults)
``translator``                ``""``     dotted path of an ``AirflowTranslator`` subclass
``job_namespace``             ``""``     OpenLineage job namespace; empty = ``[openlineage]
                                         namespace``, else ``default`` (what the provider uses)
``operator_lineage``          ``True``   use the OpenLineage provider's extractors when an
                                         operator has one
============================  =========  ======================================================

>>> listener_enabled()          # doctest: +SKIP
True
"""

from __future__ import annotations

from lacuna_orchestration.integrations.airflow.version_compat import airflow_conf

__all__ = [
    "SECTION",
    "api_key",
    "config_file",
    "dag_run_events",
    "job_namespace",
    "listener_enabled",
    "operator_lineage",
    "server_url",
    "timeout_s",
    "translator_path",
]

SECTION = "lacuna"
OPENLINEAGE_SECTION = "openlineage"
DEFAULT_JOB_NAMESPACE = "default"


def _text(option: str) -> str:
    return str(airflow_conf.get(SECTION, option, fallback="") or "").strip()


def listener_enabled() -> bool:
    """False turns the listener into a no-op (e.g. when the OpenLineage provider already posts
    to a Lacuna server and events would arrive twice)."""
    return bool(airflow_conf.getboolean(SECTION, "listener_enabled", fallback=True))


def dag_run_events() -> bool:
    return bool(airflow_conf.getboolean(SECTION, "dag_run_events", fallback=True))


def server_url() -> str:
    """A Lacuna server's base URL; empty means the governor runs inside the Airflow process."""
    return _text("server_url").rstrip("/")


def api_key() -> str:
    return _text("api_key")


def timeout_s() -> float:
    return float(airflow_conf.getfloat(SECTION, "timeout_s", fallback=5.0))


def config_file() -> str:
    return _text("config_file")


def translator_path() -> str:
    return _text("translator")


def job_namespace() -> str:
    """The job namespace Lacuna's events use: its own option, else the provider's, so that
    events from both name the same jobs."""
    own = _text("job_namespace")
    if own:
        return own
    provider = str(airflow_conf.get(OPENLINEAGE_SECTION, "namespace", fallback="") or "").strip()
    return provider or DEFAULT_JOB_NAMESPACE


def operator_lineage() -> bool:
    return bool(airflow_conf.getboolean(SECTION, "operator_lineage", fallback=True))
