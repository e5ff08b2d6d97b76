//! The decision record and the one fail-closed combine that turns stage results into
//! allow or deny; nothing else in the engine may decide `allowed`.

use serde::{Deserialize, Serialize};

use crate::digest::DigestSet;
use crate::plugin::manifest::Mode;
use crate::plugin::PluginOutcome;
use crate::policy::{PolicyError, PolicyOutcome, RuleFinding};
use crate::request::Artifact;

/// The engine's name in decisions.
pub const ENGINE_ID: &str = "promo-policy";
/// The engine's version in decisions.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Longest violation message kept (GitHub's check-run annotation limit).
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// A promotion decision (CONTRACT §3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// UUIDv7, unique per decision.
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
    /// Every reason for a deny (empty when allowed).
    pub violations: Vec<Violation>,
    /// Things worth knowing that do not deny.
    pub warnings: Vec<Violation>,
    /// The evaluation time (RFC 3339), the `input.now` policy saw.
    pub evaluated_at: String,
    /// sha256 of the canonical request JSON.
    pub input_digest: DigestSet,
    /// The exact policy bundle.
    pub policy: PolicyRef,
    /// Plugins that ran, with their digests and results.
    pub plugins: Vec<PluginRecord>,
    /// Which engine decided.
    pub engine: EngineRef,
    /// The W3C trace this decision belongs to (the caller's `traceparent` or the
    /// request's `trace`), with the decision's own span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::trace::TraceRef>,
    /// Where `eval --collect` fetched the request's registry attestations; absent when
    /// they were not collected in the same process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected: Option<CollectedRef>,
}

/// The registry collection a decision was made on (`eval --collect`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CollectedRef {
    /// The image pinned by digest: `registry/repo@sha256:<hex>`.
    pub image: String,
    /// For an index and `--platform`: the platform manifest's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_manifest: Option<String>,
    /// sha256 of the collected JSONL evidence file (what `collect --out` writes).
    pub evidence_digest: DigestSet,
}

/// One reason for a deny, or a warning.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Violation {
    /// Stable id, e.g. `approvals.min_count`.
    pub id: String,
    /// Which stage raised it: `policy` or `plugin:<name>` in JSON.
    pub source: Source,
    /// A sentence a person can act on.
    pub msg: String,
    /// The facts that caused it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<serde_json::Value>,
}

/// Which stage raised a finding. In JSON a string (interface): `policy`, `plugin:<name>`,
/// and CONTRACT's `request` and `attestation`, which this engine reports as exit codes and
/// rejected attestations instead but still reads in recorded decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Source {
    /// The policy bundle (and the engine's own `policy.*` ids).
    Policy,
    /// A WASM plugin, by name.
    Plugin(String),
    /// The request (CONTRACT; not raised by this engine).
    Request,
    /// An attestation (CONTRACT; not raised by this engine).
    Attestation,
}

impl Source {
    /// The plugin's name, for `plugin:<name>`.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            Source::Plugin(name) => Some(name),
            _ => None,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Policy => f.write_str("policy"),
            Source::Plugin(name) => write!(f, "plugin:{name}"),
            Source::Request => f.write_str("request"),
            Source::Attestation => f.write_str("attestation"),
        }
    }
}

impl From<Source> for String {
    fn from(s: Source) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Source {
    type Error = String;
    fn try_from(s: String) -> Result<Source, String> {
        match s.as_str() {
            "policy" => Ok(Source::Policy),
            "request" => Ok(Source::Request),
            "attestation" => Ok(Source::Attestation),
            _ => match s.strip_prefix("plugin:") {
                Some(name) if !name.is_empty() => Ok(Source::Plugin(name.to_owned())),
                _ => Err(format!(
                    "unknown violation source `{s}` (policy, plugin:<name>, request, attestation)"
                )),
            },
        }
    }
}

impl Violation {
    /// A violation from `source`, its message capped at [`MAX_MESSAGE_CHARS`].
    pub fn new(id: impl Into<String>, source: Source, msg: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            source,
            msg: cap_message(msg.into()),
            facts: None,
        }
    }

    fn from_finding(f: RuleFinding, source: Source) -> Self {
        Self {
            id: f.id,
            source,
            msg: cap_message(f.msg),
            facts: f.facts,
        }
    }
}

fn cap_message(msg: String) -> String {
    if msg.chars().count() <= MAX_MESSAGE_CHARS {
        return msg;
    }
    let mut cut: String = msg.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The policy bundle a decision was made under.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyRef {
    /// Where it was loaded from.
    pub uri: String,
    /// `{"sha256": <bundle digest>}`.
    pub digest: DigestSet,
    /// The bundle `.manifest`'s `revision`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The trust-file id of the key that signed the bundle (`.signatures.json`), when
    /// it was signed.
    #[serde(default, rename = "signedBy", skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// A plugin that took part in a decision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginRecord {
    /// Plugin name.
    pub name: String,
    /// `{"sha256": <module digest>}`.
    pub digest: DigestSet,
    /// Whether it ran and passed.
    pub ok: bool,
    /// `required` or `advisory`.
    pub mode: Mode,
}

/// The engine that decided.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineRef {
    /// Always `promo-policy`.
    pub id: String,
    /// Crate version.
    pub version: String,
}

impl Default for EngineRef {
    fn default() -> Self {
        Self {
            id: ENGINE_ID.to_string(),
            version: ENGINE_VERSION.to_string(),
        }
    }
}

/// Everything the stages found, ready to combine.
#[derive(Debug)]
pub struct StageResults {
    /// What the policy said, or why it could not say.
    pub policy: Result<PolicyOutcome, PolicyError>,
    /// Denying violations raised by stages other than policy (plugins, attestations).
    pub stage_violations: Vec<Violation>,
    /// Warnings raised by stages other than policy.
    pub stage_warnings: Vec<Violation>,
}

/// What the plugins found, sorted into denying violations, warnings and the records
/// a decision lists.
#[derive(Debug, Default)]
pub struct PluginFindings {
    /// Violations from required plugins (they deny).
    pub violations: Vec<Violation>,
    /// Findings of advisory plugins (they warn).
    pub warnings: Vec<Violation>,
    /// One record per plugin that was due to run.
    pub records: Vec<PluginRecord>,
}

/// Turn plugin outcomes into findings. A required plugin denies unless it ran, said
/// `ok`, and listed no violations; an advisory plugin's findings only warn.
pub fn plugin_findings(outcomes: &[PluginOutcome]) -> PluginFindings {
    let mut out = PluginFindings::default();
    for o in outcomes {
        let source = Source::Plugin(o.name.clone());
        let mut found = Vec::new();
        let passed = match &o.result {
            // Ran, passed, nothing to report.
            Ok(r) if r.ok && r.violations.is_empty() => true,
            // Ran and said not ok, or said ok while listing violations (contradictory:
            // we side with the violations). Each one is reported.
            Ok(r) => {
                found.extend(
                    r.violations
                        .iter()
                        .map(|v| Violation::new(&v.id, source.clone(), &v.msg)),
                );
                if found.is_empty() {
                    found.push(Violation::new(
                        "plugin.failed",
                        source.clone(),
                        format!(
                            "plugin `{}` reported not ok without giving a reason",
                            o.name
                        ),
                    ));
                }
                false
            }
            // Did not run to completion: trap, timeout, memory cap, bad output, ABI.
            Err(f) => {
                found.push(Violation::new(f.kind.violation_id(), source, &f.message));
                false
            }
        };
        if o.required {
            out.violations.extend(found);
        } else {
            out.warnings.extend(found);
        }
        out.records.push(PluginRecord {
            name: o.name.clone(),
            digest: o.digest.map(DigestSet::from).unwrap_or_default(),
            ok: passed,
            mode: if o.required {
                Mode::Required
            } else {
                Mode::Advisory
            },
        });
    }
    out
}

/// The verdict and its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Allowed or not.
    pub allowed: bool,
    /// Every reason for a deny.
    pub violations: Vec<Violation>,
    /// Warnings.
    pub warnings: Vec<Violation>,
}

/// The one place that decides: allowed only when the policy evaluated, said allow,
/// and nothing from any stage denies.
pub fn combine(results: StageResults) -> Verdict {
    let StageResults {
        policy,
        stage_violations,
        stage_warnings,
    } = results;
    let mut violations = Vec::new();
    let mut warnings = Vec::new();
    let policy_allows = match policy {
        // The policy ran and allowed. Any deny entries it also produced still deny:
        // a bundle that says both is contradicting itself, and we side with deny.
        Ok(PolicyOutcome {
            allow: true,
            deny,
            warn,
        }) => {
            violations.extend(from_policy(deny));
            warnings.extend(from_policy(warn));
            true
        }
        // The policy ran and denied; it owes a reason, and if it gave none we say so
        // rather than deny silently.
        Ok(PolicyOutcome {
            allow: false,
            deny,
            warn,
        }) => {
            if deny.is_empty() {
                violations.push(Violation::new(
                    "policy.denied",
                    Source::Policy,
                    "the policy did not allow this promotion and gave no reason",
                ));
            }
            violations.extend(from_policy(deny));
            warnings.extend(from_policy(warn));
            false
        }
        // The policy could not decide (runtime error, timeout, wrong shape): deny.
        Err(e) => {
            violations.push(Violation::new(
                "policy.error",
                Source::Policy,
                e.to_string(),
            ));
            false
        }
    };
    violations.extend(stage_violations);
    warnings.extend(stage_warnings);
    let allowed = match (policy_allows, violations.is_empty()) {
        // The only way to allow: the policy said yes and nothing denies.
        (true, true) => true,
        // The policy said yes but a stage or a deny entry says no.
        (true, false) => false,
        // The policy said no (or failed); its reasons are already listed.
        (false, _) => false,
    };
    Verdict {
        allowed,
        violations,
        warnings,
    }
}

/// Policy findings as violations with source `policy`.
fn from_policy(findings: Vec<RuleFinding>) -> impl Iterator<Item = Violation> {
    findings
        .into_iter()
        .map(|f| Violation::from_finding(f, Source::Policy))
}

/// Canonical JSON bytes: object keys sorted, no insignificant whitespace; the
/// input to `inputDigest`, so equal requests digest equally whatever their layout.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_canonical(value, &mut out);
    out
}

/// [`canonical_json`] of an object given as borrowed members, without building it.
pub fn canonical_json_object<'a>(
    members: impl IntoIterator<Item = (&'a str, &'a serde_json::Value)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    write_object(members.into_iter().collect(), &mut out);
    out
}

fn write_object(mut members: Vec<(&str, &serde_json::Value)>, out: &mut Vec<u8>) {
    members.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, child)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // A key serialises as the JSON string it is, like any string value.
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        write_canonical(child, out);
    }
    out.push(b'}');
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    match v {
        serde_json::Value::Object(map) => {
            write_object(map.iter().map(|(k, v)| (k.as_str(), v)).collect(), out);
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            // Scalars serialise infallibly; an empty write would only change the
            // digest, never the verdict.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
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

    fn finding(id: &str) -> RuleFinding {
        RuleFinding {
            id: id.into(),
            msg: format!("{id} happened"),
            facts: None,
        }
    }

    fn outcome(allow: bool, deny: &[&str]) -> Result<PolicyOutcome, PolicyError> {
        Ok(PolicyOutcome {
            allow,
            deny: deny.iter().map(|d| finding(d)).collect(),
            warn: vec![finding("w.x")],
        })
    }

    fn run(policy: Result<PolicyOutcome, PolicyError>, stage: Vec<Violation>) -> Verdict {
        combine(StageResults {
            policy,
            stage_violations: stage,
            stage_warnings: vec![],
        })
    }

    #[test]
    fn allow_only_when_policy_allows_and_nothing_denies() {
        let v = run(outcome(true, &[]), vec![]);
        assert!(v.allowed);
        assert_eq!(v.warnings.len(), 1);
    }

    #[test]
    fn policy_allow_with_deny_entries_denies() {
        let v = run(outcome(true, &["a.b"]), vec![]);
        assert!(!v.allowed);
        assert_eq!(v.violations[0].id, "a.b");
    }

    #[test]
    fn stage_violation_overrides_policy_allow() {
        let v = run(
            outcome(true, &[]),
            vec![Violation::new(
                "plugin.trap",
                Source::Plugin("x".into()),
                "boom",
            )],
        );
        assert!(!v.allowed);
        assert_eq!(v.violations[0].source, Source::Plugin("x".into()));
    }

    #[test]
    fn silent_policy_deny_is_named() {
        let v = run(outcome(false, &[]), vec![]);
        assert!(!v.allowed);
        assert_eq!(v.violations[0].id, "policy.denied");
    }

    #[test]
    fn policy_error_denies() {
        let v = run(Err(PolicyError::Runtime("boom".into())), vec![]);
        assert!(!v.allowed);
        assert_eq!(v.violations[0].id, "policy.error");
        assert!(v.violations[0].msg.contains("boom"));
    }

    #[test]
    fn sources_read_and_write_as_their_interface_strings() {
        for (text, source) in [
            ("policy", Source::Policy),
            (
                "plugin:vuln-threshold",
                Source::Plugin("vuln-threshold".into()),
            ),
            ("request", Source::Request),
            ("attestation", Source::Attestation),
        ] {
            assert_eq!(serde_json::to_value(&source).unwrap(), text);
            assert_eq!(
                serde_json::from_value::<Source>(serde_json::json!(text)).unwrap(),
                source
            );
        }
        for bad in ["plugin:", "Policy", "plugins:x", ""] {
            let err = serde_json::from_value::<Source>(serde_json::json!(bad)).unwrap_err();
            assert!(
                err.to_string().contains("unknown violation source"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn long_messages_are_capped() {
        let v = Violation::new("x", Source::Policy, "y".repeat(5000));
        assert_eq!(v.msg.chars().count(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn canonical_json_sorts_keys_and_ignores_layout() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": [1, {"d": 1, "c": 2}], "a": "x"}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":"x","b":[1,{"c":2,"d":1}]}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), br#"{"a":"x","b":[1,{"c":2,"d":1}]}"#);
    }
}
