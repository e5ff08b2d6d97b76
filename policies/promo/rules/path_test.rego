package promo.path_test

import data.promo.fixtures_test as f
import data.promo.rules.path

deny_ids(req) := ids if {
	ids := f.ids(path.deny) with input as f.input_for(req)
}

deny_msg(req) := msg if {
	ds := path.deny with input as f.input_for(req)
	some d in ds
	msg := d.msg
}

route(from, to) := object.union(f.prod_request, {"from": from, "to": to})

test_staging_to_prod_allowed if {
	deny_ids(route("staging", "prod")) == []
}

test_dev_to_staging_allowed if {
	deny_ids(route("dev", "staging")) == []
}

test_dev_to_prod_skips_staging_denied if {
	deny_ids(route("dev", "prod")) == ["path.skipped_environment"]
	deny_msg(route("dev", "prod")) == "dev -> prod skips staging; promote dev -> staging first"
}

test_backwards_denied if {
	deny_ids(route("prod", "staging")) == ["path.skipped_environment"]
	contains(deny_msg(route("prod", "staging")), "goes backwards")
}

test_same_environment_denied if {
	deny_ids(route("staging", "staging")) == ["path.skipped_environment"]
	contains(deny_msg(route("staging", "staging")), "promote it to prod next")
}

test_from_last_environment_denied if {
	deny_ids(route("prod", "prod")) == ["path.skipped_environment"]
	contains(deny_msg(route("prod", "prod")), "last environment")
}

test_unknown_target_denied if {
	deny_ids(route("staging", "production")) == ["path.unknown_environment"]
}

test_unknown_source_denied if {
	deny_ids(route("qa", "prod")) == ["path.unknown_environment"]
}

test_both_unknown_reported_once_denied if {
	deny_ids(route("qa", "uat")) == ["path.unknown_environment"]
	contains(deny_msg(route("qa", "uat")), "qa and uat are not configured environments")
}

test_order_comes_from_config_allowed if {
	ids := f.ids(path.deny) with input as f.input_for(route("staging", "prod"))
		with data.promo.config.order as ["dev", "staging", "canary", "prod"]
	ids == ["path.skipped_environment"]
	ids2 := f.ids(path.deny) with input as f.input_for(route("canary", "prod"))
		with data.promo.config.order as ["dev", "staging", "canary", "prod"]
	ids2 == []
}

test_every_missing_block_shape_denies if {
	req := route("staging", "prod")
	count([envs |
		some envs in [
			object.remove(data.promo.config.environments, ["prod"]),
			object.union(object.remove(data.promo.config.environments, ["prod"]), {"prod": {}}),
			object.union(object.remove(data.promo.config.environments, ["prod"]), {"prod": null}),
			object.union(object.remove(data.promo.config.environments, ["prod"]), {"Prod": data.promo.config.environments.prod}),
		]
		ids := f.ids(path.deny) with input as f.input_for(req) with data.promo.config.environments as envs
		ids == ["config.environment_missing"]
	]) == 4
}

test_a_configured_target_is_not_reported_missing if {
	not "config.environment_missing" in deny_ids(route("staging", "prod"))
}
