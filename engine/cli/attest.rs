//! `promo-policy attest approval|check|slo`: writes signed process evidence (CONTRACT §2d) as a DSSE envelope, for the approval bot, CI step or monitoring bridge that knows the fact.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

use promo_policy::attest::evidence::{APPROVAL_V1, SLO_SNAPSHOT_V1, TEST_RESULT_V01};
use promo_policy::attest::keys::SigningKey;
use promo_policy::digest::{DigestSet, Sha256};
use promo_policy::input::{format_time, parse_time};
use promo_policy::sign::{load_signing_key, sign_statement};

use super::Exit;

/// Which evidence to write.
#[derive(Debug, clap::Subcommand)]
pub enum AttestCmd {
    /// A person's approval or rejection of a promotion (`approval/v1`).
    Approval(ApprovalArgs),
    /// A check's result (in-toto `test-result/v0.1`).
    Check(CheckArgs),
    /// SLO figures of the artifact's service (`slo-snapshot/v1`).
    Slo(SloArgs),
}

/// What every evidence statement needs: its subject and its signer.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The artifact the fact is about: `NAME@sha256:HEX`.
    #[arg(long, value_name = "NAME@sha256:HEX")]
    pub artifact: String,
    /// Signing key, PKCS#8 PEM (as `keygen` writes); the trust file must list its public
    /// key for this predicate type.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Write the envelope here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Arguments of `attest approval`.
#[derive(Debug, clap::Args)]
pub struct ApprovalArgs {
    #[command(flatten)]
    common: Common,
    /// Who approved (or rejected).
    #[arg(long)]
    approver: String,
    /// A role the approver holds (repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// `approved` or `rejected`.
    #[arg(long, value_parser = ["approved", "rejected"])]
    decision: String,
    /// The environment promoted from.
    #[arg(long)]
    from: String,
    /// The environment promoted to.
    #[arg(long)]
    to: String,
    /// The change ticket.
    #[arg(long)]
    ticket: Option<String>,
    /// When (RFC 3339) [default: now].
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

/// Arguments of `attest check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    common: Common,
    /// The check's name, as the environment's config lists it (e.g. `smoke`).
    #[arg(long)]
    name: String,
    /// The environment it ran in.
    #[arg(long)]
    environment: String,
    /// `passed`, `failed` or `warned`.
    #[arg(long, value_parser = ["passed", "failed", "warned"])]
    result: String,
    /// Where its run can be inspected.
    #[arg(long)]
    url: Option<String>,
    /// When it finished (RFC 3339) [default: now].
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

/// Arguments of `attest slo`.
#[derive(Debug, clap::Args)]
pub struct SloArgs {
    #[command(flatten)]
    common: Common,
    /// The service the figures are about.
    #[arg(long)]
    service: String,
    /// The objective, e.g. 0.999.
    #[arg(long)]
    objective: f64,
    /// The SLO window, e.g. `30d`.
    #[arg(long)]
    window: String,
    /// The fraction of the error budget left (negative when overspent).
    #[arg(long = "budget-remaining")]
    budget_remaining: f64,
    /// A burn rate over a window, `WINDOW=RATE` (repeatable), e.g. `1h=0.7`.
    #[arg(long = "burn-rate", value_name = "WINDOW=RATE")]
    burn_rates: Vec<String>,
    /// When the figures were measured (RFC 3339) [default: now].
    #[arg(long = "measured-at", value_name = "TIME")]
    measured_at: Option<String>,
}

pub fn run(cmd: AttestCmd) -> anyhow::Result<Exit> {
    let (common, predicate_type, predicate) = match cmd {
        AttestCmd::Approval(a) => {
            let mut p = json!({
                "approver": a.approver, "roles": a.roles, "decision": a.decision,
                "at": when(a.at.as_deref())?, "from": a.from, "to": a.to,
            });
            if let Some(ticket) = a.ticket {
                p["change"] = json!({"ticket": ticket});
            }
            (a.common, APPROVAL_V1, p)
        }
        AttestCmd::Check(c) => {
            let mut p = json!({
                "result": c.result.to_ascii_uppercase(),
                "configuration": [{"name": c.name, "annotations": {
                    "environment": c.environment, "at": when(c.at.as_deref())?}}],
                "passedTests": [], "warnedTests": [], "failedTests": [],
            });
            if let Some(url) = c.url {
                p["url"] = json!(url);
            }
            (c.common, TEST_RESULT_V01, p)
        }
        AttestCmd::Slo(s) => {
            let mut rates = serde_json::Map::new();
            for pair in &s.burn_rates {
                let (window, rate) = pair
                    .split_once('=')
                    .with_context(|| format!("--burn-rate `{pair}` is not WINDOW=RATE"))?;
                let rate: f64 = rate
                    .parse()
                    .with_context(|| format!("--burn-rate `{pair}`: `{rate}` is not a number"))?;
                rates.insert(window.to_owned(), json!(rate));
            }
            let p = json!({
                "service": s.service, "objective": s.objective, "window": s.window,
                "errorBudgetRemaining": s.budget_remaining, "burnRates": rates,
                "measuredAt": when(s.measured_at.as_deref())?,
            });
            (s.common, SLO_SNAPSHOT_V1, p)
        }
    };
    let key = common.signing_key()?;
    write_evidence(&common, &key, predicate_type, &predicate)?;
    Ok(Exit::Ok)
}

impl Common {
    /// The signing key, read (and `--artifact` checked) before any work whose result it
    /// would sign.
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        subject(&self.artifact)?;
        Ok(load_signing_key(&self.key)?)
    }
}

/// The one way evidence is written (`attest` and `slo collect`): check that the engine
/// reads the predicate back, wrap it in a statement about `--artifact`, sign it with `key`
/// and write the envelope to `--out` or stdout.
pub fn write_evidence(
    common: &Common,
    key: &SigningKey,
    predicate_type: &str,
    predicate: &Value,
) -> anyhow::Result<()> {
    // What the engine will read back must read back: refuse to sign a malformed fact.
    promo_policy::attest::evidence::from_predicate(predicate_type, predicate)?;
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [subject(&common.artifact)?],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    let envelope = sign_statement(key, &statement)?;
    let body = serde_json::to_string(&envelope)? + "\n";
    match &common.out {
        Some(path) => std::fs::write(path, body)
            .with_context(|| format!("cannot write `{}`", path.display()))?,
        None => print!("{body}"),
    }
    Ok(())
}

fn when(at: Option<&str>) -> anyhow::Result<String> {
    Ok(format_time(match at {
        Some(t) => parse_time(t)?,
        None => time::OffsetDateTime::now_utc(),
    }))
}

/// `NAME@sha256:HEX` as an in-toto subject.
fn subject(artifact: &str) -> anyhow::Result<Value> {
    let (name, digest) = artifact
        .rsplit_once('@')
        .with_context(|| format!("--artifact `{artifact}` is not NAME@sha256:HEX"))?;
    let digest = Sha256::parse_prefixed(digest).with_context(|| {
        format!("--artifact `{artifact}`: the digest must be sha256: and 64 lowercase hex digits")
    })?;
    anyhow::ensure!(!name.is_empty(), "--artifact `{artifact}` has no name");
    Ok(json!({"name": name, "digest": DigestSet::from(digest)}))
}
