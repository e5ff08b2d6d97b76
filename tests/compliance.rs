//! Compliance tooling through the real binary and library: `test` reports (JUnit, JSON,
//! coverage, durations), policy lint, and explanations (`eval --explain`, facts).

use predicates::prelude::*;
use std::path::Path;

use crate::support::bundle_copy;
use crate::support::{bin, AT};

fn append(path: &Path, text: &str) -> u32 {
    let mut body = std::fs::read_to_string(path).unwrap();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let first_new_line = body.lines().count() as u32 + 1;
    body.push_str(text);
    std::fs::write(path, body).unwrap();
    first_new_line
}

/// Every element of an XML document, parsed strictly; panics on malformed XML.
fn xml_elements(xml: &[u8]) -> Vec<(String, Vec<(String, String)>)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).expect("well-formed XML") {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("well-formed attribute");
                        (
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .unwrap()
                                .into_owned(),
                        )
                    })
                    .collect();
                out.push((name, attrs));
            }
            _ => {}
        }
        buf.clear();
    }
    assert!(!out.is_empty(), "an XML document with elements");
    out
}

fn attr<'a>(el: &'a (String, Vec<(String, String)>), key: &str) -> &'a str {
    el.1.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("<{}> has no {key}", el.0))
}

#[test]
fn junit_report_is_xml_with_a_suite_per_kind_and_failures_named() {
    let corpus = tempfile::tempdir().unwrap();
    let case = corpus.path().join("wrong-expectation");
    std::fs::create_dir_all(&case).unwrap();
    std::fs::copy(
        "corpus/cases/prod-allow-baseline/request.json",
        case.join("request.json"),
    )
    .unwrap();
    std::fs::write(
        case.join("case.json"),
        format!(r#"{{"description": "x", "at": "{AT}", "expect": {{"allowed": false}}}}"#),
    )
    .unwrap();
    let out = bin()
        .args([
            "test",
            "--format",
            "junit",
            "--corpus",
            corpus.path().to_str().unwrap(),
            "--run",
            "soak_test|corpus/",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::ends_with("10 passed, 1 failed\n"));
    let stdout = &out.get_output().stdout;
    let elements = xml_elements(stdout);
    let root = &elements[0];
    assert_eq!(root.0, "testsuites");
    assert_eq!(attr(root, "tests"), "11");
    assert_eq!(attr(root, "failures"), "1");
    let suites: Vec<&str> = elements
        .iter()
        .filter(|e| e.0 == "testsuite")
        .map(|e| attr(e, "name"))
        .collect();
    assert_eq!(suites, ["rego", "corpus"]);
    let cases = elements.iter().filter(|e| e.0 == "testcase").count();
    assert_eq!(cases, 11);
    let failure = elements.iter().find(|e| e.0 == "failure").unwrap();
    assert!(attr(failure, "message").contains("expected allowed=false"));
    // Every test case has a time a dashboard can chart.
    for e in elements.iter().filter(|e| e.0 == "testcase") {
        attr(e, "time").parse::<f64>().unwrap();
    }
}

#[test]
fn junit_to_a_file_keeps_the_tally_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.xml");
    bin()
        .args(["test", "--format", "junit", "--run", "digest", "--out"])
        .arg(&out)
        .assert()
        .code(0)
        .stdout(predicate::str::is_match(r"^\d+ passed, 0 failed\n$").unwrap());
    let elements = xml_elements(&std::fs::read(out).unwrap());
    assert!(elements.iter().any(|e| e.0 == "testcase"));
}

#[test]
fn json_report_parses_and_carries_results_and_coverage() {
    let out = bin()
        .args(["test", "--format", "json", "--coverage", "--run", "freeze"])
        .assert()
        .code(0);
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let results = doc["results"].as_array().unwrap();
    assert_eq!(doc["passed"].as_u64().unwrap() as usize, results.len());
    assert!(results.iter().any(|r| r["kind"] == "rego"));
    assert!(results.iter().any(|r| r["kind"] == "corpus"));
    assert!(results.iter().all(|r| r["duration"].is_u64()));
    let files = doc["coverage"]["files"].as_array().unwrap();
    let freeze = files
        .iter()
        .find(|f| f["path"] == "promo/rules/freeze.rego")
        .unwrap();
    assert!(freeze["covered"].as_u64().unwrap() > 0);
    assert_eq!(doc["lints"], serde_json::json!([]));
}

#[test]
fn coverage_names_the_lines_no_test_reaches_and_threshold_fails_below_it() {
    let bundle = bundle_copy();
    let file = bundle.path().join("promo/rules/soak.rego");
    let first = append(&file, "\n_never_called(x) := y if {\n\ty := x + 1\n}\n");
    let policies = bundle.path().to_str().unwrap();
    let expected = format!(
        "promo/rules/soak.rego  not covered: {}-{}",
        first + 1,
        first + 2
    );
    bin()
        .args(["test", "--coverage", "--policies", policies])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(expected.as_str()))
        .stdout(predicate::str::contains("100.0%").and(predicate::str::contains(" total")));
    bin()
        .args(["test", "--threshold", "100", "--policies", policies])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("is below the threshold of 100%"))
        .stdout(predicate::str::is_match(r"\d+ passed, 0 failed\n$").unwrap());
    bin()
        .args(["test", "--threshold", "90", "--policies", policies])
        .assert()
        .code(0);
}

#[test]
fn shipped_bundle_is_fully_covered_by_its_tests_and_corpus() {
    bin()
        .args(["test", "--threshold", "100"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("100.0%   ").and(predicate::str::contains("LINT").not()));
}

#[test]
fn verbose_lists_every_test_with_its_duration() {
    bin()
        .args(["-v", "test", "--run", "path_test"])
        .assert()
        .code(0)
        .stdout(
            predicate::str::is_match(
                r"(?m)^PASS  data\.promo\.path_test\.test_\w+ \(\d+\.\d{3} ms\)$",
            )
            .unwrap(),
        );
}

#[test]
fn a_policy_syntax_error_names_file_and_line_and_exits_2() {
    let bundle = bundle_copy();
    std::fs::write(
        bundle.path().join("promo/rules/broken.rego"),
        "package promo.rules.broken\n\ndeny contains x if {\n\tx := \n}\n",
    )
    .unwrap();
    bin()
        .args(["test", "--policies", bundle.path().to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("broken.rego:"))
        .stdout(predicate::str::is_empty());
}

#[test]
fn lint_warns_about_dead_packages_entries_without_id_and_unread_data() {
    let bundle = bundle_copy();
    std::fs::write(
        bundle.path().join("promo/rules/helpers.rego"),
        "package promo.rules.helpers\n\nthreshold := 3\n",
    )
    .unwrap();
    let line = append(
        &bundle.path().join("promo/rules/soak.rego"),
        "\ndeny contains {\"msg\": \"no id here\"} if false\n",
    ) + 1;
    let data_path = bundle.path().join("data.json");
    let mut data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&data_path).unwrap()).unwrap();
    // A block the config schema allows (custom packages add their own) but no rule reads.
    data["promo"]["config"]["environments"]["prod"]["owners"] =
        serde_json::json!({"maxAgeHuors": 48});
    std::fs::write(&data_path, serde_json::to_vec_pretty(&data).unwrap()).unwrap();
    let policies = bundle.path().to_str().unwrap();

    bin()
        .args(["test", "--no-corpus", "--policies", policies])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "promo/rules/helpers.rego:1: promo.rules.helpers defines neither `deny` nor `warn`",
        ))
        .stdout(predicate::str::contains(format!(
            "promo/rules/soak.rego:{line}: a `deny` entry of promo.rules.soak has no \"id\""
        )))
        .stdout(predicate::str::contains(
            "data.json: data key `promo.config.environments.prod.owners` is never read",
        ));
    // Other commands log the same warnings on stderr and still decide.
    bin()
        .args([
            "eval",
            "corpus/cases/prod-allow-baseline/request.json",
            "--at",
            AT,
            "--format",
            "json",
            "--policies",
            policies,
        ])
        .assert()
        .code(0)
        .stderr(
            predicate::str::contains("policy lint:")
                .and(predicate::str::contains("environments.prod.owners")),
        );
}

#[test]
fn explain_lists_every_check_and_facts_match_the_request() {
    let case = "corpus/cases/approvals-multiple-problems-deny";
    let request: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{case}/request.json")).unwrap()).unwrap();
    let out = bin()
        .args(["eval", &format!("{case}/request.json"), "--at", AT])
        .args(["--format", "json", "--explain"])
        .assert()
        .code(1);
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let explanation = doc["explanation"].as_array().unwrap();
    let result_of = |id: &str| {
        explanation
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("{id} not explained"))["result"]
            .clone()
    };
    // Each denial is there as denied, checks that held as passed, plugins too.
    for v in doc["decision"]["violations"].as_array().unwrap() {
        assert_eq!(result_of(v["id"].as_str().unwrap()), "denied");
    }
    assert_eq!(result_of("digest.unpinned"), "passed");
    assert_eq!(result_of("provenance.missing"), "passed");
    assert_eq!(result_of("plugin:ticket-format"), "passed");

    // The facts are the request's own: its author, its approvers and their times.
    let violation = |id: &str| {
        doc["decision"]["violations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .unwrap()
            .clone()
    };
    let author = &request["change"]["author"];
    assert_eq!(
        violation("approvals.self_approval")["facts"]["author"],
        *author
    );
    let facts = violation("approvals.min_count")["facts"].clone();
    let mut mentioned: Vec<(String, String)> = facts["counted"]
        .as_array()
        .unwrap()
        .iter()
        .chain(facts["notCounted"].as_array().unwrap())
        .map(|a| (a["approver"].to_string(), a["at"].to_string()))
        .collect();
    let mut approvals: Vec<(String, String)> = request["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["decision"] == "approved")
        .map(|a| (a["approver"].to_string(), a["at"].to_string()))
        .collect();
    mentioned.sort();
    approvals.sort();
    assert_eq!(
        mentioned, approvals,
        "every approval is counted or said why not"
    );

    let text = bin()
        .args(["eval", &format!("{case}/request.json"), "--at", AT])
        .args(["--format", "text", "--explain"])
        .assert()
        .code(1);
    let text = String::from_utf8(text.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("  facts approvals.self_approval: {"),
        "{text}"
    );
    assert!(text.contains("    DENY  approvals.self_approval"), "{text}");
    assert!(text.contains("    pass  digest.unpinned"), "{text}");
}

/// Every finding the default bundle produces over the corpus carries facts, is declared
/// in its package's catalog, and fits GitHub's 1024-character status limit.
#[test]
fn every_corpus_finding_has_facts_and_a_catalog_entry() {
    use promo_policy::testing::{evaluate_case, load_cases};
    let engine =
        promo_policy::Engine::load(&promo_policy::EngineConfig::with_policies("policies")).unwrap();
    let catalog: Vec<&str> = engine
        .bundle()
        .catalog()
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    let mut seen = 0;
    let mut ids = std::collections::BTreeSet::new();
    for case in load_cases(Path::new("corpus/cases")).unwrap() {
        let Ok(decision) = evaluate_case(&engine, &case) else {
            continue;
        };
        for v in decision.violations.iter().chain(&decision.warnings) {
            assert!(v.msg.chars().count() <= 1024, "{}: {}", case.name, v.id);
            if v.source != promo_policy::decision::Source::Policy || v.id.starts_with("policy.") {
                continue;
            }
            seen += 1;
            ids.insert(v.id.clone());
            assert!(
                catalog.contains(&v.id.as_str()),
                "{} not in a catalog",
                v.id
            );
            let facts = v.facts.as_ref().and_then(|f| f.as_object());
            assert!(
                facts.is_some_and(|f| !f.is_empty()),
                "{}: {} has no facts",
                case.name,
                v.id
            );
        }
    }
    assert!(
        seen > 80,
        "the corpus exercises the rules ({seen} findings)"
    );
    for id in catalog {
        // `config.*` checks guard against a config the loader refuses (a bundle with it
        // never loads), so no corpus case can reach them; their Rego tests show them.
        if id.starts_with("config.") {
            continue;
        }
        assert!(
            ids.contains(id),
            "no corpus case shows catalog check {id} failing"
        );
    }
}

/// The rule package README's "For compliance teams" shows, loaded into the bundle as
/// written there: it must lint clean, deny without the label and allow with it.
#[test]
fn readme_rule_package_example_works_as_documented() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = readme.find("```rego\npackage promo.rules.owners").unwrap() + "```rego\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let bundle = bundle_copy();
    std::fs::write(
        bundle.path().join("promo/rules/owners.rego"),
        &readme[start..end],
    )
    .unwrap();
    let policies = bundle.path().to_str().unwrap();
    let base = "corpus/cases/prod-allow-baseline/request.json";
    let mut request: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
    request.as_object_mut().unwrap().remove("labels");
    let eval = |request: &serde_json::Value| {
        bin()
            .args(["eval", "-", "--at", AT, "--format", "json", "--policies"])
            .arg(policies)
            .write_stdin(serde_json::to_vec(request).unwrap())
            .assert()
    };
    let out = eval(&request)
        .code(1)
        .stderr(predicate::str::contains("policy lint").not());
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["decision"]["violations"][0]["id"], "owners.missing");
    request["labels"] = serde_json::json!({"owner": "payments"});
    eval(&request).code(0);
}
