//! The promo-policy half of `benches/opa-compare.sh`: the shipped bundle's decision on
//! regorus's register VM, as the pipeline runs it, over the exact input the pipeline
//! builds; writes what OPA needs to evaluate the same thing and the median it measured.
//!
//! `cargo run --release --example opa_side_by_side -- OUT.json [RUNS]` writes
//! `{"modules": {path: text}, "data": ..., "input": ..., "result": ..., "median_us": ...}`:
//! the bundle's policy modules, its data as the engine holds it (the rule-package list
//! included, so OPA takes the same path through `decision.rego`), the input, the decision
//! document the VM produced, and the median of `RUNS` (default 2000) VM evaluations.

use std::time::{Duration, Instant};

use promo_policy::input::parse_time;
use promo_policy::{Engine, EngineConfig, PromotionRequest};

const REQUEST: &str = "corpus/cases/prod-allow-baseline/request.json";
const AT: &str = "2026-11-26T18:00:00Z";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: opa_side_by_side OUT.json [RUNS]")?;
    let runs: usize = args.next().map_or(Ok(2000), |r| r.parse())?;
    let engine = Engine::load(&EngineConfig::with_policies("policies"))?;
    let request = PromotionRequest::from_slice(&std::fs::read(REQUEST)?)?;
    let input_json = engine.evaluator().policy_input(&request, parse_time(AT)?);
    let input = regorus::Value::from(input_json.clone());
    let mut vm = engine
        .bundle()
        .decision_vm()
        .ok_or("the shipped bundle runs on the VM")?;
    let result = promo_policy::policy::execute_vm(&mut vm, input.clone())?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        std::hint::black_box(promo_policy::policy::execute_vm(&mut vm, input.clone())?);
        times.push(started.elapsed());
    }
    times.sort();
    let median: Duration = times[times.len() / 2];
    let modules: serde_json::Map<String, serde_json::Value> = engine
        .bundle()
        .policies()
        .iter()
        .map(|f| (f.path.clone(), f.contents.clone().into()))
        .collect();
    let data = serde_json::to_value(engine.bundle().evaluator().get_data())?;
    let dump = serde_json::json!({
        "modules": modules,
        "data": data,
        "input": input_json,
        "result": serde_json::to_value(&result)?,
        "median_us": median.as_secs_f64() * 1e6,
        "runs": runs,
    });
    std::fs::write(&out, serde_json::to_vec(&dump)?)?;
    println!(
        "promo-policy (regorus VM): median {:.1} µs over {runs} runs",
        median.as_secs_f64() * 1e6
    );
    Ok(())
}
