# Purpose limitation (GDPR Art. 5(1)(b)): personal data is processed only for the purposes a
# steward listed for it in data.lacuna.config.purpose.allowed (per tag: PII, PHI, ...).
#
#   * A declared purpose (context.purpose, compared case-insensitively) outside the list of any
#     restricted tag the data carries is denied.
#   * No declared purpose: allowed with a note recorded in the decision, so audits show which
#     runs processed personal data without saying why. Stewards who want to refuse those set
#     data.lacuna.config.purpose.require_declared to true: data, not code.
#   * Actions in exempt_actions (anonymize) are always allowed: they remove the restriction.
package lacuna.policies.purpose_limitation

metadata := {
	"id": "purpose-limitation",
	"title": "Personal data only for its declared purposes",
	"version": "1.0.0",
	"steward": "privacy-office@example.com",
}

decision := {"allow": false, "reasons": sort(deny), "alternatives": alternatives} if count(deny) > 0

decision := {"allow": true, "reasons": sort(note), "alternatives": []} if count(deny) == 0

cfg := data.lacuna.config.purpose

restricted := sort({tag | some tag in input.source.tags; cfg.allowed[tag]})

applies if {
	count(restricted) > 0
	not input.action in cfg.exempt_actions
}

purpose := lower(trim_space(input.context.purpose))

declared if purpose != ""

deny contains msg if {
	applies
	declared
	some tag in restricted
	not purpose in cfg.allowed[tag]
	msg := sprintf("Purpose '%s' is not an allowed purpose for %s data (allowed: %s)", [purpose, tag, concat(", ", cfg.allowed[tag])])
}

deny contains msg if {
	applies
	not declared
	cfg.require_declared == true
	msg := sprintf("Processing %s data needs a declared purpose", [concat(", ", restricted)])
}

note contains msg if {
	applies
	not declared
	cfg.require_declared != true
	msg := sprintf("No purpose declared for processing %s data; declare one so audits can show why", [concat(", ", restricted)])
}

suggestion contains [1, msg] if {
	some tag in restricted
	msg := sprintf("Declare an allowed purpose for %s data, if one truly applies: %s", [tag, concat(", ", cfg.allowed[tag])])
}

suggestion contains [2, "Anonymize the data first: anonymized output carries no purpose restriction"]

suggestion contains [9, msg] if {
	msg := sprintf("Request a time-boxed exception from %s for this purpose", [metadata.steward])
}

alternatives := [pair[1] | some pair in sort(suggestion)]
