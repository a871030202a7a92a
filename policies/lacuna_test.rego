package lacuna.tests.entrypoint

allowed_read := {
	"action": "read",
	"source": {"datasets": ["warehouse::sales"], "tier": "PUBLIC", "tags": [], "unclassified": []},
	"destination": null,
	"user": "erin",
	"context": {"environment": "production", "purpose": "", "domain": "", "job": "j"},
}

test_one_answer_per_enabled_policy_in_order if {
	ds := data.lacuna.decisions with input as allowed_read
	[d.package | some d in ds] == data.lacuna.config.enabled_policies
	every d in ds {
		d.decision.allow == true
		d.metadata.id != ""
		d.metadata.steward != ""
	}
}

test_an_enabled_policy_without_decision_denies_everything if {
	ds := data.lacuna.decisions with input as allowed_read
		with data.lacuna.config.enabled_policies as ["export_governance", "not_written_yet"]
	count(ds) == 1
	ds[0].decision.allow == false
	ds[0].decision.reasons == ["enabled policies without metadata or decision: not_written_yet"]
}

test_every_policy_package_is_enabled_or_disabled if {
	listed := {n | some n in data.lacuna.config.enabled_policies} | {n | some n in data.lacuna.config.disabled_policies}
	every name, _ in data.lacuna.policies {
		name in listed
	}
}
