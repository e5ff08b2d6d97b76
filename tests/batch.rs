//! `eval --batch` through the real binary: input order, isolation of bad inputs, the
//! same output for any job count, shards that add up to the whole, exit codes.

use std::path::{Path, PathBuf};

use crate::support::{bin, without_approvals, ALLOWED, AT};
use base64::Engine as _;
use predicates::prelude::*;
use promo_policy::batch::workload::{Workload, WORKLOAD_AT};
use serde_json::Value;

fn batch(input: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    bin()
        .args(["eval", "--batch", input.to_str().unwrap(), "--at", AT])
        .args(extra)
        .assert()
}

fn allowed_line() -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(ALLOWED).unwrap()).unwrap();
    v.to_string()
}

/// `count` workload requests as JSONL, with each one's expected decision.
fn workload(dir: &Path, count: u64) -> (PathBuf, Vec<promo_policy::batch::workload::Generated>) {
    let mut w =
        Workload::from_corpus(Path::new("corpus/cases"), Path::new("corpus/keys"), 11, 4).unwrap();
    let generated: Vec<_> = (0..count).map(|i| w.request(i).unwrap()).collect();
    let body: String = generated
        .iter()
        .map(|g| g.request.to_string() + "\n")
        .collect();
    let path = dir.join("requests.jsonl");
    std::fs::write(&path, body).unwrap();
    (path, generated)
}

fn parse_lines(stdout: &[u8]) -> Vec<Value> {
    assert!(stdout.is_empty() || stdout.ends_with(b"\n"));
    stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// A result line with the decision id (random per decision, UUIDv7) taken out of the
/// decision and out of the signed statement, and the signatures (over the id) dropped.
fn redact(line: &Value) -> Value {
    let mut line = line.clone();
    if let Some(d) = line.get_mut("decision") {
        assert!(d["decisionId"].as_str().unwrap().len() == 36);
        d["decisionId"] = "<id>".into();
        let env = &mut line["envelope"];
        let payload = base64::engine::general_purpose::STANDARD
            .decode(env["payload"].as_str().unwrap())
            .unwrap();
        let mut statement: Value = serde_json::from_slice(&payload).unwrap();
        statement["predicate"]["decisionId"] = "<id>".into();
        env["payload"] = statement;
        env["signatures"] = "<signed>".into();
    }
    line
}

fn redacted_bytes(stdout: &[u8]) -> String {
    parse_lines(stdout)
        .iter()
        .map(|l| redact(l).to_string() + "\n")
        .collect()
}

#[test]
fn results_are_in_input_order_and_match_the_cases() {
    let dir = tempfile::tempdir().unwrap();
    let (path, generated) = workload(dir.path(), 150);
    let out = batch(&path, &["--jobs", "2"]).code(1);
    let lines = parse_lines(&out.get_output().stdout);
    assert_eq!(lines.len(), generated.len());
    for (i, (line, g)) in lines.iter().zip(&generated).enumerate() {
        assert_eq!(line["index"], i as u64);
        assert_eq!(line["source"], format!("line {}", i + 1));
        let d = &line["decision"];
        assert_eq!(d["requestId"], g.request["id"], "line {}", i + 1);
        assert_eq!(line["allowed"], d["allowed"]);
        let expect =
            promo_policy::testing::Expectation::of(&serde_json::from_value(d.clone()).unwrap());
        assert_eq!(expect, g.expect, "line {} (case {})", i + 1, g.case);
        assert_eq!(d["evaluatedAt"], AT);
    }
    let allowed = generated.iter().filter(|g| g.expect.allowed).count();
    assert!(allowed > 0 && allowed < generated.len());
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains(&format!(
            "batch: 150 inputs: {allowed} allowed, {} denied, 0 invalid",
            150 - allowed
        )),
        "{stderr}"
    );
}

#[test]
fn bad_lines_each_become_one_failed_result_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = allowed_line();
    let mut body: Vec<u8> = Vec::new();
    let mut push = |line: &[u8]| {
        body.extend_from_slice(line);
        body.push(b'\n');
    };
    push(good.as_bytes()); // line 1
    push(b""); // line 2: empty
    push(b"   \t"); // line 3: blank
    push(b"{\"id\": \"\xff\xfe\"}"); // line 4: invalid UTF-8
    push(b"this is not json"); // line 5
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(10 * 1024 * 1024)); // line 6: 10 MB
    push(big.as_bytes());
    push(b"{\"apiVersion\": \"promo-policy/v1\", \"kind\": \"PromotionRequest\"}"); // line 7
    push(b"{\"a\": 1, \"a\": 2}"); // line 8: duplicate key
    push(b"[1, 2"); // line 9: broken mid-file
    push(good.as_bytes()); // line 10
    body.extend_from_slice(&good.as_bytes()[..good.len() - 40]); // line 11: truncated, no \n
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, &body).unwrap();

    let out = batch(&path, &["--jobs", "2"]).code(1);
    let lines = parse_lines(&out.get_output().stdout);
    assert_eq!(lines.len(), 11);
    let msg = |i: usize| lines[i]["error"]["msg"].as_str().unwrap().to_string();
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], i as u64);
        if i == 0 || i == 9 {
            assert_eq!(line["allowed"], true, "{line}");
            continue;
        }
        // Nothing about a failed input may read as an allow.
        assert_eq!(line["allowed"], false, "{line}");
        assert_eq!(line["error"]["id"], "request.invalid", "{line}");
        assert!(line.get("decision").is_none() && line.get("envelope").is_none());
    }
    assert_eq!(msg(1), "empty line: expected one JSON request per line");
    assert_eq!(msg(2), "empty line: expected one JSON request per line");
    assert!(
        msg(3).starts_with("invalid UTF-8 at line 4, column 9"),
        "{}",
        msg(3)
    );
    assert!(
        msg(4).starts_with("malformed JSON at line 5, column 2"),
        "{}",
        msg(4)
    );
    assert_eq!(
        msg(5),
        format!(
            "request body is {} bytes; the limit is 1048576 bytes",
            big.len()
        )
    );
    assert!(
        msg(6).contains("schema") && msg(6).contains("`/`"),
        "{}",
        msg(6)
    );
    assert!(
        msg(7).contains("line 8") && msg(7).contains("duplicate"),
        "{}",
        msg(7)
    );
    assert!(msg(8).starts_with("malformed JSON at line 9"), "{}", msg(8));
    assert!(
        msg(10).starts_with("malformed JSON at line 11"),
        "{}",
        msg(10)
    );
    assert!(msg(10).contains("EOF"), "{}", msg(10));
    out.stderr(predicate::str::contains(
        "11 inputs: 2 allowed, 0 denied, 9 invalid",
    ));
}

#[test]
fn one_and_two_jobs_write_the_same_bytes_but_for_decision_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = workload(dir.path(), 60);
    // A few bad lines among the good ones.
    let mut body = std::fs::read_to_string(&path).unwrap();
    body.insert_str(0, "nope\n");
    body.push_str("\n{}\n");
    std::fs::write(&path, body).unwrap();

    let one = batch(&path, &["--jobs", "1"]).code(1);
    let two = batch(&path, &["--jobs", "2"]).code(1);
    let (one, two) = (&one.get_output().stdout, &two.get_output().stdout);
    assert_eq!(parse_lines(one).len(), 63);
    assert_eq!(redacted_bytes(one), redacted_bytes(two));
    // Failed results carry no id at all: those lines are byte-identical.
    let failed = |out: &[u8]| -> Vec<Vec<u8>> {
        out.split(|&b| b == b'\n')
            .filter(|l| l.windows(8).any(|w| w == b"\"error\":"))
            .map(<[u8]>::to_vec)
            .collect()
    };
    assert_eq!(failed(one).len(), 3);
    assert_eq!(failed(one), failed(two));
}

#[test]
fn shards_together_equal_the_unsharded_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = workload(dir.path(), 40);
    let mut body = std::fs::read_to_string(&path).unwrap();
    body.push_str("not json\n");
    std::fs::write(&path, body).unwrap();

    let whole = batch(&path, &["--jobs", "2"]).code(1);
    let whole = parse_lines(&whole.get_output().stdout);
    assert_eq!(whole.len(), 41);
    let mut merged = Vec::new();
    for k in 0..3 {
        let shard = format!("{k}/3");
        let out = batch(&path, &["--jobs", "1", "--shard", &shard]);
        let part = parse_lines(&out.get_output().stdout);
        assert!(part.iter().all(|l| l["index"].as_u64().unwrap() % 3 == k));
        out.stderr(predicate::str::contains(format!("shard {shard}")));
        merged.extend(part);
    }
    merged.sort_by_key(|l| l["index"].as_u64().unwrap());
    let merged: Vec<Value> = merged.iter().map(redact).collect();
    let whole: Vec<Value> = whole.iter().map(redact).collect();
    assert_eq!(merged, whole);
}

#[test]
fn bad_shards_are_usage_errors() {
    for bad in ["3/3", "1/0", "a/b", "2"] {
        bin()
            .args(["eval", "--batch", "-", "--shard", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("invalid shard"));
    }
}

#[test]
fn a_directory_is_its_json_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = allowed_line();
    let denied = without_approvals();
    std::fs::write(d.join("b-denied.json"), denied.to_string()).unwrap();
    std::fs::write(d.join("a-allowed.json"), &good).unwrap();
    std::fs::write(d.join("c-garbage.json"), "PK\x03\x04 not json at all").unwrap();
    std::fs::write(d.join("README.md"), "# requests").unwrap();
    std::fs::write(d.join(".hidden.json"), &good).unwrap();
    std::fs::create_dir(d.join("nested")).unwrap();
    std::fs::write(d.join("nested/z.json"), &good).unwrap();

    let out = batch(d, &["--jobs", "2"]).code(1);
    let lines = parse_lines(&out.get_output().stdout);
    let sources: Vec<&str> = lines
        .iter()
        .map(|l| l["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        ["a-allowed.json", "b-denied.json", "c-garbage.json"]
    );
    assert_eq!(lines[0]["allowed"], true);
    assert_eq!(lines[1]["allowed"], false);
    assert!(!lines[1]["decision"]["violations"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(lines[2]["error"]["id"], "request.invalid");
    assert!(lines[2]["error"]["msg"]
        .as_str()
        .unwrap()
        .starts_with("malformed JSON at line 1, column 1"));
    out.stderr(predicate::str::contains(
        "skipped 3 entries that are not *.json request files: `.hidden.json`, `README.md`, `nested`",
    ))
    .stderr(predicate::str::contains(
        "3 inputs: 1 allowed, 1 denied, 1 invalid (3 files skipped)",
    ));
}

#[test]
fn all_allowed_exits_0_and_writes_the_summary_json() {
    let dir = tempfile::tempdir().unwrap();
    let good = allowed_line();
    let out_path = dir.path().join("results.jsonl");
    let summary_path = dir.path().join("summary.json");
    let assert = bin()
        .args(["eval", "--batch", "-", "--at", AT, "--jobs", "2"])
        .args(["--out", out_path.to_str().unwrap()])
        .args(["--summary-json", summary_path.to_str().unwrap()])
        .write_stdin(format!("{good}\n{good}\r\n{good}"))
        .assert()
        .code(0);
    assert!(assert.get_output().stdout.is_empty());
    let lines = parse_lines(&std::fs::read(&out_path).unwrap());
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["allowed"] == true));
    let summary: Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["inputs"], 3);
    assert_eq!(summary["allowed"], 3);
    assert_eq!(summary["denied"], 0);
    assert_eq!(summary["invalid"], 0);
    assert_eq!(summary["jobs"], 2);
    assert!(summary["wallSeconds"].as_f64().unwrap() > 0.0);
    assert!(summary["decisionsPerSecond"].as_f64().is_some());
}

#[test]
fn an_empty_batch_allows_nothing_and_denies_nothing() {
    bin()
        .args(["eval", "--batch", "-", "--at", AT])
        .write_stdin("")
        .assert()
        .code(0)
        .stdout("")
        .stderr(predicate::str::contains("0 inputs: 0 allowed"));
}

#[test]
fn errors_that_stop_the_batch_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("one.jsonl");
    std::fs::write(&good, allowed_line()).unwrap();
    // Unreadable input.
    batch(&dir.path().join("missing.jsonl"), &[])
        .code(2)
        .stderr(predicate::str::contains("cannot read"));
    // Unwritable --out.
    let out = dir.path().join("no/such/dir/out.jsonl");
    batch(&good, &["--out", out.to_str().unwrap()])
        .code(2)
        .stderr(predicate::str::contains("cannot write"));
    // A bad bundle.
    batch(&good, &["--policies", dir.path().to_str().unwrap()]).code(2);
    // Batch-only flags without --batch.
    bin()
        .args(["eval", ALLOWED, "--jobs", "2"])
        .assert()
        .code(2);
}

#[test]
fn the_workload_is_generated_for_the_corpus_time() {
    assert_eq!(WORKLOAD_AT, AT);
}

/// The time rule (`crate::input::time`), as batch applies it: `--at` wins over a
/// record's `evaluatedAt`; without it a record is evaluated at its own time and a bare
/// request at the clock (never at its `requestedAt`).
#[test]
fn the_time_rule_is_at_then_recorded_time_then_clock() {
    let recorded = "2026-11-26T17:00:00Z";
    let record = serde_json::json!({
        "request": serde_json::from_str::<Value>(&allowed_line()).unwrap(),
        "evaluatedAt": recorded,
    });
    let body = format!("{record}\n{}\n", allowed_line());
    let run = |extra: &[&str]| -> Vec<Value> {
        let out = bin()
            .args(["eval", "--batch", "-"])
            .args(extra)
            .write_stdin(body.clone())
            .assert();
        parse_lines(&out.get_output().stdout)
    };
    let pinned = run(&["--at", AT]);
    assert_eq!(pinned.len(), 2);
    assert!(
        pinned.iter().all(|l| l["decision"]["evaluatedAt"] == AT),
        "{pinned:?}"
    );
    let own = run(&[]);
    assert_eq!(own[0]["decision"]["evaluatedAt"], recorded);
    let requested_at =
        serde_json::from_str::<Value>(&allowed_line()).unwrap()["requestedAt"].clone();
    assert_ne!(
        own[1]["decision"]["evaluatedAt"], requested_at,
        "the clock, not requestedAt"
    );
    assert_ne!(own[1]["decision"]["evaluatedAt"], AT);
}
