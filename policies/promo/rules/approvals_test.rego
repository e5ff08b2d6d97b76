package promo.approvals_test

import data.promo.fixtures_test as f
import data.promo.rules.approvals

rm(who, at) := f.approval(who, ["release-manager"], at)

sre(who, at) := f.approval(who, ["sre"], at)

deny_ids(req) := ids if {
	ids := f.ids(approvals.deny) with input as f.input_for(req)
}

warn_ids(req) := ids if {
	ids := f.ids(approvals.warn) with input as f.input_for(req)
}

denies(req) := ds if {
	ds := approvals.deny with input as f.input_for(req)
}

# ---- approvals.min_count

test_prod_two_approvals_allowed if {
	deny_ids(f.prod_request) == []
	warn_ids(f.prod_request) == []
}

test_prod_one_approval_denied if {
	deny_ids(f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z")])) == ["approvals.min_count"]
}

test_prod_without_release_manager_denied if {
	req := f.prod_with("approvals", [sre("carol", "2026-11-26T17:30:00Z"), f.approval("dave", ["developer"], "2026-11-26T17:00:00Z")])
	deny_ids(req) == ["approvals.min_count"]
	some d in denies(req)
	contains(d.msg, "none of them has role release-manager")
}

test_prod_approver_without_roles_counts_allowed if {
	req := f.prod_with("approvals", [
		rm("alice", "2026-11-26T17:30:00Z"),
		{"approver": "dave", "decision": "approved", "at": "2026-11-26T17:00:00Z"},
	])
	deny_ids(req) == []
}

test_same_approver_twice_counted_once_denied if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), rm("alice", "2026-11-26T17:40:00Z")])
	deny_ids(req) == ["approvals.min_count"]
}

test_approver_names_case_insensitive_denied if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), rm("ALICE", "2026-11-26T17:40:00Z")])
	deny_ids(req) == ["approvals.min_count"]
}

test_non_distinct_config_counts_entries_allowed if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), rm("alice", "2026-11-26T17:40:00Z")])
	ids := f.ids(approvals.deny) with input as f.input_for(req)
		with data.promo.config.environments.prod.approvals.distinctApprovers as false
	ids == []
}

test_staging_one_approval_allowed if {
	deny_ids(f.staging_request) == []
}

test_staging_no_approval_denied if {
	deny_ids(f.staging_with("approvals", [])) == ["approvals.min_count"]
}

test_staging_missing_approvals_field_denied if {
	deny_ids(object.remove(f.staging_request, ["approvals"])) == ["approvals.min_count"]
}

test_min_count_message_names_counted_and_author_denied if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), rm("bob", "2026-11-26T17:40:00Z")])
	some d in denies(req)
	d.id == "approvals.min_count"
	d.msg == "prod needs 2 approvals from distinct approvers incl. release-manager; counted 1: alice (bob is the author and cannot approve)"
	d.facts.required == 2
	[c.approver | some c in d.facts.counted] == ["alice"]
	d.facts.notCounted == [{"approver": "bob", "at": "2026-11-26T17:40:00Z", "reasons": ["author"]}]
}

test_eligible_roles_config_excludes_others_denied if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), f.approval("dave", ["developer"], "2026-11-26T17:00:00Z")])
	ds := approvals.deny with input as f.input_for(req)
		with data.promo.config.environments.prod.approvals.eligibleRoles as ["release-manager", "sre"]
	f.ids(ds) == ["approvals.min_count"]
	some d in ds
	contains(d.msg, "dave holds none of the roles allowed to approve here")
}

test_eligible_roles_config_met_allowed if {
	ids := f.ids(approvals.deny) with input as f.input_for(f.prod_request)
		with data.promo.config.environments.prod.approvals.eligibleRoles as ["release-manager", "sre"]
	ids == []
}

test_unknown_target_environment_silent_allowed if {
	deny_ids(f.prod_with("to", "production")) == []
}

# ---- approvals.self_approval

test_author_approval_denied if {
	req := f.prod_with("approvals", array.concat(f.prod_request.approvals, [rm("bob", "2026-11-26T17:50:00Z")]))
	deny_ids(req) == ["approvals.self_approval"]
}

test_author_approval_case_insensitive_denied if {
	req := f.staging_with("approvals", [f.approval("Bob", ["tech-lead"], "2026-11-26T17:50:00Z")])
	deny_ids(req) == ["approvals.min_count", "approvals.self_approval"]
}

test_self_approval_message_says_it_does_not_count_denied if {
	req := f.prod_with("approvals", array.concat(f.prod_request.approvals, [rm("bob", "2026-11-26T17:50:00Z")]))
	some d in denies(req)
	d.id == "approvals.self_approval"
	contains(d.msg, "never counts")
	d.facts.author == "bob"
}

test_author_rejection_is_not_self_approval_allowed if {
	req := f.prod_with("approvals", array.concat(f.prod_request.approvals, [f.rejection("bob", [], "2026-11-26T17:50:00Z")]))
	deny_ids(req) == []
}

# ---- approvals.stale

test_stale_approval_leaving_count_short_denied if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), sre("carol", "2026-11-25T12:00:00Z")])
	deny_ids(req) == ["approvals.min_count", "approvals.stale"]
	warn_ids(req) == []
}

test_stale_approval_with_enough_fresh_warned if {
	req := f.prod_with("approvals", array.concat(f.prod_request.approvals, [sre("dave", "2026-11-25T16:00:00Z")]))
	deny_ids(req) == []
	warn_ids(req) == ["approvals.stale"]
}

test_approval_exactly_max_age_allowed if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), sre("carol", "2026-11-25T18:00:00Z")])
	deny_ids(req) == []
	warn_ids(req) == []
}

test_approval_one_second_past_max_age_denied if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), sre("carol", "2026-11-25T17:59:59Z")])
	deny_ids(req) == ["approvals.min_count", "approvals.stale"]
}

test_max_age_comes_from_config_allowed if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), sre("carol", "2026-11-25T12:00:00Z")])
	ids := f.ids(approvals.deny) with input as f.input_for(req)
		with data.promo.config.environments.prod.approvals.maxAgeHours as 48
	ids == []
}

test_future_dated_approval_not_counted_denied if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), sre("carol", "2026-11-26T18:45:00Z")])
	deny_ids(req) == ["approvals.min_count"]
}

test_unreadable_approval_time_not_counted_denied if {
	req := f.prod_with("approvals", [rm("alice", "2026-11-26T17:30:00Z"), sre("carol", "2026-13-45T10:00:00Z")])
	deny_ids(req) == ["approvals.min_count"]
}

# ---- approvals.rejected

test_rejection_by_eligible_approver_denied if {
	req := f.prod_with("approvals", array.concat(f.prod_request.approvals, [f.rejection("dave", ["sre"], "2026-11-26T17:15:00Z")]))
	deny_ids(req) == ["approvals.rejected"]
}

test_rejection_by_approver_who_also_approved_denied if {
	req := f.prod_with("approvals", array.concat(f.prod_request.approvals, [f.rejection("carol", ["sre"], "2026-11-26T17:55:00Z")]))
	deny_ids(req) == ["approvals.rejected"]
}

test_stale_rejection_ignored_allowed if {
	req := f.prod_with("approvals", array.concat(f.prod_request.approvals, [f.rejection("dave", ["sre"], "2026-11-24T17:15:00Z")]))
	deny_ids(req) == []
	warn_ids(req) == []
}

test_rejection_facts_list_ignored_ones_denied if {
	req := f.prod_with("approvals", array.concat(f.prod_request.approvals, [
		f.rejection("dave", ["sre"], "2026-11-26T17:15:00Z"),
		f.rejection("erin", ["sre"], "2026-11-24T17:15:00Z"),
	]))
	some d in denies(req)
	d.id == "approvals.rejected"
	[r.approver | some r in d.facts.rejections] == ["dave"]
	d.facts.ignored == [{"approver": "erin", "at": "2026-11-24T17:15:00Z", "reasons": ["stale"]}]
}

# The engine maps every name to an identity key (engine/identity.rs); the rules compare
# keys, so any spelling the engine folds together is one person here.
test_names_compare_by_identity_key if {
	req := f.prod_with("approvals", [rm("B0B-lookalike", "2026-11-26T17:00:00Z"), sre("carol", "2026-11-26T17:10:00Z"), sre("carol-2", "2026-11-26T17:20:00Z")])
	keys := {"bob": "bob", "B0B-lookalike": "bob", "carol": "carol", "carol-2": "carol"}
	ids := f.ids(approvals.deny) with input as object.union(f.input_for(req), {"identities": keys})
	ids == ["approvals.min_count", "approvals.self_approval"]
}
