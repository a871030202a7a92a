# Purpose limitation (GDPR Art. 5(1)(b)): personal data is processed only for the purposes a
# steward listed for it in data.lacuna.config.purpose.allowed (per tag: PII, PHI, ...).
#
#   * A declared purpose (context.purpose, compared case-insensitively) outside the list of any
#     restricted tag the data carries is denied.
#   * No declared purpose: allowed with a note recorded in the decision, so audits show which
#     runs processed personal data without saying why. Stewards who want to refuse those set
#     data.lacuna.config.purpose.require_declared to true: data, not code.
#   * Actions in exempt_actions (anonymize) are always allowed: they remove the restriction.
#
# Config is read where it is used (a helper rule costs a call on every gate question) and
# texts are built only for the answer returned.
package lacuna.policies.purpose_limitation

metadata := {
	"id": "purpose-limitation",
	"title": "Personal data only for its declared purposes",
	"version": "1.0.0",
	"steward": "privacy-office@example.com",
}

# One of four exclusive answers: the default covers data without restricted tags, exempt
# actions and allowed declared purposes. (Written as separate answers rather than deny/note
# sets: every gate question evaluates this.)
default decision := {"allow": true, "reasons": [], "alternatives": []}

decision := {"allow": false, "reasons": sort(deny), "alternatives": alternatives} if {
	applies
	declared
	count(deny) > 0
}

decision := {"allow": false, "reasons": [msg], "alternatives": alternatives} if {
	applies
	not declared
	data.lacuna.config.purpose.require_declared == true
	msg := sprintf("Processing %s data needs a declared purpose", [concat(", ", restricted)])
}

decision := {"allow": true, "reasons": [msg], "alternatives": []} if {
	applies
	not declared
	data.lacuna.config.purpose.require_declared != true
	msg := sprintf("No purpose declared for processing %s data; declare one so audits can show why", [concat(", ", restricted)])
}

restricted := sort({tag | some tag in input.source.tags; data.lacuna.config.purpose.allowed[tag]})

applies if {
	count(restricted) > 0
	not input.action in data.lacuna.config.purpose.exempt_actions
}

purpose := lower(trim_space(input.context.purpose))

declared if purpose != ""

# A declared purpose outside the allowed list of any restricted tag.
deny contains msg if {
	applies
	declared
	some tag in restricted
	allowed := data.lacuna.config.purpose.allowed[tag]
	not purpose in allowed
	msg := sprintf("Purpose '%s' is not an allowed purpose for %s data (allowed: %s)", [purpose, tag, concat(", ", allowed)])
}

# In the order to try them: declare an allowed purpose (one per restricted tag), anonymize,
# ask the steward (metadata.steward, written out; a test checks they agree).
alternatives := array.concat(
	sort([msg |
		some tag in restricted
		msg := sprintf("Declare an allowed purpose for %s data, if one truly applies: %s", [tag, concat(", ", data.lacuna.config.purpose.allowed[tag])])
	]),
	[
		"Anonymize the data first: anonymized output carries no purpose restriction",
		"Request a time-boxed exception from privacy-office@example.com for this purpose",
	],
)
