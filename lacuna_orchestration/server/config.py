"""The ingestor service's settings: the core ``Settings`` plus what only a server needs.

Resolution order, later wins (the core's order, with its own file and prefix, because the core
``Settings`` forbids unknown keys in ``lacuna.yaml``): defaults → the YAML file named by
``LACUNA_SERVER_CONFIG`` (or ``./lacuna-server.yaml``) → ``LACUNA_SERVER_<FIELD>`` environment
variables → keyword arguments. The core settings come from ``Settings.load`` as everywhere else,
so ``LACUNA_DATABASE_URL`` names the store for the service and the CLI alike.

>>> s = ServerSettings.load(core=Settings.load(database_url="sqlite:///:memory:"), port=9000)
>>> (s.port, s.core.database_url)
(9000, 'sqlite:///:memory:')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from lacuna_orchestration.settings import Settings, config_path, first_error, from_env, read_yaml

__all__ = ["SERVER_CONFIG_ENV", "SERVER_ENV_PREFIX", "TENANT_PATTERN", "ServerSettings"]

SERVER_ENV_PREFIX = "LACUNA_SERVER_"
SERVER_CONFIG_ENV = "LACUNA_SERVER_CONFIG"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
"""Tenant names travel in a libpq ``options`` string and in file names: keep them plain."""


class ServerSettings(BaseModel):
    """Everything ``create_app`` needs. ``core`` is the one governance ``Settings`` object
    every tenant's ``Governor`` is built from (with its own ``tenant``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    core: Settings = Field(default_factory=Settings.load)
    host: str = Field(default="127.0.0.1", description="Interface uvicorn binds.")
    port: int = Field(default=8765, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="uvicorn worker processes (serve).")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024,
        description="Largest request body accepted, after gzip decompression (413 above).",
    )
    max_batch_events: int = Field(
        default=10_000, ge=1, description="Most events one NDJSON batch request may carry."
    )
    bootstrap_admin_key: str | None = Field(
        default=None,
        description="An admin API key ensured at start (for the first `keys create`).",
    )
    bootstrap_tenant: str = Field(default="default", description="Tenant of the bootstrap key.")
    key_cache_s: float = Field(
        default=5.0, ge=0.0,
        description="How long a verified key is trusted without a database read; a revoked "
        "key stops working on every replica within this time.",
    )
    row_level_security: bool = Field(
        default=True,
        description="Connect each tenant's governor with lacuna.tenant set, so PostgreSQL "
        "row-level security (migration 0002) confines it to its tenant's rows.",
    )
    migrate_on_start: bool = Field(
        default=False, description="Run `alembic upgrade head` before serving (serve --migrate)."
    )
    alert_webhook_url: str | None = Field(
        default=None, description="Slack-compatible webhook for denials and tampering alerts."
    )
    alert_on_denials: bool = True
    alert_timeout_s: float = Field(default=3.0, gt=0)
    verify_interval_s: float | None = Field(
        default=None, gt=0,
        description="Verify every loaded tenant's audit chain this often and alert on "
        "tampering; None = only on request.",
    )
    archive_dir: str = Field(
        default=".lacuna/archive", description="Where audit retention archives are written."
    )
    shutdown_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait for in-flight requests on shutdown."
    )

    @field_validator("bootstrap_tenant")
    @classmethod
    def _tenant_name(cls, value: str) -> str:
        if not TENANT_PATTERN.match(value):
            raise ValueError(
                "a tenant is 1-64 letters, digits, '_' or '-', starting with a letter or digit"
            )
        return value

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        *,
        core: Settings | None = None,
        **overrides: Any,
    ) -> ServerSettings:
        values: dict[str, Any] = {}
        path = Path(config_file) if config_file else config_path(
            SERVER_CONFIG_ENV, "lacuna-server.yaml"
        )
        if path is not None:
            values.update(read_yaml(path, "server config"))
            values.pop("core", None)  # the core settings have their own file (lacuna.yaml)
        names = set(cls.model_fields) - {"core"}
        values.update(from_env(os.environ, SERVER_ENV_PREFIX, names, SERVER_CONFIG_ENV))
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["core"] = core if core is not None else Settings.load()
        try:
            return cls(**values)
        except PydanticValidationError as err:
            raise first_error(err, "server setting") from None

    def replace(self, **changes: Any) -> ServerSettings:
        return self.model_copy(update=changes)

    @property
    def is_postgres(self) -> bool:
        return self.core.database_url.startswith(("postgres://", "postgresql"))


