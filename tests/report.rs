//! `promo-policy report` through the real binary on a generated, signed audit log: every format, the verification it runs first, bad input, and the HTML page in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use promo_policy::testing::auditgen::{generate, GenOptions};
use serde_json::Value;

use crate::support::bin;

/// A generated log of `records` records in a fresh directory.
fn generated(records: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let opts = GenOptions {
        records,
        ..GenOptions::default()
    };
    assert_eq!(generate(&path, &opts).unwrap(), records);
    (dir, path)
}

fn report_json(log: &Path, extra: &[&str]) -> Value {
    let out = bin()
        .arg("report")
        .arg(log)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_format_reports_a_verified_generated_log() {
    let (_dir, log) = generated(1500);
    let json = report_json(&log, &[]);
    assert_eq!(json["verification"]["ran"], true);
    assert_eq!(json["verification"]["intact"], true);
    assert_eq!(json["verification"]["verified"], 1500);
    assert_eq!(json["auditCompleteness"], 1.0);
    let summary = &json["summary"];
    assert_eq!(summary["decisions"], 1500);
    let attempts = summary["attempts"].as_u64().unwrap();
    let allowed = summary["allowedAttempts"].as_u64().unwrap();
    assert!(attempts > 0 && allowed <= attempts);
    assert_eq!(
        summary["successRate"].as_f64().unwrap(),
        allowed as f64 / attempts as f64
    );
    let envs: Vec<&str> = json["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["environment"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["dev", "prod", "staging"]);
    // The per-environment attempts add up to the whole.
    let sum: u64 = json["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, attempts);
    // Blockers come with the catalog's text.
    let approvals = json["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "approvals.min_count")
        .unwrap();
    assert!(approvals["catalog"].as_str().unwrap().contains("approvals"));
    // No --events: the event metrics say no data.
    assert_eq!(summary["rollbackRate"], Value::Null);
    let no_data: Vec<&str> = json["noData"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(no_data.contains(&"rollbackRate"), "{no_data:?}");

    for (format, needle) in [
        (
            "text",
            "audit verify ran first: INTACT, 1500 records verified",
        ),
        ("markdown", "| Promotion success rate |"),
        ("html", "<svg id=\"trend-chart\""),
    ] {
        let out = bin()
            .arg("report")
            .arg(&log)
            .args(["--format", format])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(needle), "{format}: {text}");
        assert!(
            text.contains("no data"),
            "{format} says which metrics had no data"
        );
    }
}

#[test]
fn filters_targets_and_events_change_the_numbers() {
    let (dir, log) = generated(800);
    let prod = report_json(&log, &["--env", "prod", "--bucket", "day"]);
    let envs = prod["environments"].as_array().unwrap();
    assert_eq!(envs.len(), 1);
    assert_eq!(prod["bucket"], "day");
    let targets = dir.path().join("targets.json");
    std::fs::write(&targets, r#"{"successRate": 0.1}"#).unwrap();
    let lenient = report_json(&log, &["--targets", targets.to_str().unwrap()]);
    assert_eq!(lenient["headline"][0]["met"], true);
    // An event on an artifact the log promoted into prod.
    let all = report_json(&log, &[]);
    let bg = &all["breakGlass"];
    assert!(bg["count"].as_u64().is_some());
    let out = bin()
        .arg("report")
        .arg(&log)
        .args(["--format", "jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "{\"type\": \"rollback\"}\n").unwrap();
    let out = bin()
        .arg("report")
        .arg(&log)
        .args(["--events", events.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
    std::fs::write(&events, "").unwrap();
    let with = report_json(&log, &["--events", events.to_str().unwrap()]);
    // An empty events file is data: no rollbacks, a real 0.
    assert_eq!(with["summary"]["rollbackRate"], 0.0);
}

#[test]
fn a_tampered_log_is_reported_as_such() {
    let (_dir, log) = generated(300);
    let conn = rusqlite::Connection::open(&log).unwrap();
    conn.execute(
        "UPDATE records SET allowed = 1 - allowed WHERE seq = 100",
        [],
    )
    .unwrap();
    drop(conn);
    let json = report_json(&log, &[]);
    assert_eq!(json["verification"]["intact"], false);
    assert_eq!(json["verification"]["verified"], 99);
    assert!(json["verification"]["finding"]
        .as_str()
        .unwrap()
        .starts_with("seq 100: edited"));
    assert!(json["auditCompleteness"].as_f64().unwrap() < 1.0);
    let out = bin().arg("report").arg(&log).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("TAMPERED at seq 100"));
}

#[test]
fn a_missing_or_foreign_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("report")
        .arg(dir.path().join("nope.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "not a database").unwrap();
    let out = bin().arg("report").arg(&junk).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Debian's `chromium`, or `None` (a failure under CI=true, where .ci/run installs it).
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is not installed (.ci/run installs it with apt-get)"
        );
        eprintln!("skipping: chromium is not installed");
    }
    found
}

fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

#[test]
fn the_html_page_renders_in_chromium_and_shows_the_json_numbers() {
    let Some(chromium) = chromium() else { return };
    let (dir, log) = generated(1200);
    let page = dir.path().join("report.html");
    let out = bin()
        .arg("report")
        .arg(&log)
        .args(["--format", "html", "--out"])
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json = report_json(&log, &[]);
    let url = format!("file://{}", page.display());

    let dom = headless(&chromium, &dir.path().join("profile-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(dom.status.success(), "{stderr}");
    assert!(!stderr.contains("Uncaught"), "console errors: {stderr}");
    assert!(
        !stderr.contains(":ERROR:CONSOLE"),
        "console errors: {stderr}"
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    // The page's script ran to its end.
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "{}",
        &dom[..dom.len().min(400)]
    );
    // Each headline card carries the number the JSON has.
    for h in json["headline"].as_array().unwrap() {
        let key = h["key"].as_str().unwrap();
        let value = h["value"].as_f64().map_or(String::new(), |v| v.to_string());
        let card = format!("data-key=\"{key}\" data-value=\"{value}\"");
        assert!(dom.contains(&card), "{card} not in the page");
    }
    let attempts = format!(
        "{} decisions, {} attempts",
        json["summary"]["decisions"], json["summary"]["attempts"]
    );
    assert!(dom.contains(&attempts), "{attempts}");

    let shot = dir.path().join("report.png");
    let run = headless(&chromium, &dir.path().join("profile-shot"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2000")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
