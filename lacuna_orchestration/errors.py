"""The exceptions Lacuna raises. Catch ``LacunaError`` to catch them all.

::

    LacunaError
     ├── ConfigError            settings missing or invalid
     ├── ValidationError        a value that is not what the model allows (tier, tag, kind ...)
     │    └── IngestError       an OpenLineage event that cannot be accepted
     ├── ClassificationError    a classifier layer could not run (model missing, bad rules file)
     │    └── LLMUnavailable    the OpenAI-compatible endpoint did not answer usefully
     ├── PolicyError            policies could not be loaded or evaluated (the gate fails closed)
     ├── StoreError             the database could not be reached or written
     ├── AuditIntegrityError    the audit chain does not verify
     └── NotFound               a dataset, exception or record that does not exist

Foreign exceptions (SQLAlchemy, regorus, httpx, pydantic) are converted at the boundary with
``raise ... from`` so callers never need to import those libraries to handle failures.
"""

from __future__ import annotations

__all__ = [
    "AuditIntegrityError",
    "ClassificationError",
    "ConfigError",
    "IngestError",
    "LLMUnavailable",
    "LacunaError",
    "NotFound",
    "PolicyError",
    "StoreError",
    "ValidationError",
]


class LacunaError(Exception):
    """Base of every error Lacuna raises on purpose; ``str(err)`` is one line for a user."""


class ConfigError(LacunaError):
    pass


class ValidationError(LacunaError, ValueError):
    pass


class IngestError(ValidationError):
    pass


class ClassificationError(LacunaError):
    pass


class LLMUnavailable(ClassificationError):
    pass


class PolicyError(LacunaError):
    pass


class StoreError(LacunaError):
    pass


class AuditIntegrityError(LacunaError):
    """Raised (or reported) when verification finds a broken link; names the first bad record."""

    def __init__(self, message: str, *, seq: int | None = None, record_id: str | None = None):
        super().__init__(message)
        self.seq = seq
        self.record_id = record_id


class NotFound(LacunaError, LookupError):
    pass
