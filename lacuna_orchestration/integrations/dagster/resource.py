"""``LacunaResource``: the one line in ``Definitions(resources=...)`` that turns governance on.

In process (the default) the resource opens Lacuna's governor over the usual settings
(``LACUNA_*`` environment, ``lacuna.yaml``, or the fields below) once per run and closes it when
the run ends. With ``url`` set it talks to a running ``lacuna serve`` instead; when that server
cannot be reached the gate denies (fails closed) and says why.

>>> import dagster as dg
>>> lacuna = LacunaResource(database_url="sqlite:///.lacuna/lacuna.db",
...                         environment="production")
>>> defs = dg.Definitions(assets=[...], resources={"lacuna": lacuna})   # doctest: +SKIP

Inside an asset::

    @dg.asset(deps=[regional_summary], metadata={"lacuna/destination": "file:///tmp/r.csv"})
    def export(context: dg.AssetExecutionContext, lacuna: LacunaResource) -> None:
        with lacuna.governed(context):       # gate (raises dg.Failure on deny), START, COMPLETE
            write_csv("/tmp/r.csv")

A misconfigured field is reported as a Dagster config error naming that field, whether the
resource is built in Python or configured at launch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr, model_validator

from lacuna_orchestration.integrations.dagster import backend as backends
from lacuna_orchestration.integrations.dagster.lineage import (
    DagsterTranslator,
    DagsterTranslatorSettings,
)

if TYPE_CHECKING:
    from lacuna_orchestration.integrations.dagster.gate import GovernedStep
    from lacuna_orchestration.model import Classification, Decision

__all__ = ["LacunaResource"]

log = logging.getLogger(__name__)

_IN_PROCESS_ONLY = ("config_file", "database_url", "policy_dir", "tenant")


def _config_error(field: str, problem: str, value: Any) -> dg.DagsterInvalidConfigError:
    return dg.DagsterInvalidConfigError(
        f"Invalid config for LacunaResource field '{field}': {problem} (got {value!r})",
        [],
        {field: value},
    )


class LacunaResource(dg.ConfigurableResource):
    """Lacuna's governor for Dagster: gate, lineage emission and classification lookups."""

    url: str | None = Field(
        default=None,
        description="URL of a running Lacuna server (lacuna serve). Unset: Lacuna runs in "
        "process over the local store.",
    )
    api_key: str | None = Field(default=None, description="API key for the Lacuna server.")
    timeout_s: float = Field(
        default=5.0, description="Seconds to wait for the Lacuna server before failing closed."
    )
    config_file: str | None = Field(
        default=None, description="Lacuna settings file (YAML); in-process mode only."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the Lacuna store (sqlite:///... or postgresql://...); "
        "in-process mode only.",
    )
    policy_dir: str | None = Field(
        default=None, description="Directory of Rego policies; in-process mode only."
    )
    tenant: str | None = Field(default=None, description="Tenant whose audit chain is written.")
    environment: str | None = Field(
        default=None,
        description="Environment passed to policies (production, development ...). Unset: "
        "Lacuna's setting (production by default).",
    )
    user: str | None = Field(
        default=None, description="Who runs the pipeline, as policies and the audit see it."
    )
    purpose: str | None = Field(
        default=None, description="Default purpose of processing (purpose-limitation policy)."
    )
    namespace: str = Field(
        default="dagster", description="OpenLineage namespace of datasets named by asset keys."
    )
    emit_lineage: bool = Field(
        default=True, description="Send START/COMPLETE/FAIL OpenLineage events to Lacuna."
    )
    attached: str | None = Field(
        default=None,
        description="Handle of a governor attached in this process (LacunaResource."
        "from_governor); for tests and applications embedding Lacuna.",
    )

    _backend: backends.Backend | None = PrivateAttr(default=None)
    _steps: dict[tuple[str, str], GovernedStep] = PrivateAttr(default_factory=dict)
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)

    @model_validator(mode="after")
    def _validate(self) -> LacunaResource:
        if self.url is not None:
            if not self.url.startswith(("http://", "https://")):
                raise _config_error("url", "must start with http:// or https://", self.url)
            for name in _IN_PROCESS_ONLY:
                if getattr(self, name) is not None:
                    raise _config_error(
                        name, "applies to in-process mode only; unset it or unset 'url'",
                        getattr(self, name),
                    )
        if not self.timeout_s > 0:
            raise _config_error("timeout_s", "must be a positive number of seconds",
                                self.timeout_s)
        if not self.namespace.strip():
            raise _config_error("namespace", "must not be empty", self.namespace)
        if self.environment is not None and not self.environment.strip():
            raise _config_error("environment", "must not be empty when set", self.environment)
        if self.policy_dir is not None and not Path(self.policy_dir).is_dir():
            raise _config_error("policy_dir", "is not a directory", self.policy_dir)
        if self.config_file is not None and not Path(self.config_file).is_file():
            raise _config_error("config_file", "is not a file", self.config_file)
        if self.database_url is not None and "://" not in self.database_url:
            raise _config_error(
                "database_url", "must be a SQLAlchemy URL such as sqlite:///path/lacuna.db",
                self.database_url,
            )
        return self

    @classmethod
    def from_governor(cls, governor: Any, **fields: Any) -> LacunaResource:
        """A resource over an already open in-process ``Governor`` (it stays open afterwards)."""
        return cls(attached=backends.attach_governor(governor), **fields)

    # -- translator ----------------------------------------------------------------------
    def get_translator(self) -> DagsterTranslator:
        """Override in a subclass to name datasets or read metadata differently."""
        return DagsterTranslator(DagsterTranslatorSettings(namespace=self.namespace))

    # -- backend ---------------------------------------------------------------------------
    def backend(self) -> backends.Backend:
        """The Lacuna this run talks to, opened on first use. Raises ``LacunaError`` (one line,
        with the reason) when it cannot be opened; the gate turns that into a denial."""
        # Called several times per step: read pydantic's private-attribute dict directly
        # (``self._backend`` goes through ``BaseModel.__getattr__``, measured ~4 % of a
        # step's Lacuna time), and take the lock only to open.
        private = self._private()
        opened: backends.Backend | None = private["_backend"]
        if opened is not None:
            return opened
        with private["_lock"]:
            if private["_backend"] is None:
                private["_backend"] = self._open()
            return private["_backend"]  # type: ignore[no-any-return]

    def _private(self) -> dict[str, Any]:
        private = self.__pydantic_private__
        assert private is not None  # PrivateAttr fields: pydantic always sets the dict
        return private

    def _open(self) -> backends.Backend:
        if self.attached is not None:
            gov = backends.attached_governor(self.attached)
            return backends.in_process(gov, owned=False, environment=self.environment,
                                       user=self.user)
        if self.url is not None:
            return backends.remote(
                self.url, api_key=self.api_key, timeout_s=self.timeout_s,
                environment=self.environment or "production", user=self.user or "dagster",
            )
        from lacuna_orchestration.governor import Governor

        overrides = backends.settings_overrides({
            "database_url": self.database_url,
            "policy_dir": self.policy_dir,
            "tenant": self.tenant,
            "environment": self.environment,
            "user": self.user,
        })
        gov = Governor.open(self.config_file, **overrides)
        return backends.in_process(gov, owned=True)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Opening is lazy (first gate/emit): a store that is down then fails the gate closed
        # with Lacuna's reason instead of failing resource initialisation for every step.
        self._steps.clear()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._lock:
            opened, self._backend = self._backend, None
            self._steps.clear()
        if opened is not None:
            opened.close()

    def classifications_for(self, assets: Iterable[Any]) -> dict[str, Classification]:
        """What Lacuna currently holds for each asset's output, by user-string asset key — for
        ``annotate_assets`` when definitions load. Never raises: an unreachable Lacuna gives an
        empty mapping (logged), so definitions still load."""
        translator = self.get_translator()
        found: dict[str, Classification] = {}
        try:
            backend = self._open()
        except Exception as err:  # noqa: BLE001 - annotations are optional
            log.warning("Lacuna: asset tiers not annotated, Lacuna unavailable: %s", err)
            return found
        try:
            for item in assets:
                for spec in getattr(item, "specs_by_key", {}).values():
                    try:
                        c = backend.classification(translator.get_output_ref(spec))
                    except Exception as err:  # noqa: BLE001
                        log.warning("Lacuna: no tier for %s: %s", spec.key.to_user_string(), err)
                        continue
                    if c is not None and not c.is_unknown:
                        found[spec.key.to_user_string()] = c
        finally:
            backend.close()
        return found

    # -- per-step state shared by the gate, the IO manager and the checks ------------------
    def step(self, run_id: str, asset_key: str) -> GovernedStep | None:
        private = self._private()
        with private["_lock"]:
            return private["_steps"].get((run_id, asset_key))  # type: ignore[no-any-return]

    def remember(self, step: GovernedStep) -> None:
        private = self._private()
        with private["_lock"]:
            private["_steps"][(step.dagster_run_id, step.op.asset_key)] = step

    # -- the public calls --------------------------------------------------------------------
    def gate(self, context: dg.AssetExecutionContext, *, asset_key: dg.AssetKey | None = None,
             exception_id: str | None = None, purpose: str | None = None) -> Decision:
        """Decide whether this asset may materialize; raise ``dg.Failure`` (with Lacuna's
        message: what, why, alternatives, policy, steward) when it may not."""
        from lacuna_orchestration.integrations.dagster.gate import gate_asset

        step = gate_asset(self, context, asset_key=asset_key, exception_id=exception_id,
                          purpose=purpose)
        assert step.decision is not None  # gate_asset decides or raises
        return step.decision

    @contextmanager
    def governed(self, context: dg.AssetExecutionContext, *,
                 asset_key: dg.AssetKey | None = None, exception_id: str | None = None,
                 purpose: str | None = None) -> Iterator[GovernedStep]:
        """Gate, then START; COMPLETE when the block ends (FAIL if it raises)."""
        from lacuna_orchestration.integrations.dagster.gate import governed_step

        with governed_step(self, context, asset_key=asset_key, exception_id=exception_id,
                           purpose=purpose) as step:
            yield step
