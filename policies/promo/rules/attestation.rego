# Attestations that failed verification: a request that carries a forged, tampered or
# mis-signed attestation is at best broken tooling and at worst an attack, so it is
# always reported, and denies in environments whose settings say so.
package promo.rules.attestation

# What this package checks, by the id it reports when the check fails: listed by
# `promo-policy eval --explain` as passed, denied or warned. Constant data only.
catalog := {
	"attestation.invalid": "every attestation in the request verified against the trust file (signature, key, statement)",
}

# Helpers are referenced as data.promo.lib.<rule>, not through `import data.promo.lib`:
# regorus evaluates the whole imported package on every aliased reference (measured:
# ~110 us per rule package, 4x the cost of the rules themselves).

_deny_invalid if object.get(data.promo.lib.target, "attestations", {}).denyInvalid == true

_entry(r) := {
	"id": "attestation.invalid",
	"msg": sprintf("attestation %d of the request did not verify: %s", [r.index, r.reason]),
	"facts": {"index": r.index, "reason": r.reason},
}

deny contains _entry(r) if {
	_deny_invalid
	some r in input.verified.rejected
}

warn contains _entry(r) if {
	not _deny_invalid
	some r in input.verified.rejected
}
