//! Promotion insights: verifies an audit log, streams its records into the promotion metrics (success rate, time to promote, approval latency, blockers...) and renders them as JSON, Markdown, text or one self-contained HTML page; it only reads the log.

pub mod html;
pub mod metrics;
pub mod render;
mod spill;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attest::PublicKey;
use crate::audit::chain::{verify_log_with, Visitor};
use crate::audit::store::READ_CHUNK;
use crate::audit::{AuditError, AuditLog, Filter};
use crate::digest::DigestSet;
pub use metrics::{Bucket, EventKind, Events, Facts, ReportMetrics, ReportOptions, Totals};

/// Cap for `--events` and `--targets` files and the policy catalog.
pub const MAX_EVENTS_BYTES: u64 = 64 << 20;

/// Why a report could not be made. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The audit log could not be opened, read or verified.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A file given on the command line is unreadable.
    #[error("cannot read `{path}`: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A line of `--events` is not an event.
    #[error("events file `{path}` line {line}: {reason}")]
    Event {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The report's scratch file (a temporary file of set-aside durations) could not be
    /// read back; no numbers are given rather than wrong ones.
    #[error("cannot read back the report's temporary file of durations (check TMPDIR)")]
    Scratch(#[source] crate::audit::store::ScratchError),
    /// The targets file is not a targets object.
    #[error("targets file `{path}`: {reason}")]
    Targets {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What the team aims for (`--targets FILE`, JSON); the defaults are the issue's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Targets {
    /// Promotion success rate at least this (0..1).
    pub success_rate: f64,
    /// Median time to promote under this many seconds.
    pub time_to_promote_seconds: f64,
    /// Median approval latency under this many seconds.
    pub approval_latency_seconds: f64,
    /// The environment lead time ends in.
    pub production: String,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            success_rate: 0.98,
            time_to_promote_seconds: 3600.0,
            approval_latency_seconds: 1800.0,
            production: "prod".into(),
        }
    }
}

impl Targets {
    /// Read a targets file; absent fields keep their defaults.
    pub fn load(path: &Path) -> Result<Self, ReportError> {
        let text =
            crate::fsio::read_capped_string(path, crate::fsio::MAX_CONFIG_BYTES).map_err(|e| {
                ReportError::Read {
                    path: path.to_path_buf(),
                    reason: e.reason(),
                }
            })?;
        let t: Targets = serde_json::from_str(&text).map_err(|e| ReportError::Targets {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let finite = |v: f64| v.is_finite() && v >= 0.0;
        let ok = finite(t.success_rate)
            && t.success_rate <= 1.0
            && finite(t.time_to_promote_seconds)
            && finite(t.approval_latency_seconds);
        if !ok {
            return Err(ReportError::Targets {
                path: path.to_path_buf(),
                reason: "successRate must be in 0..1 and durations non-negative seconds".into(),
            });
        }
        Ok(t)
    }
}

/// One line of `--events`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventLine {
    #[serde(rename = "type")]
    kind: String,
    artifact: EventArtifact,
    environment: String,
    at: String,
    #[serde(default)]
    #[allow(dead_code, reason = "documented free text, kept out of the metrics")]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventArtifact {
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "the digest identifies the artifact; the name is for people"
    )]
    name: Option<String>,
    digest: DigestSet,
}

/// Read `--events` (JSONL): `{"type": "rollback"|"canary_failure"|"incident",
/// "artifact": {"digest": {"sha256": HEX}}, "environment": ENV, "at": RFC3339}` per
/// line; blank lines are skipped, anything else is an error naming the line.
pub fn load_events(path: &Path) -> Result<Events, ReportError> {
    let text =
        crate::fsio::read_capped_string(path, MAX_EVENTS_BYTES).map_err(|e| ReportError::Read {
            path: path.to_path_buf(),
            reason: e.reason(),
        })?;
    let mut events: Events = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| ReportError::Event {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let e: EventLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let kind = match e.kind.as_str() {
            "rollback" => EventKind::Rollback,
            "canary_failure" => EventKind::CanaryFailure,
            "incident" => EventKind::Incident,
            other => {
                return Err(bad(format!(
                    "type `{other}` is not rollback, canary_failure or incident"
                )))
            }
        };
        let digest = e
            .artifact
            .digest
            .sha256()
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad("artifact.digest.sha256 must be 64 hex digits".into()))?;
        let at = metrics::unix(&e.at).ok_or_else(|| bad(format!("`{}` is not RFC 3339", e.at)))?;
        events
            .entry((digest.to_ascii_lowercase(), e.environment))
            .or_default()
            .push((kind, at));
    }
    Ok(events)
}

/// The violation catalog: `id -> when` from the "Violation ids" table of the bundle's
/// README (`| \`id\` | kind | when |`); an unreadable or missing README is an empty catalog.
pub fn load_catalog(policies: &Path) -> BTreeMap<String, String> {
    let path = policies.join("README.md");
    let Ok(text) = crate::fsio::read_capped_string(&path, crate::fsio::MAX_CONFIG_BYTES) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").collect();
            let id = cells.first()?.trim().strip_prefix('`')?.strip_suffix('`')?;
            let when = cells.get(2)?.trim();
            (id.contains('.') && !when.is_empty()).then(|| (id.to_owned(), when.to_owned()))
        })
        .collect()
}

/// What the audit walk found, as the report states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Always true: the report never skips it.
    pub ran: bool,
    /// Whether the whole chain verified.
    pub intact: bool,
    /// Records that verified before any break.
    pub verified: u64,
    /// The first break, for a person, if any.
    pub finding: Option<String>,
}

/// A headline number against its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Headline {
    /// Stable key (`successRate`, ...).
    pub key: String,
    /// For people.
    pub label: String,
    /// The value (a fraction or seconds), `None` for no data.
    pub value: Option<f64>,
    /// `ratio` or `seconds`.
    pub unit: String,
    /// The target, for people (`>= 98 %`), when one is set.
    pub target: Option<String>,
    /// Whether the value meets it; `None` without a target or data.
    pub met: Option<bool>,
}

/// The whole report: what was read, the verification, the metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The audit log read.
    pub log: String,
    /// Filters applied (RFC 3339 / names), as given.
    pub filters: BTreeMap<String, String>,
    /// Trend bucket width.
    pub bucket: Bucket,
    /// `audit verify`, run first.
    pub verification: Verification,
    /// The targets the headline is held to.
    pub targets: Targets,
    /// Headline numbers.
    pub headline: Vec<Headline>,
    /// Complete and verified records / records (in the time window).
    pub audit_completeness: Option<f64>,
    /// Whether `--events` was given.
    pub events: bool,
    /// Metrics that had nothing to measure.
    pub no_data: Vec<String>,
    /// The metrics.
    #[serde(flatten)]
    pub totals: Totals,
}

/// Everything a report needs besides the log.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Filters and bucket.
    pub options: ReportOptions,
    /// The targets.
    pub targets: Targets,
    /// `--events`, if given.
    pub events: Option<Events>,
    /// The violation catalog.
    pub catalog: BTreeMap<String, String>,
    /// Filters as given, for the report's header.
    pub filters: BTreeMap<String, String>,
}

/// Verify `log` with `keys` and stream its records into the metrics in the same read
/// (each record's [`Facts`] decoded in parallel with its checks); records after a break
/// in the chain are read on (in chunks of [`READ_CHUNK`]) and count as unverified.
/// Memory follows the log's recent activity (see [`metrics::Aggregator`]), never its
/// length in records or their contents; the verifier's decision ids and the trend's
/// set-aside durations go to temporary files (in `TMPDIR`).
pub fn build(log: &AuditLog, keys: &[PublicKey], inputs: Inputs) -> Result<Report, ReportError> {
    let has_events = inputs.events.is_some();
    let mut agg = metrics::Aggregator::new(inputs.options.clone(), u64::MAX, inputs.events);
    let mut last_verified = 0;
    let walk = verify_log_with(
        log,
        keys,
        None,
        Visitor {
            extract: &Facts::of,
            visit: &mut |record, facts| {
                last_verified = record.seq;
                agg.add_with(record, facts);
            },
        },
    )?;
    let verified_through = match &walk.finding {
        Some(f) => f.seq.saturating_sub(1),
        None => walk.head.seq,
    };
    agg.set_verified_through(verified_through);
    let verification = Verification {
        ran: true,
        intact: walk.intact(),
        verified: walk.verified,
        finding: walk
            .finding
            .as_ref()
            .map(|f| format!("seq {}: {}: {}", f.seq, f.kind, f.detail)),
    };
    let fmt = |t: Option<i64>| t.map(metrics::rfc3339);
    let filter = Filter {
        since: fmt(inputs.options.since),
        until: fmt(inputs.options.until),
        ..Filter::default()
    };
    let mut after = last_verified;
    while walk.finding.is_some() {
        let rows = log.read(after, READ_CHUNK, &filter)?;
        let Some((last, _)) = rows.last() else { break };
        after = *last;
        for (_, row) in &rows {
            match row {
                Ok(record) => agg.add(record),
                Err(_) => agg.unreadable(),
            }
        }
    }
    let totals = agg.finish(&inputs.catalog)?;
    let c = totals.completeness;
    let audit_completeness =
        (c.records > 0).then(|| c.complete_and_verified as f64 / c.records as f64);
    let headline = headline(&totals.summary, &inputs.targets, audit_completeness);
    let no_data = no_data(&totals.summary, audit_completeness);
    Ok(Report {
        log: log.path().display().to_string(),
        filters: inputs.filters,
        bucket: inputs.options.bucket,
        verification,
        targets: inputs.targets,
        headline,
        audit_completeness,
        events: has_events,
        no_data,
        totals,
    })
}

/// The headline row: each number beside the team's target for it, where one is set.
fn headline(s: &ReportMetrics, t: &Targets, audit_completeness: Option<f64>) -> Vec<Headline> {
    let pct = |v: f64| format!("{} %", render::trim(v * 100.0));
    vec![
        Headline {
            key: "successRate".into(),
            label: "Promotion success rate".into(),
            value: s.success_rate,
            unit: "ratio".into(),
            target: Some(format!(">= {}", pct(t.success_rate))),
            met: s.success_rate.map(|v| v >= t.success_rate),
        },
        Headline {
            key: "firstAttemptPassRate".into(),
            label: "First-attempt pass rate".into(),
            value: s.first_attempt_pass_rate,
            unit: "ratio".into(),
            target: None,
            met: None,
        },
        Headline {
            key: "timeToPromote".into(),
            label: "Time to promote (median)".into(),
            value: s.time_to_promote.median_seconds,
            unit: "seconds".into(),
            target: Some(format!("< {}", render::duration(t.time_to_promote_seconds))),
            met: s
                .time_to_promote
                .median_seconds
                .map(|v| v < t.time_to_promote_seconds),
        },
        Headline {
            key: "approvalLatency".into(),
            label: "Approval latency (median)".into(),
            value: s.approval_latency.median_seconds,
            unit: "seconds".into(),
            target: Some(format!(
                "< {}",
                render::duration(t.approval_latency_seconds)
            )),
            met: s
                .approval_latency
                .median_seconds
                .map(|v| v < t.approval_latency_seconds),
        },
        Headline {
            key: "leadTime".into(),
            label: format!("Lead time to {} (median)", t.production),
            value: s.lead_time.median_seconds,
            unit: "seconds".into(),
            target: None,
            met: None,
        },
        Headline {
            key: "auditCompleteness".into(),
            label: "Audit completeness".into(),
            value: audit_completeness,
            unit: "ratio".into(),
            target: Some(">= 100 %".into()),
            met: audit_completeness.map(|v| v >= 1.0),
        },
    ]
}

/// The metrics with no data in the window, named rather than shown as zero.
fn no_data(s: &ReportMetrics, audit_completeness: Option<f64>) -> Vec<String> {
    let mut no_data = Vec::new();
    let mut missing = |name: &str, none: bool| {
        if none {
            no_data.push(name.to_owned());
        }
    };
    missing("successRate", s.success_rate.is_none());
    missing("firstAttemptPassRate", s.first_attempt_pass_rate.is_none());
    missing("timeToPromote", s.time_to_promote.count == 0);
    missing("leadTime", s.lead_time.count == 0);
    missing("approvalLatency", s.approval_latency.count == 0);
    missing("timeToUnblock", s.time_to_unblock.count == 0);
    missing("traceCoverage", s.trace_coverage.is_none());
    missing("rollbackRate", s.rollback_rate.is_none());
    missing("canaryFailureRate", s.canary_failure_rate.is_none());
    missing("postPromoteIncidents", s.post_promote_incidents.is_none());
    missing("auditCompleteness", audit_completeness.is_none());
    no_data
}

#[cfg(test)]
mod tests;
