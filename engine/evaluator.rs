//! The pipeline: `Engine` holds what is built once and shared, `Evaluator` runs one
//! request through the stages in order; this is the only module that knows the order.

use std::path::PathBuf;
use std::sync::Arc;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::decision::{
    canonical_json, combine, sha256_set, Decision, EngineRef, PolicyRef, StageResults,
};
use crate::policy::{self, PolicyBundle, PolicyError};
use crate::request::{PromotionRequest, RequestError};

/// Any error that stops the engine from being built or a request from being read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request was refused before evaluation.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The policy bundle could not be loaded.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A time value could not be read.
    #[error("invalid time `{value}`: expected RFC 3339, e.g. `2026-11-26T18:00:00Z`")]
    Time {
        /// What was given.
        value: String,
    },
}

/// Where the engine's parts come from.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The policy bundle directory.
    pub policies: PathBuf,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            policies: PathBuf::from("policies"),
        }
    }
}

/// Everything built once and shared, immutable, across threads and requests.
#[derive(Debug)]
pub struct Engine {
    bundle: PolicyBundle,
}

impl Engine {
    /// Load and compile everything named in `config`; any failure here is an error
    /// (exit 2), never a decision.
    pub fn load(config: &EngineConfig) -> Result<Arc<Self>, Error> {
        let bundle = PolicyBundle::load(&config.policies)?;
        Ok(Arc::new(Self { bundle }))
    }

    /// The loaded policy bundle.
    pub fn bundle(&self) -> &PolicyBundle {
        &self.bundle
    }

    /// A per-thread evaluator sharing this engine.
    pub fn evaluator(self: &Arc<Self>) -> Evaluator {
        Evaluator {
            engine: Arc::clone(self),
            rego: self.bundle.evaluator(),
        }
    }
}

/// Per-thread evaluation state: a prepared clone of the Rego engine.
pub struct Evaluator {
    engine: Arc<Engine>,
    rego: regorus::Engine,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("engine", &self.engine)
            .finish()
    }
}

impl Evaluator {
    /// The engine this evaluator belongs to.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Parse, validate and evaluate request bytes.
    pub fn evaluate_bytes(
        &mut self,
        bytes: &[u8],
        now: OffsetDateTime,
    ) -> Result<Decision, RequestError> {
        let request = PromotionRequest::from_slice(bytes)?;
        Ok(self.evaluate(&request, now))
    }

    /// Run a validated request through every stage. Infallible by design: every
    /// failure past validation becomes a violation in a denied decision.
    pub fn evaluate(&mut self, request: &PromotionRequest, now: OffsetDateTime) -> Decision {
        let now_text = format_time(now);

        // Stage: attestations. Verification lands with the trust store; until then
        // nothing is verified and every policy requirement on verified facts fails.
        let verified = serde_json::json!({"attestations": [], "rejected": []});

        // Stage: policy.
        let input = serde_json::json!({
            "request": request.raw,
            "verified": verified,
            "plugins": {},
            "now": now_text,
        });
        let outcome = policy::evaluate(&mut self.rego, regorus::Value::from(input));

        // Stage: decision.
        let verdict = combine(StageResults {
            policy: outcome,
            stage_violations: Vec::new(),
            stage_warnings: Vec::new(),
        });
        let bundle = &self.engine.bundle;
        Decision {
            decision_id: uuid::Uuid::now_v7().to_string(),
            request_id: request.typed.id.clone(),
            artifact: request.typed.artifact.clone(),
            from: request.typed.from.clone(),
            to: request.typed.to.clone(),
            allowed: verdict.allowed,
            violations: verdict.violations,
            warnings: verdict.warnings,
            evaluated_at: now_text,
            input_digest: sha256_set(&canonical_json(&request.raw)),
            policy: PolicyRef {
                uri: bundle.uri().to_string(),
                digest: [("sha256".to_string(), bundle.digest().to_string())].into(),
            },
            plugins: Vec::new(),
            engine: EngineRef::default(),
        }
    }
}

/// Format a time as RFC 3339 in UTC with second precision (`2026-11-26T18:00:00Z`).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Parse an RFC 3339 time (`--at`, recorded decision times).
pub fn parse_time(value: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| Error::Time {
        value: value.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trip_is_utc_seconds() {
        let t = parse_time("2026-11-26T19:00:00.123+01:00").unwrap();
        assert_eq!(format_time(t), "2026-11-26T18:00:00Z");
        assert!(parse_time("yesterday").is_err());
    }
}
