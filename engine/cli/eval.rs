//! `promo-policy eval`: decide one request and print the decision for a person
//! (text), a machine (json) or GitHub Actions (github).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use promo_policy::evaluator::parse_time;
use promo_policy::{Decision, PromotionRequest, Violation};

use super::{CommonArgs, Exit};

/// How to print the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// ALLOWED/DENIED and one line per violation.
    Text,
    /// `{"decision", "envelope"}`: the decision and its signed DSSE envelope.
    Json,
    /// GitHub Actions workflow commands (`::error::`, `::warning::`).
    Github,
}

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The request file (`-` for stdin).
    #[arg(value_name = "REQUEST.json")]
    request: PathBuf,
    /// Output format (default: text on a terminal, json otherwise).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Evaluation time (RFC 3339) instead of the clock, for replay and tests.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Also write the signed decision (the DSSE envelope) to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: EvalArgs) -> anyhow::Result<Exit> {
    // Read and time-check before loading anything, so a typo fails fast.
    let now = match &args.at {
        Some(at) => parse_time(at)?,
        None => time::OffsetDateTime::now_utc(),
    };
    let bytes = read_request(&args.request)?;
    let engine = args.common.load_engine()?;
    let request = PromotionRequest::from_slice(&bytes)
        .with_context(|| format!("invalid request `{}`", args.request.display()))?;
    let mut evaluator = engine.evaluator();
    let signed = evaluator
        .decide(&request, now)
        .context("cannot sign the decision")?;
    if engine.signer().is_dev_key() {
        eprintln!(
            "promo-policy: warning: decision signed with the shipped DEV key (keyid {}); it proves nothing: pass --key for real use",
            &engine.signer().keyid()[..16]
        );
    }
    if let Some(out) = &args.out {
        let body = serde_json::to_string_pretty(&signed.envelope)? + "\n";
        std::fs::write(out, body).with_context(|| format!("cannot write `{}`", out.display()))?;
    }
    let decision = &signed.decision;

    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Text
    } else {
        Format::Json
    });
    let out = match format {
        Format::Text => render_text(decision),
        Format::Json => serde_json::to_string_pretty(&signed)? + "\n",
        Format::Github => render_github(decision),
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(if decision.allowed {
        Exit::Ok
    } else {
        Exit::Deny
    })
}

fn read_request(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let limit = promo_policy::request::MAX_BODY_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("cannot read the request from stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read `{}`", path.display()))?;
    }
    Ok(bytes)
}

fn artifact_ref(d: &Decision) -> String {
    let digest = d
        .artifact
        .digest
        .get("sha256")
        .map(|h| format!("sha256:{}", &h[..h.len().min(12)]))
        .or_else(|| {
            d.artifact
                .digest
                .iter()
                .next()
                .map(|(a, h)| format!("{a}:{}", &h[..h.len().min(12)]))
        })
        .unwrap_or_default();
    format!("{}@{}", d.artifact.name, digest)
}

/// Short, for a person at a terminal: the verdict, then one line per finding.
pub fn render_text(d: &Decision) -> String {
    let mut s = format!(
        "{}  {}  {} -> {}\n",
        if d.allowed { "ALLOWED" } else { "DENIED" },
        artifact_ref(d),
        d.from,
        d.to
    );
    for v in &d.violations {
        s.push_str(&format!("  deny  {}: {}\n", v.id, v.msg));
    }
    for v in &d.warnings {
        s.push_str(&format!("  warn  {}: {}\n", v.id, v.msg));
    }
    let policy = d
        .policy
        .digest
        .get("sha256")
        .map(String::as_str)
        .unwrap_or("");
    s.push_str(&format!(
        "  policy {} sha256:{}  at {}  decision {}\n",
        d.policy.uri,
        &policy[..policy.len().min(12)],
        d.evaluated_at,
        d.decision_id
    ));
    s
}

/// GitHub Actions workflow commands: one annotation per finding, then a notice.
pub fn render_github(d: &Decision) -> String {
    let line = |level: &str, v: &Violation| {
        format!(
            "::{level} title={}::{}\n",
            escape_property(&v.id),
            escape_data(&v.msg)
        )
    };
    let mut s: String = d.violations.iter().map(|v| line("error", v)).collect();
    s.extend(d.warnings.iter().map(|v| line("warning", v)));
    s.push_str(&format!(
        "::notice title=promo-policy::{}\n",
        escape_data(&format!(
            "{} {} {} -> {} (decision {})",
            if d.allowed { "ALLOWED" } else { "DENIED" },
            artifact_ref(d),
            d.from,
            d.to,
            d.decision_id
        ))
    ));
    s
}

/// GitHub's escaping for a command's message.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub's escaping for a command's property values.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
