//! The real `promo-policy` binary: exit codes, output formats and refusals of bad input.

use crate::support::{bin, request, without_approvals, write, ALLOWED, AT};
use predicates::prelude::*;

#[test]
fn eval_allowed_request_exits_0_with_json_decision() {
    let out = bin()
        .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
        .assert()
        .code(0);
    let signed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let d = &signed["decision"];
    assert_eq!(d["allowed"], true);
    assert_eq!(
        signed["envelope"]["payloadType"],
        "application/vnd.in-toto+json"
    );
    assert_eq!(d["evaluatedAt"], AT);
    assert_eq!(d["engine"]["id"], "promo-policy");
    assert_eq!(d["policy"]["digest"]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn eval_denied_request_exits_1_and_names_the_violation() {
    let r = without_approvals();
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "r.json", r.to_string());
    bin()
        .args(["eval", p.to_str().unwrap(), "--at", AT, "--format", "text"])
        .assert()
        .code(1)
        .stdout(predicate::str::starts_with("DENIED"))
        .stdout(predicate::str::contains("approvals.min_count"));
}

#[test]
fn eval_reads_stdin() {
    bin()
        .args(["eval", "-", "--at", AT, "--format", "json"])
        .write_stdin(std::fs::read(ALLOWED).unwrap())
        .assert()
        .code(0);
}

#[test]
fn eval_github_format_prints_annotations() {
    let mut r = request();
    r["to"] = "qa".into();
    bin()
        .args(["eval", "-", "--at", AT, "--format", "github"])
        .write_stdin(r.to_string())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "::error title=path.unknown_environment::",
        ))
        .stdout(predicate::str::contains(
            "::notice title=promo-policy::DENIED",
        ));
}

#[test]
fn malformed_json_exits_2_naming_line_and_column() {
    bin()
        .args(["eval", "-", "--at", AT])
        .write_stdin("{\n  \"id\": \n}")
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("line 3, column 1"));
}

#[test]
fn duplicate_keys_exit_2_naming_the_key() {
    let body = std::fs::read_to_string(ALLOWED).unwrap();
    let body = body.replacen("\"to\":", "\"to\": \"dev\", \"to\":", 1);
    bin()
        .args(["eval", "-", "--at", AT])
        .write_stdin(body)
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("duplicate key `to`"));
}

#[test]
fn schema_violation_exits_2_naming_the_pointer() {
    let mut r = request();
    r["slo"]["burnRates"]["1h"] = serde_json::json!(-1.0);
    r["approvals"][0]["decision"] = "maybe".into();
    bin()
        .args(["eval", "-", "--at", AT])
        .write_stdin(r.to_string())
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("`/approvals/0/decision`"));
}

#[test]
fn oversized_and_deep_bodies_exit_2() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    bin()
        .args(["eval", "-", "--at", AT])
        .write_stdin(deep)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nesting deeper than 64"));
    let big = format!("{{\"id\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    bin()
        .args(["eval", "-", "--at", AT])
        .write_stdin(big)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("limit is 1048576 bytes"));
}

#[test]
fn unreadable_file_and_bad_time_exit_2() {
    bin()
        .args(["eval", "no/such/file.json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read `no/such/file.json`"));
    bin()
        .args(["eval", ALLOWED, "--at", "tomorrow"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid time `tomorrow`"));
}

#[test]
fn policy_parse_error_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "promo/decision.rego",
        "package promo\n\ndecision := {\"allow\": \n",
    );
    bin()
        .args([
            "eval",
            ALLOWED,
            "--at",
            AT,
            "--policies",
            dir.path().to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("promo/decision.rego:"));
}

#[test]
fn network_builtin_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "promo/decision.rego",
        "package promo\n\nr := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"})\ndecision := {\"allow\": true, \"deny\": [], \"warn\": []}\n");
    bin()
        .args([
            "eval",
            ALLOWED,
            "--at",
            AT,
            "--policies",
            dir.path().to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("promo/decision.rego:3:")
                .and(predicate::str::contains("`http.send` is refused")),
        );
}

#[test]
fn policy_runtime_error_is_a_deny_with_policy_error() {
    let dir = tempfile::tempdir().unwrap();
    // Two complete definitions of one rule that disagree: a runtime conflict error.
    write(dir.path(), "promo/decision.rego",
        "package promo\n\ndecision := {\"allow\": true, \"deny\": [], \"warn\": []} if input.now\ndecision := {\"allow\": false, \"deny\": [], \"warn\": []} if input.now\n");
    let out = bin()
        .args([
            "eval",
            ALLOWED,
            "--at",
            AT,
            "--format",
            "json",
            "--policies",
            dir.path().to_str().unwrap(),
        ])
        .assert()
        .code(1);
    let signed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let d = &signed["decision"];
    assert_eq!(d["allowed"], false);
    assert_eq!(d["violations"][0]["id"], "policy.error");
}

#[test]
fn test_command_passes_on_the_shipped_bundle_and_tallies() {
    bin()
        .args(["test"])
        .assert()
        .code(0)
        .stdout(predicate::str::is_match(r"(?m)^\d+ passed, 0 failed\n\z").unwrap());
}

#[test]
fn test_command_fails_on_a_wrong_expectation_and_an_error_is_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let case = |name: &str, expect: &str| {
        write(
            dir.path(),
            &format!("{name}/request.json"),
            std::fs::read_to_string(ALLOWED).unwrap(),
        );
        write(
            dir.path(),
            &format!("{name}/case.json"),
            format!("{{\"description\": \"x\", \"at\": \"{AT}\"{expect}}}"),
        );
    };
    case(
        "wrong",
        r#", "expect": {"allowed": false, "deny": ["approvals.min_count"]}"#,
    );
    case("no-expect", "");
    bin()
        .args([
            "test",
            "--corpus",
            dir.path().to_str().unwrap(),
            "--run",
            "corpus/",
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL  corpus/wrong"))
        .stdout(predicate::str::contains(
            "ERROR corpus/no-expect: case.json has no `expect`",
        ))
        .stdout(predicate::str::ends_with("0 passed, 2 failed\n"));
}

#[test]
fn failing_rego_test_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "promo/decision.rego",
        "package promo\n\ndecision := {\"allow\": true, \"deny\": [], \"warn\": []}\n",
    );
    write(dir.path(), "promo/decision_test.rego",
        "package promo_test\n\ntest_allows_everything if data.promo.decision.allow\ntest_denies_something_fails if not data.promo.decision.allow\n");
    bin()
        .args([
            "test",
            "--no-corpus",
            "--policies",
            dir.path().to_str().unwrap(),
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "FAIL  data.promo_test.test_denies_something_fails",
        ))
        .stdout(predicate::str::ends_with("1 passed, 1 failed\n"));
}

#[test]
fn help_documents_exit_codes() {
    bin()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Exit codes: 0 allowed"));
}

#[test]
fn eval_without_key_signs_with_the_dev_key_and_says_so() {
    bin()
        .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("shipped DEV key"));
}

#[test]
fn signed_decision_verifies_and_fails_after_any_payload_change() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    bin()
        .args(["keygen", "--out", keys.to_str().unwrap()])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("keyid:"));
    let envelope = dir.path().join("decision.dsse.json");
    bin()
        .args(["eval", ALLOWED, "--at", AT, "--format", "json", "--key"])
        .arg(keys.join("signing.key"))
        .arg("--out")
        .arg(&envelope)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("DEV key").not());
    let public = keys.join("signing.pub");
    bin()
        .arg("verify")
        .arg(&envelope)
        .arg("--key")
        .arg(&public)
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("VALID"));

    // Replay: same request, same bundle, same time -> same outcome.
    bin()
        .arg("verify")
        .arg(&envelope)
        .arg("--key")
        .arg(&public)
        .args(["--replay", ALLOWED])
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("same digest")
                .and(predicate::str::contains("REPLAYED  same outcome")),
        );

    // Flip one payload byte: the signature no longer covers it.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&envelope).unwrap()).unwrap();
    let mut payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let i = payload.windows(4).position(|w| w == b"true").unwrap();
    payload[i..i + 4].copy_from_slice(b"TRUE");
    env["payload"] = b64.encode(&payload).into();
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, env.to_string()).unwrap();
    bin()
        .arg("verify")
        .arg(&tampered)
        .arg("--key")
        .arg(&public)
        .assert()
        .code(1)
        .stdout(predicate::str::starts_with("INVALID"));

    // Another key does not verify it either.
    bin()
        .arg("verify")
        .arg(&envelope)
        .args(["--key", "corpus/keys/decisions-dev.pub"])
        .assert()
        .code(1);
}

#[test]
fn replay_with_a_different_request_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let envelope = dir.path().join("d.json");
    bin()
        .args(["eval", ALLOWED, "--at", AT, "--out"])
        .arg(&envelope)
        .assert()
        .code(0);
    let mut r = request();
    r["id"] = "req-other".into();
    let other = write(dir.path(), "other.json", r.to_string());
    bin()
        .arg("verify")
        .arg(&envelope)
        .args(["--key", "corpus/keys/decisions-dev.pub", "--replay"])
        .arg(&other)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("MISMATCH"));
}

#[test]
fn missing_signing_key_exits_2_and_prints_no_decision() {
    bin()
        .args(["eval", ALLOWED, "--at", AT, "--key", "no/such.key"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("no/such.key"));
}

#[test]
fn vsa_is_a_signed_slsa_verification_summary() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let vsa = dir.path().join("vsa.json");
    bin()
        .args(["eval", ALLOWED, "--at", AT, "--format", "json", "--vsa"])
        .arg(&vsa)
        .assert()
        .code(0);
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(&vsa).unwrap()).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        statement["predicateType"],
        "https://slsa.dev/verification_summary/v1"
    );
    assert_eq!(statement["predicate"]["verificationResult"], "PASSED");
    assert_eq!(
        statement["predicate"]["verifiedLevels"][0],
        "PROMO_POLICY_PROMOTION_PROD"
    );
    // Every attestation of the request verified and is named, with what it vouched for.
    let inputs = statement["predicate"]["inputAttestations"]
        .as_array()
        .unwrap();
    assert_eq!(
        inputs.len(),
        request()["attestations"].as_array().unwrap().len()
    );
    assert!(inputs.iter().any(|a| a["annotations"]
        == serde_json::json!({"predicateType": "https://promo-policy.dev/approval/v1",
            "signer": "approval-bot-ed25519"})));
    // The signature is over the DSSE PAE with the dev key.
    let key = promo_policy::attest::keys::PublicKey::from_pem(
        &std::fs::read_to_string("corpus/keys/decisions-dev.pub").unwrap(),
    )
    .unwrap();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(env["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let pae = promo_policy::attest::dsse::pae("application/vnd.in-toto+json", &payload);
    assert!(key.verify(&pae, &sig));
}

#[test]
fn the_interpreter_switch_is_a_flag_or_the_environment_and_decides_the_same() {
    // (decision, which engine the debug log says decided)
    let decide = |extra: &[&str], env: Option<&str>| {
        let mut cmd = bin();
        cmd.env_remove("RUST_LOG")
            .args(["-vv", "eval", ALLOWED, "--at", AT, "--format", "json"])
            .args(extra);
        if let Some(v) = env {
            cmd.env("PROMO_POLICY_INTERPRETER", v);
        } else {
            cmd.env_remove("PROMO_POLICY_INTERPRETER");
        }
        let out = cmd.assert().code(0);
        let mut d: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        d["decision"]["decisionId"] = serde_json::Value::Null;
        let log = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        let on_interpreter = log.contains("decisions run on regorus's interpreter");
        assert!(
            on_interpreter || log.contains("decisions run on regorus's register VM"),
            "{log}"
        );
        (d["decision"].clone(), on_interpreter)
    };
    let (vm, interpreted) = decide(&[], None);
    assert!(!interpreted, "the VM is the default");
    assert_eq!(decide(&["--interpreter"], None), (vm.clone(), true));
    assert_eq!(decide(&[], Some("1")), (vm.clone(), true));
    assert_eq!(decide(&[], Some("0")), (vm, false));
}
