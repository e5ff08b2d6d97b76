package promo.freeze_test

import data.promo.fixtures_test as f
import data.promo.rules.freeze

frozen_at := "2026-12-22T10:00:00Z"

# The prod fixture moved into the freeze: approvals re-dated so they are fresh then.
frozen_request := f.prod_with("approvals", [
	f.approval("alice", ["release-manager"], "2026-12-22T09:40:00Z"),
	f.approval("carol", ["sre"], "2026-12-22T09:30:00Z"),
])

emergency(req) := object.union(req, {"change": object.union(req.change, {"emergency": true, "ticket": "INC-4711"})})

with_ic(req, who, at) := object.union(req, {"approvals": array.concat(req.approvals, [f.approval(who, ["incident-commander"], at)])})

ids_at(set_name, req, t) := ids if {
	ids := f.ids(freeze[set_name]) with input as f.input_at(req, t)
}

test_outside_freeze_allowed if {
	ids_at("deny", f.prod_request, f.now) == []
	ids_at("warn", f.prod_request, f.now) == []
}

test_inside_freeze_denied if {
	ids_at("deny", frozen_request, frozen_at) == ["freeze.active"]
}

test_freeze_start_is_inclusive_denied if {
	ids_at("deny", frozen_request, "2026-12-20T00:00:00Z") == ["freeze.active"]
}

test_freeze_end_is_exclusive_allowed if {
	ids_at("deny", frozen_request, "2027-01-04T00:00:00Z") == []
}

test_second_before_freeze_allowed if {
	ids_at("deny", frozen_request, "2026-12-19T23:59:59Z") == []
}

test_emergency_with_incident_commander_warned if {
	req := with_ic(emergency(frozen_request), "erin", "2026-12-22T09:50:00Z")
	ids_at("deny", req, frozen_at) == []
	ids_at("warn", req, frozen_at) == ["freeze.break_glass"]
}

test_break_glass_message_says_so_warned if {
	req := with_ic(emergency(frozen_request), "erin", "2026-12-22T09:50:00Z")
	ws := freeze.warn with input as f.input_at(req, frozen_at)
	some w in ws
	startswith(w.msg, "break-glass used: ")
	contains(w.msg, "INC-4711")
	w.facts.approvedBy == ["erin"]
}

test_emergency_without_incident_commander_denied if {
	ids_at("deny", emergency(frozen_request), frozen_at) == ["freeze.active"]
}

test_incident_commander_without_emergency_denied if {
	ids_at("deny", with_ic(frozen_request, "erin", "2026-12-22T09:50:00Z"), frozen_at) == ["freeze.active"]
}

test_author_as_incident_commander_denied if {
	ids_at("deny", with_ic(emergency(frozen_request), "bob", "2026-12-22T09:50:00Z"), frozen_at) == ["freeze.active"]
}

test_stale_incident_commander_denied if {
	req := with_ic(emergency(frozen_request), "erin", "2026-12-21T04:00:00Z")
	ids_at("deny", req, frozen_at) == ["freeze.active"]
	ds := freeze.deny with input as f.input_at(req, frozen_at)
	some d in ds
	contains(d.msg, "erin's approval from 2026-12-21T04:00:00Z is older than 24h")
}

test_break_glass_role_comes_from_config_warned if {
	req := object.union(emergency(frozen_request), {"approvals": array.concat(frozen_request.approvals, [f.approval("erin", ["on-call-lead"], "2026-12-22T09:50:00Z")])})
	ws := freeze.warn with input as f.input_at(req, frozen_at)
		with data.promo.config.environments.prod.freeze.breakGlassRole as "on-call-lead"
	f.ids(ws) == ["freeze.break_glass"]
}

test_freeze_applies_to_target_only_allowed if {
	req := f.staging_with("approvals", [f.approval("carol", ["tech-lead"], "2026-12-22T09:00:00Z")])
	ids_at("deny", req, frozen_at) == []
}

test_each_covering_window_reported_denied if {
	ds := freeze.deny with input as f.input_at(frozen_request, frozen_at)
		with data.promo.config.environments.prod.freeze.windows as [
			{"start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z", "reason": "year-end change freeze"},
			{"start": "2026-12-22T00:00:00Z", "end": "2026-12-23T00:00:00Z", "reason": "payments migration"},
		]
	f.ids(ds) == ["freeze.active", "freeze.active"]
}
