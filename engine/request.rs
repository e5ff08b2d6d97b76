//! The `promo-policy/v1` promotion request: strict parsing under limits, JSON Schema
//! validation and the typed view; it never decides anything about the request's merits.

use std::fmt;
use std::sync::OnceLock;

use crate::digest::DigestSet;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest request body accepted, in bytes. A request with a dozen attestations is
/// well under 200 KiB; 1 MiB leaves room without letting one request hog a worker.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Deepest nesting of arrays and objects accepted. Real requests nest about 8 deep
/// (attestation predicates aside, which travel base64-encoded); 64 stops stack and
/// CPU abuse long before serde_json's own limit of 128.
pub const MAX_DEPTH: usize = 64;

/// Longest single string accepted, in bytes. Base64 attestation payloads are the
/// longest legitimate strings (SLSA provenance is rarely over 64 KiB).
pub const MAX_STRING_BYTES: usize = 512 * 1024;

/// The JSON Schema (2020-12) every request must satisfy, shipped in the binary.
pub const SCHEMA_JSON: &str = include_str!("schema/request.v1.json");

/// Why a request was refused before any policy ran.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The body is larger than the limit.
    #[error("request body is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Size of the body.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// The body is not valid UTF-8 JSON (or breaks a parsing limit).
    #[error("malformed JSON at line {line}, column {column}: {reason}")]
    Malformed {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the parser expected.
        reason: String,
    },
    /// The JSON breaks the request schema.
    #[error("{}", format_violations(.0))]
    Schema(Vec<SchemaViolation>),
}

/// One schema violation: where (a JSON pointer) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaViolation {
    /// JSON pointer of the offending field (`""` is the whole request).
    pub pointer: String,
    /// What was expected there.
    pub message: String,
}

fn format_violations(v: &[SchemaViolation]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|s| {
            let at = if s.pointer.is_empty() {
                "/"
            } else {
                &s.pointer
            };
            format!("at `{at}`: {}", s.message)
        })
        .collect();
    format!(
        "request does not match the promo-policy/v1 schema: {}",
        parts.join("; ")
    )
}

impl RequestError {
    /// The stable violation id this error becomes when it must be a deny (batch, HTTP).
    pub fn violation_id(&self) -> &'static str {
        "request.invalid"
    }
}

/// A request that passed every check: the raw JSON (what policy sees as
/// `input.request`) plus the typed fields the engine itself needs.
#[derive(Debug, Clone)]
pub struct PromotionRequest {
    /// The request exactly as given (after duplicate-key and limit checks).
    pub raw: Value,
    /// The typed view of the fields the engine reads.
    pub typed: RequestFields,
}

/// The fields of a request that the engine reads (policy reads the raw JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestFields {
    /// Caller-chosen request id.
    pub id: String,
    /// The artifact to promote.
    pub artifact: Artifact,
    /// Source environment.
    pub from: String,
    /// Target environment.
    pub to: String,
    /// DSSE envelopes carried as claims.
    #[serde(default)]
    pub attestations: Vec<Value>,
    /// The caller's W3C `traceparent` (`request.trace`), when it sent one.
    #[serde(default)]
    pub trace: Option<String>,
}

/// The artifact being promoted.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Artifact {
    /// Repository or package name.
    pub name: String,
    /// in-toto DigestSet: algorithm -> hex.
    pub digest: DigestSet,
}

impl PromotionRequest {
    /// Parse and validate request bytes: size, UTF-8 JSON with no duplicate keys,
    /// depth and string limits, then the schema.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, RequestError> {
        let raw = parse_strict(bytes)?;
        Self::from_value(raw)
    }

    /// Validate an already-parsed JSON value (the HTTP face parses `{"input": ...}`
    /// with the same strict parser, then hands the inner value here).
    pub fn from_value(raw: Value) -> Result<Self, RequestError> {
        validate_schema(&raw)?;
        let typed = RequestFields::deserialize(&raw).map_err(|e| {
            // INVARIANT: the schema admits only what RequestFields can read, so this is
            // unreachable unless the two drift apart; still a refusal, never a panic.
            RequestError::Schema(vec![SchemaViolation {
                pointer: String::new(),
                message: format!("request fields could not be read: {e}"),
            }])
        })?;
        Ok(Self { raw, typed })
    }
}

/// Parse JSON bytes under the size, depth and string limits, refusing duplicate keys.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, RequestError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(RequestError::TooLarge {
            size: bytes.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let path = std::cell::RefCell::new(Vec::new());
    let value = StrictSeed {
        depth: 0,
        path: &path,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v))
    .map_err(|e| RequestError::Malformed {
        line: e.line(),
        column: e.column(),
        reason: strip_position(&e.to_string()),
    })?;
    Ok(value)
}

/// serde_json appends " at line L column C" to messages; we report those separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// One step of the path from the root to the value being parsed.
enum Seg {
    Key(String),
    Index(usize),
}

fn pointer(path: &[Seg]) -> String {
    let mut p = String::new();
    for seg in path {
        p.push('/');
        match seg {
            Seg::Key(k) => p.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Seg::Index(i) => p.push_str(&i.to_string()),
        }
    }
    if p.is_empty() {
        "/".to_string()
    } else {
        p
    }
}

/// A serde seed that builds a `serde_json::Value` while enforcing our limits.
struct StrictSeed<'p> {
    depth: usize,
    path: &'p std::cell::RefCell<Vec<Seg>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, but an overflowing literal like 1e999 must not
        // sneak in as infinity either.
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| {
                E::custom(format!(
                    "number at `{}` is not finite",
                    pointer(&self.path.borrow())
                ))
            })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.check_len(v.len())?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.check_len(v.len())?;
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.check_depth()?;
        let mut out = Vec::new();
        loop {
            self.path.borrow_mut().push(Seg::Index(out.len()));
            let item = seq.next_element_seed(StrictSeed {
                depth: self.depth + 1,
                path: self.path,
            })?;
            self.path.borrow_mut().pop();
            match item {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.check_depth()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.check_len(key.len())?;
            if out.contains_key(&key) {
                let mut at = pointer(&self.path.borrow());
                if at == "/" {
                    at.clear();
                }
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}` in the object at `{}`",
                    if at.is_empty() { "/" } else { &at }
                )));
            }
            self.path.borrow_mut().push(Seg::Key(key.clone()));
            let value = map.next_value_seed(StrictSeed {
                depth: self.depth + 1,
                path: self.path,
            })?;
            self.path.borrow_mut().pop();
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

impl StrictSeed<'_> {
    fn check_depth<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "nesting deeper than {MAX_DEPTH} levels at `{}`",
                pointer(&self.path.borrow())
            )));
        }
        Ok(())
    }
    fn check_len<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if len > MAX_STRING_BYTES {
            return Err(E::custom(format!(
                "string of {len} bytes at `{}` exceeds the limit of {MAX_STRING_BYTES} bytes",
                pointer(&self.path.borrow())
            )));
        }
        Ok(())
    }
}

/// A shipped JSON Schema (2020-12) compiled with `format` as an assertion, not an
/// annotation: "2026-13-40T99:00:00Z" is not a `date-time`. The request schema and the
/// bundle-config schema are both built here.
pub(crate) fn compile_schema(json: &str) -> Result<jsonschema::Validator, String> {
    let schema: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| e.to_string())
}

/// The compiled request schema, built once per process.
fn validator() -> Result<&'static jsonschema::Validator, RequestError> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| compile_schema(SCHEMA_JSON))
        .as_ref()
        .map_err(|e| {
            RequestError::Schema(vec![SchemaViolation {
                pointer: String::new(),
                message: format!("the shipped request schema does not compile: {e}"),
            }])
        })
}

/// Validate a JSON value against the request schema, reporting every violation.
pub fn validate_schema(value: &Value) -> Result<(), RequestError> {
    let validator = validator()?;
    if validator.is_valid(value) {
        return Ok(());
    }
    let mut violations: Vec<SchemaViolation> = validator
        .iter_errors(value)
        .map(|e| SchemaViolation {
            pointer: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect();
    violations.sort_by(|a, b| a.pointer.cmp(&b.pointer).then(a.message.cmp(&b.message)));
    violations.dedup();
    // A `oneOf` failure under a field repeats the same complaint per branch; a person
    // needs the first few, not forty.
    violations.truncate(8);
    Err(RequestError::Schema(violations))
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

    fn minimal() -> Value {
        serde_json::json!({
            "apiVersion": "promo-policy/v1",
            "kind": "PromotionRequest",
            "id": "req-1",
            "artifact": {"name": "registry.example.com/a", "digest": {"sha256": "ab"}},
            "from": "dev",
            "to": "staging",
            "change": {"type": "app", "author": "bob"}
        })
    }

    fn schema_err(v: Value) -> Vec<SchemaViolation> {
        match PromotionRequest::from_value(v) {
            Err(RequestError::Schema(s)) => s,
            other => panic!("expected a schema error, got {other:?}"),
        }
    }

    #[test]
    fn minimal_request_is_accepted() {
        let r = PromotionRequest::from_value(minimal()).unwrap();
        assert_eq!(r.typed.to, "staging");
        assert_eq!(r.typed.artifact.digest.sha256().unwrap_or_default(), "ab");
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_pointer() {
        let body = br#"{"id":"a","artifact":{"name":"x","name":"y"}}"#;
        let err = parse_strict(body).unwrap_err().to_string();
        assert!(err.contains("duplicate key `name`"), "{err}");
        assert!(err.contains("`/artifact`"), "{err}");
    }

    #[test]
    fn duplicate_keys_at_the_top_are_refused() {
        let err = parse_strict(br#"{"to":"dev","to":"prod"}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key `to`"), "{err}");
    }

    #[test]
    fn depth_limit_names_the_place() {
        let body = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = parse_strict(body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("nesting deeper than 64"), "{err}");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_strict(ok.as_bytes()).is_ok());
    }

    #[test]
    fn body_size_limit() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(
            parse_strict(&body),
            Err(RequestError::TooLarge { .. })
        ));
    }

    #[test]
    fn string_limit() {
        let body = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_STRING_BYTES + 1));
        let err = parse_strict(body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("at `/a`"), "{err}");
    }

    #[test]
    fn overflowing_number_is_refused() {
        assert!(parse_strict(br#"{"a": 1e999}"#).is_err());
        assert!(parse_strict(b"NaN").is_err());
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let err = parse_strict(b"{\n \"a\": }").unwrap_err();
        match err {
            RequestError::Malformed { line, .. } => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_top_level_field_is_named() {
        let mut v = minimal();
        v["colour"] = "blue".into();
        let errs = schema_err(v);
        assert!(errs[0].message.contains("colour"), "{errs:?}");
    }

    #[test]
    fn negative_burn_rate_is_refused_with_pointer() {
        let mut v = minimal();
        v["slo"] = serde_json::json!({"burnRates": {"1h": -0.5}});
        let errs = schema_err(v);
        assert!(errs.iter().any(|e| e.pointer == "/slo"), "{errs:?}");
    }

    #[test]
    fn missing_field_and_wrong_type_are_named() {
        let mut v = minimal();
        v.as_object_mut().unwrap().remove("to");
        v["from"] = 3.into();
        let errs = schema_err(v);
        assert!(errs.iter().any(|e| e.pointer == "/from"), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.message.contains("\"to\"")),
            "{errs:?}"
        );
    }

    #[test]
    fn change_author_is_required() {
        // Without an author, self-approval could not be detected.
        let mut v = minimal();
        v["change"] = serde_json::json!({"type": "app"});
        let errs = schema_err(v);
        assert!(
            errs.iter()
                .any(|e| e.pointer == "/change" && e.message.contains("author")),
            "{errs:?}"
        );
    }

    #[test]
    fn null_slo_is_allowed() {
        let mut v = minimal();
        v["slo"] = Value::Null;
        assert!(PromotionRequest::from_value(v).is_ok());
    }

    #[test]
    fn impossible_calendar_times_are_refused_wherever_a_time_is() {
        for bad in [
            "2026-13-40T99:00:00Z",
            "2026-02-29T10:00:00Z",
            "2026-04-31T10:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T10:60:00Z",
            "2026-11-26T10:00:00+24:00",
            "2026-11-26T10:00:00+01:60",
            "0000-00-00T00:00:00Z",
        ] {
            let mut v = minimal();
            v["requestedAt"] = bad.into();
            v["approvals"] =
                serde_json::json!([{"approver": "a", "decision": "approved", "at": bad}]);
            let errs = schema_err(v);
            for at in ["/requestedAt", "/approvals/0/at"] {
                assert!(
                    errs.iter()
                        .any(|e| e.pointer == at && e.message.contains("date-time")),
                    "{bad} at {at}: {errs:?}"
                );
            }
        }
        for good in ["2024-02-29T23:59:59.999Z", "2026-11-26T10:00:00+05:30"] {
            let mut v = minimal();
            v["requestedAt"] = good.into();
            assert!(PromotionRequest::from_value(v).is_ok(), "{good}");
        }
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        for bad in [
            "bob\u{0}",
            "bob\n",
            "\u{1b}[2Jbob",
            "bob\u{85}",
            "bob\u{2028}",
        ] {
            let mut v = minimal();
            v["change"]["author"] = bad.into();
            v["approvals"] = serde_json::json!([{"approver": bad, "decision": "approved", "at": "2026-11-26T10:00:00Z"}]);
            let errs = schema_err(v);
            for at in ["/change/author", "/approvals/0/approver"] {
                assert!(
                    errs.iter().any(|e| e.pointer == at),
                    "{bad:?} at {at}: {errs:?}"
                );
            }
        }
        let mut v = minimal();
        v["change"]["author"] = "Zoë O'Brien-Łukasz 名前".into();
        assert!(PromotionRequest::from_value(v).is_ok());
    }
}
