//! Attestation trust: parses DSSE envelopes, in-toto statements and SLSA provenance, and
//! decides which of them a trust store vouches for; it must never let an unverified claim
//! through as a verified fact.
//!
//! The pieces, in the order a request meets them:
//!
//! - [`dsse`]: the envelope and the Pre-Authentication Encoding (PAE) that signatures cover.
//! - [`keys`]: Ed25519 and ECDSA P-256 public keys (SPKI PEM) and signing keys (PKCS#8 PEM).
//! - [`trust`]: the trust file (CONTRACT §2b, §2c): which key or identity may vouch for what.
//! - [`roots`] and [`keyless`]: Sigstore trusted roots and bundles, verified offline.
//! - [`statement`] and [`slsa`]: the in-toto Statement inside the envelope and the SLSA
//!   provenance predicate, normalised.
//! - [`verify`]: puts them together into `input.verified` (CONTRACT §2).
//! - [`files`]: attestation files for `eval --attestations`.
//! - [`evidence`]: signed approvals, check results and SLO snapshots (CONTRACT §2d).
//!
//! Every failure is an [`AttestError`]; a rejected attestation's reason is its message.

pub mod cache;
pub mod dsse;
pub mod evidence;
pub mod files;
pub mod keyless;
pub mod keys;
pub mod roots;
pub mod slsa;
pub mod statement;
pub mod trust;
pub mod verify;

pub use dsse::{pae, Envelope, EnvelopeSignature, INTOTO_PAYLOAD_TYPE};
pub use keys::{KeyAlgorithm, PublicKey, SigningKey};
pub use slsa::Provenance;
pub use statement::{Statement, Subject};
pub use trust::{TrustStore, TrustedKey};
pub use verify::{verify_attestations, AttestationSigner, Rejected, Verified, VerifiedAttestation};

/// Everything that can go wrong while reading keys, trust files and attestations.
///
/// Messages are written for the person reading `input.verified.rejected`: lowercase, one
/// sentence, user values in backticks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// The envelope is not a JSON object.
    #[error("envelope is not a JSON object")]
    EnvelopeNotObject,

    /// A required envelope field is absent.
    #[error("envelope is missing `{field}`")]
    MissingField {
        /// The field, as a JSON path such as `signatures[0].sig`.
        field: String,
    },

    /// An envelope field has the wrong JSON type.
    #[error("envelope field `{field}` must be {expected}")]
    FieldType {
        /// The field, as a JSON path.
        field: String,
        /// What it should have been, e.g. "a string".
        expected: &'static str,
    },

    /// A base64 field decodes with neither the standard nor the URL-safe alphabet.
    #[error("bad base64 in `{field}`: {reason}")]
    Base64 {
        /// The field, as a JSON path.
        field: String,
        /// What the decoder said.
        reason: String,
    },

    /// The envelope carries no signature at all.
    #[error("envelope has no signatures")]
    NoSignatures,

    /// The envelope carries more signatures than the verification budget allows.
    #[error("envelope has {count} signatures; at most {max} are accepted")]
    TooManySignatures {
        /// How many it has.
        count: usize,
        /// The budget.
        max: usize,
    },

    /// The decoded payload is larger than the verification budget allows.
    #[error("payload is {size} bytes; at most {max} are accepted")]
    PayloadTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The budget.
        max: usize,
    },

    /// The envelope's payloadType is not one this verifier interprets.
    #[error("payload type `{found}` is not supported (expected `{expected}`)")]
    PayloadType {
        /// The payloadType the envelope claims.
        found: String,
        /// The one we accept.
        expected: &'static str,
    },

    /// A public key could not be read.
    #[error("invalid public key: {reason}")]
    PublicKey {
        /// What the PEM, SPKI or curve reader refused.
        reason: String,
    },

    /// A key uses an algorithm this build does not verify.
    #[error("unsupported key algorithm `{algorithm}` (expected Ed25519 or ECDSA P-256)")]
    UnsupportedAlgorithm {
        /// The algorithm's name or OID.
        algorithm: String,
    },

    /// A private key could not be read or written.
    #[error("invalid private key: {reason}")]
    PrivateKey {
        /// What the PEM, PKCS#8 or file system refused.
        reason: String,
    },

    /// The trust file could not be read.
    #[error("cannot read trust file `{path}`: {reason}")]
    TrustFileRead {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },

    /// The trust file is not valid JSON or YAML.
    #[error("trust file `{path}` is not valid {format}: {reason}")]
    TrustFileParse {
        /// The file.
        path: String,
        /// `JSON` or `YAML`.
        format: &'static str,
        /// What the parser said.
        reason: String,
    },

    /// The trust file parses but says something invalid outside any one key.
    #[error("trust file: {reason}")]
    TrustFile {
        /// Why, naming the field.
        reason: String,
    },

    /// One key entry of the trust file is invalid.
    #[error("trust file key `{id}`: {reason}")]
    TrustKey {
        /// The entry's `id` (or `keys[N]` when it has none).
        id: String,
        /// Why, naming the field or file.
        reason: String,
    },

    /// The payload is not an in-toto Statement we understand.
    #[error("payload is not an in-toto statement: {reason}")]
    Statement {
        /// Why, naming the field.
        reason: String,
    },

    /// The statement claims SLSA provenance but the predicate does not have its shape.
    #[error("payload is not valid SLSA provenance: {reason}")]
    Provenance {
        /// Why, naming the field.
        reason: String,
    },

    /// The trust store has no keys, so nothing can verify.
    #[error("no trusted keys are configured")]
    NoTrustedKeys,

    /// No signature in the envelope verifies over the PAE with a trusted key.
    #[error("no signature by a trusted key ({details})")]
    NoTrustedSignature {
        /// What happened to each signature.
        details: String,
    },

    /// Fewer distinct trusted (and permitted) keys signed than the threshold asks.
    #[error("threshold {threshold} not met ({valid} valid{signers}){details}")]
    ThresholdNotMet {
        /// The trust store's threshold.
        threshold: usize,
        /// How many distinct permitted keys signed.
        valid: usize,
        /// `: `a`, `b`` or empty.
        signers: String,
        /// `; ...` notes on the other signatures, or empty.
        details: String,
    },

    /// A Sigstore bundle failed a verification step (CONTRACT §2c); the message starts
    /// with the step's code, e.g. `tlog.inclusion: ...`.
    #[error("{step}: {reason}")]
    Keyless {
        /// The step that failed.
        step: crate::attest::keyless::Step,
        /// What failed in it.
        reason: String,
    },

    /// Every valid signer lacks a permission the statement needs (threshold 1).
    #[error("{}", reasons.join("; "))]
    NotPermitted {
        /// One sentence per signer, e.g. "key `x` is not trusted for builder `y`".
        reasons: Vec<String>,
    },
}

/// A budget on one envelope, named so it is visible and reviewable (STYLE §12).
pub mod budget {
    /// Signatures tried per envelope. Each one may be tried against every trusted key, so
    /// this caps the verification work one attestation can cause; real envelopes carry
    /// one to three.
    pub const MAX_SIGNATURES: usize = 32;
    /// Decoded payload size. The largest real provenance we have seen (many
    /// resolvedDependencies) is a few hundred KiB; 8 MiB leaves room without letting one
    /// attestation dominate memory.
    pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;
}
