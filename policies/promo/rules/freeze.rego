# Change freezes: during a freeze window for the target environment nothing is promoted,
# except an emergency change that an incident commander has approved (break-glass).
#
# Break-glass is allowed but loud: it is a warning on an allowed decision, so the use is
# recorded in the signed decision and shows up in every report.
package promo.rules.freeze

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {
	"freeze.active": "no change freeze covers the target environment at evaluation time (or an incident commander approved a break-glass change)",
	"freeze.break_glass": "a break-glass promotion during a freeze is reported",
}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference (measured:
# ~110 us per rule package, 4x the cost of the rules themselves).

cfg := data.promo.lib.target.freeze

# Windows are half-open [start, end): a freeze "until 2027-01-04T00:00:00Z" is over at
# that instant, the way people read an end date.
active contains w if {
	some w in cfg.windows
	data.promo.lib.ns(w.start) <= data.promo.lib.now_ns
	data.promo.lib.now_ns < data.promo.lib.ns(w.end)
}

# The break-glass approval must itself count (not the author, not stale, not
# future-dated): otherwise an author could grant themselves the role in the request.
_break_glass_approvers := [a |
	some a in data.promo.lib.counted
	cfg.breakGlassRole in data.promo.lib.roles(a)
]

break_glass if {
	input.request.change.emergency == true
	count(_break_glass_approvers) > 0
}

_emergency := true if input.request.change.emergency == true else := false

deny contains {
	"id": "freeze.active",
	"msg": sprintf("%s is frozen from %s until %s (%s); only an emergency change approved by role %s may be promoted now%s", [
		data.promo.lib.to, w.start, w.end, w.reason,
		cfg.breakGlassRole,
		_freeze_hint,
	]),
	"facts": {"window": w, "emergency": _emergency, "breakGlassRole": cfg.breakGlassRole},
} if {
	some w in active
	not break_glass
}

# Say why an emergency did not qualify, down to the break-glass approval that did not
# count, so the on-call does not have to guess.
_freeze_hint := sprintf(" (this change is marked emergency but has no counted approval from %s%s)", [
	cfg.breakGlassRole,
	_uncounted_break_glass,
]) if {
	_emergency
} else := ""

_uncounted_break_glass := "" if {
	count(_uncounted) == 0
} else := sprintf(": %s", [concat("; ", sort([data.promo.lib.explain(a) | some a in _uncounted]))])

_uncounted := [a |
	some a in data.promo.lib.approvals
	a.decision == "approved"
	cfg.breakGlassRole in data.promo.lib.roles(a)
	not data.promo.lib.eligible(a)
]

warn contains {
	"id": "freeze.break_glass",
	"msg": sprintf("break-glass used: %s is frozen from %s until %s (%s), promoted anyway as emergency change %s approved by %s %s", [
		data.promo.lib.to, w.start, w.end, w.reason,
		object.get(input.request.change, "ticket", "(no ticket)"),
		cfg.breakGlassRole,
		data.promo.lib.names(_break_glass_approvers),
	]),
	"facts": {
		"window": w,
		"ticket": object.get(input.request.change, "ticket", null),
		"approvedBy": [a.approver | some a in _break_glass_approvers],
	},
} if {
	some w in active
	break_glass
}
