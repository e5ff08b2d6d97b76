//! Where a decision's policy time goes: the median cost of each rule package's `deny`
//! and `warn` (and the whole entry point) over one request, on a prepared evaluator.
//!
//! `cargo run --release --example profile_policy -- [REQUEST.json] [AT] [POLICIES]`
//! (defaults: the prod baseline corpus case at its time, `policies`). Each figure is
//! the median of 200 runs minus the median of a constant query over the same input
//! (which pays for verification, plugins and input conversion), so it is the Rego alone.
//! Measured twice: on regorus's interpreter (the Data API path) and on its register VM
//! (what decides), each package's rule compiled as its own VM entry point over the exact
//! input the pipeline builds; `cargo bench --bench decision` for the whole decision.

use std::sync::Arc;
use std::time::{Duration, Instant};

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;

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

    // The VM: each rule compiled as its own entry point, run on the pipeline's input.
    let input = regorus::Value::from(evaluator.policy_input(&request, at));
    profile_vm(&engine, &input, &packages);
    profile_deadline(&engine, &input)
}

/// Each package's `deny` and `warn` (and `PROFILE_RULES`) as its own VM entry point.
fn profile_vm(engine: &Engine, input: &regorus::Value, packages: &[String]) {
    println!();
    println!("{:<28} {:>10}", "rule (register VM)", "median µs");
    let mut sum = Duration::ZERO;
    let mut rules: Vec<String> = packages
        .iter()
        .flat_map(|p| ["deny", "warn"].map(|r| format!("data.promo.rules.{p}.{r}")))
        .collect();
    rules.push("data.promo.decision".into());
    // More rule paths to time on the VM, comma-separated (e.g. `data.promo.rules`).
    if let Ok(extra) = std::env::var("PROFILE_RULES") {
        rules.extend(extra.split(',').map(str::to_string));
    }
    for rule in &rules {
        // A package without a `warn` rule has nothing to compile.
        let Ok(t) = vm_median(engine, rule, input) else {
            continue;
        };
        if rule.starts_with("data.promo.rules.") {
            sum += t;
        }
        println!(
            "{:<28} {:>10.1}",
            rule.trim_start_matches("data.promo.rules."),
            t.as_secs_f64() * 1e6
        );
    }
    println!(
        "{:<28} {:>10.1}",
        "sum of the packages",
        sum.as_secs_f64() * 1e6
    );
}

/// The deadline check's cost: the pipeline's VM reads the clock every `interval`
/// instructions (see `policy::time_limit`).
fn profile_deadline(
    engine: &Engine,
    input: &regorus::Value,
) -> Result<(), Box<dyn std::error::Error>> {
    println!();
    println!("{:<28} {:>10}", "decision, deadline check", "median µs");
    for interval in [None, Some(1), Some(16), Some(256), Some(4096)] {
        let t = vm_median_timed(engine, "data.promo.decision", input, interval)?;
        let label = interval.map_or("no deadline".to_string(), |i| format!("every {i} instr."));
        println!("{:<28} {:>10.1}", label, t.as_secs_f64() * 1e6);
    }
    Ok(())
}

/// The median of 200 VM executions of `rule` compiled as the entry point.
fn vm_median(
    engine: &Engine,
    rule: &str,
    input: &regorus::Value,
) -> Result<Duration, Box<dyn std::error::Error>> {
    vm_median_timed(engine, rule, input, None)
}

/// [`vm_median`] with the VM's deadline checked every `interval` instructions.
fn vm_median_timed(
    engine: &Engine,
    rule: &str,
    input: &regorus::Value,
    interval: Option<u32>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut rego = engine.bundle().evaluator();
    let entry: regorus::Rc<str> = regorus::Rc::from(rule);
    let compiled = rego.compile_with_entrypoint(&entry)?;
    let program = Compiler::compile_from_policy(&compiled, &[rule])?;
    let mut vm = RegoVM::new();
    vm.load_program(Arc::clone(&program));
    vm.set_data(rego.get_data())?;
    vm.set_execution_timer_config(interval.and_then(std::num::NonZeroU32::new).map(|i| {
        regorus::utils::limits::ExecutionTimerConfig {
            limit: promo_policy::policy::POLICY_TIME_LIMIT,
            check_interval: i,
        }
    }));
    let mut runs = Vec::with_capacity(200);
    for _ in 0..200 {
        vm.set_input(input.clone());
        let start = Instant::now();
        std::hint::black_box(vm.execute()?);
        runs.push(start.elapsed());
    }
    Ok(median(runs))
}
