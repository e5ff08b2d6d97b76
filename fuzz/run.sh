#!/usr/bin/env bash
# A bounded property-based fuzz run of every parser a client, a config file or a bundle
# author reaches (tests/properties.rs): random bytes, random JSON and random mutations of
# valid documents, with the fail-closed invariants checked on each.
#
#   fuzz/run.sh              100 000 cases per property, at most 10 minutes
#   CASES=N MINUTES=M fuzz/run.sh
#
# Not coverage-guided: cargo-fuzz needs a nightly toolchain and libFuzzer, which CI's
# registries do not provide. proptest shrinks any failure and records it in
# tests/properties.proptest-regressions; commit that file so the case is replayed by
# every `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cases=${CASES:-100000}
minutes=${MINUTES:-10}
echo "fuzz: ${cases} cases per property, at most ${minutes} min"
start=$(date +%s)
PROPTEST_CASES="$cases" timeout "${minutes}m" \
  cargo test --release --locked --test integration properties:: -- --test-threads 2
echo "fuzz: clean after $(( $(date +%s) - start )) s"
