//! Builds the decision and SLSA VSA statements, signs them as DSSE envelopes with the
//! decision key (`Signer`), and checks signed decisions back.
//!
//! It must never produce an envelope whose signature does not cover exactly the payload it
//! carries, nor accept one signed by a key it was not given.
//!
//! Keys are PKCS#8 PEM (private) and SPKI PEM (public); the keyid in an envelope is the hex
//! SHA-256 of the SPKI DER (CONTRACT §3). Any standard DSSE verifier holding the public key
//! accepts what [`sign_statement`] produces.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::attest::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::attest::keys::{KeyAlgorithm, PublicKey, SigningKey};
use crate::attest::statement::{parse_payload, Statement, StatementVersion};
use crate::attest::{AttestError, Verified};
use crate::decision::Decision;

/// predicateType of a promo-policy decision statement.
pub const DECISION_PREDICATE_TYPE: &str = "https://promo-policy.dev/promotion-decision/v1";

/// File name of the private key [`write_keypair`] writes.
pub const PRIVATE_KEY_FILE: &str = "signing.key";
/// File name of the public key [`write_keypair`] writes.
pub const PUBLIC_KEY_FILE: &str = "signing.pub";

/// Why signing, key handling or envelope verification failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The signing key file could not be read.
    #[error("cannot read signing key `{path}`: {}", .source.reason())]
    KeyRead {
        /// The file.
        path: String,
        /// What reading it ran into (not a file, too large, I/O).
        #[source]
        source: crate::fsio::ReadError,
    },

    /// The signing key file is not a usable key.
    #[error("signing key `{path}` is not usable: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What the PEM or PKCS#8 reader refused.
        reason: String,
    },

    /// Decisions are signed with Ed25519 only.
    #[error("decisions are signed with Ed25519, but the key is {algorithm}")]
    NotEd25519 {
        /// The key's algorithm.
        algorithm: KeyAlgorithm,
    },

    /// A key file could not be written.
    #[error("cannot write `{path}`: {source}")]
    KeyWrite {
        /// The file or directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// `write_keypair` refuses to overwrite an existing key.
    #[error("`{path}` already exists; refusing to overwrite a key")]
    KeyExists {
        /// The existing file.
        path: String,
    },

    /// The statement to sign is not an in-toto Statement v1.
    #[error("statement cannot be signed: {reason}")]
    Unsignable {
        /// Which part of the statement is not in-toto Statement v1 shape.
        reason: String,
    },

    /// The envelope could not be parsed.
    #[error("malformed envelope: {0}")]
    Envelope(#[source] AttestError),

    /// The envelope's payloadType is not in-toto.
    #[error("payload type `{found}` is not `application/vnd.in-toto+json`")]
    PayloadType {
        /// What the envelope says.
        found: String,
    },

    /// No verification key was given.
    #[error("no verification keys were given")]
    NoKeys,

    /// No signature verifies over the PAE with any given key.
    #[error("no signature verifies with the given key{} (keyids tried: {keyids})", if *.count == 1 { "" } else { "s" })]
    BadSignature {
        /// How many keys were tried.
        count: usize,
        /// Their keyids, comma-separated.
        keyids: String,
    },

    /// The signed payload is not a decision statement.
    #[error("signed payload is not a promotion decision statement: {reason}")]
    Statement {
        /// Which part of the decision statement is missing or malformed.
        reason: String,
    },
}

/// Signs an in-toto Statement v1 as a DSSE envelope: payloadType
/// `application/vnd.in-toto+json`, payload the statement's compact JSON, one Ed25519
/// signature over the PAE with `keyid` = the public key's keyid.
///
/// The statement is checked for the Statement v1 shape (any predicate type, so a SLSA VSA
/// can be signed too) before anything is signed.
pub fn sign_statement(key: &SigningKey, statement: &Value) -> Result<Value, SignError> {
    if key.algorithm() != KeyAlgorithm::Ed25519 {
        return Err(SignError::NotEd25519 {
            algorithm: key.algorithm(),
        });
    }
    let version = Statement::check(statement).map_err(|e| SignError::Unsignable {
        reason: e.to_string(),
    })?;
    if version != StatementVersion::V1 {
        return Err(SignError::Unsignable {
            reason: "`_type` must be `https://in-toto.io/Statement/v1`".into(),
        });
    }
    let payload = serde_json::to_vec(statement).map_err(|e| SignError::Unsignable {
        reason: e.to_string(),
    })?;
    let envelope = Envelope {
        payload_type: INTOTO_PAYLOAD_TYPE.to_owned(),
        signatures: vec![crate::attest::dsse::EnvelopeSignature {
            keyid: Some(key.keyid()),
            sig: key.sign(&crate::attest::dsse::pae(INTOTO_PAYLOAD_TYPE, &payload)),
        }],
        payload,
    };
    Ok(envelope.to_json())
}

/// Cap for a signed-decision file (`eval --out`, `verify`, the sidecar's decisions
/// directory): a decision on a 1 MiB request with its envelope is well under 4 MiB.
pub const MAX_DECISION_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Checks a signed decision: the envelope parses, its payloadType is in-toto, a signature
/// over the PAE verifies with one of `keys` (the envelope's keyid is not trusted), and the
/// payload is a Statement v1 with a non-empty subject and predicateType
/// [`DECISION_PREDICATE_TYPE`]. Returns the statement.
pub fn verify_decision_statement(envelope: &Value, keys: &[PublicKey]) -> Result<Value, SignError> {
    verify_typed_envelope(envelope, keys, DECISION_PREDICATE_TYPE)
}

/// [`verify_decision_statement`], then the predicate read as a [`Decision`] whose artifact
/// is one of the statement's subjects: the one check every reader of a signed decision
/// (`verify`, `audit verify`) makes.
pub fn verify_decision_envelope(
    envelope: &Value,
    keys: &[PublicKey],
) -> Result<crate::decision::Decision, SignError> {
    let mut statement = verify_decision_statement(envelope, keys)?;
    // Taken out rather than cloned: only the subject is read after it.
    let predicate = statement
        .get_mut("predicate")
        .map_or(Value::Null, Value::take);
    let decision: crate::decision::Decision =
        serde_json::from_value(predicate).map_err(|e| SignError::Statement {
            reason: format!("the predicate is not a promo-policy decision: {e}"),
        })?;
    let subject_ok = statement["subject"].as_array().is_some_and(|subjects| {
        subjects.iter().any(|s| {
            s["name"] == decision.artifact.name.as_str()
                && serde_json::to_value(&decision.artifact.digest).is_ok_and(|d| s["digest"] == d)
        })
    });
    if !subject_ok {
        return Err(SignError::Statement {
            reason: "the statement's subject is not the decision's artifact".into(),
        });
    }
    Ok(decision)
}

/// [`verify_decision_statement`] for any `predicate_type` signed with the decision key
/// (an audit-log checkpoint, say). Returns the statement.
pub fn verify_typed_envelope(
    envelope: &Value,
    keys: &[PublicKey],
    predicate_type: &str,
) -> Result<Value, SignError> {
    let env = Envelope::from_json(envelope).map_err(SignError::Envelope)?;
    if env.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(SignError::PayloadType {
            found: env.payload_type,
        });
    }
    if keys.is_empty() {
        return Err(SignError::NoKeys);
    }
    let pae = env.pae();
    let verified = env
        .signatures
        .iter()
        .any(|s| keys.iter().any(|k| k.verify(&pae, &s.sig)));
    if !verified {
        return Err(SignError::BadSignature {
            count: keys.len(),
            keyids: keys
                .iter()
                .map(PublicKey::keyid)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let value: Value = parse_payload(&env.payload).map_err(|e| SignError::Statement {
        reason: e.to_string(),
    })?;
    let statement = Statement::from_value(&value).map_err(|e| SignError::Statement {
        reason: e.to_string(),
    })?;
    if statement.version != StatementVersion::V1 {
        return Err(SignError::Statement {
            reason: "`_type` is not `https://in-toto.io/Statement/v1`".into(),
        });
    }
    if statement.predicate_type != predicate_type {
        return Err(SignError::Statement {
            reason: format!(
                "`predicateType` is `{}`, expected `{predicate_type}`",
                statement.predicate_type
            ),
        });
    }
    Ok(value)
}

/// Loads the Ed25519 PKCS#8 PEM key that signs decisions.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, SignError> {
    let shown = path.display().to_string();
    let pem =
        crate::fsio::read_capped_string(path, crate::fsio::MAX_KEY_FILE_BYTES).map_err(|e| {
            SignError::KeyRead {
                path: shown.clone(),
                source: e,
            }
        })?;
    let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| SignError::Key {
        path: shown,
        reason: e.to_string(),
    })?;
    if key.algorithm() != KeyAlgorithm::Ed25519 {
        return Err(SignError::NotEd25519 {
            algorithm: key.algorithm(),
        });
    }
    Ok(key)
}

/// Generates an Ed25519 key pair into `dir` (created if missing): `signing.key` (PKCS#8
/// PEM, mode 0600 on unix, created exclusively) and `signing.pub` (SPKI PEM). Returns
/// (private path, public path, keyid). Never overwrites an existing key.
pub fn write_keypair(dir: &Path) -> Result<(PathBuf, PathBuf, String), SignError> {
    let write_err = |p: &Path, e: std::io::Error| SignError::KeyWrite {
        path: p.display().to_string(),
        source: e,
    };
    fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let private_path = dir.join(PRIVATE_KEY_FILE);
    let public_path = dir.join(PUBLIC_KEY_FILE);
    for p in [&private_path, &public_path] {
        if p.exists() {
            return Err(SignError::KeyExists {
                path: p.display().to_string(),
            });
        }
    }
    let key = SigningKey::generate();
    let private_pem = key.to_pkcs8_pem().map_err(|e| SignError::Key {
        path: private_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let public = key.public_key();

    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Created with 0600 from the start: no window where the key is world-readable.
        options.mode(0o600);
    }
    let mut file = options
        .open(&private_path)
        .map_err(|e| write_err(&private_path, e))?;
    file.write_all(private_pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| write_err(&private_path, e))?;
    fs::write(&public_path, public.to_pem()).map_err(|e| write_err(&public_path, e))?;
    Ok((private_path, public_path, public.keyid().to_owned()))
}

/// The shipped development signing key (PKCS#8 PEM). Decisions signed with it prove
/// nothing; `eval` says so on stderr. Production passes `--key`.
pub const DEV_SIGNING_KEY_PEM: &str = include_str!("../corpus/keys/decisions-dev.key");

/// The verifier id written into signed decisions (SLSA VSA `verifier.id`).
pub const VERIFIER_ID: &str = "https://promo-policy.dev/verifier/promo-policy";

/// The key decisions are signed with, and whether it is the shipped dev key.
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    keyid: String,
    dev: bool,
}

impl Signer {
    /// A signer for `key`; `dev` marks the shipped development key.
    pub fn new(key: SigningKey, dev: bool) -> Self {
        Signer {
            keyid: key.keyid(),
            key,
            dev,
        }
    }

    /// The keyid (hex sha256 of the SPKI DER) of the signing key.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// True when this is the shipped development key.
    pub fn is_dev_key(&self) -> bool {
        self.dev
    }

    /// The public half of the decision key.
    pub fn public_key(&self) -> crate::attest::PublicKey {
        self.key.public_key()
    }

    /// Sign any in-toto Statement v1 with the decision key (an audit-log checkpoint is
    /// signed by the same key as the decisions it vouches for).
    pub fn sign_statement(
        &self,
        statement: &serde_json::Value,
    ) -> Result<serde_json::Value, SignError> {
        sign_statement(&self.key, statement)
    }
}

/// VSA `inputAttestations`: each verified attestation by its place in the request and
/// the digest of its envelope, annotated with what it vouched for and who signed it, so
/// a signed decision (and the audit record keeping it) names the evidence it rests on.
fn input_attestations(d: &Decision, verified: &Verified) -> Vec<Value> {
    verified
        .attestations
        .iter()
        .map(|a| {
            json!({
                "uri": format!("request:{}#/attestations/{}", d.request_id, a.index),
                "digest": a.envelope_digest,
                "annotations": {"predicateType": a.predicate_type, "signer": a.signer.id()},
            })
        })
        .collect()
}

/// The environment an allowed promotion verified the artifact for, as a VSA level.
fn verified_level(d: &Decision) -> String {
    format!("PROMO_POLICY_PROMOTION_{}", d.to.to_uppercase())
}

/// predicateType of a standard SLSA Verification Summary Attestation.
pub const VSA_PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";

/// The SLSA VSA v1 predicate fields of a decision, listed once: the VSA statement is
/// these (with `policy`), and the decision statement carries them beside the decision.
fn vsa_fields(d: &Decision, verified: &Verified) -> serde_json::Map<String, Value> {
    let fields = json!({
        "verifier": {"id": VERIFIER_ID, "version": {"promo-policy": d.engine.version}},
        "timeVerified": d.evaluated_at,
        "resourceUri": d.artifact.name,
        "inputAttestations": input_attestations(d, verified),
        "verificationResult": if d.allowed { "PASSED" } else { "FAILED" },
        "verifiedLevels": [verified_level(d)],
    });
    match fields {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// An in-toto Statement v1 about the decision's artifact.
fn statement_about(d: &Decision, predicate_type: &str, predicate: Value) -> Value {
    json!({
        "_type": crate::attest::statement::STATEMENT_V1,
        "subject": [{"name": d.artifact.name, "digest": d.artifact.digest}],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// A standard SLSA VSA v1 statement for a decision, for consumers that understand VSAs
/// but not promo-policy decisions: `verifiedLevels` names the environment the artifact
/// was verified for (`PROMO_POLICY_PROMOTION_<ENV>`), and the decision id, violations and
/// warnings are not repeated (they are in the decision statement).
pub fn vsa_statement(d: &Decision, verified: &Verified) -> Value {
    // `policy` after `resourceUri`, where the VSA spec lists it.
    let mut predicate = serde_json::Map::new();
    for (key, value) in vsa_fields(d, verified) {
        let then_policy = key == "resourceUri";
        predicate.insert(key, value);
        if then_policy {
            predicate.insert(
                "policy".into(),
                json!({"uri": d.policy.uri, "digest": d.policy.digest}),
            );
        }
    }
    statement_about(d, VSA_PREDICATE_TYPE, Value::Object(predicate))
}

/// The in-toto Statement v1 for a decision: the decision fields plus the SLSA VSA v1
/// fields (`vsa_fields`).
pub fn decision_statement(d: &Decision, verified: &Verified) -> Result<Value, SignError> {
    let mut predicate = serde_json::to_value(d).map_err(|e| SignError::Unsignable {
        reason: e.to_string(),
    })?;
    if let Some(obj) = predicate.as_object_mut() {
        obj.extend(vsa_fields(d, verified));
    }
    Ok(statement_about(d, DECISION_PREDICATE_TYPE, predicate))
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
    use crate::attest::dsse::encode_base64;
    use base64::Engine as _;

    /// A minimal decision statement: subject = the artifact.
    fn minimal_statement(artifact_name: &str, digest: &Value, decision: &Value) -> Value {
        json!({
            "_type": crate::attest::statement::STATEMENT_V1,
            "subject": [{"name": artifact_name, "digest": digest}],
            "predicateType": DECISION_PREDICATE_TYPE,
            "predicate": decision,
        })
    }

    fn statement() -> Value {
        minimal_statement(
            "registry.example.com/payments/api",
            &json!({"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}),
            &json!({"allowed": true, "verificationResult": "PASSED", "violations": []}),
        )
    }

    fn payload_of(env: &Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(env["payload"].as_str().unwrap())
            .unwrap()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let key = SigningKey::ed25519_from_seed(&[3; 32]);
        let env = sign_statement(&key, &statement()).unwrap();
        assert_eq!(env["payloadType"], INTOTO_PAYLOAD_TYPE);
        assert_eq!(env["signatures"][0]["keyid"], key.keyid());
        assert_eq!(
            payload_of(&env),
            serde_json::to_vec(&statement()).unwrap(),
            "compact JSON"
        );
        let back = verify_decision_statement(&env, &[key.public_key()]).unwrap();
        assert_eq!(back, statement());
        // Ed25519 is deterministic: the same statement signs to the same envelope.
        assert_eq!(sign_statement(&key, &statement()).unwrap(), env);
    }

    #[test]
    fn any_payload_byte_changed_fails_verification() {
        let key = SigningKey::ed25519_from_seed(&[3; 32]);
        let env = sign_statement(&key, &statement()).unwrap();
        let payload = payload_of(&env);
        for i in 0..payload.len() {
            let mut bad = payload.clone();
            bad[i] = bad[i].wrapping_add(1);
            let mut e = env.clone();
            e["payload"] = json!(encode_base64(&bad));
            let err = verify_decision_statement(&e, &[key.public_key()]).unwrap_err();
            assert!(
                matches!(err, SignError::BadSignature { .. }),
                "byte {i}: {err}"
            );
        }
    }

    #[test]
    fn the_wrong_key_and_a_changed_payload_type_fail() {
        let key = SigningKey::ed25519_from_seed(&[3; 32]);
        let other = SigningKey::ed25519_from_seed(&[4; 32]);
        let env = sign_statement(&key, &statement()).unwrap();
        let err = verify_decision_statement(&env, &[other.public_key()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no signature verifies with the given key (keyids tried: {})",
                other.keyid()
            )
        );
        // Verification succeeds when the right key is among several.
        assert!(verify_decision_statement(&env, &[other.public_key(), key.public_key()]).is_ok());
        let mut e = env.clone();
        e["payloadType"] = json!("application/json");
        assert!(matches!(
            verify_decision_statement(&e, &[key.public_key()]),
            Err(SignError::PayloadType { .. })
        ));
        assert!(matches!(
            verify_decision_statement(&env, &[]),
            Err(SignError::NoKeys)
        ));
        assert!(matches!(
            verify_decision_statement(&json!({"payload": 1}), &[key.public_key()]),
            Err(SignError::Envelope(_))
        ));
    }

    #[test]
    fn statement_shape_is_checked_on_both_ends() {
        let key = SigningKey::ed25519_from_seed(&[3; 32]);
        let mut no_subject = statement();
        no_subject["subject"] = json!([]);
        let err = sign_statement(&key, &no_subject).unwrap_err().to_string();
        assert_eq!(
            err,
            "statement cannot be signed: payload is not an in-toto statement: `subject` is empty"
        );
        let mut old = statement();
        old["_type"] = json!(crate::attest::statement::STATEMENT_V01);
        assert!(matches!(
            sign_statement(&key, &old),
            Err(SignError::Unsignable { .. })
        ));

        // A correctly signed statement of another predicate type is not a decision.
        let mut vsa = statement();
        vsa["predicateType"] = json!("https://slsa.dev/verification_summary/v1");
        let env = sign_statement(&key, &vsa).unwrap();
        let err = verify_decision_statement(&env, &[key.public_key()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "signed payload is not a promotion decision statement: `predicateType` is `https://slsa.dev/verification_summary/v1`, expected `https://promo-policy.dev/promotion-decision/v1`"
        );
    }

    #[test]
    fn p256_keys_do_not_sign_decisions() {
        let err = sign_statement(&SigningKey::generate_p256(), &statement()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "decisions are signed with Ed25519, but the key is ECDSA P-256"
        );
    }

    #[test]
    fn keypair_is_written_private_0600_and_loads_back() {
        let dir = crate::attest::trust::tests::temp_dir().join("keys");
        let (private, public, keyid) = write_keypair(&dir).unwrap();
        assert_eq!(private, dir.join("signing.key"));
        assert_eq!(public, dir.join("signing.pub"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let key = load_signing_key(&private).unwrap();
        assert_eq!(key.keyid(), keyid);
        let pubkey = PublicKey::from_pem(&fs::read_to_string(&public).unwrap()).unwrap();
        assert_eq!(pubkey.keyid(), keyid);
        let env = sign_statement(&key, &statement()).unwrap();
        assert!(verify_decision_statement(&env, &[pubkey]).is_ok());
        // Never overwritten.
        assert!(matches!(
            write_keypair(&dir),
            Err(SignError::KeyExists { .. })
        ));
        fs::remove_dir_all(dir.parent().unwrap()).ok();
    }

    #[test]
    fn missing_or_bad_signing_keys_are_errors() {
        let dir = crate::attest::trust::tests::temp_dir();
        let err = load_signing_key(&dir.join("none.key"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read signing key `"), "{err}");
        fs::write(dir.join("bad.key"), "junk").unwrap();
        let err = load_signing_key(&dir.join("bad.key"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not usable: invalid private key"), "{err}");
        fs::write(
            dir.join("p256.key"),
            SigningKey::generate_p256().to_pkcs8_pem().unwrap(),
        )
        .unwrap();
        assert!(matches!(
            load_signing_key(&dir.join("p256.key")),
            Err(SignError::NotEd25519 { .. })
        ));
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_shipped_dev_key_pair_matches() {
        let keys = Path::new(file!()).parent().unwrap().join("../corpus/keys");
        let key = load_signing_key(&keys.join("decisions-dev.key")).unwrap();
        let public =
            PublicKey::from_pem(&fs::read_to_string(keys.join("decisions-dev.pub")).unwrap())
                .unwrap();
        assert_eq!(key.public_key(), public);
        let env = sign_statement(&key, &statement()).unwrap();
        assert!(verify_decision_statement(&env, &[public]).is_ok());
    }
}
