# The one entry point the engine evaluates: data.promo.decision.
#
# It gathers the deny and warn sets of every package under promo.rules, so adding a
# policy means adding a package there; neither this file nor the engine changes.
# It never decides anything itself beyond "allow only when nothing denies".
#
# Test packages live OUTSIDE promo.rules (promo.<name>_test): regorus materialises the
# whole data.promo.rules tree when it enumerates package names, so a test package in
# there would have its tests run during every decision, and a test that evaluates the
# decision would recurse into itself.
package promo

# INVARIANT: every entry a rule package emits ends up in deny/warn, even a malformed
# one. A deny that is not a {"id", "msg"} object (say a conftest-style string) is
# wrapped, never dropped: dropping it would turn a deny into an allow.
_deny_raw contains [name, v] if {
	some name in _packages
	d := data.promo.rules[name].deny
	_collection(d)
	some v in d
}

# A package that wrote `deny if ...` (a boolean) or `deny := "text"` has a single
# value, not a collection; iterating it would yield nothing and fail open.
_deny_raw contains [name, d] if {
	some name in _packages
	d := data.promo.rules[name].deny
	not _collection(d)
	d != false
}

_warn_raw contains [name, v] if {
	some name in _packages
	w := data.promo.rules[name].warn
	_collection(w)
	some v in w
}

# The names under promo.rules. The engine lists them when it loads the bundle
# (data.promo.engine.rulePackages), so that a decision evaluates each package's deny and
# warn only; enumerating data.promo.rules (the fallback, e.g. under OPA) gives the same
# names but evaluates every rule of every package to find them, twice the time.
_packages := {n | some n in data.promo.engine.rulePackages} if {
	is_array(data.promo.engine.rulePackages)
} else := {n | some n, _ in data.promo.rules}

# regorus raises an error (OPA would be undefined) on `some v in true`, so check first.
_collection(x) if is_set(x)

_collection(x) if is_array(x)

_collection(x) if is_object(x)

_well_formed(v) if {
	is_object(v)
	is_string(v.id)
	is_string(v.msg)
}

# Messages stay readable in a terminal, a PR comment and a Kubernetes status; the
# full story belongs in facts, which are not clipped.
_max_msg := 1024

_clip(msg) := msg if {
	count(msg) <= _max_msg
} else := concat("", [substring(msg, 0, _max_msg - 3), "..."])

# Sorted by id, then msg, then the whole entry, so the arrays are identical on every
# run and every engine.
_sorted(raw) := [e |
	some x in sort([[n.id, n.msg, n] | some [name, v] in raw; n := _normalize(name, v)])
	e := x[2]
]

_normalize(name, v) := object.union(v, {"msg": _clip(v.msg)}) if {
	_well_formed(v)
} else := {
	"id": "policy.malformed_violation",
	"msg": _clip(sprintf("rule package promo.rules.%s emitted an entry that is not an object with string id and msg: %v", [name, v])),
	"facts": {"package": name, "entry": v},
}

deny := _sorted(_deny_raw)

warn := _sorted(_warn_raw)

# Counted on the raw set as well as the sorted array: allow must not depend on the
# formatting step succeeding for every entry.
allow := true if {
	count(_deny_raw) == 0
	count(deny) == 0
} else := false

decision := {"allow": allow, "deny": deny, "warn": warn}
