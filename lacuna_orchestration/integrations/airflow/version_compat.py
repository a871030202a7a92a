"""Every import whose home differs between Airflow 3 releases, in one place.

Airflow 3 moved the authoring API into the task SDK (``airflow.sdk``) while the scheduler side
kept ``airflow.*``; minor releases keep shuffling where ``conf`` lives. The rest of the Airflow
integration imports these names from here and never tries alternatives itself.

Airflow 2 is not supported: its listener hooks take a ``session`` argument and its tasks run
without the task SDK, so importing this module on Airflow 2 raises ``ConfigError`` naming the
installed version instead of failing later in a confusing way.
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as AIRFLOW_VERSION_STRING

from lacuna_orchestration.errors import ConfigError


def _version_tuple(text: str) -> tuple[int, int, int]:
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


AIRFLOW_VERSION = _version_tuple(AIRFLOW_VERSION_STRING)


def require_airflow_3(version: tuple[int, int, int] = AIRFLOW_VERSION) -> None:
    """Raise ``ConfigError`` naming the installed version when it is older than 3.0."""
    if version < (3, 0, 0):
        raise ConfigError(
            f"Lacuna's Airflow integration needs Airflow 3.0 or newer; {AIRFLOW_VERSION_STRING} "
            "is installed (install lacuna-orchestration[airflow])"
        )


require_airflow_3()

from airflow.listeners import hookimpl  # imported only after the version check
from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowFailException

try:  # task SDK configuration (3.1+): readable from task processes without the core package
    from airflow.sdk.configuration import conf as _conf
except ImportError:  # pragma: no cover - 3.0
    from airflow.configuration import conf as _conf

try:
    from airflow.sdk.definitions.mappedoperator import MappedOperator
except ImportError:  # pragma: no cover - moved in some 3.x releases
    from airflow.models.mappedoperator import MappedOperator  # type: ignore[no-redef]

__all__ = [
    "AIRFLOW_VERSION",
    "AirflowFailException",
    "Asset",
    "AssetAlias",
    "BaseOperator",
    "MappedOperator",
    "airflow_conf",
    "hookimpl",
    "require_airflow_3",
]


airflow_conf: Any = _conf

