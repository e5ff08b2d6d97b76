//! `promo-policy diff`: bundles copied and loosened or tightened in a temp dir, compared
//! over the corpus and over JSONL audit records, in every output format.

use predicates::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use crate::support::bin;
use crate::support::copy_dir;

/// A copy of the shipped bundle at `<tmp>/<name>`, with its `data.json` config edited.
fn bundle(tmp: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = tmp.join(name);
    copy_dir(Path::new("policies"), &dir);
    let path = dir.join("data.json");
    let mut data: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut data["promo"]["config"]["environments"]);
    std::fs::write(&path, serde_json::to_vec_pretty(&data).unwrap()).unwrap();
    dir
}

fn case_count() -> usize {
    std::fs::read_dir("corpus/cases")
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("request.json").is_file())
        .count()
}

fn stdout(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

fn json_report(args: &[&str], code: i32) -> Value {
    let out = bin()
        .args(args)
        .args(["--format", "json"])
        .assert()
        .code(code);
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// The sources of the changes of one kind in a JSON report.
fn sources(report: &Value, kind: &str) -> Vec<String> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"] == kind)
        .map(|c| c["source"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn identical_bundles_change_nothing() {
    let n = case_count();
    let out = bin().args(["diff", "--base", "policies"]).assert().code(0);
    let text = stdout(&out);
    assert!(
        text.trim_end().ends_with(&format!(
            "{n} evaluated, 0 changed (0 deny->allow, 0 allow->deny, 0 ids changed), 0 errors"
        )),
        "{text}"
    );
    assert!(text.contains("same digest"), "{text}");
}

#[test]
fn deleted_rule_is_caught_as_deny_to_allow() {
    let tmp = tempfile::tempdir().unwrap();
    let loose = tmp.path().join("loose");
    copy_dir(Path::new("policies"), &loose);
    std::fs::remove_file(loose.join("promo/rules/freeze.rego")).unwrap();
    std::fs::remove_file(loose.join("promo/rules/freeze_test.rego")).unwrap();
    let out = bin()
        .args(["diff", "--base", "policies", "--policies"])
        .arg(&loose)
        .args(["--format", "text"])
        .assert()
        .code(1);
    let text = stdout(&out);
    assert!(text.contains("flip from DENY to ALLOW"), "{text}");
    let flipped = |case: &str| {
        text.lines().any(|l| {
            l.starts_with("!! deny->allow")
                && l.contains(&format!("corpus/cases/{case} "))
                && l.contains("-deny:freeze.active")
        })
    };
    assert!(flipped("freeze-active-deny"), "{text}");
    assert!(flipped("freeze-window-start-boundary-deny"), "{text}");
    // deny->allow rows come before every other row.
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("CHANGE"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    let last_flip = rows.iter().rposition(|l| l.starts_with("!!")).unwrap();
    assert!(
        rows[..=last_flip].iter().all(|l| l.starts_with("!!")),
        "{text}"
    );
    assert!(rows.len() > last_flip + 1, "id-only changes follow: {text}");
}

#[test]
fn loosened_approvals_are_deny_to_allow_in_json_and_markdown() {
    let tmp = tempfile::tempdir().unwrap();
    let loose = bundle(tmp.path(), "loose", |envs| {
        envs["prod"]["approvals"]["minCount"] = json!(1);
    });
    let loose = loose.to_str().unwrap();
    let args = ["diff", "--base", "policies", "--policies", loose];

    let report = json_report(&args, 1);
    let s = &report["summary"];
    let flips = sources(&report, "denyToAllow");
    assert!(
        flips.contains(&"corpus/cases/approvals-min-count-one-deny".to_string()),
        "{flips:?}"
    );
    assert_eq!(s["denyToAllow"], flips.len());
    assert_eq!(s["allowToDeny"], 0);
    assert_eq!(s["evaluated"], case_count());
    assert_eq!(s["errors"], 0);
    assert_eq!(
        s["changed"],
        report["changes"].as_array().unwrap().len(),
        "every change is listed"
    );
    let one = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == "corpus/cases/approvals-min-count-one-deny")
        .unwrap();
    assert_eq!(one["base"]["allowed"], false);
    assert_eq!(one["new"]["allowed"], true);
    assert_eq!(one["removed"]["deny"], json!(["approvals.min_count"]));
    assert_eq!(one["added"]["deny"], json!([]));
    assert_eq!(one["evaluatedAt"], "2026-11-26T18:00:00Z");
    assert_eq!(report["base"]["label"], "policies");
    assert_eq!(report["new"]["label"], loose);
    assert_eq!(report["base"]["digest"].as_str().unwrap().len(), 64);
    assert_ne!(report["base"]["digest"], report["new"]["digest"]);
    // Each side verified attestations against its own bundle's trust file.
    assert!(report["new"]["trust"].as_str().unwrap().starts_with(loose));
    assert!(report["base"]["trust"]
        .as_str()
        .unwrap()
        .starts_with("policies"));

    let out = bin()
        .args(args)
        .args(["--format", "markdown"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("deny->allow"));
    let md = stdout(&out);
    assert!(md.contains("> [!WARNING]"), "{md}");
    assert!(
        md.contains("| change | input | evaluated at | base | new | ids |\n|---|"),
        "{md}"
    );
    assert!(
        md.contains("| :warning: **deny->allow** | `corpus/cases/approvals-min-count-one-deny` |"),
        "{md}"
    );
    assert!(
        md.contains(report["new"]["digest"].as_str().unwrap()),
        "{md}"
    );
}

#[test]
fn tightened_rule_is_allow_to_deny_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let tight = bundle(tmp.path(), "tight", |envs| {
        envs["prod"]["soak"]["minHours"] = json!(40);
    });
    let report = json_report(
        &[
            "diff",
            "--base",
            "policies",
            "--policies",
            tight.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(report["summary"]["denyToAllow"], 0);
    let tightened = sources(&report, "allowToDeny");
    assert!(
        tightened.contains(&"corpus/cases/prod-allow-baseline".to_string()),
        "{tightened:?}"
    );
    let md = bin()
        .args(["diff", "--base", "policies", "--policies"])
        .arg(&tight)
        .args(["--format", "markdown"])
        .assert()
        .code(0);
    assert!(!stdout(&md).contains("[!WARNING]"));
}

/// The freeze-day-before case, as audit records (and one bare request) in a JSONL file.
fn freeze_eve_jsonl(tmp: &Path) -> PathBuf {
    let request: Value = serde_json::from_slice(
        &std::fs::read("corpus/cases/freeze-day-before-allow/request.json").unwrap(),
    )
    .unwrap();
    assert_eq!(request["requestedAt"], "2026-12-19T23:57:59Z");
    let record = |at: &str| {
        json!({"seq": 1, "evaluatedAt": at, "request": request, "decision": {"allowed": true}})
            .to_string()
    };
    let lines = [
        // Before the new freeze start (23:50): allowed on both sides.
        record("2026-12-19T23:40:00Z"),
        // After it: the new bundle denies.
        record("2026-12-19T23:59:59Z"),
        // A bare request: evaluated at its own `requestedAt` (23:57:59), or at --at.
        request.to_string(),
    ];
    let path = tmp.join("audit.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn jsonl_audit_records_are_evaluated_at_their_own_time() {
    let tmp = tempfile::tempdir().unwrap();
    let earlier = bundle(tmp.path(), "earlier-freeze", |envs| {
        envs["prod"]["freeze"]["windows"][0]["start"] = json!("2026-12-19T23:50:00Z");
    });
    let log = freeze_eve_jsonl(tmp.path());
    let log_name = log.to_str().unwrap();
    let args = [
        "diff",
        "--base",
        "policies",
        "--policies",
        earlier.to_str().unwrap(),
        log_name,
    ];
    let report = json_report(&args, 0);
    assert_eq!(report["summary"]["evaluated"], 3);
    assert_eq!(report["summary"]["unchanged"], 1);
    assert_eq!(
        sources(&report, "allowToDeny"),
        [format!("{log_name}:2"), format!("{log_name}:3")]
    );
    let times: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["evaluatedAt"].as_str().unwrap())
        .collect();
    assert_eq!(times, ["2026-12-19T23:59:59Z", "2026-12-19T23:57:59Z"]);
    assert_eq!(
        report["changes"][0]["added"]["deny"],
        json!(["freeze.active"])
    );

    // The time rule (`crate::input::time`): an explicit --at wins over every recorded
    // time and every `requestedAt`; before the new freeze start nothing changes.
    let mut with_at = args.to_vec();
    with_at.extend(["--at", "2026-12-19T23:40:00Z"]);
    let report = json_report(&with_at, 0);
    assert!(sources(&report, "allowToDeny").is_empty(), "{report}");
    assert_eq!(report["summary"]["unchanged"], 3);
    // ...and after it every input changes, records and the bare request alike.
    let mut with_at = args.to_vec();
    with_at.extend(["--at", "2026-12-19T23:59:00Z"]);
    let report = json_report(&with_at, 0);
    assert_eq!(report["summary"]["allowToDeny"], 3, "{report}");
}

#[test]
fn bad_lines_are_error_rows_and_unreadable_ones_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string("corpus/cases/prod-allow-baseline/request.json").unwrap();
    let good: Value = serde_json::from_str(&good).unwrap();
    let invalid = tmp.path().join("invalid.jsonl");
    std::fs::write(&invalid, format!("{}\n{{\"id\": 1}}\n", good)).unwrap();
    // A schema error is refused by both bundles alike: reported, not a change, exit 0.
    let report = json_report(
        &["diff", "--base", "policies", invalid.to_str().unwrap()],
        0,
    );
    assert_eq!(report["summary"]["evaluated"], 1);
    assert_eq!(report["summary"]["errors"], 1);
    assert_eq!(report["summary"]["changed"], 0);
    let err = &report["errors"][0];
    assert_eq!(err["kind"], "invalid");
    assert_eq!(err["source"], format!("{}:2", invalid.display()));
    assert!(err["msg"].as_str().unwrap().contains("request.invalid"));

    // A record whose time cannot be read: its outcome is unknown, so exit 2.
    let unread = tmp.path().join("unread.jsonl");
    std::fs::write(
        &unread,
        format!(
            "{}\n",
            json!({"request": good, "evaluatedAt": "last tuesday"})
        ),
    )
    .unwrap();
    bin()
        .args(["diff", "--base", "policies"])
        .arg(&unread)
        .assert()
        .code(2)
        .stdout(predicate::str::contains("error (unread)"))
        .stdout(predicate::str::contains("`evaluatedAt`"))
        .stderr(predicate::str::contains("could not be read"));
}

#[test]
fn a_bundle_that_fails_to_load_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken");
    copy_dir(Path::new("policies"), &broken);
    let rule = broken.join("promo/rules/slo.rego");
    let mut text = std::fs::read_to_string(&rule).unwrap();
    text.push_str("\ndeny contains {\n");
    std::fs::write(&rule, text).unwrap();
    for (flag, other) in [("--policies", "--base"), ("--base", "--policies")] {
        bin()
            .args(["diff", flag])
            .arg(&broken)
            .args([other, "policies"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(format!(
                "cannot load the {flag} bundle"
            )))
            .stderr(predicate::str::contains("promo/rules/slo.rego:"));
    }
}

#[test]
fn bad_at_missing_input_and_no_inputs_exit_2() {
    bin()
        .args(["diff", "--base", "policies", "--at", "yesterday"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--at"));
    bin()
        .args(["diff", "--base", "policies", "no/such/requests.jsonl"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no/such/requests.jsonl"));
    let empty = tempfile::tempdir().unwrap();
    bin()
        .args(["diff", "--base", "policies"])
        .arg(empty.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no request could be evaluated"));
}

#[test]
fn a_directory_of_request_files_and_stdin_are_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("requests");
    std::fs::create_dir(&dir).unwrap();
    let baseline = std::fs::read("corpus/cases/prod-allow-baseline/request.json").unwrap();
    std::fs::write(dir.join("a.json"), &baseline).unwrap();
    std::fs::write(dir.join("README.md"), "not a request").unwrap();
    let out = bin()
        .args([
            "diff",
            "--base",
            "policies",
            "-",
            "--at",
            "2026-11-26T18:00:00Z",
        ])
        // JSONL: one request per line.
        .write_stdin(
            serde_json::from_slice::<Value>(&baseline)
                .unwrap()
                .to_string(),
        )
        .assert()
        .code(0);
    assert!(stdout(&out).contains("1 evaluated, 0 changed"));
    // A directory of request files, one request file, and one case directory (at its
    // own `at`).
    let report = json_report(
        &[
            "diff",
            "--base",
            "policies",
            "--at",
            "2026-11-26T18:00:00Z",
            dir.to_str().unwrap(),
            "corpus/cases/prod-allow-baseline/request.json",
            "corpus/cases/freeze-active-deny",
        ],
        0,
    );
    assert_eq!(report["summary"]["evaluated"], 3, "README.md is skipped");
    assert_eq!(report["summary"]["errors"], 0);
}

fn git(repo: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .current_dir(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[test]
fn git_revisions_of_the_policies_dir_are_compared() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    copy_dir(Path::new("policies"), &repo.join("policies"));
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    let data = repo.join("policies/data.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&data).unwrap()).unwrap();
    config["promo"]["config"]["environments"]["prod"]["approvals"]["minCount"] = json!(1);
    std::fs::write(&data, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    git(&repo, &["commit", "-q", "-a", "-m", "loosen"]);

    let here = std::env::current_dir().unwrap();
    let corpus = here.join("corpus/cases");
    let plugins = here.join("plugins");
    let run = |revs: &[&str], code: i32| -> Value {
        let out = bin()
            .current_dir(&repo)
            .arg("diff")
            .args(revs)
            .arg("--plugins")
            .arg(&plugins)
            .arg(&corpus)
            .args(["--format", "json"])
            .assert()
            .code(code);
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    };
    let flipped = corpus.join("approvals-min-count-one-deny");
    let flipped = flipped.to_str().unwrap().to_string();

    // Two revisions.
    let report = run(&["--base-rev", "HEAD~1", "--policies-rev", "HEAD"], 1);
    assert!(
        sources(&report, "denyToAllow").contains(&flipped),
        "{report}"
    );
    assert!(report["base"]["label"]
        .as_str()
        .unwrap()
        .starts_with("HEAD~1:policies ("));
    // A revision against the files on disk (the same as HEAD here).
    let report = run(&["--base-rev", "HEAD~1"], 1);
    assert!(sources(&report, "denyToAllow").contains(&flipped));
    assert_eq!(report["new"]["label"], "policies");
    let report = run(&["--base-rev", "HEAD"], 0);
    assert_eq!(report["summary"]["changed"], 0);
    assert_eq!(report["base"]["digest"], report["new"]["digest"]);

    bin()
        .current_dir(&repo)
        .args(["diff", "--base-rev", "no-such-rev"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("git revision `no-such-rev`"));
}

/// Nothing that could hide a deny->allow may pass as "nothing changed": a record that
/// does not read, a saved record in a `.json` file, a loose request beside corpus
/// cases, and inputs none of which is a valid request.
#[test]
fn inputs_that_could_hide_a_flip_are_never_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    // prod's minimum approvals loosened to 1: the one-approval case flips to allow.
    let loose = bundle(tmp.path(), "loose", |envs| {
        envs["prod"]["approvals"]["minCount"] = json!(1);
    });
    let case = Path::new("corpus/cases/approvals-min-count-one-deny");
    let request: Value =
        serde_json::from_slice(&std::fs::read(case.join("request.json")).unwrap()).unwrap();
    let at = serde_json::from_slice::<Value>(&std::fs::read(case.join("case.json")).unwrap())
        .unwrap()["at"]
        .clone();
    let diff = |input: &Path| {
        bin()
            .args(["diff", "--base", "policies", "--policies"])
            .arg(&loose)
            .arg(input)
            .assert()
    };

    // A record whose evaluatedAt is not a string: unread (exit 2), not "invalid".
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}\n",
            json!({"request": request, "evaluatedAt": 1764180000})
        ),
    )
    .unwrap();
    diff(&bad)
        .code(2)
        .stdout(predicate::str::contains("a record that cannot be read"));

    // A saved record in a .json file is evaluated at its own time: the flip is seen.
    let saved = tmp.path().join("saved.json");
    std::fs::write(
        &saved,
        json!({"request": request, "evaluatedAt": at}).to_string(),
    )
    .unwrap();
    diff(&saved)
        .code(1)
        .stdout(predicate::str::contains("deny->allow"));

    // A loose request file beside a corpus case is evaluated too.
    let mixed = tmp.path().join("mixed");
    copy_dir(
        Path::new("corpus/cases/prod-allow-baseline"),
        &mixed.join("baseline"),
    );
    std::fs::write(
        mixed.join("loose.json"),
        json!({"request": request, "evaluatedAt": at}).to_string(),
    )
    .unwrap();
    diff(&mixed)
        .code(1)
        .stdout(predicate::str::contains("loose.json"));

    // Inputs none of which is a valid request: nothing was compared, exit 2.
    let junk = tmp.path().join("junk.jsonl");
    std::fs::write(&junk, "{\"not\": \"a request\"}\n").unwrap();
    diff(&junk)
        .code(2)
        .stderr(predicate::str::contains("no request could be evaluated"));
}
