//! Keyless attestations through the real binary: real Sigstore bundles from
//! `../shared/fixtures/sigstore` added with `eval --attestations`, named in the signed
//! decision, replayed by `verify`, and the roots listed by `trust roots`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::{bin, eval_json, statement_of, write};
use promo_policy::testing::sigstore::shared_fixtures as fixtures;

/// The GitHub-root bundle of `actions/attest-demo`'s wheel, and a trust file that trusts
/// that workflow keyless (with `environments`), written beside a staging -> prod request
/// for that wheel.
fn setup(dir: &Path, environments: &[&str]) -> (PathBuf, PathBuf) {
    let trust = json!({
        "keys": serde_json::from_slice::<Value>(&std::fs::read("policies/trust.json").unwrap()).unwrap()["keys"],
        "trustedRoots": {"github": "builtin:github"},
        "identities": [{
            "id": "attest-demo", "trustedRoot": "github",
            "issuer": "https://token.actions.githubusercontent.com",
            "subjectPattern": r"https://github\.com/actions/attest-demo/\.github/workflows/[a-z-]+\.yml@refs/heads/main",
            "extensions": {"sourceRepositoryURI": "https://github.com/actions/attest-demo", "runnerEnvironment": "github-hosted"},
            "predicateTypes": ["https://slsa.dev/provenance/v1"],
            "builders": ["https://github.com/actions/runner/github-hosted"],
            "environments": environments,
        }],
    });
    let trust = write(dir, "trust.json", trust.to_string());
    let mut request = crate::support::request();
    request["artifact"] = json!({
        "name": "pkg:pypi/attest-demo@0.0.12",
        "digest": {"sha256": "ae57936def59bc4c75edd3a837d89bcefc6d3a5e31d55a6fa7a71624f92c3c3b"},
        "version": "0.0.12",
    });
    request["attestations"] = json!([]);
    let request = write(dir, "request.json", request.to_string());
    (trust, request)
}

#[test]
fn a_real_github_bundle_added_from_a_file_is_verified_named_and_replayed() {
    let Some(fx) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (trust, request) = setup(dir.path(), &["staging", "prod"]);
    let bundle = fx.join("bundles/github_provenance_demo-0.0.12-py3-none-any-bundle.jsonl");
    let out = eval_json(request.to_str().unwrap())
        .args([
            "--trust",
            trust.to_str().unwrap(),
            "--attestations",
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let statement = statement_of(&doc["envelope"]);
    let named = &statement["predicate"]["inputAttestations"];
    assert_eq!(named.as_array().map(Vec::len), Some(1), "{statement}");
    assert!(
        named[0]["uri"]
            .as_str()
            .unwrap()
            .ends_with("#/attestations/0"),
        "{named}"
    );
    // Whatever else the baseline request lacks, provenance is not it.
    let ids: Vec<&str> = doc["decision"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.contains(&"provenance.missing") && !ids.contains(&"attestation.invalid"),
        "{ids:?}"
    );

    // verify --replay re-verifies the bundle at the decision's time: same outcome.
    let decision = write(dir.path(), "decision.json", &out.stdout);
    bin()
        .args([
            "verify",
            decision.to_str().unwrap(),
            "--trust",
            trust.to_str().unwrap(),
        ])
        .args([
            "--replay",
            request.to_str().unwrap(),
            "--attestations",
            bundle.to_str().unwrap(),
        ])
        .assert()
        .code(0)
        .stdout(predicates::str::contains("REPLAYED  same outcome"));
    // Without the bundle it is another request.
    bin()
        .args([
            "verify",
            decision.to_str().unwrap(),
            "--trust",
            trust.to_str().unwrap(),
        ])
        .args(["--replay", request.to_str().unwrap()])
        .assert()
        .code(1)
        .stdout(predicates::str::contains("MISMATCH"));
}

#[test]
fn an_identity_not_granted_the_environment_rejects_the_bundle_with_its_reason() {
    let Some(fx) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (trust, request) = setup(dir.path(), &["dev"]);
    let bundles = fx.join("bundles");
    let out = eval_json(request.to_str().unwrap())
        .args(["--trust", trust.to_str().unwrap()])
        .args([
            "--attestations",
            bundles
                .join("github_provenance_demo-0.0.12-py3-none-any-bundle.jsonl")
                .to_str()
                .unwrap(),
        ])
        .args([
            "--attestations",
            bundles
                .join("sigstoreBundle-invalid-signature.json")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("identity `attest-demo` is not trusted for environment `prod`"),
        "{text}"
    );
    assert!(
        text.contains("attestation 1 of the request did not verify: bundle.malformed: "),
        "{text}"
    );
}

#[test]
fn unreadable_attestation_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"a\": 1}\n{\"a\": 1, \"a\": 2}\n",
    );
    eval_json(crate::support::ALLOWED)
        .args(["--attestations", bad.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("bad.jsonl` line 2"));
}

#[test]
fn trust_roots_lists_the_builtins_and_the_shipped_roots() {
    let out = bin().args(["trust", "roots", "--json"]).output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = doc["builtin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["public-good", "github"]);
    let shipped: Vec<&str> = doc["trustFile"]["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(shipped, ["example-ci", "github", "public-good"]);
    assert_eq!(
        doc["builtin"][1]["counts"]["tlogs"], 0,
        "GitHub's root has no log"
    );
}
