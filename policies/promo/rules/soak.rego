# Soak time: an artifact must have run in the source environment for a while before it
# moves on, because the bugs that slip past tests show up under real traffic over hours
# (leaks, cron jobs, daily peaks), not in the minutes after a deploy.
package promo.rules.soak

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {
	"soak.too_short": "the artifact ran in the source environment for the minimum soak time",
}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference (measured:
# ~110 us per rule package, 4x the cost of the rules themselves).

cfg := data.promo.lib.target.soak

_deployed := object.get(input.request, "deployedToSourceAt", null)

deployed_ns := data.promo.lib.ns(_deployed) if is_string(_deployed)

# Unknown is not short enough to pass: without a deploy time the gate cannot tell
# a day-old artifact from one deployed a minute ago.
deny contains {
	"id": "soak.too_short",
	"msg": sprintf("%s needs the artifact to have soaked %vh in %s, but the request has no deployedToSourceAt, so its soak time is unknown; add when it was deployed to %s", [
		data.promo.lib.to, cfg.minHours, data.promo.lib.from, data.promo.lib.from,
	]),
	"facts": {"minHours": cfg.minHours, "deployedToSourceAt": null},
} if {
	cfg.minHours > 0
	not is_string(_deployed)
}

# A timestamp the engine cannot read is as unknown as a missing one.
deny contains {
	"id": "soak.too_short",
	"msg": sprintf("%s needs the artifact to have soaked %vh in %s, but deployedToSourceAt %s is not a valid RFC 3339 time, so its soak time is unknown", [
		data.promo.lib.to, cfg.minHours, data.promo.lib.from, _deployed,
	]),
	"facts": {"minHours": cfg.minHours, "deployedToSourceAt": _deployed},
} if {
	cfg.minHours > 0
	is_string(_deployed)
	not deployed_ns
}

deny contains {
	"id": "soak.too_short",
	"msg": sprintf("%s needs the artifact to have soaked %vh in %s; it was deployed there at %s, %vh ago, so it can be promoted from %s", [
		data.promo.lib.to, cfg.minHours, data.promo.lib.from,
		_deployed,
		data.promo.lib.hours_between(deployed_ns, data.promo.lib.now_ns),
		time.format(deployed_ns + data.promo.lib.hours_ns(cfg.minHours)),
	]),
	"facts": {
		"minHours": cfg.minHours,
		"deployedToSourceAt": _deployed,
		"soakedHours": data.promo.lib.hours_between(deployed_ns, data.promo.lib.now_ns),
	},
} if {
	cfg.minHours > 0
	data.promo.lib.now_ns - deployed_ns < data.promo.lib.hours_ns(cfg.minHours)
}
