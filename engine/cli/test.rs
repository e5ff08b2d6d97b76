//! `promo-policy test`: run the Rego unit tests and the corpus cases, report them as
//! text, JSON or JUnit XML (with lint warnings and, on request, line coverage) and
//! close with `N passed, N failed`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use promo_policy::policy::Lint;
use promo_policy::testing::{self, Coverage, CoverageReport, TestKind, TestOutcome, TestResult};
use promo_policy::textsafe::printable;

use super::{CommonArgs, Exit};

/// How to print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    /// A line per failure (every test with -v), lints, coverage, then the tally.
    Text,
    /// One JSON document: tally, results, lints, coverage.
    Json,
    /// JUnit XML (one suite for Rego tests, one for the corpus) for CI dashboards.
    Junit,
}

const TEST_HELP: &str = "\
The last line is always `N passed, N failed` (errors count as failed). With --format json or \
junit on stdout it goes to stderr, so stdout stays one valid document; with --out FILE the \
document goes to FILE and the tally to stdout. Coverage is regorus's line coverage over the Rego \
tests and the corpus decisions together: a rule counts as covered when any of them evaluated it \
(regorus marks every rule a test's `with input as` evaluation touches, so it can report more \
than `opa test --coverage`). Exit codes: 0 all passed (and coverage >= --threshold), 1 a test \
failed or errored or coverage is below --threshold, 2 error (bad bundle, bad corpus, bad flags).";

/// Arguments of `test`.
#[derive(Debug, clap::Args)]
#[command(after_help = TEST_HELP)]
pub struct TestArgs {
    /// The corpus directory (cases are `<dir>/<name>/{request.json,case.json}`).
    #[arg(long, value_name = "DIR", default_value = "corpus/cases")]
    corpus: PathBuf,
    /// Only run tests whose name matches this regular expression (Rego tests are named
    /// `data.<package>.test_<name>`, corpus cases `corpus/<case>`).
    #[arg(long, value_name = "REGEX")]
    run: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: TestFormat,
    /// Write the report (json or junit) to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Report per-file and total line coverage of the policies.
    #[arg(long)]
    coverage: bool,
    /// Fail (exit 1) when total coverage is below this percentage (implies --coverage).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    threshold: Option<f64>,
    /// Skip the corpus; run only the Rego unit tests.
    #[arg(long)]
    no_corpus: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a percentage between 0 and 100")),
    }
}

/// Everything one run found, in the shape every format prints.
#[derive(Debug, serde::Serialize)]
struct Report {
    passed: usize,
    failed: usize,
    results: Vec<TestResult>,
    lints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    coverage: Option<CoverageReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
}

impl Report {
    fn below_threshold(&self) -> bool {
        match (&self.coverage, self.threshold) {
            (Some(c), Some(t)) => c.percent < t,
            _ => false,
        }
    }
}

pub fn run(args: TestArgs) -> anyhow::Result<Exit> {
    let filter = args
        .run
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("invalid --run pattern")?;
    // The report lists the lints; logging them too would say everything twice.
    let engine = args.common.load_engine_quiet()?;
    let want_coverage = args.coverage || args.threshold.is_some();
    let mut coverage = want_coverage.then(Coverage::default);
    let mut results = testing::run_rego_tests(engine.bundle(), filter.as_ref(), coverage.as_mut())?;
    if !args.no_corpus {
        results.extend(
            testing::run_corpus(&engine, &args.corpus, filter.as_ref(), coverage.as_mut())
                .map_err(anyhow::Error::msg)?,
        );
    }
    let (passed, failed) = testing::tally(&results);
    let report = Report {
        passed,
        failed,
        results,
        lints: lint_lines(engine.bundle().uri(), engine.bundle().lints()),
        coverage: coverage.map(|c| c.report(engine.bundle())),
        threshold: args.threshold,
    };
    let verbose = tracing::enabled!(tracing::Level::INFO);
    let document = match args.format {
        TestFormat::Text => render_text(&report, verbose),
        TestFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        TestFormat::Junit => render_junit(&report)?,
    };
    let tally = format!("{passed} passed, {failed} failed\n");
    match (&args.out, args.format) {
        (Some(path), _) => {
            std::fs::write(path, &document)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            print!("{tally}");
        }
        (None, TestFormat::Text) => print!("{document}{tally}"),
        (None, _) => {
            print!("{document}");
            std::io::stdout().flush()?;
            eprint!("{tally}");
        }
    }
    Ok(if failed == 0 && !report.below_threshold() {
        Exit::Ok
    } else {
        Exit::Deny
    })
}

fn lint_lines(uri: &str, lints: &[Lint]) -> Vec<String> {
    lints.iter().map(|l| format!("{uri}/{l}")).collect()
}

fn render_text(report: &Report, verbose: bool) -> String {
    let mut s = String::new();
    for lint in &report.lints {
        s.push_str(&format!("LINT  {lint}\n"));
    }
    for r in &report.results {
        // Case names are directory names and messages quote the cases: shown escaped.
        let name = printable(&r.name);
        match &r.outcome {
            TestOutcome::Pass if verbose => {
                s.push_str(&format!("PASS  {name} ({})\n", micros(r.duration)))
            }
            TestOutcome::Pass => {}
            TestOutcome::Fail(why) => s.push_str(&format!("FAIL  {name}: {}\n", printable(why))),
            TestOutcome::Error(why) => s.push_str(&format!("ERROR {name}: {}\n", printable(why))),
        }
    }
    if let Some(c) = &report.coverage {
        s.push_str("coverage:\n");
        for f in &c.files {
            s.push_str(&format!(
                "  {:>5.1}%  {:>4}/{:<4} {}{}\n",
                f.percent,
                f.covered,
                f.lines,
                f.path,
                if f.not_covered.is_empty() {
                    String::new()
                } else {
                    format!("  not covered: {}", ranges(&f.not_covered))
                }
            ));
        }
        s.push_str(&format!(
            "  {:>5.1}%  {:>4}/{:<4} total\n",
            c.percent, c.covered, c.lines
        ));
        if let Some(t) = report.threshold {
            if c.percent < t {
                s.push_str(&format!(
                    "coverage {:.1}% is below the threshold of {t}%\n",
                    c.percent
                ));
            }
        }
    }
    s
}

fn micros(d: std::time::Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `3-5, 9, 12-13`: a line list a person can read.
fn ranges(lines: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// XML 1.0 cannot carry most control characters, even escaped; error messages may
/// (ANSI colours, a NUL from a request). They become U+FFFD.
fn xml_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// JUnit XML as Jenkins, GitLab and GitHub test reporters read it: `<testsuites>` with
/// a `rego` and a `corpus` suite; failures as `<failure>`, errors as `<error>`; lints
/// and coverage as suite properties.
fn render_junit(report: &Report) -> anyhow::Result<String> {
    use quick_xml::events::{BytesDecl, Event};
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let total_time: std::time::Duration = report.results.iter().map(|r| r.duration).sum();
    let errors_all = report
        .results
        .iter()
        .filter(|r| matches!(r.outcome, TestOutcome::Error(_)))
        .count();
    w.create_element("testsuites")
        .with_attributes([
            ("name", "promo-policy test"),
            ("tests", report.results.len().to_string().as_str()),
            (
                "failures",
                (report.failed - errors_all).to_string().as_str(),
            ),
            ("errors", errors_all.to_string().as_str()),
            ("time", junit_seconds(total_time).as_str()),
        ])
        .write_inner_content(|w| {
            for (kind, name) in [(TestKind::Rego, "rego"), (TestKind::Corpus, "corpus")] {
                write_suite(w, report, kind, name)?;
            }
            Ok(())
        })?;
    let mut xml = String::from_utf8(w.into_inner()).context("JUnit report is not UTF-8")?;
    xml.push('\n');
    Ok(xml)
}

/// JUnit's `time`: seconds with microseconds.
fn junit_seconds(d: std::time::Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

/// One `<testsuite>`: the results of one kind, with its counts (and, for Rego, the
/// lints and coverage as properties).
fn write_suite(
    w: &mut quick_xml::Writer<Vec<u8>>,
    report: &Report,
    kind: TestKind,
    name: &str,
) -> std::io::Result<()> {
    let results: Vec<&TestResult> = report.results.iter().filter(|r| r.kind == kind).collect();
    let count =
        |pred: &dyn Fn(&TestOutcome) -> bool| results.iter().filter(|r| pred(&r.outcome)).count();
    let time: std::time::Duration = results.iter().map(|r| r.duration).sum();
    w.create_element("testsuite")
        .with_attributes([
            ("name", name),
            ("tests", results.len().to_string().as_str()),
            (
                "failures",
                count(&|o| matches!(o, TestOutcome::Fail(_)))
                    .to_string()
                    .as_str(),
            ),
            (
                "errors",
                count(&|o| matches!(o, TestOutcome::Error(_)))
                    .to_string()
                    .as_str(),
            ),
            ("skipped", "0"),
            ("time", junit_seconds(time).as_str()),
        ])
        .write_inner_content(|w| {
            if kind == TestKind::Rego {
                write_properties(w, report)?;
            }
            for r in &results {
                write_testcase(w, r, name)?;
            }
            Ok(())
        })?;
    Ok(())
}

/// One `<testcase>`, empty when it passed, else holding its `<failure>` or `<error>`.
/// A Rego test's class is its package; a corpus case's is the suite.
fn write_testcase(
    w: &mut quick_xml::Writer<Vec<u8>>,
    r: &TestResult,
    suite: &str,
) -> std::io::Result<()> {
    let classname = match r.name.rsplit_once('.') {
        Some((pkg, _)) if r.kind == TestKind::Rego => pkg.to_string(),
        _ => suite.to_string(),
    };
    let el = w.create_element("testcase").with_attributes([
        ("name", xml_safe(&r.name).as_str()),
        ("classname", xml_safe(&classname).as_str()),
        ("time", junit_seconds(r.duration).as_str()),
    ]);
    let (tag, why) = match &r.outcome {
        TestOutcome::Pass => {
            el.write_empty()?;
            return Ok(());
        }
        TestOutcome::Fail(why) => ("failure", why),
        TestOutcome::Error(why) => ("error", why),
    };
    let why = xml_safe(why);
    el.write_inner_content(|w| {
        w.create_element(tag)
            .with_attribute(("message", why.as_str()))
            .write_text_content(quick_xml::events::BytesText::new(&why))?;
        Ok(())
    })?;
    Ok(())
}

/// Lints and coverage as `<properties>` of the rego suite (JUnit has no place for them
/// elsewhere that dashboards keep).
fn write_properties(w: &mut quick_xml::Writer<Vec<u8>>, report: &Report) -> std::io::Result<()> {
    let mut props: Vec<(String, String)> = report
        .lints
        .iter()
        .map(|l| ("lint".to_string(), xml_safe(l)))
        .collect();
    if let Some(c) = &report.coverage {
        props.push(("coverage.percent".into(), format!("{:.1}", c.percent)));
        props.push((
            "coverage.lines".into(),
            format!("{}/{}", c.covered, c.lines),
        ));
    }
    if props.is_empty() {
        return Ok(());
    }
    w.create_element("properties").write_inner_content(|w| {
        for (name, value) in &props {
            w.create_element("property")
                .with_attributes([("name", name.as_str()), ("value", value.as_str())])
                .write_empty()?;
        }
        Ok(())
    })?;
    Ok(())
}
