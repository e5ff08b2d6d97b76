package promo.checks_test

import data.promo.fixtures_test as f
import data.promo.rules.checks

deny_ids(req) := ids if {
	ids := f.ids(checks.deny) with input as f.input_for(req)
}

denies(req) := ds if {
	ds := checks.deny with input as f.input_for(req)
}

with_checks(cs) := f.prod_with("checks", cs)

smoke_ok := f.check("smoke", "passed", "staging", "2026-11-26T10:00:00Z")

canary_ok := f.check("canary", "passed", "staging", "2026-11-26T14:00:00Z")

test_smoke_and_canary_passed_allowed if {
	deny_ids(f.prod_request) == []
}

test_staging_smoke_passed_in_dev_allowed if {
	deny_ids(f.staging_request) == []
}

# ---- checks.missing

test_canary_missing_denied if {
	deny_ids(with_checks([smoke_ok])) == ["checks.missing"]
	some d in denies(with_checks([smoke_ok]))
	d.facts.check == "canary"
}

test_no_checks_one_entry_per_check_denied if {
	deny_ids(with_checks([])) == ["checks.missing", "checks.missing"]
}

test_checks_field_absent_denied if {
	deny_ids(f.prod_without("checks")) == ["checks.missing", "checks.missing"]
}

test_passed_in_wrong_environment_denied if {
	req := with_checks([smoke_ok, f.check("canary", "passed", "dev", "2026-11-26T14:00:00Z")])
	deny_ids(req) == ["checks.missing"]
	some d in denies(req)
	contains(d.msg, "ran in dev, not staging")
}

test_pending_denied if {
	req := with_checks([smoke_ok, f.check("canary", "pending", "staging", "2026-11-26T14:00:00Z")])
	deny_ids(req) == ["checks.missing"]
}

test_skipped_denied if {
	deny_ids(with_checks([smoke_ok, f.check("canary", "skipped", "staging", "2026-11-26T14:00:00Z")])) == ["checks.missing"]
}

test_passed_before_deploy_denied if {
	req := with_checks([smoke_ok, f.check("canary", "passed", "staging", "2026-11-25T02:00:00Z")])
	deny_ids(req) == ["checks.missing"]
}

test_passed_before_deploy_counts_when_deploy_unknown_allowed if {
	req := object.remove(with_checks([smoke_ok, f.check("canary", "passed", "staging", "2026-11-25T02:00:00Z")]), ["deployedToSourceAt"])
	deny_ids(req) == []
}

test_passed_after_evaluation_time_denied if {
	deny_ids(with_checks([smoke_ok, f.check("canary", "passed", "staging", "2026-11-26T19:00:00Z")])) == ["checks.missing"]
}

test_run_without_environment_denied if {
	req := with_checks([smoke_ok, {"name": "canary", "status": "passed", "at": "2026-11-26T14:00:00Z"}])
	deny_ids(req) == ["checks.missing"]
	some d in denies(req)
	contains(d.msg, "names no environment")
}

test_run_without_time_denied if {
	deny_ids(with_checks([smoke_ok, {"name": "canary", "status": "passed", "environment": "staging"}])) == ["checks.missing"]
}

# ---- checks.failed

test_canary_failed_denied if {
	deny_ids(with_checks([smoke_ok, f.check("canary", "failed", "staging", "2026-11-26T14:00:00Z")])) == ["checks.failed"]
}

test_error_counts_as_failed_denied if {
	deny_ids(with_checks([f.check("smoke", "error", "staging", "2026-11-26T10:00:00Z"), canary_ok])) == ["checks.failed"]
}

test_failed_then_passed_allowed if {
	deny_ids(with_checks([smoke_ok, f.check("canary", "failed", "staging", "2026-11-26T12:00:00Z"), canary_ok])) == []
}

test_passed_then_failed_denied if {
	deny_ids(with_checks([smoke_ok, canary_ok, f.check("smoke", "failed", "staging", "2026-11-26T17:00:00Z")])) == ["checks.failed"]
}

test_failure_wins_a_tie_denied if {
	deny_ids(with_checks([smoke_ok, canary_ok, f.check("canary", "failed", "staging", "2026-11-26T14:00:00Z")])) == ["checks.failed"]
}

test_failure_elsewhere_ignored_allowed if {
	deny_ids(with_checks([smoke_ok, canary_ok, f.check("canary", "failed", "dev", "2026-11-26T17:00:00Z")])) == []
}

test_unrequired_failure_ignored_allowed if {
	deny_ids(with_checks([smoke_ok, canary_ok, f.check("lint", "failed", "staging", "2026-11-26T17:00:00Z")])) == []
}

test_failed_message_names_the_run_denied if {
	req := with_checks([smoke_ok, f.check("canary", "failed", "staging", "2026-11-26T14:00:00Z")])
	some d in denies(req)
	d.msg == "prod requires smoke and canary to have passed in staging; the latest canary run in staging, at 2026-11-26T14:00:00Z, failed; fix it and re-run canary in staging"
}

test_required_checks_come_from_config_denied if {
	ids := f.ids(checks.deny) with input as f.input_for(f.prod_request)
		with data.promo.config.environments.prod.checks.required as ["smoke", "canary", "load"]
	ids == ["checks.missing"]
}
