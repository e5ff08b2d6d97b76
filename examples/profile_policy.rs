//! Where a decision's policy time goes: the median cost of each rule package's `deny`
//! and `warn` (and the whole entry point) over one request, on a prepared evaluator.
//!
//! `cargo run --release --example profile_policy -- [REQUEST.json] [AT] [POLICIES]`
//! (defaults: the prod baseline corpus case at its time, `policies`). Each figure is
//! the median of 200 runs minus the median of a constant query over the same input
//! (which pays for verification, plugins and input conversion), so it is the Rego alone.
//! Measured on regorus's interpreter (the Data API path): the VM that decides compiles
//! only the entry point, so per-package figures come from the interpreter; use them to
//! compare packages and rewrites, and `cargo bench --bench decision` for the VM.

use std::time::{Duration, Instant};

use promo_policy::input::parse_time;
use promo_policy::{Engine, EngineConfig, PromotionRequest};

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let request_path = args.first().map_or(
        "corpus/cases/prod-allow-baseline/request.json",
        String::as_str,
    );
    let at = parse_time(args.get(1).map_or("2026-11-26T18:00:00Z", String::as_str))?;
    let policies = args.get(2).map_or("policies", String::as_str);
    let engine = Engine::load(&EngineConfig::with_policies(policies))?;
    let request = PromotionRequest::from_slice(&std::fs::read(request_path)?)?;
    let mut evaluator = engine.evaluator();
    let mut time = |path: &str| -> Result<Duration, Box<dyn std::error::Error>> {
        let mut runs = Vec::with_capacity(200);
        for _ in 0..200 {
            let start = Instant::now();
            evaluator.query_data(&request, at, path)?;
            runs.push(start.elapsed());
        }
        Ok(median(runs))
    };
    let floor = time("promo/config/order")?;
    let mut packages: Vec<String> = engine
        .bundle()
        .catalog()
        .iter()
        .map(|c| c.package.clone())
        .collect();
    packages.dedup();
    let whole = time("promo/decision")?;
    println!("{:<28} {:>10}", "rule (over the request)", "median µs");
    println!(
        "{:<28} {:>10.1}",
        "(input, verify, plugins)",
        floor.as_secs_f64() * 1e6
    );
    let mut sum = Duration::ZERO;
    for p in &packages {
        for rule in ["deny", "warn"] {
            let t = time(&format!("promo/rules/{p}/{rule}"))?.saturating_sub(floor);
            sum += t;
            println!(
                "{:<28} {:>10.1}",
                format!("{p}.{rule}"),
                t.as_secs_f64() * 1e6
            );
        }
    }
    println!(
        "{:<28} {:>10.1}",
        "sum of the packages",
        sum.as_secs_f64() * 1e6
    );
    println!(
        "{:<28} {:>10.1}",
        "data.promo.decision",
        whole.saturating_sub(floor).as_secs_f64() * 1e6
    );
    Ok(())
}
