package promo.provenance_test

import data.promo.fixtures_test as f
import data.promo.rules.provenance

with_verified(req, atts, rejected) := f.verified_input_at(req, f.now, {"attestations": atts, "rejected": rejected})

deny_ids(req, atts) := ids if {
	ids := f.ids(provenance.deny) with input as with_verified(req, atts, [])
}

good := f.provenance_for(f.prod_request)

test_prod_verified_provenance_allowed if {
	deny_ids(f.prod_request, [good]) == []
}

test_prod_without_provenance_denied if {
	deny_ids(f.prod_request, []) == ["provenance.missing"]
}

test_staging_without_provenance_denied if {
	deny_ids(f.staging_request, []) == ["provenance.missing"]
}

test_dev_target_needs_no_provenance_allowed if {
	req := f.staging_with("to", "dev")
	deny_ids(object.union(req, {"from": "dev"}), []) == []
}

test_provenance_for_another_digest_denied if {
	other := f.provenance({"sha256": "1111111111111111111111111111111111111111111111111111111111111111"}, false, f.builder, f.source_repo)
	deny_ids(f.prod_request, [other]) == ["provenance.digest_mismatch"]
}

test_one_matching_among_mismatched_allowed if {
	other := f.provenance({"sha256": "11"}, false, f.builder, f.source_repo)
	deny_ids(f.prod_request, [other, good]) == []
}

test_unaccepted_builder_denied if {
	bad := f.provenance(f.prod_request.artifact.digest, true, "https://evil.example.com/builder", f.source_repo)
	deny_ids(f.prod_request, [bad]) == ["provenance.untrusted_builder"]
}

github_builder := "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.0.0"

test_builder_prefix_accepted_in_staging_allowed if {
	gh := f.provenance(f.staging_request.artifact.digest, true, github_builder, f.source_repo)
	deny_ids(f.staging_request, [gh]) == []
}

test_builder_accepted_in_staging_but_not_prod_denied if {
	gh := f.provenance(f.prod_request.artifact.digest, true, github_builder, f.source_repo)
	deny_ids(f.prod_request, [gh]) == ["provenance.untrusted_builder"]
}

test_source_not_allowed_denied if {
	bad := f.provenance(f.prod_request.artifact.digest, true, f.builder, "https://github.com/someone/fork")
	deny_ids(f.prod_request, [bad]) == ["provenance.source_not_allowed"]
}

test_missing_source_denied if {
	p := f.provenance(f.prod_request.artifact.digest, true, f.builder, "x")
	no_source := object.union(p, {"provenance": object.remove(p.provenance, ["sourceRepo"])})
	deny_ids(f.prod_request, [no_source]) == ["provenance.source_not_allowed"]
}

test_missing_message_counts_rejections if {
	msgs := [d.msg | some d in provenance.deny] with input as with_verified(f.prod_request, [], [{"index": 0, "reason": "x"}])
	contains(msgs[0], "1 attestation(s) rejected")
}
