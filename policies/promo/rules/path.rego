# Promotion path: an artifact climbs the configured order one environment at a time.
#
# Skipping an environment skips the evidence it produces (soak time, smoke and canary
# runs), so every later gate would be judging an artifact nobody has watched run.
package promo.rules.path

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {
	"path.unknown_environment": "the source and target environments are configured",
	"path.skipped_environment": "the artifact moves one environment up the configured order, skipping none",
	"config.environment_missing": "the target environment has a settings block in the bundle's config",
}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference (measured:
# ~110 us per rule package, 4x the cost of the rules themselves).

order := data.promo.lib.config.order

index(env) := i if {
	some i, e in order
	e == env
}

# Both ends are reported in one entry: "qa -> prod" has one problem, an unknown name.
unknown := {env | some env in [data.promo.lib.from, data.promo.lib.to]; not env in order}

deny contains {
	"id": "path.unknown_environment",
	"msg": sprintf("%s -> %s: %s (known: %s); check the request's from/to", [
		data.promo.lib.from, data.promo.lib.to,
		_is_or_are(unknown),
		concat(" -> ", order),
	]),
	"facts": {"from": data.promo.lib.from, "to": data.promo.lib.to, "unknown": sort(unknown), "order": order},
} if {
	count(unknown) > 0
}

_is_or_are(envs) := sprintf("%s is not a configured environment", [concat(", ", sort(envs))]) if count(envs) == 1

_is_or_are(envs) := sprintf("%s are not configured environments", [concat(" and ", sort(envs))]) if count(envs) > 1

deny contains {
	"id": "path.skipped_environment",
	"msg": _skip_msg(fi, ti),
	"facts": {"from": data.promo.lib.from, "to": data.promo.lib.to, "order": order},
} if {
	fi := index(data.promo.lib.from)
	ti := index(data.promo.lib.to)
	ti != fi + 1
}

_skip_msg(fi, ti) := sprintf("%s is the last environment (%s); there is nothing to promote to", [data.promo.lib.from, concat(" -> ", order)]) if {
	ti == fi
	fi == count(order) - 1
}

_skip_msg(fi, ti) := sprintf("%s -> %s is not a promotion: the artifact is already in %s; promote it to %s next", [data.promo.lib.from, data.promo.lib.to, data.promo.lib.to, order[fi + 1]]) if {
	ti == fi
	fi < count(order) - 1
}

# Going back is a rollback, which deploys a version that already passed these gates;
# it is a different process from promotion and does not belong here.
_skip_msg(fi, ti) := sprintf("%s -> %s goes backwards; promotion only moves forward (%s), roll back through your rollback process instead", [data.promo.lib.from, data.promo.lib.to, concat(" -> ", order)]) if {
	ti < fi
}

_skip_msg(fi, ti) := sprintf("%s -> %s skips %s; promote %s -> %s first", [
	data.promo.lib.from, data.promo.lib.to,
	concat(", ", array.slice(order, fi + 1, ti)),
	data.promo.lib.from, order[fi + 1],
]) if {
	ti > fi + 1
}

# Every gate reads the target's block under config.environments; without one (missing,
# empty, renamed or cased differently from `order`) no gate would fire and the request
# would pass unchecked. The loader refuses such a config; this is the second line.
deny contains {
	"id": "config.environment_missing",
	"msg": sprintf("%s is in the configured order but the bundle's config has no settings for it under environments; fix the bundle (nothing was checked)", [data.promo.lib.to]),
	"facts": {"to": data.promo.lib.to, "configured": sort(object.keys(object.get(data.promo.lib.config, "environments", {})))},
} if {
	data.promo.lib.to in order
	not _has_settings(data.promo.lib.to)
}

_has_settings(env) if {
	block := data.promo.lib.config.environments[env]
	is_object(block)
	count(block) > 0
}
