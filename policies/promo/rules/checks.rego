# Required checks: the target environment lists checks (smoke, canary...) that must
# have passed in the SOURCE environment, i.e. against this artifact where it runs now.
#
# A run only counts as evidence about this artifact when it ran in the source
# environment, no earlier than the artifact's deploy there (when deployedToSourceAt
# is given: an older green run tested the previous version) and no later than the
# evaluation time. Of the runs that count, the latest decides, so a flaky run that
# was retried green passes and a regression after a green run fails.
package promo.rules.checks

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {
	"checks.missing": "every check the target environment requires ran in the source environment against this artifact",
	"checks.failed": "the latest counting run of every required check passed",
}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference (measured:
# ~110 us per rule package, 4x the cost of the rules themselves).

cfg := data.promo.lib.target.checks

_deployed := object.get(input.request, "deployedToSourceAt", null)

_since_deploy(c) if not is_string(_deployed)

_since_deploy(c) if {
	is_string(_deployed)
	data.promo.lib.ns(c.at) >= data.promo.lib.ns(_deployed)
}

# Per required check, computed once per decision: rules are evaluated once, while a
# function is evaluated again on every call (and the messages below call these often).
_by_name := {name: {"runs": _runs(name)} | some name in cfg.required}

# The runs of a check that count as evidence about this artifact.
runs(name) := _by_name[name].runs

_runs(name) := [c | some c in data.promo.lib.checks; c.name == name; _counts(c)]

# Runs of the check that were set aside, with why, so "missing" is never a mystery
# (only needed for a denial's message and facts).
# Where only signed results count, a claimed run nobody signed is set aside too.
ignored(name) := array.concat(
	[{"environment": object.get(c, "environment", null), "status": c.status, "at": object.get(c, "at", null), "reason": _ignored_reason(c)} |
		some c in data.promo.lib.checks
		c.name == name
		not _counts(c)
	],
	[{"environment": object.get(c, "environment", null), "status": c.status, "at": object.get(c, "at", null), "reason": sprintf("is only claimed in the request and %s counts signed results only", [data.promo.lib.to])} |
		some c in data.promo.lib.unsigned_checks
		c.name == name
	],
)

_counts(c) if {
	c.environment == data.promo.lib.from
	data.promo.lib.ns(c.at) <= data.promo.lib.now_ns
	_since_deploy(c)
}

_ignored_reason(c) := "names no environment" if {
	not c.environment
} else := sprintf("ran in %s, not %s", [c.environment, data.promo.lib.from]) if {
	c.environment != data.promo.lib.from
} else := "has no time, so it cannot be tied to this deploy" if {
	not c.at
} else := sprintf("has an invalid time %s", [c.at]) if {
	data.promo.lib.bad_time(c.at)
} else := "ran after the evaluation time" if {
	data.promo.lib.ns(c.at) > data.promo.lib.now_ns
} else := sprintf("ran before this artifact reached %s", [data.promo.lib.from])

# The runs at the latest instant (usually one), and their statuses, per required check.
_last := {name: max([data.promo.lib.ns(r.at) | some r in v.runs]) | some name, v in _by_name}

_latest := {name: [c | some c in v.runs; data.promo.lib.ns(c.at) == _last[name]] | some name, v in _by_name}

latest(name) := _latest[name]

_statuses := {name: {c.status | some c in cs} | some name, cs in _latest}

latest_statuses(name) := _statuses[name]

# "error" means the check could not judge the artifact; that is no more a pass than a
# failure is. On a tie at the latest instant, failure wins: doubt resolves to "no".
failed_statuses := {"failed", "error"}

failed(name) if {
	some s in latest_statuses(name)
	s in failed_statuses
}

passed(name) if {
	"passed" in latest_statuses(name)
	not failed(name)
}

_since := sprintf(" since the artifact was deployed there at %s", [_deployed]) if is_string(_deployed) else := ""

_failed_word := {"failed": "failed", "error": "ended in error"}

_required := concat(" and ", cfg.required)

deny contains {
	"id": "checks.failed",
	"msg": sprintf("%s requires %s to have passed in %s; the latest %s run in %s, at %s, %s; fix it and re-run %s in %s", [
		data.promo.lib.to, _required, data.promo.lib.from,
		name, data.promo.lib.from,
		concat(", ", sort({c.at | some c in latest(name)})),
		concat(" and ", sort({_failed_word[s] | some s in latest_statuses(name); s in failed_statuses})),
		name, data.promo.lib.from,
	]),
	"facts": {"check": name, "environment": data.promo.lib.from, "latest": latest(name), "runs": runs(name)},
} if {
	some name in cfg.required
	failed(name)
}

deny contains {
	"id": "checks.missing",
	"msg": sprintf("%s requires %s to have passed in %s; %s%s", [
		data.promo.lib.to, _required, data.promo.lib.from,
		_missing_detail(name),
		_ignored_note(name),
	]),
	"facts": {"check": name, "environment": data.promo.lib.from, "runs": runs(name), "ignored": ignored(name)},
} if {
	some name in cfg.required
	not passed(name)
	not failed(name)
}

_missing_detail(name) := sprintf("%s has no run in %s%s", [name, data.promo.lib.from, _since]) if {
	count(runs(name)) == 0
} else := sprintf("the latest %s run in %s is %s, not passed; wait for it to pass", [
	name, data.promo.lib.from,
	concat("/", sort(latest_statuses(name))),
])

_ignored_note(name) := "" if {
	count(ignored(name)) == 0
} else := sprintf(" (not counted: %s)", [concat("; ", sort([sprintf("%s run %s", [r.status, _at_text(r)]) | some r in ignored(name)]))])

_at_text(r) := sprintf("at %s %s", [r.at, r.reason]) if is_string(r.at) else := r.reason
