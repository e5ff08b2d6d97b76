package promo.soak_test

import data.promo.fixtures_test as f
import data.promo.rules.soak

deny_ids(req) := ids if {
	ids := f.ids(soak.deny) with input as f.input_for(req)
}

deployed(t) := f.prod_with("deployedToSourceAt", t)

test_soaked_33h_allowed if {
	deny_ids(f.prod_request) == []
}

test_soaked_exactly_24h_allowed if {
	deny_ids(deployed("2026-11-25T18:00:00Z")) == []
}

test_one_second_short_denied if {
	deny_ids(deployed("2026-11-25T18:00:01Z")) == ["soak.too_short"]
}

test_16h_names_earliest_time_denied if {
	ds := soak.deny with input as f.input_for(deployed("2026-11-26T02:00:00Z"))
	some d in ds
	d.id == "soak.too_short"
	d.msg == "prod needs the artifact to have soaked 24h in staging; it was deployed there at 2026-11-26T02:00:00Z, 16h ago, so it can be promoted from 2026-11-27T02:00:00Z"
	d.facts.soakedHours == 16
}

test_unknown_deploy_time_denied if {
	ds := soak.deny with input as f.input_for(f.prod_without("deployedToSourceAt"))
	f.ids(ds) == ["soak.too_short"]
	some d in ds
	contains(d.msg, "unknown")
}

test_unreadable_deploy_time_denied if {
	deny_ids(deployed("2026-11-31T25:00:00Z")) == ["soak.too_short"]
}

test_deploy_in_the_future_denied if {
	deny_ids(deployed("2026-11-27T00:00:00Z")) == ["soak.too_short"]
}

test_timezone_offsets_respected_allowed if {
	# 2026-11-25T19:00:00+01:00 is 18:00Z: exactly 24h.
	deny_ids(deployed("2026-11-25T19:00:00+01:00")) == []
}

test_staging_needs_no_soak_allowed if {
	deny_ids(f.staging_with("deployedToSourceAt", "2026-11-26T17:55:00Z")) == []
	ids := f.ids(soak.deny) with input as f.input_for(object.remove(f.staging_request, ["deployedToSourceAt"]))
	ids == []
}

test_min_hours_comes_from_config_denied if {
	ids := f.ids(soak.deny) with input as f.input_for(f.prod_request)
		with data.promo.config.environments.prod.soak.minHours as 48
	ids == ["soak.too_short"]
}
