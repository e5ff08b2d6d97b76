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

# Where approvals, checks and SLO figures come from (CONTRACT §2d). The request's
# `approvals`, `checks` and `slo` are claims of whoever wrote it; input.verified.evidence
# holds the same kinds of facts signed by a system the trust file vouches for (the engine
# verified the signature, the signer's grants and that the statement is about this
# artifact). Per target environment and kind, `evidence` says whether claims count too
# ("claims") or only signed evidence does ("signed"). Anything but "claims" is "signed":
# a missing or misspelt mode fails closed.
signed_only(kind) if not target.evidence[kind] == "claims"

_evidence := object.get(object.get(input, "verified", {}), "evidence", {})

# Who signed a piece of evidence: the trust file's id of the key or keyless identity.
signer(e) := object.get(e.signer, "id", object.get(e.signer, "identity", "an unnamed signer"))

# --- approvals ---

claimed_approvals := object.get(input.request, "approvals", [])

# A signed approval speaks for one promotion: approving staging -> prod proves nothing
# about dev -> staging.
signed_approvals := [a | some a in object.get(_evidence, "approvals", []); a.from == from; a.to == to]

# The approvals the rules judge: signed ones, plus the request's claims where they count.
approvals := signed_approvals if signed_only("approvals") else := array.concat(claimed_approvals, signed_approvals)

# A claim agrees with a signed approval by the same person when the decision is the same
# and every role it claims is one the signed approval gives.
_approval_agrees(claim, s) if {
	id(s.approver) == id(claim.approver)
	s.decision == claim.decision
	every r in roles(claim) {
		r in roles(s)
	}
}

_signed_by(claim) := [s | some s in signed_approvals; id(s.approver) == id(claim.approver)]

# Claims that signed evidence about the same person contradicts (another decision or a
# role the signed approval does not give).
contradicted_approvals := [{"claim": c, "signed": _signed_by(c)} |
	some c in claimed_approvals
	count(_signed_by(c)) > 0
	not _approval_backed(c)
]

_approval_backed(claim) if {
	some s in signed_approvals
	_approval_agrees(claim, s)
}

# Claims that count for nothing where only signed approvals count: nobody signed them.
unsigned_approvals := [c |
	signed_only("approvals")
	some c in claimed_approvals
	count(_signed_by(c)) == 0
]

# --- checks ---

claimed_checks := object.get(input.request, "checks", [])

signed_checks := object.get(_evidence, "checks", [])

# The check runs the rules judge: signed ones, plus the request's claims where they count.
checks := signed_checks if signed_only("checks") else := array.concat(claimed_checks, signed_checks)

# The same run: one check, one environment, one time.
_same_run(claim, s) if {
	s.name == claim.name
	s.environment == object.get(claim, "environment", null)
	ns(s.at) == ns(claim.at)
}

_runs_of(claim) := [s | some s in signed_checks; _same_run(claim, s)]

# Claims whose run was signed with another outcome.
contradicted_checks := [{"claim": c, "signed": _runs_of(c)} |
	some c in claimed_checks
	count(_runs_of(c)) > 0
	not _check_backed(c)
]

_check_backed(claim) if {
	some s in _runs_of(claim)
	s.status == claim.status
}

unsigned_checks := [c |
	signed_only("checks")
	some c in claimed_checks
	count(_runs_of(c)) == 0
]

# --- SLO ---

claimed_slo := object.get(input.request, "slo", null)

_signed_slo := s if {
	s := object.get(_evidence, "slo", null)
	is_object(s)
}

# A snapshot describes the service when it was measured: older than the environment's
# maxAgeMinutes (or dated after the evaluation time) it says nothing about now.
slo_snapshot_problem := sprintf("the signed SLO snapshot was measured at %s, more than %v minutes before the evaluation time", [_signed_slo.measuredAt, target.slo.maxAgeMinutes]) if {
	now_ns - ns(_signed_slo.measuredAt) > target.slo.maxAgeMinutes * 60000000000
} else := sprintf("the signed SLO snapshot is dated %s, after the evaluation time", [_signed_slo.measuredAt]) if {
	ns(_signed_slo.measuredAt) > now_ns
}

signed_slo := _signed_slo if not slo_snapshot_problem

# The figures the SLO gate judges: a usable signed snapshot wins; where claims count, the
# request's figures stand in for a missing one; else nothing (inconclusive).
slo := signed_slo if {
	signed_slo
} else := null if {
	signed_only("slo")
} else := claimed_slo

# Why the SLO gate has no figures although the request carries some, for its message.
slo_unsigned_note := "the request's figures are a claim and only a signed SLO snapshot counts here" if {
	not _signed_slo
	signed_only("slo")
	is_object(claimed_slo)
}

# Figures claimed in the request that a usable signed snapshot gives otherwise.
contradicted_slo := [{"figure": p[0], "claimed": p[1], "signed": p[2]} |
	some p in _slo_pairs
	p[1] != p[2]
]

_slo_pairs contains ["errorBudgetRemaining", c, s] if {
	is_object(claimed_slo)
	c := claimed_slo.errorBudgetRemaining
	s := signed_slo.errorBudgetRemaining
	is_number(c)
	is_number(s)
}

_slo_pairs contains [sprintf("burnRates.%s", [w]), c, s] if {
	is_object(claimed_slo)
	some w, c in object.get(claimed_slo, "burnRates", {})
	s := signed_slo.burnRates[w]
	is_number(c)
	is_number(s)
}

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

# --- for `eval --explain` ---

# Where each approval, check run and the SLO figures came from (a signed statement and its
# signer, or the request's claim) and whether the gates counted it: what an auditor asks
# of a decision. Read by the CLI, never by a gate.
evidence_report := {
	"modes": {k: _mode(k) | some k in ["approvals", "checks", "slo"]},
	"approvals": array.concat(
		[_approval_line(a, signer(a)) | some a in signed_approvals],
		[_approval_line(a, null) | some a in claimed_approvals],
	),
	"checks": array.concat(
		[_check_line(c, signer(c)) | some c in signed_checks],
		[_check_line(c, null) | some c in claimed_checks],
	),
	"slo": _slo_line,
}

_mode(k) := "signed" if signed_only(k) else := "claims"

_approval_line(a, by) := {
	"approver": a.approver,
	"decision": a.decision,
	"at": a.at,
	"signedBy": by,
	"counted": _counted(a),
}

_counted(a) if {
	a in approvals
	eligible(a)
} else := false

_check_line(c, by) := {
	"name": c.name,
	"status": c.status,
	"environment": object.get(c, "environment", null),
	"at": object.get(c, "at", null),
	"signedBy": by,
	"judged": c in checks,
}

_slo_line := {"source": "signed", "signedBy": signer(signed_slo), "measuredAt": signed_slo.measuredAt} if {
	signed_slo
} else := {"source": "claim", "signedBy": null, "measuredAt": null} if {
	is_object(slo)
} else := {"source": "none", "signedBy": null, "measuredAt": null, "note": _slo_none_note}

_slo_none_note := slo_snapshot_problem if {
	slo_snapshot_problem
} else := slo_unsigned_note if {
	slo_unsigned_note
} else := "no SLO figures"
