//! Turns a request's attestations into `input.verified` (CONTRACT §2): facts only from
//! envelopes whose PAE signatures verify against enough distinct trusted keys that are
//! permitted for what they sign; it must never panic, never trust a `keyid`, and never report
//! an unverified claim as a fact.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attest::dsse::{Envelope, EnvelopeSignature, INTOTO_PAYLOAD_TYPE};
use crate::attest::evidence::{Evidence, Fact};
use crate::attest::keyless::{is_bundle, verify_bundle, KeylessSigner};
use crate::attest::slsa::Provenance;
use crate::attest::statement::Statement;
use crate::attest::trust::{TrustStore, TrustedKey};
use crate::attest::AttestError;
use crate::digest::DigestSet;

/// What the engine proved about a request's attestations: `input.verified`.
///
/// Serialises as `{"attestations": [...], "rejected": [...]}`; every input attestation is
/// in exactly one of the two lists, by `index`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    /// Attestations whose signatures verified and whose signers are permitted.
    pub attestations: Vec<VerifiedAttestation>,
    /// Attestations that did not verify, with why.
    pub rejected: Vec<Rejected>,
    /// The signed process evidence about the artifact among `attestations`.
    #[serde(default)]
    pub evidence: Evidence,
}

impl Verified {
    /// No attestations, nothing rejected.
    pub fn empty() -> Verified {
        Verified::default()
    }
}

/// One verified attestation, as policy reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedAttestation {
    /// Position in the request's `attestations`.
    pub index: usize,
    /// keyid (hex SHA-256 of the SPKI DER) of the first permitted signer's key (for a
    /// keyless signer, the certificate's key), computed, never copied from the envelope.
    pub keyid: String,
    /// Who signed: a trusted key, or a keyless identity with its certificate's claims.
    pub signer: AttestationSigner,
    /// Trust-file ids of every distinct permitted signer, in signature order.
    pub signers: Vec<String>,
    /// The statement's predicateType.
    pub predicate_type: String,
    /// The statement's `subject`, as given.
    pub subject: Value,
    /// Whether a subject's digest equals the artifact's (see
    /// [`crate::digest::DigestSet::matches`]). A `false` here is a verified
    /// statement about *another* artifact: policy must check this field.
    pub subject_matches: bool,
    /// The statement's `predicate`, as given (`null` when absent).
    pub predicate: Value,
    /// For SLSA provenance, the normalised facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// For signed process evidence (CONTRACT §2d), the normalised fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Fact>,
    /// `{"sha256": ...}` of the envelope as received (compact JSON, key order kept): what a
    /// signed decision lists under `inputAttestations`.
    pub envelope_digest: DigestSet,
}

/// The first permitted signer of a verified attestation (`signer` in Rego), by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AttestationSigner {
    /// A key listed under `keys`: `{"kind": "key", "id": ...}`.
    Key {
        /// The trust file's id of the key.
        id: String,
    },
    /// A Sigstore bundle's certificate matching an identity listed under `identities`.
    Keyless(KeylessSigner),
}

impl AttestationSigner {
    /// The trust file's id of the key or identity.
    pub fn id(&self) -> &str {
        match self {
            AttestationSigner::Key { id } => id,
            AttestationSigner::Keyless(k) => &k.identity,
        }
    }
}

/// One attestation that did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Position in the request's `attestations`.
    pub index: usize,
    /// A sentence a person can act on.
    pub reason: String,
}

/// Verifies every attestation against `store`, for promotion of the artifact with
/// `artifact_digest` into `environment`. Never fails as a whole: each attestation lands in
/// `attestations` or `rejected`.
///
/// For an envelope to verify: it parses; its payloadType is `application/vnd.in-toto+json`;
/// signatures over the DSSE PAE (only; never the raw payload) verify with at least
/// `store.threshold()` distinct trusted keys, each trusted for the statement's predicate
/// type, for `environment`, and, for SLSA provenance, for its builder id. The envelope's
/// `keyid`s only decide which key is tried first.
pub fn verify_attestations(
    store: &TrustStore,
    attestations: &[Value],
    artifact_digest: &DigestSet,
    environment: &str,
) -> Verified {
    collect_verified(attestations, |index, value| {
        verify_envelope(store, index, value, artifact_digest, environment)
    })
}

/// Sorts each attestation into `attestations` or `rejected` (with the error's message)
/// by running `verify` on it: the one loop behind [`verify_attestations`] and the
/// cached variant.
pub fn collect_verified(
    attestations: &[Value],
    mut verify: impl FnMut(usize, &Value) -> Result<VerifiedAttestation, AttestError>,
) -> Verified {
    let mut out = Verified::empty();
    for (index, value) in attestations.iter().enumerate() {
        match verify(index, value) {
            Ok(att) => out.attestations.push(att),
            Err(e) => out.rejected.push(Rejected {
                index,
                reason: e.to_string(),
            }),
        }
    }
    out.evidence = Evidence::gather(&out.attestations);
    out
}

/// Verifies one envelope, the per-attestation step of [`verify_attestations`] (which
/// turns an `Err` into a [`Rejected`] with the error's message): for callers that cache
/// results, e.g. [`crate::attest::cache::VerifyCache`]. The result depends on the
/// envelope, `store`, `artifact_digest` and `environment`; `index` is only copied into it.
pub fn verify_envelope(
    store: &TrustStore,
    index: usize,
    value: &Value,
    artifact_digest: &DigestSet,
    environment: &str,
) -> Result<VerifiedAttestation, AttestError> {
    if is_bundle(value) {
        return verify_bundle(store, index, value, artifact_digest, environment);
    }
    let envelope = Envelope::from_json(value)?;
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(AttestError::PayloadType {
            found: envelope.payload_type,
            expected: INTOTO_PAYLOAD_TYPE,
        });
    }
    if store.is_empty() {
        return Err(AttestError::NoTrustedKeys);
    }

    // 1. Signatures over the PAE, counted once per distinct trusted key.
    let (signers, notes) = trusted_signers(store.keys(), &envelope);
    if signers.is_empty() {
        return Err(AttestError::NoTrustedSignature {
            details: notes.join("; "),
        });
    }

    // 2. Only now is the payload read: it is signed by someone we know.
    let signed = SignedStatement::read(&envelope.payload)?;

    // 3. Each signer must be permitted for what it signed, and enough of them.
    let permitted = permitted_signers(store, &signers, &notes, &signed, environment)?;
    let Some(first) = permitted.first() else {
        // INVARIANT: threshold >= 1 and permitted.len() >= threshold, so this is
        // unreachable; failing closed keeps it that way if either ever changes.
        return Err(AttestError::NoTrustedSignature {
            details: "no permitted signer".into(),
        });
    };
    let envelope_bytes = serde_json::to_vec(value).unwrap_or_default();
    Ok(signed.verified(
        index,
        first.key.keyid().to_owned(),
        AttestationSigner::Key {
            id: first.id.clone(),
        },
        permitted.iter().map(|k| k.id.clone()).collect(),
        artifact_digest,
        &envelope_bytes,
    ))
}

/// A signed in-toto statement, read strictly, with the facts its predicate carries: what
/// a key-signed envelope and a keyless bundle alike become once verified.
pub(crate) struct SignedStatement {
    pub(crate) statement: Statement,
    /// For SLSA provenance, the normalised facts (its builder is a grant to check).
    pub(crate) provenance: Option<Provenance>,
    /// For process evidence, the normalised fact.
    evidence: Option<Fact>,
}

impl SignedStatement {
    /// The approver an approval statement speaks for (a grant to check).
    pub(crate) fn approver(&self) -> Option<&str> {
        match &self.evidence {
            Some(Fact::Approval(f)) => f.get("approver").and_then(serde_json::Value::as_str),
            _ => None,
        }
    }

    /// Reads the payload; a provenance or evidence predicate without its shape is an
    /// error, never a partial fact.
    pub(crate) fn read(payload: &[u8]) -> Result<SignedStatement, AttestError> {
        let statement = Statement::from_slice(payload)?;
        let provenance =
            Provenance::from_predicate(&statement.predicate_type, &statement.predicate)?;
        let evidence = crate::attest::evidence::from_predicate(
            &statement.predicate_type,
            &statement.predicate,
        )?;
        Ok(SignedStatement {
            statement,
            provenance,
            evidence,
        })
    }

    /// The verified attestation, once its signers are known to be permitted;
    /// `as_received` is the attestation's compact JSON, hashed into `envelopeDigest`.
    pub(crate) fn verified(
        self,
        index: usize,
        keyid: String,
        signer: AttestationSigner,
        signers: Vec<String>,
        artifact_digest: &DigestSet,
        as_received: &[u8],
    ) -> VerifiedAttestation {
        let statement = self.statement;
        VerifiedAttestation {
            index,
            keyid,
            signer,
            signers,
            subject_matches: statement.subject_matches(artifact_digest),
            predicate_type: statement.predicate_type,
            subject: statement.subject_json,
            predicate: statement.predicate,
            provenance: self.provenance,
            evidence: self.evidence,
            envelope_digest: DigestSet::sha256_of(as_received),
        }
    }
}

/// The trusted keys (by index, each once) whose signatures over the PAE verify, and a
/// note on every other signature.
fn trusted_signers(keys: &[TrustedKey], envelope: &Envelope) -> (Vec<usize>, Vec<String>) {
    let pae = envelope.pae();
    let mut signers: Vec<usize> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (i, sig) in envelope.signatures.iter().enumerate() {
        match find_signer(keys, &pae, sig) {
            // Compared as keys, not indexes: the store refuses one key under two ids,
            // and this keeps one signer counted once even if a store ever held it twice.
            Some(k) if signers.iter().any(|&s| keys[s].key == keys[k].key) => notes.push(format!(
                "`signatures[{i}]` is another signature by key `{}`, counted once",
                keys[k].id
            )),
            Some(k) => signers.push(k),
            None => notes.push(explain_failure(keys, envelope, i, sig)),
        }
    }
    (signers, notes)
}

/// The signers permitted for this statement, if at least the store's threshold of them
/// are; else why not, naming every signer's missing grant and every other signature.
fn permitted_signers<'s>(
    store: &'s TrustStore,
    signers: &[usize],
    notes: &[String],
    statement: &SignedStatement,
    environment: &str,
) -> Result<Vec<&'s TrustedKey>, AttestError> {
    let keys = store.keys();
    let mut permitted: Vec<&TrustedKey> = Vec::new();
    let mut denials: Vec<String> = Vec::new();
    for &k in signers {
        let key = &keys[k];
        match key.grants.denial("key", &key.id, statement, environment) {
            None => permitted.push(key),
            Some(why) => denials.push(why),
        }
    }
    let threshold = store.threshold();
    if permitted.len() >= threshold {
        return Ok(permitted);
    }
    if permitted.is_empty() && threshold == 1 {
        return Err(AttestError::NotPermitted { reasons: denials });
    }
    let signers = if permitted.is_empty() {
        String::new()
    } else {
        format!(": {}", backticked(permitted.iter().map(|k| k.id.as_str())))
    };
    let details: String = denials
        .iter()
        .chain(notes.iter())
        .map(|n| format!("; {n}"))
        .collect();
    Err(AttestError::ThresholdNotMet {
        threshold,
        valid: permitted.len(),
        signers,
        details,
    })
}

/// Does the keyid hint name this key? It may give the computed keyid or the trust-file id.
fn hinted(key: &TrustedKey, hint: Option<&str>) -> bool {
    hint.is_some_and(|h| h.eq_ignore_ascii_case(key.key.keyid()) || h == key.id)
}

/// The index of the trusted key this signature verifies with, trying hinted keys first.
/// The hint never excludes a key: it is unauthenticated, so only the order depends on it.
fn find_signer(keys: &[TrustedKey], pae: &[u8], sig: &EnvelopeSignature) -> Option<usize> {
    let hint = sig.keyid.as_deref();
    let mut hinted_first = (0..keys.len())
        .filter(|&k| hinted(&keys[k], hint))
        .chain((0..keys.len()).filter(|&k| !hinted(&keys[k], hint)));
    hinted_first.find(|&k| keys[k].key.verify(pae, &sig.sig))
}

/// Why a signature verified with no trusted key, as precisely as can be told.
fn explain_failure(
    keys: &[TrustedKey],
    envelope: &Envelope,
    i: usize,
    sig: &EnvelopeSignature,
) -> String {
    // Legacy signers signed the payload itself. Name it, so the fix is obvious.
    if let Some(k) = keys
        .iter()
        .find(|k| k.key.verify(&envelope.payload, &sig.sig))
    {
        return format!(
            "`signatures[{i}]` by key `{}` signs the raw payload, not the DSSE PAE; \
             such legacy signatures are not accepted",
            k.id
        );
    }
    if !keys.iter().any(|k| k.key.signature_well_formed(&sig.sig)) {
        let mut algs: Vec<String> = keys.iter().map(|k| k.key.algorithm().to_string()).collect();
        algs.sort();
        algs.dedup();
        return format!(
            "`signatures[{i}]` is malformed: {} bytes is not a valid {} signature",
            sig.sig.len(),
            algs.join(" or ")
        );
    }
    match sig.keyid.as_deref() {
        Some(hint) => match keys.iter().find(|k| hinted(k, Some(hint))) {
            Some(k) => format!(
                "`signatures[{i}]` does not verify with key `{}` its keyid names, nor with any other trusted key",
                k.id
            ),
            None => format!(
                "`signatures[{i}]` has keyid `{hint}`, which is not a trusted key, and verifies with no trusted key"
            ),
        },
        None => format!("`signatures[{i}]` verifies with no trusted key"),
    }
}

fn backticked<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    ids.map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
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
    use crate::attest::dsse::{encode_base64, pae};
    use crate::attest::keys::SigningKey;
    use crate::attest::slsa::{SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1};
    use crate::attest::statement::{STATEMENT_V01, STATEMENT_V1};
    use base64::Engine as _;
    use serde_json::json;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const BUILDER: &str = "https://ci.example.com/builders/release@v2";
    const TEST_RESULT: &str = "https://in-toto.io/attestation/test-result/v0.1";

    struct Fx {
        ci: SigningKey,
        ci2: SigningKey,
        p256: SigningKey,
        untrusted: SigningKey,
    }

    fn fx() -> Fx {
        Fx {
            ci: SigningKey::ed25519_from_seed(&[1; 32]),
            ci2: SigningKey::ed25519_from_seed(&[2; 32]),
            p256: SigningKey::generate_p256(),
            untrusted: SigningKey::ed25519_from_seed(&[9; 32]),
        }
    }

    fn store(fx: &Fx, threshold: usize) -> TrustStore {
        let slsa = [SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02];
        TrustStore::new(
            vec![
                TrustedKey::new(
                    "ci",
                    fx.ci.public_key(),
                    &slsa,
                    &[BUILDER],
                    Some(&["staging", "prod"]),
                ),
                TrustedKey::new(
                    "ci2",
                    fx.ci2.public_key(),
                    &slsa,
                    &["https://ci.example.com/*"],
                    None,
                ),
                TrustedKey::new("ci-p256", fx.p256.public_key(), &slsa, &[BUILDER], None),
            ],
            threshold,
        )
        .unwrap()
    }

    fn artifact() -> DigestSet {
        DigestSet::sha256_hex(DIGEST.to_owned())
    }

    fn provenance_v1(builder: &str, digest: &str) -> Value {
        json!({
            "_type": STATEMENT_V1,
            "subject": [{"name": "registry.example.com/payments/api", "digest": {"sha256": digest}}],
            "predicateType": SLSA_PROVENANCE_V1,
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://ci.example.com/buildtypes/container/v1",
                    "externalParameters": {"source": {"uri": "git+https://github.com/example/payments@refs/heads/main", "digest": {"gitCommit": "abc123"}}},
                    "resolvedDependencies": [{}]
                },
                "runDetails": {
                    "builder": {"id": builder},
                    "metadata": {"startedOn": "2026-11-25T08:00:00.000000001Z", "finishedOn": "2026-11-25T08:10:00Z"},
                    "byproducts": [{}]
                }
            }
        })
    }

    fn provenance_v02(builder: &str) -> Value {
        json!({
            "_type": STATEMENT_V01,
            "subject": [{"name": "api", "digest": {"sha256": DIGEST.to_uppercase(), "sha512": "ff"}}],
            "predicateType": SLSA_PROVENANCE_V02,
            "predicate": {
                "builder": {"id": builder},
                "buildType": "https://ci.example.com/buildtypes/legacy",
                "invocation": {"configSource": {"uri": "git+https://github.com/example/payments@refs/tags/v1", "digest": {"sha1": "def456"}}},
                "metadata": {"buildStartedOn": "2026-11-25T08:00:00.5+01:00"},
                "materials": [{}]
            }
        })
    }

    /// An envelope over `payload` with one signature per key, over the PAE.
    fn envelope(payload: &[u8], signers: &[(&SigningKey, Option<&str>)]) -> Value {
        let pae = pae(INTOTO_PAYLOAD_TYPE, payload);
        let sigs: Vec<Value> = signers
            .iter()
            .map(|(k, keyid)| match keyid {
                Some(id) => json!({"keyid": id, "sig": encode_base64(&k.sign(&pae))}),
                None => json!({"sig": encode_base64(&k.sign(&pae))}),
            })
            .collect();
        json!({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": encode_base64(payload), "signatures": sigs})
    }

    fn signed(statement: &Value, key: &SigningKey) -> Value {
        envelope(
            &serde_json::to_vec(statement).unwrap(),
            &[(key, Some(&key.keyid()))],
        )
    }

    fn run(store: &TrustStore, atts: &[Value], env: &str) -> Verified {
        verify_attestations(store, atts, &artifact(), env)
    }

    fn only_rejection(v: &Verified) -> &str {
        assert!(
            v.attestations.is_empty(),
            "unexpectedly verified: {:?}",
            v.attestations
        );
        assert_eq!(v.rejected.len(), 1, "{v:?}");
        &v.rejected[0].reason
    }

    #[test]
    fn valid_ed25519_provenance_verifies_with_every_field() {
        let fx = fx();
        let env = signed(&provenance_v1(BUILDER, DIGEST), &fx.ci);
        let v = run(&store(&fx, 1), std::slice::from_ref(&env), "prod");
        assert!(v.rejected.is_empty(), "{:?}", v.rejected);
        let a = &v.attestations[0];
        assert_eq!(a.index, 0);
        assert_eq!(a.signer.id(), "ci");
        assert_eq!(a.signers, vec!["ci"]);
        assert_eq!(a.keyid, fx.ci.keyid());
        assert_eq!(a.predicate_type, SLSA_PROVENANCE_V1);
        assert!(a.subject_matches);
        assert_eq!(a.subject[0]["name"], "registry.example.com/payments/api");
        let p = a.provenance.as_ref().unwrap();
        assert_eq!(p.builder_id, BUILDER);
        assert_eq!(
            p.source_repo.as_deref(),
            Some("https://github.com/example/payments")
        );
        assert_eq!(p.source_commit.as_deref(), Some("abc123"));
        assert_eq!(
            p.started_on.as_deref(),
            Some("2026-11-25T08:00:00.000000001Z")
        );
        assert_eq!(
            a.envelope_digest.sha256().unwrap_or_default(),
            crate::digest::Sha256::of(serde_json::to_vec(&env).unwrap()).hex()
        );
    }

    #[test]
    fn serialised_shape_is_the_contract() {
        let fx = fx();
        let good = signed(&provenance_v1(BUILDER, DIGEST), &fx.ci);
        let v = run(&store(&fx, 1), &[json!(null), good], "prod");
        let json = serde_json::to_value(&v).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(
            obj.keys().collect::<Vec<_>>(),
            ["attestations", "rejected", "evidence"]
        );
        let a = json["attestations"][0].as_object().unwrap();
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            [
                "index",
                "keyid",
                "signer",
                "signers",
                "predicateType",
                "subject",
                "subjectMatches",
                "predicate",
                "provenance",
                "envelopeDigest"
            ]
        );
        assert_eq!(json["attestations"][0]["index"], 1);
        assert_eq!(
            json["attestations"][0]["signer"],
            json!({"kind": "key", "id": "ci"})
        );
        assert_eq!(
            json["rejected"],
            json!([{"index": 0, "reason": "envelope is not a JSON object"}])
        );
        let p = json["attestations"][0]["provenance"].as_object().unwrap();
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            [
                "builderId",
                "buildType",
                "sourceRepo",
                "sourceCommit",
                "startedOn",
                "finishedOn"
            ]
        );
        assert_eq!(
            serde_json::to_value(Verified::empty()).unwrap(),
            json!({"attestations": [], "rejected": [],
                   "evidence": {"approvals": [], "checks": [], "slo": null}})
        );
        let back: Verified = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn standard_and_url_safe_base64_both_verify() {
        let fx = fx();
        let payload = serde_json::to_vec(&provenance_v1(BUILDER, DIGEST)).unwrap();
        let sig = fx.ci.sign(&pae(INTOTO_PAYLOAD_TYPE, &payload));
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let std_pad = base64::engine::general_purpose::STANDARD;
        for engine in [&url, &std_pad] {
            let env = json!({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": engine.encode(&payload),
                "signatures": [{"sig": engine.encode(&sig)}]});
            let v = run(&store(&fx, 1), &[env], "prod");
            assert_eq!(v.attestations.len(), 1, "{:?}", v.rejected);
        }
    }

    #[test]
    fn p256_der_and_raw_signatures_both_verify() {
        let fx = fx();
        let payload = serde_json::to_vec(&provenance_v1(BUILDER, DIGEST)).unwrap();
        let der = fx.p256.sign(&pae(INTOTO_PAYLOAD_TYPE, &payload));
        let raw = p256::ecdsa::Signature::from_der(&der)
            .unwrap()
            .to_bytes()
            .to_vec();
        for sig in [der, raw] {
            let env = json!({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": encode_base64(&payload),
                "signatures": [{"sig": encode_base64(&sig)}]});
            let v = run(&store(&fx, 1), &[env], "prod");
            assert_eq!(v.attestations.len(), 1, "{:?}", v.rejected);
            assert_eq!(v.attestations[0].signer.id(), "ci-p256");
        }
    }

    #[test]
    fn v01_statement_with_v02_provenance_verifies_and_normalises() {
        let fx = fx();
        let v = run(
            &store(&fx, 1),
            &[signed(&provenance_v02(BUILDER), &fx.ci)],
            "staging",
        );
        assert!(v.rejected.is_empty(), "{:?}", v.rejected);
        let a = &v.attestations[0];
        assert!(
            a.subject_matches,
            "hex compared without case; sha512 not shared"
        );
        let p = a.provenance.as_ref().unwrap();
        assert_eq!(
            p.source_repo.as_deref(),
            Some("https://github.com/example/payments")
        );
        assert_eq!(p.source_commit.as_deref(), Some("def456"));
        assert_eq!(p.started_on.as_deref(), Some("2026-11-25T07:00:00.5Z"));
    }

    #[test]
    fn non_provenance_predicates_need_no_builder_and_carry_no_provenance() {
        let statement = json!({"_type": STATEMENT_V1, "subject": [{"digest": {"sha256": DIGEST}}],
            "predicateType": TEST_RESULT, "predicate": {"result": "PASSED"}});
        let tester = SigningKey::ed25519_from_seed(&[5; 32]);
        let store = TrustStore::new(
            vec![TrustedKey::new(
                "tests",
                tester.public_key(),
                &[TEST_RESULT],
                &[],
                None,
            )],
            1,
        )
        .unwrap();
        let v = run(&store, &[signed(&statement, &tester)], "prod");
        assert_eq!(v.attestations.len(), 1, "{:?}", v.rejected);
        assert_eq!(v.attestations[0].provenance, None);
        assert_eq!(v.attestations[0].predicate["result"], "PASSED");
        let json = serde_json::to_value(&v.attestations[0]).unwrap();
        assert!(json.get("provenance").is_none());
    }

    // ---- each rejection reason, with a crafted envelope ----

    #[test]
    fn malformed_envelope_is_rejected() {
        let fx = fx();
        let s = store(&fx, 1);
        assert_eq!(
            only_rejection(&run(&s, &[json!("x")], "prod")),
            "envelope is not a JSON object"
        );
        assert_eq!(
            only_rejection(&run(
                &s,
                &[json!({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": ""})],
                "prod"
            )),
            "envelope is missing `signatures`"
        );
        assert_eq!(
            only_rejection(&run(
                &s,
                &[json!({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": "", "signatures": []})],
                "prod"
            )),
            "envelope has no signatures"
        );
    }

    #[test]
    fn bad_base64_is_rejected_naming_the_field() {
        let fx = fx();
        let mut env = signed(&provenance_v1(BUILDER, DIGEST), &fx.ci);
        env["signatures"][0]["sig"] = json!("not*base64");
        let reason = only_rejection(&run(&store(&fx, 1), &[env], "prod")).to_owned();
        assert!(
            reason.starts_with("bad base64 in `signatures[0].sig`: "),
            "{reason}"
        );
    }

    #[test]
    fn wrong_length_signature_is_rejected_as_malformed() {
        let fx = fx();
        let mut env = signed(&provenance_v1(BUILDER, DIGEST), &fx.ci);
        env["signatures"][0]["sig"] = json!(encode_base64(&[7u8; 10]));
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[env], "prod")),
            "no signature by a trusted key (`signatures[0]` is malformed: 10 bytes is not a valid ECDSA P-256 or Ed25519 signature)"
        );
    }

    #[test]
    fn malformed_der_signature_is_rejected() {
        let fx = fx();
        let mut env = signed(&provenance_v1(BUILDER, DIGEST), &fx.p256);
        let mut der = base64::engine::general_purpose::STANDARD
            .decode(env["signatures"][0]["sig"].as_str().unwrap())
            .unwrap();
        der[1] = der[1].wrapping_add(5); // the SEQUENCE length now lies
        env["signatures"][0]["sig"] = json!(encode_base64(&der));
        let reason = only_rejection(&run(&store(&fx, 1), &[env], "prod")).to_owned();
        assert!(reason.contains("`signatures[0]` is malformed"), "{reason}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let fx = fx();
        let env = signed(&provenance_v1(BUILDER, DIGEST), &fx.untrusted);
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[env], "prod")),
            format!(
                "no signature by a trusted key (`signatures[0]` has keyid `{}`, which is not a trusted key, and verifies with no trusted key)",
                fx.untrusted.keyid()
            )
        );
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let fx = fx();
        let mut env = signed(&provenance_v1(BUILDER, DIGEST), &fx.ci);
        let forged = serde_json::to_vec(&provenance_v1(BUILDER, &"0".repeat(64))).unwrap();
        env["payload"] = json!(encode_base64(&forged));
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[env], "prod")),
            "no signature by a trusted key (`signatures[0]` does not verify with key `ci` its keyid names, nor with any other trusted key)"
        );
    }

    #[test]
    fn flipping_any_bit_of_the_payload_fails_verification() {
        let fx = fx();
        let s = store(&fx, 1);
        let payload = serde_json::to_vec(&provenance_v1(BUILDER, DIGEST)).unwrap();
        let env = envelope(&payload, &[(&fx.ci, None)]);
        assert_eq!(
            run(&s, std::slice::from_ref(&env), "prod")
                .attestations
                .len(),
            1
        );
        for i in 0..payload.len() {
            let mut bad = payload.clone();
            bad[i] ^= 0x01;
            let mut e = env.clone();
            e["payload"] = json!(encode_base64(&bad));
            let v = run(&s, &[e], "prod");
            assert!(v.attestations.is_empty(), "byte {i} flipped still verified");
        }
    }

    #[test]
    fn signature_over_the_raw_payload_is_rejected() {
        let fx = fx();
        let payload = serde_json::to_vec(&provenance_v1(BUILDER, DIGEST)).unwrap();
        let legacy = fx.ci.sign(&payload); // no PAE
        let env = json!({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": encode_base64(&payload),
            "signatures": [{"keyid": fx.ci.keyid(), "sig": encode_base64(&legacy)}]});
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[env], "prod")),
            "no signature by a trusted key (`signatures[0]` by key `ci` signs the raw payload, not the DSSE PAE; such legacy signatures are not accepted)"
        );
    }

    #[test]
    fn subject_mismatch_verifies_but_says_subject_matches_false() {
        let fx = fx();
        let other = "1".repeat(64);
        let v = run(
            &store(&fx, 1),
            &[signed(&provenance_v1(BUILDER, &other), &fx.ci)],
            "prod",
        );
        assert!(v.rejected.is_empty());
        assert!(!v.attestations[0].subject_matches);
        // Sharing sha256 but disagreeing on sha512 is a mismatch too.
        let mut st = provenance_v1(BUILDER, DIGEST);
        st["subject"][0]["digest"]["sha512"] = json!("aa");
        let mut art = artifact();
        art.insert("sha512", "bb");
        let v = verify_attestations(&store(&fx, 1), &[signed(&st, &fx.ci)], &art, "prod");
        assert!(!v.attestations[0].subject_matches);
    }

    #[test]
    fn untrusted_builder_is_rejected() {
        let fx = fx();
        let env = signed(
            &provenance_v1("https://evil.example.com/builder", DIGEST),
            &fx.ci,
        );
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[env], "prod")),
            "key `ci` is not trusted for builder `https://evil.example.com/builder`"
        );
        // A prefix entry vouches for ids under it only.
        let env = signed(
            &provenance_v1("https://ci.example.com/builders/other", DIGEST),
            &fx.ci2,
        );
        assert_eq!(run(&store(&fx, 1), &[env], "prod").attestations.len(), 1);
        let env = signed(&provenance_v1("https://ci.example.comm/x", DIGEST), &fx.ci2);
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[env], "prod")),
            "key `ci2` is not trusted for builder `https://ci.example.comm/x`"
        );
    }

    #[test]
    fn wrong_predicate_type_is_rejected() {
        let fx = fx();
        let statement = json!({"_type": STATEMENT_V1, "subject": [{"digest": {"sha256": DIGEST}}],
            "predicateType": "https://promo-policy.dev/promotion-decision/v1", "predicate": {}});
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[signed(&statement, &fx.ci)], "prod")),
            "key `ci` is not trusted for predicate type `https://promo-policy.dev/promotion-decision/v1`"
        );
    }

    #[test]
    fn wrong_environment_is_rejected() {
        let fx = fx();
        let env = signed(&provenance_v1(BUILDER, DIGEST), &fx.ci);
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), std::slice::from_ref(&env), "dev")),
            "key `ci` is not trusted for environment `dev`"
        );
        assert_eq!(run(&store(&fx, 1), &[env], "staging").attestations.len(), 1);
    }

    #[test]
    fn threshold_not_met_with_a_duplicate_signature() {
        let fx = fx();
        let payload = serde_json::to_vec(&provenance_v1(BUILDER, DIGEST)).unwrap();
        let env = envelope(&payload, &[(&fx.ci, None), (&fx.ci, Some("ci2"))]);
        assert_eq!(
            only_rejection(&run(&store(&fx, 2), &[env], "prod")),
            "threshold 2 not met (1 valid: `ci`); `signatures[1]` is another signature by key `ci`, counted once"
        );
    }

    #[test]
    fn threshold_met_by_two_distinct_keys_reports_all_signers() {
        let fx = fx();
        let payload = serde_json::to_vec(&provenance_v1(BUILDER, DIGEST)).unwrap();
        let env = envelope(
            &payload,
            &[(&fx.p256, None), (&fx.ci, None), (&fx.untrusted, None)],
        );
        let v = run(&store(&fx, 2), &[env], "prod");
        assert!(v.rejected.is_empty(), "{:?}", v.rejected);
        assert_eq!(v.attestations[0].signers, vec!["ci-p256", "ci"]);
        assert_eq!(v.attestations[0].signer.id(), "ci-p256");
        assert_eq!(v.attestations[0].keyid, fx.p256.keyid());
    }

    #[test]
    fn threshold_counts_only_permitted_signers() {
        let fx = fx();
        let payload = serde_json::to_vec(&provenance_v1(BUILDER, DIGEST)).unwrap();
        let env = envelope(&payload, &[(&fx.ci, None), (&fx.ci2, None)]);
        // `ci` is not trusted for dev; `ci2` is.
        assert_eq!(
            only_rejection(&run(&store(&fx, 2), &[env], "dev")),
            "threshold 2 not met (1 valid: `ci2`); key `ci` is not trusted for environment `dev`"
        );
    }

    #[test]
    fn keyid_is_only_a_hint() {
        let fx = fx();
        let payload = serde_json::to_vec(&provenance_v1(BUILDER, DIGEST)).unwrap();
        // Signed by ci2 but claiming ci's keyid: still ci2, never ci.
        let env = envelope(&payload, &[(&fx.ci2, Some(&fx.ci.keyid()))]);
        let v = run(&store(&fx, 1), &[env], "dev");
        assert_eq!(v.attestations[0].signer.id(), "ci2");
        assert_eq!(v.attestations[0].keyid, fx.ci2.keyid());
        // Signed by the untrusted key but claiming ci's keyid: rejected.
        let env = envelope(&payload, &[(&fx.untrusted, Some(&fx.ci.keyid()))]);
        assert!(run(&store(&fx, 1), &[env], "prod").attestations.is_empty());
    }

    #[test]
    fn wrong_payload_type_is_rejected() {
        let fx = fx();
        let mut env = signed(&provenance_v1(BUILDER, DIGEST), &fx.ci);
        env["payloadType"] = json!("application/json");
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[env], "prod")),
            "payload type `application/json` is not supported (expected `application/vnd.in-toto+json`)"
        );
    }

    #[test]
    fn signed_payload_that_is_not_a_statement_is_rejected() {
        let fx = fx();
        let env = envelope(b"{\"hello\": 1}", &[(&fx.ci, None)]);
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[env], "prod")),
            "payload is not an in-toto statement: `_type` is missing"
        );
        let env = envelope(b"\x00\x01", &[(&fx.ci, None)]);
        let reason = only_rejection(&run(&store(&fx, 1), &[env], "prod")).to_owned();
        assert!(
            reason.starts_with("payload is not an in-toto statement: payload is not JSON"),
            "{reason}"
        );
    }

    #[test]
    fn signed_provenance_without_a_builder_is_rejected() {
        let fx = fx();
        let mut st = provenance_v1(BUILDER, DIGEST);
        st["predicate"]["runDetails"] = json!({});
        assert_eq!(
            only_rejection(&run(&store(&fx, 1), &[signed(&st, &fx.ci)], "prod")),
            "payload is not valid SLSA provenance: `runDetails.builder.id` is missing"
        );
    }

    #[test]
    fn an_empty_store_rejects_everything() {
        let fx = fx();
        let v = run(
            &TrustStore::empty(),
            &[signed(&provenance_v1(BUILDER, DIGEST), &fx.ci)],
            "prod",
        );
        assert_eq!(only_rejection(&v), "no trusted keys are configured");
    }

    #[test]
    fn many_attestations_keep_their_indices() {
        let fx = fx();
        let good = signed(&provenance_v1(BUILDER, DIGEST), &fx.ci);
        let v = run(
            &store(&fx, 1),
            &[json!(1), good.clone(), json!([]), good],
            "prod",
        );
        assert_eq!(
            v.attestations.iter().map(|a| a.index).collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(
            v.rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
            [0, 2]
        );
    }

    #[test]
    fn hostile_shapes_never_panic() {
        let fx = fx();
        let s = store(&fx, 1);
        let good = signed(&provenance_v1(BUILDER, DIGEST), &fx.ci);
        let mut inputs = vec![
            json!(null),
            json!(true),
            json!(1e308),
            json!(-1),
            json!(""),
            json!([[]]),
            json!({}),
            json!({"payloadType": null, "payload": null, "signatures": null}),
            json!({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": "", "signatures": [{"sig": ""}]}),
            json!({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": "====", "signatures": [{"sig": "=="}]}),
            json!({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": "AA", "signatures": [{"sig": "AA", "keyid": {}}]}),
        ];
        // Every field of a good envelope replaced by every odd value.
        for field in ["payloadType", "payload", "signatures"] {
            for odd in [
                json!(null),
                json!(0),
                json!([]),
                json!({}),
                json!("é"),
                json!([null]),
            ] {
                let mut e = good.clone();
                e[field] = odd;
                inputs.push(e);
            }
        }
        for odd in [json!(null), json!(0), json!(""), json!("AAAA"), json!({})] {
            let mut e = good.clone();
            e["signatures"][0]["sig"] = odd;
            inputs.push(e);
        }
        // Signed statements of odd shapes.
        for st in [
            json!({}),
            json!({"_type": STATEMENT_V1, "subject": [{"digest": {"sha256": DIGEST}}], "predicateType": SLSA_PROVENANCE_V1, "predicate": {"runDetails": {"builder": {"id": []}}}}),
            json!({"_type": STATEMENT_V1, "subject": [{"digest": {"sha256": DIGEST}}], "predicateType": SLSA_PROVENANCE_V02, "predicate": {"builder": {"id": BUILDER}, "buildType": "x", "materials": [null, 1, {"uri": 2}]}}),
        ] {
            inputs.push(signed(&st, &fx.ci));
        }
        let v = run(&s, &inputs, "prod");
        assert_eq!(v.attestations.len() + v.rejected.len(), inputs.len());
        assert!(v.rejected.iter().all(|r| !r.reason.is_empty()));
    }
}
