"""One settings object for every entry point (CLI, server, integrations).

Resolution order, later wins: built-in defaults → the YAML file named by ``LACUNA_CONFIG`` (or
``./lacuna.yaml`` when present) → ``LACUNA_<FIELD>`` environment variables → keyword arguments.
The environment is read, never written.

>>> Settings.load(database_url="sqlite:///:memory:").database_url
'sqlite:///:memory:'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from lacuna_orchestration.errors import ConfigError

ENV_PREFIX = "LACUNA_"
CONFIG_ENV = "LACUNA_CONFIG"
DEFAULT_STATE_DIR = Path(".lacuna")


def _default_policy_dir() -> str:
    """``./policies`` when the working directory has one, else the repository's ``policies/``."""
    local = Path("policies")
    if local.is_dir():
        return str(local.resolve())
    return str(Path(__file__).resolve().parent.parent / "policies")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_STATE_DIR / 'lacuna.db'}",
        description="SQLAlchemy URL of the store (SQLite file by default, or postgresql://...).",
    )
    database_schema: str | None = Field(
        default=None, description="PostgreSQL schema to use (search_path); None = default."
    )
    tenant: str = Field(default="default", description="Tenant whose audit chain is written.")
    environment: str = Field(
        default="production", description="Passed to policies as context.environment."
    )
    namespace: str = Field(
        default="lacuna", description="OpenLineage namespace for datasets named without one."
    )
    policy_dir: str = Field(default_factory=_default_policy_dir)
    policy_backend: Literal["embedded", "opa"] = "embedded"
    opa_url: str = Field(default="http://127.0.0.1:8181", description="OPA server for 'opa'.")
    opa_timeout_s: float = 2.0
    rules_file: str | None = Field(
        default=None, description="Heuristic rules YAML replacing the bundled one."
    )
    heuristic_threshold: float = Field(default=0.9, ge=0.0, le=1.0)
    embedding_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    embeddings_enabled: bool = Field(
        default=False, description="Use the local sentence-transformer layer (needs [ml])."
    )
    embedding_model: str | None = Field(
        default=None, description="Model name/path; None = the bundled all-MiniLM-L6-v2."
    )
    embedding_backend: Literal["auto", "numpy", "sentence-transformers"] = Field(
        default="auto", description="How the model runs: 'numpy' (BERT models only, no torch: "
        "loads in ~0.5 s), 'sentence-transformers' (torch), 'auto' = numpy when it can."
    )
    embedding_cache_dir: str | None = Field(
        default=None, description="Where example embeddings are cached (.npy); None = "
        "~/.cache/lacuna/embeddings."
    )
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint.")
    llm_api_key: str = "not-needed"
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = 10.0
    llm_max_retries: int = 2
    user: str = Field(default_factory=lambda: os.environ.get("USER", "unknown"))
    file_roots: str = Field(
        default="",
        description="Directories (os.pathsep-separated) that CLI file arguments may also come "
        "from; the working directory always may. Anything else is refused (path traversal).",
    )
    checkpoint_dir: str = Field(
        default=str(DEFAULT_STATE_DIR / "checkpoints"),
        description="Where signed audit checkpoints are appended, one JSONL file per tenant; "
        "keep it off the database host.",
    )
    checkpoint_key_file: str | None = Field(
        default=None,
        description="Checkpoint signing key (Ed25519 PEM or HMAC secret) or, for verification "
        "only, an Ed25519 public key; None = no checkpoints.",
    )

    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {}
        path = Path(config_file) if config_file else config_path()
        if path is not None:
            values.update(read_yaml(path))
        values.update(from_env(os.environ, ENV_PREFIX, set(cls.model_fields), CONFIG_ENV))
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except PydanticValidationError as err:
            raise first_error(err, "setting") from None

    def replace(self, **changes: Any) -> Settings:
        return self.model_copy(update=changes)


def config_path(env_name: str = CONFIG_ENV, default_name: str = "lacuna.yaml") -> Path | None:
    """The settings file named by ``env_name``, else ``default_name`` in the working directory
    when it exists (shared with the server's own settings file)."""
    named = os.environ.get(env_name)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{env_name} names {named!r}, which is not a file")
        return path
    local = Path(default_name)
    return local if local.is_file() else None


def read_yaml(path: Path, what: str = "config file") -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of settings")
    return data


def from_env(
    environ: Mapping[str, str], prefix: str, names: set[str], skip: str
) -> dict[str, Any]:
    """``<PREFIX><FIELD>`` variables for the given field names (``skip`` is the config-file
    variable, which is not a field)."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if key.startswith(prefix) and key != skip:
            field = key[len(prefix) :].lower()
            if field in names:
                out[field] = value
    return out


def first_error(err: PydanticValidationError, label: str) -> ConfigError:
    """One line naming the first invalid field."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or label
    return ConfigError(f"invalid {label} {where}: {first['msg']}")
