//! Explanations: what a decision checked, as each check the bundle's catalog declares
//! marked passed, denied or warned, read from the decision itself (no second evaluation).

use serde::Serialize;

use crate::decision::{Decision, Source};
use crate::policy::Check;

/// How one check ended in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    /// Evaluated, and it reported nothing.
    Passed,
    /// It denied the promotion.
    Denied,
    /// It warned.
    Warned,
    /// The policy failed as a whole (`policy.error`), so no check can be said to pass.
    NotEvaluated,
}

/// One line of an explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    /// The rule package (`approvals`) or, for ids outside the catalog, the violation's
    /// source (`plugin:semver-gate`, `policy`).
    pub package: String,
    /// The check's id.
    pub id: String,
    /// What it checks (empty for ids the catalog does not declare).
    pub what: String,
    /// How it ended.
    pub result: CheckResult,
}

/// Every catalog check in catalog order, then any reported id the catalog does not
/// declare (plugins, engine-level ids such as `policy.error`), so nothing reported is
/// missing from the explanation.
pub fn explain(catalog: &[Check], decision: &Decision) -> Vec<Explained> {
    let denied = |id: &str| decision.violations.iter().any(|v| v.id == id);
    let warned = |id: &str| decision.warnings.iter().any(|v| v.id == id);
    // An engine-level policy failure means the packages' results are unknown.
    let policy_failed = decision
        .violations
        .iter()
        .any(|v| v.source == Source::Policy && v.id == "policy.error");
    let mut out: Vec<Explained> = catalog
        .iter()
        .map(|c| Explained {
            package: c.package.clone(),
            id: c.id.clone(),
            what: c.what.clone(),
            result: if denied(&c.id) {
                CheckResult::Denied
            } else if warned(&c.id) {
                CheckResult::Warned
            } else if policy_failed {
                CheckResult::NotEvaluated
            } else {
                CheckResult::Passed
            },
        })
        .collect();
    let reported = decision
        .violations
        .iter()
        .map(|v| (v, CheckResult::Denied))
        .chain(decision.warnings.iter().map(|v| (v, CheckResult::Warned)));
    for (v, result) in reported {
        if !out.iter().any(|e| e.id == v.id) {
            out.push(Explained {
                package: v.source.to_string(),
                id: v.id.clone(),
                what: String::new(),
                result,
            });
        }
    }
    // Plugins that ran and reported nothing passed; one that reported is listed above.
    for p in &decision.plugins {
        let source = format!("plugin:{}", p.name);
        if !out.iter().any(|e| e.package == source) {
            out.push(Explained {
                id: source.clone(),
                package: source,
                what: format!("WASM plugin check ({})", p.mode),
                result: CheckResult::Passed,
            });
        }
    }
    out
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
    use crate::decision::Violation;

    fn check(package: &str, id: &str) -> Check {
        Check {
            package: package.into(),
            id: id.into(),
            what: format!("what {id}"),
        }
    }

    fn decision(violations: Vec<Violation>, warnings: Vec<Violation>) -> Decision {
        let mut d: Decision = serde_json::from_value(serde_json::json!({
            "decisionId": "d", "requestId": "r",
            "artifact": {"name": "a", "digest": {"sha256": "00"}},
            "from": "staging", "to": "prod", "allowed": true,
            "violations": [], "warnings": [],
            "evaluatedAt": "2026-11-26T18:00:00Z", "inputDigest": {"sha256": "00"},
            "policy": {"uri": "p", "digest": {"sha256": "00"}},
            "plugins": [], "engine": {"id": "promo-policy", "version": "0"}
        }))
        .unwrap();
        d.allowed = violations.is_empty();
        d.violations = violations;
        d.warnings = warnings;
        d
    }

    #[test]
    fn each_check_is_marked_and_extra_ids_are_kept() {
        let catalog = [
            check("a", "a.one"),
            check("a", "a.two"),
            check("b", "b.one"),
        ];
        let d = decision(
            vec![
                Violation::new("a.two", Source::Policy, "no"),
                Violation::new("plugin.trap", Source::Plugin("x".into()), "trapped"),
            ],
            vec![Violation::new("b.one", Source::Policy, "hm")],
        );
        let got: Vec<(String, CheckResult)> = explain(&catalog, &d)
            .into_iter()
            .map(|e| (e.id, e.result))
            .collect();
        assert_eq!(
            got,
            [
                ("a.one".to_string(), CheckResult::Passed),
                ("a.two".to_string(), CheckResult::Denied),
                ("b.one".to_string(), CheckResult::Warned),
                ("plugin.trap".to_string(), CheckResult::Denied),
            ]
        );
    }

    #[test]
    fn a_failed_policy_passes_nothing() {
        let catalog = [check("a", "a.one")];
        let d = decision(
            vec![Violation::new("policy.error", Source::Policy, "boom")],
            vec![],
        );
        let got = explain(&catalog, &d);
        assert_eq!(got[0].result, CheckResult::NotEvaluated);
        assert_eq!(got[1].id, "policy.error");
    }
}
