"""Policies: Rego rules decide whether an operation may happen, and say why.

* ``engine``     the backend interface (``PolicyEngine``, ``PolicyResult``) and its registry
* ``rego``       ``EmbeddedRegoEngine``: the ``policies/`` folder compiled in process (regorus)
* ``opa``        ``OpaRestEngine``: the same policies served by an OPA server (Data API)
* ``decide``     ``PolicyDecider``: answers → one fail-closed ``Decision``; ``build_input``
* ``exceptions`` time-boxed exceptions a steward approves (``ExceptionRegistry``)
* ``messages``   the text a person sees for a decision

>>> from lacuna_orchestration.policy import PolicyDecider, create_engine  # doctest: +SKIP
>>> decider = PolicyDecider(create_engine(settings))  # doctest: +SKIP
"""

from lacuna_orchestration.policy.decide import (
    FAIL_CLOSED_POLICY,
    PolicyDecider,
    allow_under_exception,
    build_input,
    location_of,
)
from lacuna_orchestration.policy.engine import (
    ENTRYPOINT,
    PolicyEngine,
    PolicyResult,
    create_engine,
    engine_kinds,
    register_engine,
)
from lacuna_orchestration.policy.exceptions import (
    ExceptionRegistry,
    ExceptionRequest,
    ExceptionStatus,
    PolicyException,
)
from lacuna_orchestration.policy.messages import one_line, render_decision
from lacuna_orchestration.policy.opa import OpaRestEngine
from lacuna_orchestration.policy.rego import EmbeddedRegoEngine, load_bundle, run_rego_tests

__all__ = [
    "ENTRYPOINT",
    "FAIL_CLOSED_POLICY",
    "EmbeddedRegoEngine",
    "ExceptionRegistry",
    "ExceptionRequest",
    "ExceptionStatus",
    "OpaRestEngine",
    "PolicyDecider",
    "PolicyEngine",
    "PolicyException",
    "PolicyResult",
    "allow_under_exception",
    "build_input",
    "create_engine",
    "engine_kinds",
    "load_bundle",
    "location_of",
    "one_line",
    "register_engine",
    "render_decision",
    "run_rego_tests",
]
