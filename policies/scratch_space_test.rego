package lacuna.tests.scratch_space

import data.lacuna.policies.scratch_space as policy

export_to(location, environment) := {
	"action": "export",
	"source": {"datasets": ["warehouse::sales"], "tier": "PUBLIC", "tags": [], "unclassified": []},
	"destination": {"location": location, "encrypted": false, "managed": null},
	"user": "bob",
	"context": {"environment": environment},
}

test_production_export_to_tmp_is_denied_whatever_the_data if {
	d := policy.decision with input as export_to("file:///tmp/sample.csv", "production")
	d.allow == false
	d.reasons == ["file:///tmp/sample.csv is scratch space, open to exports only in development (this run: production)"]
	d.alternatives[0] == "Run this export in the development environment"
}

test_development_export_to_tmp_is_allowed_with_a_note if {
	d := policy.decision with input as export_to("file:///tmp/sample.csv", "development")
	d.allow == true
	d.reasons == ["Export to scratch space file:///tmp/sample.csv allowed in development"]
}

test_missing_environment_is_not_development if {
	inp := json.remove(export_to("file:///tmp/sample.csv", "x"), ["context/environment"])
	d := policy.decision with input as inp
	d.allow == false
	contains(d.reasons[0], "(this run: unspecified)")
}

test_other_locations_are_not_scratch if {
	d := policy.decision with input as export_to("file:///governed/workspace/x.csv", "production")
	d.allow == true
	d.reasons == []
}

test_reads_are_not_exports if {
	d := policy.decision with input as object.union(export_to("file:///tmp/x.csv", "production"), {"action": "read"})
	d.allow == true
}
