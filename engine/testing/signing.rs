//! Signing the corpus (test support, feature `test-support`): the readable sources of a case's
//! attestations, the corpus keys and the test Sigstore instance that sign them, and the
//! evidence derived from a case's claims.

use std::path::Path;

use serde::Deserialize;

use super::{sigstore, CaseSpec};
use crate::input::parse_time;

/// File in a case directory listing the attestations to sign into its request.
pub const ATTESTATION_SOURCES: &str = "attestations.src.json";

/// One entry of `attestations.src.json`: which corpus key signs which statement, how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationSource {
    /// Key file stem under the keys directory, e.g. `builder-ed25519` (empty for a
    /// keyless source).
    #[serde(default)]
    pub key: String,
    /// Sign keyless instead: a Sigstore bundle from the test instance
    /// ([`sigstore::TestSigstore`], seed [`CORPUS_SIGSTORE_SEED`]).
    #[serde(default)]
    pub keyless: Option<KeylessSource>,
    /// The in-toto statement to sign.
    pub statement: serde_json::Value,
    /// How to sign: `pae` (DSSE, the default), `raw-payload` (the legacy mistake,
    /// which must never verify), or `tamper` (sign, then change the payload).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Encode with URL-safe base64 without padding (seen in real envelopes).
    #[serde(default)]
    pub url_safe: bool,
}

/// A keyless signer of a corpus statement: a GitHub Actions workflow of the test
/// instance's CA, logged in its test log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeylessSource {
    /// `owner/name` of the repository whose workflow signs.
    pub repo: String,
    /// The workflow file, e.g. `release.yml`.
    pub workflow: String,
    /// When it signed (the log's integrated time), RFC 3339.
    pub signed_at: String,
    /// The entry's index in the test log.
    pub log_index: u64,
}

/// The seed of the test Sigstore instance the corpus signs keyless statements with; its
/// root is `policies/roots/example-ci-test.json` (the shipped trust file's `example-ci`).
pub const CORPUS_SIGSTORE_SEED: u8 = 7;

fn sign_keyless(
    statement: &serde_json::Value,
    k: &KeylessSource,
) -> Result<serde_json::Value, String> {
    let at = parse_time(&k.signed_at)
        .map_err(|e| e.to_string())?
        .unix_timestamp();
    let instance = sigstore::TestSigstore::new(CORPUS_SIGSTORE_SEED)?;
    // Fulcio's certificate starts a minute before the signature and lasts ten minutes.
    let leaf = instance.leaf(&sigstore::LeafSpec::github_workflow(
        &k.repo,
        &k.workflow,
        at - 60,
    ))?;
    instance.bundle(
        statement,
        &leaf,
        &sigstore::LogOptions {
            integrated_time: at,
            log_index: k.log_index,
        },
    )
}

fn default_mode() -> String {
    "pae".to_string()
}

/// Sign a case's attestation sources with the corpus keys into DSSE envelopes, in
/// order. Deterministic (Ed25519 and RFC 6979 ECDSA), so the corpus can check that a
/// request's envelopes still match their readable sources.
pub fn sign_attestation_sources(
    sources: &[AttestationSource],
    keys_dir: &Path,
) -> Result<Vec<serde_json::Value>, String> {
    use crate::attest::dsse::{pae, INTOTO_PAYLOAD_TYPE};
    use crate::attest::keys::SigningKey;
    use base64::Engine as _;
    sources
        .iter()
        .map(|src| {
            if let Some(k) = &src.keyless {
                return sign_keyless(&src.statement, k);
            }
            let key_path = keys_dir.join(format!("{}.key", src.key));
            let pem = crate::fsio::read_capped_string(&key_path, crate::fsio::MAX_KEY_FILE_BYTES)
                .map_err(|e| e.to_string())?;
            let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| e.to_string())?;
            let mut payload = serde_json::to_vec(&src.statement).map_err(|e| e.to_string())?;
            let sig = match src.mode.as_str() {
                "pae" | "tamper" => key.sign(&pae(INTOTO_PAYLOAD_TYPE, &payload)),
                "raw-payload" => key.sign(&payload),
                other => return Err(format!("unknown mode `{other}` (pae, raw-payload, tamper)")),
            };
            if src.mode == "tamper" {
                // Swap a byte inside the JSON so it still parses but no longer matches.
                payload.extend_from_slice(b" ");
            }
            let b64 = |bytes: &[u8]| {
                if src.url_safe {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
                } else {
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                }
            };
            Ok(serde_json::json!({
                "payloadType": INTOTO_PAYLOAD_TYPE,
                "payload": b64(&payload),
                "signatures": [{"keyid": key.keyid(), "sig": b64(&sig)}],
            }))
        })
        .collect()
}

/// Read a case's attestation sources: its `attestations.src.json`, then the evidence its
/// `case.json` asks to derive from the request's claims (`signedEvidence`); `None` when
/// it has neither.
pub fn read_attestation_sources(case_dir: &Path) -> Result<Option<Vec<AttestationSource>>, String> {
    let read = |path: &Path| {
        crate::fsio::read_capped_string(path, crate::fsio::MAX_CONFIG_BYTES)
            .map_err(|e| e.to_string())
    };
    let path = case_dir.join(ATTESTATION_SOURCES);
    let mut sources: Option<Vec<AttestationSource>> = if path.is_file() {
        Some(
            serde_json::from_str(&read(&path)?)
                .map_err(|e| format!("`{}`: {e}", path.display()))?,
        )
    } else {
        None
    };
    let spec_path = case_dir.join("case.json");
    if spec_path.is_file() {
        let spec: CaseSpec = serde_json::from_str(&read(&spec_path)?)
            .map_err(|e| format!("`{}`: {e}", spec_path.display()))?;
        if !spec.signed_evidence.is_empty() {
            let req_path = case_dir.join("request.json");
            let request: serde_json::Value = serde_json::from_str(&read(&req_path)?)
                .map_err(|e| format!("`{}`: {e}", req_path.display()))?;
            let derived = derive_evidence_sources(&request, &spec.at, &spec.signed_evidence)?;
            sources.get_or_insert_with(Vec::new).extend(derived);
        }
    }
    Ok(sources)
}

/// The corpus's evidence keys: which key signs which kind of claim.
pub const EVIDENCE_KEYS: [(&str, &str); 3] = [
    ("approvals", "approval-bot-ed25519"),
    ("checks", "checks-ci-ed25519"),
    ("slo", "slo-bridge-ed25519"),
];

/// Signed evidence statements for a request's claims of the given kinds, as the systems
/// that know them would sign them: an approval per claimed approval (for this promotion),
/// a test result per claimed check run, an SLO snapshot measured five minutes before `at`
/// with the claimed figures. A claim that has no such statement (an approval time that is
/// not RFC 3339, a check that is pending, skipped or in error, a run without environment
/// or time) is left unsigned.
pub fn derive_evidence_sources(
    request: &serde_json::Value,
    at: &str,
    kinds: &[String],
) -> Result<Vec<AttestationSource>, String> {
    let subject = serde_json::json!([{"name": request["artifact"]["name"], "digest": request["artifact"]["digest"]}]);
    let mut out = Vec::new();
    for kind in kinds {
        let predicates = match kind.as_str() {
            "approvals" => approval_predicates(request),
            "checks" => test_result_predicates(request),
            "slo" => slo_predicates(request, at)?,
            other => {
                return Err(format!(
                    "signedEvidence: unknown kind `{other}` (approvals, checks, slo)"
                ))
            }
        };
        out.extend(
            predicates
                .into_iter()
                .filter_map(|(t, predicate)| evidence_source(&subject, kind, t, predicate)),
        );
    }
    Ok(out)
}

/// The statement signing `predicate` about `subject` with the kind's evidence key, if the
/// engine reads it back as evidence: a claim it could not sign stays a claim.
fn evidence_source(
    subject: &serde_json::Value,
    kind: &str,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Option<AttestationSource> {
    if !matches!(
        crate::attest::evidence::from_predicate(predicate_type, &predicate),
        Ok(Some(_))
    ) {
        return None;
    }
    let key = EVIDENCE_KEYS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or_else(String::new, |(_, key)| (*key).to_owned());
    Some(AttestationSource {
        key,
        keyless: None,
        statement: serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": subject,
            "predicateType": predicate_type,
            "predicate": predicate,
        }),
        mode: default_mode(),
        url_safe: false,
    })
}

fn claimed(request: &serde_json::Value, field: &str) -> Vec<serde_json::Value> {
    request[field].as_array().cloned().unwrap_or_default()
}

/// An approval predicate per claimed approval, for this promotion.
fn approval_predicates(request: &serde_json::Value) -> Vec<(&'static str, serde_json::Value)> {
    use crate::attest::evidence::APPROVAL_V1;
    claimed(request, "approvals")
        .into_iter()
        .map(|a| {
            (
                APPROVAL_V1,
                serde_json::json!({
                    "approver": a["approver"], "roles": a.get("roles").cloned().unwrap_or(serde_json::json!([])),
                    "decision": a["decision"], "at": a["at"],
                    "from": request["from"], "to": request["to"],
                }),
            )
        })
        .collect()
}

/// A test-result predicate per claimed check run that passed or failed and says where
/// and when it ran.
fn test_result_predicates(request: &serde_json::Value) -> Vec<(&'static str, serde_json::Value)> {
    use crate::attest::evidence::TEST_RESULT_V01;
    claimed(request, "checks")
        .into_iter()
        .filter_map(|c| {
            let result = match c["status"].as_str() {
                Some("passed") => "PASSED",
                Some("failed") => "FAILED",
                _ => return None,
            };
            if c.get("environment").is_none() || c.get("at").is_none() {
                return None;
            }
            Some((
                TEST_RESULT_V01,
                serde_json::json!({
                    "result": result,
                    "configuration": [{"name": c["name"], "annotations": {
                        "environment": c["environment"], "at": c["at"]}}],
                    "passedTests": [], "warnedTests": [], "failedTests": [],
                }),
            ))
        })
        .collect()
}

/// An SLO snapshot with the claimed figures, measured five minutes before `at`.
fn slo_predicates(
    request: &serde_json::Value,
    at: &str,
) -> Result<Vec<(&'static str, serde_json::Value)>, String> {
    use crate::attest::evidence::SLO_SNAPSHOT_V1;
    use serde_json::Value;
    let Some(slo) = request["slo"].as_object() else {
        return Ok(Vec::new());
    };
    let measured = parse_time(at).map_err(|e| e.to_string())? - time::Duration::minutes(5);
    let service = request["artifact"]["name"]
        .as_str()
        .and_then(|n| n.rsplit('/').next())
        .unwrap_or("service");
    Ok(vec![(
        SLO_SNAPSHOT_V1,
        serde_json::json!({
            "service": service,
            "objective": slo.get("objective").cloned().unwrap_or(Value::Null),
            "window": slo.get("window").cloned().unwrap_or(Value::Null),
            "errorBudgetRemaining": slo.get("errorBudgetRemaining").cloned().unwrap_or(Value::Null),
            "burnRates": slo.get("burnRates").cloned().unwrap_or(Value::Null),
            "measuredAt": crate::input::format_time(measured),
        }),
    )])
}
