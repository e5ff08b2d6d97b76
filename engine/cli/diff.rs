//! `promo-policy diff`: evaluate recorded requests under a base bundle and a new one and print every decision that changes (text, json or markdown); the comparison is `promo_policy::testing::diff`'s, this file only loads, prints and picks the exit code.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use promo_policy::evaluator::parse_time;
use promo_policy::testing::diff::{self, Clock, Side};
use promo_policy::{Engine, EngineConfig};

use super::{CommonArgs, Exit};

/// How to print the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table, deny->allow first, ending with the summary line.
    Text,
    /// One JSON document: both bundles, summary counts, every change and error.
    Json,
    /// A pull-request comment: a warning on deny->allow, the summary, a table.
    Markdown,
}

const DIFF_HELP: &str = "\
Inputs: a corpus directory (<dir>/<case>/request.json + case.json), a directory of *.json \
request files, a JSONL file of bare requests or audit records {\"request\": {...}, \
\"evaluatedAt\": \"...\"} (e.g. `audit query --format jsonl`), or - (JSONL on stdin). \
Each input is evaluated under both bundles at the same time: its recorded time (the case's \
`at`, the record's `evaluatedAt`), else --at, else the request's `requestedAt`, else the \
clock read once at the start. \
Exit codes: 0 no decision flips from deny to allow (allow->deny and id changes are reported \
but pass), 1 at least one deny->allow, 2 error (a bundle that fails to load, an unreadable \
input or input line, a bad --at, no inputs at all).";

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
#[command(after_help = DIFF_HELP)]
pub struct DiffArgs {
    /// Requests to compare: corpus directories, directories of *.json request files,
    /// JSONL files (bare requests or audit records), or `-` for stdin.
    #[arg(value_name = "INPUT", default_value = "corpus/cases")]
    inputs: Vec<PathBuf>,
    /// The old policy bundle directory, to compare `--policies` (the new one) against.
    #[arg(long, value_name = "DIR")]
    base: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Evaluation time (RFC 3339) for requests that recorded none (bare requests);
    /// a case's `at` and a record's `evaluatedAt` always win.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// The new bundle is `--policies`; `--trust` (else each bundle's own
    /// `trust.json`), `--plugins` and `--key` apply to both sides.
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: DiffArgs) -> anyhow::Result<Exit> {
    // Check what is cheap before loading two bundles.
    let at = args
        .at
        .as_deref()
        .map(parse_time)
        .transpose()
        .context("invalid --at")?;
    let clock = Clock {
        at,
        now: time::OffsetDateTime::now_utc(),
    };
    let (base, new) = rayon::join(
        || load(&args.common, &args.base, "--base"),
        || load(&args.common, &args.common.policies, "--policies"),
    );
    let (base, new) = (base?, new?);
    let report = diff::run(&base, &new, &args.inputs, clock)?;
    if report.inputs() == 0 {
        anyhow::bail!(
            "no requests found in {}: a diff over nothing proves nothing",
            args.inputs
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match args.format {
        Format::Text => print!("{}", diff::render_text(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Markdown => print!("{}", diff::render_markdown(&report)),
    }
    if args.format != Format::Text {
        // The machine formats go to a file or a comment; the CI log still gets the gist.
        eprintln!("promo-policy diff: {}", report.summary.line());
    }
    if report.summary.unread > 0 {
        eprintln!(
            "promo-policy: error: {} input(s) could not be read or timed, so whether their decisions change is unknown (see the error rows)",
            report.summary.unread
        );
        return Ok(Exit::Error);
    }
    Ok(if report.loosens() {
        Exit::Deny
    } else {
        Exit::Ok
    })
}

/// Load one side's engine, naming the flag and directory when it fails.
fn load(common: &CommonArgs, policies: &std::path::Path, flag: &str) -> anyhow::Result<Side> {
    let config = EngineConfig {
        policies: policies.to_path_buf(),
        ..common.engine_config()
    };
    let engine: Arc<Engine> = Engine::load(&config)
        .with_context(|| format!("cannot load the {flag} bundle `{}`", policies.display()))?;
    Ok(Side {
        engine,
        label: policies.display().to_string(),
    })
}
