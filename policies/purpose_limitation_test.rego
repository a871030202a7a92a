package lacuna.tests.purpose_limitation

import data.lacuna.policies.purpose_limitation as policy

processing(tags, purpose) := {
	"action": "transform",
	"source": {"datasets": ["warehouse::patients"], "tier": "PROPRIETARY", "tags": tags, "unclassified": []},
	"destination": null,
	"user": "carol",
	"context": {"environment": "production", "purpose": purpose, "domain": "", "job": "j"},
}

test_listed_purpose_is_allowed if {
	d := policy.decision with input as processing(["PII"], "analytics")
	d.allow == true
	d.reasons == []
}

test_purpose_compares_case_insensitively if {
	d := policy.decision with input as processing(["PII"], "  Billing ")
	d.allow == true
}

test_unlisted_purpose_is_denied if {
	d := policy.decision with input as processing(["GDPR", "PII"], "marketing")
	d.allow == false
	d.reasons == ["Purpose 'marketing' is not an allowed purpose for PII data (allowed: analytics, billing, care, fraud_prevention, support)"]
	contains(d.alternatives[count(d.alternatives) - 1], "privacy-office@example.com")
}

test_each_restricted_tag_is_checked if {
	d := policy.decision with input as processing(["PHI", "PII"], "analytics")
	d.allow == false
	d.reasons == ["Purpose 'analytics' is not an allowed purpose for PHI data (allowed: care, billing)"]
}

test_no_declared_purpose_is_allowed_and_noted if {
	d := policy.decision with input as processing(["PII"], "")
	d.allow == true
	d.reasons == ["No purpose declared for processing PII data; declare one so audits can show why"]
}

test_stewards_can_require_a_declared_purpose if {
	d := policy.decision with input as processing(["PII"], "")
		with data.lacuna.config.purpose.require_declared as true
	d.allow == false
	d.reasons == ["Processing PII data needs a declared purpose"]
}

test_anonymizing_is_always_allowed if {
	d := policy.decision with input as object.union(processing(["PII"], "marketing"), {"action": "anonymize"})
	d.allow == true
}

test_data_without_restricted_tags_is_not_concerned if {
	d := policy.decision with input as processing(["FINANCIAL"], "marketing")
	d.allow == true
	d.reasons == []
}

# The exception alternative writes the steward out (no sprintf on every denial): it must stay
# the one metadata names.
test_exception_alternative_names_the_metadata_steward if {
	d := policy.decision with input as processing(["PII"], "marketing")
	d.alternatives[count(d.alternatives) - 1] == sprintf("Request a time-boxed exception from %s for this purpose", [policy.metadata.steward])
}
