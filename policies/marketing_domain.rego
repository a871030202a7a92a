# Marketing data use: the marketing domain (context.domain in
# data.lacuna.config.marketing.domains) receives no health data and personal data only in
# reduced form.
#
#   * Any tag in forbidden_tags (PHI) on what flows into marketing is denied, whatever the action.
#   * Raw personal tags (raw_tags: PII, EMAIL, ...) are allowed only through a reducing action
#     (aggregate, anonymize). Aggregated outputs carry DERIVED_FROM_PII instead of PII, so
#     downstream marketing jobs may use them.
#
# Owned by the marketing domain's steward, not the central data-governance team.
#
# Every gate question runs this: the denials test for_marketing first, so the tag lists and
# texts are built only for operations bound for marketing.
package lacuna.policies.marketing_domain

metadata := {
	"id": "marketing-data-use",
	"title": "Marketing gets no health data and only aggregated personal data",
	"version": "1.0.0",
	"steward": "marketing-governance@example.com",
}

default decision := {"allow": true, "reasons": [], "alternatives": []}

decision := {"allow": false, "reasons": sort(deny), "alternatives": alternatives} if count(deny) > 0

cfg := data.lacuna.config.marketing

for_marketing if lower(input.context.domain) in cfg.domains

forbidden := sort({tag | some tag in input.source.tags; tag in cfg.forbidden_tags})

raw_personal := sort({tag | some tag in input.source.tags; tag in cfg.raw_tags})

deny contains msg if {
	for_marketing
	count(forbidden) > 0
	msg := sprintf("The marketing domain may not receive %s data", [concat(", ", forbidden)])
}

deny contains msg if {
	for_marketing
	count(raw_personal) > 0
	not input.action in cfg.reducing_actions
	msg := sprintf("The marketing domain may receive %s data only aggregated or anonymized, not through '%s'", [concat(", ", raw_personal), input.action])
}

# The alternatives of a denial, in the order to try them; the last names metadata.steward,
# written out (a test checks they agree).
default aggregate_first := []

aggregate_first := ["Aggregate the data first: the aggregate carries DERIVED_FROM_PII, which marketing may use"] if {
	count(raw_personal) > 0
	count(forbidden) == 0
}

default anonymize := []

anonymize := ["Anonymize the personal columns before handing the data to marketing"] if count(raw_personal) > 0

default drop_health := []

drop_health := ["Drop the health (PHI) columns from what marketing receives"] if count(forbidden) > 0

alternatives := array.concat(
	array.concat(aggregate_first, anonymize),
	array.concat(drop_health, ["Ask marketing-governance@example.com for a time-boxed exception"]),
)
