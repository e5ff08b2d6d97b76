# Promotion path: an artifact climbs the configured order one environment at a time.
#
# Skipping an environment skips the evidence it produces (soak time, smoke and canary
# runs), so every later gate would be judging an artifact nobody has watched run.
package promo.rules.path

import data.promo.lib

order := lib.config.order

index(env) := i if {
	some i, e in order
	e == env
}

# Both ends are reported in one entry: "qa -> prod" has one problem, an unknown name.
unknown := {env | some env in [lib.from, lib.to]; not env in order}

deny contains {
	"id": "path.unknown_environment",
	"msg": sprintf("%s -> %s: %s (known: %s); check the request's from/to", [
		lib.from, lib.to,
		_is_or_are(unknown),
		concat(" -> ", order),
	]),
	"facts": {"from": lib.from, "to": lib.to, "unknown": sort(unknown), "order": order},
} if {
	count(unknown) > 0
}

_is_or_are(envs) := sprintf("%s is not a configured environment", [concat(", ", sort(envs))]) if count(envs) == 1

_is_or_are(envs) := sprintf("%s are not configured environments", [concat(" and ", sort(envs))]) if count(envs) > 1

deny contains {
	"id": "path.skipped_environment",
	"msg": _skip_msg(fi, ti),
	"facts": {"from": lib.from, "to": lib.to, "order": order},
} if {
	fi := index(lib.from)
	ti := index(lib.to)
	ti != fi + 1
}

_skip_msg(fi, ti) := sprintf("%s is the last environment (%s); there is nothing to promote to", [lib.from, concat(" -> ", order)]) if {
	ti == fi
	fi == count(order) - 1
}

_skip_msg(fi, ti) := sprintf("%s -> %s is not a promotion: the artifact is already in %s; promote it to %s next", [lib.from, lib.to, lib.to, order[fi + 1]]) if {
	ti == fi
	fi < count(order) - 1
}

# Going back is a rollback, which deploys a version that already passed these gates;
# it is a different process from promotion and does not belong here.
_skip_msg(fi, ti) := sprintf("%s -> %s goes backwards; promotion only moves forward (%s), roll back through your rollback process instead", [lib.from, lib.to, concat(" -> ", order)]) if {
	ti < fi
}

_skip_msg(fi, ti) := sprintf("%s -> %s skips %s; promote %s -> %s first", [
	lib.from, lib.to,
	concat(", ", array.slice(order, fi + 1, ti)),
	lib.from, order[fi + 1],
]) if {
	ti > fi + 1
}
