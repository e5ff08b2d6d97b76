package promo.digest_test

import data.promo.fixtures_test as f
import data.promo.rules.digest

deny_ids(d) := ids if {
	req := f.prod_with("artifact", f.replaced(f.prod_request.artifact, "digest", d))
	ids := f.ids(digest.deny) with input as f.input_for(req)
}

sha512 := concat("", [f.digest, f.digest])

sha1 := "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"

test_sha256_allowed if {
	deny_ids({"sha256": f.digest}) == []
}

test_sha512_allowed if {
	deny_ids({"sha512": sha512}) == []
}

test_extra_algorithms_ignored_allowed if {
	deny_ids({"sha256": f.digest, "sha1": sha1, "gitCommit": sha1}) == []
}

test_malformed_sha256_with_good_sha512_allowed if {
	deny_ids({"sha256": "abc", "sha512": sha512}) == []
}

test_sha1_only_denied if {
	deny_ids({"sha1": sha1}) == ["digest.unpinned"]
}

test_git_commit_only_denied if {
	deny_ids({"gitCommit": sha1}) == ["digest.unpinned"]
}

test_empty_digest_denied if {
	deny_ids({}) == ["digest.unpinned"]
}

test_uppercase_sha256_denied if {
	deny_ids({"sha256": upper(f.digest)}) == ["digest.unpinned"]
}

test_short_sha256_denied if {
	deny_ids({"sha256": substring(f.digest, 0, 63)}) == ["digest.unpinned"]
}

test_long_sha256_denied if {
	deny_ids({"sha256": concat("", [f.digest, "0"])}) == ["digest.unpinned"]
}

test_prefixed_sha256_denied if {
	deny_ids({"sha256": concat("", ["sha256:", f.digest])}) == ["digest.unpinned"]
}

test_non_hex_sha256_denied if {
	deny_ids({"sha256": concat("", ["g", substring(f.digest, 1, 63)])}) == ["digest.unpinned"]
}

test_sha256_as_sha512_length_denied if {
	deny_ids({"sha512": f.digest}) == ["digest.unpinned"]
}

test_message_names_what_is_wrong_denied if {
	req := f.prod_with("artifact", f.replaced(f.prod_request.artifact, "digest", {"sha1": sha1}))
	ds := digest.deny with input as f.input_for(req)
	some d in ds
	d.msg == "registry.example.com/payments/api is not pinned: promotion needs a well-formed sha256 or sha512 digest, and it carries only sha1; promote it by its sha256 digest"
}

test_algorithms_come_from_config_denied if {
	req := f.prod_with("artifact", object.union(f.prod_request.artifact, {"digest": {"sha256": f.digest}}))
	ids := f.ids(digest.deny) with input as f.input_for(req)
		with data.promo.config.digest.algorithms as {"sha512": 128}
	ids == ["digest.unpinned"]
}
