# Export governance: sensitive data leaves governed storage only for governed places, and
# leaves the organisation only encrypted.
#
#   * PROPRIETARY, personal (tags in data.lacuna.config.personal_tags) or unclassified data
#     (source.unclassified: not classified yet, so not known to be harmless) may not be
#     exported to an unmanaged location: a catalog flag (destination.managed == false) or a
#     location that looks like a desktop, a download folder or /tmp (see data.json).
#   * The same data may go to an external location (s3://, https://, ...) only when the
#     destination is encrypted.
#   * INTERNAL data may not be exported to an external location at all.
#
# Governed prefixes (data.lacuna.config.locations.governed_prefixes) and an explicit
# destination.managed == true always win: they are neither unmanaged nor external.
#
# Composition with the development scratch-space policy: scratch prefixes (/tmp) count as
# unmanaged EXCEPT in the environments that scratch policy allows; outside them both policies
# deny, and this one explains the data-protection side.
#
# Written for the evaluator's cost (every gate question runs it): the cheap tests come first
# in each body so most questions stop early, config is read where it is used rather than
# through helper rules, and texts are built only for a denial.
package lacuna.policies.export_governance

metadata := {
	"id": "export-governance",
	"title": "PII and proprietary export restrictions",
	"version": "2.0.0",
	"steward": "data-governance@example.com",
}

default decision := {"allow": true, "reasons": [], "alternatives": []}

decision := {"allow": false, "reasons": sort(deny), "alternatives": alternatives} if count(deny) > 0

personal := sort({tag | some tag in input.source.tags; tag in data.lacuna.config.personal_tags})

# What the message calls sensitive data: its personal tags when it has any, else its tier.
# Defined exactly when the data is sensitive (personal, PROPRIETARY or unclassified), so the
# denials below use it as that test too. The first definition that holds is the one used.
label := concat(", ", personal) if count(personal) > 0

label := "PROPRIETARY" if {
	count(personal) == 0
	input.source.tier == "PROPRIETARY"
}

label := "unclassified" if {
	count(personal) == 0
	not input.source.tier == "PROPRIETARY"
	count(input.source.unclassified) > 0
}

governed if input.destination.managed == true

governed if strings.any_prefix_match(input.destination.location, data.lacuna.config.locations.governed_prefixes)

scratch_allowed if {
	input.context.environment in data.lacuna.config.scratch.environments
	strings.any_prefix_match(input.destination.location, data.lacuna.config.scratch.prefixes)
}

flagged_unmanaged if input.destination.managed == false

flagged_unmanaged if strings.any_prefix_match(input.destination.location, data.lacuna.config.locations.unmanaged_prefixes)

flagged_unmanaged if {
	some segment in split(input.destination.location, "/")
	segment in data.lacuna.config.locations.unmanaged_segments
}

scheme := lower(split(input.destination.location, "://")[0]) if contains(input.destination.location, "://")

# Each denial tests the cheap facts first: most operations are not exports, and most exports
# go to governed places.
deny contains msg if {
	input.action == "export"
	not governed
	flagged_unmanaged
	not scratch_allowed
	label != ""
	msg := sprintf("Cannot export %s data to unmanaged location %s", [label, input.destination.location])
}

deny contains msg if {
	input.action == "export"
	not governed
	not input.destination.encrypted == true
	scheme in data.lacuna.config.locations.external_schemes
	label != ""
	msg := sprintf("%s data may leave the organisation only encrypted; %s is not encrypted", [label, input.destination.location])
}

deny contains msg if {
	input.action == "export"
	input.source.tier == "INTERNAL"
	not governed
	scheme in data.lacuna.config.locations.external_schemes
	msg := sprintf("INTERNAL data may not be exported outside the organisation (%s)", [input.destination.location])
}

# The alternatives of a denial, in the order to try them: anonymize (personal data only),
# a governed location, encryption (sensitive data to an unencrypted external place), an
# exception from the steward (metadata.steward, written out; a test checks they agree).
default anonymize_first := []

anonymize_first := [sprintf("Export an anonymized version: run an 'anonymize' step over the %s columns first, its output no longer carries them", [label])] if count(personal) > 0

default encrypt := []

encrypt := ["Write to an encrypted destination and declare it (destination encrypted = true)"] if {
	label != ""
	not governed
	not input.destination.encrypted == true
	scheme in data.lacuna.config.locations.external_schemes
}

alternatives := array.concat(
	array.concat(anonymize_first, [sprintf("Save to a governed location instead, e.g. %s", [data.lacuna.config.export.governed_workspace])]),
	array.concat(encrypt, ["Request a time-boxed exception from data-governance@example.com if this export is unavoidable"]),
)
