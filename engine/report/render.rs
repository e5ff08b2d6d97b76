//! Renders a promotion report as JSON, Markdown or terminal text (HTML is in `html`); formatting only, no metric is computed here.

use std::fmt::Write as _;

use super::metrics::{Dist, ReportMetrics};
use super::Report;

/// "no data", the one spelling every renderer uses for a missing value.
pub const NO_DATA: &str = "no data";

/// A number with at most one decimal and no trailing `.0`.
pub fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

/// Seconds for people: `45 s`, `12.5 min`, `3.2 h`, `2.1 d`.
pub fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{} s", trim(seconds))
    } else if seconds < 3600.0 {
        format!("{} min", trim(seconds / 60.0))
    } else if seconds < 86_400.0 {
        format!("{} h", trim(seconds / 3600.0))
    } else {
        format!("{} d", trim(seconds / 86_400.0))
    }
}

/// A fraction as a percentage, or "no data".
pub fn percent(v: Option<f64>) -> String {
    v.map_or(NO_DATA.into(), |v| format!("{} %", trim(v * 100.0)))
}

/// A duration, or "no data".
pub fn maybe_duration(v: Option<f64>) -> String {
    v.map_or(NO_DATA.into(), duration)
}

/// A headline value in its unit.
pub fn headline_value(value: Option<f64>, unit: &str) -> String {
    if unit == "ratio" {
        percent(value)
    } else {
        maybe_duration(value)
    }
}

fn dist(d: &Dist) -> String {
    match (d.median_seconds, d.p90_seconds) {
        (Some(m), Some(p)) => format!("{} / {} (n={})", duration(m), duration(p), d.count),
        _ => NO_DATA.into(),
    }
}

/// The report as pretty JSON.
pub fn json(report: &Report) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}

/// The columns every per-slice table shows: header and cells.
pub const COLUMNS: [&str; 10] = [
    "attempts",
    "success",
    "first pass",
    "time to promote (median / p90)",
    "approval latency (median / p90)",
    "time to unblock (median / p90)",
    "lead time (median / p90)",
    "break-glass",
    "trace coverage",
    "rollback / canary fail / incidents",
];

/// The cells of one row, in [`COLUMNS`] order.
pub fn cells(m: &ReportMetrics) -> Vec<String> {
    vec![
        m.attempts.to_string(),
        percent(m.success_rate),
        percent(m.first_attempt_pass_rate),
        dist(&m.time_to_promote),
        dist(&m.approval_latency),
        dist(&m.time_to_unblock),
        dist(&m.lead_time),
        m.break_glass.to_string(),
        percent(m.trace_coverage),
        format!(
            "{} / {} / {}",
            percent(m.rollback_rate),
            percent(m.canary_failure_rate),
            m.post_promote_incidents
                .map_or(NO_DATA.to_string(), |n| n.to_string())
        ),
    ]
}

fn verification_line(r: &Report) -> String {
    let mut line = match &r.verification.finding {
        None => format!(
            "audit verify ran first: INTACT, {} records verified",
            r.verification.verified
        ),
        Some(f) => format!(
            "audit verify ran first: TAMPERED at {f}; {} records verified before it; metrics cover every record, completeness counts only verified ones",
            r.verification.verified
        ),
    };
    if let Some(note) = admission_note(r) {
        let _ = write!(line, "; {note}");
    }
    line
}

/// What the report says about the admission records it left out, when there are any.
pub(super) fn admission_note(r: &Report) -> Option<String> {
    (r.totals.admission_records > 0).then(|| {
        format!(
            "{} admission records (break-glass, dry-run) are not promotions and are in no metric",
            r.totals.admission_records
        )
    })
}

/// The report as Markdown (a PR comment, a wiki page).
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Promotion insights\n");
    let _ = writeln!(out, "Log `{}`. {}.\n", r.log, verification_line(r));
    let _ = writeln!(out, "| metric | value | target | met |\n|---|---|---|---|");
    for h in &r.headline {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            h.label,
            headline_value(h.value, &h.unit),
            h.target.as_deref().unwrap_or(""),
            match h.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            }
        );
    }
    let _ = writeln!(out, "\n## By environment");
    markdown_table(
        &mut out,
        &["environment"],
        r.totals
            .environments
            .iter()
            .map(|e| (vec![e.environment.clone()], &e.metrics))
            .collect(),
    );
    let _ = writeln!(out, "\n## By service");
    markdown_table(
        &mut out,
        &["environment", "service"],
        r.totals
            .services
            .iter()
            .map(|s| (vec![s.environment.clone(), s.service.clone()], &s.metrics))
            .collect(),
    );
    let _ = writeln!(out, "\n## Trend ({:?})", r.bucket);
    markdown_table(&mut out, &["bucket", "environment"], trend_rows(r));
    markdown_lists(&mut out, r);
    out
}

/// One Markdown table of metrics: the key columns `first`, then [`COLUMNS`].
fn markdown_table(out: &mut String, first: &[&str], rows: Vec<(Vec<String>, &ReportMetrics)>) {
    let mut header: Vec<&str> = first.to_vec();
    header.extend(COLUMNS);
    let _ = writeln!(out, "\n| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for (mut keys, m) in rows {
        keys.extend(cells(m));
        let _ = writeln!(out, "| {} |", keys.join(" | "));
    }
}

/// The Markdown report's closing sections: blockers, break-glass promotions, freezes and
/// the metrics that had no data.
fn markdown_lists(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "\n## Top blockers\n\n| violation | denied decisions | attempts blocked | catalog |\n|---|---|---|---|"
    );
    for b in &r.totals.blockers {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            b.id,
            b.decisions,
            b.attempts,
            b.catalog.as_deref().unwrap_or("not in the catalog")
        );
    }
    let _ = writeln!(
        out,
        "\n## Break-glass promotions ({})\n\n| at | environment | service | version | request | ticket |\n|---|---|---|---|---|---|",
        r.totals.break_glass.count
    );
    for b in &r.totals.break_glass.listed {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            b.evaluated_at,
            b.environment,
            b.service,
            b.version.as_deref().unwrap_or(""),
            b.request_id,
            b.ticket.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(
        out,
        "\nDecisions denied by a freeze: {}.",
        r.totals.summary.freeze_blocked
    );
    if !r.no_data.is_empty() {
        let _ = writeln!(out, "\nNo data for: {}.", r.no_data.join(", "));
    }
}

/// The report for a terminal.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Promotion insights: {}", r.log);
    let _ = writeln!(out, "{}", verification_line(r));
    for h in &r.headline {
        let _ = writeln!(
            out,
            "  {:<34} {:>12}  {}{}",
            h.label,
            headline_value(h.value, &h.unit),
            h.target.as_deref().unwrap_or(""),
            match h.met {
                Some(true) => "  ok",
                Some(false) => "  MISSED",
                None => "",
            }
        );
    }
    let _ = writeln!(out, "By environment:");
    for e in &r.totals.environments {
        let m = &e.metrics;
        let _ = writeln!(
            out,
            "  {:<12} attempts {:>7}  success {:>8}  first pass {:>8}  to promote {}  approvals {}  unblock {}",
            e.environment,
            m.attempts,
            percent(m.success_rate),
            percent(m.first_attempt_pass_rate),
            dist(&m.time_to_promote),
            dist(&m.approval_latency),
            dist(&m.time_to_unblock),
        );
    }
    let _ = writeln!(out, "Top blockers (denied decisions / attempts):");
    for b in r.totals.blockers.iter().take(10) {
        let _ = writeln!(out, "  {:<32} {:>7} / {:>7}", b.id, b.decisions, b.attempts);
    }
    let _ = writeln!(
        out,
        "Break-glass promotions: {}; decisions denied by a freeze: {}",
        r.totals.break_glass.count, r.totals.summary.freeze_blocked
    );
    if !r.no_data.is_empty() {
        let _ = writeln!(out, "No data for: {}", r.no_data.join(", "));
    }
    out
}

/// The trend table's rows (bucket day, environment) for every format that prints one.
pub(super) fn trend_rows(r: &Report) -> Vec<(Vec<String>, &ReportMetrics)> {
    r.totals
        .trend
        .iter()
        .map(|t| {
            (
                vec![
                    t.bucket.get(..10).unwrap_or(&t.bucket).to_owned(),
                    t.environment.clone(),
                ],
                &t.metrics,
            )
        })
        .collect()
}
