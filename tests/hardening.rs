//! Hostile inputs through the real binary (issue 12): every one fails closed, with a
//! message naming the place, and none hangs, crashes or reads without bound.

use predicates::prelude::*;
use std::path::{Path, PathBuf};

use crate::support::{bin, bundle_copy, request, write, ALLOWED, AT};

/// A FIFO nobody writes to: opening it for reading blocks forever.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let ok = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", p.display());
    p
}

/// A sparse file of `len` bytes (no disk used).
fn huge(dir: &Path, name: &str, len: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---- item 1: one key is one signer, whatever its encoding ------------------------------

/// The corpus P-256 builder key with its point compressed: another SPKI, the same key.
fn compressed_pem(pem: &str) -> String {
    use p256::pkcs8::DecodePublicKey;
    let pk = p256::PublicKey::from_public_key_pem(pem).unwrap();
    let point = p256::EncodedPoint::from(pk).compress();
    // SEQUENCE { AlgorithmIdentifier{id-ecPublicKey, prime256v1}, BIT STRING point }
    let mut der = vec![0x30, 0x39, 0x30, 0x13, 0x06, 0x07];
    der.extend_from_slice(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08]);
    der.extend_from_slice(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
    der.extend_from_slice(&[0x03, 0x22, 0x00]);
    der.extend_from_slice(point.as_bytes());
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

#[test]
fn a_trust_file_listing_one_key_twice_in_any_encoding_is_refused() {
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    // A key of its own: the corpus P-256 key is in the shipped trust file already.
    let pem = p256::SecretKey::from_slice(&[7u8; 32])
        .unwrap()
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let mut trust: serde_json::Value =
        serde_json::from_slice(&std::fs::read("policies/trust.json").unwrap()).unwrap();
    // Keys only: the keyless roots are paths relative to the shipped file.
    trust
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "keys" || k == "threshold");
    let variants = [
        compressed_pem(&pem),
        pem.replace('\n', "\r\n"),
        format!("\n\n  {}  \n", pem.trim()),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, other) in variants.iter().enumerate() {
        let keys = trust["keys"].as_array_mut().unwrap();
        keys.retain(|k| !k["id"].as_str().unwrap().starts_with("twin"));
        keys.push(serde_json::json!({"id": "twin-a", "publicKey": pem,
            "predicateTypes": ["https://slsa.dev/provenance/v1"]}));
        keys.push(serde_json::json!({"id": "twin-b", "publicKey": other,
            "predicateTypes": ["https://slsa.dev/provenance/v1"]}));
        trust["threshold"] = 2.into();
        let path = write(dir.path(), &format!("trust-{i}.json"), trust.to_string());
        bin()
            .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
            .args(["--trust", s(&path)])
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains(
                "trust file key `twin-b`: same public key as `twin-a`",
            ));
    }
}

// ---- item 10: every file is capped and must be a regular file ------------------------

#[test]
fn verify_refuses_devices_fifos_directories_and_huge_files_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = fifo(dir.path(), "decision.json");
    let big = huge(dir.path(), "big.json", 5 << 30);
    let decision = dir.path().join("decision.dsse.json");
    bin()
        .args([
            "eval",
            ALLOWED,
            "--at",
            AT,
            "--format",
            "json",
            "--out",
            s(&decision),
        ])
        .assert()
        .code(0);
    for (path, want) in [
        (Path::new("/dev/zero"), "not a regular file (device)"),
        (pipe.as_path(), "not a regular file (FIFO)"),
        (dir.path(), "not a regular file (directory)"),
        (big.as_path(), "bytes; the limit is"),
    ] {
        bin()
            .args(["verify", s(path)])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(want));
        // --replay names a request: the same rules, once the decision verified.
        bin()
            .args(["verify", s(&decision), "--replay", s(path)])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(want));
        // --key names a PEM.
        bin()
            .args(["verify", ALLOWED, "--key", s(path)])
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(want.split(" (").next().unwrap())
                    .or(predicate::str::contains("the limit is 65536")),
            );
    }
}

#[test]
fn eval_refuses_non_regular_and_oversized_requests_trust_files_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = fifo(dir.path(), "request.json");
    let big = huge(dir.path(), "big.json", 3 << 30);
    for path in [
        Path::new("/dev/zero"),
        pipe.as_path(),
        dir.path(),
        big.as_path(),
    ] {
        bin()
            .args(["eval", s(path), "--at", AT, "--format", "json"])
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty());
        bin()
            .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
            .args(["--trust", s(path)])
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains("trust file"));
        bin()
            .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
            .args(["--key", s(path)])
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty());
    }
}

#[test]
fn a_batch_directory_with_a_fifo_named_json_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(ALLOWED, dir.path().join("a.json")).unwrap();
    fifo(dir.path(), "b.json");
    let out = bin()
        .args(["eval", "--batch", s(dir.path()), "--at", AT])
        .assert()
        .code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["allowed"], true);
    assert_eq!(lines[1]["allowed"], false);
    assert!(
        lines[1]["error"]["msg"]
            .as_str()
            .unwrap()
            .contains("not a regular file (FIFO)"),
        "{}",
        lines[1]
    );
}

#[test]
fn diff_refuses_a_fifo_request_file_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = fifo(dir.path(), "r.json");
    bin()
        .args(["diff", "--base", "policies", s(&pipe), "--at", AT])
        .assert()
        .code(predicate::ne(0));
}

#[test]
fn a_bundle_with_an_oversized_data_file_is_refused_at_load() {
    let bundle = bundle_copy();
    std::fs::create_dir(bundle.path().join("big")).unwrap();
    huge(bundle.path(), "big/data.json", 9 << 20);
    bin()
        .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
        .args(["--policies", s(bundle.path())])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the limit is 8388608"));
}

#[test]
fn a_plugin_manifest_that_is_a_fifo_or_huge_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    crate::support::copy_dir(Path::new("plugins/vuln-threshold"), &plugins.join("vt"));
    let manifest = plugins.join("vt/plugin.toml");
    std::fs::remove_file(&manifest).unwrap();
    fifo(&plugins.join("vt"), "plugin.toml");
    bin()
        .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
        .args(["--plugins", s(&plugins)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a regular file (FIFO)"));
    std::fs::remove_file(&manifest).unwrap();
    huge(&plugins.join("vt"), "plugin.toml", 2 << 20);
    bin()
        .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
        .args(["--plugins", s(&plugins)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the limit is 1048576"));
}

#[test]
fn a_request_over_the_body_cap_is_refused_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request();
    r["pad"] = "x".repeat(2 << 20).into();
    let p = write(dir.path(), "r.json", r.to_string());
    bin()
        .args(["eval", s(&p), "--at", AT, "--format", "json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the limit is"));
}

// ---- item 2: a config that leaves out a gate's settings does not load -----------------

#[test]
fn a_bundle_whose_config_misses_the_target_block_is_refused_with_file_and_pointer() {
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 4] = [
        ("missing", |e| {
            e.as_object_mut().unwrap().remove("prod");
        }),
        ("empty", |e| e["prod"] = serde_json::json!({})),
        ("recased", |e| {
            let p = e.as_object_mut().unwrap().remove("prod").unwrap();
            e["Prod"] = p;
        }),
        ("setting", |e| {
            e["prod"]["approvals"]
                .as_object_mut()
                .unwrap()
                .remove("minCount");
        }),
    ];
    for (name, edit) in edits {
        let bundle = bundle_copy();
        let path = bundle.path().join("data.json");
        let mut data: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut data["promo"]["config"]["environments"]);
        std::fs::write(&path, data.to_string()).unwrap();
        bin()
            .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
            .args(["--policies", s(bundle.path())])
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains(
                "data file `data.json`: `data.promo.config` at `/environments",
            ))
            .stderr(predicate::str::contains(if name == "setting" {
                "minCount"
            } else {
                ""
            }));
    }
}

// ---- items 4 and 8: what the bundle may not do, however it is written ------------------

fn bundle_with(rule: &str) -> tempfile::TempDir {
    let bundle = bundle_copy();
    write(
        bundle.path(),
        "promo/rules/hostile.rego",
        format!("package promo.rules.hostile\n\n{rule}\n"),
    );
    bundle
}

#[test]
fn refused_builtins_are_refused_through_computed_references_too() {
    for rule in [
        "deny contains {\"id\": \"t\", \"msg\": \"x\"} if time[\"now_ns\"]() > 0",
        "deny contains {\"id\": \"t\", \"msg\": \"x\"} if rand[\"intn\"](\"k\", 10) > 100",
        "deny contains {\"id\": \"t\", \"msg\": sprintf(\"%v\", [uuid[\"rfc4122\"](\"k\")])} if false",
    ] {
        let bundle = bundle_with(rule);
        let out = bin()
            .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
            .args(["--policies", s(bundle.path())])
            .assert()
            .code(predicate::in_iter([1, 2]));
        let code = out.get_output().status.code().unwrap();
        let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        // Refused at load (exit 2), or, where only evaluation can see the call, a deny
        // naming the error: never an allow, never a value from the clock.
        assert!(
            (code == 2 && stderr.contains("is refused"))
                || (code == 1 && stdout.contains("policy.error") && stdout.contains("is refused")),
            "{rule}\nexit {code}\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn recursion_is_refused_at_load_not_a_crash() {
    for rule in [
        "f(x) := y if { y := f(x) }\ndeny contains {\"id\": \"t\", \"msg\": \"x\"} if f(1)",
        "a if b\nb if a\ndeny contains {\"id\": \"t\", \"msg\": \"x\"} if a",
        "g(n) := 0 if n <= 0\ng(n) := g(n - 1) + 1 if n > 0\ndeny contains {\"id\": \"t\", \"msg\": \"x\"} if g(100000000) > 0",
    ] {
        let bundle = bundle_with(rule);
        bin()
            .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
            .args(["--policies", s(bundle.path())])
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains("recursion"));
        // The interpreter path refuses it the same way.
        bin()
            .env("PROMO_POLICY_INTERPRETER", "1")
            .args(["eval", ALLOWED, "--at", AT, "--format", "json"])
            .args(["--policies", s(bundle.path())])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("recursion"));
    }
}

#[test]
fn a_huge_numbers_range_in_a_rule_is_a_policy_error_deny_not_a_gigabyte() {
    for call in [
        "numbers.range(1, 1000000000)",
        "numbers.range_step(1, 9000000000000000000, 2)",
        "numbers.range(-9223372036854775807, 9223372036854775807)",
    ] {
        let bundle = bundle_with(&format!(
            "deny contains {{\"id\": \"t\", \"msg\": \"x\"}} if count({call}) < 0"
        ));
        bin()
            .args(["eval", ALLOWED, "--at", AT, "--format", "text"])
            .args(["--policies", s(bundle.path())])
            .assert()
            .code(1)
            .stdout(predicate::str::contains("policy.error"))
            .stdout(predicate::str::contains("the limit is 100000"));
    }
}

// ---- item 6: times that are not on any calendar --------------------------------------

#[test]
fn impossible_times_in_a_request_are_refused_with_their_pointer() {
    let dir = tempfile::tempdir().unwrap();
    for (field, bad) in [
        ("/requestedAt", "2026-13-40T99:00:00Z"),
        ("/requestedAt", "2026-02-30T10:00:00Z"),
        ("/approvals/0/at", "2026-11-26T25:00:00Z"),
        ("/approvals/0/at", "2026-11-26T10:00:61Z"),
    ] {
        let mut r = request();
        *r.pointer_mut(field).unwrap() = bad.into();
        let p = write(dir.path(), "r.json", r.to_string());
        bin()
            .args(["eval", s(&p), "--at", AT, "--format", "json"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("at `{field}`")))
            .stderr(predicate::str::contains("date-time"));
    }
}

// ---- item 13: request strings cannot drive the terminal ------------------------------

#[test]
fn control_characters_from_a_request_are_escaped_in_text_and_github_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request();
    // The artifact name is printed in the verdict line of both formats.
    r["artifact"]["name"] = "eve\u{1b}[2J\u{1b}[32mALLOWED\nforged\u{202e}txt.exe".into();
    let p = write(dir.path(), "r.json", r.to_string());
    for format in ["text", "github"] {
        let out = bin()
            .args(["eval", s(&p), "--at", AT, "--format", format])
            .assert()
            .code(predicate::in_iter([0, 1]));
        let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        assert!(stdout.contains("eve"), "{stdout}");
        assert!(
            !stdout.contains('\u{1b}'),
            "{format}: raw ESC in {stdout:?}"
        );
        assert!(!stdout.contains('\u{202e}'), "{format}: raw bidi override");
        assert!(
            !stdout.lines().any(|l| l.starts_with("forged")),
            "{format}: forged line"
        );
        assert!(stdout.contains("\\u{1b}"), "{format}: {stdout}");
    }
}

#[test]
fn a_recursive_test_file_is_refused_by_test_not_a_crash() {
    let bundle = bundle_copy();
    write(
        bundle.path(),
        "promo/rules/loop_test.rego",
        "package promo.loop_test\n\nf(x) := f(x)\n\ntest_loops if f(1)\n",
    );
    bin()
        .args(["test", "--policies", s(bundle.path())])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "recursion in its tests is not allowed",
        ))
        .stderr(predicate::str::contains(
            "data.promo.loop_test.f -> data.promo.loop_test.f",
        ));
}
