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
package lacuna.policies.export_governance

metadata := {
	"id": "export-governance",
	"title": "PII and proprietary export restrictions",
	"version": "2.0.0",
	"steward": "data-governance@example.com",
}

decision := {"allow": false, "reasons": sort(deny), "alternatives": alternatives} if count(deny) > 0

decision := {"allow": true, "reasons": [], "alternatives": []} if count(deny) == 0

cfg := data.lacuna.config

locations := data.lacuna.config.locations

destination := input.destination.location

exporting if input.action == "export"

personal := sort({tag | some tag in input.source.tags; tag in cfg.personal_tags})

has_personal if count(personal) > 0

proprietary if input.source.tier == "PROPRIETARY"

sensitive if proprietary

sensitive if has_personal

unclassified if count(input.source.unclassified) > 0

sensitive if unclassified

# What the message calls the data: its personal tags when it has any, else its tier.
label := concat(", ", personal) if has_personal

label := "PROPRIETARY" if {
	not has_personal
	proprietary
}

label := "unclassified" if {
	not has_personal
	not proprietary
	unclassified
}

governed if input.destination.managed == true

governed if strings.any_prefix_match(destination, locations.governed_prefixes)

encrypted if input.destination.encrypted == true

scratch_allowed if {
	input.context.environment in cfg.scratch.environments
	strings.any_prefix_match(destination, cfg.scratch.prefixes)
}

flagged_unmanaged if input.destination.managed == false

flagged_unmanaged if strings.any_prefix_match(destination, locations.unmanaged_prefixes)

flagged_unmanaged if {
	some segment in split(destination, "/")
	segment in locations.unmanaged_segments
}

unmanaged if {
	flagged_unmanaged
	not governed
	not scratch_allowed
}

scheme := lower(split(destination, "://")[0]) if contains(destination, "://")

external if {
	scheme in locations.external_schemes
	not governed
}

deny contains msg if {
	exporting
	sensitive
	unmanaged
	msg := sprintf("Cannot export %s data to unmanaged location %s", [label, destination])
}

deny contains msg if {
	exporting
	sensitive
	external
	not encrypted
	msg := sprintf("%s data may leave the organisation only encrypted; %s is not encrypted", [label, destination])
}

deny contains msg if {
	exporting
	input.source.tier == "INTERNAL"
	external
	msg := sprintf("INTERNAL data may not be exported outside the organisation (%s)", [destination])
}

# Suggestions are [rank, text] pairs so the list reads in a useful order in every engine.
suggestion contains [1, msg] if {
	count(deny) > 0
	has_personal
	msg := sprintf("Export an anonymized version: run an 'anonymize' step over the %s columns first, its output no longer carries them", [label])
}

suggestion contains [2, msg] if {
	count(deny) > 0
	msg := sprintf("Save to a governed location instead, e.g. %s", [cfg.export.governed_workspace])
}

suggestion contains [3, "Write to an encrypted destination and declare it (destination encrypted = true)"] if {
	sensitive
	external
	not encrypted
}

suggestion contains [9, msg] if {
	count(deny) > 0
	msg := sprintf("Request a time-boxed exception from %s if this export is unavoidable", [metadata.steward])
}

alternatives := [pair[1] | some pair in sort(suggestion)]
