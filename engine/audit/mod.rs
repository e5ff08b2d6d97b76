//! The tamper-evident audit log: every signed decision as one hash-chained record in an
//! embedded SQLite store (or a JSONL export of it); it records and checks decisions, and must
//! never make, change or drop one.
//!
//! # Records and the chain
//!
//! A [`Record`] holds the decision's columns (ids, artifact, environments, outcome,
//! violation ids, time, bundle and request digests), the request itself unless asked not
//! to (with the fields named by JSON pointers replaced by [`MASK_MARKER`]), the signed DSSE
//! envelope, and two hashes:
//!
//! ```text
//! hash = sha256(prev_hash_bytes || canonical_json(record without "hash"))
//! ```
//!
//! where `prev_hash_bytes` are the 32 bytes of the previous record's hash ([`GENESIS`],
//! all zeros, for the first) and the canonical record includes `seq` and `prevHash`, so a
//! record cannot be edited, moved, dropped or slipped in without breaking the chain at
//! that point. The chain alone is not a secret (anyone can recompute it); what makes a
//! forgery detectable is that every record also carries an envelope signed by the
//! decision key and must agree with it, and a signed [`checkpoint`] pins the head.
//! Cutting records off the tail is invisible without a checkpoint taken before the cut.
//!
//! The JSON form of a record (`audit export`, `audit query --format jsonl`) has the
//! top-level `request` and `evaluatedAt` that [`crate::input::record::from_line`] reads, so an
//! export can be re-evaluated with `eval --batch` or compared with `diff`.
//!
//! # Promotion records and admission records
//!
//! Most records hold promotion decisions. The sidecar also records admissions that
//! `enforce` would have refused (break-glass, dry-run) as signed decisions that allow
//! nothing; those are no promotions. [`RecordKind::of`] is the one rule that tells
//! them apart, from columns every record has (signed and chained): an admission record's
//! `from` is `namespace:<name>` ([`ADMISSION_FROM_PREFIX`], which no promotion can have:
//! the request schema allows only `[a-z0-9-]` in an environment name) and its first
//! violation is [`BREAK_GLASS_ID`] or [`DRY_RUN_ID`]. `eval --batch` and `diff` skip
//! them (they are counted, never replayed as requests), and `report` leaves them out of
//! every promotion metric; `audit verify`, `query` and `export` treat them like any
//! other record.

#[cfg(feature = "audit")]
pub mod chain;
pub mod checkpoint;
#[cfg(feature = "audit")]
mod seen;
#[cfg(feature = "audit")]
pub mod store;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::decision::{canonical_json, canonical_json_object, Decision};
use crate::digest::DigestSet;
use crate::request::Artifact;

#[cfg(feature = "audit")]
pub use chain::{Finding, Tamper, VerifyReport};
pub use checkpoint::{Checkpoint, CheckpointError};
#[cfg(feature = "audit")]
pub use store::{AuditLog, Filter};

/// The violation id that marks the audit record of a break-glass admission.
pub const BREAK_GLASS_ID: &str = "admission.break_glass";

/// The violation id that marks the audit record of a dry-run admission `enforce` would
/// have refused.
pub const DRY_RUN_ID: &str = "admission.dry_run";

/// How an admission record's `from` starts: `namespace:` and the review's namespace.
pub const ADMISSION_FROM_PREFIX: &str = "namespace:";

/// What an audit record is the record of (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A promotion decision: replayed by `eval --batch` and `diff`, counted by `report`.
    Promotion,
    /// An admission `enforce` would have refused (break-glass, dry-run): it allows
    /// nothing and is never replayed or counted as a promotion.
    Admission,
}

impl RecordKind {
    /// The kind of a record with this `from` and these violation ids, in order. The one
    /// rule every reader of records uses.
    pub fn of<S: AsRef<str>>(from: &str, violations: &[S]) -> RecordKind {
        let marked = violations
            .first()
            .is_some_and(|v| matches!(v.as_ref(), BREAK_GLASS_ID | DRY_RUN_ID));
        if marked && from.starts_with(ADMISSION_FROM_PREFIX) {
            RecordKind::Admission
        } else {
            RecordKind::Promotion
        }
    }
}

/// The previous hash of the first record: 32 zero bytes, in hex.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a masked value is replaced with.
pub const MASK_MARKER: &str = "***masked***";

/// The last record of the log: its seq (0 for an empty log) and hash ([`GENESIS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    /// The last seq.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

impl Head {
    /// The head of an empty log.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// Where decisions are appended, in order: the SQLite [`AuditLog`] (feature `audit`), or
/// anything else that chains records the same way (a batch only needs this much).
pub trait Sink: Send + std::fmt::Debug {
    /// The last record committed.
    fn head(&self) -> Head;
    /// Append `records` (their `seq`, `prevHash` and `hash` are filled in) in one
    /// transaction; the new head, or an error after which nothing of them is kept.
    fn append(&mut self, records: &mut [Record]) -> Result<Head, AuditError>;
}

/// Why the log's store failed: SQLite's error (kept whole, as the source), or what we
/// found in the way. Printed as the words of either.
#[derive(Debug, thiserror::Error)]
pub enum StoreCause {
    /// SQLite refused (boxed: SQLite's error is large, and errors travel by value). Its
    /// words are the message, so the chain stops here: rusqlite's own source is the
    /// same words again behind an error code.
    #[cfg(feature = "audit")]
    #[error("{0}")]
    Sqlite(Box<rusqlite::Error>),
    /// Another process kept the log locked, or its journal mode, past the busy timeout
    /// while we switched it to write-ahead logging.
    #[cfg(feature = "audit")]
    #[error("cannot switch it to write-ahead logging within {seconds} s: {refusal}")]
    Wal {
        /// How long we tried.
        seconds: u64,
        /// SQLite's last answer.
        #[source]
        refusal: WalRefusal,
    },
    /// An export could not be opened (kept whole; its words without the path, which
    /// the message names already, are the message, so the chain stops here).
    #[error("{}", .0.reason())]
    File(crate::fsio::ReadError),
    /// An export could not be read after a line.
    #[error("after line {line}: {source}")]
    Line {
        /// The last line read whole.
        line: u64,
        /// The reader's error.
        #[source]
        source: std::io::Error,
    },
    /// Our own finding (a directory where the file should be, a line too long).
    #[error("{0}")]
    Finding(String),
}

/// SQLite's last answer to switching a log to write-ahead logging.
#[cfg(feature = "audit")]
#[derive(Debug, thiserror::Error)]
pub enum WalRefusal {
    /// It answered with another journal mode.
    #[error("the journal mode stayed `{0}`")]
    Mode(String),
    /// It was busy or locked (boxed, and its words are the message, as in
    /// [`StoreCause::Sqlite`]).
    #[error("{0}")]
    Busy(Box<rusqlite::Error>),
}

#[cfg(feature = "audit")]
impl From<rusqlite::Error> for StoreCause {
    fn from(e: rusqlite::Error) -> Self {
        StoreCause::Sqlite(Box::new(e))
    }
}

impl From<String> for StoreCause {
    fn from(finding: String) -> Self {
        StoreCause::Finding(finding)
    }
}

impl From<&str> for StoreCause {
    fn from(finding: &str) -> Self {
        StoreCause::Finding(finding.to_owned())
    }
}

/// Why the audit log could not be opened, written, read or checked. Every variant names
/// the file; none is ever turned into a decision.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log file does not exist (readers only; writers create it).
    #[error("no audit log at `{path}`")]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The log cannot be created or opened for writing there.
    #[error("cannot open audit log `{path}` for writing: {cause}")]
    Unwritable {
        /// The path given.
        path: PathBuf,
        /// SQLite's error, or what is in the way (a directory, a missing directory).
        #[source]
        cause: StoreCause,
    },
    /// The file is not a readable SQLite database (garbage, a corrupt page).
    #[error("audit log `{path}` is corrupt: {cause}")]
    Corrupt {
        /// The path given.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        cause: StoreCause,
    },
    /// A SQLite database, but not a promo-policy audit log.
    #[error("`{path}` is not a promo-policy audit log: {reason}")]
    Foreign {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// Written by a newer promo-policy, in a format this one does not know.
    #[error("audit log `{path}` has format version {found}; this promo-policy reads version {supported}: upgrade it")]
    Newer {
        /// The path given.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The version this build writes.
        supported: i64,
    },
    /// Appending failed (a full disk, a lock held too long); the transaction was rolled
    /// back, so the log still ends at `head`. The cause comes last, where
    /// [`crate::error_chain::ErrorChain`] finds it said already.
    #[error("cannot append to audit log `{path}` (the log ends at seq {} and holds every record up to it): {cause}", .head.seq)]
    Append {
        /// The path given.
        path: PathBuf,
        /// SQLite's error, or why the writer could not append.
        #[source]
        cause: StoreCause,
        /// The last record committed before the failure.
        head: Head,
    },
    /// Reading failed.
    #[error("cannot read audit log `{path}`: {cause}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// SQLite's error, or what the export reader found (with the line).
        #[source]
        cause: StoreCause,
    },
    /// A mask pointer is not a JSON pointer.
    #[error("mask `{pointer}` is not a JSON pointer: {reason}")]
    Mask {
        /// What was given.
        pointer: String,
        /// Which part of the pointer syntax it breaks.
        reason: &'static str,
    },
    /// A decision lacks a field the log needs (a sha256 digest).
    #[error("decision `{decision_id}` cannot be recorded: {reason}")]
    Unrecordable {
        /// The decision.
        decision_id: String,
        /// What is missing.
        reason: String,
    },
    /// The verifier's scratch database of decision ids (a temporary file) failed: a
    /// full or unwritable temporary directory. Nothing is concluded about the log.
    #[error("cannot keep the verifier's decision ids in a temporary file (set TMPDIR to a writable directory with room)")]
    #[cfg(feature = "audit")]
    Scratch(#[source] store::ScratchError),
    /// A checkpoint file is unusable.
    #[error("checkpoint `{path}`: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it (unreadable, another log, a head the log does not reach).
        reason: String,
    },
}

/// The in-toto statement a DSSE envelope (JSON) carries, decoded but not verified;
/// `None` when the payload is missing or not base64 JSON.
pub fn envelope_statement(envelope: &Value) -> Option<Value> {
    use base64::Engine as _;
    let payload = envelope.get("payload")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// One audit record: the JSON form of one row (see the module docs for the hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    /// 1-based position in the chain.
    pub seq: u64,
    /// The decision's UUIDv7.
    pub decision_id: String,
    /// The request's own id.
    pub request_id: String,
    /// What was to be promoted.
    pub artifact: Artifact,
    /// Source environment.
    pub from: String,
    /// Target environment.
    pub to: String,
    /// The verdict.
    pub allowed: bool,
    /// The ids of the decision's violations, in its order.
    pub violations: Vec<String>,
    /// The decision's evaluation time (RFC 3339).
    pub evaluated_at: String,
    /// `{"sha256": ...}` of the policy bundle that decided.
    pub bundle_digest: Digest256,
    /// `{"sha256": ...}` of the canonical request (the decision's `inputDigest`).
    pub request_digest: Digest256,
    /// The request, masked; absent when requests are not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// The mask pointers that matched a field of this request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
    /// The signed DSSE envelope of the decision.
    pub envelope: Value,
    /// The previous record's hash ([`GENESIS`] for seq 1).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// A digest set with exactly the one algorithm the log stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest256 {
    /// Lowercase hex.
    pub sha256: String,
}

/// A record's columns but the request, envelope and hash, borrowed: what
/// [`Record::compute_hash`] serialises (same names and forms as [`Record`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Hashed<'a> {
    seq: u64,
    decision_id: &'a str,
    request_id: &'a str,
    artifact: &'a Artifact,
    from: &'a str,
    to: &'a str,
    allowed: bool,
    violations: &'a [String],
    evaluated_at: &'a str,
    bundle_digest: &'a Digest256,
    request_digest: &'a Digest256,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    masked: &'a [String],
    prev_hash: &'a str,
}

impl Record {
    /// Whether this records a promotion or an admission ([`RecordKind::of`]).
    pub fn kind(&self) -> RecordKind {
        RecordKind::of(&self.from, &self.violations)
    }

    /// The in-toto statement inside the record's envelope, decoded but not verified
    /// (`audit verify` checks the signature); `None` when the payload is unreadable.
    pub fn statement(&self) -> Option<Value> {
        envelope_statement(&self.envelope)
    }

    /// The W3C trace id the decision carries (`predicate.trace.traceId`), if any.
    pub fn trace_id(&self) -> Option<String> {
        let statement = self.statement()?;
        let id = statement.pointer("/predicate/trace/traceId")?.as_str()?;
        Some(id.to_string())
    }

    /// The record's hash as it should be: `sha256(prev || canonical record)`; a
    /// `prev_hash` that is not 64 hex digits hashes as its text, so it can never match.
    pub fn compute_hash(&self) -> String {
        // The small columns go through serde (their names and forms as in `Record`); the
        // request and envelope, most of a record, are written in place, not cloned.
        let head = serde_json::to_value(Hashed {
            seq: self.seq,
            decision_id: &self.decision_id,
            request_id: &self.request_id,
            artifact: &self.artifact,
            from: &self.from,
            to: &self.to,
            allowed: self.allowed,
            violations: &self.violations,
            evaluated_at: &self.evaluated_at,
            bundle_digest: &self.bundle_digest,
            request_digest: &self.request_digest,
            masked: &self.masked,
            prev_hash: &self.prev_hash,
        });
        let Ok(Value::Object(head)) = head else {
            // INVARIANT: these columns are plain data and always serialise; an empty
            // hash can never equal a stored one, so a failure here reads as tampering.
            return String::new();
        };
        let members = head
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(self.request.as_ref().map(|r| ("request", r)))
            .chain([("envelope", &self.envelope)]);
        let mut hasher = Sha256::new();
        match hex::decode(&self.prev_hash) {
            Ok(bytes) if bytes.len() == 32 => hasher.update(&bytes),
            _ => hasher.update(self.prev_hash.as_bytes()),
        }
        hasher.update(canonical_json_object(members));
        hex::encode(hasher.finalize())
    }

    /// Where this record's columns disagree with the decision its envelope signs, if
    /// anywhere: the first differing field, named.
    // Long by design: one comparison per stored column, in column order.
    pub fn mismatch(&self, signed: &Decision) -> Option<String> {
        let sha = |set: &DigestSet| set.sha256().unwrap_or_default().to_owned();
        let ids: Vec<&str> = signed.violations.iter().map(|v| v.id.as_str()).collect();
        let fields = [
            (
                "decisionId",
                self.decision_id.clone(),
                signed.decision_id.clone(),
            ),
            (
                "requestId",
                self.request_id.clone(),
                signed.request_id.clone(),
            ),
            (
                "artifact.name",
                self.artifact.name.clone(),
                signed.artifact.name.clone(),
            ),
            (
                "artifact.digest",
                format!("{:?}", self.artifact.digest),
                format!("{:?}", signed.artifact.digest),
            ),
            ("from", self.from.clone(), signed.from.clone()),
            ("to", self.to.clone(), signed.to.clone()),
            (
                "allowed",
                self.allowed.to_string(),
                signed.allowed.to_string(),
            ),
            (
                "violations",
                format!("{:?}", self.violations),
                format!("{ids:?}"),
            ),
            (
                "evaluatedAt",
                self.evaluated_at.clone(),
                signed.evaluated_at.clone(),
            ),
            (
                "bundleDigest",
                self.bundle_digest.sha256.clone(),
                sha(&signed.policy.digest),
            ),
            (
                "requestDigest",
                self.request_digest.sha256.clone(),
                sha(&signed.input_digest),
            ),
        ];
        let differs = |(field, row, signed): (&str, String, String)| {
            (row != signed)
                .then(|| format!("`{field}` is {row} but its signed decision says {signed}"))
        };
        fields.into_iter().find_map(differs).or_else(|| {
            let request = self.request.as_ref()?;
            if !self.masked.is_empty() {
                // A masked request cannot be checked against the signed input digest
                // (only the chain and checkpoints cover it), but every field it says
                // it masked must hold the marker: a "masked" field with other content
                // is an edit.
                return self.masked.iter().find_map(|pointer| {
                    let value = request.pointer(pointer);
                    (value != Some(&Value::String(MASK_MARKER.to_string()))).then(|| {
                        format!(
                            "`request{pointer}` is listed as masked but holds {}",
                            value.map_or("nothing".to_string(), Value::to_string)
                        )
                    })
                });
            }
            // An unmasked stored request must be the one the decision was made on.
            let digest = DigestSet::sha256_of(&canonical_json(request));
            differs((
                "request",
                format!("sha256 {}", digest.sha256().unwrap_or("")),
                format!("sha256 {}", self.request_digest.sha256),
            ))
        })
    }
}

/// What goes into a record besides the decision: which request fields to mask, and
/// whether to store the request at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    mask: Vec<String>,
    store_request: bool,
}

impl Default for RecordOptions {
    /// Store the whole request, nothing masked.
    fn default() -> Self {
        Self {
            mask: Vec::new(),
            store_request: true,
        }
    }
}

impl RecordOptions {
    /// Store the request with the fields at `mask` (JSON pointers, RFC 6901) masked, or
    /// not at all when `store_request` is false.
    pub fn new(mask: Vec<String>, store_request: bool) -> Result<Self, AuditError> {
        for pointer in &mask {
            let reason = if pointer.is_empty() {
                Some("the empty pointer is the whole request: use --audit-no-request")
            } else if !pointer.starts_with('/') {
                Some("it must start with `/`, e.g. `/change/description`")
            } else if pointer
                .split('~')
                .skip(1)
                .any(|rest| !rest.starts_with('0') && !rest.starts_with('1'))
            {
                Some("`~` must be escaped as `~0` (and `/` inside a key as `~1`)")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(AuditError::Mask {
                    pointer: pointer.clone(),
                    reason,
                });
            }
        }
        Ok(Self {
            mask,
            store_request,
        })
    }

    /// The request as stored: the fields at the mask pointers replaced by
    /// [`MASK_MARKER`], with the pointers that matched; `None` when requests are not
    /// stored. The decision log ships the same.
    pub fn masked(&self, request: &Value) -> Option<(Value, Vec<String>)> {
        if !self.store_request {
            return None;
        }
        let mut copy = request.clone();
        let mut masked = Vec::new();
        for pointer in &self.mask {
            if let Some(slot) = copy.pointer_mut(pointer) {
                *slot = Value::String(MASK_MARKER.to_string());
                masked.push(pointer.clone());
            }
        }
        Some((copy, masked))
    }

    /// The record of a signed decision, without its place in the chain (`seq`,
    /// `prevHash` and `hash` are filled in by [`AuditLog::append`]). `request` is the
    /// request exactly as evaluated.
    pub fn prepare(
        &self,
        decision: &Decision,
        envelope: &Value,
        request: &Value,
    ) -> Result<Record, AuditError> {
        let sha = |set: &DigestSet, what: &str| {
            set.sha256()
                .map(|s| Digest256 {
                    sha256: s.to_owned(),
                })
                .ok_or_else(|| AuditError::Unrecordable {
                    decision_id: decision.decision_id.clone(),
                    reason: format!("its {what} has no sha256 digest"),
                })
        };
        let (request, masked) = match self.masked(request) {
            Some((copy, masked)) => (Some(copy), masked),
            None => (None, Vec::new()),
        };
        Ok(Record {
            seq: 0,
            decision_id: decision.decision_id.clone(),
            request_id: decision.request_id.clone(),
            artifact: decision.artifact.clone(),
            from: decision.from.clone(),
            to: decision.to.clone(),
            allowed: decision.allowed,
            violations: decision.violations.iter().map(|v| v.id.clone()).collect(),
            evaluated_at: decision.evaluated_at.clone(),
            bundle_digest: sha(&decision.policy.digest, "policy bundle")?,
            request_digest: sha(&decision.input_digest, "inputDigest")?,
            request,
            masked,
            envelope: envelope.clone(),
            prev_hash: String::new(),
            hash: String::new(),
        })
    }
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
    use crate::evaluator::{Engine, EngineConfig};
    use crate::input::parse_time;
    use crate::PromotionRequest;

    pub(crate) const AT: &str = "2026-11-26T18:00:00Z";

    /// A signed decision on the corpus's allowed request, and that request.
    pub(crate) fn signed() -> (Decision, Value, Value) {
        signed_n(1).remove(0)
    }

    /// `n` signed decisions (distinct ids) on the corpus's allowed request.
    pub(crate) fn signed_n(n: usize) -> Vec<(Decision, Value, Value)> {
        let engine = Engine::load(&EngineConfig::with_policies("policies")).unwrap();
        let bytes = std::fs::read("corpus/cases/prod-allow-baseline/request.json").unwrap();
        let request = PromotionRequest::from_slice(&bytes).unwrap();
        let mut evaluator = engine.evaluator();
        (0..n)
            .map(|_| {
                let signed = evaluator.decide(&request, parse_time(AT).unwrap()).unwrap();
                (signed.decision, signed.envelope, request.raw.clone())
            })
            .collect()
    }

    #[test]
    fn masks_replace_only_the_named_fields_and_say_which_matched() {
        let (decision, envelope, request) = signed();
        let options =
            RecordOptions::new(vec!["/change/author".into(), "/no/such/field".into()], true)
                .unwrap();
        let record = options.prepare(&decision, &envelope, &request).unwrap();
        let stored = record.request.as_ref().unwrap();
        assert_eq!(stored["change"]["author"], MASK_MARKER);
        assert_eq!(stored["change"]["ticket"], request["change"]["ticket"]);
        assert_eq!(record.masked, ["/change/author"]);
        let none = RecordOptions::new(Vec::new(), false).unwrap();
        assert!(none
            .prepare(&decision, &envelope, &request)
            .unwrap()
            .request
            .is_none());
    }

    #[test]
    fn bad_mask_pointers_are_refused_by_name() {
        for bad in ["", "change/author", "/a~2b"] {
            let e = RecordOptions::new(vec![bad.into()], true).unwrap_err();
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
        assert!(RecordOptions::new(vec!["/a~1b/~0c".into()], true).is_ok());
    }

    #[test]
    fn the_hash_covers_every_field_and_the_link() {
        let (decision, envelope, request) = signed();
        let mut record = RecordOptions::new(Vec::new(), true)
            .unwrap()
            .prepare(&decision, &envelope, &request)
            .unwrap();
        record.seq = 1;
        record.prev_hash = GENESIS.to_string();
        let hash = record.compute_hash();
        assert_eq!(hash.len(), 64);
        record.hash = "anything".into();
        assert_eq!(record.compute_hash(), hash, "the hash field is not hashed");
        for change in [
            |r: &mut Record| r.seq = 2,
            |r: &mut Record| r.allowed = false,
            |r: &mut Record| r.prev_hash = "1".repeat(64),
            |r: &mut Record| r.violations.push("x".into()),
            |r: &mut Record| r.request = None,
            |r: &mut Record| r.envelope["payload"] = "e30=".into(),
        ] {
            let mut changed = record.clone();
            change(&mut changed);
            assert_ne!(changed.compute_hash(), hash);
        }
    }

    #[test]
    fn the_hash_is_the_documented_digest_of_the_whole_record() {
        let (decision, envelope, request) = signed();
        let mut record = RecordOptions::new(Vec::new(), true)
            .unwrap()
            .prepare(&decision, &envelope, &request)
            .unwrap();
        record.seq = 7;
        record.prev_hash = "ab".repeat(32);
        let mut masked = record.clone();
        masked.masked = vec!["/change/ticket".into()];
        let mut bare = record.clone();
        bare.request = None;
        bare.prev_hash = "not hex".into();
        for r in [record, masked, bare] {
            // sha256(prev || canonical_json(record without "hash")), built the slow way.
            let mut value = serde_json::to_value(&r).unwrap();
            value.as_object_mut().unwrap().remove("hash");
            let mut hasher = Sha256::new();
            match hex::decode(&r.prev_hash) {
                Ok(bytes) if bytes.len() == 32 => hasher.update(&bytes),
                _ => hasher.update(r.prev_hash.as_bytes()),
            }
            hasher.update(canonical_json(&value));
            assert_eq!(r.compute_hash(), hex::encode(hasher.finalize()));
        }
    }

    #[test]
    fn a_prepared_record_matches_its_signed_decision() {
        let (decision, envelope, request) = signed();
        let record = RecordOptions::default()
            .prepare(&decision, &envelope, &request)
            .unwrap();
        assert_eq!(record.mismatch(&decision), None);
        let mut edited = record.clone();
        edited.allowed = false;
        let why = edited.mismatch(&decision).unwrap();
        assert!(why.starts_with("`allowed` is false"), "{why}");
        let mut other = record;
        other.request = Some(serde_json::json!({"id": "forged"}));
        assert!(other.mismatch(&decision).unwrap().starts_with("`request`"));
    }

    #[test]
    fn a_masked_field_must_hold_the_marker() {
        let (decision, envelope, request) = signed();
        let record = RecordOptions::new(vec!["/change/author".into()], true)
            .unwrap()
            .prepare(&decision, &envelope, &request)
            .unwrap();
        assert_eq!(record.mismatch(&decision), None);
        let mut edited = record;
        if let Some(r) = edited.request.as_mut() {
            r["change"]["author"] = serde_json::json!("mallory");
        }
        let why = edited.mismatch(&decision).unwrap();
        assert!(
            why.contains("`request/change/author` is listed as masked but holds \"mallory\""),
            "{why}"
        );
        // Claiming a mask that was never applied does not hide a rewritten request.
        let (decision, envelope, request) = signed();
        let mut forged = RecordOptions::default()
            .prepare(&decision, &envelope, &request)
            .unwrap();
        forged.masked = vec!["/change/ticket".into()];
        assert!(forged.mismatch(&decision).is_some());
    }
}
