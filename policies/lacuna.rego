# Entry point: every enabled policy, evaluated by ONE query.
#
#   data.lacuna.decisions -> [{"package": name, "metadata": {...}, "decision": {...}}, ...]
#
# Each policy package under data.lacuna.policies exposes two documents:
#   metadata := {"id", "title", "version", "steward"}
#   decision := {"allow": bool, "reasons": [string], "alternatives": [string]}
# Reasons of an allowing decision are notes worth recording (the gate keeps them).
#
# Which policies run, and in which order, is data: data.lacuna.config.enabled_policies. The
# order matters: the first denying policy names the gate's decision. A listed package whose
# metadata or decision is undefined is never skipped silently: the whole answer becomes one
# denial naming it. (The embedded engine also refuses to load a package under
# lacuna.policies that is in neither enabled_policies nor disabled_policies.)
#
# Written without `else` and without `some k, v in` on purpose: regorus' compiled VM loses
# `else` fallbacks and rego-cpp rejects the key/value form inside comprehensions; these files
# must give the same answers in every engine, OPA included.
package lacuna

# (Each document is looked up on its own: binding the whole package would evaluate every
# helper rule in it.)
answered := [entry |
	some name in data.lacuna.config.enabled_policies
	entry := {
		"package": name,
		"metadata": data.lacuna.policies[name].metadata,
		"decision": data.lacuna.policies[name].decision,
	}
]

decisions := answered if count(answered) == count(data.lacuna.config.enabled_policies)

decisions := [{
	"package": "lacuna",
	"metadata": {"id": "lacuna.incomplete-bundle", "title": "Incomplete policy bundle", "version": "", "steward": ""},
	"decision": {
		"allow": false,
		"reasons": [sprintf("enabled policies without metadata or decision: %s", [concat(", ", silent)])],
		"alternatives": ["Define metadata and decision in each listed package, or remove it from enabled_policies"],
	},
}] if {
	count(answered) != count(data.lacuna.config.enabled_policies)
}

silent := [name | some name in data.lacuna.config.enabled_policies; not name in {entry.package | some entry in answered}]
