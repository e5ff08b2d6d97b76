# Digest pinning: what is promoted must be named by a content digest strong enough that
# nobody can swap the bytes behind it. Tags move, and sha1 or a git commit id do not
# identify image bytes (and sha1 collides), so only the algorithms listed in
# data.promo.config.digest.algorithms pin an artifact, and only when well formed.
package promo.rules.digest

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {
	"digest.unpinned": "the artifact is pinned by a well-formed digest of an accepted algorithm",
}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference (measured:
# ~110 us per rule package, 4x the cost of the rules themselves).

algorithms := data.promo.lib.config.digest.algorithms

_digest := object.get(input.request.artifact, "digest", {})

# Lowercase hex of exactly the algorithm's length: upper case or a stray prefix
# ("sha256:...") would compare unequal to the digest registries and attestations
# carry, so the pin would silently match nothing.
well_formed(alg) if {
	hex := _digest[alg]
	is_string(hex)
	count(hex) == algorithms[alg]
	regex.match(`^[0-9a-f]+$`, hex)
}

pinned if {
	some alg, _ in algorithms
	well_formed(alg)
}

# What is wrong, in the release manager's terms: a malformed accepted digest is named,
# otherwise the message says which (weaker) algorithms the artifact did carry.
_problems := [sprintf("its %s is not %v lowercase hex characters", [alg, algorithms[alg]]) |
	some alg in _algs
	_digest[alg]
	not well_formed(alg)
]

_problem := concat(" and ", _problems) if {
	count(_problems) > 0
} else := sprintf("it carries only %s", [concat(", ", sort(object.keys(_digest)))]) if {
	count(_digest) > 0
} else := "it carries no digest at all"

deny contains {
	"id": "digest.unpinned",
	"msg": sprintf("%s is not pinned: promotion needs a well-formed %s digest, and %s; promote it by its %s digest", [
		input.request.artifact.name,
		concat(" or ", _algs),
		_problem,
		_algs[0],
	]),
	"facts": {"accepted": algorithms, "present": sort(object.keys(_digest))},
} if {
	not pinned
}

_algs := sort(object.keys(algorithms))
