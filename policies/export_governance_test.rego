package lacuna.tests.export_governance

import data.lacuna.policies.export_governance as policy

# The seed scenario: customer data joined with sales (PROPRIETARY; PII, GDPR, FINANCIAL)
# exported to /tmp by a production job.
seed := {
	"action": "export",
	"source": {
		"datasets": ["file::/data/customers.csv", "file::/data/sales.csv"],
		"tier": "PROPRIETARY",
		"tags": ["FINANCIAL", "GDPR", "PII"],
		"unclassified": [],
	},
	"destination": {
		"key": "file::/tmp/export.csv",
		"namespace": "file",
		"name": "/tmp/export.csv",
		"location": "file:///tmp/export.csv",
		"tier": null,
		"tags": [],
		"encrypted": false,
		"managed": null,
	},
	"user": "alice",
	"context": {"environment": "production", "purpose": "", "domain": "", "job": "export_job"},
	"lineage": {"upstream": []},
}

to(location) := object.union(seed, {"destination": {"location": location}})

with_source(tier, tags) := object.union(seed, {"source": {"tier": tier, "tags": tags}})

test_seed_scenario_is_denied_with_three_alternatives if {
	d := policy.decision with input as seed
	d.allow == false
	d.reasons == ["Cannot export PII data to unmanaged location file:///tmp/export.csv"]
	count(d.alternatives) == 3
	startswith(d.alternatives[0], "Export an anonymized version")
	contains(d.alternatives[0], "PII")
	contains(d.alternatives[1], "file:///governed/workspace/")
	contains(d.alternatives[2], "data-governance@example.com")
}

test_metadata_names_policy_and_steward if {
	policy.metadata.id == "export-governance"
	policy.metadata.version == "2.0.0"
	policy.metadata.steward == "data-governance@example.com"
}

test_proprietary_without_personal_tags_to_downloads_is_denied if {
	inp := object.union(with_source("PROPRIETARY", ["FINANCIAL"]), {"destination": {"location": "file:///home/alice/Downloads/x.csv"}})
	d := policy.decision with input as inp
	d.allow == false
	d.reasons == ["Cannot export PROPRIETARY data to unmanaged location file:///home/alice/Downloads/x.csv"]
	not startswith(d.alternatives[0], "Export an anonymized version")
}

test_governed_location_is_allowed if {
	d := policy.decision with input as to("file:///governed/workspace/export.csv")
	d.allow == true
}

test_catalog_flag_managed_wins_over_location_patterns if {
	inp := object.union(seed, {"destination": {"location": "file:///home/bob/Desktop/x.csv", "managed": true}})
	d := policy.decision with input as inp
	d.allow == true
}

test_catalog_flag_unmanaged_is_denied if {
	inp := object.union(seed, {"destination": {"location": "postgres://other:5432/db.t", "managed": false}})
	d := policy.decision with input as inp
	d.allow == false
}

test_public_data_to_tmp_is_not_this_policys_concern if {
	d := policy.decision with input as with_source("PUBLIC", [])
	d.allow == true
}

test_internal_data_to_tmp_is_allowed_here if {
	d := policy.decision with input as with_source("INTERNAL", [])
	d.allow == true
}

test_proprietary_to_external_unencrypted_is_denied if {
	inp := object.union(with_source("PROPRIETARY", []), {"destination": {"location": "s3://partner-bucket/x.csv"}})
	d := policy.decision with input as inp
	d.allow == false
	d.reasons == ["PROPRIETARY data may leave the organisation only encrypted; s3://partner-bucket/x.csv is not encrypted"]
	some alt in d.alternatives
	startswith(alt, "Write to an encrypted destination")
}

test_proprietary_to_external_encrypted_is_allowed if {
	inp := object.union(with_source("PROPRIETARY", []), {"destination": {"location": "s3://partner-bucket/x.csv", "encrypted": true}})
	d := policy.decision with input as inp
	d.allow == true
}

test_governed_bucket_is_not_external if {
	inp := object.union(with_source("INTERNAL", []), {"destination": {"location": "s3://acme-governed/x.csv"}})
	d := policy.decision with input as inp
	d.allow == true
}

test_internal_to_external_is_denied_even_encrypted if {
	inp := object.union(with_source("INTERNAL", []), {"destination": {"location": "https://api.partner.example/upload", "encrypted": true}})
	d := policy.decision with input as inp
	d.allow == false
	d.reasons == ["INTERNAL data may not be exported outside the organisation (https://api.partner.example/upload)"]
}

test_development_may_use_tmp_for_personal_data if {
	inp := object.union(seed, {"context": {"environment": "development"}})
	d := policy.decision with input as inp
	d.allow == true
}

test_development_does_not_open_downloads if {
	inp := object.union(seed, {"context": {"environment": "development"}, "destination": {"location": "file:///home/a/Downloads/x.csv"}})
	d := policy.decision with input as inp
	d.allow == false
}

test_only_exports_are_governed_here if {
	d := policy.decision with input as object.union(seed, {"action": "transform"})
	d.allow == true
}

test_unclassified_sources_count_as_sensitive if {
	inp := object.union(with_source("PUBLIC", []), {"source": {"unclassified": ["file::/data/new.csv"]}})
	d := policy.decision with input as inp
	d.allow == false
	d.reasons == ["Cannot export unclassified data to unmanaged location file:///tmp/export.csv"]
}

# The exception alternative writes the steward out (no sprintf on every denial): it must stay
# the one metadata names.
test_exception_alternative_names_the_metadata_steward if {
	d := policy.decision with input as seed
	d.alternatives[count(d.alternatives) - 1] == sprintf("Request a time-boxed exception from %s if this export is unavoidable", [policy.metadata.steward])
}
