"""Request and response bodies of the API (pydantic models: validated, documented in /docs).

Lineage events are *not* modelled here: ``POST /api/v1/lineage`` takes OpenLineage's own JSON
and the core validates it against the spec (``lineage.openlineage.parse_event``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lacuna_orchestration.audit.chain import canonical_json
from lacuna_orchestration.errors import ValidationError
from lacuna_orchestration.model import DatasetRef, Operation, OperationKind

__all__ = [
    "ApproveRequest",
    "ArchiveRequest",
    "CheckRequest",
    "CheckResponse",
    "DatasetRefIn",
    "DenyRequest",
    "ErrorBody",
    "ExceptionCreate",
    "FeedbackRequest",
    "IngestResponse",
    "KeyCreate",
    "OverrideRequest",
]


def _lower(value: Any) -> Any:
    """Operation kinds are case-insensitive, as in ``OperationKind.parse``."""
    return value.strip().lower() if isinstance(value, str) else value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DatasetRefIn(_In):
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)


DatasetInput = str | DatasetRefIn
"""A dataset as ``"namespace::name"``, a bare name known to the catalog, or an object."""


class CheckRequest(_In):
    """A gate question. ``kind`` (alias ``action``) is read, join, aggregate, filter,
    transform, anonymize or export. The shape of ``Operation.to_dict()`` is accepted as is."""

    kind: OperationKind
    sources: list[DatasetInput] = Field(
        default_factory=list, description="Inputs; empty for a root asset."
    )
    destination: DatasetInput | None = None
    user: str | None = None
    purpose: str = ""
    environment: str | None = None
    code: str = ""
    run_id: str = ""
    exception_id: str = ""
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _action_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data and "action" in data:
            data = dict(data)
            data["kind"] = data.pop("action")
        return data

    _kind = field_validator("kind", mode="before")(_lower)

    @field_validator("context")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        """The context is audited: refuse here what the chain could not store (NaN, ...),
        rather than after the decision was made."""
        try:
            canonical_json(value)
        except ValidationError as err:
            raise ValueError(str(err)) from None
        return value

    def to_operation(self, resolve: Any, *, user: str, environment: str) -> Operation:
        def ref(item: DatasetInput) -> DatasetRef:
            if isinstance(item, DatasetRefIn):
                return DatasetRef(item.namespace, item.name)
            return resolve(item)  # type: ignore[no-any-return]

        return Operation(
            kind=self.kind,
            sources=tuple(ref(s) for s in self.sources),
            destination=ref(self.destination) if self.destination is not None else None,
            user=self.user or user,
            purpose=self.purpose,
            environment=self.environment or environment,
            code=self.code,
            run_id=self.run_id,
            exception_id=self.exception_id,
            context=self.context,
        )


class CheckResponse(BaseModel):
    allow: bool
    message: str
    decision: dict[str, Any]


class IngestResponse(BaseModel):
    status: Literal["accepted"] = "accepted"
    event: dict[str, Any]
    allowed: bool
    denials: int
    decisions: list[dict[str, Any]]
    reclassified: list[str]
    audit: dict[str, Any]


class OverrideRequest(_In):
    dataset: str = Field(min_length=1, description="Dataset key (namespace::name) or name.")
    tier: Literal["PUBLIC", "INTERNAL", "PROPRIETARY", "public", "internal", "proprietary"]
    tags: list[str] = Field(default_factory=list)
    reason: str = Field(min_length=3, description="Why; recorded in the audit chain.")


class FeedbackRequest(_In):
    verdict: Literal["false_positive", "correct"] = Field(
        description="false_positive: the gate denied what it should have allowed."
    )
    note: str = ""


class ExceptionCreate(_In):
    """An exception request, as the seed's 'Request exception' alternative asks for it."""

    operation_kind: OperationKind = Field(description="export, join, ...")
    sources: list[str] = Field(min_length=1, description="Dataset keys or fnmatch patterns.")
    destination: str = ""
    purpose: str = Field(min_length=1)
    justification: str = Field(min_length=10, description="The business justification.")
    requested_by: str | None = Field(default=None, description="Default: the API key's name.")
    approver: str = Field(default="", description="The steward asked to approve (optional).")
    duration_days: float | None = Field(default=None, gt=0, le=90,
                                        description="How long the exception should last.")
    conditions: list[str] = Field(default_factory=list)

    _kind = field_validator("operation_kind", mode="before")(_lower)


class ApproveRequest(_In):
    duration_days: float | None = Field(
        default=None, gt=0, le=90, description="Default: what the request asked for."
    )
    conditions: list[str] | None = None


class DenyRequest(_In):
    reason: str = Field(min_length=3)


class KeyCreate(_In):
    role: Literal["producer", "steward", "auditor", "admin"]
    name: str = Field(min_length=1, max_length=200)


class ArchiveRequest(_In):
    older_than_days: float = Field(ge=0, description="Archive records older than this.")


class ErrorBody(BaseModel):
    error: dict[str, Any]
