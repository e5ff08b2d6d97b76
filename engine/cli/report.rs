//! `promo-policy report`: flags to `promo_policy::report` and the chosen renderer to stdout or `--out`; the metrics live in the library.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use promo_policy::audit::AuditLog;
use promo_policy::report::{self, html, render, Bucket, Inputs, ReportOptions, Targets};

use super::audit::AuditKeyArgs;
use super::Exit;

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    /// One self-contained page: summary against targets, SVG charts, sortable tables.
    Html,
    /// Every number, for machines.
    Json,
    /// Tables for a PR comment or a wiki.
    Markdown,
    /// A terminal summary.
    Text,
}

const REPORT_HELP: &str = "\
The report runs `audit verify` on the log first and states what it found; a tampered log \
is still reported (its completeness shows the damage). Metrics with nothing to measure say \
\"no data\", never 0. --events is JSONL, one event per line: \
{\"type\": \"rollback\"|\"canary_failure\"|\"incident\", \"artifact\": {\"digest\": {\"sha256\": HEX}}, \
\"environment\": ENV, \"at\": RFC3339}. --targets is JSON: {\"successRate\": 0.98, \
\"timeToPromoteSeconds\": 3600, \"approvalLatencySeconds\": 1800, \"production\": \"prod\"}. \
Exit 0 when a report was written, 2 on error.";

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
#[command(after_help = REPORT_HELP)]
pub struct ReportArgs {
    /// The audit log (SQLite, as `--audit` writes it).
    #[arg(value_name = "AUDIT_LOG")]
    path: PathBuf,
    /// Decisions evaluated at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Decisions evaluated before this time (RFC 3339, exclusive).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only promotions into this environment.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// Only this service (artifact name).
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Trend bucket width.
    #[arg(long, value_enum, default_value_t = Bucket::Week)]
    bucket: Bucket,
    /// Targets for the summary row (JSON) [default: success >= 98 %, time to promote < 1 h,
    /// approval latency < 30 min].
    #[arg(long, value_name = "FILE")]
    targets: Option<PathBuf>,
    /// Rollbacks, canary failures and incidents (JSONL, see below).
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Days of log time after which an idle attempt, promotion or artifact is final (its
    /// numbers counted, its state dropped): what keeps memory flat on long logs. A retry
    /// after this long counts as a new attempt.
    #[arg(long, value_name = "DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    horizon_days: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    keys: AuditKeyArgs,
}

fn time(flag: &str, value: Option<&String>) -> anyhow::Result<Option<i64>> {
    value
        .map(|v| {
            report::metrics::unix(v)
                .with_context(|| format!("--{flag} `{v}` is not an RFC 3339 time"))
        })
        .transpose()
}

pub fn run(args: ReportArgs) -> anyhow::Result<Exit> {
    if !args.path.exists() {
        anyhow::bail!("no audit log at `{}`", args.path.display());
    }
    let targets = match &args.targets {
        Some(p) => Targets::load(p)?,
        None => Targets::default(),
    };
    let options = ReportOptions {
        since: time("since", args.since.as_ref())?,
        until: time("until", args.until.as_ref())?,
        env: args.env.clone(),
        service: args.service.clone(),
        bucket: args.bucket,
        production: targets.production.clone(),
        horizon: i64::from(args.horizon_days) * 86_400,
    };
    let events = args
        .events
        .as_deref()
        .map(report::load_events)
        .transpose()?;
    let mut filters = BTreeMap::new();
    for (k, v) in [
        ("since", &args.since),
        ("until", &args.until),
        ("env", &args.env),
        ("service", &args.service),
    ] {
        if let Some(v) = v {
            filters.insert(k.to_owned(), v.clone());
        }
    }
    let keys = args.keys.keys()?;
    let log = AuditLog::open_existing(&args.path)?;
    let inputs = Inputs {
        options,
        targets,
        events,
        catalog: report::load_catalog(&args.keys.policies),
        filters,
    };
    let report = report::build(&log, &keys, inputs)?;
    let text = match args.format {
        ReportFormat::Html => html::html(&report),
        ReportFormat::Json => render::json(&report)? + "\n",
        ReportFormat::Markdown => render::markdown(&report),
        ReportFormat::Text => render::text(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .context("cannot write the report to stdout")?;
        }
    }
    Ok(Exit::Ok)
}
