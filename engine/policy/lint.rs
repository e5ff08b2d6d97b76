//! Bundle lint: cheap static warnings about rule packages, deny entries and data that
//! cannot take part in a decision the way their author meant; warnings, never errors.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{Expr, Rule, RuleHead};
use serde::Serialize;

use super::{BundleFile, PolicyError};

/// The package prefix whose packages the entry point gathers.
pub const RULES_PREFIX: &str = "promo.rules.";

/// One lint warning, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    /// Bundle-relative file.
    pub path: String,
    /// 1-based line; 0 when the finding is about a whole data file.
    pub line: u32,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Lint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(f, "{}:{}: {}", self.path, self.line, self.message)
        }
    }
}

/// A rule package under `promo.rules` as the AST shows it.
#[derive(Debug, Default)]
pub(super) struct RulePackage {
    /// Where the package is first declared (path, line).
    pub at: (String, u32),
    /// Whether any module of the package defines `deny` or `warn`.
    pub emits: bool,
    /// Whether the package declares a `catalog` of its checks.
    pub has_catalog: bool,
    /// Literal ids its deny/warn heads emit, with where.
    pub literal_ids: Vec<(String, String, u32)>,
}

/// Walk the policy modules: lint deny/warn heads and gather each rule package.
pub(super) fn rule_packages(
    engine: &mut regorus::Engine,
    lints: &mut Vec<Lint>,
) -> BTreeMap<String, RulePackage> {
    let mut packages: BTreeMap<String, RulePackage> = BTreeMap::new();
    for module in engine.get_modules().iter() {
        let path = module.package.span.source.get_path().clone();
        if path.ends_with("_test.rego") {
            continue;
        }
        let package = module.package.refr.span().text().to_string();
        let Some(name) = package.strip_prefix(RULES_PREFIX) else {
            continue;
        };
        let entry = packages
            .entry(name.to_string())
            .or_insert_with(|| RulePackage {
                at: (path.clone(), module.package.span.line),
                ..RulePackage::default()
            });
        for rule in &module.policy {
            lint_rule(rule, &path, name, entry, lints);
        }
    }
    for (name, pkg) in &packages {
        if !pkg.emits {
            lints.push(Lint {
                path: pkg.at.0.clone(),
                line: pkg.at.1,
                message: format!(
                    "promo.rules.{name} defines neither `deny` nor `warn`: it can never change a decision (move helpers to another package, e.g. promo.lib)"
                ),
            });
        }
    }
    packages
}

/// One rule of package `promo.rules.<name>` in `path`: a `catalog` is noted; a `deny` or
/// `warn` head must be a set whose entries are objects with an `"id"`.
fn lint_rule(rule: &Rule, path: &str, name: &str, entry: &mut RulePackage, lints: &mut Vec<Lint>) {
    let Rule::Spec { head, span, .. } = rule else {
        return;
    };
    let (refr, key) = match head {
        RuleHead::Set { refr, key, .. } => (refr, key.as_ref()),
        RuleHead::Compr { refr, .. } => (refr, None),
        RuleHead::Func { .. } => return,
    };
    let rule_name = refr.span().text();
    if rule_name == "catalog" {
        entry.has_catalog = true;
    }
    if rule_name != "deny" && rule_name != "warn" {
        return;
    }
    entry.emits = true;
    let line = span.line;
    let lint = |message: String| Lint {
        path: path.to_owned(),
        line,
        message,
    };
    let Some(key) = key else {
        lints.push(lint(format!(
            "`{rule_name}` of promo.rules.{name} is a single value, not a set: write `{rule_name} contains {{\"id\": ..., \"msg\": ...}} if {{ ... }}` (a single value is reported as policy.malformed_violation)"
        )));
        return;
    };
    match key.as_ref() {
        Expr::Object { fields, .. } => {
            let id = fields.iter().find_map(|(_, k, v)| match k.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. }
                    if value.as_string().is_ok_and(|s| s.as_ref() == "id") =>
                {
                    Some(v)
                }
                _ => None,
            });
            match id.map(|v| v.as_ref()) {
                None => lints.push(lint(format!(
                    "a `{rule_name}` entry of promo.rules.{name} has no \"id\": every entry needs a stable id (it is reported as policy.malformed_violation)"
                ))),
                Some(Expr::String { value, .. } | Expr::RawString { value, .. }) => {
                    if let Ok(id) = value.as_string() {
                        entry.literal_ids.push((id.to_string(), path.to_owned(), line));
                    }
                }
                Some(_) => {}
            }
        }
        Expr::String { .. } | Expr::RawString { .. } | Expr::Number { .. } => {
            lints.push(lint(format!(
                "a `{rule_name}` entry of promo.rules.{name} is a bare value: entries must be objects {{\"id\", \"msg\", \"facts\"}} (a bare value is reported as policy.malformed_violation)"
            )));
        }
        // A variable or a call: its shape is only known at evaluation time.
        _ => {}
    }
}

/// The names policies use: identifiers (`cfg.minCount`) and string literals
/// (`object.get(cfg, "distinctApprovers", true)`).
#[derive(Debug, Default)]
pub(super) struct Words {
    /// Identifier tokens.
    pub idents: BTreeSet<String>,
    /// Identifiers and string literals.
    pub all: BTreeSet<String>,
}

/// Every name a policy module can use to read data.
pub(super) fn policy_words(policies: &[BundleFile]) -> Result<Words, PolicyError> {
    use regorus::unstable::{Lexer, Source, TokenKind};
    let mut words = Words::default();
    for file in policies {
        let source = Source::from_contents(file.path.clone(), file.contents.clone())
            .map_err(PolicyError::Rego)?;
        let mut lexer = Lexer::new(&source);
        loop {
            let token = lexer.next_token().map_err(PolicyError::Rego)?;
            match token.0 {
                TokenKind::Eof => break,
                TokenKind::Ident => {
                    words.idents.insert(token.1.text().to_string());
                    words.all.insert(token.1.text().to_string());
                }
                TokenKind::String | TokenKind::RawString => {
                    let text = token.1.text();
                    let text = text.trim_matches(|c| c == '"' || c == '`');
                    words.all.insert(text.to_string());
                }
                _ => {}
            }
        }
    }
    Ok(words)
}

/// Data keys no policy names. An object at most half of whose keys appear as
/// identifiers is taken as a map indexed by values (`environments[input.request.to]`,
/// `algorithms[alg]`) and its values are checked instead; in an object where most keys
/// are identifiers (`cfg.minCount`), a key named nowhere, not even as a string, is
/// unread. A heuristic: it misses a typo in a one- or two-key object.
pub(super) fn unread_data(
    file: &str,
    value: &serde_json::Value,
    words: &Words,
    lints: &mut Vec<Lint>,
) {
    fn walk(file: &str, at: &str, value: &serde_json::Value, words: &Words, lints: &mut Vec<Lint>) {
        match value {
            serde_json::Value::Object(map) => {
                let idents = map.keys().filter(|k| words.idents.contains(*k)).count();
                let named = idents * 2 > map.len();
                for (k, v) in map {
                    let here = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    if named && !words.all.contains(k) {
                        lints.push(Lint {
                            path: file.to_string(),
                            line: 0,
                            message: format!(
                                "data key `{here}` is never read by any policy (a typo, or a setting left behind?)"
                            ),
                        });
                        continue;
                    }
                    walk(file, &here, v, words, lints);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(file, &format!("{at}[{i}]"), v, words, lints);
                }
            }
            _ => {}
        }
    }
    walk(file, "", value, words, lints);
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

    fn words(list: &[&str]) -> Words {
        let set: BTreeSet<String> = list.iter().map(|s| s.to_string()).collect();
        Words {
            idents: set.clone(),
            all: set,
        }
    }

    #[test]
    fn unread_keys_are_named_and_maps_are_descended() {
        let data = serde_json::json!({"promo": {"config": {"environments": {
            "prod": {"approvals": {"minCount": 2, "maxAgeHours": 4, "minCuont": 3}, "soak": {}, "aprovals": {}},
            "dev": {"approvals": {"minCount": 0}}
        }}}});
        let mut lints = Vec::new();
        unread_data(
            "data.json",
            &data,
            &words(&[
                "promo",
                "config",
                "environments",
                "approvals",
                "minCount",
                "maxAgeHours",
                "soak",
            ]),
            &mut lints,
        );
        let msgs: Vec<String> = lints.iter().map(|l| l.message.clone()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("`promo.config.environments.prod.approvals.minCuont`"));
        assert!(msgs[1].contains("`promo.config.environments.prod.aprovals`"));
    }

    #[test]
    fn lint_displays_file_and_line() {
        let l = Lint {
            path: "a.rego".into(),
            line: 3,
            message: "m".into(),
        };
        assert_eq!(l.to_string(), "a.rego:3: m");
    }
}
