"""Each shipped policy, allowed and denied, through PolicyDecider on the embedded engine —
and the gate failing closed when the engine cannot answer."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from policy_helpers import classification, scenario

from lacuna_orchestration.errors import PolicyError
from lacuna_orchestration.model import (
    Classification,
    DatasetRef,
    Decision,
    Operation,
    OperationKind,
    Tier,
)
from lacuna_orchestration.policy.decide import (
    FAIL_CLOSED_POLICY,
    PolicyDecider,
    allow_under_exception,
    build_input,
    location_of,
)
from lacuna_orchestration.policy.engine import PolicyEngine, PolicyResult
from lacuna_orchestration.policy.exceptions import ExceptionStatus, PolicyException


def decide(decider: PolicyDecider, doc: dict[str, Any], c: Classification) -> Decision:
    destination = (doc.get("destination") or {}).get("location", "")
    return decider.decide(
        doc,
        action=doc["action"],
        source_label="customers.csv",
        destination_label=destination,
        classification=c,
    )


# -- the seed scenario -------------------------------------------------------------------------


def test_seed_scenario_message_names_reason_alternatives_policy_and_steward(
    decider: PolicyDecider,
) -> None:
    doc, c = scenario()
    decision = decide(decider, doc, c)
    assert decision.allow is False
    assert decision.error == ""
    assert decision.policy_id == "export-governance"
    assert decision.policy_version == "2.0.0"
    assert decision.steward == "data-governance@example.com"
    assert decision.bundle_revision == decider.engine.revision
    message = decision.message
    assert message.startswith("❌ Governance Policy Violation")
    assert "Reason: Cannot export PII data to unmanaged location file:///tmp/export.csv" in message
    assert "Classification: PROPRIETARY (inherited from /data/customers.csv)" in message
    assert "Tags: FINANCIAL, GDPR, PII" in message
    assert "1. Export an anonymized version" in message
    assert "2. Save to a governed location instead, e.g. file:///governed/workspace/" in message
    assert "3. Request a time-boxed exception from data-governance@example.com" in message
    assert "Policy: export-governance v2.0.0 (PII and proprietary export restrictions)" in message
    assert "Steward: data-governance@example.com" in message


def test_denials_of_several_policies_merge_reasons_and_deduplicate_alternatives(
    decider: PolicyDecider,
) -> None:
    doc, c = scenario()  # export-governance and the scratch-space policy both deny
    decision = decide(decider, doc, c)
    assert decision.reasons == (
        "Cannot export PII data to unmanaged location file:///tmp/export.csv",
        (
            "file:///tmp/export.csv is scratch space, open to exports only in development "
            "(this run: production)"
        ),
    )
    governed = "Save to a governed location instead, e.g. file:///governed/workspace/"
    assert decision.alternatives.count(governed) == 1  # both policies suggest it
    assert "Run this export in the development environment" in decision.alternatives


# -- export governance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "encrypted", "tier", "tags", "reason"),
    [
        (
            DatasetRef("file", "~/Downloads/export.csv"),
            False,
            Tier.PROPRIETARY,
            (),
            "Cannot export PROPRIETARY data to unmanaged location file://~/Downloads/export.csv",
        ),
        (
            DatasetRef("s3://partner-drop", "in/x.csv"),
            False,
            Tier.PROPRIETARY,
            ("PII",),
            (
                "PII data may leave the organisation only encrypted; "
                "s3://partner-drop/in/x.csv is not encrypted"
            ),
        ),
        (
            DatasetRef("https://api.partner.example", "upload"),
            True,
            Tier.INTERNAL,
            (),
            (
                "INTERNAL data may not be exported outside the organisation "
                "(https://api.partner.example/upload)"
            ),
        ),
    ],
)
def test_export_governance_denies(
    decider: PolicyDecider,
    destination: DatasetRef,
    encrypted: bool,
    tier: Tier,
    tags: tuple[str, ...],
    reason: str,
) -> None:
    doc, c = scenario(tier=tier, tags=tags, destination=destination, encrypted=encrypted)
    decision = decide(decider, doc, c)
    assert not decision.allow
    assert decision.policy_id == "export-governance"
    assert decision.reasons[0] == reason


@pytest.mark.parametrize(
    ("destination", "encrypted", "managed"),
    [
        (DatasetRef("file", "/governed/workspace/export.csv"), False, None),
        (DatasetRef("s3://partner-drop", "in/x.csv"), True, None),
        (DatasetRef("file", "/home/bob/Desktop/x.csv"), False, True),
    ],
)
def test_export_governance_allows(
    decider: PolicyDecider, destination: DatasetRef, encrypted: bool, managed: bool | None
) -> None:
    doc, c = scenario(
        tags=("GDPR", "PII"),
        destination=destination,
        encrypted=encrypted,
        managed=managed,
        purpose="analytics",
    )
    decision = decide(decider, doc, c)
    assert decision.allow, decision.message
    assert decision.policy_id.split(", ") == [
        "export-governance@2.0.0",
        "dev-scratch-space@1.0.0",
        "purpose-limitation@1.0.0",
        "marketing-data-use@1.0.0",
    ]
    assert decision.message.startswith("✅ Allowed")


def test_unclassified_sources_are_not_treated_as_public(decider: PolicyDecider) -> None:
    op = Operation(
        OperationKind.EXPORT,
        (DatasetRef("file", "/data/new_drop.csv"),),
        DatasetRef("file", "/home/a/Desktop/x.csv"),
    )
    doc = build_input(op, {})  # nothing is known about the source yet
    assert doc["source"]["unclassified"] == ["file::/data/new_drop.csv"]
    decision = decide(decider, doc, Classification.unknown())
    assert not decision.allow
    assert decision.reasons[0].startswith("Cannot export unclassified data")


# -- development scratch space -------------------------------------------------------------------


def test_development_environment_may_export_to_tmp(decider: PolicyDecider) -> None:
    doc, c = scenario(environment="development", purpose="analytics")
    decision = decide(decider, doc, c)
    assert decision.allow, decision.message
    assert decision.reasons == (
        "Export to scratch space file:///tmp/export.csv allowed in development",
    )


def test_production_may_not_export_even_public_data_to_tmp(decider: PolicyDecider) -> None:
    doc, c = scenario(tier=Tier.PUBLIC, tags=())
    decision = decide(decider, doc, c)
    assert not decision.allow
    assert decision.policy_id == "dev-scratch-space"
    assert decision.reasons == (
        (
            "file:///tmp/export.csv is scratch space, open to exports only in development "
            "(this run: production)"
        ),
    )


# -- purpose limitation --------------------------------------------------------------------------


def test_purpose_outside_the_allowed_list_is_denied(decider: PolicyDecider) -> None:
    doc, c = scenario("transform", tags=("PII",), destination=None, purpose="Profiling")
    decision = decide(decider, doc, c)
    assert not decision.allow
    assert decision.policy_id == "purpose-limitation"
    assert decision.steward == "privacy-office@example.com"
    assert decision.reasons == (
        (
            "Purpose 'profiling' is not an allowed purpose for PII data (allowed: analytics, "
            "billing, care, fraud_prevention, support)"
        ),
    )


def test_allowed_purpose_passes_and_missing_purpose_is_noted(decider: PolicyDecider) -> None:
    doc, c = scenario("transform", tags=("PHI",), destination=None, purpose="care")
    assert decide(decider, doc, c).allow
    doc, c = scenario("transform", tags=("PHI",), destination=None, purpose="")
    decision = decide(decider, doc, c)
    assert decision.allow
    assert decision.reasons == (
        "No purpose declared for processing PHI data; declare one so audits can show why",
    )


# -- marketing domain ----------------------------------------------------------------------------


def test_marketing_gets_no_raw_personal_data_and_its_own_steward_answers(
    decider: PolicyDecider,
) -> None:
    doc, c = scenario(
        "transform",
        tags=("PII",),
        destination=DatasetRef("postgres://warehouse.internal:5432", "mkt.audience"),
        purpose="analytics",
        domain="marketing",
    )
    decision = decide(decider, doc, c)
    assert not decision.allow
    assert decision.policy_id == "marketing-data-use"
    assert decision.steward == "marketing-governance@example.com"
    assert "Steward: marketing-governance@example.com" in decision.message
    assert decision.alternatives[0].startswith("Aggregate the data first")


def test_marketing_may_aggregate_personal_data_but_never_receive_phi(
    decider: PolicyDecider,
) -> None:
    target = DatasetRef("postgres://warehouse.internal:5432", "mkt.segments")
    doc, c = scenario(
        "aggregate", tags=("PII",), destination=target, purpose="analytics", domain="marketing"
    )
    assert decide(decider, doc, c).allow
    doc, c = scenario(
        "aggregate", tags=("PHI",), destination=target, purpose="billing", domain="marketing"
    )
    decision = decide(decider, doc, c)
    assert not decision.allow
    assert decision.reasons == ("The marketing domain may not receive PHI data",)


# -- failing closed ------------------------------------------------------------------------------


class _Exploding(PolicyEngine):
    kind = "exploding"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    @classmethod
    def from_settings(cls, settings: Any) -> _Exploding:
        raise NotImplementedError

    def evaluate(self, input_doc: Mapping[str, Any]) -> list[PolicyResult]:
        raise self.error

    def reload(self) -> None:
        return None

    @property
    def revision(self) -> str:
        return "rev-1"


@pytest.mark.parametrize(
    "error",
    [PolicyError("OPA at http://x refused the connection"), ZeroDivisionError("boom")],
    ids=["policy-error", "unexpected"],
)
def test_engine_failure_denies_with_the_error(error: Exception) -> None:
    doc, c = scenario(tier=Tier.PUBLIC, tags=())
    decision = decide(PolicyDecider(_Exploding(error)), doc, c)
    assert decision.allow is False
    assert decision.policy_id == FAIL_CLOSED_POLICY
    assert decision.error == str(error)
    assert decision.reasons == (f"policy evaluation failed: {error}",)
    assert decision.bundle_revision == "rev-1"
    assert "the gate fails closed" in decision.message


def test_an_empty_answer_is_not_an_allow() -> None:
    class Silent(_Exploding):
        def evaluate(self, input_doc: Mapping[str, Any]) -> list[PolicyResult]:
            return []

    decision = PolicyDecider(Silent(RuntimeError())).decide({}, action="export")
    assert not decision.allow and decision.policy_id == FAIL_CLOSED_POLICY


def test_failing_decider_denies_everything_with_the_reason() -> None:
    decider = PolicyDecider.failing("policy folder /nope does not exist or is not a folder")
    decision = decider.decide({"action": "read"}, action="read")
    assert not decision.allow
    assert decision.error == "policy folder /nope does not exist or is not a folder"


# -- exceptions waive denials, never failures ----------------------------------------------------


def _approved() -> PolicyException:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return PolicyException(
        id="EXC-1",
        operation_kind=OperationKind.EXPORT,
        sources=("file::/data/customers.csv",),
        destination="file::/tmp/*",
        purpose="audit",
        justification="regulator",
        requested_by="alice",
        requested_at=moment,
        status=ExceptionStatus.APPROVED,
        approver="steward@example.com",
        valid_from=moment,
        valid_until=datetime(2026, 1, 8, tzinfo=UTC),
    )


def test_allow_under_exception_keeps_reasons_and_cites_the_exception(
    decider: PolicyDecider,
) -> None:
    doc, c = scenario()
    waived = allow_under_exception(decide(decider, doc, c), _approved())
    assert waived.allow and waived.exception_id == "EXC-1"
    assert waived.reasons[0].startswith("Cannot export PII data")
    assert "approved by steward@example.com until 2026-01-08" in waived.reasons[-1]
    assert "under exception EXC-1" in waived.message
    failed = PolicyDecider.failing("engine down").decide({}, action="export")
    assert allow_under_exception(failed, _approved()) is failed


# -- the input document --------------------------------------------------------------------------


def test_build_input_follows_the_documented_schema() -> None:
    op = Operation(
        OperationKind.EXPORT,
        (DatasetRef("warehouse", "customers"), DatasetRef("warehouse", "sales")),
        DatasetRef("s3://bucket", "exports/x.csv"),
        user="alice",
        purpose="billing",
        environment="staging",
        code="nightly_export",
        context={"domain": "finance", "ticket": "GOV-7", "nested": {"dropped": True}},
    )
    doc = build_input(
        op,
        {
            "warehouse::customers": classification(Tier.PROPRIETARY, "PII"),
            "warehouse::sales": classification(Tier.INTERNAL, "FINANCIAL"),
        },
        destination_classification=classification(Tier.INTERNAL),
        encrypted=True,
        upstream=[DatasetRef("crm", "raw_customers"), "erp::raw_sales"],
    )
    assert doc == {
        "action": "export",
        "source": {
            "datasets": ["warehouse::customers", "warehouse::sales"],
            "tier": "PROPRIETARY",
            "tags": ["FINANCIAL", "PII"],
            "unclassified": [],
        },
        "destination": {
            "key": "s3://bucket::exports/x.csv",
            "namespace": "s3://bucket",
            "name": "exports/x.csv",
            "location": "s3://bucket/exports/x.csv",
            "tier": "INTERNAL",
            "tags": [],
            "encrypted": True,
            "managed": None,
        },
        "user": "alice",
        "context": {
            "ticket": "GOV-7",
            "environment": "staging",
            "purpose": "billing",
            "domain": "finance",
            "job": "nightly_export",
        },
        "lineage": {"upstream": ["crm::raw_customers", "erp::raw_sales"]},
    }


def test_location_joins_namespace_and_name() -> None:
    assert location_of(DatasetRef("file", "/tmp/x.csv")) == "file:///tmp/x.csv"
    assert location_of(DatasetRef("s3://b/", "/k.csv")) == "s3://b/k.csv"
    assert location_of(DatasetRef("lacuna", "customers")) == "lacuna://customers"
