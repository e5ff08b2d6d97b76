//! Evaluation time: RFC 3339 parsing and formatting, and the one rule for which time a
//! read request is evaluated at; it never reads the clock except where the rule says so.
//!
//! # The time rule
//!
//! Every input that `eval --batch` and `diff` read is evaluated at the first of:
//!
//! 1. `--at` ([`TimeRule::at`]), when given: an explicit time wins for every input;
//! 2. else the input's recorded time: a record's `evaluatedAt`, a corpus case's `at`;
//! 3. else, for a command that asks for it ([`TimeRule::requested_at`]: `diff`), the
//!    request's own `requestedAt`;
//! 4. else the clock ([`Clock`]): read once for the whole run (`diff`, so both bundles
//!    see the same time) or once per decision (`eval --batch`).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::request::PromotionRequest;

/// A time value that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time `{value}`: expected RFC 3339, e.g. `2026-11-26T18:00:00Z`")]
pub struct TimeError {
    /// What was given.
    pub value: String,
}

/// Format a time as RFC 3339 in UTC with second precision (`2026-11-26T18:00:00Z`).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Parse an RFC 3339 time (`--at`, recorded decision times).
pub fn parse_time(value: &str) -> Result<OffsetDateTime, TimeError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| TimeError {
        value: value.to_string(),
    })
}

/// Why the time rule cannot give a time: the request's `requestedAt`, which it reads,
/// is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestedAtError {
    /// Not RFC 3339 (the parse error is the source).
    #[error("request field `requestedAt`")]
    Invalid(#[source] TimeError),
    /// Not a string at all.
    #[error("request field `requestedAt` is not a string")]
    NotAString,
}

/// Where the time of an input with neither `--at` nor a recorded time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// One reading taken at the start of the run, the same for every input.
    Fixed(OffsetDateTime),
    /// A fresh reading for every decision.
    PerDecision,
}

/// The time rule (see the module docs) as one command applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRule {
    /// `--at`: wins over everything, for every input.
    pub at: Option<OffsetDateTime>,
    /// Whether a bare request's `requestedAt` comes before the clock.
    pub requested_at: bool,
    /// The last resort.
    pub clock: Clock,
}

impl TimeRule {
    /// `--at` when given, else the clock read per decision (`eval --batch`).
    pub fn at_or_clock(at: Option<OffsetDateTime>) -> Self {
        Self {
            at,
            requested_at: false,
            clock: Clock::PerDecision,
        }
    }

    /// The time to evaluate `request` at, given the time its input recorded. Fails only
    /// on a `requestedAt` that the rule reads and cannot parse.
    pub fn time_for(
        &self,
        recorded: Option<OffsetDateTime>,
        request: &PromotionRequest,
    ) -> Result<OffsetDateTime, RequestedAtError> {
        if let Some(t) = self.at.or(recorded) {
            return Ok(t);
        }
        if self.requested_at {
            match request.raw.get("requestedAt") {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(s)) => {
                    return parse_time(s).map_err(RequestedAtError::Invalid)
                }
                Some(_) => return Err(RequestedAtError::NotAString),
            }
        }
        Ok(match self.clock {
            Clock::Fixed(now) => now,
            Clock::PerDecision => OffsetDateTime::now_utc(),
        })
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

    #[test]
    fn time_round_trip_is_utc_seconds() {
        let t = parse_time("2026-11-26T19:00:00.123+01:00").unwrap();
        assert_eq!(format_time(t), "2026-11-26T18:00:00Z");
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn time_order_is_at_then_recorded_then_requested_at_then_clock() {
        let t = |s| parse_time(s).unwrap();
        let request = PromotionRequest::from_slice(
            &std::fs::read("corpus/cases/prod-allow-baseline/request.json").unwrap(),
        )
        .unwrap();
        let requested = t(request.raw["requestedAt"].as_str().unwrap());
        let now = t("2030-01-01T00:00:00Z");
        let at = t("2029-01-01T00:00:00Z");
        let rec = t("2028-01-01T00:00:00Z");
        let rule = |at, requested_at| TimeRule {
            at,
            requested_at,
            clock: Clock::Fixed(now),
        };
        assert_eq!(rule(Some(at), true).time_for(Some(rec), &request), Ok(at));
        assert_eq!(rule(None, true).time_for(Some(rec), &request), Ok(rec));
        assert_eq!(rule(None, true).time_for(None, &request), Ok(requested));
        assert_eq!(rule(None, false).time_for(None, &request), Ok(now));
        let mut raw = request.raw.clone();
        raw.as_object_mut().unwrap().remove("requestedAt");
        let bare = PromotionRequest::from_value(raw).unwrap();
        assert_eq!(rule(None, true).time_for(None, &bare), Ok(now));
    }

    #[test]
    fn a_bad_requested_at_keeps_the_parse_error() {
        // The schema refuses such a request; the rule still must not take it for a time.
        let mut request = PromotionRequest::from_slice(
            &std::fs::read("corpus/cases/prod-allow-baseline/request.json").unwrap(),
        )
        .unwrap();
        request.raw["requestedAt"] = "yesterday".into();
        let rule = TimeRule {
            at: None,
            requested_at: true,
            clock: Clock::PerDecision,
        };
        let err = rule.time_for(None, &request).unwrap_err();
        let parse = std::error::Error::source(&err).unwrap();
        assert_eq!(
            parse.downcast_ref::<TimeError>(),
            Some(&TimeError {
                value: "yesterday".into()
            })
        );
        assert_eq!(
            crate::error_chain::ErrorChain(&err).to_string(),
            "request field `requestedAt`: invalid time `yesterday`: expected RFC 3339, e.g. `2026-11-26T18:00:00Z`"
        );
    }
}
