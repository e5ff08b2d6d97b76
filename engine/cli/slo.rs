//! `promo-policy slo collect`: reads the SLO figures of a service from Prometheus and writes
//! them as a signed `slo-snapshot/v1` statement, through the same writer as `attest slo`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use promo_policy::attest::evidence::SLO_SNAPSHOT_V1;
use promo_policy::input::{format_time, parse_time};
use promo_policy::slo::{self, Plan, Prometheus, Queries};

use super::attest::{write_evidence, Common};
use super::Exit;

/// SLO snapshots.
#[derive(Debug, clap::Subcommand)]
pub enum SloCmd {
    /// Read error-budget and burn-rate figures from Prometheus and write them as a signed
    /// SLO snapshot (a figure without a usable series is left out and named on stderr).
    Collect(SloCollectArgs),
}

/// Arguments of `slo collect`.
#[derive(Debug, clap::Args)]
pub struct SloCollectArgs {
    /// The Prometheus server's base URL (plain http), e.g. `http://prometheus:9090`.
    #[arg(long, value_name = "URL")]
    prometheus: String,
    /// The service, substituted for `${service}` in the queries.
    #[arg(long)]
    service: String,
    #[command(flatten)]
    common: Common,
    /// Query templates, JSON: `errorRatio`, `objective`, `budgetRemaining`, `period`
    /// [default: sloth-style recording rules, see README].
    #[arg(long, value_name = "FILE")]
    queries: Option<PathBuf>,
    /// A burn-rate window to read (repeatable) [default: the windows of --env's burn-rate
    /// pairs in the bundle].
    #[arg(long = "window", value_name = "W")]
    windows: Vec<String>,
    /// The environment whose configured window pairs to read.
    #[arg(long, value_name = "ENV", default_value = "prod")]
    env: String,
    /// The Rego policy bundle, a directory or an OPA bundle archive (for --env's windows).
    #[arg(long, value_name = "DIR", default_value = "policies")]
    policies: PathBuf,
    /// The evaluation time of every query and the snapshot's `measuredAt` (RFC 3339)
    /// [default: now].
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// A sample older than this before the evaluation time is stale and left out.
    #[arg(long = "max-staleness", value_name = "DUR", default_value = "5m")]
    max_staleness: String,
    /// The deadline for all queries together.
    #[arg(long, value_name = "DUR", default_value = "10s")]
    timeout: String,
}

pub fn run(cmd: SloCmd) -> anyhow::Result<Exit> {
    match cmd {
        SloCmd::Collect(args) => collect(args),
    }
}

fn collect(a: SloCollectArgs) -> anyhow::Result<Exit> {
    anyhow::ensure!(!a.service.trim().is_empty(), "--service is empty");
    let key = a.common.signing_key()?;
    let max_staleness = duration("--max-staleness", &a.max_staleness)?;
    let timeout = duration("--timeout", &a.timeout)?;
    let queries = match &a.queries {
        None => Queries::default(),
        Some(path) => {
            let bytes =
                promo_policy::fsio::read_capped(path, promo_policy::fsio::MAX_CONFIG_BYTES)?;
            Queries::from_json(&bytes).with_context(|| format!("`{}`", path.display()))?
        }
    };
    let windows = if a.windows.is_empty() {
        configured_windows(&a.policies, &a.env)?
    } else {
        for w in &a.windows {
            slo::parse_window(w).context("--window")?;
        }
        let mut w: Vec<String> = Vec::new();
        for x in &a.windows {
            if !w.contains(x) {
                w.push(x.clone());
            }
        }
        w
    };
    let at = match &a.at {
        Some(t) => parse_time(t)?,
        // Whole seconds: the `time=` sent and the `measuredAt` recorded are the same instant.
        None => parse_time(&format_time(time::OffsetDateTime::now_utc()))?,
    };
    let prometheus = Prometheus::new(&a.prometheus, timeout)?;
    let plan = Plan {
        service: &a.service,
        windows: &windows,
        queries: &queries,
        at,
        max_staleness,
    };
    let snapshot = slo::collect(&prometheus, &plan)?;
    for (figure, why) in &snapshot.left_out {
        eprintln!(
            "promo-policy: slo collect: `{figure}` left out of the snapshot: {} (the policy reads it as inconclusive)",
            promo_policy::textsafe::printable(why)
        );
    }
    write_evidence(&a.common, &key, SLO_SNAPSHOT_V1, &snapshot.predicate)?;
    Ok(Exit::Ok)
}

fn duration(flag: &str, value: &str) -> anyhow::Result<Duration> {
    slo::parse_window(value).with_context(|| flag.to_string())
}

/// The windows of `env`'s burn-rate pairs, from the bundle the gate evaluates with. Its
/// signature is not checked here: the windows only choose what to read, and the gate that
/// judges the snapshot loads the bundle its own way (a window it needs and does not find
/// is inconclusive there).
fn configured_windows(policies: &std::path::Path, env: &str) -> anyhow::Result<Vec<String>> {
    let bundle = promo_policy::PolicyBundle::load(policies)
        .with_context(|| format!("cannot load the bundle `{}`", policies.display()))?;
    let data = serde_json::to_value(bundle.evaluator().get_data())?;
    let envs = data
        .pointer("/promo/config/environments")
        .and_then(Value::as_object)
        .with_context(|| {
            format!(
                "bundle `{}` has no data.promo.config.environments",
                policies.display()
            )
        })?;
    let cfg = envs.get(env).with_context(|| {
        let known: Vec<&str> = envs.keys().map(String::as_str).collect();
        format!(
            "--env `{env}` is not an environment of the bundle ({})",
            known.join(", ")
        )
    })?;
    let windows = slo::windows_from_config(cfg.get("slo").unwrap_or(&Value::Null))
        .with_context(|| format!("environment `{env}`'s slo config"))?;
    anyhow::ensure!(
        !windows.is_empty(),
        "environment `{env}` configures no burn-rate windows; name them with --window"
    );
    Ok(windows)
}
