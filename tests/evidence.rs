//! Signed process evidence through the real binary: `attest approval|check|slo` write
//! envelopes that `eval --attestations` verifies against the trust file's grants.

use serde_json::{json, Value};

use crate::support::{bin, eval_json, statement_of, write, ALLOWED};

const APPROVAL: &str = "https://promo-policy.dev/approval/v1";
const TEST_RESULT: &str = "https://in-toto.io/attestation/test-result/v0.1";
const SLO: &str = "https://promo-policy.dev/slo-snapshot/v1";
const ARTIFACT: &str = "registry.example.com/payments/api@sha256:0d9d2f9cf3e9b5229f514b2a03365b0437cdd20cf875cf840b50996620fce5ef";

#[test]
fn attest_writes_evidence_that_eval_verifies_only_under_its_grants() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    bin()
        .args(["keygen", "--out", d.join("bridge").to_str().unwrap()])
        .assert()
        .success();
    let key = d.join("bridge/signing.key");
    let evidence = d.join("evidence");
    std::fs::create_dir(&evidence).unwrap();
    let attest = |args: &[&str], file: &str| {
        bin()
            .arg("attest")
            .args(args)
            .args(["--artifact", ARTIFACT, "--key", key.to_str().unwrap()])
            .args(["--out", evidence.join(file).to_str().unwrap()])
            .assert()
            .success();
    };
    attest(
        &[
            "approval",
            "--approver",
            "alice",
            "--role",
            "release-manager",
            "--decision",
            "approved",
            "--from",
            "staging",
            "--to",
            "prod",
            "--ticket",
            "CHG-1234",
            "--at",
            "2026-11-26T17:30:00Z",
        ],
        "a.json",
    );
    attest(
        &[
            "check",
            "--name",
            "canary",
            "--environment",
            "staging",
            "--result",
            "passed",
            "--url",
            "https://ci.example.com/runs/1",
            "--at",
            "2026-11-26T14:00:00Z",
        ],
        "b.json",
    );
    attest(
        &[
            "slo",
            "--service",
            "payments-api",
            "--objective",
            "0.999",
            "--window",
            "30d",
            "--budget-remaining",
            "0.63",
            "--burn-rate",
            "1h=0.7",
            "--burn-rate",
            "6h=0.9",
            "--measured-at",
            "2026-11-26T17:00:00Z",
        ],
        "c.json",
    );

    let eval = |types: &[&str]| -> Value {
        let mut trust: Value =
            serde_json::from_slice(&std::fs::read("policies/trust.json").unwrap()).unwrap();
        trust.as_object_mut().unwrap().retain(|k, _| k == "keys");
        trust["keys"].as_array_mut().unwrap().push(json!({
            "id": "bridge", "publicKeyFile": d.join("bridge/signing.pub"), "predicateTypes": types}));
        let trust = write(d, "trust.json", trust.to_string());
        let out = eval_json(ALLOWED)
            .args(["--trust", trust.to_str().unwrap()])
            .args(["--attestations", evidence.to_str().unwrap()])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let doc = eval(&[APPROVAL, TEST_RESULT, SLO]);
    assert_eq!(doc["decision"]["allowed"], true, "{}", doc["decision"]);
    let statement = statement_of(&doc["envelope"]);
    // The baseline's envelopes and the three pieces of evidence.
    let baseline = crate::support::request()["attestations"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        statement["predicate"]["inputAttestations"]
            .as_array()
            .unwrap()
            .len(),
        baseline + 3
    );

    // Trusted for approvals only: the check and the snapshot are rejected by name.
    let doc = eval(&[APPROVAL]);
    let text = doc["decision"].to_string();
    assert!(
        text.contains(&format!(
            "key `bridge` is not trusted for predicate type `{TEST_RESULT}`"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "key `bridge` is not trusted for predicate type `{SLO}`"
        )),
        "{text}"
    );
}

#[test]
fn attest_refuses_what_it_could_not_read_back() {
    let dir = tempfile::tempdir().unwrap();
    bin()
        .args(["keygen", "--out", dir.path().to_str().unwrap()])
        .assert()
        .success();
    let key = dir.path().join("signing.key");
    bin()
        .args([
            "attest",
            "approval",
            "--artifact",
            "app@sha256:nothex",
            "--key",
            key.to_str().unwrap(),
        ])
        .args([
            "--approver",
            "a",
            "--decision",
            "approved",
            "--from",
            "s",
            "--to",
            "p",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("64 lowercase hex digits"));
    bin()
        .args([
            "attest",
            "slo",
            "--artifact",
            ARTIFACT,
            "--key",
            key.to_str().unwrap(),
        ])
        .args([
            "--service",
            "s",
            "--objective",
            "0.9",
            "--window",
            "30d",
            "--budget-remaining",
            "1",
        ])
        .args(["--burn-rate", "1h"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("is not WINDOW=RATE"));
}

/// `attest` with the corpus's evidence keys (trusted by the shipped trust file, each for
/// its own predicate type), the way the approval bot, CI and the monitoring bridge would.
fn attest_with(key: &str, args: &[&str], out: &std::path::Path) {
    bin()
        .arg("attest")
        .args(args)
        .args(["--artifact", ARTIFACT])
        .args(["--key", &format!("corpus/keys/{key}.key")])
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success();
}

#[test]
fn prod_rests_on_signed_evidence_and_explain_says_who_signed_it() {
    // The same approvals, checks and SLO figures as the baseline, only as claims: prod
    // counts signed evidence only.
    const CLAIMS_ONLY: &str = "corpus/cases/evidence-prod-claims-only-deny/request.json";
    let denied = eval_json(CLAIMS_ONLY).output().unwrap();
    assert_eq!(denied.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&denied.stdout).unwrap();
    let mut ids: Vec<&str> = doc["decision"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "approvals.min_count",
            "checks.missing",
            "checks.missing",
            "slo.inconclusive"
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("evidence");
    std::fs::create_dir(&d).unwrap();
    for (who, role, at) in [
        ("alice", "release-manager", "2026-11-26T17:30:00Z"),
        ("carol", "sre", "2026-11-26T16:45:00Z"),
    ] {
        attest_with(
            "approval-bot-ed25519",
            &[
                "approval",
                "--approver",
                who,
                "--role",
                role,
                "--decision",
                "approved",
                "--from",
                "staging",
                "--to",
                "prod",
                "--ticket",
                "CHG-1234",
                "--at",
                at,
            ],
            &d.join(format!("approval-{who}.json")),
        );
    }
    for (check, at) in [
        ("smoke", "2026-11-26T10:00:00Z"),
        ("canary", "2026-11-26T14:00:00Z"),
    ] {
        attest_with(
            "checks-ci-ed25519",
            &[
                "check",
                "--name",
                check,
                "--environment",
                "staging",
                "--result",
                "passed",
                "--at",
                at,
            ],
            &d.join(format!("check-{check}.json")),
        );
    }
    let slo = |measured: &str, file: &str| {
        attest_with(
            "slo-bridge-ed25519",
            &[
                "slo",
                "--service",
                "api",
                "--objective",
                "0.999",
                "--window",
                "30d",
                "--budget-remaining",
                "0.63",
                "--burn-rate",
                "5m=0.4",
                "--burn-rate",
                "30m=0.5",
                "--burn-rate",
                "1h=0.7",
                "--burn-rate",
                "6h=0.9",
                "--burn-rate",
                "3d=0.8",
                "--measured-at",
                measured,
            ],
            &dir.path().join(file),
        );
    };
    slo("2026-11-26T17:50:00Z", "evidence/slo.json");

    let out = bin()
        .args([
            "eval",
            CLAIMS_ONLY,
            "--at",
            crate::support::AT,
            "--format",
            "text",
            "--explain",
        ])
        .arg("--attestations")
        .arg(&d)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("evidence (approvals signed, checks signed, slo signed):"),
        "{text}"
    );
    assert!(
        text.contains("approval  alice approved at 2026-11-26T17:30:00Z  signed by approval-bot-ed25519  counted"),
        "{text}"
    );
    assert!(
        text.contains(
            "approval  carol approved at 2026-11-26T16:45:00Z  claimed in the request  not counted"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "slo       snapshot measured at 2026-11-26T17:50:00Z  signed by slo-bridge-ed25519"
        ),
        "{text}"
    );

    // An hour-old snapshot instead: past prod's 30 minutes, the SLO gate is inconclusive.
    std::fs::remove_file(d.join("slo.json")).unwrap();
    slo("2026-11-26T17:00:00Z", "evidence/slo-old.json");
    let out = eval_json(CLAIMS_ONLY)
        .arg("--attestations")
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let msg = doc["decision"]["violations"][0]["msg"].as_str().unwrap();
    assert!(
        msg.contains("measured at 2026-11-26T17:00:00Z, more than 30 minutes"),
        "{msg}"
    );
}
