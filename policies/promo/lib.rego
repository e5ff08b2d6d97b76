# Shared helpers for the rule packages under promo.rules.
#
# This package emits no deny/warn of its own; it lives outside promo.rules so the
# aggregation in decision.rego never mistakes it for a rule package. Everything that
# more than one rule needs to agree on (what "now" is, which environment's settings
# apply, which approvals count) is defined once here, so two rules can never disagree
# about, say, whether an approval was stale.
package promo.lib

# Time comes only from input.now: the engine pins it per decision so that a decision
# can be replayed byte for byte. Reading the clock here would break replay.
now_ns := time.parse_rfc3339_ns(input.now)

ns(ts) := time.parse_rfc3339_ns(ts)

hours_ns(h) := h * 3600000000000

# Hours to one decimal, rounded DOWN so that 23h59m reads 23.9h, never a passing 24h.
hours_between(earlier_ns, later_ns) := floor(((later_ns - earlier_ns) / 3600000000000) * 10) / 10

config := data.promo.config

from := input.request.from

to := input.request.to

# The settings of the environment being promoted INTO. Undefined for an unknown
# environment: rules that need it then stay silent, and path.unknown_environment denies.
target := config.environments[input.request.to]

# People are compared by identity key, not spelling: the engine maps each name in the
# request to one key per person (case, Unicode compatibility forms, invisible characters,
# combining marks and look-alike letters folded; see engine/identity.rs), so "Bob",
# "ｂｏｂ" and "b\u200bob" approving bob's change are all bob. A name missing from the map
# (policy unit tests build inputs by hand) compares lower-cased.
id(name) := input.identities[name]

id(name) := lower(name) if not input.identities[name]

author := id(input.request.change.author)

approvals := object.get(input.request, "approvals", [])

checks := object.get(input.request, "checks", [])

is_author(a) if id(a.approver) == author

# roles is optional in the request; no roles means no role-based rights.
roles(a) := object.get(a, "roles", [])

# The engine runs builtins non-strict (a bad argument is undefined, not an error), so an
# unparseable timestamp would silently make an approval "not stale". It must not count.
bad_time(ts) if not ns(ts)

# An approval exactly maxAgeHours old still counts; older does not.
is_stale(a) if now_ns - ns(a.at) > hours_ns(target.approvals.maxAgeHours)

# An approval dated after the evaluation time was not given when the decision was made
# (clock skew or a forged record); replaying the decision must not change its meaning.
is_future(a) if ns(a.at) > now_ns

# Optional allow-list: when an environment sets approvals.eligibleRoles, only approvers
# holding one of those roles may approve at all.
role_ineligible(a) if {
	allowed := target.approvals.eligibleRoles
	is_array(allowed)
	not has_any_role(a, allowed)
}

has_any_role(a, wanted) if {
	some r in roles(a)
	r in wanted
}

# Why an approval (or rejection) does not count; empty when it does.
exclusions(a) := union({
	{"author" | is_author(a)},
	{"stale" | is_stale(a)},
	{"future" | is_future(a)},
	{"role" | role_ineligible(a)},
	{"bad_time" | bad_time(a.at)},
})

eligible(a) if count(exclusions(a)) == 0

# Approvals that count toward the environment's requirements, in request order.
counted := [a | some a in approvals; a.decision == "approved"; eligible(a)]

# Why one approval did not count, as a clause for a message. Being the author trumps
# everything else: that is the reason the release manager must act on.
explain(a) := concat("; ", [_clause(a, r) | some r in _explained(a)])

_explained(a) := {"author"} if is_author(a) else := exclusions(a)

_clause(a, "author") := sprintf("%s is the author and cannot approve", [a.approver])

_clause(a, "stale") := sprintf("%s's approval from %s is older than %vh", [a.approver, a.at, target.approvals.maxAgeHours])

_clause(a, "future") := sprintf("%s's approval is dated %s, after the evaluation time", [a.approver, a.at])

_clause(a, "role") := sprintf("%s holds none of the roles allowed to approve here (%s)", [a.approver, concat(", ", target.approvals.eligibleRoles)])

_clause(a, "bad_time") := sprintf("%s's approval time %s is not a valid RFC 3339 time", [a.approver, a.at])

plural(n, word) := sprintf("%v %s", [n, word]) if n == 1

plural(n, word) := sprintf("%v %ss", [n, word]) if n != 1

# Each person once (names compare case-insensitively, as when counting), sorted so the
# message is the same on every run.
names(list) := concat(", ", sort({lower(x.approver) | some x in list}))
