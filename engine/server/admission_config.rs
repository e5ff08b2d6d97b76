//! The admission config (`serve --admission-config FILE`, YAML or JSON): the environment, rollout mode and break-glass rule per namespace, and what a decision needs to count; parsed strictly, and never guessed at when it is wrong.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

/// The annotation that carries a break-glass request, unless the config names another.
pub const DEFAULT_BREAK_GLASS_ANNOTATION: &str = "promo-policy.dev/break-glass";

/// Largest admission config file read. A config is a few dozen rules; this only stops a
/// wrong path (a log file, a device) from being read whole.
pub const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// Most namespace rules. Each is matched in order for every review, and each `name` may
/// become a metric label, so the set stays small enough to graph.
pub const MAX_NAMESPACE_RULES: usize = 256;

/// Most decision signers a threshold may ask for; more is a typo, not a policy.
pub const MAX_THRESHOLD: usize = 16;

/// Most allowed bundle digests listed.
pub const MAX_BUNDLE_DIGESTS: usize = 256;

/// The metric label for a namespace no rule matches: labels stay the config's own names.
pub const OTHER_NAMESPACE: &str = "other";

/// How a gate acts on a review it would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutMode {
    /// Refuse (Gatekeeper `deny`, policy-controller `enforce`).
    #[default]
    Enforce,
    /// Admit, with the reasons as AdmissionReview warnings (Gatekeeper and
    /// policy-controller `warn`).
    Warn,
    /// Admit silently; count and audit what would have been refused (Gatekeeper `dryrun`).
    DryRun,
}

impl RolloutMode {
    /// The mode named `text` (`enforce`, `warn`, `dry-run`); anything else is an error,
    /// never a quiet fallback to a weaker mode.
    pub fn parse(text: &str) -> Result<RolloutMode, String> {
        match text {
            "enforce" => Ok(RolloutMode::Enforce),
            "warn" => Ok(RolloutMode::Warn),
            "dry-run" => Ok(RolloutMode::DryRun),
            other => Err(format!(
                "unknown admission mode `{}`: use `enforce`, `warn` or `dry-run`",
                crate::textsafe::printable(other)
            )),
        }
    }

    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutMode::Enforce => "enforce",
            RolloutMode::Warn => "warn",
            RolloutMode::DryRun => "dry-run",
        }
    }

    fn strictness(self) -> u8 {
        match self {
            RolloutMode::Enforce => 2,
            RolloutMode::Warn => 1,
            RolloutMode::DryRun => 0,
        }
    }

    /// The stricter of two modes: a webhook route can tighten the config, never loosen it.
    pub fn stricter(self, other: RolloutMode) -> RolloutMode {
        if other.strictness() > self.strictness() {
            other
        } else {
            self
        }
    }
}

/// Longest environment name: the request schema's limit.
pub const MAX_ENVIRONMENT_NAME: usize = 64;

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdmissionConfig {
    /// The environment whose decisions admit images where no namespace rule names one
    /// (default: `serve --environment`, see [`AdmissionConfig::adopt_flag_environment`]).
    #[serde(default)]
    pub environment: Option<String>,
    /// The mode where no namespace rule says otherwise (default `enforce`).
    #[serde(default)]
    pub mode: RolloutMode,
    /// Break-glass defaults: the annotation read and whether it is honoured.
    #[serde(default)]
    pub break_glass: BreakGlassConfig,
    /// What a signed decision needs to count.
    #[serde(default)]
    pub decisions: DecisionRules,
    /// Per-namespace rules, first match wins.
    #[serde(default)]
    pub namespaces: Vec<NamespaceRule>,
}

/// Break-glass defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BreakGlassConfig {
    /// The annotation holding `{"reason": ..., "ticket": ...}`.
    #[serde(default = "default_annotation")]
    pub annotation: String,
    /// Whether break-glass is honoured where no namespace rule says (default: no).
    #[serde(default)]
    pub allowed: bool,
}

impl Default for BreakGlassConfig {
    fn default() -> Self {
        Self {
            annotation: default_annotation(),
            allowed: false,
        }
    }
}

fn default_annotation() -> String {
    DEFAULT_BREAK_GLASS_ANNOTATION.to_string()
}

/// What a signed decision needs before admission relies on it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DecisionRules {
    /// Distinct trusted decision keys that must have signed it (default 1).
    #[serde(default = "one")]
    pub threshold: usize,
    /// When not empty, the policy bundles (sha256, with or without `sha256:`) whose
    /// decisions count; a decision from any other bundle is refused.
    #[serde(default)]
    pub allowed_bundle_digests: Vec<String>,
}

impl Default for DecisionRules {
    fn default() -> Self {
        Self {
            threshold: 1,
            allowed_bundle_digests: Vec::new(),
        }
    }
}

fn one() -> usize {
    1
}

impl DecisionRules {
    /// Why a decision made by bundle `digest` (lowercase hex) does not count, if it does not.
    pub fn bundle_refusal(&self, decision_id: &str, digest: Option<&str>) -> Option<String> {
        if self.allowed_bundle_digests.is_empty() {
            return None;
        }
        match digest {
            Some(d) if self.allowed_bundle_digests.iter().any(|a| a == d) => None,
            Some(d) => Some(format!(
                "decision `{decision_id}` was made by policy bundle `sha256:{}`, which is not among the allowed bundle digests",
                &d[..d.len().min(12)]
            )),
            None => Some(format!(
                "decision `{decision_id}` names no sha256 policy bundle digest"
            )),
        }
    }
}

/// One namespace rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceRule {
    /// A namespace name, or a glob (`*` any run of characters, `?` one).
    pub name: String,
    /// The environment whose decisions admit images here (default: the top-level
    /// `environment`).
    #[serde(default)]
    pub environment: Option<String>,
    /// The mode for matching namespaces (default: the top-level `mode`).
    #[serde(default)]
    pub mode: Option<RolloutMode>,
    /// Break-glass for matching namespaces (default: the top-level `breakGlass.allowed`).
    #[serde(default)]
    pub break_glass: Option<BreakGlassRule>,
}

/// A namespace's break-glass rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BreakGlassRule {
    /// Whether a break-glass annotation is honoured there.
    pub allowed: bool,
}

/// What applies to one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePolicy {
    /// The environment whose decisions admit images here; `None`: none is configured,
    /// and every image is refused.
    pub environment: Option<String>,
    /// The configured mode.
    pub mode: RolloutMode,
    /// Whether break-glass is honoured.
    pub break_glass: bool,
    /// The bounded metric label: the matching rule's `name`, or [`OTHER_NAMESPACE`].
    pub label: String,
}

/// Why an admission config cannot be used; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionConfigError {
    /// The file could not be read (kept whole; its words without the path, which the
    /// caller names, are the message, so the chain stops here).
    #[error("{}", .0.reason())]
    Read(crate::fsio::ReadError),
    /// Not YAML, or not of the config's shape (the parser names the field).
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
    /// A field breaks a rule (named in the message).
    #[error("{0}")]
    Invalid(String),
}

impl AdmissionConfig {
    /// Read and check a config file; the error names the field (the caller, the file).
    pub fn load(path: &Path) -> Result<Self, AdmissionConfigError> {
        let text = crate::fsio::read_capped_string(path, MAX_CONFIG_BYTES)
            .map_err(AdmissionConfigError::Read)?;
        Self::parse(&text)
    }

    /// Parse (YAML, which includes JSON) and check a config.
    pub fn parse(text: &str) -> Result<Self, AdmissionConfigError> {
        let mut config: AdmissionConfig = serde_yaml::from_str(text)?;
        config.check().map_err(AdmissionConfigError::Invalid)?;
        Ok(config)
    }

    fn check(&mut self) -> Result<(), String> {
        check_annotation_key(&self.break_glass.annotation)
            .map_err(|why| format!("`breakGlass.annotation`: {why}"))?;
        let rules = &mut self.decisions;
        if rules.threshold == 0 || rules.threshold > MAX_THRESHOLD {
            return Err(format!(
                "`decisions.threshold` must be between 1 and {MAX_THRESHOLD}, got {}",
                rules.threshold
            ));
        }
        if rules.allowed_bundle_digests.len() > MAX_BUNDLE_DIGESTS {
            return Err(format!(
                "`decisions.allowedBundleDigests` lists more than {MAX_BUNDLE_DIGESTS} digests"
            ));
        }
        for (i, digest) in rules.allowed_bundle_digests.iter_mut().enumerate() {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(format!(
                    "`decisions.allowedBundleDigests[{i}]` must be `sha256:` and 64 lowercase hex digits, got `{}`",
                    crate::textsafe::printable(digest)
                ));
            }
            *digest = hex.to_string();
        }
        if let Some(env) = &self.environment {
            check_environment_name(env).map_err(|why| format!("`environment`: {why}"))?;
        }
        if self.namespaces.len() > MAX_NAMESPACE_RULES {
            return Err(format!(
                "`namespaces` has more than {MAX_NAMESPACE_RULES} rules"
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, rule) in self.namespaces.iter().enumerate() {
            let name = &rule.name;
            let valid = !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'*' | b'?'));
            if !valid {
                return Err(format!(
                    "`namespaces[{i}].name` must be a namespace name or a glob of one (lowercase letters, digits, `-`, `*`, `?`; at most 63), got `{}`",
                    crate::textsafe::printable(name)
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(format!("`namespaces[{i}].name` `{name}` is listed twice"));
            }
            if let Some(env) = &rule.environment {
                check_environment_name(env)
                    .map_err(|why| format!("`namespaces[{i}].environment`: {why}"))?;
            }
        }
        Ok(())
    }

    /// Take `serve --environment` as the default environment when the file names none
    /// at its top level (the file wins: it is the more specific of the two).
    pub fn adopt_flag_environment(&mut self, flag: Option<&str>) {
        if self.environment.is_none() {
            self.environment = flag.map(str::to_string);
        }
    }

    /// Every environment some namespace may be judged against: the default and each
    /// rule's, each once, in name order.
    pub fn environments(&self) -> BTreeSet<&str> {
        self.environment
            .iter()
            .chain(
                self.namespaces
                    .iter()
                    .filter_map(|r| r.environment.as_ref()),
            )
            .map(String::as_str)
            .collect()
    }

    /// Refuse an environment the bundle does not configure (`configured`, from
    /// `data.promo.config.environments`): no decision of that bundle could mean anything
    /// there. The error names the field.
    pub fn check_environments(&self, configured: &BTreeSet<String>) -> Result<(), String> {
        let top = self
            .environment
            .iter()
            .map(|env| ("`environment`".to_string(), env));
        let rules = self.namespaces.iter().enumerate().filter_map(|(i, r)| {
            let env = r.environment.as_ref()?;
            Some((format!("`namespaces[{i}].environment`"), env))
        });
        match top
            .chain(rules)
            .find_map(|(field, env)| unknown_environment(&field, env, configured))
        {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// What applies in `namespace` (`None`: a cluster-scoped object): the first
    /// matching rule, its unset fields from the top level.
    pub fn for_namespace(&self, namespace: Option<&str>) -> NamespacePolicy {
        let rule = namespace.and_then(|ns| self.namespaces.iter().find(|r| glob(&r.name, ns)));
        match rule {
            Some(rule) => NamespacePolicy {
                environment: rule
                    .environment
                    .clone()
                    .or_else(|| self.environment.clone()),
                mode: rule.mode.unwrap_or(self.mode),
                break_glass: rule
                    .break_glass
                    .as_ref()
                    .map_or(self.break_glass.allowed, |b| b.allowed),
                label: rule.name.clone(),
            },
            None => NamespacePolicy {
                environment: self.environment.clone(),
                mode: self.mode,
                break_glass: self.break_glass.allowed,
                label: OTHER_NAMESPACE.to_string(),
            },
        }
    }
}

/// Why `env`, as `field` names it, is not an environment of the bundle (`configured`),
/// if it is not.
pub fn unknown_environment(
    field: &str,
    env: &str,
    configured: &BTreeSet<String>,
) -> Option<String> {
    if configured.contains(env) {
        return None;
    }
    let known = if configured.is_empty() {
        "the bundle configures none in `data.promo.config.environments`".to_string()
    } else {
        let names: Vec<&str> = configured.iter().map(String::as_str).collect();
        format!("the bundle configures {}", names.join(", "))
    };
    Some(format!(
        "{field}: `{}` is not an environment of the bundle ({known})",
        crate::textsafe::printable(env)
    ))
}

/// An environment name as the request schema spells one: lowercase letters, digits and
/// `-`, starting with a letter or digit, at most [`MAX_ENVIRONMENT_NAME`].
fn check_environment_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_ENVIRONMENT_NAME
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !name.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an environment name (lowercase letters, digits and `-`; at most {MAX_ENVIRONMENT_NAME})",
            crate::textsafe::printable(name)
        ))
    }
}

/// A Kubernetes annotation key: an optional DNS-subdomain prefix and `/`, then a name of
/// at most 63 alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn check_annotation_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| alnum(b) || matches!(b, b'-' | b'_' | b'.'))
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum);
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.'))
    });
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an annotation key (`prefix.example.com/name`)",
            crate::textsafe::printable(key)
        ))
    }
}

/// Whether `text` matches `pattern` (`*` any run of characters, `?` exactly one).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and how much of the text it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
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

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("team-*", "team-a"));
        assert!(glob("team-*", "team-"));
        assert!(!glob("team-*", "xteam-a"));
        assert!(glob("*-prod", "shop-prod"));
        assert!(!glob("*-prod", "shop-prod2"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("shop", "shop"));
        assert!(!glob("shop", "shops"));
    }

    #[test]
    fn first_matching_rule_wins_and_unset_fields_come_from_the_top() {
        let c = AdmissionConfig::parse(
            "mode: dry-run\nbreakGlass: {allowed: true}\nnamespaces:\n- name: shop\n  mode: enforce\n  breakGlass: {allowed: false}\n- name: team-*\n  mode: warn\n",
        )
        .unwrap();
        let shop = c.for_namespace(Some("shop"));
        assert_eq!(
            (shop.mode, shop.break_glass, shop.label.as_str()),
            (RolloutMode::Enforce, false, "shop")
        );
        let team = c.for_namespace(Some("team-a"));
        assert_eq!(
            (team.mode, team.break_glass, team.label.as_str()),
            (RolloutMode::Warn, true, "team-*")
        );
        let other = c.for_namespace(Some("kube-public"));
        assert_eq!(
            (other.mode, other.break_glass, other.label.as_str()),
            (RolloutMode::DryRun, true, "other")
        );
    }

    #[test]
    fn the_defaults_are_enforce_without_break_glass() {
        let c = AdmissionConfig::parse("{}").unwrap();
        let p = c.for_namespace(Some("shop"));
        assert_eq!((p.mode, p.break_glass), (RolloutMode::Enforce, false));
        assert_eq!(c.break_glass.annotation, DEFAULT_BREAK_GLASS_ANNOTATION);
        assert_eq!(c.decisions.threshold, 1);
    }

    #[test]
    fn bad_configs_are_refused_naming_the_field() {
        for (text, needle) in [
            ("mode: off", "unknown variant `off`"),
            ("mdoe: warn", "unknown field `mdoe`"),
            (
                "namespaces: [{name: shop, breakglass: {allowed: true}}]",
                "unknown field `breakglass`",
            ),
            ("namespaces: [{name: Shop}]", "`namespaces[0].name`"),
            ("namespaces: [{name: a}, {name: a}]", "listed twice"),
            ("decisions: {threshold: 0}", "`decisions.threshold`"),
            (
                "decisions: {allowedBundleDigests: [abc]}",
                "`decisions.allowedBundleDigests[0]`",
            ),
            ("breakGlass: {annotation: 'a b'}", "`breakGlass.annotation`"),
            (
                "namespaces: [{name: shop, breakGlass: {}}]",
                "missing field `allowed`",
            ),
        ] {
            let err = AdmissionConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn a_namespace_gets_its_rules_environment_else_the_default_else_the_flag() {
        let text = "environment: staging\nnamespaces:\n- name: shop-prod\n  environment: prod\n- name: shop-*\n";
        let mut c = AdmissionConfig::parse(text).unwrap();
        c.adopt_flag_environment(Some("dev"));
        let env = |ns: &str| c.for_namespace(Some(ns)).environment;
        assert_eq!(env("shop-prod").as_deref(), Some("prod"));
        assert_eq!(
            env("shop-qa").as_deref(),
            Some("staging"),
            "the file's default"
        );
        assert_eq!(env("other").as_deref(), Some("staging"));
        assert_eq!(
            c.for_namespace(None).environment.as_deref(),
            Some("staging")
        );
        assert_eq!(
            c.environments().into_iter().collect::<Vec<_>>(),
            ["prod", "staging"],
            "the flag is not used when the file has a default"
        );

        let mut c = AdmissionConfig::parse("namespaces: [{name: a, environment: prod}]").unwrap();
        c.adopt_flag_environment(Some("dev"));
        assert_eq!(
            c.for_namespace(Some("b")).environment.as_deref(),
            Some("dev")
        );
        assert_eq!(
            c.environments().into_iter().collect::<Vec<_>>(),
            ["dev", "prod"]
        );
        let mut c = AdmissionConfig::parse("namespaces: [{name: a, environment: prod}]").unwrap();
        c.adopt_flag_environment(None);
        assert_eq!(
            c.for_namespace(Some("b")).environment,
            None,
            "none anywhere"
        );
        assert_eq!(
            c.for_namespace(Some("a")).environment.as_deref(),
            Some("prod")
        );
    }

    #[test]
    fn environments_must_be_names_and_known_to_the_bundle_naming_the_field() {
        for (text, needle) in [
            (
                "environment: Prod",
                "`environment`: `Prod` is not an environment name",
            ),
            (
                "namespaces: [{name: a}, {name: b, environment: 'prod env'}]",
                "`namespaces[1].environment`",
            ),
            ("environment: ''", "`environment`"),
        ] {
            let err = AdmissionConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let configured: BTreeSet<String> = ["dev", "staging", "prod"].map(String::from).into();
        let c = AdmissionConfig::parse(
            "environment: prod\nnamespaces: [{name: a, environment: staging}, {name: b, environment: qa}]",
        )
        .unwrap();
        let err = c.check_environments(&configured).unwrap_err();
        assert_eq!(
            err,
            "`namespaces[1].environment`: `qa` is not an environment of the bundle (the bundle configures dev, prod, staging)"
        );
        let c = AdmissionConfig::parse("environment: qa").unwrap();
        assert!(c
            .check_environments(&configured)
            .unwrap_err()
            .starts_with("`environment`: `qa`"));
        let c = AdmissionConfig::parse("namespaces: [{name: a, environment: prod}]").unwrap();
        assert!(c.check_environments(&configured).is_ok());
        let none = c.check_environments(&BTreeSet::new()).unwrap_err();
        assert!(none.contains("configures none"), "{none}");
    }

    #[test]
    fn bundle_digests_are_normalised_and_checked() {
        let hex = "a".repeat(64);
        let c = AdmissionConfig::parse(&format!(
            "decisions: {{threshold: 2, allowedBundleDigests: ['sha256:{hex}']}}"
        ))
        .unwrap();
        assert_eq!(c.decisions.allowed_bundle_digests, vec![hex.clone()]);
        assert_eq!(c.decisions.bundle_refusal("d", Some(&hex)), None);
        let other = "b".repeat(64);
        let why = c.decisions.bundle_refusal("d", Some(&other)).unwrap();
        assert!(
            why.contains("not among the allowed bundle digests"),
            "{why}"
        );
        assert!(c.decisions.bundle_refusal("d", None).is_some());
    }

    #[test]
    fn modes_parse_strictly_and_the_stricter_wins() {
        assert_eq!(RolloutMode::parse("dry-run").unwrap(), RolloutMode::DryRun);
        assert!(RolloutMode::parse("dryrun").is_err());
        assert!(RolloutMode::parse("Enforce").is_err());
        assert_eq!(
            RolloutMode::DryRun.stricter(RolloutMode::Warn),
            RolloutMode::Warn
        );
        assert_eq!(
            RolloutMode::Enforce.stricter(RolloutMode::DryRun),
            RolloutMode::Enforce
        );
        assert_eq!(
            RolloutMode::Warn.stricter(RolloutMode::Warn),
            RolloutMode::Warn
        );
    }
}
