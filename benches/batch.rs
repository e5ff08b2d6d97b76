//! Criterion benches of `eval --batch`'s engine: decisions per second at one and two
//! worker threads on the generated workload, next to the floor of N bare regorus evals
//! of the same inputs and the same pipeline run sequentially without batch, and
//! attestation verification with and without the cache.
//!
//! Run: `cargo bench --bench batch` (see BENCHMARKS.md for the figures; peak RSS is
//! measured on the binary with `/usr/bin/time -v`, as BENCHMARKS.md shows).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench fails loudly on a broken fixture"
)]
#![allow(
    clippy::too_many_lines,
    reason = "each bench group is one setup and its measurements, read top to bottom"
)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use promo_policy::attest::cache::VerifyCache;
use promo_policy::attest::verify_attestations;
use promo_policy::batch::workload::{Workload, DEFAULT_ARTIFACTS, WORKLOAD_AT};
use promo_policy::batch::{self, BatchOptions, Input, NoProgress, Shard};
use promo_policy::input::parse_time;
use promo_policy::{Engine, EngineConfig, PromotionRequest};

/// Requests per iteration: about half a second of work at one thread.
const N: u64 = 200;

fn benches(c: &mut Criterion) {
    let engine = Engine::load(&EngineConfig::with_policies("policies")).unwrap();
    let now = parse_time(WORKLOAD_AT).unwrap();
    let mut workload = Workload::from_corpus(
        Path::new("corpus/cases"),
        Path::new("corpus/keys"),
        1,
        DEFAULT_ARTIFACTS,
    )
    .unwrap();
    let generated: Vec<_> = (0..N).map(|i| workload.request(i).unwrap()).collect();
    let jsonl: Vec<u8> = generated
        .iter()
        .flat_map(|g| (g.request.to_string() + "\n").into_bytes())
        .collect();
    let requests: Vec<PromotionRequest> = generated
        .iter()
        .map(|g| PromotionRequest::from_value(g.request.clone()).unwrap())
        .collect();

    // The floor's inputs: exactly what the pipeline hands regorus, built beforehand.
    let inputs: Vec<regorus::Value> = requests
        .iter()
        .map(|r| {
            let verified = verify_attestations(
                engine.trust(),
                &r.typed.attestations,
                &r.typed.artifact.digest,
                &r.typed.to,
            );
            regorus::Value::from(serde_json::json!({
                "request": r.raw,
                "verified": verified,
                "plugins": {},
                "now": WORKLOAD_AT,
            }))
        })
        .collect();

    let run = |jobs: usize| {
        let mut input = Input::from_reader(std::io::Cursor::new(jsonl.clone()), "bench", None);
        let options = BatchOptions {
            jobs,
            shard: Shard::ALL,
            at: Some(now),
        };
        let summary = batch::run(
            &engine,
            &mut input,
            &mut std::io::sink(),
            &options,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(summary.inputs, N);
        summary
    };

    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("bare_regorus_floor", |b| {
        let mut rego = engine.bundle().evaluator();
        b.iter(|| {
            for input in &inputs {
                rego.set_input(input.clone());
                black_box(rego.eval_rule("data.promo.decision".to_string()).unwrap());
            }
        })
    });
    g.bench_function("pipeline_sequential", |b| {
        // The pipeline alone, one evaluator, no batch machinery (no JSONL reading,
        // threads, reordering or writing): what `jobs_1` costs beyond it is batch's own.
        let lines: Vec<&[u8]> = jsonl
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let mut evaluator = engine.evaluator();
        b.iter(|| {
            for line in &lines {
                let r = PromotionRequest::from_slice(line).unwrap();
                black_box(evaluator.decide(&r, now).unwrap());
            }
        })
    });
    g.bench_function("jobs_1", |b| b.iter(|| black_box(run(1))));
    g.bench_function("jobs_2", |b| b.iter(|| black_box(run(2))));
    g.finish();

    // Verification alone, per batch of N: what wiring the cache into the evaluator saves.
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    g.bench_function("uncached", |b| {
        b.iter(|| {
            for r in &requests {
                black_box(verify_attestations(
                    engine.trust(),
                    &r.typed.attestations,
                    &r.typed.artifact.digest,
                    &r.typed.to,
                ));
            }
        })
    });
    g.bench_function("cached_all_hits", |b| {
        // Warmed once, so every lookup hits: the cost of an envelope seen before.
        let cache = VerifyCache::default();
        let verify = |cache: &VerifyCache| {
            for r in &requests {
                black_box(cache.verify_attestations(
                    engine.trust(),
                    &r.typed.attestations,
                    &r.typed.artifact.digest,
                    &r.typed.to,
                ));
            }
        };
        verify(&cache);
        b.iter(|| verify(&cache))
    });
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
