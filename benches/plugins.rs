//! Criterion benches: one plugin call in a fresh sandbox (a trivial plugin, then each
//! shipped plugin), the three shipped plugins as one decision runs them, the same with fuel
//! metering on, and loading the shipped plugins compiled vs from the module cache.
//!
//! Run: `cargo bench --bench plugins` (see BENCHMARKS.md for the figures).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench fails loudly on a broken fixture"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use promo_policy::plugin::host::{HostOptions, PluginHost};
use serde_json::{json, Value};

const SHIPPED: [&str; 3] = ["ticket-format", "semver-gate", "vuln-threshold"];

/// The baseline prod request and a verified vulnerability scan with three findings.
fn inputs() -> (Value, Value) {
    let request: Value = serde_json::from_slice(
        &std::fs::read("corpus/cases/prod-allow-baseline/request.json").unwrap(),
    )
    .unwrap();
    let vulns: Vec<Value> = ["HIGH", "LOW", "CRITICAL"]
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"VulnerabilityID": format!("CVE-2026-{i}"), "Severity": s}))
        .collect();
    let verified = json!({"attestations": [{
        "keyid": "scanner-2026", "signer": {"kind": "key", "id": "ci-scanner"},
        "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
        "subject": [{"name": "registry.example.com/payments/api", "digest": {"sha256": "9f86"}}],
        "subjectMatches": true,
        "predicate": {"invocation": {"uri": "https://ci.example.com/run/1"},
            "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.50.0", "version": "0.50.0",
                "result": {"SchemaVersion": 2, "ArtifactName": "api", "Results": [
                    {"Target": "api (debian 12)", "Vulnerabilities": vulns}]}},
            "metadata": {"scanStartedOn": "2026-11-26T08:00:00Z", "scanFinishedOn": "2026-11-26T08:01:00Z"}}}],
        "rejected": []});
    (request, verified)
}

fn load(dir: &Path, options: &HostOptions) -> PluginHost {
    PluginHost::load(dir, options).unwrap()
}

/// The shipped plugins with fuel metering switched on (a budget nothing reaches).
fn fueled_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for name in SHIPPED {
        let to = dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(Path::new("plugins").join(name)).unwrap() {
            let p = entry.unwrap().path();
            let file = p.file_name().unwrap().to_owned();
            if file == "plugin.toml" {
                let text = std::fs::read_to_string(&p).unwrap();
                let text = text.replace("[limits]", "[limits]\nfuel = 9000000000000000000");
                std::fs::write(to.join(file), text).unwrap();
            } else {
                std::fs::copy(&p, to.join(file)).unwrap();
            }
        }
    }
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn benches(c: &mut Criterion) {
    let (req, ver) = inputs();
    let options = HostOptions::default();
    let fixtures = load(Path::new("tests/fixtures/plugins"), &options);
    let shipped = load(Path::new("plugins"), &options);
    let (_keep, fueled_dir) = fueled_copy();
    let fueled = load(&fueled_dir, &options);
    assert!(fueled.fuel_enabled());

    let mut g = c.benchmark_group("plugin_call");
    let empty = json!({});
    g.bench_function("trivial_empty_request", |b| {
        b.iter(|| {
            let o = fixtures
                .run_plugin("well-behaved", "prod", &empty, &empty)
                .unwrap();
            black_box(o.result.is_ok())
        })
    });
    g.bench_function("trivial_baseline_request", |b| {
        b.iter(|| {
            let o = fixtures
                .run_plugin("well-behaved", "prod", &req, &ver)
                .unwrap();
            black_box(o.result.is_ok())
        })
    });
    for name in SHIPPED {
        g.bench_function(name, |b| {
            b.iter(|| {
                let o = shipped.run_plugin(name, "prod", &req, &ver).unwrap();
                black_box(o.result.is_ok())
            })
        });
        g.bench_function(format!("{name}_with_fuel"), |b| {
            b.iter(|| {
                let o = fueled.run_plugin(name, "prod", &req, &ver).unwrap();
                black_box(o.result.is_ok())
            })
        });
    }
    g.bench_function("all_three_for_prod", |b| {
        b.iter(|| black_box(shipped.run("prod", &req, &ver).len()))
    });
    g.finish();

    let mut g = c.benchmark_group("plugin_load");
    g.sample_size(10);
    g.bench_function("compile_shipped", |b| {
        b.iter(|| black_box(load(Path::new("plugins"), &options).plugins().len()))
    });
    let cache = tempfile::tempdir().unwrap();
    let cached = HostOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostOptions::default()
    };
    drop(load(Path::new("plugins"), &cached));
    g.bench_function("from_cache_shipped", |b| {
        b.iter(|| {
            let h = load(Path::new("plugins"), &cached);
            assert!(h.plugins().iter().all(|p| p.from_cache));
            black_box(h.plugins().len())
        })
    });
    g.finish();
}

criterion_group!(plugin_benches, benches);
criterion_main!(plugin_benches);
