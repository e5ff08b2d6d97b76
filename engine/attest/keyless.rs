//! Keyless attestations (CONTRACT §2c): verifies a Sigstore bundle offline against the root its
//! trusted identity names and binds the certificate's identity to what the trust file lets it
//! vouch for; a bundle is a fact only if every step holds.
//!
//! The cryptographic steps are `sigstore-verify`'s ([`sigstore_verify::Verifier::verify`]): the signing time
//! from a verified signed entry timestamp, inclusion proof with signed checkpoint or RFC
//! 3161 timestamp (never from an unverified `integratedTime`); the certificate path to a
//! CA of the root valid at that time; SCTs where the root lists CT logs; the DSSE
//! signature over the PAE with the leaf key; the log entry's body consistent with this
//! envelope and certificate (CVE-2022-36056). This module adds what that crate leaves to
//! its caller: which identities and roots apply, the identity match (issuer exact, SAN
//! exact or anchored pattern, Fulcio extensions equal), the grants, and the rejection
//! reasons named by step.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sigstore_verify::crypto::{parse_certificate_info, FulcioCiClaims};
use sigstore_verify::error::{CertificateError, TimestampError, TransparencyLogError};
use sigstore_verify::types::{Artifact, ArtifactDigest, Bundle, HashAlgorithm, SignatureContent};
use sigstore_verify::VerificationPolicy;

use crate::attest::roots::{names_of, Root};
use crate::attest::statement::Statement;
use crate::attest::trust::{Grants, TrustStore};
use crate::attest::verify::{AttestationSigner, SignedStatement, VerifiedAttestation};
use crate::attest::{AttestError, INTOTO_PAYLOAD_TYPE};
use crate::digest::DigestSet;

/// The bundle media types read here (v0.1, v0.2 and both spellings of v0.3).
pub const BUNDLE_MEDIA_TYPES: &[&str] = &[
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
];

/// Whether an attestation is a Sigstore bundle rather than a DSSE envelope: it says so
/// in `mediaType` (an envelope has none).
pub fn is_bundle(value: &Value) -> bool {
    value
        .get("mediaType")
        .and_then(Value::as_str)
        .is_some_and(|m| m.starts_with("application/vnd.dev.sigstore.bundle"))
}

/// The rejection reasons of CONTRACT §2c, one per verification step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Step {
    /// The bundle does not parse, or is not a DSSE attestation bundle.
    #[serde(rename = "bundle.malformed")]
    Malformed,
    /// The certificate does not chain to a CA of the root valid at the signing time,
    /// or is outside its validity then.
    #[serde(rename = "certificate.chain")]
    CertificateChain,
    /// The certificate names no trusted identity.
    #[serde(rename = "certificate.identity")]
    CertificateIdentity,
    /// The root lists transparency logs but the bundle carries no log entry.
    #[serde(rename = "tlog.missing")]
    TlogMissing,
    /// The log entry's inclusion proof, checkpoint or signed entry timestamp fails.
    #[serde(rename = "tlog.inclusion")]
    TlogInclusion,
    /// The log entry's body describes another envelope or certificate.
    #[serde(rename = "tlog.body_mismatch")]
    TlogBodyMismatch,
    /// No signing time could be proved, or a timestamp does not verify.
    #[serde(rename = "timestamp.invalid")]
    TimestampInvalid,
    /// The certificate's SCT does not verify with a CT log of the root.
    #[serde(rename = "sct.invalid")]
    SctInvalid,
    /// The DSSE signature does not verify with the certificate's key.
    #[serde(rename = "signature.invalid")]
    SignatureInvalid,
    /// The certificate chains to no CA of any root a matching identity names.
    #[serde(rename = "root.unknown")]
    RootUnknown,
}

impl Step {
    /// The reason code, e.g. `tlog.inclusion`.
    pub fn code(self) -> &'static str {
        match self {
            Step::Malformed => "bundle.malformed",
            Step::CertificateChain => "certificate.chain",
            Step::CertificateIdentity => "certificate.identity",
            Step::TlogMissing => "tlog.missing",
            Step::TlogInclusion => "tlog.inclusion",
            Step::TlogBodyMismatch => "tlog.body_mismatch",
            Step::TimestampInvalid => "timestamp.invalid",
            Step::SctInvalid => "sct.invalid",
            Step::SignatureInvalid => "signature.invalid",
            Step::RootUnknown => "root.unknown",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

fn fail(step: Step, reason: impl Into<String>) -> AttestError {
    AttestError::Keyless {
        step,
        reason: reason.into(),
    }
}

/// How an identity matches the certificate's SAN.
#[derive(Debug, Clone)]
pub enum SubjectMatch {
    /// `subject`: the SAN, exactly.
    Exact(String),
    /// `subjectPattern`: a regex matched against the whole SAN (the text as written,
    /// and the anchored regex compiled from it).
    Pattern(String, Regex),
}

impl SubjectMatch {
    fn matches(&self, san: &str) -> bool {
        match self {
            SubjectMatch::Exact(s) => s == san,
            SubjectMatch::Pattern(_, re) => re.is_match(san),
        }
    }

    /// The trust file's text for it, as written.
    pub fn as_str(&self) -> &str {
        match self {
            SubjectMatch::Exact(s) => s,
            SubjectMatch::Pattern(text, _) => text,
        }
    }
}

impl PartialEq for SubjectMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SubjectMatch::Exact(a), SubjectMatch::Exact(b)) => a == b,
            (SubjectMatch::Pattern(a, _), SubjectMatch::Pattern(b, _)) => a == b,
            _ => false,
        }
    }
}

impl Eq for SubjectMatch {}

/// One `identities` entry of the trust file: a keyless signer and what it may vouch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIdentity {
    /// The trust file's `id`: what `signer.identity` reports.
    pub id: String,
    /// The name (under `trustedRoots`) of the root its certificates must chain to.
    pub trusted_root: String,
    /// The OIDC issuer, matched exactly.
    pub issuer: String,
    /// The SAN (URI or email) rule.
    pub subject: SubjectMatch,
    /// Fulcio extensions by their camelCase names, each required present and equal.
    pub extensions: BTreeMap<String, String>,
    /// What it may vouch for, exactly as for a key.
    pub grants: Grants,
}

const IDENTITY_FIELDS: &[&str] = &[
    "id",
    "trustedRoot",
    "issuer",
    "subject",
    "subjectPattern",
    "extensions",
    "predicateTypes",
    "builders",
    "environments",
    "approvers",
];

/// Fulcio's extensions (OID arc 1.3.6.1.4.1.57264.1), by the camelCase names its
/// documentation gives them, with how to read each from a parsed certificate.
type ClaimReader = fn(&FulcioCiClaims) -> Option<&String>;
const EXTENSIONS: &[(&str, ClaimReader)] = &[
    ("buildSignerURI", |c| c.build_signer_uri.as_ref()),
    ("buildSignerDigest", |c| c.build_signer_digest.as_ref()),
    ("runnerEnvironment", |c| c.runner_environment.as_ref()),
    ("sourceRepositoryURI", |c| c.source_repository_uri.as_ref()),
    ("sourceRepositoryDigest", |c| {
        c.source_repository_digest.as_ref()
    }),
    ("sourceRepositoryRef", |c| c.source_repository_ref.as_ref()),
    ("sourceRepositoryIdentifier", |c| {
        c.source_repository_identifier.as_ref()
    }),
    ("sourceRepositoryOwnerURI", |c| {
        c.source_repository_owner_uri.as_ref()
    }),
    ("sourceRepositoryOwnerIdentifier", |c| {
        c.source_repository_owner_identifier.as_ref()
    }),
    ("buildConfigURI", |c| c.build_config_uri.as_ref()),
    ("buildConfigDigest", |c| c.build_config_digest.as_ref()),
    ("buildTrigger", |c| c.build_trigger.as_ref()),
    ("runInvocationURI", |c| c.run_invocation_uri.as_ref()),
    ("sourceRepositoryVisibilityAtSigning", |c| {
        c.source_repository_visibility_at_signing.as_ref()
    }),
    ("deploymentEnvironment", |c| {
        c.deployment_environment.as_ref()
    }),
    ("githubWorkflowTrigger", |c| {
        c.deprecated_github.workflow_trigger.as_ref()
    }),
    ("githubWorkflowSHA", |c| {
        c.deprecated_github.workflow_sha.as_ref()
    }),
    ("githubWorkflowName", |c| {
        c.deprecated_github.workflow_name.as_ref()
    }),
    ("githubWorkflowRepository", |c| {
        c.deprecated_github.workflow_repository.as_ref()
    }),
    ("githubWorkflowRef", |c| {
        c.deprecated_github.workflow_ref.as_ref()
    }),
];

/// The Fulcio extensions a certificate carries, by name: `signer.extensions` in Rego.
pub fn extensions_of(claims: &FulcioCiClaims) -> BTreeMap<String, String> {
    EXTENSIONS
        .iter()
        .filter_map(|(name, read)| read(claims).map(|v| ((*name).to_owned(), v.clone())))
        .collect()
}

/// `subject` (exact) or `subjectPattern` (anchored), exactly one of them.
fn subject_rule(subject: Option<String>, pattern: Option<String>) -> Result<SubjectMatch, String> {
    match (subject, pattern) {
        (Some(s), None) => Ok(SubjectMatch::Exact(s)),
        (None, Some(p)) => {
            // Anchored whole-string: `^(?:...)$`, so a pattern cannot match a SAN that
            // merely contains an allowed one.
            let re = Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| format!("`subjectPattern` is not a valid regex: {e}"))?;
            Ok(SubjectMatch::Pattern(p, re))
        }
        (Some(_), Some(_)) => Err("give `subject` or `subjectPattern`, not both".into()),
        (None, None) => {
            Err("needs `subject` (exact SAN) or `subjectPattern` (anchored regex)".into())
        }
    }
}

/// `extensions`: known Fulcio extension names to the exact values required.
fn extension_rules(value: Option<&Value>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let map = match value {
        None => return Ok(out),
        Some(Value::Object(map)) => map,
        Some(_) => return Err("`extensions` must be an object of strings".into()),
    };
    for (name, v) in map {
        if !EXTENSIONS.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = EXTENSIONS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown Fulcio extension `{name}` (expected one of {})",
                known.join(", ")
            ));
        }
        let Value::String(s) = v else {
            return Err(format!("extension `{name}` must be a string"));
        };
        out.insert(name.clone(), s.clone());
    }
    Ok(out)
}

impl TrustedIdentity {
    /// Reads one `identities` entry; `roots` are the file's `trustedRoots`, by name.
    pub fn from_json(
        index: usize,
        entry: &Value,
        roots: &BTreeMap<String, Root>,
    ) -> Result<TrustedIdentity, AttestError> {
        let obj = entry.as_object().ok_or_else(|| AttestError::TrustFile {
            reason: format!("identities[{index}]: the entry is not an object"),
        })?;
        let id = match obj.get("id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => {
                return Err(AttestError::TrustFile {
                    reason: format!(
                        "identities[{index}]: `id` is missing or not a non-empty string"
                    ),
                })
            }
        };
        let err = |reason: String| AttestError::TrustFile {
            reason: format!("identity `{id}`: {reason}"),
        };
        if let Some(unknown) = obj.keys().find(|k| !IDENTITY_FIELDS.contains(&k.as_str())) {
            return Err(err(format!(
                "unknown field `{unknown}` (expected one of {})",
                IDENTITY_FIELDS.join(", ")
            )));
        }
        let text = |field: &str| -> Result<Option<String>, AttestError> {
            match obj.get(field) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(err(format!("`{field}` must be a non-empty string"))),
            }
        };
        let trusted_root = text("trustedRoot")?.ok_or_else(|| {
            err("`trustedRoot` is missing (name a root under `trustedRoots`)".into())
        })?;
        if !roots.contains_key(&trusted_root) {
            return Err(err(format!(
                "`trustedRoot` `{trusted_root}` is not listed under `trustedRoots`"
            )));
        }
        let issuer = text("issuer")?.ok_or_else(|| err("`issuer` is missing".into()))?;
        let subject = subject_rule(text("subject")?, text("subjectPattern")?).map_err(err)?;
        let extensions = extension_rules(obj.get("extensions")).map_err(err)?;
        let grants = Grants::from_json(obj, &err)?;
        Ok(TrustedIdentity {
            id,
            trusted_root,
            issuer,
            subject,
            extensions,
            grants,
        })
    }

    /// Why this identity does not match the certificate, or `None` if it does.
    fn mismatch(
        &self,
        issuer: &str,
        san: &str,
        extensions: &BTreeMap<String, String>,
    ) -> Option<String> {
        if self.issuer != issuer {
            return Some(format!("`{}`: issuer is not `{}`", self.id, self.issuer));
        }
        if !self.subject.matches(san) {
            let how = match self.subject {
                SubjectMatch::Exact(_) => "subject",
                SubjectMatch::Pattern(..) => "subjectPattern",
            };
            return Some(format!(
                "`{}`: SAN does not match {how} `{}`",
                self.id,
                self.subject.as_str()
            ));
        }
        for (name, want) in &self.extensions {
            match extensions.get(name) {
                None => return Some(format!("`{}`: extension `{name}` is absent", self.id)),
                Some(got) if got != want => {
                    return Some(format!(
                        "`{}`: extension `{name}` is `{got}`, not `{want}`",
                        self.id
                    ))
                }
                Some(_) => {}
            }
        }
        None
    }
}

/// What a keyless signer is, as policy reads it under `signer` (with `"kind": "keyless"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeylessSigner {
    /// The trust file's id of the identity that matched.
    pub identity: String,
    /// The certificate's OIDC issuer.
    pub issuer: String,
    /// The certificate's SAN (URI or email).
    pub subject: String,
    /// The Fulcio extensions the certificate carries, by name.
    pub extensions: BTreeMap<String, String>,
    /// The earliest verified signing time (RFC 3339).
    pub signed_at: String,
    /// The verified transparency-log entry, if the root has a log.
    pub transparency_log: Option<LogEntry>,
}

/// A verified Rekor entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// The entry's index in its log.
    pub log_index: u64,
    /// The entry's integrated time (RFC 3339), when a signed entry timestamp vouches for
    /// it; `None` for Rekor v2 entries, which have none.
    pub integrated_time: Option<String>,
}

/// Verifies one Sigstore bundle for promotion of the artifact with `artifact_digest`
/// into `environment`: the keyless half of [`crate::attest::verify::verify_envelope`].
///
/// The steps, each its own function: read the bundle and its statement, read the
/// certificate's claims, pick the identities that claim it, verify every cryptographic
/// step against their roots, check the grants, then report the signer.
pub fn verify_bundle(
    store: &TrustStore,
    index: usize,
    value: &Value,
    artifact_digest: &DigestSet,
    environment: &str,
) -> Result<VerifiedAttestation, AttestError> {
    let ReadBundle {
        text,
        bundle,
        signed,
        binding,
    } = read_bundle(value)?;
    let claims = Claims::of(&bundle)?;
    let candidates = claiming_identities(store, &claims)?;
    let (root, result) = verify_with_roots(store, &candidates, &bundle, &claims, &binding)?;
    if store.threshold() > 1 {
        return Err(AttestError::ThresholdNotMet {
            threshold: store.threshold(),
            valid: 1,
            signers: String::new(),
            details:
                "; a Sigstore bundle carries one signature, so it cannot meet a threshold above 1"
                    .into(),
        });
    }
    let identity = permitted_identity(&candidates, root, &signed, environment)?;
    let keyid = claims.keyid.clone();
    let signer = signer_of(identity, claims, &bundle, &result)?;
    Ok(signed.verified(
        index,
        keyid,
        AttestationSigner::Keyless(signer),
        vec![identity.id.clone()],
        artifact_digest,
        text.as_bytes(),
    ))
}

/// A bundle as read: its compact JSON (what `envelopeDigest` hashes), the parsed
/// bundle, its statement (read strictly, trusted only at the end) and the digest the
/// verifier binds the statement to.
struct ReadBundle {
    text: String,
    bundle: Bundle,
    signed: SignedStatement,
    binding: ArtifactDigest,
}

/// Reads a bundle (see [`ReadBundle`]).
fn read_bundle(value: &Value) -> Result<ReadBundle, AttestError> {
    let media_type = value.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if !BUNDLE_MEDIA_TYPES.contains(&media_type) {
        return Err(fail(
            Step::Malformed,
            format!("media type `{media_type}` is not a bundle version this build reads (0.1, 0.2, 0.3)"),
        ));
    }
    let text = serde_json::to_string(value)
        .map_err(|e| fail(Step::Malformed, format!("cannot re-serialise: {e}")))?;
    let bundle = Bundle::from_json(&text).map_err(|e| fail(Step::Malformed, e.to_string()))?;
    let SignatureContent::DsseEnvelope(envelope) = &bundle.content else {
        return Err(fail(
            Step::Malformed,
            "a message-signature bundle signs a blob, not an attestation: only DSSE bundles carry in-toto statements",
        ));
    };
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(fail(
            Step::Malformed,
            format!(
                "DSSE payload type `{}` is not `{INTOTO_PAYLOAD_TYPE}`",
                envelope.payload_type
            ),
        ));
    }
    let payload = envelope.payload.as_bytes();
    let max = crate::attest::budget::MAX_PAYLOAD_BYTES;
    if payload.len() > max {
        return Err(fail(
            Step::Malformed,
            format!(
                "payload is {} bytes; at most {max} are accepted",
                payload.len()
            ),
        ));
    }
    // Read before the signature is checked (as the verifier itself must, to bind the
    // subject), with the same strict parser; nothing from it is trusted until the end.
    let signed =
        SignedStatement::read(payload).map_err(|e| fail(Step::Malformed, e.to_string()))?;
    let binding = binding_digest(&signed.statement)?;
    Ok(ReadBundle {
        text,
        bundle,
        signed,
        binding,
    })
}

/// What the bundle's certificate claims, read without trusting it: to pick identities
/// and roots, and (once verified) to report the signer.
struct Claims {
    issuer: String,
    san: String,
    extensions: BTreeMap<String, String>,
    /// Hex SHA-256 of the certificate's SPKI: the signer's keyid.
    keyid: String,
    chain: Chain,
}

impl Claims {
    fn of(bundle: &Bundle) -> Result<Claims, AttestError> {
        let leaf = bundle.signing_certificate().ok_or_else(|| {
            fail(
                Step::Malformed,
                "the bundle carries no certificate (a public-key bundle is not keyless: list its key under `keys`)",
            )
        })?;
        let cert = parse_certificate_info(leaf).map_err(|e| {
            fail(
                Step::Malformed,
                format!("the certificate does not parse: {e}"),
            )
        })?;
        Ok(Claims {
            issuer: cert.issuer.clone().unwrap_or_default(),
            san: cert
                .identity
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            extensions: extensions_of(&cert.ci_claims),
            keyid: hex::encode(Sha256::digest(cert.public_key.as_bytes())),
            chain: Chain::of(bundle)?,
        })
    }
}

/// The identities whose issuer, SAN and extensions the certificate claims. Nothing is
/// trusted yet: this picks the roots to verify against, and makes "no such identity"
/// the precise reason.
fn claiming_identities<'s>(
    store: &'s TrustStore,
    claims: &Claims,
) -> Result<Vec<&'s TrustedIdentity>, AttestError> {
    let identities = store.identities();
    if identities.is_empty() {
        return Err(fail(
            Step::CertificateIdentity,
            "no keyless identities are trusted",
        ));
    }
    let mut misses = Vec::new();
    let candidates: Vec<_> = identities
        .iter()
        .filter(
            |id| match id.mismatch(&claims.issuer, &claims.san, &claims.extensions) {
                None => true,
                Some(why) => {
                    misses.push(why);
                    false
                }
            },
        )
        .collect();
    if candidates.is_empty() {
        // The first few reasons say enough; a long trust file would drown the message.
        const SHOWN: usize = 3;
        let more = misses.len().saturating_sub(SHOWN);
        misses.truncate(SHOWN);
        if more > 0 {
            misses.push(format!("{more} more"));
        }
        return Err(fail(
            Step::CertificateIdentity,
            format!(
                "certificate for `{}` from issuer `{}` matches no trusted identity ({})",
                claims.san,
                claims.issuer,
                misses.join("; ")
            ),
        ));
    }
    Ok(candidates)
}

/// Every cryptographic step against each root a candidate names, until one holds; else
/// the first root's reason.
fn verify_with_roots<'s>(
    store: &'s TrustStore,
    candidates: &[&TrustedIdentity],
    bundle: &Bundle,
    claims: &Claims,
    binding: &ArtifactDigest,
) -> Result<(&'s Root, sigstore_verify::VerificationResult), AttestError> {
    let mut first_failure = None;
    let mut tried: Vec<&str> = Vec::new();
    for candidate in candidates {
        if tried.contains(&candidate.trusted_root.as_str()) {
            continue;
        }
        tried.push(&candidate.trusted_root);
        let outcome = match store.root(&candidate.trusted_root) {
            // INVARIANT: the store refuses an identity naming an unlisted root.
            None => Err(fail(
                Step::RootUnknown,
                format!("root `{}` is not loaded", candidate.trusted_root),
            )),
            Some(root) => verify_against(root, bundle, &claims.chain, binding).map(|r| (root, r)),
        };
        match outcome {
            Ok(verified) => return Ok(verified),
            Err(e) => {
                first_failure.get_or_insert(e);
            }
        }
    }
    Err(first_failure.unwrap_or_else(|| fail(Step::RootUnknown, "no root to verify against")))
}

/// The first identity of the root that verified whose grants permit this statement.
fn permitted_identity<'a>(
    candidates: &[&'a TrustedIdentity],
    root: &Root,
    statement: &SignedStatement,
    environment: &str,
) -> Result<&'a TrustedIdentity, AttestError> {
    let mut denials = Vec::new();
    for candidate in candidates.iter().filter(|c| c.trusted_root == root.name) {
        match candidate
            .grants
            .denial("identity", &candidate.id, statement, environment)
        {
            None => return Ok(candidate),
            Some(why) => denials.push(why),
        }
    }
    Err(AttestError::NotPermitted { reasons: denials })
}

/// The signer a verified bundle reports.
fn signer_of(
    identity: &TrustedIdentity,
    claims: Claims,
    bundle: &Bundle,
    result: &sigstore_verify::VerificationResult,
) -> Result<KeylessSigner, AttestError> {
    let signed_at = result
        .verified_timestamps()
        .iter()
        .min()
        .map(|t| t.to_string())
        .ok_or_else(|| fail(Step::TimestampInvalid, "no verified signing time"))?;
    let transparency_log = if result.tlog_verified() {
        bundle
            .verification_material
            .tlog_entries
            .first()
            .map(|entry| LogEntry {
                log_index: u64::try_from(entry.log_index.as_i64()).unwrap_or(0),
                integrated_time: result.integrated_time().map(|t| t.to_string()),
            })
    } else {
        None
    };
    Ok(KeylessSigner {
        identity: identity.id.clone(),
        issuer: claims.issuer,
        subject: claims.san,
        extensions: claims.extensions,
        signed_at,
        transparency_log,
    })
}

/// The digest the verifier binds the payload to. Subject matching is the engine's own
/// (`subjectMatches`, as for key-signed envelopes: a verified statement about another
/// artifact is a fact policy must see), so the binding is to the statement's own first
/// sha256 or sha512 subject.
fn binding_digest(statement: &Statement) -> Result<ArtifactDigest, AttestError> {
    for (alg, algorithm) in [
        ("sha256", HashAlgorithm::Sha2256),
        ("sha512", HashAlgorithm::Sha2512),
    ] {
        for subject in &statement.subject {
            if let Some(hex_digest) = subject.digest.get(alg) {
                let bytes = hex::decode(hex_digest).map_err(|_| {
                    fail(
                        Step::Malformed,
                        format!("subject digest `{alg}` is not hex"),
                    )
                })?;
                return ArtifactDigest::new(algorithm, bytes)
                    .map_err(|e| fail(Step::Malformed, e.to_string()));
            }
        }
    }
    Err(fail(
        Step::Malformed,
        "no subject has a sha256 or sha512 digest the signature could be bound to",
    ))
}

/// Every cryptographic step against one root.
fn verify_against(
    root: &Root,
    bundle: &Bundle,
    chain: &Chain,
    binding: &ArtifactDigest,
) -> Result<sigstore_verify::VerificationResult, AttestError> {
    if !root.may_issue(&chain.leaf_issuer, &chain.intermediate_subjects) {
        return Err(fail(
            Step::RootUnknown,
            format!(
                "the certificate's issuer is no certificate authority of root `{}`",
                root.name
            ),
        ));
    }
    if root.has_tlogs && bundle.verification_material.tlog_entries.is_empty() {
        return Err(fail(
            Step::TlogMissing,
            format!(
                "root `{}` lists transparency logs but the bundle carries no log entry",
                root.name
            ),
        ));
    }
    // The identity is matched by the caller; here only what the root can prove.
    let mut policy = VerificationPolicy::any_identity();
    if !root.has_tlogs {
        // A root without a log (GitHub's): the signing time must come from a TSA.
        policy = policy.skip_tlog_unsafe();
    }
    if !root.has_ctlogs {
        policy = policy.skip_sct();
    }
    root.verifier
        .verify(Artifact::from_digest(binding.clone()), bundle, &policy)
        .map_err(|e| fail(step_of(&e), format!("root `{}`: {e}", root.name)))
}

/// The issuer names a bundle's certificates give, read to pick roots (not trusted).
struct Chain {
    /// The DER issuer name of the leaf.
    leaf_issuer: Vec<u8>,
    /// The DER subject names of the intermediates the bundle ships (v0.1/v0.2 chains).
    intermediate_subjects: Vec<Vec<u8>>,
}

impl Chain {
    fn of(bundle: &Bundle) -> Result<Chain, AttestError> {
        use sigstore_verify::types::VerificationMaterialContent as M;
        let malformed = |e: String| fail(Step::Malformed, e);
        let (leaf, intermediates) = match &bundle.verification_material.content {
            M::Certificate(c) => (c.raw_bytes.as_bytes(), &[][..]),
            M::X509CertificateChain { certificates } => match certificates.split_first() {
                Some((leaf, rest)) => (leaf.raw_bytes.as_bytes(), rest),
                None => return Err(malformed("the certificate chain is empty".into())),
            },
            _ => return Err(malformed("the bundle carries no certificate".into())),
        };
        Ok(Chain {
            leaf_issuer: names_of(leaf).map_err(malformed)?.0,
            intermediate_subjects: intermediates
                .iter()
                .map(|c| names_of(c.raw_bytes.as_bytes()).map(|(_, subject)| subject))
                .collect::<Result<_, _>>()
                .map_err(malformed)?,
        })
    }
}

/// Which step an error of the verifier belongs to.
fn step_of(e: &sigstore_verify::Error) -> Step {
    use sigstore_verify::bundle::Error as B;
    use sigstore_verify::Error as E;
    match e {
        E::Certificate(CertificateError::Sct(_)) => Step::SctInvalid,
        E::Certificate(CertificateError::ChainInvalid(detail))
            if detail.contains("UnknownIssuer") =>
        {
            Step::RootUnknown
        }
        E::Certificate(_) => Step::CertificateChain,
        E::TransparencyLog(TransparencyLogError::EntryMismatch(_)) => Step::TlogBodyMismatch,
        E::TransparencyLog(TransparencyLogError::IntegratedTime(_)) => Step::TimestampInvalid,
        E::TransparencyLog(TransparencyLogError::MalformedEntry(_)) => Step::Malformed,
        E::TransparencyLog(_) => Step::TlogInclusion,
        E::Timestamp(TimestampError::NoVerifiedTimestamp(_)) => Step::TimestampInvalid,
        E::Timestamp(_) => Step::TimestampInvalid,
        E::SignatureInvalid(_) => Step::SignatureInvalid,
        E::Bundle(
            B::MissingInclusionPromise(_)
            | B::MissingInclusionProof(_)
            | B::MissingCheckpoint
            | B::LogIndexOutOfRange { .. },
        ) => Step::TlogInclusion,
        E::Bundle(B::MissingSigningTimeEvidence | B::MissingTimestamp) => Step::TimestampInvalid,
        E::IdentityMismatch { .. } | E::IssuerMismatch { .. } => Step::CertificateIdentity,
        _ => Step::Malformed,
    }
}

/// Reads `trustedRoots` (name -> `builtin:...` or path relative to `base_dir`).
pub fn roots_from_json(
    value: Option<&Value>,
    base_dir: &Path,
) -> Result<BTreeMap<String, Root>, AttestError> {
    let mut roots = BTreeMap::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, source) in map {
                let Value::String(source) = source else {
                    return Err(AttestError::TrustFile {
                        reason: format!(
                            "trusted root `{name}` must be `builtin:NAME` or a path string"
                        ),
                    });
                };
                roots.insert(name.clone(), Root::load(name, source, base_dir)?);
            }
        }
        Some(_) => {
            return Err(AttestError::TrustFile {
                reason: "`trustedRoots` must be an object of name: source".into(),
            })
        }
    }
    Ok(roots)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
pub(crate) mod tests {
    use super::*;
    use crate::attest::verify::verify_attestations;
    use base64::Engine as _;
    use serde_json::json;

    use crate::testing::sigstore::shared_fixtures as fixtures;

    pub(crate) fn bundle(dir: &Path, name: &str) -> Value {
        let text = std::fs::read_to_string(dir.join("bundles").join(name)).unwrap();
        serde_json::from_str(text.trim()).unwrap()
    }

    const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
    const GHA: &str = "https://token.actions.githubusercontent.com";

    /// A store trusting the three real signers of the fixtures, as a team would list them.
    fn store_with(identities: Value) -> TrustStore {
        TrustStore::from_json(
            &json!({
                "keys": [],
                "trustedRoots": {"public-good": "builtin:public-good", "github": "builtin:github"},
                "identities": identities,
            }),
            Path::new("."),
        )
        .unwrap()
    }

    fn identity(id: &str, root: &str, issuer: &str, subject: Value) -> Value {
        let mut entry = json!({
            "id": id, "trustedRoot": root, "issuer": issuer,
            "predicateTypes": [SLSA_V1], "builders": ["https://github.com/*"],
        });
        for (k, v) in subject.as_object().unwrap() {
            entry[k] = v.clone();
        }
        entry
    }

    fn real_store() -> TrustStore {
        store_with(json!([
            identity(
                "too-legit",
                "public-good",
                "https://token.actions.githubusercontent.com/hammer-time",
                json!({"subject": "https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main",
                       "extensions": {"sourceRepositoryURI": "https://github.com/too-legit/attest"}})
            ),
            identity(
                "attest-demo",
                "github",
                GHA,
                json!({"subjectPattern": r"https://github\.com/actions/attest-demo/\.github/workflows/[a-z-]+\.yml@refs/heads/main"})
            ),
            identity(
                "sigstore-js",
                "public-good",
                GHA,
                json!({"subjectPattern": r"https://github\.com/sigstore/sigstore-js/.*"})
            ),
        ]))
    }

    fn verify_one(store: &TrustStore, value: &Value) -> Result<VerifiedAttestation, String> {
        let digest = DigestSet::sha256_hex("00".repeat(32));
        let mut v = verify_attestations(store, std::slice::from_ref(value), &digest, "prod");
        match (v.attestations.pop(), v.rejected.pop()) {
            (Some(a), None) => Ok(a),
            (None, Some(r)) => Err(r.reason),
            other => panic!("one attestation in, {other:?} out"),
        }
    }

    fn rejected(store: &TrustStore, value: &Value) -> String {
        match verify_one(store, value) {
            Ok(a) => panic!("expected a rejection, verified as {:?}", a.signer),
            Err(reason) => reason,
        }
    }

    fn keyless(a: &VerifiedAttestation) -> &KeylessSigner {
        match &a.signer {
            AttestationSigner::Keyless(k) => k,
            other => panic!("not keyless: {other:?}"),
        }
    }

    #[test]
    fn the_real_bundles_verify_as_their_readme_says() {
        let Some(dir) = fixtures() else { return };
        let store = real_store();

        let a = verify_one(&store, &bundle(&dir, "custom-issuer.sigstore.json")).unwrap();
        let k = keyless(&a);
        assert_eq!(k.identity, "too-legit");
        assert_eq!(
            k.issuer,
            "https://token.actions.githubusercontent.com/hammer-time"
        );
        assert_eq!(k.signed_at, "2024-09-11T19:19:03Z");
        let log = k.transparency_log.as_ref().expect("a Rekor entry");
        assert_eq!(log.log_index, 129601213);
        assert_eq!(log.integrated_time.as_deref(), Some("2024-09-11T19:19:03Z"));
        assert_eq!(
            k.extensions["sourceRepositoryURI"],
            "https://github.com/too-legit/attest"
        );
        assert_eq!(a.predicate_type, SLSA_V1);
        assert!(a.provenance.is_some());

        let a = verify_one(
            &store,
            &bundle(
                &dir,
                "github_provenance_demo-0.0.12-py3-none-any-bundle.jsonl",
            ),
        )
        .unwrap();
        let k = keyless(&a);
        assert_eq!(k.identity, "attest-demo");
        assert_eq!(
            k.signed_at, "2024-04-22T17:33:26Z",
            "from the RFC 3161 timestamp"
        );
        assert!(k.transparency_log.is_none(), "GitHub's root has no log");
        // The wheel's digest is the statement's subject.
        let whl = DigestSet::sha256_hex(
            "ae57936def59bc4c75edd3a837d89bcefc6d3a5e31d55a6fa7a71624f92c3c3b",
        );
        let v = verify_attestations(
            &store,
            &[bundle(
                &dir,
                "github_provenance_demo-0.0.12-py3-none-any-bundle.jsonl",
            )],
            &whl,
            "prod",
        );
        assert!(v.attestations[0].subject_matches);
        assert!(!a.subject_matches, "another digest is another artifact");

        let a = verify_one(&store, &bundle(&dir, "sigstore-js-2.1.0-bundle.json")).unwrap();
        assert_eq!(keyless(&a).identity, "sigstore-js");
        assert!(keyless(&a).transparency_log.is_some(), "intoto/0.0.2 entry");
    }

    #[test]
    fn the_real_bad_bundles_are_rejected_as_malformed() {
        let Some(dir) = fixtures() else { return };
        let store = real_store();
        for name in [
            "sigstoreBundle-invalid-signature.json",
            "github_provenance_demo-0.0.12-py3-none-any-bundle-missing-cert.jsonl",
            "github_provenance_demo-0.0.12-py3-none-any-bundle-missing-verification-material.jsonl",
        ] {
            let reason = rejected(&store, &bundle(&dir, name));
            assert!(reason.starts_with("bundle.malformed: "), "{name}: {reason}");
        }
    }

    #[test]
    fn identity_issuer_and_extensions_must_all_match() {
        let Some(dir) = fixtures() else { return };
        let b = bundle(&dir, "custom-issuer.sigstore.json");
        let subject =
            "https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main";
        let hammer = "https://token.actions.githubusercontent.com/hammer-time";
        for (rule, why) in [
            (
                identity(
                    "x",
                    "public-good",
                    hammer,
                    json!({"subject": format!("{subject}x")}),
                ),
                "SAN does not match subject",
            ),
            // Anchored: a pattern matching a prefix of the SAN does not match it.
            (
                identity(
                    "x",
                    "public-good",
                    hammer,
                    json!({"subjectPattern": "https://github\\.com/too-legit/attest"}),
                ),
                "SAN does not match subjectPattern",
            ),
            (
                identity("x", "public-good", GHA, json!({"subject": subject})),
                "issuer is not",
            ),
            (
                identity(
                    "x",
                    "public-good",
                    hammer,
                    json!({"subject": subject, "extensions": {"sourceRepositoryURI": "https://github.com/other/repo"}}),
                ),
                "extension `sourceRepositoryURI` is `https://github.com/too-legit/attest`, not",
            ),
            (
                identity(
                    "x",
                    "public-good",
                    hammer,
                    json!({"subject": subject, "extensions": {"deploymentEnvironment": "prod"}}),
                ),
                "extension `deploymentEnvironment` is absent",
            ),
        ] {
            let reason = rejected(&store_with(json!([rule])), &b);
            assert!(reason.starts_with("certificate.identity: "), "{reason}");
            assert!(reason.contains(why), "{why}: {reason}");
        }
    }

    #[test]
    fn grants_bind_an_identity_like_a_key() {
        let Some(dir) = fixtures() else { return };
        let b = bundle(&dir, "custom-issuer.sigstore.json");
        let subject = json!({"subject": "https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main"});
        let hammer = "https://token.actions.githubusercontent.com/hammer-time";
        let mut rule = identity("x", "public-good", hammer, subject.clone());
        rule["environments"] = json!(["staging"]);
        let reason = rejected(&store_with(json!([rule])), &b);
        assert_eq!(reason, "identity `x` is not trusted for environment `prod`");
        let mut rule = identity("x", "public-good", hammer, subject.clone());
        rule["builders"] = json!(["https://ci.example.com/*"]);
        assert!(rejected(&store_with(json!([rule])), &b)
            .starts_with("identity `x` is not trusted for builder `https://github.com/"));
        let mut rule = identity("x", "public-good", hammer, subject);
        rule["predicateTypes"] = json!(["https://slsa.dev/provenance/v0.2"]);
        assert!(rejected(&store_with(json!([rule])), &b).contains("not trusted for predicate type"));
    }

    #[test]
    fn a_root_the_certificate_does_not_chain_to_is_refused() {
        let Some(dir) = fixtures() else { return };
        // The public-good bundle, trusted only through GitHub's root.
        let rule = identity(
            "x",
            "github",
            "https://token.actions.githubusercontent.com/hammer-time",
            json!({"subject": "https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main"}),
        );
        let reason = rejected(
            &store_with(json!([rule])),
            &bundle(&dir, "custom-issuer.sigstore.json"),
        );
        assert!(reason.starts_with("root.unknown: "), "{reason}");
    }

    /// Edits the custom-issuer bundle at a JSON pointer and says which step refuses it.
    fn tampered(dir: &Path, edit: impl FnOnce(&mut Value)) -> String {
        let mut b = bundle(dir, "custom-issuer.sigstore.json");
        edit(&mut b);
        rejected(&real_store(), &b)
    }

    fn flip_b64(v: &mut Value) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let mut bytes = bytes;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        *v = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }

    /// Changes the statement's subject digest: still a statement, no longer the signed one.
    fn edit_payload(b: &mut Value) {
        let engine = base64::engine::general_purpose::STANDARD;
        let payload = engine
            .decode(b["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let text = String::from_utf8(payload)
            .unwrap()
            .replace("afa27b44", "afa27b45");
        b["dsseEnvelope"]["payload"] = json!(engine.encode(text));
    }

    #[test]
    fn every_step_of_a_log_backed_bundle_bites() {
        let Some(dir) = fixtures() else { return };
        let entry = "/verificationMaterial/tlogEntries/0";
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(&str, Edit, &str)> = vec![
            (
                "tampered payload",
                Box::new(|b: &mut Value| edit_payload(b)),
                "signature.invalid: ",
            ),
            (
                "tampered signature",
                Box::new(|b: &mut Value| flip_b64(&mut b["dsseEnvelope"]["signatures"][0]["sig"])),
                "signature.invalid: ",
            ),
            (
                "missing log entry",
                Box::new(|b: &mut Value| b["verificationMaterial"]["tlogEntries"] = json!([])),
                "tlog.missing: ",
            ),
            (
                "bad inclusion proof",
                Box::new(move |b: &mut Value| {
                    flip_b64(&mut b.pointer_mut(entry).unwrap()["inclusionProof"]["hashes"][0])
                }),
                "tlog.inclusion: ",
            ),
            (
                "bad checkpoint",
                Box::new(move |b: &mut Value| {
                    let cp = &mut b.pointer_mut(entry).unwrap()["inclusionProof"]["checkpoint"]
                        ["envelope"];
                    *cp = json!(cp.as_str().unwrap().replacen("\n", "0\n", 1));
                }),
                "tlog.inclusion: ",
            ),
            (
                "forged signed entry timestamp",
                Box::new(move |b: &mut Value| {
                    flip_b64(
                        &mut b.pointer_mut(entry).unwrap()["inclusionPromise"]
                            ["signedEntryTimestamp"],
                    )
                }),
                "tlog.inclusion: ",
            ),
            (
                "backdated integratedTime",
                Box::new(move |b: &mut Value| {
                    b.pointer_mut(entry).unwrap()["integratedTime"] = json!("1726000000")
                }),
                "tlog.inclusion: ",
            ),
        ];
        for (name, edit, step) in cases {
            let reason = tampered(&dir, edit);
            assert!(reason.starts_with(step), "{name}: {reason}");
        }
    }

    #[test]
    fn a_timestamp_backed_bundle_needs_its_timestamp() {
        let Some(dir) = fixtures() else { return };
        let name = "github_provenance_demo-0.0.12-py3-none-any-bundle.jsonl";
        let ts = "/verificationMaterial/timestampVerificationData/rfc3161Timestamps";
        let mut b = bundle(&dir, name);
        flip_b64(&mut b.pointer_mut(ts).unwrap()[0]["signedTimestamp"]);
        let reason = rejected(&real_store(), &b);
        assert!(
            reason.starts_with("timestamp.invalid: ") || reason.starts_with("bundle.malformed: "),
            "{reason}"
        );
        let mut b = bundle(&dir, name);
        *b.pointer_mut(ts).unwrap() = json!([]);
        let reason = rejected(&real_store(), &b);
        assert!(reason.starts_with("timestamp.invalid: "), "{reason}");
    }

    #[test]
    fn a_ca_outside_its_validity_at_the_signing_time_is_no_anchor() {
        let Some(dir) = fixtures() else { return };
        // public-good, with every Fulcio CA's window ending before the bundle was signed.
        let mut root: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("trusted-roots/public-good.json")).unwrap(),
        )
        .unwrap();
        for ca in root["certificateAuthorities"].as_array_mut().unwrap() {
            ca["validFor"]["end"] = json!("2022-04-14T00:00:00Z");
        }
        let tmp = crate::attest::trust::tests::temp_dir();
        std::fs::write(tmp.join("expired.json"), root.to_string()).unwrap();
        let store = TrustStore::from_json(
            &json!({"trustedRoots": {"old": "expired.json"},
                    "identities": [identity("x", "old", "https://token.actions.githubusercontent.com/hammer-time",
                        json!({"subject": "https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main"}))]}),
            &tmp,
        )
        .unwrap();
        let reason = rejected(&store, &bundle(&dir, "custom-issuer.sigstore.json"));
        assert!(reason.starts_with("certificate.chain: "), "{reason}");
    }

    #[test]
    fn a_threshold_above_one_is_never_met_by_a_bundle() {
        let Some(dir) = fixtures() else { return };
        // Threshold 2 with no keys: the store allows it (identities only); a bundle
        // carries one signature and cannot meet it.
        let store = TrustStore::from_json(
            &json!({
                "threshold": 2,
                "trustedRoots": {"public-good": "builtin:public-good"},
                "identities": [identity("x", "public-good", "https://token.actions.githubusercontent.com/hammer-time",
                    json!({"subject": "https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main"}))],
            }),
            Path::new("."),
        )
        .unwrap();
        let reason = rejected(&store, &bundle(&dir, "custom-issuer.sigstore.json"));
        assert!(reason.starts_with("threshold 2 not met"), "{reason}");
    }

    #[test]
    fn trust_file_identities_are_checked_when_loaded() {
        let roots = json!({"public-good": "builtin:public-good"});
        for (entry, want) in [
            (
                json!({"id": "x", "trustedRoot": "nope", "issuer": "i", "subject": "s"}),
                "`trustedRoot` `nope` is not listed",
            ),
            (
                json!({"id": "x", "trustedRoot": "public-good", "subject": "s"}),
                "`issuer` is missing",
            ),
            (
                json!({"id": "x", "trustedRoot": "public-good", "issuer": "i"}),
                "needs `subject`",
            ),
            (
                json!({"id": "x", "trustedRoot": "public-good", "issuer": "i", "subject": "s", "subjectPattern": "p"}),
                "not both",
            ),
            (
                json!({"id": "x", "trustedRoot": "public-good", "issuer": "i", "subjectPattern": "("}),
                "not a valid regex",
            ),
            (
                json!({"id": "x", "trustedRoot": "public-good", "issuer": "i", "subject": "s", "extensions": {"sourceRepoURI": "r"}}),
                "unknown Fulcio extension `sourceRepoURI`",
            ),
            (
                json!({"id": "x", "trustedRoot": "public-good", "issuer": "i", "subject": "s", "enviroments": []}),
                "unknown field `enviroments`",
            ),
        ] {
            let e = TrustStore::from_json(
                &json!({"trustedRoots": roots, "identities": [entry]}),
                Path::new("."),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn keyless_trust_changes_the_digest_and_key_only_stores_keep_theirs() {
        use crate::attest::keys::SigningKey;
        use crate::attest::trust::TrustedKey;
        // A key-only store's digest is the one recorded decisions already name: the
        // canonical form it has always had, written out here by hand.
        let key = SigningKey::ed25519_from_seed(&[4; 32]).public_key();
        let keyed = TrustStore::new(
            vec![TrustedKey::new(
                "ci",
                key.clone(),
                &["b", "a"],
                &["x"],
                Some(&["prod"]),
            )],
            1,
        )
        .unwrap();
        let canonical = format!(
            r#"{{"version":1,"threshold":1,"keys":[{{"id":"ci","keyid":"{}","algorithm":"{}","predicateTypes":["a","b"],"builders":["x"],"environments":["prod"]}}]}}"#,
            key.keyid(),
            key.algorithm().as_str()
        );
        assert_eq!(
            keyed.digest(),
            crate::digest::Sha256::of(canonical.as_bytes())
        );
        let plain = TrustStore::from_json(&json!({"keys": []}), Path::new(".")).unwrap();
        assert_eq!(plain.digest(), TrustStore::empty().digest());
        let a = store_with(json!([identity(
            "x",
            "public-good",
            "i",
            json!({"subject": "s"})
        )]));
        let b = store_with(json!([identity(
            "x",
            "public-good",
            "i",
            json!({"subject": "t"})
        )]));
        assert_ne!(a.digest(), plain.digest());
        assert_ne!(a.digest(), b.digest());
    }

    // ---- Our own test CA and log (crate::testing::sigstore): the cases no real
    // fixture can show, because they need a second entry or certificate of one signer.

    use crate::testing::sigstore::{LeafSpec, LogOptions, TestSigstore};

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600;

    fn statement(digest: &str) -> Value {
        json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "registry.example.com/payments/api", "digest": {"sha256": digest}}],
            "predicateType": SLSA_V1,
            "predicate": {
                "buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1", "externalParameters": {}},
                "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}},
            },
        })
    }

    /// The test instance and a store trusting its root for `example/payments-api`.
    fn test_setup(ct_log: bool) -> (TestSigstore, TrustStore) {
        let sigstore = TestSigstore::new(7).unwrap();
        let dir = crate::attest::trust::tests::temp_dir();
        std::fs::write(
            dir.join("root.json"),
            sigstore.trusted_root(ct_log).to_string(),
        )
        .unwrap();
        let store = TrustStore::from_json(
            &json!({"trustedRoots": {"test": "root.json"}, "identities": [{
                "id": "payments-ci", "trustedRoot": "test", "issuer": GHA,
                "subjectPattern": r"https://github\.com/example/payments-api/\.github/workflows/[a-z-]+\.yml@refs/heads/main",
                "extensions": {"sourceRepositoryURI": "https://github.com/example/payments-api"},
                "predicateTypes": [SLSA_V1], "builders": ["https://github.com/actions/runner/github-hosted"],
            }]}),
            &dir,
        )
        .unwrap();
        (sigstore, store)
    }

    fn spec() -> LeafSpec {
        LeafSpec::github_workflow("example/payments-api", "release.yml", T0)
    }

    fn log(index: u64) -> LogOptions {
        LogOptions {
            integrated_time: T0 + 60,
            log_index: index,
        }
    }

    #[test]
    fn a_bundle_of_the_test_instance_verifies_with_every_step() {
        let (sigstore, store) = test_setup(false);
        let leaf = sigstore.leaf(&spec()).unwrap();
        let b = sigstore
            .bundle(&statement(&"ab".repeat(32)), &leaf, &log(3))
            .unwrap();
        let a = verify_one(&store, &b).unwrap();
        let k = keyless(&a);
        assert_eq!(k.identity, "payments-ci");
        assert_eq!(k.signed_at, "2026-01-01T00:01:00Z");
        assert_eq!(k.transparency_log.as_ref().unwrap().log_index, 3);
        assert_eq!(k.extensions["sourceRepositoryRef"], "refs/heads/main");
        assert_eq!(k.extensions["buildTrigger"], "push");
        // Deterministic: the same inputs sign the same bytes.
        assert_eq!(
            b,
            sigstore
                .bundle(
                    &statement(&"ab".repeat(32)),
                    &sigstore.leaf(&spec()).unwrap(),
                    &log(3)
                )
                .unwrap()
        );
    }

    #[test]
    fn the_test_instance_shows_the_steps_real_fixtures_cannot() {
        let (sigstore, store) = test_setup(false);
        let leaf = sigstore.leaf(&spec()).unwrap();
        let a = sigstore
            .bundle(&statement(&"ab".repeat(32)), &leaf, &log(3))
            .unwrap();
        let b = sigstore
            .bundle(&statement(&"cd".repeat(32)), &leaf, &log(4))
            .unwrap();

        // The log entry of another envelope by the same certificate: genuine, logged and
        // signed, but about other bytes (CVE-2022-36056).
        let mut mixed = a.clone();
        mixed["verificationMaterial"]["tlogEntries"] =
            b["verificationMaterial"]["tlogEntries"].clone();
        let reason = rejected(&store, &mixed);
        assert!(reason.starts_with("tlog.body_mismatch: "), "{reason}");

        // Another certificate of the same CA and identity (another key) swapped in.
        let mut other = spec();
        other.key_seed = 0x52;
        let other = sigstore.leaf(&other).unwrap();
        let mut swapped = a.clone();
        swapped["verificationMaterial"]["certificate"]["rawBytes"] = json!(B64.encode(&other.der));
        let reason = rejected(&store, &swapped);
        assert!(reason.starts_with("signature.invalid: "), "{reason}");

        // Logged after the ten-minute certificate had expired.
        let late = sigstore
            .bundle(
                &statement(&"ab".repeat(32)),
                &leaf,
                &LogOptions {
                    integrated_time: T0 + 3600,
                    log_index: 5,
                },
            )
            .unwrap();
        let reason = rejected(&store, &late);
        assert!(reason.starts_with("certificate.chain: "), "{reason}");

        // A certificate from another CA (same names and claims, not in the root).
        let stranger = TestSigstore::new(9).unwrap();
        let foreign = stranger
            .bundle(
                &statement(&"ab".repeat(32)),
                &stranger.leaf(&spec()).unwrap(),
                &log(3),
            )
            .unwrap();
        let reason = rejected(&store, &foreign);
        assert!(reason.starts_with("root.unknown: "), "{reason}");

        // A root with CT logs requires an SCT, which test leaves do not carry.
        let (sigstore, store) = test_setup(true);
        let leaf = sigstore.leaf(&spec()).unwrap();
        let b = sigstore
            .bundle(&statement(&"ab".repeat(32)), &leaf, &log(3))
            .unwrap();
        let reason = rejected(&store, &b);
        assert!(reason.starts_with("sct.invalid: "), "{reason}");
    }

    #[test]
    fn older_bundle_versions_and_certificate_chains_verify_and_blob_bundles_do_not() {
        let (sigstore, store) = test_setup(false);
        let leaf = sigstore.leaf(&spec()).unwrap();
        let b = sigstore
            .bundle(&statement(&"ab".repeat(32)), &leaf, &log(3))
            .unwrap();
        // v0.3 in its older spelling, with the single certificate v0.3 requires.
        let mut v03 = b.clone();
        v03["mediaType"] = json!(BUNDLE_MEDIA_TYPES[2]);
        verify_one(&store, &v03).unwrap();
        // v0.1 and v0.2 carry a certificate chain.
        for media_type in &BUNDLE_MEDIA_TYPES[..2] {
            let mut old = b.clone();
            old["mediaType"] = json!(media_type);
            let cert = old["verificationMaterial"]["certificate"].take();
            let material = old["verificationMaterial"].as_object_mut().unwrap();
            material.remove("certificate");
            material.insert(
                "x509CertificateChain".into(),
                json!({"certificates": [cert]}),
            );
            let a = verify_one(&store, &old).unwrap_or_else(|e| panic!("{media_type}: {e}"));
            assert_eq!(keyless(&a).identity, "payments-ci");
        }
        // A bundle over a blob (hashedrekord) is a signature, not an attestation.
        let mut blob = b.clone();
        let envelope = blob
            .as_object_mut()
            .unwrap()
            .remove("dsseEnvelope")
            .unwrap();
        blob["messageSignature"] = json!({
            "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode([0xab; 32])},
            "signature": envelope["signatures"][0]["sig"],
        });
        let reason = rejected(&store, &blob);
        assert!(
            reason.starts_with("bundle.malformed: a message-signature bundle"),
            "{reason}"
        );
        // An unknown media type is refused before anything is read.
        let mut odd = b;
        odd["mediaType"] = json!("application/vnd.dev.sigstore.bundle+json;version=9.9");
        assert!(rejected(&store, &odd).starts_with("bundle.malformed: media type"));
    }

    use base64::engine::general_purpose::STANDARD as B64;
}
