# Approvals: enough people other than the author, recently enough, said yes.
#
# Which approvals count is decided once in promo.lib (author, stale, future-dated,
# role not allowed to approve); this package turns that into decisions and messages.
# Every entry carries the counted and not-counted approvals in its facts so a denial
# can be understood without re-reading the request.
package promo.rules.approvals

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {
	"approvals.min_count": "enough distinct, eligible, fresh approvals from people other than the author, with a required role where the environment names one",
	"approvals.self_approval": "the change's author did not approve their own change",
	"approvals.stale": "no approval counted toward the requirement is older than the environment's maximum age",
	"approvals.rejected": "no eligible approver rejected the promotion",
}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference (measured:
# ~110 us per rule package, 4x the cost of the rules themselves).

cfg := data.promo.lib.target.approvals

# Approvals that did not count, with why; rejections are reported by their own rule.
# Where only signed approvals count, a claim nobody signed is listed as "unsigned" (one
# that signed evidence contradicts is evidence.contradicted's to report).
not_counted := array.concat(
	[{"approver": a.approver, "at": a.at, "reasons": sort(data.promo.lib.exclusions(a))} |
		some a in data.promo.lib.approvals
		a.decision == "approved"
		not data.promo.lib.eligible(a)
	],
	[{"approver": a.approver, "at": a.at, "reasons": ["unsigned"]} | some a in _unsigned],
)

_not_counted_clauses := array.concat(
	[data.promo.lib.explain(a) |
		some a in data.promo.lib.approvals
		a.decision == "approved"
		not data.promo.lib.eligible(a)
	],
	[sprintf("%s's approval is only claimed in the request and %s counts signed approvals only", [a.approver, data.promo.lib.to]) | some a in _unsigned],
)

_unsigned := [a | some a in data.promo.lib.unsigned_approvals; a.decision == "approved"]

# Distinct people, not distinct entries: alice approving twice is still one approval.
# By identity, so "Alice" and "ａｌｉｃｅ" cannot pass as two approvers.
counted_number := count({data.promo.lib.id(a.approver) | some a in data.promo.lib.counted}) if {
	object.get(cfg, "distinctApprovers", true)
} else := count(data.promo.lib.counted)

role_met if count(cfg.requiredRoles) == 0

role_met if {
	some a in data.promo.lib.counted
	data.promo.lib.has_any_role(a, cfg.requiredRoles)
}

requirement_met if {
	counted_number >= cfg.minCount
	role_met
}

_facts := {
	"required": cfg.minCount,
	"requiredRoles": cfg.requiredRoles,
	"counted": [{"approver": a.approver, "roles": data.promo.lib.roles(a), "at": a.at} | some a in data.promo.lib.counted],
	"notCounted": not_counted,
}

_need := sprintf("%s needs %s from distinct approvers", [data.promo.lib.to, data.promo.lib.plural(cfg.minCount, "approval")]) if {
	count(cfg.requiredRoles) == 0
} else := sprintf("%s needs %s from distinct approvers incl. %s", [
	data.promo.lib.to,
	data.promo.lib.plural(cfg.minCount, "approval"),
	concat(" or ", cfg.requiredRoles),
])

_got := sprintf("counted %v", [counted_number]) if {
	counted_number == 0
} else := sprintf("counted %v: %s", [counted_number, data.promo.lib.names(data.promo.lib.counted)])

# "None of them" only makes sense when someone was counted.
_role_note := [sprintf("none of them has role %s", [concat(" or ", cfg.requiredRoles)])] if {
	counted_number > 0
	not role_met
} else := []

_why := "" if {
	count(_role_note) + count(_not_counted_clauses) == 0
} else := sprintf(" (%s)", [concat("; ", array.concat(_role_note, _not_counted_clauses))])

deny contains {
	"id": "approvals.min_count",
	"msg": sprintf("%s; %s%s", [_need, _got, _why]),
	"facts": _facts,
} if {
	is_object(cfg) # the target environment is known
	not requirement_met
}

# The author's approval is dropped by promo.lib in any case; this rule makes the attempt
# itself a denial, because approving your own change is a process breach the release
# manager has to see, not a silent no-op.
deny contains {
	"id": "approvals.self_approval",
	"msg": sprintf("%s approved their own change; an author's approval never counts toward the %s %s needs. Remove it and ask someone else to approve", [
		input.request.change.author,
		data.promo.lib.plural(cfg.minCount, "approval"),
		data.promo.lib.to,
	]),
	"facts": {"author": input.request.change.author, "approvals": [{"approver": a.approver, "at": a.at} | some a in _self]},
} if {
	count(_self) > 0
}

# Claimed or signed: an author writing their own approval into the request is the breach,
# whether or not anyone signed it.
_self := [a | some a in _judged; a.decision == "approved"; data.promo.lib.is_author(a)]

# Stale approvals: a DENY when the requirement is not met without them (the approver
# must re-approve, and saying so is more useful than "counted 1"), a WARN when enough
# fresh approvals remain (nothing to do, but an old approval in the request is worth
# knowing about). The author's own stale approval is reported as self-approval instead.
_stale := [a | some a in data.promo.lib.approvals; a.decision == "approved"; data.promo.lib.is_stale(a); not data.promo.lib.is_author(a)]

_stale_msg := sprintf("%s for %s %s older than %vh and %s not count (%s); ask %s to approve again", [
	data.promo.lib.plural(count(_stale), "approval"),
	data.promo.lib.to,
	_is_are(count(_stale)),
	cfg.maxAgeHours,
	_does_do(count(_stale)),
	concat("; ", sort([sprintf("%s approved %s", [a.approver, a.at]) | some a in _stale])),
	data.promo.lib.names(_stale),
])

_is_are(n) := "is" if n == 1 else := "are"

_does_do(n) := "does" if n == 1 else := "do"

_it_them(n) := "it" if n == 1 else := "them"

_stale_facts := {
	"maxAgeHours": cfg.maxAgeHours,
	"stale": [{"approver": a.approver, "at": a.at, "ageHours": data.promo.lib.hours_between(data.promo.lib.ns(a.at), data.promo.lib.now_ns)} | some a in _stale],
	"requirementMet": _met,
}

_met := true if requirement_met else := false

deny contains {"id": "approvals.stale", "msg": _stale_msg, "facts": _stale_facts} if {
	count(_stale) > 0
	not requirement_met
}

warn contains {
	"id": "approvals.stale",
	"msg": sprintf("%s; %s's approval requirement is met without %s", [_stale_msg, data.promo.lib.to, _it_them(count(_stale))]),
	"facts": _stale_facts,
} if {
	count(_stale) > 0
	requirement_met
}

# A rejection only weighs as much as an approval would: the author's, a stale one or one
# from someone not allowed to approve is ignored (and listed in facts).
# A rejection claimed in the request still blocks where only signed approvals count: a
# claim against the promotion cannot be forged into an allow, so honouring it is safe.
_judged := array.concat(data.promo.lib.approvals, data.promo.lib.unsigned_approvals)

_rejections := [a | some a in _judged; a.decision == "rejected"; data.promo.lib.eligible(a)]

deny contains {
	"id": "approvals.rejected",
	"msg": sprintf("%s rejected this promotion to %s; a rejection blocks it until the rejecting approver withdraws it", [
		concat(", ", sort([sprintf("%s (at %s)", [a.approver, a.at]) | some a in _rejections])),
		data.promo.lib.to,
	]),
	"facts": {
		"rejections": [{"approver": a.approver, "roles": data.promo.lib.roles(a), "at": a.at} | some a in _rejections],
		"ignored": [{"approver": a.approver, "at": a.at, "reasons": sort(data.promo.lib.exclusions(a))} |
			some a in _judged
			a.decision == "rejected"
			not data.promo.lib.eligible(a)
		],
	},
} if {
	is_object(cfg)
	count(_rejections) > 0
}
