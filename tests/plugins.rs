//! The real binary with misbehaving plugins: every failure is contained, named by its
//! own violation id, and denies; the well-behaved plugin beside them still runs.

use crate::support::{bin, ALLOWED as REQUEST, AT};

fn eval_with_plugins(dir: &str) -> (i32, serde_json::Value) {
    let out = bin()
        .args([
            "eval",
            REQUEST,
            "--at",
            AT,
            "--format",
            "json",
            "--plugins",
            dir,
        ])
        .env(
            "PROMO_POLICY_CACHE_DIR",
            tempfile::tempdir().unwrap().path(),
        )
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), json)
}

#[test]
fn every_misbehaving_fixture_denies_with_its_own_id() {
    let (code, signed) = eval_with_plugins("tests/fixtures/plugins");
    assert_eq!(code, 1);
    let d = &signed["decision"];
    assert_eq!(d["allowed"], false);
    let by_source = |name: &str| -> Vec<String> {
        d["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["source"] == format!("plugin:{name}").as_str())
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    let expected = [
        ("infinite-loop", "plugin.timeout"),
        ("memory-bomb", "plugin.memory_limit"),
        ("wild-access", "plugin.trap"),
        ("stack-overflow", "plugin.trap"),
        ("unreachable", "plugin.trap"),
        ("garbage-json", "plugin.bad_output"),
        ("oversized-output", "plugin.bad_output"),
        ("oob-result", "plugin.bad_output"),
        ("missing-export", "plugin.abi_mismatch"),
        ("wrong-abi", "plugin.abi_mismatch"),
        ("wasi-import", "plugin.abi_mismatch"),
        ("not-wasm", "plugin.load_failed"),
    ];
    for (name, id) in expected {
        assert_eq!(by_source(name), vec![id.to_string()], "fixture `{name}`");
    }
    // The well-behaved plugin ran and passed beside them, and every plugin is listed
    // with its module digest.
    assert!(by_source("well-behaved").is_empty());
    let plugins = d["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), expected.len() + 1);
    let good = plugins
        .iter()
        .find(|p| p["name"] == "well-behaved")
        .unwrap();
    assert_eq!(good["ok"], true);
    assert!(plugins
        .iter()
        .all(|p| p["digest"]["sha256"].as_str().is_some()));
}

#[test]
fn shipped_plugins_run_in_eval_and_pass_the_baseline() {
    let (code, signed) = eval_with_plugins("plugins");
    assert_eq!(code, 0, "{signed}");
    let names: Vec<&str> = signed["decision"]["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["semver-gate", "ticket-format", "vuln-threshold"]);
}

#[test]
fn a_bad_manifest_is_an_error_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("plugin.toml"),
        "name = \"bad\"\nmodule = \"x.wat\"\nenvironments = [\"prod\"]\nmode = \"sometimes\"\n",
    )
    .unwrap();
    let out = bin()
        .args([
            "eval",
            REQUEST,
            "--at",
            AT,
            "--plugins",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plugin.toml") && err.contains("mode"), "{err}");
}
