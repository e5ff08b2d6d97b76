//! in-toto Statements (v1 and v0.1) and subject digest matching; it must never check signatures
//! or decide trust, only read the shape of an already-signed payload.
//!
//! Spec: <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>. Unknown
//! fields are ignored, as the spec asks of consumers; digest sets may use any algorithm name.

use serde_json::{Map, Value};

use crate::attest::AttestError;
use crate::digest::DigestSet;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of an in-toto Statement v0.1, still emitted by many tools.
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";

/// Which Statement layer version a payload declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementVersion {
    /// `https://in-toto.io/Statement/v1`.
    V1,
    /// `https://in-toto.io/Statement/v0.1`.
    V01,
}

/// One entry of a statement's `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `name`, when present.
    pub name: Option<String>,
    /// `digest`: algorithm -> hex value, algorithms as written (sha256, sha512, gitCommit...).
    pub digest: DigestSet,
}

/// A parsed in-toto Statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The declared `_type`.
    pub version: StatementVersion,
    /// The subjects, parsed.
    pub subject: Vec<Subject>,
    /// The `subject` array exactly as given (unknown fields kept), for policy to read.
    pub subject_json: Value,
    /// `predicateType`.
    pub predicate_type: String,
    /// `predicate` as given; `null` when absent.
    pub predicate: Value,
}

/// Parse a signed payload as strictly as a request: a duplicate key is refused, since
/// two readers taking different copies of `subject` or `predicate` could see two
/// different statements under one signature; limits on size, depth and strings hold.
pub fn parse_payload(payload: &[u8]) -> Result<Value, AttestError> {
    crate::request::parse_strict(payload).map_err(|e| AttestError::Statement {
        reason: format!("payload is not JSON we accept ({e})"),
    })
}

impl Statement {
    /// Parses a DSSE payload as a Statement.
    pub fn from_slice(payload: &[u8]) -> Result<Statement, AttestError> {
        Statement::from_value(&parse_payload(payload)?)
    }

    /// Reads a Statement from JSON.
    pub fn from_value(value: &Value) -> Result<Statement, AttestError> {
        Statement::read(value, true)
    }

    /// Checks `value` has a Statement's shape, exactly as [`Statement::from_value`] does,
    /// without copying its predicate (a signer checks before it signs); its version.
    pub fn check(value: &Value) -> Result<StatementVersion, AttestError> {
        Statement::read(value, false).map(|s| s.version)
    }

    /// The one reader: `keep_predicate` false leaves `predicate` null once checked.
    fn read(value: &Value, keep_predicate: bool) -> Result<Statement, AttestError> {
        let bad = |reason: String| AttestError::Statement { reason };
        let obj = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let version = match obj.get("_type") {
            Some(Value::String(t)) if t == STATEMENT_V1 => StatementVersion::V1,
            Some(Value::String(t)) if t == STATEMENT_V01 => StatementVersion::V01,
            Some(Value::String(t)) => {
                return Err(bad(format!(
                    "`_type` is `{t}`, expected `{STATEMENT_V1}` or `{STATEMENT_V01}`"
                )))
            }
            Some(_) => return Err(bad("`_type` is not a string".into())),
            None => return Err(bad("`_type` is missing".into())),
        };
        let predicate_type = match obj.get("predicateType") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(Value::String(_)) => return Err(bad("`predicateType` is empty".into())),
            Some(_) => return Err(bad("`predicateType` is not a string".into())),
            None => return Err(bad("`predicateType` is missing".into())),
        };
        let predicate = match obj.get("predicate") {
            None | Some(Value::Null) => Value::Null,
            Some(p @ Value::Object(_)) if keep_predicate => p.clone(),
            Some(Value::Object(_)) => Value::Null,
            Some(_) => return Err(bad("`predicate` is not an object".into())),
        };
        let subject_json = obj
            .get("subject")
            .cloned()
            .ok_or_else(|| bad("`subject` is missing".into()))?;
        let entries = subject_json
            .as_array()
            .ok_or_else(|| bad("`subject` is not an array".into()))?;
        if entries.is_empty() {
            return Err(bad("`subject` is empty".into()));
        }
        let subject = entries
            .iter()
            .enumerate()
            .map(|(i, s)| parse_subject(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Statement {
            version,
            subject,
            subject_json,
            predicate_type,
            predicate,
        })
    }

    /// Whether some subject names the artifact: see [`DigestSet::matches`].
    pub fn subject_matches(&self, artifact: &DigestSet) -> bool {
        self.subject.iter().any(|s| s.digest.matches(artifact))
    }
}

fn parse_subject(i: usize, value: &Value) -> Result<Subject, AttestError> {
    let bad = |reason: String| AttestError::Statement { reason };
    let obj: &Map<String, Value> = value
        .as_object()
        .ok_or_else(|| bad(format!("`subject[{i}]` is not an object")))?;
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return Err(bad(format!("`subject[{i}].name` is not a string"))),
    };
    let digest_obj = match obj.get("digest") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(bad(format!("`subject[{i}].digest` is not an object"))),
        None => return Err(bad(format!("`subject[{i}].digest` is missing"))),
    };
    if digest_obj.is_empty() {
        return Err(bad(format!("`subject[{i}].digest` is empty")));
    }
    let mut digest = DigestSet::default();
    for (alg, v) in digest_obj {
        let v = v
            .as_str()
            .ok_or_else(|| bad(format!("`subject[{i}].digest.{alg}` is not a string")))?;
        digest.insert(alg.as_str(), v);
    }
    Ok(Subject { name, digest })
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
    use serde_json::json;

    #[test]
    fn v1_and_v01_parse_with_unknown_fields_and_odd_digest_algorithms() {
        for t in [STATEMENT_V1, STATEMENT_V01] {
            let st = Statement::from_value(&json!({
                "_type": t,
                "subject": [{"name": "img", "digest": {"sha256": "AB", "dirHash": "x1", "gitCommit": "c0ffee"}, "annotations": {"a": 1}}],
                "predicateType": "https://example.com/p/v1",
                "predicate": {"k": "v"},
                "futureField": true
            }))
            .unwrap();
            assert_eq!(st.predicate_type, "https://example.com/p/v1");
            assert_eq!(st.subject[0].digest.len(), 3);
            assert_eq!(
                st.subject_json[0]["annotations"]["a"], 1,
                "unknown fields kept"
            );
            assert_eq!(st.version == StatementVersion::V1, t == STATEMENT_V1);
        }
    }

    #[test]
    fn a_payload_with_a_duplicate_key_is_refused() {
        // Two `subject`s: a lenient reader keeps the last, another the first.
        let payload = br#"{"_type": "https://in-toto.io/Statement/v1", "predicateType": "p",
            "subject": [{"digest": {"sha256": "aa"}}], "subject": [{"digest": {"sha256": "bb"}}]}"#;
        let err = Statement::from_slice(payload).unwrap_err().to_string();
        assert!(err.contains("duplicate"), "{err}");
        assert!(Statement::from_slice(b"{\"_type\": 1} trailing").is_err());
    }

    #[test]
    fn predicate_may_be_absent() {
        let st = Statement::from_value(&json!({
            "_type": STATEMENT_V1, "subject": [{"digest": {"sha256": "ab"}}], "predicateType": "p"
        }))
        .unwrap();
        assert_eq!(st.predicate, Value::Null);
        assert_eq!(st.subject[0].name, None);
    }

    #[test]
    fn shape_errors_name_the_field() {
        let cases = [
            (json!([]), "not a JSON object"),
            (json!({"subject": [], "predicateType": "p"}), "`_type` is missing"),
            (json!({"_type": "https://in-toto.io/Statement/v2"}), "`_type` is `https://in-toto.io/Statement/v2`, expected `https://in-toto.io/Statement/v1` or `https://in-toto.io/Statement/v0.1`"),
            (json!({"_type": STATEMENT_V1, "subject": []}), "`predicateType` is missing"),
            (json!({"_type": STATEMENT_V1, "predicateType": ""}), "`predicateType` is empty"),
            (json!({"_type": STATEMENT_V1, "predicateType": "p"}), "`subject` is missing"),
            (json!({"_type": STATEMENT_V1, "predicateType": "p", "subject": []}), "`subject` is empty"),
            (json!({"_type": STATEMENT_V1, "predicateType": "p", "subject": {}}), "`subject` is not an array"),
            (json!({"_type": STATEMENT_V1, "predicateType": "p", "subject": [{"name": "a"}]}), "`subject[0].digest` is missing"),
            (json!({"_type": STATEMENT_V1, "predicateType": "p", "subject": [{"digest": {}}]}), "`subject[0].digest` is empty"),
            (json!({"_type": STATEMENT_V1, "predicateType": "p", "subject": [{"digest": {"sha256": 1}}]}), "`subject[0].digest.sha256` is not a string"),
            (json!({"_type": STATEMENT_V1, "predicateType": "p", "subject": [{"digest": {"sha256": "a"}}], "predicate": []}), "`predicate` is not an object"),
        ];
        for (value, want) in cases {
            let err = Statement::from_value(&value).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("payload is not an in-toto statement: {want}"),
                "{value}"
            );
            // The signer's check refuses exactly what the reader refuses, saying the same.
            let err = Statement::check(&value).unwrap_err().to_string();
            assert_eq!(err, format!("payload is not an in-toto statement: {want}"));
        }
        let err = Statement::from_slice(b"\xff\xfe").unwrap_err().to_string();
        assert!(
            err.starts_with("payload is not an in-toto statement: payload is not JSON"),
            "{err}"
        );
    }
}
