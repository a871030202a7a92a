# Development scratch space: /tmp (data.lacuna.config.scratch.prefixes) is for development.
#
# Exports there are allowed only when context.environment is one of
# data.lacuna.config.scratch.environments, whatever the data's tier: production jobs must not
# leave copies in a shared, unmanaged, unaudited folder. In development the export-governance
# policy treats the same prefixes as acceptable, so a developer can dump sample data to /tmp.
package lacuna.policies.scratch_space

metadata := {
	"id": "dev-scratch-space",
	"title": "Scratch space is for development only",
	"version": "1.0.0",
	"steward": "data-governance@example.com",
}

decision := {"allow": false, "reasons": sort(deny), "alternatives": alternatives} if count(deny) > 0

decision := {"allow": true, "reasons": sort(note), "alternatives": []} if count(deny) == 0

cfg := data.lacuna.config.scratch

destination := input.destination.location

default environment := "unspecified"

environment := input.context.environment

in_scratch if {
	input.action == "export"
	strings.any_prefix_match(destination, cfg.prefixes)
}

development if environment in cfg.environments

deny contains msg if {
	in_scratch
	not development
	msg := sprintf("%s is scratch space, open to exports only in %s (this run: %s)", [destination, concat(" or ", cfg.environments), environment])
}

note contains msg if {
	in_scratch
	development
	msg := sprintf("Export to scratch space %s allowed in %s", [destination, environment])
}

alternatives := [
	"Run this export in the development environment",
	sprintf("Save to a governed location instead, e.g. %s", [data.lacuna.config.export.governed_workspace]),
]
