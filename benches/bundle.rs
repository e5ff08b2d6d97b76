//! Criterion bench: activating the shipped policy bundle from its directory, from an OPA
//! archive, and from a signed archive verified against a trust store (issue 18's
//! "activation time, archive vs directory").
//!
//! Run: `cargo bench --bench bundle` (see BENCHMARKS.md for the figures).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench fails loudly on a broken fixture"
)]

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use promo_policy::attest::keys::SigningKey;
use promo_policy::attest::trust::{Grants, TrustStore, TrustedKey};
use promo_policy::policy::signature::{self, BUNDLE_PREDICATE};
use promo_policy::policy::{archive, Backend, PolicyBundle, RawFile};

fn write_archive(files: &[RawFile], to: &Path) {
    let mut bytes = Vec::new();
    archive::write(files, &mut bytes).unwrap();
    std::fs::write(to, bytes).unwrap();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = archive::read_directory(Path::new("policies")).unwrap();
    files.retain(|f| f.path != archive::SIGNATURES);
    let plain = dir.path().join("plain.tar.gz");
    write_archive(&files, &plain);
    let key = SigningKey::generate();
    let sigs = signature::sign(&files, &key, "bundles").unwrap();
    let mut signed_files = files.clone();
    signed_files.push(RawFile {
        path: archive::SIGNATURES.into(),
        bytes: sigs.into_bytes(),
    });
    let signed = dir.path().join("signed.tar.gz");
    write_archive(&signed_files, &signed);
    let trust = TrustStore::new(
        vec![TrustedKey {
            id: "bundles".into(),
            key: key.public_key(),
            grants: Grants {
                predicate_types: vec![BUNDLE_PREDICATE.into()],
                ..Grants::default()
            },
        }],
        1,
    )
    .unwrap();
    assert_eq!(
        PolicyBundle::load_trusted(&signed, Backend::Vm, &trust)
            .unwrap()
            .signed_by(),
        Some("bundles")
    );

    let mut g = c.benchmark_group("bundle_activation");
    g.bench_function("directory", |b| {
        b.iter(|| PolicyBundle::load_with(Path::new("policies"), Backend::Vm).unwrap());
    });
    g.bench_function("archive", |b| {
        b.iter(|| PolicyBundle::load_with(&plain, Backend::Vm).unwrap());
    });
    g.bench_function("signed_archive_verified", |b| {
        b.iter(|| PolicyBundle::load_trusted(&signed, Backend::Vm, &trust).unwrap());
    });
    g.finish();
}

criterion_group!(name = group; config = Criterion::default().sample_size(20); targets = benches);
criterion_main!(group);
