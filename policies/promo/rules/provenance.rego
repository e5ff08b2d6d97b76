# Provenance: where the artifact came from must be proven, not claimed. Only verified
# SLSA provenance counts (input.verified, filled by the engine after checking the DSSE
# signature against the trust file); the request's own words never do. An environment
# that requires provenance needs one whose subject is this exact artifact digest, built
# by a builder it accepts, from a source repository it accepts.
package promo.rules.provenance

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {
	"provenance.missing": "verified SLSA provenance exists where the environment requires it",
	"provenance.digest_mismatch": "the verified provenance's subject is this exact artifact digest",
	"provenance.untrusted_builder": "the artifact was built by a builder the environment accepts",
	"provenance.source_not_allowed": "the artifact was built from a source repository the environment accepts",
}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference (measured:
# ~110 us per rule package, 4x the cost of the rules themselves).

settings := object.get(data.promo.lib.target, "provenance", {"required": false})

# Every verified attestation that carries normalised SLSA provenance.
_provenance contains a if {
	some a in input.verified.attestations
	a.provenance
}

# Provenance about this very artifact (a subject digest equals the artifact's).
_matching contains a if {
	some a in _provenance
	a.subjectMatches == true
}

# A builder entry matches exactly, or as a prefix when it ends in "*" (as the trust file).
builder_listed(list, id) if {
	some b in list
	b == id
}

builder_listed(list, id) if {
	some b in list
	endswith(b, "*")
	startswith(id, trim_suffix(b, "*"))
}

# Any signer may vouch for `builders`; only a keyless one (a Sigstore certificate naming
# the workflow, CONTRACT §2c) for `keylessBuilders`.
builder_allowed(a) if builder_listed(settings.builders, a.provenance.builderId)

builder_allowed(a) if {
	a.signer.kind == "keyless"
	builder_listed(object.get(settings, "keylessBuilders", []), a.provenance.builderId)
}

source_allowed(repo) if {
	some r in settings.sourceRepos
	r == repo
}

# No allowlist configured means any builder / source; say [] to allow none.
_builders_restricted if is_array(settings.builders)

_sources_restricted if is_array(settings.sourceRepos)

_bad_builder(a) if {
	_builders_restricted
	not builder_allowed(a)
}

_bad_source(a) if {
	_sources_restricted
	not source_allowed(object.get(a.provenance, "sourceRepo", ""))
}

# Provenance that satisfies the requirement.
_good contains a if {
	some a in _matching
	not _bad_builder(a)
	not _bad_source(a)
}

deny contains {
	"id": "provenance.missing",
	"msg": sprintf("%s needs verified SLSA provenance for %s@%s; the request carries none that verified against the trust file (%d attestation(s) rejected)", [
		data.promo.lib.to,
		input.request.artifact.name,
		_artifact_digest,
		count(input.verified.rejected),
	]),
	"facts": {
		"verifiedProvenance": count(_provenance),
		"rejected": input.verified.rejected,
	},
} if {
	settings.required == true
	count(_provenance) == 0
}

deny contains {
	"id": "provenance.digest_mismatch",
	"msg": sprintf("%s needs SLSA provenance for the artifact being promoted, but the verified provenance describes other digests (%s), not %s", [
		data.promo.lib.to,
		concat(", ", sort({sprintf("%v", [s.digest]) | some a in _provenance; some s in a.subject})),
		_artifact_digest,
	]),
	"facts": {"artifactDigest": input.request.artifact.digest, "subjects": [a.subject | some a in _provenance]},
} if {
	settings.required == true
	count(_provenance) > 0
	count(_matching) == 0
}

deny contains {
	"id": "provenance.untrusted_builder",
	"msg": sprintf("provenance of %s was built by %s, which %s does not accept from a %s signer (accepted: %s%s)", [
		input.request.artifact.name,
		a.provenance.builderId,
		data.promo.lib.to,
		a.signer.kind,
		concat(", ", settings.builders),
		_keyless_note,
	]),
	"facts": {
		"builderId": a.provenance.builderId,
		"accepted": settings.builders,
		"acceptedKeyless": object.get(settings, "keylessBuilders", []),
		"signer": a.signer,
	},
} if {
	some a in _matching
	_bad_builder(a)
}

deny contains {
	"id": "provenance.source_not_allowed",
	"msg": sprintf("%s was built from %s, which is not an allowed source for %s (allowed: %s)", [
		input.request.artifact.name,
		object.get(a.provenance, "sourceRepo", "an unknown repository"),
		data.promo.lib.to,
		concat(", ", settings.sourceRepos),
	]),
	"facts": {
		"sourceRepo": object.get(a.provenance, "sourceRepo", null),
		"sourceCommit": object.get(a.provenance, "sourceCommit", null),
		"allowed": settings.sourceRepos,
	},
} if {
	some a in _matching
	not _bad_builder(a)
	_bad_source(a)
}

_keyless_note := sprintf("; keyless only: %s", [concat(", ", settings.keylessBuilders)]) if {
	count(object.get(settings, "keylessBuilders", [])) > 0
} else := ""

_artifact_digest := d if {
	d := sprintf("sha256:%s", [input.request.artifact.digest.sha256])
} else := sprintf("%v", [input.request.artifact.digest])
