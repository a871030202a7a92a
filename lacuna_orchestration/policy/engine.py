"""The policy-engine interface: one query in, one answer per policy out.

A backend evaluates the bundle's single entry point (``data.lacuna.decisions``, see
``policies/lacuna.rego``) on an input document (its schema is in ``policy.decide``) and returns a
``PolicyResult`` per enabled policy, in the bundle's order. Backends are pluggable the way
OpenLineage transports are: a class with a ``kind``, registered with ``@register_engine(kind)``,
built from settings by ``create_engine(settings)`` — by kind (``"embedded"``, ``"opa"``) or by a
dotted path to a third-party class.

>>> from lacuna_orchestration.settings import Settings
>>> engine = create_engine(Settings.load(policy_backend="embedded"))  # doctest: +SKIP
>>> [r.policy_id for r in engine.evaluate({"action": "read"})]  # doctest: +SKIP
['export-governance', 'dev-scratch-space', 'purpose-limitation', 'marketing-data-use']
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from lacuna_orchestration.errors import ConfigError, PolicyError

if TYPE_CHECKING:
    from lacuna_orchestration.settings import Settings

__all__ = [
    "ENTRYPOINT",
    "PolicyEngine",
    "PolicyResult",
    "UnavailableEngine",
    "create_engine",
    "engine_kinds",
    "register_engine",
    "results_from_document",
]

ENTRYPOINT = "data.lacuna.decisions"
"""The one rule every backend evaluates; ``lacuna/decisions`` in OPA's Data API."""


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One policy's answer: who wrote the rule (id, version, title, steward) and what it said.

    ``reasons`` of an allowing result are notes worth keeping (an undeclared purpose, a scratch
    export in development); of a denying result, why it denied.
    """

    policy_id: str
    version: str
    title: str
    steward: str
    allow: bool
    reasons: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()


class PolicyEngine(ABC):
    """A policy backend. Implementations must be safe to call from several threads."""

    kind: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> PolicyEngine:
        """Build the backend from the one settings object."""

    @abstractmethod
    def evaluate(self, input_doc: Mapping[str, Any]) -> list[PolicyResult]:
        """Evaluate every enabled policy on ``input_doc``; raise ``PolicyError`` when no
        trustworthy answer can be had (the caller fails closed)."""

    @abstractmethod
    def reload(self) -> None:
        """Pick up changed policies now (a no-op where the server owns them)."""

    @property
    @abstractmethod
    def revision(self) -> str:
        """Identifies the policy bundle that answers; recorded with every decision."""

    def close(self) -> None:
        """Release connections or native resources; the engine is unusable afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class UnavailableEngine(PolicyEngine):
    """Stands in for a backend that could not be built: every evaluation raises the reason,
    so the decider denies with it (fail closed) instead of the process refusing to start."""

    kind: ClassVar[str] = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @classmethod
    def from_settings(cls, settings: Settings) -> UnavailableEngine:
        return cls("no policy engine configured")

    def evaluate(self, input_doc: Mapping[str, Any]) -> list[PolicyResult]:
        raise PolicyError(self.reason)

    def reload(self) -> None:
        return None

    @property
    def revision(self) -> str:
        return ""


_REGISTRY: dict[str, type[PolicyEngine]] = {}
_BUILTIN_MODULES = {
    "embedded": "lacuna_orchestration.policy.rego",
    "opa": "lacuna_orchestration.policy.opa",
}

E = TypeVar("E", bound=type[PolicyEngine])


def register_engine(kind: str) -> Callable[[E], E]:
    """Class decorator making a backend available to ``create_engine`` under ``kind``."""

    def decorate(cls: E) -> E:
        existing = _REGISTRY.get(kind)
        if existing is not None and existing is not cls:
            raise ConfigError(
                f"policy engine kind {kind!r} is already registered by {existing.__qualname__}"
            )
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return decorate


def engine_kinds() -> list[str]:
    """Registered kinds, built-in ones included even before their module is imported."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def _resolve(kind: str) -> type[PolicyEngine]:
    if kind in _REGISTRY:
        return _REGISTRY[kind]
    if kind in _BUILTIN_MODULES:
        # Built-ins register themselves on import; importing lazily keeps httpx/regorus optional.
        importlib.import_module(_BUILTIN_MODULES[kind])
        return _REGISTRY[kind]
    if "." in kind:
        module_name, _, attr = kind.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"cannot import policy engine {kind!r}: {err}") from None
        if not (isinstance(cls, type) and issubclass(cls, PolicyEngine)):
            raise ConfigError(f"{kind!r} is not a PolicyEngine subclass")
        return cls
    raise ConfigError(
        f"unknown policy backend {kind!r}; use one of {', '.join(engine_kinds())} "
        "or a dotted path to a PolicyEngine class"
    )


def create_engine(settings: Settings, *, backend: str | None = None) -> PolicyEngine:
    """The engine named by ``backend`` or ``settings.policy_backend``."""
    return _resolve(backend or settings.policy_backend).from_settings(settings)


def _strings(value: Any, what: str, policy: str) -> tuple[str, ...]:
    if type(value) is not list:
        raise PolicyError(f"policy {policy} answered {what}={value!r:.120}, not a list of strings")
    for item in value:
        if type(item) is not str:
            raise PolicyError(f"policy {policy} answered {what} with {item!r:.120}, not a string")
    return tuple(value)


# Answers repeat (the same policies allow the same kinds of operation all day) and results
# are immutable, so identical ones share one object: building a frozen dataclass costs more
# than looking it up. Bounded: cleared when full.
_INTERNED: dict[tuple[Any, ...], PolicyResult] = {}
_INTERN_LIMIT = 4096


def results_from_document(document: Any) -> list[PolicyResult]:
    """Validate the entry point's value (``[{"package", "metadata", "decision"}, ...]``) and
    turn it into results; anything else is a ``PolicyError`` so the gate fails closed.

    This runs on every decision, so it checks with ``type() is`` on the JSON types the
    engines return rather than generic isinstance chains.
    """
    if type(document) is not list:
        raise PolicyError(f"{ENTRYPOINT} must be a list of policy answers, got {document!r:.200}")
    results: list[PolicyResult] = []
    append = results.append
    interned = _INTERNED
    for entry in document:
        try:
            meta = entry["metadata"]
            decision = entry["decision"]
            policy_id = meta["id"]
            allow = decision["allow"]
            key = (
                policy_id,
                meta["version"],
                meta["title"],
                meta["steward"],
                allow,
                _strings(decision["reasons"], "reasons", policy_id),
                _strings(decision["alternatives"], "alternatives", policy_id),
            )
        except (KeyError, TypeError, IndexError) as err:
            raise PolicyError(f"malformed policy answer {entry!r:.200}: missing {err}") from None
        # Validate before the lookup: True == 1 and a dict is unhashable.
        if allow is not True and allow is not False:
            raise PolicyError(f"policy {policy_id!r} answered allow={allow!r}, not a boolean")
        for value in key[:4]:
            if type(value) is not str:
                raise PolicyError(f"malformed policy metadata {meta!r:.200}: {value!r} is not text")
        result = interned.get(key)
        if result is None:
            result = PolicyResult(*key)
            if len(interned) >= _INTERN_LIMIT:
                interned.clear()
            interned[key] = result
        append(result)
    return results
