//! SLO snapshots read from a metrics backend (`slo collect`): the query templates, the
//! window and burn-rate arithmetic, and the `slo-snapshot/v1` predicate built from what was
//! read; a figure that cannot be read is left out and named, never guessed.

pub mod prometheus;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::input::format_time;

pub use prometheus::{PromError, Prometheus, QueryResult, Sample};

/// Cap on one query template: a real one is a line of PromQL; the cap bounds a mistake.
const MAX_TEMPLATE_BYTES: usize = 4096;

/// The default error-ratio template: the sloth/pyrra-style SLI recording rule, one per
/// window (`slo:sli_error:ratio_rate5m`, `..._rate1h`, ..., `..._rate30d`).
pub const DEFAULT_ERROR_RATIO: &str = r#"slo:sli_error:ratio_rate${window}{service="${service}"}"#;

/// The default objective query: the SLO target as a recorded ratio (e.g. 0.999).
pub const DEFAULT_OBJECTIVE: &str = r#"slo:objective:ratio{service="${service}"}"#;

/// The default SLO period (the window the error budget is spent over).
pub const DEFAULT_PERIOD: &str = "30d";

/// Why `slo collect` cannot start: its configuration, not the backend.
#[derive(Debug, thiserror::Error)]
pub enum SloError {
    /// A window or duration that is not Prometheus duration syntax.
    #[error("`{value}` is not a duration (Prometheus syntax: `5m`, `1h`, `3d`, `1h30m`)")]
    Duration {
        /// What was given.
        value: String,
    },
    /// A query template that cannot be used.
    #[error("query template `{name}`: {reason}")]
    Template {
        /// Which template (`errorRatio`, `objective`, `budgetRemaining`).
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The queries file is not the documented JSON (the parser's error is the source).
    #[error("queries file")]
    QueriesFile(#[source] serde_json::Error),
    /// The queries file is JSON, but not an object.
    #[error("queries file: must be a JSON object")]
    QueriesNotObject,
    /// The SLO configuration of the environment names no windows.
    #[error("{0}")]
    Config(String),
}

/// Why one figure is left out of a snapshot (the snapshot's `source.unavailable` says
/// this text). Our own reasons, with no underlying error to keep.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unavailable {
    /// The objective is not a ratio strictly between 0 and 1.
    #[error("objective {0} is not a ratio strictly between 0 and 1")]
    Objective(f64),
    /// An error ratio outside [0, 1].
    #[error("error ratio {0} is not a ratio in [0, 1]")]
    ErrorRatio(f64),
    /// The objective could not be read, so nothing computed from it can be.
    #[error("the objective is not available")]
    NoObjective,
    /// The query matched no series.
    #[error("no series (missing data)")]
    NoSeries,
    /// The query matched more than one series (the first three labels shown).
    #[error("ambiguous: {count} series match ({shown})")]
    Ambiguous {
        /// How many matched.
        count: usize,
        /// The first three label sets, `, ...` after them when there are more.
        shown: String,
    },
    /// A result type other than an instant vector or a scalar.
    #[error("the query returns a {0}, not an instant vector or scalar")]
    ResultType(String),
    /// A value that parses but is NaN or infinite.
    #[error("the value is {0} (not a finite number)")]
    NotFinite(f64),
    /// A value that is not a number at all.
    #[error("the value `{0}` is not a number")]
    NotANumber(String),
    /// The newest sample is older than the staleness limit.
    #[error("stale: the newest sample is from {when}, {age:.0}s before the evaluation time (limit {limit}s)")]
    Stale {
        /// The sample's time (RFC 3339, or the raw Unix seconds).
        when: String,
        /// Its age at the evaluation time, in seconds.
        age: f64,
        /// The limit, in seconds.
        limit: u64,
    },
    /// The figure's `timestamp()` query could not be read. Part of this figure's reason,
    /// so said in the message (not a `source`).
    #[error("its timestamp: {0}")]
    Timestamp(Box<Unavailable>),
}

/// Where the objective comes from: a number written in the queries file, or a query.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Objective {
    /// A fixed objective, e.g. `0.999`.
    Fixed(f64),
    /// A PromQL template yielding it.
    Query(String),
}

/// The queries file (`--queries FILE`): every key optional, unknown keys refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Queries {
    /// The error ratio over `${window}` for `${service}`; burn rate = ratio / (1 - objective).
    #[serde(default = "default_error_ratio")]
    pub error_ratio: String,
    /// The objective: a number, or a template yielding it.
    #[serde(default = "default_objective")]
    pub objective: Objective,
    /// The remaining error budget read directly (a fraction); without it, it is computed
    /// from `errorRatio` over `period`.
    #[serde(default)]
    pub budget_remaining: Option<String>,
    /// The SLO period, recorded as the snapshot's `window`.
    #[serde(default = "default_period")]
    pub period: String,
}

fn default_error_ratio() -> String {
    DEFAULT_ERROR_RATIO.into()
}
fn default_objective() -> Objective {
    Objective::Query(DEFAULT_OBJECTIVE.into())
}
fn default_period() -> String {
    DEFAULT_PERIOD.into()
}

impl Default for Queries {
    fn default() -> Self {
        Self {
            error_ratio: default_error_ratio(),
            objective: default_objective(),
            budget_remaining: None,
            period: default_period(),
        }
    }
}

impl Queries {
    /// Parse and check a queries file's JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SloError> {
        // An object only: serde would also take a struct from an (empty) array.
        let value: Value = serde_json::from_slice(bytes).map_err(SloError::QueriesFile)?;
        if !value.is_object() {
            return Err(SloError::QueriesNotObject);
        }
        let q: Queries = serde_json::from_value(value).map_err(SloError::QueriesFile)?;
        q.check()?;
        Ok(q)
    }

    /// Every template uses only known placeholders, and the error ratio varies by window.
    pub fn check(&self) -> Result<(), SloError> {
        check_template("errorRatio", &self.error_ratio, true)?;
        if !self.error_ratio.contains("${window}") {
            return Err(SloError::Template {
                name: "errorRatio",
                reason: "must use `${window}`, or every window would read the same series".into(),
            });
        }
        match &self.objective {
            Objective::Query(t) => check_template("objective", t, false)?,
            Objective::Fixed(o) => {
                check_objective(*o).map_err(|why| SloError::Template {
                    name: "objective",
                    reason: why.to_string(),
                })?;
            }
        }
        if let Some(t) = &self.budget_remaining {
            check_template("budgetRemaining", t, false)?;
        }
        parse_window(&self.period)?;
        Ok(())
    }
}

fn check_template(name: &'static str, t: &str, window: bool) -> Result<(), SloError> {
    let bad = |reason: String| SloError::Template { name, reason };
    if t.trim().is_empty() {
        return Err(bad("is empty".into()));
    }
    if t.len() > MAX_TEMPLATE_BYTES {
        return Err(bad(format!("is longer than {MAX_TEMPLATE_BYTES} bytes")));
    }
    let mut rest = t;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| bad("has an unclosed `${`".into()))?;
        match &after[..end] {
            "service" => {}
            "window" if window => {}
            other => return Err(bad(format!("unknown placeholder `${{{other}}}`"))),
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// `template` with `${service}` as the inside of a PromQL double-quoted string (escaped)
/// and `${window}` as a checked duration.
pub fn render(template: &str, service: &str, window: &str) -> String {
    template
        .replace("${service}", &promql_string_body(service))
        .replace("${window}", window)
}

/// Escape a label value for the inside of a PromQL `"..."` string.
fn promql_string_body(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A Prometheus duration (`5m`, `1h30m`, `3d`, `500ms`): units in decreasing order, each
/// at most once. Also the check that makes a window safe to paste into a query.
pub fn parse_window(s: &str) -> Result<Duration, SloError> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let bad = || SloError::Duration { value: s.into() };
    if s.is_empty() || s.len() > 32 {
        return Err(bad());
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        let unit = &rest[..letters];
        let pos = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        let ms = UNITS[next_unit + pos].1;
        next_unit += pos + 1;
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[letters..];
    }
    if total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_millis(total))
}

/// The windows the environment's burn-rate pairs read (`fastBurn` and `slowBurn`, long and
/// short), shortest first, each once. `slo` is `data.promo.config.environments.<env>.slo`.
pub fn windows_from_config(slo: &Value) -> Result<Vec<String>, SloError> {
    let mut windows: Vec<(Duration, String)> = Vec::new();
    for family in ["fastBurn", "slowBurn"] {
        let pairs = match slo.get(family) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(p)) => p,
            Some(_) => return Err(SloError::Config(format!("`slo.{family}` is not a list"))),
        };
        for pair in pairs {
            for end in ["long", "short"] {
                let w = pair.get(end).and_then(Value::as_str).ok_or_else(|| {
                    SloError::Config(format!("a `slo.{family}` pair has no `{end}` window"))
                })?;
                let d = parse_window(w)?;
                if !windows.iter().any(|(_, seen)| seen == w) {
                    windows.push((d, w.to_owned()));
                }
            }
        }
    }
    windows.sort();
    Ok(windows.into_iter().map(|(_, w)| w).collect())
}

fn check_objective(o: f64) -> Result<f64, Unavailable> {
    if o.is_finite() && o > 0.0 && o < 1.0 {
        Ok(o)
    } else {
        Err(Unavailable::Objective(o))
    }
}

/// Burn rate: how many times faster than the SLO allows the budget is being spent,
/// `error ratio / (1 - objective)` (SRE Workbook, "Alerting on SLOs").
pub fn burn_rate(error_ratio: f64, objective: f64) -> Result<f64, Unavailable> {
    let objective = check_objective(objective)?;
    if !error_ratio.is_finite() || !(0.0..=1.0).contains(&error_ratio) {
        return Err(Unavailable::ErrorRatio(error_ratio));
    }
    Ok(tidy(error_ratio / (1.0 - objective)))
}

/// `x` to 12 significant digits: `1 - 0.999` is not exactly 0.001 in binary, and a burn
/// rate of 0.19999999999999984 in a violation message helps nobody. The inputs (decimal
/// text from Prometheus) carry no more precision than that.
fn tidy(x: f64) -> f64 {
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// The fraction of the period's error budget left: `1 - burn rate over the period`
/// (negative once overspent).
pub fn budget_remaining(period_error_ratio: f64, objective: f64) -> Result<f64, Unavailable> {
    burn_rate(period_error_ratio, objective).map(|b| tidy(1.0 - b))
}

/// Where instant-query results come from: Prometheus's HTTP API, or a test's table.
pub trait FigureSource {
    /// The server, as the snapshot's `source.url` records it.
    fn url(&self) -> &str;
    /// One instant query evaluated at `at`.
    fn instant(&self, query: &str, at: OffsetDateTime) -> Result<QueryResult, PromError>;
}

/// What to collect.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The service, substituted for `${service}`.
    pub service: &'a str,
    /// The burn-rate windows.
    pub windows: &'a [String],
    /// The query templates.
    pub queries: &'a Queries,
    /// The evaluation time of every query, and the snapshot's `measuredAt`.
    pub at: OffsetDateTime,
    /// The oldest sample still counted, relative to `at`.
    pub max_staleness: Duration,
}

/// A collected snapshot: the predicate to sign and the figures left out, with why.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The `slo-snapshot/v1` predicate.
    pub predicate: Value,
    /// Figure (`burnRates.5m`, `errorBudgetRemaining`, `objective`) and the reason it is
    /// not in the snapshot.
    pub left_out: Vec<(String, String)>,
}

/// Read every figure of `plan` from `src` and build the snapshot. Only the backend failing
/// (unreachable, an error status, an unreadable answer) is an error; a figure without a
/// usable series is left out and listed.
pub fn collect(src: &dyn FigureSource, plan: &Plan<'_>) -> Result<Snapshot, PromError> {
    let mut queries = Map::new();
    let mut left_out: Vec<(String, String)> = Vec::new();

    let objective = match &plan.queries.objective {
        Objective::Fixed(o) => Some(*o),
        Objective::Query(t) => {
            let q = render(t, plan.service, "");
            queries.insert("objective".into(), q.clone().into());
            match read_figure(src, &q, plan)?.and_then(check_objective) {
                Ok(o) => Some(o),
                Err(why) => {
                    left_out.push(("objective".into(), why.to_string()));
                    None
                }
            }
        }
    };
    type Figure = Result<f64, Unavailable>;
    let from_ratio = |ratio: Figure, f: fn(f64, f64) -> Figure| {
        let ratio = ratio?;
        let o = objective.ok_or(Unavailable::NoObjective)?;
        f(ratio, o)
    };

    let mut burn = Map::new();
    for w in plan.windows {
        let figure = format!("burnRates.{w}");
        let q = render(&plan.queries.error_ratio, plan.service, w);
        queries.insert(figure.clone(), q.clone().into());
        match from_ratio(read_figure(src, &q, plan)?, burn_rate) {
            Ok(rate) => {
                burn.insert(w.clone(), json!(rate));
            }
            Err(why) => left_out.push((figure, why.to_string())),
        }
    }

    let budget = match &plan.queries.budget_remaining {
        Some(t) => {
            let q = render(t, plan.service, "");
            queries.insert("errorBudgetRemaining".into(), q.clone().into());
            read_figure(src, &q, plan)?
        }
        None => {
            let q = render(
                &plan.queries.error_ratio,
                plan.service,
                &plan.queries.period,
            );
            queries.insert("errorBudgetRemaining".into(), q.clone().into());
            from_ratio(read_figure(src, &q, plan)?, budget_remaining)
        }
    };

    let at = format_time(plan.at);
    let mut predicate = json!({
        "service": plan.service,
        "objective": objective,
        "window": plan.queries.period,
        "burnRates": burn,
        "measuredAt": at,
    });
    match budget {
        Ok(b) => predicate["errorBudgetRemaining"] = json!(b),
        Err(why) => left_out.push(("errorBudgetRemaining".into(), why.to_string())),
    }
    let unavailable: BTreeMap<&str, &str> = left_out
        .iter()
        .map(|(f, why)| (f.as_str(), why.as_str()))
        .collect();
    predicate["source"] = json!({
        "kind": "prometheus",
        "url": src.url(),
        "evaluationTime": at,
        "maxStalenessSeconds": plan.max_staleness.as_secs_f64(),
        "queries": queries,
        "unavailable": unavailable,
    });
    Ok(Snapshot {
        predicate,
        left_out,
    })
}

/// One figure: exactly one finite, fresh sample, or why not.
fn read_figure(
    src: &dyn FigureSource,
    query: &str,
    plan: &Plan<'_>,
) -> Result<Result<f64, Unavailable>, PromError> {
    let result = src.instant(query, plan.at)?;
    // A scalar (a literal) has no sample, so no age.
    let is_series = matches!(result, QueryResult::Vector(_));
    let value = match one_value(result) {
        Ok(v) => v,
        Err(why) => return Ok(Err(why)),
    };
    if !is_series {
        return Ok(Ok(value));
    }
    // `timestamp()` of a series is its sample's own time; of a computed expression it is
    // the evaluation time, so only the lookback (5m by default) bounds those.
    let ts = match one_value(src.instant(&format!("timestamp({query})"), plan.at)?) {
        Ok(ts) => ts,
        Err(why) => return Ok(Err(Unavailable::Timestamp(Box::new(why)))),
    };
    Ok(fresh(value, ts, plan.at, plan.max_staleness))
}

/// `value` if its sample time `ts` (Unix seconds) is within `max` before `at`.
pub fn fresh(value: f64, ts: f64, at: OffsetDateTime, max: Duration) -> Result<f64, Unavailable> {
    let at_s = at.unix_timestamp_nanos() as f64 / 1e9;
    let age = at_s - ts;
    if age > max.as_secs_f64() {
        let when = OffsetDateTime::from_unix_timestamp(ts as i64)
            .map(format_time)
            .unwrap_or_else(|_| ts.to_string());
        return Err(Unavailable::Stale {
            when,
            age,
            limit: max.as_secs(),
        });
    }
    Ok(value)
}

/// The single finite value of a result, or why there is none.
fn one_value(result: QueryResult) -> Result<f64, Unavailable> {
    let raw = match result {
        QueryResult::Scalar(s) => s,
        QueryResult::Vector(mut series) => match series.len() {
            0 => return Err(Unavailable::NoSeries),
            1 => series.remove(0).value,
            n => {
                let shown: Vec<String> = series
                    .iter()
                    .take(3)
                    .map(|s| format!("{:?}", s.labels))
                    .collect();
                return Err(Unavailable::Ambiguous {
                    count: n,
                    shown: format!("{}{}", shown.join(", "), if n > 3 { ", ..." } else { "" }),
                });
            }
        },
        QueryResult::Other(kind) => return Err(Unavailable::ResultType(kind)),
    };
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(Unavailable::NotFinite(v)),
        Err(_) => Err(Unavailable::NotANumber(raw)),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn burn_rate_and_budget_follow_the_workbook() {
        // 99.9 %: 0.1 % errors allowed. 1.44 % errors is 14.4x.
        assert!((burn_rate(0.0144, 0.999).unwrap() - 14.4).abs() < 1e-9);
        // Binary noise from `1 - objective` rounded away; real figures kept.
        assert_eq!(burn_rate(0.0002, 0.999).unwrap(), 0.2);
        assert_eq!(burn_rate(0.02, 0.999).unwrap(), 20.0);
        assert_eq!(budget_remaining(0.0003, 0.999).unwrap(), 0.7);
        assert_eq!(burn_rate(0.000123456789012, 0.9).unwrap(), 0.00123456789012);
        assert_eq!(burn_rate(0.0, 0.999).unwrap(), 0.0);
        // Half the period's allowance spent: half the budget left; 1.2x spent: -0.2.
        assert!((budget_remaining(0.0005, 0.999).unwrap() - 0.5).abs() < 1e-9);
        assert!((budget_remaining(0.0012, 0.999).unwrap() + 0.2).abs() < 1e-9);
        for o in [0.0, 1.0, 1.5, -0.1, f64::NAN] {
            assert!(burn_rate(0.01, o).is_err(), "{o}");
        }
        for r in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
            assert!(burn_rate(r, 0.999).is_err(), "{r}");
        }
    }

    #[test]
    fn windows_are_prometheus_durations() {
        assert_eq!(parse_window("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_window("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_window("3d").unwrap(), Duration::from_secs(3 * 86400));
        assert_eq!(parse_window("500ms").unwrap(), Duration::from_millis(500));
        for bad in [
            "",
            "0m",
            "m",
            "5",
            "5x",
            "30m1h",
            "1h1h",
            "5m}",
            "1h or vector(1)",
            "-5m",
            "5M",
            "99999999999999999999y",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_windows_are_the_pairs_ends_once_shortest_first() {
        let slo = json!({"fastBurn": [{"long": "1h", "short": "5m", "threshold": 14.4},
                                      {"long": "6h", "short": "30m", "threshold": 6}],
                         "slowBurn": [{"long": "3d", "short": "6h", "threshold": 1}]});
        assert_eq!(
            windows_from_config(&slo).unwrap(),
            ["5m", "30m", "1h", "6h", "3d"]
        );
        assert!(windows_from_config(&json!({"fastBurn": []}))
            .unwrap()
            .is_empty());
        assert!(windows_from_config(&json!({"fastBurn": [{"long": "1h"}]})).is_err());
        assert!(
            windows_from_config(&json!({"fastBurn": [{"long": "1h]", "short": "5m"}]})).is_err()
        );
    }

    #[test]
    fn templates_escape_the_service_and_refuse_unknown_placeholders() {
        assert_eq!(
            render(DEFAULT_ERROR_RATIO, "pay\"ments\\x\n", "5m"),
            r#"slo:sli_error:ratio_rate5m{service="pay\"ments\\x\n"}"#
        );
        let q = Queries::from_json(br#"{"objective": 0.999, "period": "28d",
            "errorRatio": "sum(rate(err{job=\"${service}\"}[${window}])) / sum(rate(all{job=\"${service}\"}[${window}]))"}"#)
            .unwrap();
        assert_eq!(q.objective, Objective::Fixed(0.999));
        assert_eq!(q.period, "28d");
        assert_eq!(Queries::from_json(b"{}").unwrap(), Queries::default());
        for bad in [
            r#"{"errorRatio": "x{service=\"${service}\"}"}"#,
            r#"{"errorRatio": "x${window}{a=\"${svc}\"}"}"#,
            r#"{"errorRatio": "x${window"}"#,
            r#"{"objective": "x[${window}]"}"#,
            r#"{"objective": 1.0}"#,
            r#"{"period": "a month"}"#,
            r#"{"errorRate": "x"}"#,
            r#"{"budgetRemaining": ""}"#,
            r#"[]"#,
        ] {
            assert!(Queries::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn staleness_is_measured_against_the_evaluation_time() {
        let at = crate::input::parse_time("2026-11-26T18:00:00Z").unwrap();
        let t = at.unix_timestamp() as f64;
        let five = Duration::from_secs(300);
        assert_eq!(fresh(1.5, t, at, five), Ok(1.5));
        assert_eq!(fresh(1.5, t - 300.0, at, five), Ok(1.5));
        let err = fresh(1.5, t - 301.0, at, five).unwrap_err().to_string();
        assert!(
            err.contains("2026-11-26T17:54:59Z") && err.contains("301s"),
            "{err}"
        );
    }

    /// Answers from a table keyed by query; counts the queries it was asked.
    struct Table {
        answers: HashMap<String, QueryResult>,
        asked: RefCell<Vec<String>>,
    }

    impl FigureSource for Table {
        fn url(&self) -> &str {
            "http://prometheus.test:9090"
        }
        fn instant(&self, query: &str, _at: OffsetDateTime) -> Result<QueryResult, PromError> {
            self.asked.borrow_mut().push(query.into());
            Ok(self
                .answers
                .get(query)
                .cloned()
                .unwrap_or(QueryResult::Vector(vec![])))
        }
    }

    fn one(v: &str) -> QueryResult {
        QueryResult::Vector(vec![Sample {
            labels: BTreeMap::new(),
            value: v.into(),
        }])
    }

    #[test]
    fn collect_builds_the_snapshot_and_leaves_out_what_it_cannot_read() {
        let at = crate::input::parse_time("2026-11-26T18:00:00Z").unwrap();
        let now = at.unix_timestamp().to_string();
        let old = (at.unix_timestamp() - 600).to_string();
        let q = |w: &str| render(DEFAULT_ERROR_RATIO, "api", w);
        let mut answers = HashMap::new();
        let mut series = |query: String, v: &str, ts: &str| {
            answers.insert(format!("timestamp({query})"), one(ts));
            answers.insert(query, one(v));
        };
        series(render(DEFAULT_OBJECTIVE, "api", ""), "0.999", &now);
        series(q("5m"), "0.02", &now); // 20x
        series(q("1h"), "0.0144", &now); // 14.4x
        series(q("6h"), "NaN", &now);
        series(q("3d"), "0.001", &old); // stale
        series(q("30d"), "0.0005", &now); // half the budget
        let two = QueryResult::Vector(vec![
            Sample {
                labels: BTreeMap::from([("instance".into(), "a".into())]),
                value: "0.1".into(),
            },
            Sample {
                labels: BTreeMap::from([("instance".into(), "b".into())]),
                value: "0.2".into(),
            },
        ]);
        answers.insert(q("30m"), two);
        let table = Table {
            answers,
            asked: RefCell::new(vec![]),
        };
        let windows: Vec<String> = ["5m", "30m", "1h", "6h", "3d", "12h"]
            .map(String::from)
            .into();
        let queries = Queries::default();
        let plan = Plan {
            service: "api",
            windows: &windows,
            queries: &queries,
            at,
            max_staleness: Duration::from_secs(300),
        };
        let snap = collect(&table, &plan).unwrap();
        let p = &snap.predicate;
        assert_eq!(p["objective"], 0.999);
        assert_eq!(p["measuredAt"], "2026-11-26T18:00:00Z");
        assert_eq!(p["window"], "30d");
        assert!((p["burnRates"]["5m"].as_f64().unwrap() - 20.0).abs() < 1e-9);
        assert!((p["burnRates"]["1h"].as_f64().unwrap() - 14.4).abs() < 1e-9);
        assert!((p["errorBudgetRemaining"].as_f64().unwrap() - 0.5).abs() < 1e-9);
        let rates = p["burnRates"].as_object().unwrap();
        assert_eq!(rates.len(), 2, "{p}");
        let why: BTreeMap<&str, &str> = snap
            .left_out
            .iter()
            .map(|(f, w)| (f.as_str(), w.as_str()))
            .collect();
        assert!(why["burnRates.6h"].contains("NaN"), "{why:?}");
        assert!(why["burnRates.3d"].starts_with("stale"), "{why:?}");
        assert!(
            why["burnRates.30m"].starts_with("ambiguous: 2 series"),
            "{why:?}"
        );
        assert!(why["burnRates.12h"].contains("no series"), "{why:?}");
        assert_eq!(why.len(), 4);
        assert_eq!(p["source"]["unavailable"].as_object().unwrap().len(), 4);
        assert_eq!(p["source"]["queries"]["burnRates.5m"], q("5m"));
        assert_eq!(p["source"]["queries"]["errorBudgetRemaining"], q("30d"));
        assert_eq!(p["source"]["url"], "http://prometheus.test:9090");
        // What the engine reads back is what was meant: no figure invented.
        crate::attest::evidence::from_predicate(crate::attest::evidence::SLO_SNAPSHOT_V1, p)
            .unwrap();
    }

    #[test]
    fn without_the_objective_no_figure_is_computed() {
        let at = crate::input::parse_time("2026-11-26T18:00:00Z").unwrap();
        let now = at.unix_timestamp().to_string();
        let mut answers = HashMap::new();
        for w in ["1h", "30d"] {
            let query = render(DEFAULT_ERROR_RATIO, "api", w);
            answers.insert(format!("timestamp({query})"), one(&now));
            answers.insert(query, one("0.001"));
        }
        let table = Table {
            answers,
            asked: RefCell::new(vec![]),
        };
        let windows = vec!["1h".to_string()];
        let queries = Queries::default();
        let plan = Plan {
            service: "api",
            windows: &windows,
            queries: &queries,
            at,
            max_staleness: Duration::from_secs(300),
        };
        let snap = collect(&table, &plan).unwrap();
        assert_eq!(snap.predicate["objective"], Value::Null);
        assert!(snap.predicate.get("errorBudgetRemaining").is_none());
        assert!(snap.predicate["burnRates"].as_object().unwrap().is_empty());
        assert_eq!(snap.left_out.len(), 3, "{:?}", snap.left_out);

        // A fixed objective and a direct budget query: no objective query at all.
        let queries = Queries {
            objective: Objective::Fixed(0.99),
            budget_remaining: Some(r#"budget{service="${service}"}"#.into()),
            ..Queries::default()
        };
        let plan = Plan {
            queries: &queries,
            ..plan
        };
        table.asked.borrow_mut().clear();
        let mut answers = table.answers;
        answers.insert(
            r#"budget{service="api"}"#.into(),
            QueryResult::Scalar("0.25".into()),
        );
        let table = Table {
            answers,
            asked: RefCell::new(vec![]),
        };
        let snap = collect(&table, &plan).unwrap();
        assert_eq!(snap.predicate["objective"], 0.99);
        assert_eq!(snap.predicate["errorBudgetRemaining"], 0.25);
        assert!((snap.predicate["burnRates"]["1h"].as_f64().unwrap() - 0.1).abs() < 1e-9);
        assert!(!table.asked.borrow().iter().any(|q| q.contains("objective")));
    }
}
