//! Signed checkpoints of an audit log's head (log id, seq, hash, time) as an in-toto statement
//! in a DSSE envelope, signed by the decision key; they vouch for a prefix of the chain and
//! must never be accepted unsigned.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Head;
use crate::attest::PublicKey;
use crate::sign::{verify_typed_envelope, SignError};

/// predicateType of an audit-log checkpoint statement.
pub const CHECKPOINT_PREDICATE_TYPE: &str = "https://promo-policy.dev/audit-checkpoint/v1";

/// Why a signed checkpoint cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The envelope does not verify with the keys, or is not a checkpoint statement.
    #[error(transparent)]
    Envelope(SignError),
    /// The statement verifies, but its predicate is not a checkpoint.
    #[error("the predicate is not a checkpoint")]
    Predicate(#[source] serde_json::Error),
    /// The statement's subject names another hash than its predicate.
    #[error("the statement's subject digest is not the checkpoint's hash")]
    Subject,
}

/// A log's head at a moment: store it away from the log, and `audit verify --against`
/// proves the chain up to it is unchanged and still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The log's id (from its meta table).
    pub log_id: String,
    /// The head's seq (0 for an empty log).
    pub seq: u64,
    /// The head's hash.
    pub hash: String,
    /// When the checkpoint was taken (RFC 3339).
    pub time: String,
}

impl Checkpoint {
    /// The checkpoint of `head` in log `log_id` at `time`.
    pub fn new(log_id: &str, head: &Head, time: &str) -> Self {
        Self {
            log_id: log_id.to_string(),
            seq: head.seq,
            hash: head.hash.clone(),
            time: time.to_string(),
        }
    }

    /// The in-toto Statement v1 to sign: subject = the log, digest = the head hash.
    pub fn statement(&self) -> Value {
        json!({
            "_type": crate::attest::statement::STATEMENT_V1,
            "subject": [{
                "name": format!("promo-policy-audit:{}", self.log_id),
                "digest": {"sha256": self.hash},
            }],
            "predicateType": CHECKPOINT_PREDICATE_TYPE,
            "predicate": self,
        })
    }

    /// Read a signed checkpoint back, verifying its envelope with `keys`.
    pub fn from_envelope(envelope: &Value, keys: &[PublicKey]) -> Result<Self, CheckpointError> {
        let statement = verify_typed_envelope(envelope, keys, CHECKPOINT_PREDICATE_TYPE)
            .map_err(CheckpointError::Envelope)?;
        let checkpoint: Checkpoint = serde_json::from_value(statement["predicate"].clone())
            .map_err(CheckpointError::Predicate)?;
        if statement["subject"][0]["digest"]["sha256"] != checkpoint.hash.as_str() {
            return Err(CheckpointError::Subject);
        }
        Ok(checkpoint)
    }
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
    use crate::attest::SigningKey;
    use crate::sign::sign_statement;

    #[test]
    fn a_signed_checkpoint_reads_back_only_with_its_key() {
        let key = SigningKey::ed25519_from_seed(&[7; 32]);
        let cp = Checkpoint::new(
            "log-1",
            &Head {
                seq: 3,
                hash: "ab".repeat(32),
            },
            "2026-11-26T18:00:00Z",
        );
        let envelope = sign_statement(&key, &cp.statement()).unwrap();
        assert_eq!(
            Checkpoint::from_envelope(&envelope, &[key.public_key()]).unwrap(),
            cp
        );
        let other = SigningKey::ed25519_from_seed(&[8; 32]);
        assert!(matches!(
            Checkpoint::from_envelope(&envelope, &[other.public_key()]),
            Err(CheckpointError::Envelope(SignError::BadSignature { .. }))
        ));
        // Signed, but not a checkpoint: serde's words follow, once.
        let mut statement = cp.statement();
        statement["predicate"] = serde_json::json!({"seq": 3});
        let envelope = sign_statement(&key, &statement).unwrap();
        let e = Checkpoint::from_envelope(&envelope, &[key.public_key()]).unwrap_err();
        assert!(matches!(e, CheckpointError::Predicate(_)), "{e:?}");
        assert_eq!(
            crate::error_chain::ErrorChain(&e).to_string(),
            "the predicate is not a checkpoint: missing field `logId`"
        );
    }
}
