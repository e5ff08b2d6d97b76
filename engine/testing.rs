//! Policy testing: runs the bundle's Rego unit tests and the corpus cases through the
//! real evaluator; it reports, it never edits policies or expectations.

#[cfg(all(feature = "audit", any(test, feature = "test-support")))]
pub mod auditgen;
pub mod diff;
#[cfg(any(test, feature = "test-support"))]
mod signing;
#[cfg(any(test, feature = "test-support"))]
pub mod sigstore;
#[cfg(any(test, feature = "test-support"))]
pub use signing::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::decision::Decision;
use crate::evaluator::{Engine, Error, Evaluator};
use crate::input::parse_time;
use crate::policy::{PolicyBundle, PolicyError};

/// What kind of test a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    /// A `test_*` rule in a `*_test.rego` file.
    Rego,
    /// A corpus case (request + expected decision).
    Corpus,
}

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum TestOutcome {
    /// It passed.
    Pass,
    /// It ran and the result was wrong.
    Fail(String),
    /// It could not run (evaluation error, missing expectation): never a pass.
    Error(String),
}

/// One test's result.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// `data.pkg.test_x` or `corpus/cases/<name>`.
    pub name: String,
    /// Rego or corpus.
    pub kind: TestKind,
    /// How it ended.
    pub outcome: TestOutcome,
    /// How long it took.
    #[serde(serialize_with = "ser_micros")]
    pub duration: Duration,
}

fn ser_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Run every `test_*` rule of the bundle's `*_test.rego` modules on the interpreter
/// (the RVM rejects `with`), optionally only those whose name matches `filter`, adding
/// the lines they evaluate to `coverage` when given.
pub fn run_rego_tests(
    bundle: &PolicyBundle,
    filter: Option<&regex::Regex>,
    mut coverage: Option<&mut Coverage>,
) -> Result<Vec<TestResult>, PolicyError> {
    let mut engine = bundle.test_engine()?;
    engine.set_enable_coverage(coverage.is_some());
    let names = discover_tests(&mut engine);
    let mut results = Vec::new();
    for name in names {
        if filter.is_some_and(|f| !f.is_match(&name)) {
            continue;
        }
        let mut e = engine.clone();
        let start = Instant::now();
        let outcome = match e.eval_rule(name.clone()) {
            Ok(regorus::Value::Bool(true)) => TestOutcome::Pass,
            Ok(regorus::Value::Undefined) => {
                TestOutcome::Fail("undefined (a condition did not hold)".into())
            }
            Ok(other) => TestOutcome::Fail(format!("expected `true`, got `{other}`")),
            Err(err) => TestOutcome::Error(err.to_string()),
        };
        let duration = start.elapsed();
        if let Some(cov) = coverage.as_deref_mut() {
            cov.add(
                &e.get_coverage_report()
                    .map_err(|e| PolicyError::Runtime(e.to_string()))?,
            );
        }
        results.push(TestResult {
            name,
            kind: TestKind::Rego,
            outcome,
            duration,
        });
    }
    Ok(results)
}

/// `data.<package>.<rule>` of every `test_*` rule in a `*_test.rego` module, in file order.
fn discover_tests(engine: &mut regorus::Engine) -> Vec<String> {
    use regorus::unstable::{Rule, RuleHead};
    let mut names = Vec::new();
    for module in engine.get_modules().iter() {
        if !module
            .package
            .span
            .source
            .get_path()
            .ends_with("_test.rego")
        {
            continue;
        }
        let package = module.package.refr.span().text().to_string();
        for rule in &module.policy {
            let head = match rule.as_ref() {
                Rule::Spec { head, .. } => head,
                Rule::Default { .. } => continue,
            };
            let refr = match head {
                RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => refr,
                // Functions take arguments; they are helpers, not tests.
                RuleHead::Func { .. } => continue,
            };
            let rule_name = refr.span().text();
            if rule_name.starts_with("test_") {
                let full = format!("data.{package}.{rule_name}");
                // Incremental definitions of one test rule share a name: run it once.
                if !names.contains(&full) {
                    names.push(full);
                }
            }
        }
    }
    names
}

/// A corpus case: a request file and what its decision must be.
#[derive(Debug, Clone)]
pub struct Case {
    /// Directory name, e.g. `prod-allow-baseline`.
    pub name: String,
    /// The case directory.
    pub dir: PathBuf,
    /// What it proves and how it must end.
    pub spec: CaseSpec,
}

/// `case.json`: a case's description, evaluation time and expectation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// One sentence: what the case proves.
    pub description: String,
    /// The evaluation time (RFC 3339); the case is evaluated `--at` it.
    pub at: String,
    /// The expected decision; a case without one is an error, never a pass.
    pub expect: Option<Expectation>,
    /// Kinds of the request's claims (`approvals`, `checks`, `slo`) that the corpus's
    /// evidence keys also sign as evidence, as the approval bot, CI and monitoring bridge
    /// would (see `derive_evidence_sources`, with the `test-support` feature).
    #[serde(
        default,
        rename = "signedEvidence",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub signed_evidence: Vec<String>,
}

/// The decision a case expects.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Allowed or not.
    pub allowed: bool,
    /// Violation ids, sorted.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Warning ids, sorted.
    #[serde(default)]
    pub warn: Vec<String>,
}

impl Expectation {
    /// What a decision actually was, in the same shape.
    pub fn of(decision: &Decision) -> Self {
        let mut deny: Vec<String> = decision.violations.iter().map(|v| v.id.clone()).collect();
        let mut warn: Vec<String> = decision.warnings.iter().map(|v| v.id.clone()).collect();
        deny.sort();
        warn.sort();
        Self {
            allowed: decision.allowed,
            deny,
            warn,
        }
    }
}

/// Load every case directory under `dir` (sorted by name). A directory without
/// `request.json` is skipped; one whose `case.json` is missing or unreadable is a
/// load error naming it.
pub fn load_cases(dir: &Path) -> Result<Vec<Case>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    let mut cases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
        let path = entry.path();
        if !path.is_dir() || !path.join("request.json").is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let spec_path = path.join("case.json");
        let text = crate::fsio::read_capped_string(&spec_path, crate::fsio::MAX_CONFIG_BYTES)
            .map_err(|e| format!("case `{name}`: {e}"))?;
        let spec: CaseSpec = serde_json::from_str(&text)
            .map_err(|e| format!("case `{name}`: `{}`: {e}", spec_path.display()))?;
        cases.push(Case {
            name,
            dir: path,
            spec,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// Evaluate one case with the engine at the case's time.
pub fn evaluate_case(engine: &Arc<Engine>, case: &Case) -> Result<Decision, Error> {
    evaluate_case_with(&mut engine.evaluator(), case)
}

/// Evaluate one case on a given evaluator (one per thread, or one collecting coverage).
pub fn evaluate_case_with(evaluator: &mut Evaluator, case: &Case) -> Result<Decision, Error> {
    let at = parse_time(&case.spec.at)?;
    let path = case.dir.join("request.json");
    let bytes =
        crate::fsio::read_capped(&path, crate::request::MAX_BODY_BYTES as u64).map_err(|e| {
            crate::request::RequestError::Malformed {
                line: 0,
                column: 0,
                reason: e.to_string(),
            }
        })?;
    Ok(evaluator.evaluate_bytes(&bytes, at)?.decision)
}

/// Run every corpus case and compare it with its expectation, adding the policy lines
/// the decisions evaluate to `coverage` when given.
pub fn run_corpus(
    engine: &Arc<Engine>,
    dir: &Path,
    filter: Option<&regex::Regex>,
    coverage: Option<&mut Coverage>,
) -> Result<Vec<TestResult>, String> {
    let mut evaluator = engine.evaluator();
    evaluator.set_coverage(coverage.is_some());
    let mut results = Vec::new();
    for case in load_cases(dir)? {
        let name = format!("corpus/{}", case.name);
        if filter.is_some_and(|f| !f.is_match(&name)) {
            continue;
        }
        let start = Instant::now();
        let outcome = match (&case.spec.expect, evaluate_case_with(&mut evaluator, &case)) {
            (None, _) => {
                TestOutcome::Error("case.json has no `expect`: add the expected decision".into())
            }
            (Some(_), Err(e)) => TestOutcome::Error(e.to_string()),
            (Some(want), Ok(decision)) => {
                let got = Expectation::of(&decision);
                if &got == want {
                    TestOutcome::Pass
                } else {
                    TestOutcome::Fail(format!(
                        "expected allowed={} deny={:?} warn={:?}, got allowed={} deny={:?} warn={:?}",
                        want.allowed, want.deny, want.warn, got.allowed, got.deny, got.warn
                    ))
                }
            }
        };
        results.push(TestResult {
            name,
            kind: TestKind::Corpus,
            outcome,
            duration: start.elapsed(),
        });
    }
    if let Some(cov) = coverage {
        cov.add(&evaluator.coverage_report().map_err(|e| e.to_string())?);
    }
    Ok(results)
}

/// Line coverage of the bundle's policy files, gathered from regorus over the Rego
/// tests and the corpus decisions. Regorus marks the lines of every rule it evaluates;
/// a test that evaluates a whole package through `with input as` covers that package's
/// rules whether or not the test meant to, so this can report more than `opa test
/// --coverage` would for the same tests.
#[derive(Debug, Default)]
pub struct Coverage {
    files: BTreeMap<String, (BTreeSet<u32>, BTreeSet<u32>)>,
}

/// One policy file's coverage.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileCoverage {
    /// Bundle-relative path.
    pub path: String,
    /// Lines evaluated.
    pub covered: usize,
    /// Lines regorus counts as evaluable (covered + not covered).
    pub lines: usize,
    /// covered / lines, in percent (100 for a file with no evaluable lines).
    pub percent: f64,
    /// The lines never evaluated, ascending.
    pub not_covered: Vec<u32>,
}

/// The coverage of every policy file and in total.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageReport {
    /// Per file, by path.
    pub files: Vec<FileCoverage>,
    /// Lines evaluated, all files.
    pub covered: usize,
    /// Evaluable lines, all files.
    pub lines: usize,
    /// covered / lines in percent.
    pub percent: f64,
}

impl Coverage {
    /// Merge a regorus report: a line counts as covered if any run covered it.
    pub fn add(&mut self, report: &regorus::coverage::Report) {
        for f in &report.files {
            let (covered, not_covered) = self.files.entry(f.path.clone()).or_default();
            covered.extend(f.covered.iter().copied());
            not_covered.extend(f.not_covered.iter().copied());
        }
    }

    /// The report over `bundle`'s policy files (tests excluded). A file no evaluation
    /// reached is reported with each non-blank line that is not a comment, `package`
    /// or `import` as not covered.
    pub fn report(&self, bundle: &PolicyBundle) -> CoverageReport {
        let files: Vec<FileCoverage> = bundle
            .policies()
            .iter()
            .map(|file| {
                let (covered, not_covered): (BTreeSet<u32>, Vec<u32>) =
                    match self.files.get(&file.path) {
                        Some((c, n)) => (c.clone(), n.difference(c).copied().collect()),
                        None => (BTreeSet::new(), code_lines(&file.contents)),
                    };
                let lines = covered.len() + not_covered.len();
                FileCoverage {
                    path: file.path.clone(),
                    covered: covered.len(),
                    lines,
                    percent: percent(covered.len(), lines),
                    not_covered,
                }
            })
            .collect();
        let covered = files.iter().map(|f| f.covered).sum();
        let lines = files.iter().map(|f| f.lines).sum();
        CoverageReport {
            files,
            covered,
            lines,
            percent: percent(covered, lines),
        }
    }
}

fn percent(covered: usize, lines: usize) -> f64 {
    if lines == 0 {
        100.0
    } else {
        // Rounded to 0.1 so reports compare stably.
        (covered as f64 * 1000.0 / lines as f64).round() / 10.0
    }
}

fn code_lines(contents: &str) -> Vec<u32> {
    contents
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim();
            !(t.is_empty()
                || t.starts_with('#')
                || t.starts_with("package ")
                || t.starts_with("import "))
        })
        .filter_map(|(i, _)| u32::try_from(i + 1).ok())
        .collect()
}

/// Counts for the closing `N passed, N failed` line (errors count as failed).
pub fn tally(results: &[TestResult]) -> (usize, usize) {
    let passed = results
        .iter()
        .filter(|r| r.outcome == TestOutcome::Pass)
        .count();
    (passed, results.len() - passed)
}
