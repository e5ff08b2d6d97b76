//! One trace id through the binary: `--traceparent` (or `TRACEPARENT`, or the request's
//! `trace`) is recorded in the signed decision with the decision's own child span, and a
//! malformed trace context is an error, never a silently untraced decision.

use serde_json::Value;

use crate::support::{eval_json, request, statement_of, ALLOWED};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn decide(c: &mut assert_cmd::Command) -> (Value, String) {
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The trace is in what was signed, not only in the printed copy.
    assert_eq!(
        statement_of(&v["envelope"])["predicate"]["trace"],
        v["decision"]["trace"]
    );
    (v["decision"].clone(), stderr)
}

#[test]
fn the_callers_trace_is_in_the_signed_decision_with_a_child_span() {
    let (d, stderr) = decide(eval_json(ALLOWED).args(["--traceparent", TP]));
    assert_eq!(d["trace"]["traceId"], TRACE_ID, "{d}");
    assert_eq!(d["trace"]["parentId"], "00f067aa0ba902b7");
    assert_eq!(d["trace"]["sampled"], true);
    let span = d["trace"]["spanId"].as_str().unwrap();
    assert_ne!(span, "00f067aa0ba902b7");
    assert!(
        stderr.contains(&format!("traceparent: 00-{TRACE_ID}-{span}-01")),
        "{stderr}"
    );
    // The environment variable CI systems set works the same way.
    let (d, _) = decide(eval_json(ALLOWED).env("TRACEPARENT", TP));
    assert_eq!(d["trace"]["traceId"], TRACE_ID);
    // Without one, no trace is invented.
    let (d, _) = decide(eval_json(ALLOWED).env_remove("TRACEPARENT"));
    assert!(d.get("trace").is_none(), "{d}");
}

#[test]
fn the_requests_trace_field_is_recorded_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request();
    r["trace"] = TP.into();
    let path = dir.path().join("traced.json");
    std::fs::write(&path, r.to_string()).unwrap();
    let (d, _) = decide(eval_json(path.to_str().unwrap()).env_remove("TRACEPARENT"));
    assert_eq!(d["trace"]["traceId"], TRACE_ID, "{d}");

    r["trace"] = "00-00000000000000000000000000000000-00f067aa0ba902b7-01".into();
    std::fs::write(&path, r.to_string()).unwrap();
    let out = eval_json(path.to_str().unwrap()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trace"));

    let out = eval_json(ALLOWED)
        .args(["--traceparent", "00-xyz-00f067aa0ba902b7-01"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("trace id"), "{stderr}");
}

#[test]
fn the_audit_log_finds_a_decision_by_its_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for tp in [TP, other] {
        eval_json(ALLOWED)
            .args(["--traceparent", tp, "--audit"])
            .arg(&db)
            .assert()
            .success();
    }
    eval_json(ALLOWED)
        .env_remove("TRACEPARENT")
        .arg("--audit")
        .arg(&db)
        .assert()
        .success();
    let query = |id: &str| -> Vec<Value> {
        let out = crate::support::bin()
            .args(["audit", "query", "--format", "jsonl", "--trace-id", id])
            .arg(&db)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let found = query(&TRACE_ID.to_ascii_uppercase());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["seq"], 1);
    assert_eq!(query("0af7651916cd43dd8448eb211c80319c")[0]["seq"], 2);
    assert!(query("ffffffffffffffffffffffffffffffff").is_empty());
}
