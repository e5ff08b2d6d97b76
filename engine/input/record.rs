//! Records vs bare requests: one line (or file) is either a bare promotion request or a
//! record carrying a request and the time it was decided (an audit log export), so
//! `eval --batch` and `diff` can re-evaluate history at each request's own time.
//!
//! A line is a **record** when it is a JSON object with a top-level `"request"` key
//! (no promotion request has one: the schema forbids unknown top-level fields). Its
//! `"request"` must be an object and its `"evaluatedAt"`, when present, an RFC 3339
//! time; every other key (`seq`, `hash`, `decision`, ...) is ignored. Any other line is
//! a bare request, taken as it is. Neither is validated here: the request bytes go to
//! [`crate::PromotionRequest::from_slice`] like any other.
//!
//! A JSON object whose `from` and `violations` make it an **admission record**
//! ([`RecordKind::of`]: a break-glass or dry-run admission the sidecar recorded, with or
//! without its stored `request`) is no promotion: it is returned as
//! [`RecordKind::Admission`], whatever else it holds, for the caller to skip and count.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::time::parse_time;
use crate::audit::{RecordKind, ADMISSION_FROM_PREFIX};

/// A request to evaluate and, when the line recorded one, the time to evaluate it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded<'a> {
    /// The request's JSON bytes (the line itself for a bare request).
    pub request: Cow<'a, [u8]>,
    /// The record's `evaluatedAt`; `None` for a bare request or a record without one.
    pub at: Option<OffsetDateTime>,
    /// [`RecordKind::Admission`] for an admission record, never to be replayed as a
    /// promotion; [`RecordKind::Promotion`] for anything else.
    pub kind: RecordKind,
}

#[derive(Deserialize)]
struct RecordLine<'a> {
    #[serde(borrow)]
    request: Option<&'a RawValue>,
    #[serde(rename = "evaluatedAt")]
    evaluated_at: Option<String>,
    /// Read only to tell an admission record; left raw, so a line whose `from` or
    /// `violations` are something else reads as before.
    #[serde(borrow)]
    from: Option<&'a RawValue>,
    #[serde(borrow)]
    violations: Option<&'a RawValue>,
}

impl RecordLine<'_> {
    fn kind(&self) -> RecordKind {
        let from = self
            .from
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
        let violations = self
            .violations
            .and_then(|raw| serde_json::from_str::<Vec<String>>(raw.get()).ok());
        match (from, violations) {
            (Some(from), Some(violations)) => RecordKind::of(&from, &violations),
            _ => RecordKind::Promotion,
        }
    }
}

/// Split one line into its request and recorded time. Only a line that is a record
/// can fail here (a `request` that is not an object, a bad or non-string
/// `evaluatedAt`, a duplicate `request`); anything else is returned whole for the
/// request parser to judge and explain.
pub fn from_line(line: &[u8]) -> Result<Recorded<'_>, String> {
    let bare = Recorded {
        request: Cow::Borrowed(line),
        at: None,
        kind: RecordKind::Promotion,
    };
    // Cheap pre-check: a record starts as an object and mentions the key somewhere (an
    // admission record stored without its request mentions its `from` prefix instead).
    let first = line.iter().find(|b| !b.is_ascii_whitespace());
    let mentions =
        contains(line, b"\"request\"") || contains(line, ADMISSION_FROM_PREFIX.as_bytes());
    if first != Some(&b'{') || !mentions {
        return Ok(bare);
    }
    let record = match serde_json::from_slice::<RecordLine<'_>>(line) {
        Ok(record) => record,
        // Not JSON at all: the request parser gives the precise error with line and
        // column.
        Err(e) if e.is_syntax() || e.is_eof() => return Ok(bare),
        // A JSON object with a top-level `request` whose fields do not read (a
        // duplicate `request`, an `evaluatedAt` that is not a string): a record gone
        // wrong, never to be taken for a bare request, whatever the schema would say.
        Err(e) if is_object_with_request(line) => {
            return Err(format!("a record that cannot be read: {e}"))
        }
        Err(_) => return Ok(bare),
    };
    if record.kind() == RecordKind::Admission {
        return Ok(Recorded {
            kind: RecordKind::Admission,
            ..bare
        });
    }
    let Some(request) = record.request else {
        return Ok(bare);
    };
    if !request.get().trim_start().starts_with('{') {
        return Err("record field `request` is not an object".to_string());
    }
    let at = record
        .evaluated_at
        .map(|t| parse_time(&t).map_err(|e| format!("record field `evaluatedAt`: {e}")))
        .transpose()?;
    Ok(Recorded {
        request: Cow::Owned(request.get().as_bytes().to_vec()),
        at,
        kind: RecordKind::Promotion,
    })
}

/// Whether `line` is a JSON object with a top-level `request` key (the slow check,
/// only for lines the record reader refused).
fn is_object_with_request(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
        .is_ok_and(|m| m.contains_key("request"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
    fn bare_request_is_returned_whole() {
        let line = br#"{"apiVersion":"promo-policy.dev/v1","id":"r1"}"#;
        let r = from_line(line).unwrap();
        assert_eq!(&*r.request, &line[..]);
        assert_eq!(r.at, None);
    }

    #[test]
    fn record_yields_its_request_and_time() {
        let line =
            br#"{"seq":3,"evaluatedAt":"2026-11-26T18:00:00Z","request":{"id":"r1"},"hash":"ab"}"#;
        let r = from_line(line).unwrap();
        assert_eq!(&*r.request, br#"{"id":"r1"}"#);
        assert_eq!(
            r.at,
            Some(parse_time("2026-11-26T18:00:00Z").unwrap()),
            "the record's own time"
        );
    }

    #[test]
    fn record_without_time_has_none() {
        let r = from_line(br#"{"request":{"id":"r1"}}"#).unwrap();
        assert_eq!(r.at, None);
    }

    #[test]
    fn bad_records_are_named() {
        let e = from_line(br#"{"request":"masked"}"#).unwrap_err();
        assert!(e.contains("`request` is not an object"), "{e}");
        let e = from_line(br#"{"request":{},"evaluatedAt":"yesterday"}"#).unwrap_err();
        assert!(e.contains("`evaluatedAt`"), "{e}");
    }

    #[test]
    fn admission_records_are_told_apart_with_or_without_their_request() {
        let with = br#"{"seq":1,"from":"namespace:shop","to":"prod","allowed":false,"violations":["admission.dry_run","admission.refused"],"evaluatedAt":"2026-11-26T18:00:00Z","request":{"admission":{"uid":"u"}}}"#;
        assert_eq!(from_line(with).unwrap().kind, RecordKind::Admission);
        let without = br#"{"seq":2,"from":"namespace:shop","violations":["admission.break_glass"],"evaluatedAt":"2026-11-26T18:00:00Z"}"#;
        assert_eq!(from_line(without).unwrap().kind, RecordKind::Admission);
        // A promotion record, and records whose marks do not both hold, are promotions.
        for line in [
            &br#"{"from":"staging","violations":["approvals.min_count"],"request":{"id":"r1"}}"#[..],
            br#"{"from":"staging","violations":["admission.dry_run"],"request":{"id":"r1"}}"#,
            br#"{"from":"namespace:shop","violations":"admission.dry_run","request":{"id":"r1"}}"#,
            br#"{"from":7,"violations":["admission.dry_run"],"request":{"id":"r1"}}"#,
        ] {
            let r = from_line(line).unwrap();
            assert_eq!(
                r.kind,
                RecordKind::Promotion,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(&*r.request, br#"{"id":"r1"}"#);
        }
    }

    #[test]
    fn unparseable_lines_go_to_the_request_parser() {
        for line in [&b"not json"[..], b"", br#"["request"]"#, br#"{"request": "#] {
            assert_eq!(&*from_line(line).unwrap().request, line);
        }
    }

    #[test]
    fn a_record_that_does_not_read_is_an_error_not_a_bare_request() {
        for line in [
            &br#"{"request":{},"request":{}}"#[..],
            br#"{"request":{"id":"r"},"evaluatedAt":1764180000}"#,
        ] {
            let e = from_line(line).unwrap_err();
            assert!(e.contains("a record that cannot be read"), "{e}");
        }
    }
}
