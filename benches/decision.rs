//! Criterion benches: one decision through the whole pipeline next to its floor (a bare
//! regorus eval of the same bundle on the same input, on its register VM as the
//! pipeline runs it and on its interpreter, plus the same verify and sign).
//!
//! Run: `cargo bench --bench decision` (see BENCHMARKS.md for the figures).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench fails loudly on a broken fixture"
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use promo_policy::attest::verify_attestations;
use promo_policy::input::parse_time;
use promo_policy::sign::{decision_statement, DEV_SIGNING_KEY_PEM};
use promo_policy::{Engine, EngineConfig, PromotionRequest};

/// A staging -> prod request that passes every gate and carries one signed provenance.
const REQUEST: &str = "corpus/cases/prod-allow-baseline/request.json";
const AT: &str = "2026-11-26T18:00:00Z";

fn benches(c: &mut Criterion) {
    let engine = Engine::load(&EngineConfig::with_policies("policies")).unwrap();
    let bytes = std::fs::read(REQUEST).unwrap();
    let now = parse_time(AT).unwrap();
    let request = PromotionRequest::from_slice(&bytes).unwrap();
    let mut evaluator = engine.evaluator();
    let evaluation = evaluator.evaluate(&request, now);
    assert!(
        evaluation.decision.allowed,
        "the bench request must be allowed: {:?}",
        evaluation.decision.violations
    );

    // The floor's input: exactly what the pipeline hands to regorus.
    let input = regorus::Value::from(evaluator.policy_input(&request, now));
    let mut bare = engine.bundle().evaluator();
    let mut bare_vm = engine
        .bundle()
        .decision_vm()
        .expect("the bundle compiles for the VM");
    let key = promo_policy::attest::keys::SigningKey::from_pkcs8_pem(DEV_SIGNING_KEY_PEM).unwrap();
    let statement = decision_statement(&evaluation.decision, &evaluation.verified).unwrap();

    let mut g = c.benchmark_group("decision");
    g.bench_function("bare_regorus_interpreter", |b| {
        b.iter(|| {
            bare.set_input(input.clone());
            black_box(bare.eval_rule("data.promo.decision".to_string()).unwrap())
        })
    });
    g.bench_function("bare_regorus_vm", |b| {
        b.iter(|| {
            bare_vm.set_input(input.clone());
            black_box(bare_vm.execute().unwrap())
        })
    });
    g.bench_function("pipeline_unsigned", |b| {
        b.iter(|| black_box(evaluator.evaluate_bytes(black_box(&bytes), now).unwrap()))
    });
    g.bench_function("floor_verify_sign_eval", |b| {
        b.iter(|| {
            let v = verify_attestations(
                engine.trust(),
                &request.typed.attestations,
                &request.typed.artifact.digest,
                &request.typed.to,
            );
            bare_vm.set_input(input.clone());
            let d = bare_vm.execute().unwrap();
            let env = promo_policy::sign::sign_statement(&key, &statement).unwrap();
            black_box((v, d, env))
        })
    });
    g.bench_function("pipeline_signed", |b| {
        b.iter(|| {
            let r = PromotionRequest::from_slice(black_box(&bytes)).unwrap();
            black_box(evaluator.decide(&r, now).unwrap())
        })
    });
    let mut on_interpreter = engine.evaluator();
    on_interpreter.use_interpreter(true);
    g.bench_function("pipeline_signed_interpreter", |b| {
        b.iter(|| {
            let r = PromotionRequest::from_slice(black_box(&bytes)).unwrap();
            black_box(on_interpreter.decide(&r, now).unwrap())
        })
    });
    // The plugins' share: the same pipeline with no plugin directory.
    let no_plugins = Engine::load(&EngineConfig {
        plugins: "no-plugins-here".into(),
        ..EngineConfig::with_policies("policies")
    })
    .unwrap();
    let mut bare_pipeline = no_plugins.evaluator();
    g.bench_function("pipeline_unsigned_without_plugins", |b| {
        b.iter(|| {
            black_box(
                bare_pipeline
                    .evaluate_bytes(black_box(&bytes), now)
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(name = group; config = Criterion::default().sample_size(50); targets = benches);
criterion_main!(group);
