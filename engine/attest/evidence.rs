//! Signed process evidence (CONTRACT §2d): reads approval, test-result and SLO-snapshot statements into typed facts, and gathers the verified ones about the artifact into `input.verified.evidence`; a predicate that does not have its documented shape is a rejected attestation, never a partial fact.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::attest::verify::VerifiedAttestation;
use crate::attest::AttestError;

/// An approval or rejection by a person, signed by the approval system.
pub const APPROVAL_V1: &str = "https://promo-policy.dev/approval/v1";
/// An in-toto test result: a check's outcome, signed by the CI or canary system.
pub const TEST_RESULT_V01: &str = "https://in-toto.io/attestation/test-result/v0.1";
/// An SLO snapshot, signed by the monitoring bridge.
pub const SLO_SNAPSHOT_V1: &str = "https://promo-policy.dev/slo-snapshot/v1";

/// One normalised fact from a signed evidence statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fact {
    /// `approval/v1`: the request's `approvals[]` shape.
    Approval(Map<String, Value>),
    /// `test-result/v0.1`: the request's `checks[]` shape.
    Check(Map<String, Value>),
    /// `slo-snapshot/v1`: the request's `slo` shape, plus where it was measured.
    Slo(Map<String, Value>),
}

/// `input.verified.evidence`: the verified facts about this artifact, each with the
/// index of its attestation and its signer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Signed approvals and rejections.
    pub approvals: Vec<Value>,
    /// Signed check results.
    pub checks: Vec<Value>,
    /// The newest signed SLO snapshot (by `measuredAt`), if any.
    pub slo: Option<Value>,
}

impl Evidence {
    /// Gathers the evidence of verified attestations whose subject is the artifact (a
    /// statement about another artifact vouches for nothing here).
    pub fn gather(attestations: &[VerifiedAttestation]) -> Evidence {
        let mut out = Evidence::default();
        for a in attestations.iter().filter(|a| a.subject_matches) {
            let Some(fact) = &a.evidence else { continue };
            let with_signer = |fields: &Map<String, Value>| {
                let mut item = fields.clone();
                item.insert("index".into(), Value::from(a.index));
                item.insert(
                    "signer".into(),
                    serde_json::to_value(&a.signer).unwrap_or(Value::Null),
                );
                Value::Object(item)
            };
            match fact {
                Fact::Approval(f) => out.approvals.push(with_signer(f)),
                Fact::Check(f) => out.checks.push(with_signer(f)),
                Fact::Slo(f) => {
                    let newer = match &out.slo {
                        None => true,
                        Some(old) => measured_at(old) < f.get("measuredAt").and_then(Value::as_str),
                    };
                    if newer {
                        out.slo = Some(with_signer(f));
                    }
                }
            }
        }
        out
    }
}

fn measured_at(v: &Value) -> Option<&str> {
    v.get("measuredAt").and_then(Value::as_str)
}

/// The evidence fact of a statement, `Ok(None)` for predicate types that are not
/// evidence, an error when an evidence predicate lacks its shape.
pub fn from_predicate(
    predicate_type: &str,
    predicate: &Value,
) -> Result<Option<Fact>, AttestError> {
    let shape = |kind: &str, reason: String| AttestError::Statement {
        reason: format!("{kind} predicate: {reason}"),
    };
    match predicate_type {
        APPROVAL_V1 => approval(predicate)
            .map(|f| Some(Fact::Approval(f)))
            .map_err(|r| shape("approval", r)),
        TEST_RESULT_V01 => check(predicate)
            .map(|f| f.map(Fact::Check))
            .map_err(|r| shape("test-result", r)),
        SLO_SNAPSHOT_V1 => slo(predicate)
            .map(|f| Some(Fact::Slo(f)))
            .map_err(|r| shape("slo-snapshot", r)),
        _ => Ok(None),
    }
}

fn text<'a>(p: &'a Value, field: &str) -> Result<&'a str, String> {
    match p.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(format!("`{field}` must be a non-empty string")),
    }
}

fn time(p: &Value, field: &str) -> Result<String, String> {
    let t = text(p, field)?;
    crate::attest::slsa::normalize_timestamp(t)
        .ok_or_else(|| format!("`{field}` is not an RFC 3339 time: `{t}`"))
}

fn number(p: &Value, field: &str) -> Result<Option<f64>, String> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("`{field}` must be a number")),
    }
}

fn approval(p: &Value) -> Result<Map<String, Value>, String> {
    let decision = text(p, "decision")?;
    if !matches!(decision, "approved" | "rejected") {
        return Err(format!(
            "`decision` must be `approved` or `rejected`, not `{decision}`"
        ));
    }
    let roles = match p.get("roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|r| r.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or("`roles` entries must be non-empty strings")?,
        Some(_) => return Err("`roles` must be an array of strings".into()),
    };
    let mut f = Map::new();
    f.insert("approver".into(), text(p, "approver")?.into());
    f.insert("roles".into(), roles.into());
    f.insert("decision".into(), decision.into());
    f.insert("at".into(), time(p, "at")?.into());
    f.insert("from".into(), text(p, "from")?.into());
    f.insert("to".into(), text(p, "to")?.into());
    if let Some(ticket) = p
        .get("change")
        .and_then(|c| c.get("ticket"))
        .and_then(Value::as_str)
    {
        f.insert("ticket".into(), ticket.into());
    }
    Ok(f)
}

/// A test result is a check only when it names one: `configuration[0].name` and
/// `.annotations.environment` (promo-policy's convention on the standard predicate). A
/// result without them is still a verified attestation, just not a check; a `result`
/// outside the standard's three values is malformed.
fn check(p: &Value) -> Result<Option<Map<String, Value>>, String> {
    let status = match text(p, "result")? {
        "PASSED" => "passed",
        "WARNED" => "warned",
        "FAILED" => "failed",
        other => {
            return Err(format!(
                "`result` must be PASSED, WARNED or FAILED, not `{other}`"
            ))
        }
    };
    let Some(config) = p.get("configuration").and_then(|c| c.get(0)) else {
        return Ok(None);
    };
    let annotations = config.get("annotations").unwrap_or(&Value::Null);
    let (Ok(name), Ok(environment)) = (text(config, "name"), text(annotations, "environment"))
    else {
        return Ok(None);
    };
    let mut f = Map::new();
    f.insert("name".into(), name.into());
    f.insert("status".into(), status.into());
    f.insert("environment".into(), environment.into());
    if annotations.get("at").is_some() {
        f.insert(
            "at".into(),
            time(annotations, "at")
                .map_err(|e| format!("configuration[0].annotations: {e}"))?
                .into(),
        );
    }
    if let Some(url) = p.get("url").and_then(Value::as_str) {
        f.insert("url".into(), url.into());
    }
    Ok(Some(f))
}

fn slo(p: &Value) -> Result<Map<String, Value>, String> {
    let mut f = Map::new();
    f.insert("service".into(), text(p, "service")?.into());
    f.insert("measuredAt".into(), time(p, "measuredAt")?.into());
    for field in ["objective", "errorBudgetRemaining"] {
        f.insert(
            field.into(),
            number(p, field)?.map_or(Value::Null, Value::from),
        );
    }
    f.insert(
        "window".into(),
        p.get("window")
            .and_then(Value::as_str)
            .map_or(Value::Null, Value::from),
    );
    let mut burn = Map::new();
    match p.get("burnRates") {
        None | Some(Value::Null) => {}
        Some(Value::Object(rates)) => {
            for (window, rate) in rates {
                // A figure that could not be measured stays null: inconclusive, never 0.
                let rate = match rate {
                    Value::Null => Value::Null,
                    v => Value::from(
                        v.as_f64()
                            .filter(|f| f.is_finite() && *f >= 0.0)
                            .ok_or_else(|| {
                                format!("`burnRates.{window}` must be a number >= 0 or null")
                            })?,
                    ),
                };
                burn.insert(window.clone(), rate);
            }
        }
        Some(_) => return Err("`burnRates` must be an object".into()),
    }
    f.insert("burnRates".into(), Value::Object(burn));
    if let Some(source) = p.get("source") {
        f.insert("source".into(), source.clone());
    }
    Ok(f)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_parses_into_the_request_shape() {
        let Some(Fact::Approval(a)) = from_predicate(APPROVAL_V1, &json!({
            "approver": "alice", "roles": ["release-manager"], "decision": "approved",
            "at": "2026-11-26T17:30:00Z", "from": "staging", "to": "prod", "change": {"ticket": "CHG-1"}})).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(
            Value::Object(a),
            json!({"approver": "alice", "roles": ["release-manager"],
            "decision": "approved", "at": "2026-11-26T17:30:00Z", "from": "staging", "to": "prod", "ticket": "CHG-1"})
        );
        let Some(Fact::Check(c)) = from_predicate(TEST_RESULT_V01, &json!({
            "result": "PASSED", "configuration": [{"name": "smoke", "annotations": {"environment": "staging"}}],
            "url": "https://ci.example.com/runs/1", "passedTests": ["a"]})).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(c["status"], "passed");
        assert_eq!(c["environment"], "staging");
        let Some(Fact::Slo(s)) = from_predicate(SLO_SNAPSHOT_V1, &json!({
            "service": "payments-api", "objective": 0.999, "window": "30d", "errorBudgetRemaining": 0.6,
            "burnRates": {"1h": 0.5, "6h": null}, "measuredAt": "2026-11-26T17:00:00Z"})).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(s["burnRates"], json!({"1h": 0.5, "6h": null}));
        // A standard test result that names no check is not a check (and not an error).
        assert!(
            from_predicate(TEST_RESULT_V01, &json!({"result": "FAILED"}))
                .unwrap()
                .is_none()
        );
        assert!(from_predicate("https://slsa.dev/provenance/v1", &json!({}))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_predicate_without_its_shape_is_an_error_naming_the_field() {
        for (t, p, want) in [
            (
                APPROVAL_V1,
                json!({"approver": "a", "decision": "maybe"}),
                "`decision` must be `approved` or `rejected`",
            ),
            (
                APPROVAL_V1,
                json!({"approver": "a", "decision": "approved", "at": "yesterday", "from": "s", "to": "p"}),
                "`at` is not an RFC 3339 time",
            ),
            (
                TEST_RESULT_V01,
                json!({"result": "OK"}),
                "PASSED, WARNED or FAILED",
            ),
            (
                SLO_SNAPSHOT_V1,
                json!({"service": "s", "measuredAt": "2026-11-26T17:00:00Z", "burnRates": {"1h": -1}}),
                "`burnRates.1h`",
            ),
        ] {
            let e = from_predicate(t, &p).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn verified_evidence_about_the_artifact_is_gathered_with_its_signer() {
        use crate::attest::keys::SigningKey;
        use crate::attest::trust::{TrustStore, TrustedKey};
        use crate::attest::verify::verify_attestations;
        use crate::digest::DigestSet;
        let key = SigningKey::ed25519_from_seed(&[9; 32]);
        let store = TrustStore::new(
            vec![TrustedKey::new(
                "bridge",
                key.public_key(),
                &[APPROVAL_V1, TEST_RESULT_V01, SLO_SNAPSHOT_V1],
                &[],
                None,
            )],
            1,
        )
        .unwrap();
        let ours = "ab".repeat(32);
        let sign = |digest: &str, predicate_type: &str, predicate: Value| {
            let statement = json!({"_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "a", "digest": {"sha256": digest}}],
                "predicateType": predicate_type, "predicate": predicate});
            crate::sign::sign_statement(&key, &statement).unwrap()
        };
        let slo = |at: &str, budget: f64| json!({"service": "s", "measuredAt": at, "errorBudgetRemaining": budget, "burnRates": {}});
        let atts = [
            sign(
                &ours,
                APPROVAL_V1,
                json!({"approver": "alice", "decision": "approved", "at": "2026-11-26T17:30:00Z", "from": "staging", "to": "prod"}),
            ),
            sign(
                &"cd".repeat(32),
                APPROVAL_V1,
                json!({"approver": "mallory", "decision": "approved", "at": "2026-11-26T17:30:00Z", "from": "staging", "to": "prod"}),
            ),
            sign(&ours, SLO_SNAPSHOT_V1, slo("2026-11-26T17:00:00Z", 0.5)),
            sign(&ours, SLO_SNAPSHOT_V1, slo("2026-11-26T17:30:00Z", 0.4)),
            sign(&ours, SLO_SNAPSHOT_V1, slo("2026-11-26T16:00:00Z", 0.9)),
            sign(
                &ours,
                APPROVAL_V1,
                json!({"approver": "bob", "decision": "perhaps"}),
            ),
        ];
        let digest = DigestSet::sha256_hex(ours);
        let v = verify_attestations(&store, &atts, &digest, "prod");
        assert_eq!(
            v.evidence.approvals.len(),
            1,
            "mallory's approval is about another artifact"
        );
        assert_eq!(v.evidence.approvals[0]["approver"], "alice");
        assert_eq!(
            v.evidence.approvals[0]["signer"],
            json!({"kind": "key", "id": "bridge"})
        );
        assert_eq!(v.evidence.approvals[0]["index"], 0);
        assert_eq!(
            v.evidence.slo.as_ref().unwrap()["errorBudgetRemaining"],
            0.4,
            "the newest snapshot"
        );
        assert_eq!(v.rejected.len(), 1);
        assert!(
            v.rejected[0]
                .reason
                .contains("approval predicate: `decision`"),
            "{:?}",
            v.rejected
        );
    }

    #[test]
    fn an_approval_system_speaks_only_for_the_approvers_it_is_granted() {
        use crate::attest::keys::SigningKey;
        use crate::attest::trust::TrustStore;
        use crate::attest::verify::verify_attestations;
        use crate::digest::DigestSet;
        let key = SigningKey::ed25519_from_seed(&[11; 32]);
        let store = TrustStore::from_json(
            &json!({"keys": [{"id": "bot", "publicKey": key.public_key().to_pem(),
                "predicateTypes": [APPROVAL_V1], "approvers": ["Alice", "carol"]}]}),
            std::path::Path::new("."),
        )
        .unwrap();
        let ours = "ab".repeat(32);
        let approval = |who: &str| {
            let statement = json!({"_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "a", "digest": {"sha256": ours}}],
                "predicateType": APPROVAL_V1,
                "predicate": {"approver": who, "decision": "approved",
                    "at": "2026-11-26T17:30:00Z", "from": "staging", "to": "prod"}});
            crate::sign::sign_statement(&key, &statement).unwrap()
        };
        // "ａｌｉｃｅ" is Alice by identity key; mallory is nobody the bot may speak for.
        let atts = [
            approval("ａｌｉｃｅ"),
            approval("carol"),
            approval("mallory"),
        ];
        let digest = DigestSet::sha256_hex(ours.clone());
        let v = verify_attestations(&store, &atts, &digest, "prod");
        let approvers: Vec<&str> = v
            .evidence
            .approvals
            .iter()
            .map(|a| a["approver"].as_str().unwrap())
            .collect();
        assert_eq!(approvers, ["ａｌｉｃｅ", "carol"]);
        assert_eq!(v.rejected.len(), 1);
        assert_eq!(v.rejected[0].index, 2);
        assert!(
            v.rejected[0]
                .reason
                .contains("key `bot` is not trusted to speak for approver `mallory`"),
            "{:?}",
            v.rejected
        );
    }
}
