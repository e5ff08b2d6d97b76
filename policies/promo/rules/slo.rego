# SLO gate: do not pile a change on top of a service that is already spending its
# error budget faster than it can afford.
#
# Multiwindow, multi-burn-rate (SRE Workbook, "Alerting on SLOs"): a pair fires only when
# BOTH its long and its short window exceed the threshold. The long window says the
# burn is significant; the short one says it is still happening, so a recovered
# incident stops blocking within minutes instead of hours.
#
# Missing figures are never a pass. Where the target environment requires SLO data
# (slo.required), anything a configured pair or the budget check needs and does not
# get makes the gate inconclusive, which denies. Where it is not required, whatever
# figures are present are still judged: a reported fast burn is a fast burn.
package promo.rules.slo

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {
	"slo.inconclusive": "SLO figures are present where the environment requires them",
	"slo.budget_exhausted": "the service's error budget is not exhausted",
	"slo.fast_burn": "no fast-burn window pair (long and short) exceeds its threshold",
	"slo.slow_burn": "no slow-burn window pair (long and short) exceeds its threshold",
}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference (measured:
# ~110 us per rule package, 4x the cost of the rules themselves).

cfg := data.promo.lib.target.slo

# Signed snapshot or claimed figures, by the environment's evidence mode (promo.lib).
slo := data.promo.lib.slo

# Why figures the request carries were not used.
_notes contains data.promo.lib.slo_unsigned_note

_notes contains data.promo.lib.slo_snapshot_problem

_why := "" if count(_notes) == 0 else := sprintf("; %s", [concat("; ", sort(_notes))])

_rates := slo.burnRates if {
	is_object(slo)
	is_object(slo.burnRates)
} else := {}

# A burn rate that is missing or null is undefined here, never 0.
rate(w) := r if {
	r := _rates[w]
	is_number(r)
}

_pairs := array.concat(cfg.fastBurn, cfg.slowBurn)

# Every figure the configured checks read; the list of what is missing is what the
# team has to go and fix in their SLO export.
missing contains "slo" if not is_object(slo)

missing contains "slo.errorBudgetRemaining" if {
	is_object(slo)
	not is_number(object.get(slo, "errorBudgetRemaining", null))
}

missing contains sprintf("slo.burnRates.%s", [w]) if {
	is_object(slo)
	some p in _pairs
	some w in [p.long, p.short]
	not rate(w)
}

deny contains {
	"id": "slo.inconclusive",
	"msg": sprintf("%s requires SLO data and it is missing or partial (missing: %s%s); the SLO gate cannot pass without it, so publish the figures (as a signed SLO snapshot where only signed evidence counts)", [
		data.promo.lib.to,
		concat(", ", sort(missing)),
		_why,
	]),
	"facts": {"missing": sort(missing), "required": true, "notes": sort(_notes)},
} if {
	cfg.required == true
	count(missing) > 0
}

deny contains {
	"id": "slo.fast_burn",
	"msg": sprintf("the error budget is burning too fast to promote to %s: burn rate %v over %s and %v over %s, both above %v; wait until the burn stops (the %s window recovers first)", [
		data.promo.lib.to,
		long, p.long,
		short, p.short,
		p.threshold,
		p.short,
	]),
	"facts": {"long": p.long, "short": p.short, "threshold": p.threshold, "longRate": long, "shortRate": short},
} if {
	some p in cfg.fastBurn
	long := rate(p.long)
	short := rate(p.short)
	long > p.threshold
	short > p.threshold
}

# A slow burn spends the budget over days: worth telling the team, not worth blocking
# a promotion that may well be the fix.
warn contains {
	"id": "slo.slow_burn",
	"msg": sprintf("promoting to %s while the error budget burns slowly: burn rate %v over %s and %v over %s, both above %v; at this pace the budget runs out before the SLO window ends", [
		data.promo.lib.to,
		long, p.long,
		short, p.short,
		p.threshold,
	]),
	"facts": {"long": p.long, "short": p.short, "threshold": p.threshold, "longRate": long, "shortRate": short},
} if {
	some p in cfg.slowBurn
	long := rate(p.long)
	short := rate(p.short)
	long > p.threshold
	short > p.threshold
}

deny contains {
	"id": "slo.budget_exhausted",
	"msg": sprintf("the error budget is exhausted (remaining %v, limit %v); %s takes no promotions until the budget recovers", [
		remaining,
		cfg.budgetExhaustedAt,
		data.promo.lib.to,
	]),
	"facts": {"errorBudgetRemaining": remaining, "budgetExhaustedAt": cfg.budgetExhaustedAt},
} if {
	is_object(slo)
	remaining := slo.errorBudgetRemaining
	is_number(remaining)
	remaining <= cfg.budgetExhaustedAt
}
