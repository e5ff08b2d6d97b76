# Attestations that failed verification: a request that carries a forged, tampered or
# mis-signed attestation is at best broken tooling and at worst an attack, so it is
# always reported, and denies in environments whose settings say so.
package promo.rules.attestation

import data.promo.lib

_deny_invalid if object.get(lib.target, "attestations", {}).denyInvalid == true

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
