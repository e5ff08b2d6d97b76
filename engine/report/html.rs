//! Renders a promotion report as one self-contained HTML page (inline CSS, SVG charts and a small sort script; no network), readable printed and in dark mode.

use std::fmt::Write as _;

use super::metrics::ReportMetrics;
use super::render::{cells, headline_value, percent, trend_rows, COLUMNS, NO_DATA};
use super::Report;

/// Text safe inside HTML elements and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root{--bg:#fff;--fg:#1d2330;--muted:#5b6475;--line:#d9dde5;--card:#f5f7fa;--ok:#1a7f37;--bad:#c62828;--accent:#2f6fde;--accent2:#e08a00}
@media (prefers-color-scheme:dark){:root{--bg:#12151b;--fg:#e6e9ef;--muted:#9aa3b2;--line:#2c323d;--card:#1b2029;--ok:#4cc76a;--bad:#ff6b6b;--accent:#6ea2ff;--accent2:#ffb84d}}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg);margin:2rem auto;max-width:1200px;padding:0 1rem}
h1{font-size:1.6rem;margin:0 0 .3rem}h2{font-size:1.15rem;margin:2rem 0 .6rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}
.muted{color:var(--muted)}.bad{color:var(--bad)}.ok{color:var(--ok)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:.8rem;margin:1rem 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.7rem .9rem}
.card .v{font-size:1.5rem;font-weight:600}.card .t{font-size:.8rem;color:var(--muted)}
.card.met{border-left:4px solid var(--ok)}.card.missed{border-left:4px solid var(--bad)}
table{border-collapse:collapse;width:100%;font-size:.85rem;margin:.4rem 0}
th,td{border-bottom:1px solid var(--line);padding:.3rem .45rem;text-align:left;vertical-align:top}
th{cursor:pointer;user-select:none;background:var(--card);position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \25B2"}th[aria-sort=descending]::after{content:" \25BC"}
svg{max-width:100%;height:auto}svg text{fill:var(--fg);font-size:11px}svg .grid{stroke:var(--line)}
.legend span{display:inline-block;margin-right:1rem}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
@media print{body{margin:0;max-width:none;font-size:11px}th{position:static}.card{break-inside:avoid}h2{break-after:avoid}table,svg{break-inside:avoid}.noprint{display:none}}
"#;

/// Sorts a table by the clicked column: numbers by `data-sort`, text otherwise; it
/// marks the page rendered for the browser test.
const SCRIPT: &str = r#"
(function(){
  function key(td){var s=td.getAttribute('data-sort');if(s!==null&&s!==''){return parseFloat(s);}return td.textContent.trim().toLowerCase();}
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('th').forEach(function(th,col){
      th.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')!=='ascending';
        table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);if(x<y)return asc?-1:1;if(x>y)return asc?1:-1;return 0;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  document.body.setAttribute('data-rendered','ok');
})();
"#;

/// Colours for chart series, cycling.
const PALETTE: [&str; 6] = [
    "var(--accent)",
    "var(--accent2)",
    "#8e44ad",
    "#16a085",
    "#c0392b",
    "#7f8c8d",
];

fn sort_value(m: &ReportMetrics, col: usize) -> String {
    let num = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    match col {
        0 => m.attempts.to_string(),
        1 => num(m.success_rate),
        2 => num(m.first_attempt_pass_rate),
        3 => num(m.time_to_promote.median_seconds),
        4 => num(m.approval_latency.median_seconds),
        5 => num(m.time_to_unblock.median_seconds),
        6 => num(m.lead_time.median_seconds),
        7 => m.break_glass.to_string(),
        8 => num(m.trace_coverage),
        _ => num(m.rollback_rate),
    }
}

fn table(out: &mut String, id: &str, first: &[&str], rows: Vec<(Vec<String>, &ReportMetrics)>) {
    let _ = write!(out, "<table class=\"sortable\" id=\"{id}\"><thead><tr>");
    for h in first.iter().chain(COLUMNS.iter()) {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    let _ = write!(out, "</tr></thead><tbody>");
    for (keys, m) in rows {
        let _ = write!(out, "<tr>");
        for k in keys {
            let _ = write!(out, "<td>{}</td>", escape(&k));
        }
        for (i, c) in cells(m).into_iter().enumerate() {
            let _ = write!(
                out,
                "<td data-sort=\"{}\">{}</td>",
                sort_value(m, i),
                escape(&c)
            );
        }
        let _ = write!(out, "</tr>");
    }
    let _ = writeln!(out, "</tbody></table>");
}

/// Success rate per bucket, one line per environment.
fn trend_chart(r: &Report) -> String {
    let mut buckets: Vec<&str> = r.totals.trend.iter().map(|t| t.bucket.as_str()).collect();
    buckets.sort_unstable();
    buckets.dedup();
    let envs: Vec<&str> = r
        .totals
        .environments
        .iter()
        .map(|e| e.environment.as_str())
        .collect();
    let (w, h, left, top, bottom) = (760.0, 240.0, 44.0, 12.0, 40.0);
    let plot_h = h - top - bottom;
    let step = if buckets.len() > 1 {
        (w - left - 20.0) / (buckets.len() - 1) as f64
    } else {
        0.0
    };
    let x = |i: usize| left + step * i as f64;
    let y = |v: f64| top + plot_h * (1.0 - v);
    let mut svg = format!(
        "<svg id=\"trend-chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Promotion success rate per {:?}\">",
        r.bucket
    );
    for pct in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"4\" y=\"{:.1}\">{}%</text>",
            w - 10.0,
            y(pct),
            y(pct),
            y(pct) + 4.0,
            pct * 100.0
        );
    }
    let label_every = (buckets.len() / 10).max(1);
    for (i, b) in buckets.iter().enumerate() {
        if i % label_every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x(i),
                h - bottom + 16.0,
                escape(b.get(5..10).unwrap_or(b))
            );
        }
    }
    let mut legend = String::from("<div class=\"legend\">");
    for (n, env) in envs.iter().enumerate() {
        let colour = PALETTE.get(n % PALETTE.len()).copied().unwrap_or("gray");
        let points: Vec<String> = buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let t = r
                    .totals
                    .trend
                    .iter()
                    .find(|t| t.bucket == *b && t.environment == *env)?;
                t.metrics
                    .success_rate
                    .map(|v| format!("{:.1},{:.1}", x(i), y(v)))
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let _ = write!(
            legend,
            "<span><i class=\"sw\" style=\"background:{colour}\"></i>{}</span>",
            escape(env)
        );
    }
    svg.push_str("</svg>");
    legend.push_str("</div>");
    svg + &legend
}

/// Horizontal bars, label and value per row.
fn bar_chart(id: &str, rows: &[(String, u64)], colour: &str) -> String {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let (w, row_h, label_w) = (760.0, 22.0, 230.0);
    let h = row_h * rows.len().max(1) as f64 + 8.0;
    let mut svg = format!("<svg id=\"{id}\" viewBox=\"0 0 {w} {h}\" role=\"img\">");
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 4.0 + row_h * i as f64;
        let bar = (w - label_w - 60.0) * (*value as f64) / max;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{value}</text>",
            label_w - 6.0,
            y + 14.0,
            escape(label),
            row_h - 6.0,
            label_w + bar + 4.0,
            y + 14.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The report as one HTML page.
#[expect(
    clippy::too_many_lines,
    reason = "the page top to bottom, section by section, as a reader sees it"
)]
pub fn html(r: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\"><title>Promotion insights</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        out,
        "<h1>Promotion insights</h1><p class=\"muted\">Audit log <code>{}</code>, {} buckets.</p>",
        escape(&r.log),
        match r.bucket {
            super::Bucket::Day => "daily",
            super::Bucket::Week => "weekly",
        }
    );
    let verification = match &r.verification.finding {
        None => format!(
            "<p id=\"verification\" class=\"ok\">audit verify ran first: intact, {} records verified.</p>",
            r.verification.verified
        ),
        Some(f) => format!(
            "<p id=\"verification\" class=\"bad\">audit verify ran first: TAMPERED at {}; {} records verified before it.</p>",
            escape(f),
            r.verification.verified
        ),
    };
    out.push_str(&verification);
    if let Some(note) = super::render::admission_note(r) {
        let _ = write!(
            out,
            "<p id=\"admission-records\" class=\"muted\">{}.</p>",
            escape(&note)
        );
    }
    out.push_str("<section class=\"cards\" id=\"summary\">");
    for h in &r.headline {
        let class = match h.met {
            Some(true) => "card met",
            Some(false) => "card missed",
            None => "card",
        };
        let _ = write!(
            out,
            "<div class=\"{class}\" data-key=\"{}\" data-value=\"{}\"><div class=\"t\">{}</div><div class=\"v\">{}</div><div class=\"t\">{}{}</div></div>",
            escape(&h.key),
            h.value.map_or(String::new(), |v| v.to_string()),
            escape(&h.label),
            escape(&headline_value(h.value, &h.unit)),
            h.target.as_deref().map_or(String::new(), |t| format!("target {}", escape(t))),
            match h.met {
                Some(true) => " &middot; met",
                Some(false) => " &middot; missed",
                None => "",
            }
        );
    }
    out.push_str("</section>");
    let s = &r.totals.summary;
    let _ = write!(
        out,
        "<p class=\"muted\">{} decisions, {} attempts, {} promotions; break-glass promotions {}; decisions denied by a freeze {}; trace coverage {}.</p>",
        s.decisions,
        s.attempts,
        s.promotions,
        r.totals.break_glass.count,
        s.freeze_blocked,
        escape(&percent(s.trace_coverage))
    );
    if !r.no_data.is_empty() {
        let _ = write!(
            out,
            "<p id=\"no-data\" class=\"muted\">No data for: {} (shown as \u{201c}{NO_DATA}\u{201d}, never as 0).</p>",
            escape(&r.no_data.join(", "))
        );
    }
    let _ = write!(
        out,
        "<h2>Success rate per {}</h2>{}",
        match r.bucket {
            super::Bucket::Day => "day",
            super::Bucket::Week => "week",
        },
        trend_chart(r)
    );
    let top: Vec<(String, u64)> = r
        .totals
        .blockers
        .iter()
        .take(10)
        .map(|b| (b.id.clone(), b.decisions))
        .collect();
    let _ = write!(
        out,
        "<h2>Top blockers (denied decisions)</h2>{}",
        bar_chart("blocker-chart", &top, "var(--bad)")
    );
    let lead: Vec<(String, u64)> = r
        .totals
        .lead_time_histogram
        .iter()
        .map(|b| (b.label.clone(), b.count))
        .collect();
    let _ = write!(
        out,
        "<h2>Lead time to {} (artifacts)</h2>{}",
        escape(&r.targets.production),
        bar_chart("lead-time-chart", &lead, "var(--accent)")
    );
    out.push_str("<h2>By environment</h2>");
    table(
        &mut out,
        "by-environment",
        &["environment"],
        r.totals
            .environments
            .iter()
            .map(|e| (vec![e.environment.clone()], &e.metrics))
            .collect(),
    );
    out.push_str("<h2>By service</h2>");
    table(
        &mut out,
        "by-service",
        &["environment", "service"],
        r.totals
            .services
            .iter()
            .map(|s| (vec![s.environment.clone(), s.service.clone()], &s.metrics))
            .collect(),
    );
    out.push_str("<h2>Blockers</h2><table class=\"sortable\" id=\"blockers\"><thead><tr><th>violation</th><th>denied decisions</th><th>attempts blocked</th><th>catalog</th></tr></thead><tbody>");
    for b in &r.totals.blockers {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td data-sort=\"{}\">{}</td><td data-sort=\"{}\">{}</td><td>{}</td></tr>",
            escape(&b.id),
            b.decisions,
            b.decisions,
            b.attempts,
            b.attempts,
            escape(b.catalog.as_deref().unwrap_or("not in the catalog (policies/README.md, Violation ids)"))
        );
    }
    out.push_str("</tbody></table>");
    let _ = write!(
        out,
        "<h2>Break-glass promotions ({})</h2><table class=\"sortable\" id=\"break-glass\"><thead><tr><th>at</th><th>environment</th><th>service</th><th>version</th><th>request</th><th>ticket</th></tr></thead><tbody>",
        r.totals.break_glass.count
    );
    for b in &r.totals.break_glass.listed {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&b.evaluated_at),
            escape(&b.environment),
            escape(&b.service),
            escape(b.version.as_deref().unwrap_or("")),
            escape(&b.request_id),
            escape(b.ticket.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table>");
    let _ = write!(out, "<h2>Trend</h2>");
    table(&mut out, "trend", &["bucket", "environment"], trend_rows(r));
    let _ = write!(
        out,
        "<p class=\"muted\">Definitions: README.md, Promotion insights. Medians and p90 are nearest-rank up to 4096 values, and within 1 % (a DDSketch) above.</p><script>{SCRIPT}</script></body></html>"
    );
    out.push('\n');
    out
}
