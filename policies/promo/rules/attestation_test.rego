package promo.attestation_test

import data.promo.fixtures_test as f
import data.promo.rules.attestation

rejected := [{"index": 1, "reason": "no signature by a trusted key"}]

input_with_rejected(req) := f.verified_input_at(req, f.now, {"attestations": [f.provenance_for(req)], "rejected": rejected})

test_rejected_attestation_denies_in_prod if {
	f.ids(attestation.deny) == ["attestation.invalid"] with input as input_with_rejected(f.prod_request)
	f.ids(attestation.warn) == [] with input as input_with_rejected(f.prod_request)
}

test_rejected_attestation_only_warns_in_dev if {
	req := object.union(f.staging_request, {"from": "dev", "to": "dev"})
	f.ids(attestation.deny) == [] with input as input_with_rejected(req)
	f.ids(attestation.warn) == ["attestation.invalid"] with input as input_with_rejected(req)
}

test_no_rejections_allowed if {
	f.ids(attestation.deny) == [] with input as f.input_for(f.prod_request)
}

test_reason_is_in_the_message if {
	msgs := [d.msg | some d in attestation.deny] with input as input_with_rejected(f.prod_request)
	contains(msgs[0], "no signature by a trusted key")
}
