//! Criterion benches: one uncached keyless (Sigstore bundle) verification next to one
//! uncached key-signed DSSE envelope verification, in the same run, and the same bundle
//! through the verification cache.
//!
//! Run: `cargo bench --bench keyless` (see BENCHMARKS.md for the figures). With
//! `../shared/fixtures/sigstore` present it also times a real public-good bundle (SCT,
//! inclusion proof, checkpoint and SET checked).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench fails loudly on a broken fixture"
)]

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use promo_policy::attest::cache::VerifyCache;
use promo_policy::attest::verify::verify_envelope;
use promo_policy::attest::TrustStore;
use promo_policy::digest::DigestSet;
use serde_json::{json, Value};

/// A prod request whose provenance is a key-signed envelope, and one whose provenance is
/// a keyless bundle (the corpus's test Sigstore instance).
const KEYED: &str = "corpus/cases/prod-allow-baseline/request.json";
const KEYLESS: &str = "corpus/cases/prod-keyless-github-attestation-allow/request.json";

fn first_attestation(path: &str) -> (Value, DigestSet) {
    let request: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let digest = serde_json::from_value(request["artifact"]["digest"].clone()).unwrap();
    (request["attestations"][0].clone(), digest)
}

fn benches(c: &mut Criterion) {
    let store = TrustStore::load(Path::new("policies/trust.json")).unwrap();
    let (envelope, digest) = first_attestation(KEYED);
    let (bundle, bundle_digest) = first_attestation(KEYLESS);
    // Both must verify, or the bench would time a rejection.
    verify_envelope(&store, 0, &envelope, &digest, "prod").unwrap();
    verify_envelope(&store, 0, &bundle, &bundle_digest, "prod").unwrap();

    let mut g = c.benchmark_group("verify_uncached");
    g.bench_function("key_signed_envelope", |b| {
        b.iter(|| black_box(verify_envelope(&store, 0, &envelope, &digest, "prod").unwrap()))
    });
    g.bench_function("keyless_bundle_test_instance", |b| {
        b.iter(|| black_box(verify_envelope(&store, 0, &bundle, &bundle_digest, "prod").unwrap()))
    });
    let real = Path::new("../shared/fixtures/sigstore/bundles/custom-issuer.sigstore.json");
    if real.is_file() {
        let real: Value = serde_json::from_slice(&std::fs::read(real).unwrap()).unwrap();
        let real_store = TrustStore::from_json(
            &json!({"trustedRoots": {"public-good": "builtin:public-good"}, "identities": [{
                "id": "too-legit", "trustedRoot": "public-good",
                "issuer": "https://token.actions.githubusercontent.com/hammer-time",
                "subject": "https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main",
                "predicateTypes": ["https://slsa.dev/provenance/v1"], "builders": ["https://github.com/*"]}]}),
            Path::new("."),
        )
        .unwrap();
        verify_envelope(&real_store, 0, &real, &digest, "prod").unwrap();
        g.bench_function("keyless_bundle_public_good", |b| {
            b.iter(|| black_box(verify_envelope(&real_store, 0, &real, &digest, "prod").unwrap()))
        });
    } else {
        eprintln!("skipped keyless_bundle_public_good: ../shared/fixtures/sigstore is missing");
    }
    g.finish();

    let cache = VerifyCache::default();
    let mut g = c.benchmark_group("verify_cached");
    g.bench_function("keyless_bundle_test_instance", |b| {
        b.iter(|| {
            black_box(
                cache
                    .verify_envelope(&store, 0, &bundle, &bundle_digest, "prod")
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(keyless, benches);
criterion_main!(keyless);
