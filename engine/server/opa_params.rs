//! OPA's query parameters on the Data and Query APIs, parsed as OPA parses them, and
//! the `metrics` and `provenance` they add; a parameter the sidecar cannot honour
//! truthfully (`explain`) is refused with a 400, never answered with a made-up value.

use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::Uri;
use serde_json::{json, Value};

use super::errors::ApiError;

/// Longest query string (still URL-encoded) on a Data API GET, which is where
/// `?input=<JSON>` travels. The `http` crate cannot represent a URI past 64 KiB, so
/// hyper answers longer ones with a bare 414 before any route runs; this limit sits well
/// under that so a client hears why in OPA's error shape. The baseline promotion request
/// (about 8 KiB of JSON) fits with room to spare; larger requests belong in a POST body.
pub const MAX_QUERY_STRING_BYTES: usize = 32 * 1024;

/// OPA's `?explain` modes. Each asks for OPA's evaluation trace, which regorus does not
/// produce; answering with anything else under that name would mislead a client.
const EXPLAIN_MODES: [&str; 4] = ["notes", "fails", "full", "debug"];

/// What a client asked for with OPA's query parameters.
#[derive(Debug, Default, Clone)]
pub(super) struct OpaParams {
    /// `?pretty`: indent the answer.
    pub pretty: bool,
    /// `?metrics` (or `?instrument`): add the measured timers.
    pub metrics: bool,
    /// `?provenance`: add the sidecar's version and the bundle's revision and digest.
    pub provenance: bool,
    /// `?strict-builtin-errors`: a builtin error fails the query.
    pub strict_builtin_errors: bool,
    /// `?input=<JSON>` on a Data API GET (the last one, as OPA takes it).
    pub input: Option<String>,
}

impl OpaParams {
    /// Parse `uri`'s query string; a 400 in OPA's shape when it is too long, does not
    /// decode, or asks for an `explain` mode.
    pub fn parse(uri: &Uri) -> Result<Self, ApiError> {
        let Some(raw) = uri.query() else {
            return Ok(Self::default());
        };
        if raw.len() > MAX_QUERY_STRING_BYTES {
            return Err(ApiError::Query(format!(
                "the query string is {} bytes; the limit is {MAX_QUERY_STRING_BYTES}: send a large input in a POST body",
                raw.len()
            )));
        }
        let pairs = match Query::<Vec<(String, String)>>::try_from_uri(uri) {
            Ok(Query(pairs)) => pairs,
            Err(e) => {
                return Err(ApiError::Query(format!(
                    "bad query string: {}",
                    e.body_text()
                )))
            }
        };
        if let Some((_, mode)) = pairs
            .iter()
            .find(|(k, v)| k == "explain" && EXPLAIN_MODES.contains(&v.as_str()))
        {
            return Err(ApiError::Query(format!(
                "`explain={mode}` is not supported: the sidecar's Rego engine (regorus) does not produce OPA's evaluation trace; a promotion decision's own `violations` and `promo-policy eval --explain` say why it was denied"
            )));
        }
        Ok(Self {
            pretty: flag(&pairs, "pretty"),
            metrics: flag(&pairs, "metrics") || flag(&pairs, "instrument"),
            provenance: flag(&pairs, "provenance"),
            strict_builtin_errors: flag(&pairs, "strict-builtin-errors"),
            input: pairs
                .iter()
                .rev()
                .find(|(k, _)| k == "input")
                .map(|(_, v)| v.clone()),
        })
    }
}

/// OPA's boolean parameter: present without a value, or with any value `true` (any
/// case), is on; absent or anything else is off.
fn flag(pairs: &[(String, String)], name: &str) -> bool {
    let values: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect();
    match values.as_slice() {
        [] => false,
        [""] => true,
        many => many.iter().any(|v| v.eq_ignore_ascii_case("true")),
    }
}

/// Timers for OPA's `?metrics`, with OPA's key names where the stage is the same one
/// (`timer_server_handler_ns`, `timer_rego_input_parse_ns`, `timer_rego_query_eval_ns`)
/// and a `promo` name for the stage OPA does not have (verifying the facts). Every value
/// is measured; a stage that did not run is left out rather than reported as zero.
#[derive(Debug)]
pub(super) struct Timers {
    started: Instant,
    stages: Vec<(&'static str, Duration)>,
}

/// OPA's name for parsing the input document.
pub(super) const TIMER_INPUT_PARSE: &str = "timer_rego_input_parse_ns";
/// OPA's name for evaluating the query.
pub(super) const TIMER_QUERY_EVAL: &str = "timer_rego_query_eval_ns";
/// Verifying attestations, running plugins and building the input: no OPA counterpart.
pub(super) const TIMER_FACTS: &str = "timer_promo_verify_facts_ns";
/// OPA's name for the whole handler.
const TIMER_HANDLER: &str = "timer_server_handler_ns";

impl Timers {
    /// Start the handler's clock.
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            stages: Vec::new(),
        }
    }

    /// Record a stage's measured duration.
    pub fn record(&mut self, name: &'static str, took: Duration) {
        self.stages.push((name, took));
    }

    /// Time since the handler started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The `metrics` object, the handler timer read now.
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (name, took) in &self.stages {
            map.insert((*name).to_string(), json!(nanos(*took)));
        }
        map.insert(TIMER_HANDLER.into(), json!(nanos(self.started.elapsed())));
        Value::Object(map)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// OPA's `provenance` object: the sidecar's version (OPA's build fields, empty as in
/// OPA builds that do not stamp them) and the one bundle, `promo`, with its revision and
/// (an addition OPA does not have) its digest.
pub(super) fn provenance(bundle: &crate::PolicyBundle) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "build_commit": "",
        "build_timestamp": "",
        "build_hostname": "",
        "bundles": {
            "promo": {
                "revision": bundle.revision().unwrap_or_default(),
                "digest": {"sha256": bundle.digest().hex()},
            }
        },
    })
}

/// Add what `params` asked for to a Data or Query API answer.
pub(super) fn decorate(
    body: &mut Value,
    params: &OpaParams,
    timers: &Timers,
    bundle: &crate::PolicyBundle,
) {
    if params.metrics {
        body["metrics"] = timers.to_json();
    }
    if params.provenance {
        body["provenance"] = provenance(bundle);
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<OpaParams, ApiError> {
        OpaParams::parse(&format!("/v1/data?{q}").parse::<Uri>().unwrap())
    }

    #[test]
    fn boolean_parameters_read_as_opa_reads_them() {
        assert!(parse("pretty").unwrap().pretty);
        assert!(parse("pretty=TRUE").unwrap().pretty);
        assert!(!parse("pretty=1").unwrap().pretty);
        assert!(parse("pretty=false&pretty=true").unwrap().pretty);
        assert!(!parse("x=1").unwrap().pretty);
        assert!(parse("instrument").unwrap().metrics);
        assert!(
            parse("strict-builtin-errors=true")
                .unwrap()
                .strict_builtin_errors
        );
    }

    #[test]
    fn the_last_input_wins_and_is_decoded() {
        let p = parse("input=%7B%22a%22%3A1%7D&input=%7B%22b%22%3A2%7D").unwrap();
        assert_eq!(p.input.as_deref(), Some(r#"{"b":2}"#));
    }

    #[test]
    fn explain_modes_are_refused_and_unknown_values_ignored() {
        for mode in EXPLAIN_MODES {
            let e = parse(&format!("explain={mode}")).unwrap_err();
            assert_eq!(e.code(), "invalid_parameter");
        }
        assert!(parse("explain=off").is_ok());
    }

    #[test]
    fn a_long_query_string_is_refused() {
        let e = parse(&format!("input={}", "a".repeat(MAX_QUERY_STRING_BYTES))).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn timers_report_only_measured_stages() {
        let mut t = Timers::start();
        t.record(TIMER_QUERY_EVAL, Duration::from_micros(3));
        let m = t.to_json();
        assert_eq!(m[TIMER_QUERY_EVAL], 3000);
        assert!(m[TIMER_HANDLER].as_u64().unwrap() > 0);
        assert!(m.get(TIMER_INPUT_PARSE).is_none());
    }
}
