# Evidence: what the request claims must not contradict what was signed.
#
# The request's approvals, checks and SLO figures are claims; the same facts signed by a
# system the trust file vouches for are evidence (input.verified.evidence, gathered in
# promo.lib). Where a claim and signed evidence speak about the same thing (one person's
# approval of this promotion, one run of a check, one SLO figure) and disagree, someone
# wrote a claim the signed record refutes: that is denied in every environment, whatever
# its evidence mode, because a request that misstates its own evidence is not one to
# promote on.
package promo.rules.evidence

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {"evidence.contradicted": "no approval, check run or SLO figure claimed in the request contradicts signed evidence about the artifact"}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference.

_approval_clauses := [sprintf("%s %s%s (claimed), but %s signed that %s %s%s", [
	x.claim.approver, x.claim.decision, _roles_text(x.claim),
	concat(" and ", sort({data.promo.lib.signer(s) | some s in x.signed})),
	x.claim.approver,
	concat(" and ", sort({s.decision | some s in x.signed})),
	concat("", sort({_roles_text(s) | some s in x.signed})),
]) |
	some x in data.promo.lib.contradicted_approvals
]

_roles_text(a) := "" if {
	count(data.promo.lib.roles(a)) == 0
} else := sprintf(" as %s", [concat(", ", sort(data.promo.lib.roles(a)))])

_check_clauses := [sprintf("%s %s in %s at %s (claimed), but %s signed that run as %s", [
	x.claim.name, x.claim.status, x.claim.environment, x.claim.at,
	concat(" and ", sort({data.promo.lib.signer(s) | some s in x.signed})),
	concat(" and ", sort({s.status | some s in x.signed})),
]) |
	some x in data.promo.lib.contradicted_checks
]

_slo_clauses := [sprintf("%s %v (claimed), but the SLO snapshot %s signed (measured at %s) says %v", [
	x.figure, x.claimed,
	data.promo.lib.signer(data.promo.lib.signed_slo),
	data.promo.lib.signed_slo.measuredAt,
	x.signed,
]) |
	some x in data.promo.lib.contradicted_slo
]

_clauses := array.concat(array.concat(_approval_clauses, _check_clauses), _slo_clauses)

deny contains {
	"id": "evidence.contradicted",
	"msg": sprintf("the request contradicts signed evidence: %s; correct or remove the claim (the signed evidence is what counts)", [concat("; ", _clauses)]),
	"facts": {
		"approvals": [{"claim": x.claim, "signed": [{"signer": data.promo.lib.signer(s), "decision": s.decision, "roles": data.promo.lib.roles(s), "at": s.at} | some s in x.signed]} |
			some x in data.promo.lib.contradicted_approvals
		],
		"checks": [{"claim": x.claim, "signed": [{"signer": data.promo.lib.signer(s), "status": s.status, "at": s.at} | some s in x.signed]} |
			some x in data.promo.lib.contradicted_checks
		],
		"slo": data.promo.lib.contradicted_slo,
	},
} if {
	count(_clauses) > 0
}
