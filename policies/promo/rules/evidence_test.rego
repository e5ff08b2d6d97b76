package promo.evidence_test

import data.promo.fixtures_test as f
import data.promo.rules.approvals
import data.promo.rules.checks
import data.promo.rules.evidence
import data.promo.rules.slo

# A request judged with exactly the signed evidence given (none of its claims mirrored).
with_evidence(req, ev) := f.verified_input_at(req, f.now, {
	"attestations": [f.provenance_for(req)],
	"rejected": [],
	"evidence": object.union({"approvals": [], "checks": [], "slo": null}, ev),
})

no_evidence(req) := with_evidence(req, {})

all_ids(inp) := ids if {
	ids := f.ids(array.concat(array.concat(
		[e | some e in approvals.deny],
		[e | some e in checks.deny],
	), array.concat(
		[e | some e in slo.deny],
		[e | some e in evidence.deny],
	))) with input as inp
}

by_id(set, id) := [e | some e in set; e.id == id]

full := f.evidence_for(f.prod_request, f.now)

# ---- signed mode (prod): claims alone count for nothing

test_prod_claims_without_signatures_denied if {
	all_ids(no_evidence(f.prod_request)) == ["approvals.min_count", "checks.missing", "checks.missing", "slo.inconclusive"]
}

test_unsigned_approval_claims_are_named if {
	ds := approvals.deny with input as no_evidence(f.prod_request)
	count(ds) == 1
	some d in ds
	contains(d.msg, "alice's approval is only claimed in the request and prod counts signed approvals only")
	{r | some n in d.facts.notCounted; some r in n.reasons} == {"unsigned"}
}

test_unsigned_check_claims_are_named if {
	ds := checks.deny with input as no_evidence(f.prod_request)
	some d in ds
	d.facts.check == "smoke"
	contains(d.msg, "passed run at 2026-11-26T10:00:00Z is only claimed in the request and prod counts signed results only")
}

test_unsigned_slo_claim_is_named if {
	ds := slo.deny with input as no_evidence(f.prod_request)
	count(ds) == 1
	some d in ds
	d.id == "slo.inconclusive"
	contains(d.msg, "the request's figures are a claim and only a signed SLO snapshot counts here")
}

test_signed_evidence_alone_allowed if {
	req := object.remove(f.prod_request, ["approvals", "checks", "slo"])
	all_ids(with_evidence(req, full)) == []
}

test_signed_approval_for_another_promotion_not_counted if {
	moved := [object.union(a, {"from": "dev", "to": "staging"}) | some a in full.approvals]
	ids := all_ids(with_evidence(f.prod_request, object.union(full, {"approvals": moved})))
	ids == ["approvals.min_count"]
}

test_signed_rejection_denied if {
	rejection := f.signed_approval(f.prod_request, f.rejection("dave", ["sre"], "2026-11-26T17:00:00Z"))
	ev := object.union(full, {"approvals": array.concat(full.approvals, [rejection])})
	all_ids(with_evidence(f.prod_request, ev)) == ["approvals.rejected"]
}

test_claimed_rejection_still_blocks_where_only_signed_approvals_count if {
	req := f.prod_with("approvals", array.concat(f.prod_request.approvals, [f.rejection("dave", ["sre"], "2026-11-26T17:00:00Z")]))
	all_ids(with_evidence(req, full)) == ["approvals.rejected"]
}

test_signed_self_approval_by_lookalike_denied if {
	self := f.signed_approval(f.prod_request, f.approval("B\u200bob", ["sre"], "2026-11-26T17:00:00Z"))
	ev := object.union(full, {"approvals": array.concat(full.approvals, [self])})
	inp := object.union(with_evidence(f.prod_request, ev), {"identities": {"bob": "bob", "B\u200bob": "bob", "alice": "alice", "carol": "carol"}})
	all_ids(inp) == ["approvals.self_approval"]
}

test_stale_signed_snapshot_is_inconclusive if {
	old := object.union(full.slo, {"measuredAt": "2026-11-26T17:29:59Z"})
	ds := slo.deny with input as with_evidence(f.prod_request, object.union(full, {"slo": old}))
	count(ds) == 1
	some d in ds
	d.id == "slo.inconclusive"
	d.facts.notes == ["the signed SLO snapshot was measured at 2026-11-26T17:29:59Z, more than 30 minutes before the evaluation time"]
}

test_snapshot_exactly_max_age_counts if {
	edge := object.union(full.slo, {"measuredAt": "2026-11-26T17:30:00Z"})
	all_ids(with_evidence(f.prod_request, object.union(full, {"slo": edge}))) == []
}

test_future_signed_snapshot_is_inconclusive if {
	later := object.union(full.slo, {"measuredAt": "2026-11-26T18:00:01Z"})
	ds := slo.deny with input as with_evidence(f.prod_request, object.union(full, {"slo": later}))
	count(ds) == 1
	some d in ds
	d.facts.notes == ["the signed SLO snapshot is dated 2026-11-26T18:00:01Z, after the evaluation time"]
}

test_signed_fast_burn_denied_whatever_the_claim_says if {
	burning := object.union(full.slo, {"burnRates": object.union(full.slo.burnRates, {"1h": 20, "5m": 20})})
	req := object.remove(f.prod_request, ["slo"])
	all_ids(with_evidence(req, object.union(full, {"slo": burning}))) == ["slo.fast_burn"]
}

# ---- evidence.contradicted

test_contradicted_approval_denied if {
	rejected := [object.union(a, {"decision": "rejected"}) | some a in full.approvals; a.approver == "alice"]
	others := [a | some a in full.approvals; a.approver != "alice"]
	ev := object.union(full, {"approvals": array.concat(others, rejected)})
	ds := evidence.deny with input as with_evidence(f.prod_request, ev)
	count(ds) == 1
	some d in ds
	d.msg == "the request contradicts signed evidence: alice approved as release-manager (claimed), but approval-bot-ed25519 signed that alice rejected as release-manager; correct or remove the claim (the signed evidence is what counts)"
}

test_claimed_role_the_signed_approval_does_not_give_is_contradicted if {
	plain := [object.union(a, {"roles": []}) | some a in full.approvals; a.approver == "alice"]
	others := [a | some a in full.approvals; a.approver != "alice"]
	ev := object.union(full, {"approvals": array.concat(others, plain)})
	ids := all_ids(with_evidence(f.prod_request, ev))
	ids == ["approvals.min_count", "evidence.contradicted"]
}

test_contradicted_check_denied if {
	failed := [object.union(c, {"status": "failed"}) | some c in full.checks; c.name == "canary"]
	others := [c | some c in full.checks; c.name != "canary"]
	ev := object.union(full, {"checks": array.concat(others, failed)})
	ds := evidence.deny with input as with_evidence(f.prod_request, ev)
	count(ds) == 1
	some d in ds
	d.msg == "the request contradicts signed evidence: canary passed in staging at 2026-11-26T14:00:00Z (claimed), but checks-ci-ed25519 signed that run as failed; correct or remove the claim (the signed evidence is what counts)"
	all_ids(with_evidence(f.prod_request, ev)) == ["checks.failed", "evidence.contradicted"]
}

test_contradicted_slo_figure_denied if {
	spent := object.union(full.slo, {"errorBudgetRemaining": -0.2})
	ds := evidence.deny with input as with_evidence(f.prod_request, object.union(full, {"slo": spent}))
	count(ds) == 1
	some d in ds
	d.facts.slo == [{"figure": "errorBudgetRemaining", "claimed": 0.63, "signed": -0.2}]
	contains(d.msg, "errorBudgetRemaining 0.63 (claimed), but the SLO snapshot slo-bridge-ed25519 signed (measured at 2026-11-26T18:00:00Z) says -0.2")
}

test_contradicted_burn_rate_denied if {
	rates := object.union(full.slo, {"burnRates": object.union(full.slo.burnRates, {"6h": 3})})
	ds := evidence.deny with input as with_evidence(f.prod_request, object.union(full, {"slo": rates}))
	count(ds) == 1
	some d in ds
	d.facts.slo == [{"figure": "burnRates.6h", "claimed": 0.9, "signed": 3}]
}

test_agreeing_claims_allowed if {
	evidence.deny == set() with input as with_evidence(f.prod_request, full)
}

test_keyless_signer_named_by_identity if {
	# object.union would merge the signer objects; replace the signer outright.
	keyless := [object.union(object.remove(a, ["signer"]), {"signer": {"kind": "keyless", "identity": "approvals-workflow"}, "decision": "rejected"}) | some a in full.approvals; a.approver == "carol"]
	others := [a | some a in full.approvals; a.approver != "carol"]
	ds := evidence.deny with input as with_evidence(f.prod_request, object.union(full, {"approvals": array.concat(others, keyless)}))
	count(ds) == 1
	some d in ds
	contains(d.msg, "but approvals-workflow signed that carol rejected")
}

# ---- claims mode (dev, staging checks): claims and signed evidence both count

test_staging_counts_claimed_checks if {
	ids := all_ids(with_evidence(f.staging_request, f.evidence_for(object.remove(f.staging_request, ["checks"]), f.now)))
	ids == []
}

test_staging_approvals_must_be_signed if {
	ids := all_ids(with_evidence(f.staging_request, {}))
	ids == ["approvals.min_count"]
}

test_contradiction_denied_in_claims_mode_too if {
	failed := [object.union(c, {"status": "failed"}) | some c in f.staging_request.checks]
	ev := object.union(f.evidence_for(f.staging_request, f.now), {"checks": failed})
	"evidence.contradicted" in all_ids(with_evidence(f.staging_request, ev))
}

test_a_missing_mode_is_signed if {
	ids := all_ids(no_evidence(f.staging_request)) with data.promo.config.environments.staging.evidence as {"approvals": "claims"}
	ids == ["checks.missing"]
}

# ---- the --explain report

test_report_names_signers_and_what_counted if {
	r := data.promo.lib.evidence_report with input as with_evidence(f.prod_request, object.union(full, {"approvals": [full.approvals[0]]}))
	r.modes == {"approvals": "signed", "checks": "signed", "slo": "signed"}
	r.approvals == [
		{"approver": "alice", "decision": "approved", "at": "2026-11-26T17:30:00Z", "signedBy": "approval-bot-ed25519", "counted": true},
		{"approver": "alice", "decision": "approved", "at": "2026-11-26T17:30:00Z", "signedBy": null, "counted": false},
		{"approver": "carol", "decision": "approved", "at": "2026-11-26T16:45:00Z", "signedBy": null, "counted": false},
	]
	r.checks[0] == {"name": "smoke", "status": "passed", "environment": "staging", "at": "2026-11-26T10:00:00Z", "signedBy": "checks-ci-ed25519", "judged": true}
	r.checks[2].judged == false
	r.slo == {"source": "signed", "signedBy": "slo-bridge-ed25519", "measuredAt": f.now}
}

test_report_in_claims_mode_counts_claims if {
	r := data.promo.lib.evidence_report with input as with_evidence(f.staging_request, {})
	r.modes.checks == "claims"
	r.checks == [{"name": "smoke", "status": "passed", "environment": "dev", "at": "2026-11-26T15:00:00Z", "signedBy": null, "judged": true}]
	r.slo == {"source": "none", "signedBy": null, "measuredAt": null, "note": "no SLO figures"}
}

test_report_says_why_there_are_no_slo_figures if {
	r := data.promo.lib.evidence_report with input as no_evidence(f.prod_request)
	r.slo.note == "the request's figures are a claim and only a signed SLO snapshot counts here"
	old := object.union(full.slo, {"measuredAt": "2026-11-26T17:00:00Z"})
	r2 := data.promo.lib.evidence_report with input as with_evidence(f.prod_request, object.union(full, {"slo": old}))
	r2.slo.source == "none"
	startswith(r2.slo.note, "the signed SLO snapshot was measured at 2026-11-26T17:00:00Z")
}

test_report_with_claimed_slo_in_claims_mode if {
	r := data.promo.lib.evidence_report with input as with_evidence(f.staging_with("slo", f.good_slo), {})
	r.slo == {"source": "claim", "signedBy": null, "measuredAt": null}
}
