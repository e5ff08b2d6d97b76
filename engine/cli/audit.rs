//! `promo-policy audit`: verify, checkpoint, query and export the audit log, plus the `--audit` flags `eval` and `serve` share; the log's rules live in `promo_policy::audit`, not here.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use promo_policy::audit::chain::{verify_export, verify_log};
use promo_policy::audit::{AuditLog, Checkpoint, Filter, Record, RecordOptions, VerifyReport};
use promo_policy::error_chain::ErrorChain;
use promo_policy::input::{format_time, parse_time};
use promo_policy::server::AuditConfig;

use super::verify::{decision_keys, trusted_decision_keys};
use super::{CommonArgs, Exit};

/// Recording flags shared by `eval` (single and `--batch`) and `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Record every decision in this audit log (SQLite, created if missing) before
    /// printing or returning it; a decision that cannot be recorded is not given out.
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,
    /// Store this request field as `***masked***` in the audit log (a JSON pointer, e.g.
    /// `/change/description`); repeatable.
    #[arg(long = "audit-mask", value_name = "POINTER", requires = "audit")]
    pub audit_mask: Vec<String>,
    /// Do not store requests in the audit log, only their digests.
    #[arg(long, requires = "audit")]
    pub audit_no_request: bool,
    /// Cap the audit log at N database pages (tests: a disk that fills up).
    #[arg(long, value_name = "N", hide = true, requires = "audit")]
    pub audit_max_pages: Option<u64>,
}

impl AuditArgs {
    fn record_options(&self) -> anyhow::Result<RecordOptions> {
        Ok(RecordOptions::new(
            self.audit_mask.clone(),
            !self.audit_no_request,
        )?)
    }

    /// Open the log for appending (before anything is decided), if asked to.
    pub fn open(&self) -> anyhow::Result<Option<(AuditLog, RecordOptions)>> {
        let Some(path) = &self.audit else {
            return Ok(None);
        };
        let options = self.record_options()?;
        let log = AuditLog::open_for_append(path, self.audit_max_pages)?;
        Ok(Some((log, options)))
    }

    /// The sidecar's audit configuration, if asked for.
    pub fn server_config(&self) -> anyhow::Result<Option<AuditConfig>> {
        let Some(path) = &self.audit else {
            return Ok(None);
        };
        Ok(Some(AuditConfig {
            path: path.clone(),
            options: self.record_options()?,
            max_pages: self.audit_max_pages,
        }))
    }
}

const AUDIT_HELP: &str = "\
The audit log is a SQLite file written by `eval --audit`, `eval --batch --audit` and \
`serve --audit`: one hash-chained record per signed decision. `verify` exits 0 intact, \
1 tampered (naming the first broken seq), 2 error; the other commands exit 0, or 2 on error.";

/// Arguments of `audit`.
#[derive(Debug, clap::Args)]
#[command(after_help = AUDIT_HELP)]
pub struct AuditCmd {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Walk the chain: every hash, link and envelope signature (exit 0 intact, 1 tampered, 2 error).
    Verify(VerifyArgs),
    /// Verify the log, then print a signed checkpoint of its head to keep elsewhere.
    Checkpoint(CheckpointArgs),
    /// Find records by artifact digest, environment, outcome, time or violation.
    Query(QueryArgs),
    /// Write records as JSONL with their hashes, for a central store (`audit verify` reads it).
    Export(ExportArgs),
}

/// Keys that check the decisions' signatures.
#[derive(Debug, clap::Args)]
pub(super) struct AuditKeyArgs {
    /// Public key (SPKI PEM) the decisions must be signed with [default: the keys the
    /// trust file trusts for decisions].
    #[arg(long = "key", value_name = "PUB.pem")]
    public_key: Option<PathBuf>,
    /// Trust file holding the decision keys [default: <policies>/trust.json].
    #[arg(long, value_name = "FILE")]
    trust: Option<PathBuf>,
    /// The bundle directory whose trust file is the default.
    #[arg(long, value_name = "DIR", default_value = "policies")]
    pub(super) policies: PathBuf,
}

impl AuditKeyArgs {
    pub(super) fn keys(&self) -> anyhow::Result<Vec<promo_policy::attest::PublicKey>> {
        let common = CommonArgs {
            policies: self.policies.clone(),
            // Keys come from the trust file only; plugins play no part.
            plugins: PathBuf::from("none"),
            trust: self.trust.clone(),
            key: None,
            interpreter: false,
        };
        decision_keys(self.public_key.as_deref(), &common)
    }
}

/// How `audit verify` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    /// One line: INTACT or TAMPERED with the seq and what is wrong.
    Text,
    /// The report as JSON.
    Json,
}

/// Arguments of `audit verify`.
#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The audit log, or a JSONL export of it (`audit export`).
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// A signed checkpoint (`audit checkpoint`): the chain must reach its head unchanged,
    /// so records cut off the tail since it was taken are found.
    #[arg(long, value_name = "CHECKPOINT.json")]
    against: Option<PathBuf>,
    /// An export made `--since N` starts at seq N: say so, and its first record's link
    /// is taken as given. Without it an export must start at seq 1, so records cut off
    /// its start are found.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    from_seq: Option<u64>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    #[command(flatten)]
    keys: AuditKeyArgs,
}

/// Arguments of `audit checkpoint`.
#[derive(Debug, clap::Args)]
struct CheckpointArgs {
    /// The audit log.
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Also write the checkpoint to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Time of the checkpoint (RFC 3339) instead of the clock, for tests.
    #[arg(long, value_name = "TIME", hide = true)]
    at: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

/// How `audit query` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QueryFormat {
    /// One line per record for a person.
    Table,
    /// A JSON array of records.
    Json,
    /// One record per line: feeds `eval --batch` (re-evaluation at each record's time) and `diff`.
    Jsonl,
}

/// Arguments of `audit query`.
#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// The audit log.
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Artifact digest: `sha256:<hex>` or a bare hex digest (any algorithm).
    #[arg(long, value_name = "DIGEST")]
    digest: Option<String>,
    /// Environment, as the source or the target of the promotion.
    #[arg(long, value_name = "NAME")]
    env: Option<String>,
    /// Only allowed decisions.
    #[arg(long, conflicts_with = "denied")]
    allowed: bool,
    /// Only denied decisions.
    #[arg(long)]
    denied: bool,
    /// Decisions evaluated at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Decisions evaluated before this time (RFC 3339, exclusive).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Decisions with a violation of this id (e.g. `approvals.min_count`).
    #[arg(long, value_name = "ID")]
    violation: Option<String>,
    /// The decision made under this W3C trace id (32 hex digits, from `traceparent`):
    /// how an incident's trace leads to the promotion behind it.
    #[arg(long, value_name = "TRACE_ID")]
    trace_id: Option<String>,
    /// Output format [default: table on a terminal, jsonl otherwise].
    #[arg(long, value_enum)]
    format: Option<QueryFormat>,
}

/// Arguments of `audit export`.
#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The audit log.
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// First seq to export (the records after the last export's head, for example).
    #[arg(long, value_name = "SEQ", default_value_t = 1)]
    since: u64,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: AuditCmd) -> anyhow::Result<Exit> {
    match args.command {
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Checkpoint(a) => checkpoint(a),
        AuditCommand::Query(a) => query(a),
        AuditCommand::Export(a) => export(a),
    }
}

/// Whether `path` holds a JSONL export rather than a SQLite log (which starts with
/// SQLite's magic; a file that is neither is opened as a log, to be named corrupt).
fn is_export(path: &Path) -> anyhow::Result<bool> {
    let mut head = [0u8; 16];
    // Regular files only: a FIFO named like a log must not block the open.
    let mut file = promo_policy::fsio::open_regular(path, u64::MAX)?;
    let n = file
        .read(&mut head)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let head = &head[..n];
    Ok(!head.starts_with(b"SQLite format 3")
        && head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

fn read_checkpoint(
    path: &Path,
    keys: &[promo_policy::attest::PublicKey],
) -> anyhow::Result<Checkpoint> {
    let text = promo_policy::fsio::read_capped_string(path, promo_policy::fsio::MAX_CONFIG_BYTES)
        .with_context(|| format!("cannot read checkpoint `{}`", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("checkpoint `{}` is not JSON", path.display()))?;
    let envelope = doc.get("envelope").unwrap_or(&doc);
    Checkpoint::from_envelope(envelope, keys)
        .with_context(|| format!("checkpoint `{}`", path.display()))
}

fn verify(args: VerifyArgs) -> anyhow::Result<Exit> {
    if !args.path.exists() {
        anyhow::bail!("no audit log at `{}`", args.path.display());
    }
    let keys = args.keys.keys()?;
    let checkpoint = args
        .against
        .as_deref()
        .map(|p| read_checkpoint(p, &keys))
        .transpose()?;
    let report = if is_export(&args.path)? {
        verify_export(&args.path, &keys, checkpoint.as_ref(), args.from_seq)?
    } else {
        if args.from_seq.is_some() {
            anyhow::bail!("--from-seq is for exports; a log always starts at seq 1");
        }
        let log = AuditLog::open_existing(&args.path)?;
        verify_log(&log, &keys, checkpoint.as_ref())?
    };
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Text => println!("{}", render_report(&report, checkpoint.as_ref())),
    }
    Ok(if report.intact() {
        Exit::Ok
    } else {
        Exit::Deny
    })
}

fn render_report(report: &VerifyReport, checkpoint: Option<&Checkpoint>) -> String {
    if let Some(f) = &report.finding {
        return format!("TAMPERED  seq {}: {}: {}", f.seq, f.kind, f.detail);
    }
    let mut line = if report.verified == 0 {
        "INTACT  no records".to_string()
    } else {
        format!(
            "INTACT  {} records, seq {}..={}, head {}",
            report.verified, report.first_seq, report.head.seq, report.head.hash
        )
    };
    if report.first_seq > 1 {
        line.push_str(&format!(
            " (an export from seq {}: its first prevHash {} is taken as given)",
            report.first_seq, report.start_prev_hash
        ));
    }
    if let (Some(cp), Some(seq)) = (checkpoint, report.checkpoint_seq) {
        line.push_str(&format!(
            "; unchanged up to the checkpoint of {} at seq {seq}",
            cp.time
        ));
    }
    line
}

fn checkpoint(args: CheckpointArgs) -> anyhow::Result<Exit> {
    let time = match &args.at {
        Some(at) => format_time(parse_time(at)?),
        None => format_time(time::OffsetDateTime::now_utc()),
    };
    let log = AuditLog::open_existing(&args.path)?;
    let engine = args.common.load_engine()?;
    // Vouch only for a chain that verifies, with the trust file's decision keys and
    // the key that signs the checkpoint.
    let mut keys = trusted_decision_keys(engine.trust());
    keys.push(engine.signer().public_key());
    let report = verify_log(&log, &keys, None)?;
    if let Some(f) = &report.finding {
        println!("TAMPERED  seq {}: {}: {}", f.seq, f.kind, f.detail);
        eprintln!("promo-policy: no checkpoint: the log does not verify");
        return Ok(Exit::Deny);
    }
    let cp = Checkpoint::new(log.log_id(), &report.head, &time);
    let envelope = engine
        .signer()
        .sign_statement(&cp.statement())
        .context("cannot sign the checkpoint")?;
    let body = serde_json::to_string_pretty(&serde_json::json!({
        "checkpoint": cp,
        "envelope": envelope,
    }))? + "\n";
    if let Some(out) = &args.out {
        std::fs::write(out, &body).with_context(|| format!("cannot write `{}`", out.display()))?;
    }
    std::io::stdout().write_all(body.as_bytes())?;
    Ok(Exit::Ok)
}

/// Normalise a time filter to the form decisions record (UTC, whole seconds), so text
/// comparison in SQL is time comparison.
fn time_filter(value: &Option<String>, flag: &str) -> anyhow::Result<Option<String>> {
    value
        .as_deref()
        .map(|t| {
            parse_time(t)
                .map(format_time)
                .with_context(|| format!("--{flag}"))
        })
        .transpose()
}

fn query(args: QueryArgs) -> anyhow::Result<Exit> {
    let digest = args.digest.as_deref().map(|d| match d.split_once(':') {
        Some((alg, hex)) => (Some(alg.to_ascii_lowercase()), hex.to_ascii_lowercase()),
        None => (None, d.to_ascii_lowercase()),
    });
    let filter = Filter {
        digest,
        env: args.env.clone(),
        allowed: match (args.allowed, args.denied) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        since: time_filter(&args.since, "since")?,
        until: time_filter(&args.until, "until")?,
        violation: args.violation.clone(),
        from_seq: None,
    };
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        QueryFormat::Table
    } else {
        QueryFormat::Jsonl
    });
    let log = AuditLog::open_existing(&args.path)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut count = 0u64;
    if format == QueryFormat::Table {
        writeln!(
            out,
            "{:<6} {:<20}  {:<7}  {:<22} {:<40} VIOLATIONS",
            "SEQ", "EVALUATED AT", "OUTCOME", "FROM -> TO", "ARTIFACT"
        )?;
    } else if format == QueryFormat::Json {
        out.write_all(b"[")?;
    }
    let trace_id = args.trace_id.as_deref().map(str::to_ascii_lowercase);
    each_record(&log, &filter, |record| {
        // Inside the signed envelope, so not an SQL column: decoded per record.
        if trace_id.is_some() && record.trace_id() != trace_id {
            return Ok(());
        }
        match format {
            QueryFormat::Table => writeln!(out, "{}", table_row(record))?,
            QueryFormat::Jsonl => {
                serde_json::to_writer(&mut out, record)?;
                out.write_all(b"\n")?;
            }
            QueryFormat::Json => {
                out.write_all(if count == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer_pretty(&mut out, record)?;
            }
        }
        count += 1;
        Ok(())
    })?;
    if format == QueryFormat::Json {
        out.write_all(if count == 0 { b"]\n" } else { b"\n]\n" })?;
    }
    out.flush()?;
    if format == QueryFormat::Table {
        eprintln!("promo-policy: {count} records");
    }
    Ok(Exit::Ok)
}

fn table_row(r: &Record) -> String {
    let digest = r
        .artifact
        .digest
        .iter()
        .next()
        .map(|(alg, hex)| format!("@{alg}:{}", hex.get(..12).unwrap_or(hex)))
        .unwrap_or_default();
    let violations = if r.violations.is_empty() {
        "-".to_string()
    } else {
        r.violations.join(",")
    };
    format!(
        "{:<6} {:<20}  {:<7}  {:<22} {:<40} {}",
        r.seq,
        r.evaluated_at,
        if r.allowed { "ALLOWED" } else { "DENIED" },
        format!("{} -> {}", r.from, r.to),
        format!("{}{digest}", r.artifact.name),
        violations
    )
}

/// Every record passing `filter`, in seq order; an unreadable row is an error.
fn each_record(
    log: &AuditLog,
    filter: &Filter,
    mut f: impl FnMut(&Record) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let rows = log.read(after, promo_policy::audit::store::READ_CHUNK, filter)?;
        let Some((last, _)) = rows.last() else {
            return Ok(());
        };
        after = *last;
        for (seq, row) in &rows {
            let record = row.as_ref().map_err(|why| {
                anyhow::anyhow!(
                    "record seq {seq} of `{}` cannot be read back ({}): run `promo-policy audit verify`",
                    log.path().display(),
                    ErrorChain(why)
                )
            })?;
            f(record)?;
        }
    }
}

fn export(args: ExportArgs) -> anyhow::Result<Exit> {
    let log = AuditLog::open_existing(&args.path)?;
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write `{}`", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(sink);
    let filter = Filter {
        from_seq: Some(args.since),
        ..Filter::default()
    };
    let mut count = 0u64;
    each_record(&log, &filter, |record| {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
        count += 1;
        Ok(())
    })?;
    out.flush()?;
    eprintln!(
        "promo-policy: exported {count} records from seq {} (head seq {})",
        args.since,
        log.head().seq
    );
    Ok(Exit::Ok)
}
