package promo.slo_test

import data.promo.fixtures_test as f
import data.promo.rules.slo

deny_ids(req) := ids if {
	ids := f.ids(slo.deny) with input as f.input_for(req)
}

warn_ids(req) := ids if {
	ids := f.ids(slo.warn) with input as f.input_for(req)
}

# A prod request whose burn rates are the healthy ones with `rates` laid over them.
with_rates(rates) := f.prod_with("slo", f.replaced(f.good_slo, "burnRates", object.union(f.good_slo.burnRates, rates)))

with_budget(b) := f.prod_with("slo", f.replaced(f.good_slo, "errorBudgetRemaining", b))

# Burn rates replaced wholesale.
only_rates(rates) := f.prod_with("slo", f.replaced(f.good_slo, "burnRates", rates))

# ---- slo.fast_burn

test_healthy_slo_allowed if {
	deny_ids(f.prod_request) == []
	warn_ids(f.prod_request) == []
}

test_fast_burn_1h_5m_denied if {
	deny_ids(with_rates({"1h": 15.2, "5m": 16})) == ["slo.fast_burn"]
}

test_fast_burn_6h_30m_denied if {
	deny_ids(with_rates({"6h": 7, "30m": 6.5})) == ["slo.fast_burn"]
}

test_fast_burn_each_pair_reported_denied if {
	deny_ids(with_rates({"1h": 20, "5m": 18, "6h": 9, "30m": 12})) == ["slo.fast_burn", "slo.fast_burn"]
}

test_fast_burn_at_threshold_allowed if {
	deny_ids(with_rates({"1h": 14.4, "5m": 14.4, "6h": 6, "30m": 6})) == []
}

test_fast_burn_long_window_only_allowed if {
	deny_ids(with_rates({"1h": 20, "5m": 2})) == []
}

test_fast_burn_short_window_only_allowed if {
	deny_ids(with_rates({"1h": 2, "5m": 40})) == []
}

test_fast_burn_message_names_windows_denied if {
	ds := slo.deny with input as f.input_for(with_rates({"1h": 15.2, "5m": 16}))
	some d in ds
	d.msg == "the error budget is burning too fast to promote to prod: burn rate 15.2 over 1h and 16 over 5m, both above 14.4; wait until the burn stops (the 5m window recovers first)"
	d.facts == {"long": "1h", "short": "5m", "threshold": 14.4, "longRate": 15.2, "shortRate": 16}
}

test_fast_burn_thresholds_come_from_config_allowed if {
	ids := f.ids(slo.deny) with input as f.input_for(with_rates({"1h": 15.2, "5m": 16}))
		with data.promo.config.environments.prod.slo.fastBurn as [{"long": "1h", "short": "5m", "threshold": 20}]
	ids == []
}

test_fast_burn_judged_where_slo_optional_denied if {
	req := f.staging_with("slo", f.replaced(f.good_slo, "burnRates", {"1h": 16, "5m": 15, "6h": 1, "30m": 1, "3d": 0.5}))
	deny_ids(req) == ["slo.fast_burn"]
}

# ---- slo.slow_burn

test_slow_burn_warned if {
	req := with_rates({"3d": 1.2, "6h": 1.5})
	deny_ids(req) == []
	warn_ids(req) == ["slo.slow_burn"]
}

test_slow_burn_long_only_allowed if {
	warn_ids(with_rates({"3d": 1.1, "6h": 0.9})) == []
}

test_slow_burn_at_threshold_allowed if {
	warn_ids(with_rates({"3d": 1, "6h": 1})) == []
}

# ---- slo.budget_exhausted

test_budget_zero_denied if {
	deny_ids(with_budget(0)) == ["slo.budget_exhausted"]
}

test_budget_negative_denied if {
	deny_ids(with_budget(-0.25)) == ["slo.budget_exhausted"]
}

test_budget_nearly_spent_allowed if {
	deny_ids(with_budget(0.01)) == []
}

# ---- slo.inconclusive

test_slo_missing_denied if {
	deny_ids(f.prod_without("slo")) == ["slo.inconclusive"]
}

test_slo_null_denied if {
	deny_ids(f.prod_with("slo", null)) == ["slo.inconclusive"]
}

test_slo_empty_object_denied if {
	deny_ids(f.prod_with("slo", {})) == ["slo.inconclusive"]
}

test_burn_rates_null_denied if {
	deny_ids(only_rates(null)) == ["slo.inconclusive"]
}

test_one_burn_rate_null_denied if {
	deny_ids(with_rates({"1h": null})) == ["slo.inconclusive"]
}

test_budget_missing_denied if {
	deny_ids(f.prod_with("slo", object.remove(f.good_slo, ["errorBudgetRemaining"]))) == ["slo.inconclusive"]
}

test_budget_null_denied if {
	deny_ids(with_budget(null)) == ["slo.inconclusive"]
}

test_inconclusive_lists_what_is_missing_denied if {
	req := only_rates({"1h": 0.5, "6h": 0.5})
	ds := slo.deny with input as f.input_for(req)
	some d in ds
	d.id == "slo.inconclusive"
	d.facts.missing == ["slo.burnRates.30m", "slo.burnRates.3d", "slo.burnRates.5m"]
}

test_partial_data_still_judged_denied if {
	req := only_rates({"1h": 18, "5m": 20})
	deny_ids(req) == ["slo.fast_burn", "slo.inconclusive"]
}

test_slo_missing_where_not_required_allowed if {
	deny_ids(f.staging_request) == []
	deny_ids(f.staging_with("slo", null)) == []
}

test_unused_window_missing_allowed if {
	# Only the windows a configured pair reads are required.
	deny_ids(with_rates({"1d": null})) == []
}
