//! `promo-policy diff`: evaluate recorded requests under a base bundle and a new one and print every decision that changes (text, json or markdown); the comparison is `promo_policy::testing::diff`'s, this file only loads, prints and picks the exit code.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use promo_policy::input::parse_time;
use promo_policy::testing::diff::{self, Side};
use promo_policy::{Engine, EngineConfig};

use super::{CommonArgs, Exit};

/// How to print the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// An aligned table, deny->allow first, ending with the summary line.
    Text,
    /// One JSON document: both bundles, summary counts, every change and error.
    Json,
    /// A pull-request comment: a warning on deny->allow, the summary, a table.
    Markdown,
}

const DIFF_HELP: &str = "\
Inputs: a corpus directory (<dir>/<case>/request.json + case.json) or one case directory, a \
directory of *.json request files or one such file, any other file as JSONL of bare requests \
or audit records {\"request\": {...}, \
\"evaluatedAt\": \"...\"} (e.g. `audit query --format jsonl`), or - (JSONL on stdin). \
Each input is evaluated under both bundles at the same time: --at when given, else its \
recorded time (the case's `at`, the record's `evaluatedAt`), else the request's \
`requestedAt`, else the clock read once at the start. \
--policies is the new bundle. --plugins applies to both sides, and so does --trust when given; \
without it each side verifies attestations against its own bundle's trust.json. \
Exit codes: 0 no decision flips from deny to allow (allow->deny and id changes are reported \
but pass), 1 at least one deny->allow, 2 error (a bundle that fails to load, an unreadable \
input or input line, a bad --at, no input that is a valid request).";

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
#[command(after_help = DIFF_HELP)]
pub struct DiffArgs {
    /// Requests to compare: corpus directories, directories of *.json request files,
    /// JSONL files (bare requests or audit records), or `-` for stdin.
    #[arg(value_name = "INPUT", default_value = "corpus/cases")]
    inputs: Vec<PathBuf>,
    /// The old policy bundle directory, to compare `--policies` (the new one) against.
    #[arg(long, value_name = "DIR", required_unless_present = "base_rev")]
    base: Option<PathBuf>,
    /// Instead of --base: the `--policies` directory as it was at this git revision
    /// (e.g. `origin/main`), read with git from the repository of the current directory.
    #[arg(long, value_name = "REV", conflicts_with = "base")]
    base_rev: Option<String>,
    /// The new side as the `--policies` directory at this git revision, instead of the
    /// files on disk.
    #[arg(long, value_name = "REV")]
    policies_rev: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: DiffFormat,
    /// Evaluation time (RFC 3339) of every input: it wins over a case's `at`, a
    /// record's `evaluatedAt` and a request's `requestedAt`.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// The new bundle is `--policies`; `--plugins` and a given `--trust` apply to both
    /// sides (without `--trust`, each side uses its own bundle's `trust.json`).
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
    let rule = diff::diff_time_rule(at, time::OffsetDateTime::now_utc());
    let policies = &args.common.policies;
    // Held until the end: dropping a checkout removes its temporary directory.
    let base_checkout = args
        .base_rev
        .as_deref()
        .map(|rev| diff::checkout(policies, rev))
        .transpose()?;
    let new_checkout = args
        .policies_rev
        .as_deref()
        .map(|rev| diff::checkout(policies, rev))
        .transpose()?;
    let base_dir = match (&base_checkout, &args.base) {
        (Some(c), _) => (c.path().to_path_buf(), c.label().to_string()),
        (None, Some(dir)) => (dir.clone(), dir.display().to_string()),
        // clap requires one of them; still an error, never a guess.
        (None, None) => anyhow::bail!("give --base DIR or --base-rev REV"),
    };
    let new_dir = match &new_checkout {
        Some(c) => (c.path().to_path_buf(), c.label().to_string()),
        None => (policies.clone(), policies.display().to_string()),
    };
    let (base, new) = rayon::join(
        || load(&args.common, base_dir, "--base"),
        || load(&args.common, new_dir, "--policies"),
    );
    let (base, new) = (base?, new?);
    let report = diff::run(&base, &new, &args.inputs, rule)?;
    match args.format {
        DiffFormat::Text => print!("{}", diff::render_text(&report)),
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        DiffFormat::Markdown => print!("{}", diff::render_markdown(&report)),
    }
    if args.format != DiffFormat::Text {
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
    if report.summary.evaluated == 0 {
        // Printed above: the error rows say why each input was not evaluated.
        eprintln!(
            "promo-policy: error: no request could be evaluated in {}: a diff over nothing proves nothing",
            args.inputs
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(Exit::Error);
    }
    Ok(if report.loosens() {
        Exit::Deny
    } else {
        Exit::Ok
    })
}

/// Load one side's engine from `(dir, label)`, naming the flag and bundle when it fails.
fn load(common: &CommonArgs, (dir, label): (PathBuf, String), flag: &str) -> anyhow::Result<Side> {
    let config = EngineConfig {
        policies: dir,
        ..common.engine_config()
    };
    let engine: Arc<Engine> = Engine::load(&config)
        .with_context(|| format!("cannot load the {flag} bundle `{label}`"))?;
    Ok(Side { engine, label })
}
