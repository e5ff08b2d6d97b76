//! `promo-policy eval`: decide one request and print the decision for a person
//! (text), a machine (json) or GitHub Actions (github), or with `--batch` many requests
//! as JSONL in input order (the work is `promo_policy::batch`'s).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use promo_policy::batch::{self, Counts, Input, ProgressLen, Shard};
use promo_policy::explain::{explain, CheckResult, Explained};
use promo_policy::input::parse_time;
use promo_policy::textsafe::printable;
use promo_policy::{Decision, PromotionRequest, Violation};

use super::{CommonArgs, Exit};

/// How to print the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalFormat {
    /// ALLOWED/DENIED and one line per violation.
    Text,
    /// `{"decision", "envelope"}`: the decision and its signed DSSE envelope.
    Json,
    /// GitHub Actions workflow commands (`::error::`, `::warning::`).
    Github,
}

const BATCH_HELP: &str = "\
Batch (--batch): INPUT is a JSONL file (one request per line; an empty line is an invalid \
input), a directory (its *.json files in name order; other entries are skipped with a note) \
or - (JSONL on stdin). Output: one JSON line per input, in input order: \
{\"index\", \"source\", \"allowed\", \"decision\", \"envelope\"}, or for an input that could not be \
evaluated {\"index\", \"source\", \"allowed\": false, \"error\": {\"id\": \"request.invalid\", \"msg\"}}. \
A line may also be a recorded request {\"request\", \"evaluatedAt\"} (`audit query --format jsonl`): \
it is evaluated at its own evaluatedAt unless --at is given (--at wins; without either, the clock). \
With --audit, each chunk's decisions are committed to the audit log before its results are printed; \
a failed append stops the batch (exit 2) and says how far the log got. \
A summary line goes to stderr. Exit codes: 0 all allowed, 1 any denied or invalid, 2 error \
that stopped the batch (unreadable input, bad bundle, unwritable --out).";

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
#[command(after_help = BATCH_HELP)]
pub struct EvalArgs {
    /// The request file (`-` for stdin); with --batch a JSONL file, a directory of
    /// request files, or `-`.
    #[arg(value_name = "REQUEST.json")]
    request: PathBuf,
    /// Output format (default: text on a terminal, json otherwise).
    #[arg(long, value_enum, conflicts_with = "batch")]
    format: Option<EvalFormat>,
    /// Evaluation time (RFC 3339) instead of the clock, for replay and tests.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Also write the signed decision (the DSSE envelope) to this file; with --batch,
    /// write the JSONL results here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also write a standard SLSA VSA v1 (verification_summary/v1) envelope to this file.
    #[arg(long, value_name = "FILE", conflicts_with = "batch")]
    vsa: Option<PathBuf>,
    /// Also list every check the bundle declares as passed, denied or warned, and
    /// print each finding's facts (text); json adds an "explanation" array.
    #[arg(long, conflicts_with = "batch")]
    explain: bool,
    /// Add attestations (DSSE envelopes or Sigstore bundles) from a JSON file, a JSONL
    /// file or a directory of them to the request before it is evaluated; repeatable.
    /// They are part of the request the decision digests and names.
    #[arg(long, value_name = "PATH", conflicts_with = "batch")]
    attestations: Vec<PathBuf>,
    /// The caller's W3C trace context (`00-<trace id>-<span id>-<flags>`): the decision
    /// records the trace id and its own child span, and `--format text` prints the
    /// `traceparent` to propagate. Overrides the request's `trace`.
    #[arg(
        long,
        value_name = "TRACEPARENT",
        env = "TRACEPARENT",
        conflicts_with = "batch"
    )]
    traceparent: Option<String>,
    /// Collect the attestations attached to this image in its registry (as `collect`
    /// does; same registry flags) and add them to the request. The request's artifact
    /// digest must be the image's pinned digest (or --platform's manifest); the
    /// decision records the pinned image and the collected evidence's digest.
    #[arg(long, value_name = "IMAGE_REF", conflicts_with = "batch")]
    collect: Option<String>,
    #[command(flatten)]
    registry: super::collect::RegistryArgs,
    /// Evaluate many requests in parallel, streaming JSONL results in input order.
    #[arg(long)]
    batch: bool,
    /// Worker threads for --batch [default: all cores].
    #[arg(long, value_name = "N", requires = "batch", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Evaluate only the inputs whose 0-based index mod N is K (indices stay global,
    /// so the shards' outputs merged by index are the whole batch's).
    #[arg(long, value_name = "K/N", requires = "batch")]
    shard: Option<Shard>,
    /// Also write the batch summary as JSON to this file.
    #[arg(long, value_name = "FILE", requires = "batch")]
    summary_json: Option<PathBuf>,
    #[command(flatten)]
    audit: super::audit::AuditArgs,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: EvalArgs) -> anyhow::Result<Exit> {
    if args.batch {
        return run_batch(args);
    }
    // Read and time-check before loading anything, so a typo fails fast.
    let now = match &args.at {
        Some(at) => parse_time(at)?,
        None => time::OffsetDateTime::now_utc(),
    };
    let trace = args
        .traceparent
        .as_deref()
        .map(promo_policy::trace::TraceRef::from_traceparent)
        .transpose()?;
    // Opened before anything is decided: a decision that could not be recorded is
    // never printed.
    let mut audit = args.audit.open()?;
    let mut bytes = read_request(&args.request)?;
    if !args.attestations.is_empty() {
        bytes = promo_policy::attest::files::request_with_attestations(&bytes, &args.attestations)
            .with_context(|| {
                format!("cannot add --attestations to `{}`", args.request.display())
            })?;
    }
    let mut collected = None;
    if let Some(image) = &args.collect {
        let (with, record) = add_collected(&bytes, image, &args.registry)?;
        bytes = with;
        collected = Some(record);
    }
    let engine = args.common.load_engine()?;
    let request = PromotionRequest::from_slice(&bytes)
        .with_context(|| format!("invalid request `{}`", args.request.display()))?;
    let mut evaluator = engine.evaluator();
    let mut evaluation = evaluator.evaluate(&request, now);
    if trace.is_some() {
        evaluation.decision.trace = trace;
    }
    if let Some(t) = &evaluation.decision.trace {
        // The span to propagate to whatever the CI step does next.
        tracing::info!(trace_id = %t.trace_id, span_id = %t.span_id, "decision traced");
        eprintln!("traceparent: {}", t.traceparent());
    }
    evaluation.decision.collected = collected;
    let signed = engine
        .sign(&evaluation)
        .context("cannot sign the decision")?;
    warn_dev_key(&engine);
    if let Some((log, options)) = &mut audit {
        let mut record = [options.prepare(&signed.decision, &signed.envelope, &request.raw)?];
        log.append(&mut record)?;
    }
    if let Some(out) = &args.out {
        let body = serde_json::to_string_pretty(&signed.envelope)? + "\n";
        std::fs::write(out, body).with_context(|| format!("cannot write `{}`", out.display()))?;
    }
    if let Some(vsa) = &args.vsa {
        let envelope = engine
            .sign_vsa(&evaluation)
            .context("cannot sign the VSA")?;
        let body = serde_json::to_string_pretty(&envelope)? + "\n";
        std::fs::write(vsa, body).with_context(|| format!("cannot write `{}`", vsa.display()))?;
    }
    let out = render(&args, &engine, &mut evaluator, &request, now, &signed)?;
    let decision = &signed.decision;
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(if decision.allowed {
        Exit::Ok
    } else {
        Exit::Deny
    })
}

/// What `eval` prints: the decision in the chosen format, with `--explain`'s account of
/// every check and of where the evidence came from.
fn render(
    args: &EvalArgs,
    engine: &promo_policy::Engine,
    evaluator: &mut promo_policy::Evaluator,
    request: &PromotionRequest,
    now: time::OffsetDateTime,
    signed: &promo_policy::evaluator::SignedDecision,
) -> anyhow::Result<String> {
    let decision = &signed.decision;
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        EvalFormat::Text
    } else {
        EvalFormat::Json
    });
    let explanation = args
        .explain
        .then(|| explain(engine.bundle().catalog(), decision));
    // Where the approvals, checks and SLO figures came from: the bundle's own account
    // (`promo.lib.evidence_report`), asked over the same input; absent from a bundle
    // that does not define it.
    let evidence = match args.explain {
        true => evaluator
            .query_data(request, now, EVIDENCE_REPORT)
            .context("cannot explain where the evidence came from")?,
        false => None,
    };
    let explained_text = |e: &[Explained]| {
        render_explanation_text(decision, e)
            + &evidence
                .as_ref()
                .map(render_evidence_text)
                .unwrap_or_default()
    };
    let out = match (format, &explanation) {
        (EvalFormat::Text, None) => render_text(decision),
        (EvalFormat::Text, Some(e)) => render_text(decision) + &explained_text(e),
        (EvalFormat::Json, None) => serde_json::to_string_pretty(signed)? + "\n",
        (EvalFormat::Json, Some(e)) => {
            let mut doc = serde_json::to_value(signed)?;
            if let Some(obj) = doc.as_object_mut() {
                obj.insert("explanation".into(), serde_json::to_value(e)?);
                if let Some(evidence) = &evidence {
                    obj.insert("evidence".into(), evidence.clone());
                }
            }
            serde_json::to_string_pretty(&doc)? + "\n"
        }
        (EvalFormat::Github, None) => render_github(decision),
        (EvalFormat::Github, Some(e)) => {
            render_github(decision)
                + "::group::promo-policy: checks\n"
                + &explained_text(e)
                + "::endgroup::\n"
        }
    };
    Ok(out)
}

/// The request with the attestations collected for `image` appended, and the record of
/// the collection for the decision. Refused when the request promotes another digest.
fn add_collected(
    bytes: &[u8],
    image: &str,
    registry: &super::collect::RegistryArgs,
) -> anyhow::Result<(Vec<u8>, promo_policy::decision::CollectedRef)> {
    let mut request = promo_policy::request::parse_strict(bytes).context("invalid request")?;
    let artifact = request
        .pointer("/artifact/digest/sha256")
        .and_then(serde_json::Value::as_str)
        .map(|hex| format!("sha256:{hex}"))
        .context("--collect: the request has no artifact.digest.sha256 to match the image")?;
    let collected = registry.collect(image)?;
    let pinned = [Some(&collected.digest), collected.platform_digest.as_ref()];
    if !pinned.iter().flatten().any(|d| **d == artifact) {
        anyhow::bail!(
            "--collect {image}: pinned {} but the request promotes {artifact}; refusing evidence for another image",
            collected.image
        );
    }
    let evidence_digest = collected.jsonl_digest();
    let docs = collected.items.into_iter().map(|i| i.document).collect();
    promo_policy::attest::files::append_attestations(&mut request, docs)
        .context("cannot add the collected attestations")?;
    let record = promo_policy::decision::CollectedRef {
        image: collected.image,
        platform_manifest: collected.platform_digest,
        evidence_digest: evidence_digest.into(),
    };
    Ok((serde_json::to_vec(&request)?, record))
}

fn warn_dev_key(engine: &promo_policy::Engine) {
    if engine.signer().is_dev_key() {
        eprintln!(
            "promo-policy: warning: decision signed with the shipped DEV key (keyid {}); it proves nothing: pass --key for real use",
            &engine.signer().keyid()[..16]
        );
    }
}

/// `eval --batch`: results to stdout or `--out`, the summary to stderr (and
/// `--summary-json`), a progress bar when stderr is a terminal.
fn run_batch(args: EvalArgs) -> anyhow::Result<Exit> {
    let at = args.at.as_deref().map(parse_time).transpose()?;
    // Opened before anything is decided (see `run`).
    let mut audit = args.audit.open()?;
    let mut input = Input::open(&args.request)?;
    let engine = args.common.load_engine()?;
    // Created before any work, so an unwritable path fails fast (exit 2).
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write `{}`", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, sink);
    warn_dev_key(&engine);
    if !input.skipped().is_empty() {
        let names = input.skipped();
        let shown: Vec<String> = names.iter().take(5).map(|n| format!("`{n}`")).collect();
        let more = names.len().saturating_sub(shown.len());
        eprintln!(
            "promo-policy: note: skipped {} entries that are not *.json request files: {}{}",
            names.len(),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    let options = batch::BatchOptions {
        jobs: args.jobs.map_or_else(batch::default_jobs, usize::from),
        shard: args.shard.unwrap_or(Shard::ALL),
        at,
    };
    let recorder = audit.as_mut().map(|(log, options)| batch::Recorder {
        log,
        options: &*options,
    });
    let summary = if std::io::stderr().is_terminal() {
        let bar = Bar::new(input.progress_len(options.shard));
        let summary = batch::run_recorded(&engine, &mut input, &mut out, &options, &bar, recorder);
        bar.bar.finish_and_clear();
        summary
    } else {
        batch::run_recorded(
            &engine,
            &mut input,
            &mut out,
            &options,
            &batch::NoProgress,
            recorder,
        )
    };
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            // The results already printed are complete lines; keep them.
            let _ = out.flush();
            return Err(e.into());
        }
    };
    eprintln!("promo-policy: batch: {summary}");
    if let Some(path) = &args.summary_json {
        let body = serde_json::to_string_pretty(&summary)? + "\n";
        std::fs::write(path, body).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(if summary.all_allowed() {
        Exit::Ok
    } else {
        Exit::Deny
    })
}

/// The batch progress bar: inputs done (a directory), bytes read (a JSONL file), or a
/// spinner with a count (a stream).
struct Bar {
    bar: ProgressBar,
    bytes: bool,
    position: AtomicU64,
}

impl Bar {
    fn new(len: Option<ProgressLen>) -> Self {
        let (bar, template, bytes) = match len {
            Some(ProgressLen::Inputs(n)) => (
                ProgressBar::new(n),
                "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len}, ETA {eta}  {wide_msg}",
                false,
            ),
            Some(ProgressLen::Bytes(n)) => (
                ProgressBar::new(n),
                "{spinner} [{elapsed_precise}] {bar:24} {binary_bytes}/{binary_total_bytes}, ETA {eta}  {wide_msg}",
                true,
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} [{elapsed_precise}] {pos} inputs  {wide_msg}",
                false,
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar,
            bytes,
            position: AtomicU64::new(0),
        }
    }
}

impl batch::Progress for Bar {
    fn input_done(&self, position: u64) {
        if self.bytes {
            // Inputs finish out of order; the bar shows the furthest end reached.
            let furthest = self.position.fetch_max(position, Ordering::Relaxed);
            self.bar.set_position(furthest.max(position));
        } else {
            self.bar.inc(1);
        }
    }

    fn chunk_written(&self, counts: &Counts, elapsed: Duration) {
        let rate = counts.inputs as f64 / elapsed.as_secs_f64().max(1e-9);
        self.bar.set_message(format!(
            "{rate:.0}/s; {} allowed, {} denied, {} invalid",
            counts.allowed, counts.denied, counts.invalid
        ));
    }
}

fn read_request(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let limit = promo_policy::request::MAX_BODY_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("cannot read the request from stdin")?;
    } else {
        // A FIFO, device or directory is refused before the open could block.
        bytes = promo_policy::fsio::read_capped(path, limit - 1)?;
    }
    Ok(bytes)
}

fn artifact_ref(d: &Decision) -> String {
    let digest = d
        .artifact
        .digest
        .sha256()
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

/// Short, for a person at a terminal: the verdict, then one line per finding. Strings
/// from the request are printed through [`printable`], so none can move the cursor or
/// forge a line.
pub fn render_text(d: &Decision) -> String {
    let mut s = format!(
        "{}  {}  {} -> {}\n",
        if d.allowed { "ALLOWED" } else { "DENIED" },
        printable(&artifact_ref(d)),
        printable(&d.from),
        printable(&d.to)
    );
    for (kind, v) in d
        .violations
        .iter()
        .map(|v| ("deny", v))
        .chain(d.warnings.iter().map(|v| ("warn", v)))
    {
        s.push_str(&format!(
            "  {kind}  {}: {}\n",
            printable(&v.id),
            printable(&v.msg)
        ));
    }
    let policy = d.policy.digest.sha256().unwrap_or("");
    s.push_str(&format!(
        "  policy {} sha256:{}  at {}  decision {}\n",
        printable(&d.policy.uri),
        printable(&policy[..policy.len().min(12)]),
        d.evaluated_at,
        d.decision_id
    ));
    s
}

/// `--explain` in text: each finding's facts, then every check and how it ended.
pub fn render_explanation_text(d: &Decision, checks: &[Explained]) -> String {
    let mut s = String::new();
    let with_facts = d.violations.iter().chain(&d.warnings);
    for v in with_facts.filter(|v| v.facts.is_some()) {
        let facts = v.facts.as_ref().map(|f| f.to_string()).unwrap_or_default();
        s.push_str(&format!(
            "  facts {}: {}\n",
            printable(&v.id),
            printable(&facts)
        ));
    }
    s.push_str(&format!("  checked ({}):\n", checks.len()));
    for c in checks {
        let mark = match c.result {
            CheckResult::Passed => "pass",
            CheckResult::Denied => "DENY",
            CheckResult::Warned => "warn",
            CheckResult::NotEvaluated => "n/a ",
        };
        let what = if c.what.is_empty() {
            format!("(reported by {})", c.package)
        } else {
            c.what.clone()
        };
        s.push_str(&format!(
            "    {mark}  {:<32} {}\n",
            printable(&c.id),
            printable(&what)
        ));
    }
    s
}

/// The bundle document `--explain` reads for where each fact came from.
const EVIDENCE_REPORT: &str = "promo/lib/evidence_report";

/// `--explain` in text: each approval, check run and the SLO figures, signed (by whom) or
/// claimed, and whether the gates counted them.
fn render_evidence_text(report: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => printable(s).into_owned(),
        serde_json::Value::Null => "-".to_owned(),
        other => printable(&other.to_string()).into_owned(),
    };
    let source = |v: &serde_json::Value| match v.get("signedBy") {
        Some(serde_json::Value::String(by)) => format!("signed by {}", printable(by)),
        _ => "claimed in the request".to_owned(),
    };
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    let modes = &report["modes"];
    let mut s = format!(
        "  evidence (approvals {}, checks {}, slo {}):\n",
        text(&modes["approvals"]),
        text(&modes["checks"]),
        text(&modes["slo"])
    );
    for a in list("approvals") {
        s.push_str(&format!(
            "    approval  {} {} at {}  {}  {}\n",
            text(&a["approver"]),
            text(&a["decision"]),
            text(&a["at"]),
            source(&a),
            if a["counted"] == true {
                "counted"
            } else {
                "not counted"
            }
        ));
    }
    for c in list("checks") {
        s.push_str(&format!(
            "    check     {} {} in {} at {}  {}  {}\n",
            text(&c["name"]),
            text(&c["status"]),
            text(&c["environment"]),
            text(&c["at"]),
            source(&c),
            if c["judged"] == true {
                "judged"
            } else {
                "not judged"
            }
        ));
    }
    let slo = &report["slo"];
    s.push_str(&match slo["source"].as_str() {
        Some("signed") => format!(
            "    slo       snapshot measured at {}  {}\n",
            text(&slo["measuredAt"]),
            source(slo)
        ),
        Some("claim") => "    slo       figures claimed in the request\n".to_owned(),
        _ => format!("    slo       none: {}\n", text(&slo["note"])),
    });
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

/// GitHub's escaping for a command's message, then [`printable`] for the other control
/// characters (the log viewer renders ANSI sequences).
fn escape_data(s: &str) -> String {
    printable(
        &s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A"),
    )
    .into_owned()
}

/// GitHub's escaping for a command's property values.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
