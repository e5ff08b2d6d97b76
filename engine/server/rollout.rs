//! Admission rollout: what a refusal becomes under `enforce`, `warn` or `dry-run`, when a break-glass annotation may turn it into an admission, and the signed audit record of every admission that was not a clean pass; it never admits under `enforce` where the config says no.

use serde::Deserialize;
use serde_json::{json, Value};

use super::admission_config::RolloutMode;
use crate::decision::{canonical_json, Decision, EngineRef, PolicyRef, Source, Violation};
use crate::digest::DigestSet;
use crate::evaluator::{Engine, Evaluation};

/// Most warnings in one AdmissionReview response. kubectl prints each on its own line and
/// the API server caps the total it passes on; eight says enough to act on.
pub const MAX_WARNINGS: usize = 8;

/// Longest warning, in characters: the API server truncates longer ones.
pub const MAX_WARNING_CHARS: usize = 256;

/// Largest break-glass annotation value read, in bytes.
pub const MAX_BREAK_GLASS_BYTES: usize = 2048;

/// Longest break-glass `reason`, in characters: a sentence or two for the incident log.
pub const MAX_REASON_CHARS: usize = 512;

/// Longest break-glass `ticket`, in characters: an incident id, not a description.
pub const MAX_TICKET_CHARS: usize = 64;

/// The audit violation ids that mark an admission record (first in its violations),
/// kept with the rule that reads them ([`crate::audit::RecordKind::of`]).
pub use crate::audit::{ADMISSION_FROM_PREFIX, BREAK_GLASS_ID, DRY_RUN_ID};

/// The audit violation id of each reason the review would have been refused for.
pub const REFUSAL_ID: &str = "admission.refused";

/// A break-glass request read from the workload's annotation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlass {
    /// Why the gate is being bypassed.
    pub reason: String,
    /// The incident ticket that covers it.
    pub ticket: String,
}

/// Why a break-glass annotation does not count (a reason in the review's answer).
#[derive(Debug, thiserror::Error)]
pub enum BreakGlassError {
    /// The value is not a string.
    #[error("it is not a string")]
    NotString,
    /// The value is over [`MAX_BREAK_GLASS_BYTES`].
    #[error("it is longer than {MAX_BREAK_GLASS_BYTES} bytes")]
    TooLong,
    /// Not the JSON object it must be (serde_json's error kept whole; its words are in
    /// the message, which the user reads in one line).
    #[error(r#"it is not `{{"reason": "...", "ticket": "..."}}` ({0})"#)]
    Shape(serde_json::Error),
    /// A field is blank.
    #[error("its `{0}` is empty")]
    Empty(&'static str),
    /// A field is over its cap.
    #[error("its `{field}` is longer than {max} characters")]
    FieldTooLong {
        /// `reason` or `ticket`.
        field: &'static str,
        /// Its cap.
        max: usize,
    },
    /// A field holds control characters.
    #[error("its `{0}` holds control characters")]
    Control(&'static str),
}

impl BreakGlass {
    /// Parse and bound an annotation value; why it does not count, if it does not.
    pub fn parse(text: &str) -> Result<Self, BreakGlassError> {
        if text.len() > MAX_BREAK_GLASS_BYTES {
            return Err(BreakGlassError::TooLong);
        }
        let glass: BreakGlass = serde_json::from_str(text).map_err(BreakGlassError::Shape)?;
        for (field, value, max) in [
            ("reason", &glass.reason, MAX_REASON_CHARS),
            ("ticket", &glass.ticket, MAX_TICKET_CHARS),
        ] {
            if value.trim().is_empty() {
                return Err(BreakGlassError::Empty(field));
            }
            if value.chars().count() > max {
                return Err(BreakGlassError::FieldTooLong { field, max });
            }
            if value.chars().any(char::is_control) {
                return Err(BreakGlassError::Control(field));
            }
        }
        Ok(glass)
    }
}

/// The break-glass annotation `key` on the first of `metadata_pointers` that has it:
/// `None` when absent, else the request or why it does not count.
pub fn read_break_glass(
    object: &Value,
    metadata_pointers: &[String],
    key: &str,
) -> Option<Result<BreakGlass, BreakGlassError>> {
    let escaped = key.replace('~', "~0").replace('/', "~1");
    metadata_pointers.iter().find_map(|metadata| {
        let value = object.pointer(&format!("{metadata}/annotations/{escaped}"))?;
        Some(match value.as_str() {
            Some(text) => BreakGlass::parse(text),
            None => Err(BreakGlassError::NotString),
        })
    })
}

/// What the gate did with a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was wrong: admitted.
    Passed,
    /// Refused (`enforce`).
    Denied,
    /// Admitted with the reasons as warnings (`warn`).
    Warned,
    /// Admitted silently; `enforce` would have refused (`dry-run`).
    DryRun,
    /// Admitted under `enforce` by a break-glass annotation the namespace allows.
    BreakGlass(BreakGlass),
}

/// Whether a break-glass may be honoured: the namespace allows it and an audit log
/// will hold its record.
#[derive(Debug, Clone, Copy)]
pub struct GlassRule {
    /// The config allows break-glass in the review's namespace.
    pub allowed: bool,
    /// The sidecar records admissions (`serve --audit`).
    pub audited: bool,
}

/// Settle a review judged with `reasons` (empty: nothing wrong) under `mode`; returns the
/// outcome and may add to `reasons` (why a break-glass did not apply).
pub fn settle(
    mode: RolloutMode,
    rule: GlassRule,
    glass: Option<Result<BreakGlass, BreakGlassError>>,
    reasons: &mut Vec<String>,
) -> Outcome {
    if reasons.is_empty() {
        return Outcome::Passed;
    }
    match mode {
        // Rollout: admit, and let the caller count and audit what enforce would refuse.
        RolloutMode::DryRun => Outcome::DryRun,
        // Rollout: admit, and tell the user why enforce would refuse.
        RolloutMode::Warn => Outcome::Warned,
        RolloutMode::Enforce => match glass {
            // No break-glass asked for: refuse.
            None => Outcome::Denied,
            // A break-glass that cannot be read bypasses nothing: refuse, saying why.
            Some(Err(why)) => {
                reasons.push(format!("the break-glass annotation does not count: {why}"));
                Outcome::Denied
            }
            // The config does not allow break-glass here: it never applies.
            Some(Ok(_)) if !rule.allowed => {
                reasons.push(
                    "break-glass is not allowed in this namespace by the admission config".into(),
                );
                Outcome::Denied
            }
            // A break-glass nobody can audit is not honoured.
            Some(Ok(_)) if !rule.audited => {
                reasons
                    .push("break-glass needs an audit log to record it (`serve --audit`)".into());
                Outcome::Denied
            }
            // Allowed here and recorded: admit.
            Some(Ok(glass)) => Outcome::BreakGlass(glass),
        },
    }
}

/// The AdmissionReview warnings for `outcome`: at most [`MAX_WARNINGS`], each at most
/// [`MAX_WARNING_CHARS`] and printable.
pub fn warnings(outcome: &Outcome, reasons: &[String]) -> Vec<String> {
    let head = match outcome {
        Outcome::Passed | Outcome::Denied | Outcome::DryRun => return Vec::new(),
        Outcome::Warned => "promo-policy (warn mode) would refuse this under enforce".to_string(),
        Outcome::BreakGlass(g) => format!(
            "promo-policy: admitted by break-glass (ticket {}): {}; recorded in the audit log",
            g.ticket, g.reason
        ),
    };
    let mut out = vec![head];
    let room = MAX_WARNINGS - 1;
    for reason in reasons
        .iter()
        .take(if reasons.len() > room { room - 1 } else { room })
    {
        out.push(reason.clone());
    }
    if reasons.len() > room {
        out.push(format!(
            "... and {} more reasons",
            reasons.len() - (room - 1)
        ));
    }
    out.into_iter().map(|w| bound(&w)).collect()
}

/// `text` printable and cut to [`MAX_WARNING_CHARS`] characters.
fn bound(text: &str) -> String {
    let safe = crate::textsafe::printable(text);
    if safe.chars().count() <= MAX_WARNING_CHARS {
        return safe.into_owned();
    }
    let mut cut: String = safe.chars().take(MAX_WARNING_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// What an audit record of an admission says about it.
#[derive(Debug)]
pub struct AdmissionEvent<'a> {
    /// The review's uid.
    pub uid: &'a str,
    /// `Deployment `shop/web``.
    pub subject: &'a str,
    /// The review's namespace.
    pub namespace: Option<&'a str>,
    /// The environment the review was judged against (its namespace's).
    pub environment: Option<&'a str>,
    /// The mode applied.
    pub mode: RolloutMode,
    /// What happened.
    pub outcome: &'a Outcome,
    /// Why `enforce` would refuse it.
    pub reasons: &'a [String],
    /// The review's `request.object`.
    pub object: &'a Value,
    /// Who asked (`request.userInfo.username`).
    pub user: Option<&'a str>,
}

impl AdmissionEvent<'_> {
    /// The summary recorded as the audit record's request.
    pub fn summary(&self) -> Value {
        let glass = match self.outcome {
            Outcome::BreakGlass(g) => json!({"reason": g.reason, "ticket": g.ticket}),
            _ => Value::Null,
        };
        json!({
            "admission": {
                "uid": self.uid,
                "subject": self.subject,
                "namespace": self.namespace,
                "environment": self.environment,
                "mode": self.mode.as_str(),
                "user": self.user,
                "breakGlass": glass,
                "reasons": self.reasons,
                "objectDigest": DigestSet::sha256_of(&canonical_json(self.object)),
            }
        })
    }

    /// The signed record of this admission: a decision that, by construction, allows
    /// nothing (`allowed: false`), so no one can present it to admission or `verify`
    /// as a promotion; its `from` is `namespace:<name>` and its violations are a marker
    /// ([`BREAK_GLASS_ID`] or [`DRY_RUN_ID`]) then the refusal reasons, which is what
    /// makes it an admission record to `eval --batch`, `diff` and `report`
    /// ([`crate::audit::RecordKind::of`]).
    pub fn decision(&self, engine: &Engine, now: time::OffsetDateTime) -> Decision {
        let bundle = engine.bundle();
        let violation = |id: &str, msg: String| Violation {
            id: id.to_string(),
            source: Source::Policy,
            msg,
            facts: None,
        };
        let mut violations = vec![match self.outcome {
            Outcome::BreakGlass(g) => violation(
                BREAK_GLASS_ID,
                format!(
                    "admitted by break-glass, ticket `{}`: {}",
                    g.ticket, g.reason
                ),
            ),
            _ => violation(
                DRY_RUN_ID,
                format!(
                    "admitted in `{}` mode; enforce would refuse",
                    self.mode.as_str()
                ),
            ),
        }];
        violations.extend(
            self.reasons
                .iter()
                .map(|r| violation(REFUSAL_ID, r.clone())),
        );
        let summary = self.summary();
        Decision {
            decision_id: uuid::Uuid::now_v7().to_string(),
            request_id: self.uid.to_string(),
            artifact: crate::request::Artifact {
                name: format!("admission: {}", self.subject),
                digest: DigestSet::sha256_of(&canonical_json(self.object)),
            },
            from: format!("{ADMISSION_FROM_PREFIX}{}", self.namespace.unwrap_or("")),
            to: self.environment.unwrap_or("").to_string(),
            allowed: false,
            violations,
            warnings: Vec::new(),
            evaluated_at: crate::input::format_time(now),
            input_digest: DigestSet::sha256_of(&canonical_json(&summary)),
            policy: PolicyRef {
                uri: bundle.uri().to_string(),
                digest: bundle.digest().into(),
                revision: bundle.revision().map(str::to_string),
                signed_by: bundle.signed_by().map(str::to_string),
            },
            plugins: Vec::new(),
            engine: EngineRef::default(),
            trace: None,
            collected: None,
        }
    }

    /// Sign [`Self::decision`]; the envelope and the decision, for the audit log.
    pub fn sign(
        &self,
        engine: &Engine,
        now: time::OffsetDateTime,
    ) -> Result<crate::evaluator::SignedDecision, crate::sign::SignError> {
        engine.sign(&Evaluation {
            decision: self.decision(engine, now),
            verified: Default::default(),
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
mod tests {
    use super::*;

    const OPEN: GlassRule = GlassRule {
        allowed: true,
        audited: true,
    };

    fn glass() -> Option<Result<BreakGlass, BreakGlassError>> {
        Some(BreakGlass::parse(
            r#"{"reason": "prod down", "ticket": "INC-1"}"#,
        ))
    }

    #[test]
    fn break_glass_needs_both_fields_bounded_and_non_empty() {
        assert!(BreakGlass::parse(r#"{"reason": "x", "ticket": "INC-1"}"#).is_ok());
        for (text, needle) in [
            (r#"{"reason": "x"}"#, "missing field `ticket`"),
            (r#"{"reason": " ", "ticket": "INC-1"}"#, "`reason` is empty"),
            (
                r#"{"reason": "x", "ticket": "INC-1", "by": "me"}"#,
                "unknown field",
            ),
            ("yes", "is not"),
            (
                r#"{"reason": "a\nb", "ticket": "INC-1"}"#,
                "control characters",
            ),
        ] {
            let why = BreakGlass::parse(text).unwrap_err().to_string();
            assert!(why.contains(needle), "{text}: {why}");
        }
        let long = format!(r#"{{"reason": "x", "ticket": "{}"}}"#, "T".repeat(65));
        assert!(BreakGlass::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than 64"));
    }

    #[test]
    fn enforce_honours_break_glass_only_where_allowed_and_audited() {
        let reasons = || vec!["container `a` image `x` is not pinned".to_string()];
        let mut r = reasons();
        assert!(matches!(
            settle(RolloutMode::Enforce, OPEN, glass(), &mut r),
            Outcome::BreakGlass(_)
        ));
        let closed = GlassRule {
            allowed: false,
            audited: true,
        };
        let mut r = reasons();
        assert_eq!(
            settle(RolloutMode::Enforce, closed, glass(), &mut r),
            Outcome::Denied
        );
        assert!(r[1].contains("not allowed in this namespace"), "{r:?}");
        let unaudited = GlassRule {
            allowed: true,
            audited: false,
        };
        let mut r = reasons();
        assert_eq!(
            settle(RolloutMode::Enforce, unaudited, glass(), &mut r),
            Outcome::Denied
        );
        let mut r = reasons();
        let bad = Some(BreakGlass::parse("{}"));
        assert_eq!(
            settle(RolloutMode::Enforce, OPEN, bad, &mut r),
            Outcome::Denied
        );
        assert!(r[1].contains("does not count"), "{r:?}");
        let mut r = reasons();
        assert_eq!(
            settle(RolloutMode::Enforce, OPEN, None, &mut r),
            Outcome::Denied
        );
        assert_eq!(
            settle(RolloutMode::Warn, OPEN, None, &mut reasons()),
            Outcome::Warned
        );
        assert_eq!(
            settle(RolloutMode::DryRun, OPEN, glass(), &mut reasons()),
            Outcome::DryRun
        );
        assert_eq!(
            settle(RolloutMode::Enforce, OPEN, glass(), &mut Vec::new()),
            Outcome::Passed
        );
    }

    /// Every admission record reads as one to `eval --batch`, `diff` and `report`, and a
    /// promotion decision never does.
    #[test]
    fn admission_records_are_told_from_promotions_by_the_one_rule() {
        use crate::audit::RecordKind;
        let engine = Engine::load(&crate::EngineConfig::with_policies("policies")).unwrap();
        let now = crate::input::parse_time("2026-11-26T18:00:00Z").unwrap();
        let reasons = vec!["container `a` image `x` is not pinned".to_string()];
        let glass = Outcome::BreakGlass(BreakGlass {
            reason: "down".into(),
            ticket: "INC-1".into(),
        });
        for (outcome, mode) in [
            (glass, RolloutMode::Enforce),
            (Outcome::DryRun, RolloutMode::DryRun),
        ] {
            let event = AdmissionEvent {
                uid: "u",
                subject: "Pod `shop/web`",
                namespace: Some("shop"),
                environment: Some("prod"),
                mode,
                outcome: &outcome,
                reasons: &reasons,
                object: &json!({}),
                user: None,
            };
            let d = event.decision(&engine, now);
            let ids: Vec<&str> = d.violations.iter().map(|v| v.id.as_str()).collect();
            assert_eq!(
                RecordKind::of(&d.from, &ids),
                RecordKind::Admission,
                "{ids:?}"
            );
            assert!(!d.allowed);
            assert_eq!(d.to, "prod");
        }
        // Either mark alone is not enough.
        assert_eq!(
            RecordKind::of("staging", &[DRY_RUN_ID]),
            RecordKind::Promotion
        );
        assert_eq!(
            RecordKind::of("namespace:shop", &["approvals.min_count", DRY_RUN_ID]),
            RecordKind::Promotion
        );
        let none: [&str; 0] = [];
        assert_eq!(
            RecordKind::of("namespace:shop", &none),
            RecordKind::Promotion
        );
    }

    #[test]
    fn warnings_are_bounded_and_printable() {
        let reasons: Vec<String> = (0..20)
            .map(|i| format!("reason {i}\u{1b}[31m {}", "x".repeat(400)))
            .collect();
        let w = warnings(&Outcome::Warned, &reasons);
        assert_eq!(w.len(), MAX_WARNINGS);
        assert!(
            w.iter().all(|w| w.chars().count() <= MAX_WARNING_CHARS),
            "{w:?}"
        );
        assert!(w.iter().all(|w| !w.contains('\u{1b}')), "{w:?}");
        assert!(w[MAX_WARNINGS - 1].contains("and 14 more"), "{w:?}");
        let few = warnings(&Outcome::Warned, &reasons[..2]);
        assert_eq!(few.len(), 3);
        assert!(warnings(&Outcome::DryRun, &reasons).is_empty());
    }
}
