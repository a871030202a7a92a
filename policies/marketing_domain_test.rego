package lacuna.tests.marketing_domain

import data.lacuna.policies.marketing_domain as policy

into_marketing(action, tags) := {
	"action": action,
	"source": {"datasets": ["warehouse::customers"], "tier": "PROPRIETARY", "tags": tags, "unclassified": []},
	"destination": {"location": "postgres://warehouse.internal:5432/marketing.audience"},
	"user": "dana",
	"context": {"environment": "production", "purpose": "analytics", "domain": "Marketing", "job": "j"},
}

test_owned_by_the_marketing_steward if {
	policy.metadata.steward == "marketing-governance@example.com"
	policy.metadata.steward != data.lacuna.policies.export_governance.metadata.steward
}

test_health_data_is_refused_even_aggregated if {
	d := policy.decision with input as into_marketing("aggregate", ["PHI"])
	d.allow == false
	d.reasons == ["The marketing domain may not receive PHI data"]
	some alt in d.alternatives
	startswith(alt, "Drop the health (PHI) columns")
}

test_raw_personal_data_is_refused if {
	d := policy.decision with input as into_marketing("transform", ["EMAIL", "PII"])
	d.allow == false
	d.reasons == ["The marketing domain may receive EMAIL, PII data only aggregated or anonymized, not through 'transform'"]
	startswith(d.alternatives[0], "Aggregate the data first")
	contains(d.alternatives[count(d.alternatives) - 1], "marketing-governance@example.com")
}

test_aggregating_personal_data_is_allowed if {
	d := policy.decision with input as into_marketing("aggregate", ["PII"])
	d.allow == true
}

test_aggregated_outputs_may_be_used_downstream if {
	d := policy.decision with input as into_marketing("transform", ["DERIVED_FROM_PII"])
	d.allow == true
}

test_other_domains_are_not_concerned if {
	d := policy.decision with input as object.union(into_marketing("transform", ["PHI", "PII"]), {"context": {"domain": "care"}})
	d.allow == true
}

# The exception alternative writes the steward out (no sprintf on every denial): it must stay
# the one metadata names.
test_exception_alternative_names_the_metadata_steward if {
	d := policy.decision with input as into_marketing("transform", ["PII"])
	d.alternatives[count(d.alternatives) - 1] == sprintf("Ask %s for a time-boxed exception", [policy.metadata.steward])
}
