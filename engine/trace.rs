//! W3C Trace Context for decisions: parse a `traceparent`, make the decision's child span,
//! and write the header a caller propagates, so every promotion links to its telemetry.

use serde::{Deserialize, Serialize};

/// The trace a decision belongs to: the caller's trace id and span, and the span this
/// decision is (a child of the caller's), as recorded in the decision's `trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraceRef {
    /// 32 lowercase hex digits, never all zeros.
    pub trace_id: String,
    /// The decision's own span id: 16 lowercase hex digits.
    pub span_id: String,
    /// The caller's span id from its `traceparent`.
    pub parent_id: String,
    /// Whether the caller sampled the trace (`traceparent` flag 01).
    pub sampled: bool,
}

/// Why a `traceparent` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`traceparent` `{value}` is not a W3C trace context ({why}); expected `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`")]
pub struct TraceError {
    /// The value given (clipped to 80 characters).
    pub value: String,
    /// Which part is wrong.
    pub why: &'static str,
}

impl TraceRef {
    /// Parses a `traceparent` header value and makes this decision's child span.
    /// Version `00` is read exactly; a later version is read by its first four fields, as
    /// the specification asks; `ff` is invalid.
    pub fn from_traceparent(value: &str) -> Result<Self, TraceError> {
        let fail = |why| TraceError {
            value: value.chars().take(80).collect(),
            why,
        };
        let v = value.trim();
        let parts: Vec<&str> = v.split('-').collect();
        let [version, trace_id, parent_id, flags, rest @ ..] = parts.as_slice() else {
            return Err(fail("it does not have four `-`-separated fields"));
        };
        if !is_hex(version, 2) || *version == "ff" {
            return Err(fail(
                "the version is not two lowercase hex digits other than ff",
            ));
        }
        if *version == "00" && !rest.is_empty() {
            return Err(fail("version 00 has exactly four fields"));
        }
        if !is_hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
            return Err(fail(
                "the trace id is not 32 lowercase hex digits, not all zero",
            ));
        }
        if !is_hex(parent_id, 16) || parent_id.bytes().all(|b| b == b'0') {
            return Err(fail(
                "the parent id is not 16 lowercase hex digits, not all zero",
            ));
        }
        if !is_hex(flags, 2) {
            return Err(fail("the flags are not two lowercase hex digits"));
        }
        let sampled = u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1);
        Ok(Self {
            trace_id: (*trace_id).to_string(),
            span_id: new_span_id(),
            parent_id: (*parent_id).to_string(),
            sampled,
        })
    }

    /// The `traceparent` naming this decision's span, for the caller to propagate.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A random non-zero 8-byte span id, hex.
fn new_span_id() -> String {
    use rand_core::RngCore as _;
    loop {
        let mut bytes = [0u8; 8];
        rand_core::OsRng.fill_bytes(&mut bytes);
        if bytes != [0; 8] {
            return hex::encode(bytes);
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_gives_a_child_span_of_the_same_trace() {
        let t = TraceRef::from_traceparent(TP).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id, "00f067aa0ba902b7");
        assert!(t.sampled);
        assert_ne!(t.span_id, t.parent_id);
        assert!(is_hex(&t.span_id, 16));
        let header = t.traceparent();
        assert_eq!(
            TraceRef::from_traceparent(&header).unwrap().trace_id,
            t.trace_id
        );
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(header.ends_with("-01"));
    }

    #[test]
    fn malformed_values_are_refused_saying_which_part() {
        for (bad, why) in [
            ("", "four"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "four",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "parent id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                "exactly four",
            ),
        ] {
            let e = TraceRef::from_traceparent(bad).unwrap_err();
            assert!(e.why.contains(why), "{bad}: {e}");
        }
        // A later version may carry more fields.
        let later = format!("{}-extra", TP.replacen("00", "01", 1));
        assert!(TraceRef::from_traceparent(&later).is_ok());
    }
}
