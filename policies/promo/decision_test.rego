package promo.decision_test


import data.promo.fixtures_test as f

decide(req) := d if {
	d := data.promo.decision with input as f.input_for(req)
}

test_clean_prod_request_allowed if {
	decide(f.prod_request) == {"allow": true, "deny": [], "warn": []}
}

test_clean_staging_request_allowed if {
	decide(f.staging_request) == {"allow": true, "deny": [], "warn": []}
}

test_any_deny_blocks_denied if {
	d := decide(f.prod_with("approvals", []))
	d.allow == false
	[e.id | some e in d.deny] == ["approvals.min_count"]
}

test_warnings_alone_do_not_block_allowed if {
	req := f.prod_with("slo", object.union(f.good_slo, {"burnRates": object.union(f.good_slo.burnRates, {"3d": 1.2, "6h": 1.5})}))
	d := decide(req)
	d.allow == true
	[e.id | some e in d.warn] == ["slo.slow_burn"]
}

test_all_rule_packages_gathered_denied if {
	req := object.union(f.prod_request, {"from": "dev", "slo": null, "checks": [], "approvals": []})
	d := decide(object.remove(req, ["deployedToSourceAt"]))
	d.allow == false
	[e.id | some e in d.deny] == [
		"approvals.min_count",
		"checks.missing", "checks.missing",
		"path.skipped_environment",
		"slo.inconclusive",
		"soak.too_short",
	]
}

test_new_rule_package_takes_part_denied if {
	d := data.promo.decision with input as f.input_for(f.prod_request)
		with data.promo.engine as {} with data.promo.rules.custom.deny as {{"id": "custom.no_fridays", "msg": "no deploys on Friday"}}
	d.allow == false
	d.deny == [{"id": "custom.no_fridays", "msg": "no deploys on Friday"}]
}

test_new_rule_package_warning_allowed if {
	d := data.promo.decision with input as f.input_for(f.prod_request)
		with data.promo.engine as {} with data.promo.rules.custom.warn as {{"id": "custom.late", "msg": "late in the day"}}
	d.allow == true
	d.warn == [{"id": "custom.late", "msg": "late in the day"}]
}

test_entries_sorted_by_id_then_msg_denied if {
	d := data.promo.decision with data.promo.engine as {} with data.promo.rules as {
		"zeta": {"deny": {{"id": "b.x", "msg": "2"}, {"id": "a.y", "msg": "z"}}},
		"alpha": {"deny": {{"id": "b.x", "msg": "1"}}},
	}
	[[e.id, e.msg] | some e in d.deny] == [["a.y", "z"], ["b.x", "1"], ["b.x", "2"]]
}

test_string_deny_is_kept_as_malformed_denied if {
	d := data.promo.decision with data.promo.engine as {} with data.promo.rules as {"legacy": {"deny": {"do not ship"}}}
	d.allow == false
	[e.id | some e in d.deny] == ["policy.malformed_violation"]
	d.deny[0].facts == {"package": "legacy", "entry": "do not ship"}
}

test_entry_without_msg_is_kept_as_malformed_denied if {
	d := data.promo.decision with data.promo.engine as {} with data.promo.rules as {"x": {"deny": {{"id": "x.y"}}}}
	d.allow == false
	[e.id | some e in d.deny] == ["policy.malformed_violation"]
}

test_boolean_deny_true_denied if {
	d := data.promo.decision with data.promo.engine as {} with data.promo.rules as {"flag": {"deny": true}}
	d.allow == false
	[e.id | some e in d.deny] == ["policy.malformed_violation"]
}

test_boolean_deny_false_allowed if {
	d := data.promo.decision with data.promo.engine as {} with data.promo.rules as {"flag": {"deny": false}}
	d == {"allow": true, "deny": [], "warn": []}
}

test_no_rule_packages_allowed if {
	d := data.promo.decision with data.promo.engine as {} with data.promo.rules as {}
	d == {"allow": true, "deny": [], "warn": []}
}

test_long_message_clipped_denied if {
	long := concat("", [s | some _ in numbers.range(1, 1100); s := "x"])
	d := data.promo.decision with data.promo.engine as {} with data.promo.rules as {"x": {"deny": {{"id": "x.long", "msg": long, "facts": {"n": 1}}}}}
	count(d.deny[0].msg) == 1024
	endswith(d.deny[0].msg, "...")
	d.deny[0].facts == {"n": 1}
}

test_every_default_message_fits_denied if {
	req := object.union(object.remove(f.prod_request, ["artifact"]), {
		"from": "dev",
		"slo": null,
		"checks": [],
		"approvals": [f.approval("bob", ["release-manager"], "2026-11-26T17:00:00Z")],
		"artifact": f.replaced(f.prod_request.artifact, "digest", {"sha1": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"}),
	})
	d := decide(req)
	count(d.deny) == 7
	every e in d.deny {
		count(e.msg) <= 1024
		is_object(e.facts)
	}
}

# The engine lists the rule packages it loaded (data.promo.engine.rulePackages); the
# decision iterates that list, and only without one enumerates data.promo.rules.
test_the_engine_list_names_the_packages_gathered_denied if {
	d := data.promo.decision with data.promo.engine.rulePackages as ["b"]
		with data.promo.rules as {"a": {"deny": {{"id": "a.x", "msg": "a"}}}, "b": {"deny": {{"id": "b.x", "msg": "b"}}}}
	[e.id | some e in d.deny] == ["b.x"]
}

test_without_the_engine_list_every_package_is_enumerated_denied if {
	d := data.promo.decision with data.promo.engine as {}
		with data.promo.rules as {"a": {"deny": {{"id": "a.x", "msg": "a"}}}, "b": {"deny": {{"id": "b.x", "msg": "b"}}}}
	[e.id | some e in d.deny] == ["a.x", "b.x"]
}
