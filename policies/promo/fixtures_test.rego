# Shared fixtures for the unit tests: requests that pass every gate at `now`, which each
# test bends in exactly one way. No test_* rules here; it is a *_test.rego file only so
# that the engine never loads it for a real decision.
package promo.fixtures_test

now := "2026-11-26T18:00:00Z"

digest := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

good_slo := {
	"objective": 0.999,
	"window": "30d",
	"errorBudgetRemaining": 0.63,
	"burnRates": {"5m": 0.4, "30m": 0.5, "1h": 0.7, "6h": 0.9, "3d": 0.8},
}

# staging -> prod, passing every gate at `now`.
prod_request := {
	"apiVersion": "promo-policy/v1",
	"kind": "PromotionRequest",
	"id": "req-unit-prod",
	"requestedAt": "2026-11-26T17:58:00Z",
	"artifact": {
		"name": "registry.example.com/payments/api",
		"digest": {"sha256": digest},
		"version": "1.42.0",
	},
	"from": "staging",
	"to": "prod",
	"change": {"type": "app", "author": "bob", "ticket": "CHG-1234", "emergency": false},
	"attestations": [],
	"slo": good_slo,
	"approvals": [
		{"approver": "alice", "roles": ["release-manager"], "decision": "approved", "at": "2026-11-26T17:30:00Z"},
		{"approver": "carol", "roles": ["sre"], "decision": "approved", "at": "2026-11-26T16:45:00Z"},
	],
	"checks": [
		{"name": "smoke", "status": "passed", "environment": "staging", "at": "2026-11-26T10:00:00Z"},
		{"name": "canary", "status": "passed", "environment": "staging", "at": "2026-11-26T14:00:00Z"},
	],
	"deployedToSourceAt": "2026-11-25T09:00:00Z",
}

# dev -> staging, passing every gate at `now` (no SLO data: staging does not require it).
staging_request := {
	"apiVersion": "promo-policy/v1",
	"kind": "PromotionRequest",
	"id": "req-unit-staging",
	"requestedAt": "2026-11-26T17:58:00Z",
	"artifact": {
		"name": "registry.example.com/payments/api",
		"digest": {"sha256": digest},
		"version": "1.42.0",
	},
	"from": "dev",
	"to": "staging",
	"change": {"type": "app", "author": "bob", "ticket": "CHG-1234"},
	"attestations": [],
	"approvals": [{"approver": "carol", "roles": ["tech-lead"], "decision": "approved", "at": "2026-11-26T16:00:00Z"}],
	"checks": [{"name": "smoke", "status": "passed", "environment": "dev", "at": "2026-11-26T15:00:00Z"}],
	"deployedToSourceAt": "2026-11-26T13:00:00Z",
}

# The input the engine builds around a request: by default one verified SLSA
# provenance for the request's own artifact, from an accepted builder and source, and
# the request's approvals, checks and SLO figures also signed as evidence (as the
# approval bot, CI and monitoring bridge would), so the gates judge the same facts in
# every evidence mode. Tests of the modes themselves build `evidence` by hand.
input_at(request, t) := verified_input_at(request, t, {
	"attestations": [provenance_for(request)],
	"rejected": [],
	"evidence": evidence_for(request, t),
})

signed_by(id) := {"kind": "key", "id": id}

evidence_for(request, t) := {
	"approvals": [signed_approval(request, a) | some a in object.get(request, "approvals", [])],
	"checks": [object.union(c, {"signer": signed_by("checks-ci-ed25519")}) | some c in object.get(request, "checks", [])],
	"slo": signed_slo(object.get(request, "slo", null), t),
}

# A claimed approval as the approval bot signs it: for this promotion, roles spelt out.
signed_approval(request, a) := object.union(a, {
	"from": request.from,
	"to": request.to,
	"roles": object.get(a, "roles", []),
	"signer": signed_by("approval-bot-ed25519"),
})

signed_slo(slo, t) := object.union(slo, {"measuredAt": t, "signer": signed_by("slo-bridge-ed25519")}) if is_object(slo)

else := null

verified_input_at(request, t, verified) := {
	"request": request,
	"verified": verified,
	"plugins": {},
	"now": t,
}

builder := "https://ci.example.com/builders/release@v2"

source_repo := "https://github.com/example/payments-api"

# What the engine puts in input.verified.attestations for a verified SLSA v1 provenance.
provenance(subject_digest, matches, builder_id, repo) := {
	"index": 0,
	"keyid": "11604f22991217c399e3aef4081baea7464790e35fe2e2a6a652a32685bfd935",
	"signer": {"kind": "key", "id": "ci-builder-ed25519"},
	"signers": ["ci-builder-ed25519"],
	"predicateType": "https://slsa.dev/provenance/v1",
	"subject": [{"name": "registry.example.com/payments/api", "digest": subject_digest}],
	"subjectMatches": matches,
	"predicate": {},
	"provenance": {
		"builderId": builder_id,
		"buildType": "https://ci.example.com/buildtypes/container@v1",
		"sourceRepo": repo,
		"sourceCommit": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d",
	},
	"envelopeDigest": {"sha256": "00"},
}

provenance_for(request) := provenance(request.artifact.digest, true, builder, source_repo)

input_for(request) := input_at(request, now)

# A request with one top-level field replaced outright (object.union would merge
# nested objects, leaving e.g. the old sha256 next to a new digest).
prod_with(field, value) := replaced(prod_request, field, value)

staging_with(field, value) := replaced(staging_request, field, value)

replaced(obj, field, value) := object.union(object.remove(obj, [field]), {field: value})

# A prod request without one top-level field.
prod_without(field) := object.remove(prod_request, [field])

approval(who, roles, at) := {"approver": who, "roles": roles, "decision": "approved", "at": at}

rejection(who, roles, at) := {"approver": who, "roles": roles, "decision": "rejected", "at": at}

check(name, status, env, at) := {"name": name, "status": status, "environment": env, "at": at}

# Sorted ids of a deny or warn set, duplicates kept.
ids(entries) := sort([e.id | some e in entries])
