# Development scratch space: /tmp (data.lacuna.config.scratch.prefixes) is for development.
#
# Exports there are allowed only when context.environment is one of
# data.lacuna.config.scratch.environments, whatever the data's tier: production jobs must not
# leave copies in a shared, unmanaged, unaudited folder. In development the export-governance
# policy treats the same prefixes as acceptable, so a developer can dump sample data to /tmp.
#
# Every gate question runs this, so it is written for the evaluator's cost: the decision is
# one of two exclusive answers or the default, without intermediate deny/note sets.
package lacuna.policies.scratch_space

metadata := {
	"id": "dev-scratch-space",
	"title": "Scratch space is for development only",
	"version": "1.0.0",
	"steward": "data-governance@example.com",
}

# Every question gets exactly one of these answers: the first two are exclusive, and the
# default answers what is not an export to scratch space.
default decision := {"allow": true, "reasons": [], "alternatives": []}

decision := {"allow": false, "reasons": [msg], "alternatives": alternatives} if {
	in_scratch
	not development
	msg := sprintf("%s is scratch space, open to exports only in %s (this run: %s)", [input.destination.location, concat(" or ", cfg.environments), environment])
}

decision := {"allow": true, "reasons": [msg], "alternatives": []} if {
	in_scratch
	development
	msg := sprintf("Export to scratch space %s allowed in %s", [input.destination.location, environment])
}

cfg := data.lacuna.config.scratch

default environment := "unspecified"

environment := input.context.environment

development if environment in cfg.environments

in_scratch if {
	input.action == "export"
	strings.any_prefix_match(input.destination.location, cfg.prefixes)
}

alternatives := [
	"Run this export in the development environment",
	sprintf("Save to a governed location instead, e.g. %s", [data.lacuna.config.export.governed_workspace]),
]
