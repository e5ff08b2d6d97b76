//! The audit log through the real binary: writers (`eval`, `eval --batch`, `serve`),
//! tampering with plain SQL named by `audit verify`, a SIGKILLed writer, a full disk,
//! bad files, query, export, checkpoints and re-evaluating history.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::support::{bin, ALLOWED, AT};
use promo_policy::audit::Record;
use rusqlite::{params, Connection};
use serde_json::Value;

/// Two days on: the baseline request's approvals are stale by then, so it is denied.
const LATER: &str = "2026-11-28T18:00:00Z";
const DENIED_PROD: &str = "corpus/cases/approvals-min-count-one-deny/request.json";
const DENIED_STAGING: &str = "corpus/cases/approvals-staging-none-deny/request.json";

fn line(path: &str) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v.to_string()
}

fn jsonl(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn stdout_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(assert.get_output().stdout.clone()).unwrap()
}

fn stderr_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(assert.get_output().stderr.clone()).unwrap()
}

/// A fresh directory holding a log of `n` allowed decisions.
fn fresh_log(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = log_of(dir.path(), n);
    (dir, db)
}

/// A log of `n` allowed decisions made by `eval --batch --audit`.
fn log_of(dir: &Path, n: usize) -> PathBuf {
    let input = jsonl(dir, "in.jsonl", &vec![line(ALLOWED); n]);
    let db = dir.join("audit.db");
    batch_into(&input, &db, &[]).code(0);
    db
}

/// `eval --batch INPUT --at AT --audit DB EXTRA...`, run to its end.
fn batch_into(input: &Path, db: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    bin()
        .args(["eval", "--batch"])
        .arg(input)
        .args(["--at", AT, "--audit"])
        .arg(db)
        .args(extra)
        .assert()
}

pub(crate) fn verify(path: &Path) -> assert_cmd::assert::Assert {
    bin().arg("audit").arg("verify").arg(path).assert()
}

/// `audit verify` exits 1 naming `seq` and `kind`.
fn assert_tampered(path: &Path, seq: u64, kind: &str) -> String {
    let out = stdout_of(&verify(path).code(1));
    let expected = format!("TAMPERED  seq {seq}: {kind}:");
    assert!(
        out.starts_with(&expected),
        "expected `{expected}`, got: {out}"
    );
    out
}

fn sql(db: &Path, statements: &str) {
    Connection::open(db)
        .unwrap()
        .execute_batch(statements)
        .unwrap();
}

fn hash_of(db: &Path, seq: u64) -> String {
    Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT hash FROM records WHERE seq = ?1",
            params![seq as i64],
            |r| r.get(0),
        )
        .unwrap()
}

/// `promo-policy audit query DB ARGS...`.
fn audit_query(db: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    bin().args(["audit", "query"]).arg(db).args(args).assert()
}

pub(crate) fn query(db: &Path, extra: &[&str]) -> Vec<Value> {
    let a = audit_query(db, &[&["--format", "json"], extra].concat()).code(0);
    serde_json::from_slice::<Vec<Value>>(&a.get_output().stdout).unwrap()
}

#[test]
fn eval_records_its_decision_with_masks_and_the_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let a = bin()
        .args(["eval", ALLOWED, "--at", AT, "--format", "json", "--audit"])
        .arg(&db)
        .args(["--audit-mask", "/change/author", "--audit-mask", "/slo"])
        .assert()
        .code(0);
    let printed: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let records = query(&db, &[]);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["seq"], 1);
    assert_eq!(r["decisionId"], printed["decision"]["decisionId"]);
    assert_eq!(r["envelope"], printed["envelope"]);
    assert_eq!(r["prevHash"], "0".repeat(64));
    assert_eq!(r["request"]["change"]["author"], "***masked***");
    assert_eq!(r["request"]["slo"], "***masked***");
    assert_eq!(r["masked"], serde_json::json!(["/change/author", "/slo"]));
    assert_eq!(r["request"]["change"]["ticket"], "CHG-1234");
    let out = stdout_of(&verify(&db).code(0));
    assert!(out.starts_with("INTACT  1 records, seq 1..=1"), "{out}");

    // Without requests: only the digest stays.
    let bare = dir.path().join("bare.db");
    bin()
        .args([
            "eval",
            DENIED_PROD,
            "--at",
            AT,
            "--format",
            "json",
            "--audit",
        ])
        .arg(&bare)
        .arg("--audit-no-request")
        .assert()
        .code(1);
    let records = query(&bare, &[]);
    assert!(records[0].get("request").is_none());
    assert_eq!(records[0]["allowed"], false);
    assert_eq!(
        records[0]["violations"],
        serde_json::json!(["approvals.min_count"])
    );
    verify(&bare).code(0);
}

#[test]
fn unusable_audit_paths_fail_before_any_decision_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.db");
    sql(
        &foreign,
        "CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('x');",
    );
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'#'; 16384]).unwrap();
    let cases = [
        (dir.path().join("missing/audit.db"), "does not exist"),
        (dir.path().to_path_buf(), "is a directory"),
        (foreign.clone(), "not a promo-policy audit log"),
        (garbage.clone(), "corrupt"),
    ];
    let input = jsonl(dir.path(), "in.jsonl", &[line(ALLOWED)]);
    for (path, says) in &cases {
        for batch in [false, true] {
            let mut cmd = bin();
            if batch {
                cmd.args(["eval", "--batch"]).arg(&input);
            } else {
                cmd.args(["eval", ALLOWED, "--format", "json"]);
            }
            let a = cmd.args(["--at", AT, "--audit"]).arg(path).assert();
            let a = a.code(2);
            assert!(a.get_output().stdout.is_empty(), "{}", stdout_of(&a));
            let err = stderr_of(&a);
            assert!(err.contains(says), "{path:?}: {err}");
            assert!(
                err.contains(&path.display().to_string()),
                "names the file: {err}"
            );
        }
    }
    // The foreign database was not touched.
    let rows: i64 = Connection::open(&foreign)
        .unwrap()
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
    // Readers refuse them the same way.
    for (path, says) in [
        (dir.path().join("none.db"), "no audit log"),
        (foreign, "not a promo-policy audit log"),
        (garbage, "corrupt"),
    ] {
        let err = stderr_of(&verify(&path).code(2));
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn a_corrupt_page_is_an_error_naming_the_file() {
    let (_dir, db) = fresh_log(40);
    // Checkpoint the WAL into the main file, then scribble over the first page's b-tree
    // (past the 100-byte file header): SQLite's schema page. (Garbage inside a record's
    // own bytes is not SQLite's business: `verify` names that record as edited.)
    sql(&db, "PRAGMA wal_checkpoint(TRUNCATE);");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[100..4096] {
        *b = 0xa5;
    }
    std::fs::write(&db, bytes).unwrap();
    let a = verify(&db).code(2);
    let err = stderr_of(&a);
    assert!(err.contains("audit.db"), "{err}");
    assert!(
        err.contains("corrupt") || err.contains("malformed"),
        "{err}"
    );
}

#[test]
fn verify_names_an_edited_record() {
    let (_dir, db) = fresh_log(6);
    verify(&db).code(0);
    sql(&db, "UPDATE records SET allowed = 0 WHERE seq = 3;");
    let out = assert_tampered(&db, 3, "edited");
    assert!(
        out.contains("`allowed` is false but its signed decision says true"),
        "{out}"
    );
    // No checkpoint vouches for a tampered log.
    let a = bin()
        .args(["audit", "checkpoint"])
        .arg(&db)
        .assert()
        .code(1);
    assert!(
        stdout_of(&a).starts_with("TAMPERED  seq 3"),
        "{}",
        stdout_of(&a)
    );
}

#[test]
fn verify_names_a_deleted_record() {
    let (_dir, db) = fresh_log(6);
    sql(&db, "DELETE FROM records WHERE seq = 3;");
    let out = assert_tampered(&db, 3, "deleted");
    assert!(out.contains("seq 3 is missing"), "{out}");
}

#[test]
fn verify_names_reordered_records() {
    let (_dir, db) = fresh_log(6);
    sql(
        &db,
        "UPDATE records SET seq = -3 WHERE seq = 3;
         UPDATE records SET seq = 3 WHERE seq = 4;
         UPDATE records SET seq = 4 WHERE seq = -3;",
    );
    assert_tampered(&db, 3, "reordered");
}

#[test]
fn verify_names_an_inserted_record() {
    let (_dir, db) = fresh_log(6);
    // Make room at seq 3 and slip in a copy of seq 2 under a new decision id, linked
    // to seq 2 as a real record would be.
    let prev = hash_of(&db, 2);
    sql(
        &db,
        &format!(
            "UPDATE records SET seq = seq + 1000 WHERE seq >= 3;
             UPDATE records SET seq = seq - 999 WHERE seq >= 1000;
             INSERT INTO records SELECT 3, '01900000-0000-7000-8000-000000000000', request_id,
               artifact_name, artifact_digest, from_env, to_env, allowed, violations,
               evaluated_at, bundle_sha256, request_sha256, request, masked, envelope,
               '{prev}', hash FROM records WHERE seq = 2;"
        ),
    );
    assert_tampered(&db, 3, "inserted");

    // A verbatim copy appended at the end, with its link and hash made right.
    let (_dir, db) = fresh_log(4);
    let conn = Connection::open(&db).unwrap();
    let records = query(&db, &[]);
    let mut copy: Record = serde_json::from_value(records[1].clone()).unwrap();
    copy.seq = 5;
    copy.prev_hash = hash_of(&db, 4);
    copy.hash = copy.compute_hash();
    conn.execute(
        "INSERT INTO records SELECT 5, decision_id, request_id, artifact_name, artifact_digest,
           from_env, to_env, allowed, violations, evaluated_at, bundle_sha256, request_sha256,
           request, masked, envelope, ?1, ?2 FROM records WHERE seq = 2",
        params![copy.prev_hash, copy.hash],
    )
    .unwrap();
    let out = assert_tampered(&db, 5, "inserted");
    assert!(out.contains("already recorded at seq 2"), "{out}");
}

#[test]
fn verify_names_a_bad_envelope_signature() {
    let (_dir, db) = fresh_log(5);
    let records = query(&db, &[]);
    let mut envelope = records[3]["envelope"].clone();
    let sig = envelope["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_string();
    let mut flipped = sig.into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    envelope["signatures"][0]["sig"] = String::from_utf8(flipped).unwrap().into();
    let conn = Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE records SET envelope = ?1 WHERE seq = 4",
        params![envelope.to_string()],
    )
    .unwrap();
    let out = assert_tampered(&db, 4, "bad signature");
    assert!(out.contains("no signature verifies"), "{out}");
}

#[test]
fn a_writer_killed_mid_batch_leaves_a_log_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    // Enough work (thousands of decisions) to still be running after the first chunk.
    let input = jsonl(dir.path(), "in.jsonl", &vec![line(ALLOWED); 6000]);
    let db = dir.path().join("audit.db");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("promo-policy"))
        .args(["eval", "--batch"])
        .arg(&input)
        .args(["--at", AT, "--audit"])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A result line is printed only after its chunk was committed: wait for one.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("\"decision\""), "{first}");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -KILL {}", child.id()))
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal, not finished");
    let out = stdout_of(&verify(&db).code(0));
    assert!(out.starts_with("INTACT  "), "{out}");
    let records = query(&db, &[]).len();
    assert!((1..6000).contains(&records), "{records}");
}

#[test]
fn a_full_disk_stops_the_batch_and_says_how_far_the_log_got() {
    let dir = tempfile::tempdir().unwrap();
    let input = jsonl(dir.path(), "in.jsonl", &vec![line(ALLOWED); 1200]);
    let db = dir.path().join("audit.db");
    // Room for the first chunk of 512 decisions (about 12.5 KiB each with the baseline's
    // signed evidence: ~1610 pages of 4 KiB), not for the second.
    let a = batch_into(&input, &db, &["--audit-max-pages", "2400"]).code(2);
    let err = stderr_of(&a);
    assert!(err.contains("full"), "{err}");
    assert!(err.contains("audit.db"), "{err}");
    let printed = stdout_of(&a).lines().count();
    assert_eq!(printed, 512, "the first chunk only: {err}");
    assert!(
        err.contains("the log ends at seq 512") && err.contains("recording 512 decisions"),
        "{err}"
    );
    verify(&db).code(0);
    assert_eq!(query(&db, &[]).len(), 512);
}

/// Start `serve --audit DB EXTRA...` on a free port; its base URL.
fn serve(db: &Path, extra: &[&str]) -> crate::support::Sidecar {
    let mut args: Vec<std::ffi::OsString> = ["--watch-interval", "0", "--at", AT, "--audit"]
        .iter()
        .map(Into::into)
        .collect();
    args.push(db.into());
    args.extend(extra.iter().map(Into::into));
    crate::support::spawn_serve(args)
}

#[test]
fn the_sidecars_decisions_appear_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sidecar.db");
    let sidecar = serve(&db, &[]);
    let base = sidecar.base.clone();
    let mut ids = Vec::new();
    for path in [ALLOWED, DENIED_PROD] {
        let request: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let signed: Value = ureq::post(&format!("{base}/v1/promotions/evaluate"))
            .send_json(request)
            .unwrap()
            .into_json()
            .unwrap();
        ids.push(signed["decision"]["decisionId"].clone());
    }
    let metrics = metrics(&base);
    assert!(
        metrics.contains("promo_audit_records_total{result=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("promo_audit_commit_duration_seconds_count"),
        "{metrics}"
    );
    assert!(metrics.contains("promo_audit_queue_depth"), "{metrics}");
    stop(sidecar);
    let records = query(&db, &[]);
    let logged: Vec<Value> = records.iter().map(|r| r["decisionId"].clone()).collect();
    assert_eq!(logged, ids);
    assert_eq!(records[1]["allowed"], false);
    verify(&db).code(0);
}

/// The sidecar's `/metrics` text.
pub(crate) fn metrics(base: &str) -> String {
    ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

fn stop(sidecar: crate::support::Sidecar) {
    crate::support::stop_serve(sidecar);
}

#[test]
fn the_sidecar_withholds_a_decision_it_cannot_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    // A log with room for a record or two (about 3 pages each) past its schema.
    let sidecar = serve(&db, &["--audit-max-pages", "10"]);
    let base = sidecar.base.clone();
    let request: Value = serde_json::from_slice(&std::fs::read(ALLOWED).unwrap()).unwrap();
    let mut given = Vec::new();
    let mut refused = None;
    for _ in 0..50 {
        match ureq::post(&format!("{base}/v1/promotions/evaluate")).send_json(request.clone()) {
            Ok(reply) => {
                let signed: Value = reply.into_json().unwrap();
                given.push(signed["decision"]["decisionId"].clone());
            }
            Err(ureq::Error::Status(status, reply)) => {
                assert!(reply.header("retry-after").is_some());
                refused = Some((status, reply.into_json::<Value>().unwrap()));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (status, body) = refused.expect("the log never filled up");
    assert_eq!(status, 503);
    assert_eq!(body["code"], "unavailable");
    assert!(
        body["message"].as_str().unwrap().contains("audit log"),
        "{body}"
    );
    let metrics = metrics(&base);
    assert!(
        metrics.contains("promo_audit_records_total{result=\"error\"} 1"),
        "the refused decision is counted: {metrics}"
    );
    stop(sidecar);
    // Every decision handed out is in the log, and nothing else.
    let logged: Vec<Value> = query(&db, &[])
        .iter()
        .map(|r| r["decisionId"].clone())
        .collect();
    assert_eq!(logged, given);
    verify(&db).code(0);
}

#[test]
fn the_sidecar_refuses_to_start_on_an_unusable_log() {
    let dir = tempfile::tempdir().unwrap();
    let a = bin()
        .args(["serve", "--addr", "127.0.0.1:0", "--audit"])
        .arg(dir.path().join("missing/a.db"))
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("does not exist"),
        "{}",
        stderr_of(&a)
    );
}

/// A log with allowed prod, denied prod and denied staging decisions at AT, and the
/// allowed request again at LATER (denied then: stale approvals).
fn mixed_log(dir: &Path) -> PathBuf {
    let db = dir.join("mixed.db");
    let input = jsonl(
        dir,
        "mixed.jsonl",
        &[line(ALLOWED), line(DENIED_PROD), line(DENIED_STAGING)],
    );
    batch_into(&input, &db, &[]).code(1);
    bin()
        .args([
            "eval", ALLOWED, "--at", LATER, "--format", "json", "--audit",
        ])
        .arg(&db)
        .assert()
        .code(1);
    db
}

#[test]
fn query_filters_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let db = mixed_log(dir.path());
    let seqs = |extra: &[&str]| -> Vec<u64> {
        query(&db, extra)
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&[]), [1, 2, 3, 4]);
    assert_eq!(seqs(&["--allowed"]), [1]);
    assert_eq!(seqs(&["--denied"]), [2, 3, 4]);
    assert_eq!(seqs(&["--env", "dev"]), [3]);
    assert_eq!(seqs(&["--env", "prod"]), [1, 2, 4]);
    assert_eq!(seqs(&["--violation", "approvals.stale"]), [4]);
    assert_eq!(
        seqs(&["--violation", "approvals.min_count", "--env", "staging"]),
        [2, 3, 4]
    );
    assert_eq!(seqs(&["--since", "2026-11-27T00:00:00Z"]), [4]);
    assert_eq!(seqs(&["--until", "2026-11-26T20:00:00+01:00"]), [1, 2, 3]);
    let records = query(&db, &[]);
    let digest = records[0]["artifact"]["digest"]["sha256"].as_str().unwrap();
    let with_digest = seqs(&["--digest", &format!("sha256:{digest}")]);
    assert!(
        with_digest.contains(&1) && with_digest.contains(&4),
        "{with_digest:?}"
    );
    assert_eq!(seqs(&["--digest", digest]), with_digest);
    assert!(seqs(&["--digest", "sha256:00"]).is_empty());

    let a = audit_query(&db, &["--denied", "--format", "jsonl"]).code(0);
    let lines: Vec<Value> = stdout_of(&a)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["request"].is_object() && l["evaluatedAt"].is_string()));
    let a = audit_query(&db, &["--format", "table", "--env", "dev"]).code(0);
    let table = stdout_of(&a);
    assert!(table.starts_with("SEQ"), "{table}");
    assert!(
        table.contains("DENIED") && table.contains("dev -> staging"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 2, "{table}");
    audit_query(&db, &["--since", "yesterday"]).code(2);
}

#[test]
fn history_re_evaluates_at_each_records_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = mixed_log(dir.path());
    let a = audit_query(&db, &["--format", "jsonl", "--env", "prod"]).code(0);
    let history = stdout_of(&a);
    let replay = |extra: &[&str]| -> Vec<Value> {
        let a = bin()
            .args(["eval", "--batch", "-"])
            .args(extra)
            .write_stdin(history.clone())
            .assert()
            .code(1);
        stdout_of(&a)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let at_own_time = replay(&[]);
    let outcomes: Vec<(Value, Value)> = at_own_time
        .iter()
        .map(|l| (l["decision"]["evaluatedAt"].clone(), l["allowed"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (AT.into(), true.into()),
            (AT.into(), false.into()),
            (LATER.into(), false.into())
        ]
    );
    // --at wins over every record's time.
    let pinned = replay(&["--at", AT]);
    assert!(pinned.iter().all(|l| l["decision"]["evaluatedAt"] == AT));
    assert_eq!(pinned[2]["allowed"], true);
}

#[test]
fn an_export_verifies_like_the_log_and_its_tampering_is_named() {
    let (dir, db) = fresh_log(6);
    let export = dir.path().join("export.jsonl");
    bin()
        .args(["audit", "export"])
        .arg(&db)
        .arg("--out")
        .arg(&export)
        .assert()
        .code(0);
    let text = std::fs::read_to_string(&export).unwrap();
    assert_eq!(text.lines().count(), 6);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["hash"], hash_of(&db, 1));
    assert_eq!(first["prevHash"], "0".repeat(64));
    let out = stdout_of(&verify(&export).code(0));
    assert!(out.starts_with("INTACT  6 records, seq 1..=6"), "{out}");

    // A partial export starts from its first record's link.
    let a = bin()
        .args(["audit", "export"])
        .arg(&db)
        .args(["--since", "4"])
        .assert()
        .code(0);
    let partial = dir.path().join("partial.jsonl");
    std::fs::write(&partial, stdout_of(&a)).unwrap();
    let a = bin()
        .args(["audit", "verify"])
        .arg(&partial)
        .args(["--from-seq", "4"])
        .assert();
    let out = stdout_of(&a.code(0));
    assert!(
        out.contains("3 records, seq 4..=6") && out.contains("from seq 4"),
        "{out}"
    );
    // Without being told where it starts, its missing start is found.
    assert_tampered(&partial, 1, "deleted");

    // Edit one line of the export: named like an edited row.
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 2 {
                l.replace("\"allowed\":true", "\"allowed\":false")
            } else {
                l.to_string()
            }
        })
        .collect();
    let tampered = jsonl(dir.path(), "tampered.jsonl", &edited);
    assert_tampered(&tampered, 3, "edited");
    // Drop a line: deleted.
    let mut dropped: Vec<String> = text.lines().map(str::to_string).collect();
    dropped.remove(1);
    let dropped = jsonl(dir.path(), "dropped.jsonl", &dropped);
    assert_tampered(&dropped, 2, "deleted");
}

#[test]
fn a_checkpoint_catches_a_truncated_tail() {
    let (dir, db) = fresh_log(5);
    let cp = dir.path().join("checkpoint.json");
    let a = bin()
        .args(["audit", "checkpoint"])
        .arg(&db)
        .arg("--out")
        .arg(&cp)
        .assert()
        .code(0);
    let printed: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(printed["checkpoint"]["seq"], 5);
    assert_eq!(printed["checkpoint"]["hash"], hash_of(&db, 5));
    assert!(printed["envelope"]["signatures"][0]["sig"].is_string());

    // More decisions after the checkpoint: still fine.
    bin()
        .args(["eval", ALLOWED, "--at", AT, "--format", "json", "--audit"])
        .arg(&db)
        .assert()
        .code(0);
    let against = |path: &Path| {
        bin()
            .args(["audit", "verify"])
            .arg(path)
            .arg("--against")
            .arg(&cp)
            .assert()
    };
    let out = stdout_of(&against(&db).code(0));
    assert!(
        out.contains("unchanged up to the checkpoint") && out.contains("seq 5"),
        "{out}"
    );

    // Cut the tail below the checkpoint: undetectable alone, caught against it.
    sql(&db, "DELETE FROM records WHERE seq >= 4;");
    verify(&db).code(0);
    let out = stdout_of(&against(&db).code(1));
    assert!(out.starts_with("TAMPERED  seq 4: truncated:"), "{out}");

    // A forged checkpoint is an error, not a verdict.
    let mut forged = printed.clone();
    forged["envelope"]["signatures"][0]["sig"] = "AAAA".into();
    std::fs::write(&cp, forged.to_string()).unwrap();
    let err = stderr_of(&against(&db).code(2));
    assert!(err.contains("checkpoint"), "{err}");
}

#[test]
fn two_processes_creating_one_new_log_both_succeed_and_it_verifies() {
    let bin = assert_cmd::cargo::cargo_bin("promo-policy");
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let db = dir.path().join(format!("new-{round}.db"));
        let children: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(&bin)
                    .args(["eval", ALLOWED, "--at", AT, "--format", "json", "--audit"])
                    .arg(&db)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        verify(&db).code(0);
        let conn = Connection::open(&db).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2, "round {round}: both decisions recorded");
    }
}
