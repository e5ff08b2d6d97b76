//! Tests of the plugin host against the shipped plugins and the misbehaving fixtures; never run
//! outside `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; splitting it hides the story"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::abi::{pack_result, parse_output, unpack_result};
use super::host::trap_code;
use super::*;
use crate::error_chain::ErrorChain;

/// The repository root: the real crate's manifest dir is the repo; the scratch crate
/// links `tests/` and `plugins/` to the repo's.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixtures_dir() -> PathBuf {
    Path::new(ROOT).join("tests/fixtures/plugins")
}

fn plugins_dir() -> PathBuf {
    Path::new(ROOT).join("plugins")
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "promo-plugin-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// Writes `<dir>/<name>/plugin.toml` and `<dir>/<name>/check.wat`.
    fn plugin(&self, name: &str, manifest_extra: &str, wat: &str) -> PathBuf {
        let d = self.0.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("plugin.toml"),
            format!(
                "name = \"{name}\"\nmodule = \"check.wat\"\nenvironments = [\"*\"]\n{manifest_extra}\n"
            ),
        )
        .unwrap();
        std::fs::write(d.join("check.wat"), wat).unwrap();
        d
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A realistic request (CONTRACT section 1), about 1.3 KB serialized.
fn request() -> Value {
    json!({
        "apiVersion": "promo-policy/v1",
        "kind": "PromotionRequest",
        "id": "req-2026-11-26-0042",
        "requestedAt": "2026-11-26T17:58:00Z",
        "artifact": {
            "name": "registry.example.com/payments/api",
            "digest": { "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" },
            "version": "1.42.0"
        },
        "currentVersion": "1.41.3",
        "from": "staging",
        "to": "prod",
        "change": { "type": "app", "author": "bob", "ticket": "CHG-1234", "emergency": false },
        "attestations": [ { "payloadType": "application/vnd.in-toto+json", "payload": "eyJ0aWNrZXQiOiAiSU5DLTEifQ==", "signatures": [ { "keyid": "k1", "sig": "c2ln" } ] } ],
        "slo": {
            "objective": 0.999, "window": "30d", "errorBudgetRemaining": 0.63,
            "burnRates": { "5m": 0.4, "30m": 0.5, "1h": 0.7, "6h": 0.9, "3d": 1.1 }
        },
        "approvals": [
            { "approver": "alice", "roles": ["release-manager"], "decision": "approved", "at": "2026-11-26T17:30:00Z" },
            { "approver": "carol", "roles": ["release-manager", "sre"], "decision": "approved", "at": "2026-11-26T17:40:00Z" }
        ],
        "checks": [ { "name": "smoke", "status": "passed", "environment": "staging", "at": "2026-11-26T16:00:00Z" } ],
        "deployedToSourceAt": "2026-11-25T09:00:00Z"
    })
}

fn verified() -> Value {
    json!({ "attestations": [], "rejected": [] })
}

fn load(dir: &Path) -> PluginHost {
    PluginHost::load(dir, &HostOptions::default()).unwrap()
}

fn by_name(outcomes: Vec<PluginOutcome>) -> BTreeMap<String, PluginOutcome> {
    outcomes.into_iter().map(|o| (o.name.clone(), o)).collect()
}

fn failure(o: &PluginOutcome) -> &PluginFailure {
    match &o.result {
        Err(f) => f,
        Ok(out) => panic!("plugin `{}` succeeded: {out:?}", o.name),
    }
}

fn output(o: &PluginOutcome) -> &PluginOutput {
    match &o.result {
        Ok(out) => out,
        Err(f) => panic!("plugin `{}` failed: {f:?}", o.name),
    }
}

fn ids(out: &PluginOutput) -> Vec<&str> {
    out.violations.iter().map(|v| v.id.as_str()).collect()
}

// ---- the host ----

#[test]
fn host_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PluginHost>();
}

#[test]
fn missing_directory_means_no_plugins() {
    let host = load(Path::new("/nonexistent/promo-plugins"));
    assert!(host.plugins().is_empty());
    assert!(host.run("prod", &request(), &verified()).is_empty());
}

/// Every misbehaving fixture ends in its own failure kind with a clear message, and
/// the well-behaved plugin on the same host keeps working, run after run.
#[test]
fn misbehaving_fixtures_fail_closed_with_their_own_kind() {
    let host = load(&fixtures_dir());
    let expected: &[(&str, FailureKind, &str)] = &[
        (
            "infinite-loop",
            FailureKind::Timeout,
            "wall-time limit of 50 ms",
        ),
        (
            "memory-bomb",
            FailureKind::MemoryLimit,
            "memory limit exceeded",
        ),
        ("wild-access", FailureKind::Trap, "memory_out_of_bounds"),
        ("stack-overflow", FailureKind::Trap, "stack_overflow"),
        ("unreachable", FailureKind::Trap, "unreachable_code_reached"),
        ("garbage-json", FailureKind::BadOutput, "not JSON"),
        ("oversized-output", FailureKind::BadOutput, "over its cap"),
        ("oob-result", FailureKind::BadOutput, "outside its"),
        (
            "missing-export",
            FailureKind::AbiMismatch,
            "does not export `check`",
        ),
        ("wrong-abi", FailureKind::AbiMismatch, "ABI version 2"),
        (
            "wasi-import",
            FailureKind::AbiMismatch,
            "wasi_snapshot_preview1.fd_write",
        ),
        ("not-wasm", FailureKind::LoadFailed, "does not compile"),
    ];
    for round in 0..3 {
        let outcomes = by_name(host.run("prod", &request(), &verified()));
        assert_eq!(outcomes.len(), expected.len() + 1, "round {round}");
        for (name, kind, phrase) in expected {
            let o = &outcomes[*name];
            assert!(o.required, "{name}");
            let f = failure(o);
            assert_eq!(f.kind, *kind, "{name}: {}", f.message);
            assert!(
                f.message.contains(&format!("`{name}`")),
                "{name}: {}",
                f.message
            );
            assert!(f.message.contains(phrase), "{name}: {}", f.message);
        }
        let good = output(&outcomes["well-behaved"]);
        assert!(good.ok);
        assert_eq!(good.facts, json!({"fixture": "well-behaved"}));
        // Digests are of the module files, failed or not (not-wasm's bytes are readable).
        assert!(
            outcomes.values().all(|o| o.digest.is_some()),
            "round {round}"
        );
    }
}

#[test]
fn failure_kinds_have_distinct_violation_ids() {
    let kinds = [
        FailureKind::Timeout,
        FailureKind::MemoryLimit,
        FailureKind::Trap,
        FailureKind::BadOutput,
        FailureKind::AbiMismatch,
        FailureKind::LoadFailed,
    ];
    let ids: std::collections::BTreeSet<_> = kinds.iter().map(|k| k.violation_id()).collect();
    assert_eq!(ids.len(), kinds.len());
    assert!(ids.iter().all(|id| id.starts_with("plugin.")));
    assert_eq!(
        FailureKind::MemoryLimit.violation_id(),
        "plugin.memory_limit"
    );
}

#[test]
fn load_failures_are_listed_with_the_plugin() {
    let host = load(&fixtures_dir());
    let infos: BTreeMap<_, _> = host
        .plugins()
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    assert_eq!(
        infos["missing-export"].load_error.as_ref().map(|f| f.kind),
        Some(FailureKind::AbiMismatch)
    );
    assert_eq!(
        infos["not-wasm"].load_error.as_ref().map(|f| f.kind),
        Some(FailureKind::LoadFailed)
    );
    assert!(infos["well-behaved"].load_error.is_none());
    assert_eq!(
        infos["infinite-loop"].limits.wall_time,
        Duration::from_millis(50)
    );
    assert_eq!(infos["memory-bomb"].limits.memory_bytes, 16 << 20);
    // Names come back sorted.
    let names: Vec<_> = host.plugins().iter().map(|p| p.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn two_threads_share_one_host() {
    let host = std::sync::Arc::new(load(&plugins_dir()));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let host = host.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let outs = host.run("prod", &request(), &verified());
                    assert_eq!(outs.len(), 3);
                    assert!(outs.iter().all(|o| o.result.is_ok()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn environments_select_plugins_and_mode_sets_required() {
    let host = load(&plugins_dir());
    assert!(host.run("dev", &request(), &verified()).is_empty());
    let staging = by_name(host.run("staging", &request(), &verified()));
    assert_eq!(staging.len(), 3);
    assert!(staging["ticket-format"].required);
    assert!(!staging["vuln-threshold"].required, "advisory in staging");
    let prod = by_name(host.run("prod", &request(), &verified()));
    assert!(prod["vuln-threshold"].required, "required_in prod");
    // run_plugin ignores the environment list.
    let dev = host
        .run_plugin("ticket-format", "dev", &request(), &verified())
        .unwrap();
    assert!(output(&dev).ok);
    assert!(host
        .run_plugin("nope", "dev", &request(), &verified())
        .is_none());
}

#[test]
fn fuel_budget_stops_a_busy_plugin() {
    let dir = TempDir::new("fuel");
    dir.plugin(
        "burner",
        "[limits]\nfuel = 100000\nwall_ms = 10000",
        r#"(module
          (memory (export "memory") 1)
          (func (export "alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "dealloc") (param i32 i32))
          (func (export "promo_abi_version") (result i32) (i32.const 1))
          (func (export "check") (param i32 i32) (result i64)
            (loop $l (br $l)) (unreachable)))"#,
    );
    let host = load(&dir.0);
    assert!(host.fuel_enabled());
    let outs = host.run("prod", &request(), &verified());
    let f = failure(&outs[0]);
    assert_eq!(f.kind, FailureKind::Timeout);
    // Fuel, not the 10 s wall clock, stopped it: the message says which.
    assert!(
        f.message.contains("ran out of fuel (budget 100000)"),
        "{}",
        f.message
    );
}

const ABI_PRELUDE: &str = r#"
  (func (export "dealloc") (param i32 i32))
  (func (export "promo_abi_version") (result i32) (i32.const 1))"#;

fn returning(result: &str) -> String {
    let escaped = result.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"(module
          (memory (export "memory") 1)
          (func (export "alloc") (param i32) (result i32) (i32.const 4096))
          {ABI_PRELUDE}
          (data (i32.const 16) "{escaped}")
          (func (export "check") (param i32 i32) (result i64)
            (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {len}))))"#,
        len = result.len()
    )
}

#[test]
fn results_are_validated_against_the_abi() {
    let dir = TempDir::new("results");
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("minimal", r#"{"ok":true}"#, None),
        (
            "with-extra",
            r#"{"ok":true,"score":3,"facts":{"a":1}}"#,
            None,
        ),
        ("ok-false-bare", r#"{"ok":false}"#, None),
        ("no-ok", r#"{"violations":[]}"#, Some("without `ok`")),
        (
            "ok-string",
            r#"{"ok":"yes"}"#,
            Some("`ok` is not a boolean"),
        ),
        ("array", r#"[1,2]"#, Some("not a JSON object")),
        (
            "viol-no-id",
            r#"{"ok":false,"violations":[{"msg":"x"}]}"#,
            Some("`violations[0].id`"),
        ),
        (
            "viol-not-array",
            r#"{"ok":false,"violations":{}}"#,
            Some("`violations` that is not an array"),
        ),
        (
            "facts-array",
            r#"{"ok":true,"facts":[]}"#,
            Some("`facts` that is not an object"),
        ),
        (
            "ok-with-violations",
            r#"{"ok":true,"violations":[{"id":"a","msg":"b"}]}"#,
            Some("`ok: true` together with 1"),
        ),
    ];
    for (name, result, _) in cases {
        dir.plugin(name, "", &returning(result));
    }
    let host = load(&dir.0);
    let outs = by_name(host.run("prod", &request(), &verified()));
    for (name, _, err) in cases {
        match err {
            None => {
                let out = output(&outs[*name]);
                assert!(out.facts.is_object(), "{name}");
            }
            Some(phrase) => {
                let f = failure(&outs[*name]);
                assert_eq!(f.kind, FailureKind::BadOutput, "{name}");
                assert!(f.message.contains(phrase), "{name}: {}", f.message);
            }
        }
    }
    let bare = output(&outs["ok-false-bare"]);
    assert!(
        !bare.ok && bare.violations.is_empty(),
        "ok:false without violations still fails, upstream"
    );
}

#[test]
fn guest_pointers_and_caps_are_checked() {
    let dir = TempDir::new("pointers");
    // alloc hands back a pointer at the very end of memory: no room for the input.
    dir.plugin(
        "alloc-oob",
        "",
        &format!(
            r#"(module (memory (export "memory") 1)
              (func (export "alloc") (param i32) (result i32) (i32.const 65530))
              {ABI_PRELUDE}
              (func (export "check") (param i32 i32) (result i64) (i64.const 0)))"#
        ),
    );
    // Memory declared bigger than the cap: refused while instantiating.
    dir.plugin(
        "big-initial-memory",
        "[limits]\nmemory_mb = 16",
        &format!(
            r#"(module (memory (export "memory") 512)
              (func (export "alloc") (param i32) (result i32) (i32.const 1024))
              {ABI_PRELUDE}
              (func (export "check") (param i32 i32) (result i64) (i64.const 0)))"#
        ),
    );
    // Traps while starting (start function) and in _initialize.
    dir.plugin(
        "init-trap",
        "",
        &format!(
            r#"(module (memory (export "memory") 1)
              (func (export "_initialize") (unreachable))
              (func (export "alloc") (param i32) (result i32) (i32.const 1024))
              {ABI_PRELUDE}
              (func (export "check") (param i32 i32) (result i64) (i64.const 0)))"#
        ),
    );
    // Input larger than its 1 KiB cap.
    dir.plugin(
        "small-input-cap",
        "[limits]\ninput_kb = 1",
        &returning(r#"{"ok":true}"#),
    );
    // Result just over a 1 KiB output cap.
    dir.plugin(
        "small-output-cap",
        "[limits]\noutput_kb = 1",
        &format!(
            r#"(module (memory (export "memory") 1)
              (func (export "alloc") (param i32) (result i32) (i32.const 4096))
              {ABI_PRELUDE}
              (func (export "check") (param i32 i32) (result i64)
                (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 1025))))"#
        ),
    );
    // A wrong export signature.
    dir.plugin(
        "bad-signature",
        "",
        &format!(
            r#"(module (memory (export "memory") 1)
              (func (export "alloc") (param i32) (result i32) (i32.const 1024))
              {ABI_PRELUDE}
              (func (export "check") (param i32 i32) (result i32) (i32.const 0)))"#
        ),
    );
    // A shared memory (bypasses resource limiters) or a second memory: never loads.
    dir.plugin(
        "shared-memory",
        "",
        &format!(
            r#"(module (memory (export "memory") 1 1 shared)
              (func (export "alloc") (param i32) (result i32) (i32.const 1024))
              {ABI_PRELUDE}
              (func (export "check") (param i32 i32) (result i64) (i64.const 0)))"#
        ),
    );
    dir.plugin(
        "two-memories",
        "",
        &format!(
            r#"(module (memory (export "memory") 1) (memory $other 1)
              (func (export "alloc") (param i32) (result i32) (i32.const 1024))
              {ABI_PRELUDE}
              (func (export "check") (param i32 i32) (result i64) (i64.const 0)))"#
        ),
    );
    let host = load(&dir.0);
    for name in ["shared-memory", "two-memories"] {
        let info = host.plugins().iter().find(|p| p.name == name).unwrap();
        assert!(info.load_error.is_some(), "{name} loaded");
    }
    let outs = by_name(host.run("prod", &request(), &verified()));
    let expect = [
        ("alloc-oob", FailureKind::BadOutput, "not a writable region"),
        (
            "big-initial-memory",
            FailureKind::MemoryLimit,
            "the cap is 16 MiB",
        ),
        ("init-trap", FailureKind::Trap, "in `_initialize`"),
        (
            "small-input-cap",
            FailureKind::MemoryLimit,
            "exceeds the input cap of 1024 bytes",
        ),
        (
            "small-output-cap",
            FailureKind::BadOutput,
            "1025 bytes, over its cap of 1024",
        ),
        ("bad-signature", FailureKind::AbiMismatch, "wrong type"),
    ];
    for (name, kind, phrase) in expect {
        let f = failure(&outs[name]);
        assert_eq!(f.kind, kind, "{name}: {}", f.message);
        assert!(f.message.contains(phrase), "{name}: {}", f.message);
    }
}

#[test]
fn compiled_modules_are_cached_and_corrupt_entries_recompiled() {
    let cache = TempDir::new("cache");
    let options = HostOptions {
        cache_dir: Some(cache.0.clone()),
        ..HostOptions::default()
    };
    let first = PluginHost::load(&plugins_dir(), &options).unwrap();
    assert!(first.plugins().iter().all(|p| !p.from_cache));
    let second = PluginHost::load(&plugins_dir(), &options).unwrap();
    assert!(second.plugins().iter().all(|p| p.from_cache));
    assert!(second
        .run("prod", &request(), &verified())
        .iter()
        .all(|o| o.result.is_ok()));

    // Corrupt every entry differently: a flipped byte deep in the artifact, a
    // truncation, garbage. Each must be detected, removed and recompiled.
    let mut entries: Vec<_> = std::fs::read_dir(&cache.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 3);
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&entries[0], &bytes).unwrap();
    let bytes = std::fs::read(&entries[1]).unwrap();
    std::fs::write(&entries[1], &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(&entries[2], b"not a cache entry").unwrap();

    let third = PluginHost::load(&plugins_dir(), &options).unwrap();
    assert!(third
        .plugins()
        .iter()
        .all(|p| !p.from_cache && p.load_error.is_none()));
    assert!(third
        .run("prod", &request(), &verified())
        .iter()
        .all(|o| o.result.is_ok()));
    let fourth = PluginHost::load(&plugins_dir(), &options).unwrap();
    assert!(
        fourth.plugins().iter().all(|p| p.from_cache),
        "entries were rewritten"
    );
}

#[test]
fn dropping_the_host_stops_its_ticker() {
    // The ticker holds only a weak engine reference and is joined on drop; if it were
    // not, this would leak one thread per iteration (not observable portably, but a
    // hang in Drop would be).
    for _ in 0..20 {
        let host = load(&plugins_dir());
        assert!(host
            .run("prod", &request(), &verified())
            .iter()
            .all(|o| o.result.is_ok()));
        drop(host);
    }
}

// ---- manifests ----

fn manifest_err(text: &str) -> String {
    let path = Path::new("/x/plugins/p/plugin.toml");
    ErrorChain(&Manifest::parse(path, text).unwrap_err()).to_string()
}

#[test]
fn manifest_errors_name_the_file_and_the_field() {
    let base = "name = \"p\"\nmodule = \"p.wasm\"\nenvironments = [\"prod\"]\n";
    let cases: &[(String, &str)] = &[
        (
            format!("{base}enviroments = []"),
            "field `enviroments` is not a manifest field",
        ),
        (
            "module = \"p.wasm\"\nenvironments = [\"prod\"]".into(),
            "field `name` is missing",
        ),
        (
            "name = \"P!\"\nmodule = \"p.wasm\"\nenvironments = [\"prod\"]".into(),
            "field `name` is `P!`",
        ),
        (
            "name = \"p\"\nenvironments = [\"prod\"]".into(),
            "field `module` is missing",
        ),
        (
            "name = \"p\"\nmodule = \"p.so\"\nenvironments = [\"prod\"]".into(),
            "must end in `.wasm` or `.wat`",
        ),
        (
            "name = \"p\"\nmodule = \"../p.wasm\"\nenvironments = [\"prod\"]".into(),
            "inside the plugin's directory",
        ),
        (
            "name = \"p\"\nmodule = \"/p.wasm\"\nenvironments = [\"prod\"]".into(),
            "inside the plugin's directory",
        ),
        (
            "name = \"p\"\nmodule = \"p.wasm\"".into(),
            "field `environments` is missing",
        ),
        (
            "name = \"p\"\nmodule = \"p.wasm\"\nenvironments = []".into(),
            "at least one",
        ),
        (
            "name = \"p\"\nmodule = \"p.wasm\"\nenvironments = [\"*\", \"prod\"]".into(),
            "`*` with other",
        ),
        (
            "name = \"p\"\nmodule = \"p.wasm\"\nenvironments = [\"prod\", \"prod\"]".into(),
            "lists `prod` twice",
        ),
        (
            "name = \"p\"\nmodule = \"p.wasm\"\nenvironments = \"prod\"".into(),
            "must be an array",
        ),
        (
            format!("{base}mode = \"strict\""),
            "field `mode` is `strict`",
        ),
        (
            format!("{base}required_in = [\"prod\"]"),
            "only makes sense with `mode = \"advisory\"`",
        ),
        (
            format!("{base}mode = \"advisory\"\nrequired_in = [\"staging\"]"),
            "names `staging`, which is not in `environments`",
        ),
        (format!("{base}abi = 2"), "field `abi` is `2`"),
        (
            format!("{base}config = 3"),
            "field `config` must be a table",
        ),
        (
            format!("{base}[config]\nx = nan"),
            "field `config.x` is `NaN`",
        ),
        (
            format!("{base}[limits]\nwall_ms = 0"),
            "field `limits.wall_ms` is `0`",
        ),
        (
            format!("{base}[limits]\nwall_ms = 60000"),
            "between 1 and 10000",
        ),
        (
            format!("{base}[limits]\nmemory_mb = 4096"),
            "field `limits.memory_mb`",
        ),
        (
            format!("{base}[limits]\nwall = 5"),
            "field `limits.wall` is not a limit",
        ),
        (
            format!("{base}[limits]\nfuel = \"lots\""),
            "field `limits.fuel` must be an integer",
        ),
        (
            "name = \"p\"\nmodule = ".into(),
            "cannot parse plugin manifest `/x/plugins/p/plugin.toml`",
        ),
    ];
    for (text, phrase) in cases {
        let err = manifest_err(text);
        assert!(err.contains("/x/plugins/p/plugin.toml"), "{err}");
        assert!(err.contains(phrase), "expected {phrase:?} in: {err}");
    }
}

#[test]
fn manifest_fields_parse() {
    let m = Manifest::parse(
        Path::new("/x/plugins/p/plugin.toml"),
        r#"
        name = "p"
        description = "d"
        module = "sub/p.wat"
        abi = 1
        environments = ["staging", "prod"]
        mode = "advisory"
        required_in = ["prod"]
        [config]
        prefixes = ["A-"]
        nested = { when = 1979-05-27T07:32:00Z, ratio = 0.5 }
        [limits]
        wall_ms = 250
        memory_mb = 8
        fuel = 1_000_000
        output_kb = 2
        input_kb = 3
        "#,
    )
    .unwrap();
    assert_eq!(m.module, Path::new("/x/plugins/p/sub/p.wat"));
    assert_eq!(m.mode, Mode::Advisory);
    assert_eq!(m.required_in, vec!["prod"]);
    assert_eq!(
        m.config,
        json!({"nested": {"ratio": 0.5, "when": "1979-05-27T07:32:00Z"}, "prefixes": ["A-"]})
    );
    let limits = m.limits.apply(&PluginLimits::default());
    assert_eq!(limits.wall_time, Duration::from_millis(250));
    assert_eq!(limits.memory_bytes, 8 << 20);
    assert_eq!(limits.fuel, Some(1_000_000));
    assert_eq!(limits.max_output_bytes, 2048);
    assert_eq!(limits.max_input_bytes, 3072);
    // Defaults: required, empty config, host limits.
    let m = Manifest::parse(
        Path::new("/x/p/plugin.toml"),
        "name = \"p\"\nmodule = \"p.wasm\"\nenvironments = [\"*\"]",
    )
    .unwrap();
    assert_eq!(m.mode, Mode::Required);
    assert_eq!(m.config, json!({}));
    assert_eq!(
        m.limits.apply(&PluginLimits::default()),
        PluginLimits::default()
    );
}

#[test]
fn directory_level_errors() {
    let dir = TempDir::new("dirs");
    // A directory without a manifest (a shared SDK) is skipped.
    std::fs::create_dir_all(dir.0.join("sdk")).unwrap();
    assert!(load(&dir.0).plugins().is_empty());

    let named = dir.plugin("right", "", &returning(r#"{"ok":true}"#));
    std::fs::rename(&named, dir.0.join("wrong")).unwrap();
    let err = PluginHost::load(&dir.0, &HostOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("field `name` is `right`, but the plugin's directory is `wrong`"),
        "{err}"
    );
    std::fs::remove_dir_all(dir.0.join("wrong")).unwrap();

    std::fs::create_dir_all(dir.0.join("yaml")).unwrap();
    std::fs::write(dir.0.join("yaml/plugin.yaml"), "name: yaml").unwrap();
    let err = PluginHost::load(&dir.0, &HostOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("YAML manifests are not supported"), "{err}");
    std::fs::remove_dir_all(dir.0.join("yaml")).unwrap();

    // A missing module file is a failed plugin, not a load error.
    let d = dir.plugin("gone", "", "");
    std::fs::remove_file(d.join("check.wat")).unwrap();
    let host = load(&dir.0);
    let f = host.plugins()[0].load_error.clone().unwrap();
    assert_eq!(f.kind, FailureKind::LoadFailed);
    assert!(f.message.contains("cannot read module"), "{}", f.message);
    assert_eq!(host.plugins()[0].digest, None);
}

#[test]
fn load_errors_keep_their_cause() {
    let dir = TempDir::new("causes");
    // A manifest that is a directory: the reader's refusal is the source and names the
    // file; the chain says it once.
    std::fs::create_dir_all(dir.0.join("p/plugin.toml")).unwrap();
    let err = PluginHost::load(&dir.0, &HostOptions::default()).unwrap_err();
    let read =
        std::error::Error::source(&err).and_then(|s| s.downcast_ref::<crate::fsio::ReadError>());
    assert!(
        matches!(read, Some(crate::fsio::ReadError::NotRegular { .. })),
        "{err:?}"
    );
    let chain = ErrorChain(&err).to_string();
    assert!(
        chain.starts_with("cannot read plugin manifest: `")
            && chain.ends_with("p/plugin.toml` is not a regular file (directory)"),
        "{chain}"
    );

    // A plugin directory that is a file: the I/O error is the source.
    let file = dir.0.join("p/plugins-file");
    std::fs::write(&file, "").unwrap();
    let err = PluginHost::load(&file, &HostOptions::default()).unwrap_err();
    let io = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<std::io::Error>());
    assert!(io.is_some(), "{err:?}");
    assert_eq!(
        ErrorChain(&err).to_string(),
        format!("{err}: {}", io.unwrap())
    );

    // Bad TOML: the parser's error, with its line and column, is the source.
    let err = Manifest::parse(Path::new("/x/p/plugin.toml"), "name = ").unwrap_err();
    let toml = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<toml::de::Error>());
    assert!(toml.is_some(), "{err:?}");
    let chain = ErrorChain(&err).to_string();
    assert!(
        chain.starts_with(
            "cannot parse plugin manifest `/x/p/plugin.toml`: TOML parse error at line 1"
        ),
        "{chain}"
    );
    assert!(!chain.ends_with('\n'), "{chain:?}");
}

// ---- ABI helpers ----

#[test]
fn result_packing_round_trips() {
    for (p, l) in [
        (0u32, 0u32),
        (16, 62),
        (u32::MAX, u32::MAX),
        (0x8000_0000, 1),
    ] {
        assert_eq!(unpack_result(pack_result(p, l)), (p, l));
    }
    assert_eq!(unpack_result(-1), (u32::MAX, u32::MAX));
}

#[test]
fn output_parsing_defaults() {
    let out = parse_output(br#"{"ok":true}"#).unwrap();
    assert_eq!(out.violations, vec![]);
    assert_eq!(out.facts, json!({}));
    // Not JSON: the parser's error is the source, and said once in the chain.
    let err = parse_output(b"{\"ok\": tru").unwrap_err();
    let json = std::error::Error::source(&err).unwrap();
    assert!(json.downcast_ref::<serde_json::Error>().is_some(), "{json}");
    assert_eq!(
        ErrorChain(&err).to_string(),
        format!("returned a result that is not JSON: {json}")
    );
    assert!(parse_output(b"").is_err());
    assert!(parse_output(br#"{"ok":true,"violations":null}"#).is_err());
    // Deeply nested facts hit serde_json's recursion limit: bad output, not a crash.
    let deep = format!(
        r#"{{"ok":true,"facts":{{"a":{}1{}}}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    assert!(parse_output(deep.as_bytes()).is_err());
}

#[test]
fn trap_codes_are_snake_case() {
    assert_eq!(trap_code(&wasmtime::Trap::StackOverflow), "stack_overflow");
    assert_eq!(
        trap_code(&wasmtime::Trap::UnreachableCodeReached),
        "unreachable_code_reached"
    );
}

// ---- ticket-format ----

fn ticket_request(change: Value) -> Value {
    let mut r = request();
    r["change"] = change;
    r
}

#[test]
fn ticket_format_plugin() {
    let host = load(&plugins_dir());
    let run = |env: &str, req: &Value| {
        let o = host
            .run_plugin("ticket-format", env, req, &verified())
            .unwrap();
        output(&o).clone()
    };
    let pass: &[(&str, Value)] = &[
        ("prod", json!({"ticket": "CHG-1234"})),
        ("staging", json!({"ticket": "INC-7"})),
        ("staging", json!({"ticket": "CHG-0001", "type": "app"})),
        // key order and whitespace do not matter
        (
            "prod",
            json!({"emergency": false, "author": "x", "ticket": "CHG-42"}),
        ),
    ];
    for (env, change) in pass {
        let out = run(env, &ticket_request(change.clone()));
        assert!(out.ok, "{env} {change}: {out:?}");
        assert_eq!(out.facts["ticket"], change["ticket"]);
    }
    let out = run("prod", &ticket_request(json!({"ticket": "CHG-1234"})));
    assert_eq!(out.facts, json!({"ticket": "CHG-1234", "prefix": "CHG-"}));

    let fail: &[(&str, Value, &str)] = &[
        ("prod", json!({"ticket": "INC-7"}), "ticket.format"), // prod allows CHG- only
        ("staging", json!({"ticket": "CHG-"}), "ticket.format"),
        ("staging", json!({"ticket": "CHG-12a"}), "ticket.format"),
        ("staging", json!({"ticket": "chg-12"}), "ticket.format"),
        ("staging", json!({"ticket": "XCHG-12"}), "ticket.format"),
        ("staging", json!({"ticket": " CHG-12"}), "ticket.format"),
        ("staging", json!({"ticket": "CHG-1\"2"}), "ticket.format"),
        ("staging", json!({"ticket": ""}), "ticket.missing"),
        ("staging", json!({"ticket": null}), "ticket.missing"),
        ("staging", json!({"ticket": 1234}), "ticket.missing"),
        ("staging", json!({"type": "app"}), "ticket.missing"),
        // a "ticket" elsewhere (nested deeper, or as a string value) is not change.ticket
        (
            "staging",
            json!({"meta": {"ticket": "CHG-1"}, "note": "\"ticket\": \"CHG-2\""}),
            "ticket.missing",
        ),
    ];
    for (env, change, id) in fail {
        let out = run(env, &ticket_request(change.clone()));
        assert!(!out.ok, "{env} {change}");
        assert_eq!(ids(&out), vec![*id], "{env} {change}: {out:?}");
    }
    let out = run("prod", &ticket_request(json!({"ticket": "INC-7"})));
    assert_eq!(
        out.violations[0].msg,
        "change ticket `INC-7` does not match an allowed prefix followed by digits (allowed: `CHG-`)"
    );
    let out = run("staging", &ticket_request(json!({"ticket": "X-1"})));
    assert!(
        out.violations[0].msg.ends_with("(allowed: `CHG-`, `INC-`)"),
        "{out:?}"
    );
    let out = run("staging", &ticket_request(json!({})));
    assert_eq!(
        out.violations[0].msg,
        "a change ticket (request.change.ticket) is required to promote to `staging`"
    );
    // No change object at all, and a ticket only at the top level.
    let mut r = request();
    r.as_object_mut().unwrap().remove("change");
    r["ticket"] = json!("CHG-1");
    assert_eq!(ids(&run("prod", &r)), vec!["ticket.missing"]);
    // A ticket with escapes echoes back as valid JSON.
    let out = run(
        "staging",
        &ticket_request(json!({"ticket": "tab\there \u{1F600} \\"})),
    );
    assert_eq!(ids(&out), vec!["ticket.format"]);
    assert_eq!(out.facts["ticket"], json!("tab\there \u{1F600} \\"));
}

#[test]
fn ticket_format_config_errors_fail_closed() {
    let src = plugins_dir().join("ticket-format/ticket-format.wat");
    let wat = std::fs::read_to_string(src).unwrap();
    let dir = TempDir::new("ticket");
    let configs = [
        ("no-config", ""),
        ("empty-list", "[config]\nprefixes = []"),
        ("not-strings", "[config]\nprefixes = [1, 2]"),
        ("not-a-list", "[config]\nprefixes = \"CHG-\""),
    ];
    for (name, cfg) in configs {
        dir.plugin(name, cfg, &wat);
    }
    dir.plugin("env-only", "[config.by_environment]\nprod = [\"P-\"]", &wat);
    let host = load(&dir.0);
    let outs = by_name(host.run(
        "prod",
        &ticket_request(json!({"ticket": "P-1"})),
        &verified(),
    ));
    for (name, _) in configs {
        assert_eq!(ids(output(&outs[name])), vec!["ticket.config"], "{name}");
    }
    assert!(output(&outs["env-only"]).ok);
    let staging = by_name(host.run(
        "staging",
        &ticket_request(json!({"ticket": "P-1"})),
        &verified(),
    ));
    assert_eq!(ids(output(&staging["env-only"])), vec!["ticket.config"]);
}

// ---- semver-gate ----

fn semver_run(
    host: &PluginHost,
    env: &str,
    version: Option<Value>,
    current: Option<Value>,
) -> PluginOutput {
    let mut r = request();
    match version {
        Some(v) => r["artifact"]["version"] = v,
        None => {
            r["artifact"].as_object_mut().unwrap().remove("version");
        }
    }
    match current {
        Some(c) => r["currentVersion"] = c,
        None => {
            r.as_object_mut().unwrap().remove("currentVersion");
        }
    }
    let o = host
        .run_plugin("semver-gate", env, &r, &verified())
        .unwrap();
    output(&o).clone()
}

#[test]
fn semver_gate_validates_versions() {
    let host = load(&plugins_dir());
    let valid = [
        "0.0.0",
        "1.2.3",
        "10.20.30",
        "1.1.2-prerelease+meta",
        "1.1.2+meta",
        "1.1.2+meta-valid",
        "1.0.0-alpha",
        "1.0.0-alpha.beta",
        "1.0.0-alpha.1",
        "1.0.0-alpha0.valid",
        "1.0.0-rc.1+build.1",
        "2.0.0-rc.1+build.123",
        "1.2.3-beta",
        "10.2.3-DEV-SNAPSHOT",
        "1.2.3-SNAPSHOT-123",
        "2.0.0+build.1848",
        "2.0.1-alpha.1227",
        "1.0.0-0A.is.legal",
        "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
        "99999999999999999999999.999999999999999999.99999999999999999",
    ];
    for v in valid {
        let out = semver_run(&host, "staging", Some(json!(v)), None);
        assert!(out.ok, "{v} should be valid: {out:?}");
    }
    let invalid = [
        "1",
        "1.2",
        "1.2.3-0123",
        "1.2.3-0123.0123",
        "1.1.2+.123",
        "+invalid",
        "-invalid",
        "alpha",
        "1.0.0-alpha..1",
        "01.1.1",
        "1.01.1",
        "1.1.01",
        "1.2.3.DEV",
        "1.2-SNAPSHOT",
        "v1.2.3",
        "1.2.3-",
        "1.2.3+",
        "1.2.3 ",
        " 1.2.3",
        "1.2.3-rc.1+b+c",
        "1.2.3-\u{e9}",
        "1.2.3\\n",
    ];
    for v in invalid {
        let out = semver_run(&host, "staging", Some(json!(v)), None);
        assert_eq!(ids(&out), vec!["semver.invalid"], "{v}: {out:?}");
    }
    assert_eq!(
        ids(&semver_run(&host, "prod", None, None)),
        vec!["semver.missing"]
    );
    assert_eq!(
        ids(&semver_run(&host, "prod", Some(json!(142)), None)),
        vec!["semver.missing"]
    );
    assert_eq!(
        ids(&semver_run(&host, "prod", Some(json!("")), None)),
        vec!["semver.missing"]
    );
}

#[test]
fn semver_gate_orders_by_precedence() {
    let host = load(&plugins_dir());
    // semver.org section 11, in increasing precedence.
    let ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "1.9.0",
        "1.10.0",
        "2.0.0",
        "10.0.0",
        "100000000000000000000.0.0",
    ];
    for (i, newer) in ordered.iter().enumerate() {
        for (j, older) in ordered.iter().enumerate() {
            let out = semver_run(&host, "staging", Some(json!(newer)), Some(json!(older)));
            let expected = match i.cmp(&j) {
                std::cmp::Ordering::Greater => "newer",
                std::cmp::Ordering::Equal => "same",
                std::cmp::Ordering::Less => "older",
            };
            assert_eq!(
                out.facts["comparison"],
                json!(expected),
                "{newer} vs {older}"
            );
            assert_eq!(out.ok, i > j, "{newer} vs {older}: {out:?}");
        }
    }
    // Build metadata does not count.
    let out = semver_run(
        &host,
        "staging",
        Some(json!("1.2.3+b")),
        Some(json!("1.2.3+a")),
    );
    assert_eq!(ids(&out), vec!["semver.not_newer"]);
    assert_eq!(
        out.violations[0].msg,
        "version `1.2.3+b` has the same precedence as `1.2.3+a`, which is running in `staging`; a promotion must move to a strictly newer version"
    );
}

#[test]
fn semver_gate_current_version_and_prereleases() {
    let host = load(&plugins_dir());
    let out = semver_run(&host, "prod", Some(json!("1.42.0")), Some(json!("1.41.3")));
    assert!(out.ok);
    assert_eq!(
        out.facts,
        json!({"version": "1.42.0", "prerelease": false, "currentVersion": "1.41.3", "comparison": "newer"})
    );
    // Absent or null currentVersion: a first deployment, nothing to compare.
    assert!(semver_run(&host, "prod", Some(json!("0.1.0")), None).ok);
    assert!(semver_run(&host, "prod", Some(json!("0.1.0")), Some(Value::Null)).ok);
    let out = semver_run(&host, "prod", Some(json!("1.0.0")), Some(json!("latest")));
    assert_eq!(ids(&out), vec!["semver.current_invalid"]);
    let out = semver_run(&host, "prod", Some(json!("1.0.0")), Some(json!(3)));
    assert_eq!(ids(&out), vec!["semver.current_invalid"]);
    // Pre-releases: fine in staging, never in prod.
    assert!(
        semver_run(
            &host,
            "staging",
            Some(json!("1.43.0-rc.1")),
            Some(json!("1.42.0"))
        )
        .ok
    );
    let out = semver_run(
        &host,
        "prod",
        Some(json!("1.43.0-rc.1")),
        Some(json!("1.42.0")),
    );
    assert_eq!(ids(&out), vec!["semver.prerelease"]);
    assert_eq!(
        out.violations[0].msg,
        "pre-release `1.43.0-rc.1` may not be promoted to `prod`; promote a release version"
    );
    // Both at once.
    let out = semver_run(
        &host,
        "prod",
        Some(json!("1.0.0-rc.1")),
        Some(json!("1.0.0")),
    );
    assert_eq!(ids(&out), vec!["semver.prerelease", "semver.not_newer"]);
    // A very long bad version is clipped in the message, and the result stays valid JSON.
    let long = format!("1.2.3-{}\u{e9}", "a".repeat(5000));
    let out = semver_run(&host, "prod", Some(json!(long)), None);
    assert_eq!(ids(&out), vec!["semver.invalid"]);
    assert!(
        out.violations[0].msg.len() < 400,
        "{}",
        out.violations[0].msg.len()
    );
}

// ---- vuln-threshold ----

fn scan(predicate_type: &str, subject_matches: bool, result: Value) -> Value {
    json!({
        "keyid": "scanner-2026",
        "signer": "ci-scanner",
        "predicateType": predicate_type,
        "subject": [{"name": "registry.example.com/payments/api", "digest": {"sha256": "9f86"}}],
        "subjectMatches": subject_matches,
        "predicate": {
            "invocation": {"uri": "https://ci.example.com/run/1"},
            "scanner": {"uri": "pkg:github/aquasecurity/trivy@v0.50.0", "version": "0.50.0",
                         "db": {"uri": "", "version": "2"}, "result": result},
            "metadata": {"scanStartedOn": "2026-11-26T10:00:00Z", "scanFinishedOn": "2026-11-26T10:01:00Z"}
        }
    })
}

const COSIGN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
const INTOTO: &str = "https://in-toto.io/attestation/vulns/v0.1";

fn trivy(severities: &[&str]) -> Value {
    let vulns: Vec<Value> = severities
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"VulnerabilityID": format!("CVE-2026-{i}"), "Severity": s}))
        .collect();
    json!({"SchemaVersion": 2, "ArtifactName": "api", "Results": [
        {"Target": "api (debian 12)", "Vulnerabilities": vulns},
        {"Target": "app/go.mod"}
    ]})
}

fn vuln_run(host: &PluginHost, env: &str, attestations: Vec<Value>) -> PluginOutput {
    let v = json!({"attestations": attestations, "rejected": []});
    let o = host
        .run_plugin("vuln-threshold", env, &request(), &v)
        .unwrap();
    output(&o).clone()
}

#[test]
fn vuln_threshold_reads_the_documented_shapes() {
    let host = load(&plugins_dir());
    let cases: Vec<(&str, Value, u64)> = vec![
        (
            "trivy clean",
            scan(COSIGN, true, trivy(&["LOW", "HIGH"])),
            0,
        ),
        (
            "trivy critical",
            scan(COSIGN, true, trivy(&["CRITICAL", "HIGH", "critical"])),
            2,
        ),
        (
            "cosign legacy type",
            scan(
                "cosign.sigstore.dev/attestation/vuln/v1",
                true,
                trivy(&["CRITICAL"]),
            ),
            1,
        ),
        (
            "summary",
            scan(COSIGN, true, json!({"summary": {"CRITICAL": 4, "HIGH": 9}})),
            4,
        ),
        (
            "grype",
            scan(
                COSIGN,
                true,
                json!({"matches": [
                    {"vulnerability": {"id": "CVE-1", "severity": "Critical"}, "relatedVulnerabilities": [{"severity": "Critical"}]},
                    {"vulnerability": {"id": "CVE-2", "severity": "Medium"}}
                ]}),
            ),
            1,
        ),
        (
            "in-toto list",
            scan(
                INTOTO,
                true,
                json!([
                    {"id": "CVE-1", "severity": [{"method": "nvd", "score": "medium"}, {"method": "cvss_score", "score": "5.2"}]},
                    {"id": "CVE-2", "severity": [{"method": "cvss_score", "score": "9.8"}]},
                    {"id": "CVE-3", "severity": [{"method": "nvd", "score": "CRITICAL"}]},
                    {"vulnerability": {"id": "CVE-4", "severity": [{"method": "cvss_score", "score": "10.0"}]}},
                    {"id": "CVE-5", "severity": [{"method": "cvss_score", "score": "8.9"}]}
                ]),
            ),
            3,
        ),
        ("in-toto empty", scan(INTOTO, true, json!([])), 0),
    ];
    for (what, att, critical) in cases {
        let out = vuln_run(&host, "prod", vec![att]);
        assert_eq!(out.facts["critical"], json!(critical), "{what}: {out:?}");
        assert_eq!(out.facts["scans"], json!(1), "{what}");
        assert_eq!(out.ok, critical == 0, "{what}: {out:?}");
        if critical > 0 {
            assert_eq!(ids(&out), vec!["vuln.critical"], "{what}");
        }
    }
    let out = vuln_run(
        &host,
        "prod",
        vec![scan(COSIGN, true, trivy(&["CRITICAL", "CRITICAL"]))],
    );
    assert_eq!(
        out.violations[0].msg,
        "the verified vulnerability scan reports 2 critical finding(s); at most 0 may be promoted to `prod`"
    );
}

#[test]
fn vuln_threshold_fails_closed() {
    let host = load(&plugins_dir());
    // No scan: a violation in prod (require_scan_in), fine in staging.
    assert_eq!(
        ids(&vuln_run(&host, "prod", vec![])),
        vec!["vuln.scan_missing"]
    );
    assert!(vuln_run(&host, "staging", vec![]).ok);
    // A scan of another artifact does not count.
    let out = vuln_run(&host, "prod", vec![scan(COSIGN, false, trivy(&[]))]);
    assert_eq!(ids(&out), vec!["vuln.scan_missing"]);
    assert_eq!(out.facts["ignored"], json!(1));
    // Other predicate types are not scans.
    let slsa = scan("https://slsa.dev/provenance/v1", true, trivy(&[]));
    assert_eq!(
        ids(&vuln_run(&host, "prod", vec![slsa])),
        vec!["vuln.scan_missing"]
    );
    // An unreadable result is a violation, even next to a clean readable one.
    let odd = scan(COSIGN, true, json!({"findings": 3}));
    let out = vuln_run(&host, "staging", vec![odd.clone()]);
    assert_eq!(ids(&out), vec!["vuln.scan_unreadable"]);
    let out = vuln_run(&host, "prod", vec![odd, scan(COSIGN, true, trivy(&[]))]);
    assert_eq!(ids(&out), vec!["vuln.scan_unreadable"]);
    // Hostile shapes are unreadable, never 0 critical findings (issue 12).
    for (what, result) in [
        (
            "float count",
            json!({"summary": {"critical": 2.0}, "Results": []}),
        ),
        (
            "string count",
            json!({"summary": {"critical": "5"}, "Results": []}),
        ),
        ("negative count", json!({"summary": {"critical": -1}})),
        (
            "null count",
            json!({"summary": {"critical": null}, "matches": []}),
        ),
        (
            "case-variant twins",
            json!({"summary": {"critical": 0, "CRITICAL": 7}}),
        ),
        (
            "summary twins",
            json!({"summary": {"critical": 0}, "Summary": {"critical": 7}}),
        ),
        (
            "summary without a count",
            json!({"summary": {"high": 3}, "Results": []}),
        ),
        (
            "Results not a list",
            json!({"Results": {"Vulnerabilities": []}}),
        ),
        (
            "Vulnerabilities not a list",
            json!({"Results": [{"Vulnerabilities": {"Severity": "CRITICAL"}}]}),
        ),
        (
            "numeric severity",
            json!({"Results": [{"Vulnerabilities": [{"Severity": 9}]}]}),
        ),
        (
            "missing grype severity",
            json!({"matches": [{"vulnerability": {"id": "CVE-1"}}]}),
        ),
        (
            "in-toto severity object",
            json!([{"id": "CVE-1", "severity": {"score": "9.8"}}]),
        ),
        (
            "in-toto score number",
            json!([{"id": "CVE-1", "severity": [{"method": "cvss", "score": 9.8}]}]),
        ),
    ] {
        let out = vuln_run(&host, "prod", vec![scan(COSIGN, true, result)]);
        assert_eq!(ids(&out), vec!["vuln.scan_unreadable"], "{what}: {out:?}");
        assert!(!out.ok, "{what}");
    }
    // The worst of several scans counts.
    let out = vuln_run(
        &host,
        "prod",
        vec![
            scan(COSIGN, true, trivy(&[])),
            scan(INTOTO, true, json!([{"id": "x", "severity": "critical"}])),
        ],
    );
    assert_eq!(out.facts["critical"], json!(1));
    assert_eq!(out.facts["scans"], json!(2));
    // Unverified claims in the request never count: only `verified` is read.
    let mut r = request();
    r["attestations"] = json!([scan(COSIGN, true, trivy(&[]))]);
    let o = host
        .run_plugin("vuln-threshold", "prod", &r, &verified())
        .unwrap();
    assert_eq!(ids(output(&o)), vec!["vuln.scan_missing"]);
}

#[test]
fn vuln_threshold_config() {
    let src = plugins_dir().join("vuln-threshold/vuln-threshold.wasm");
    let dir = TempDir::new("vuln");
    for (name, cfg) in [
        ("three", "[config]\nmax_critical = 3"),
        ("bad", "[config]\nmax_critical = -1"),
        ("lenient", ""),
    ] {
        let d = dir.0.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(&src, d.join("v.wasm")).unwrap();
        std::fs::write(
            d.join("plugin.toml"),
            format!("name = \"{name}\"\nmodule = \"v.wasm\"\nenvironments = [\"*\"]\n{cfg}\n"),
        )
        .unwrap();
    }
    let host = load(&dir.0);
    let v =
        json!({"attestations": [scan(COSIGN, true, trivy(&["CRITICAL", "CRITICAL", "CRITICAL"]))]});
    let outs = by_name(host.run("prod", &request(), &v));
    assert!(output(&outs["three"]).ok);
    assert_eq!(ids(output(&outs["bad"])), vec!["vuln.config"]);
    assert_eq!(ids(output(&outs["lenient"])), vec!["vuln.critical"]);
    // Without require_scan_in, no scan is not a violation.
    let outs = by_name(host.run("prod", &request(), &verified()));
    assert!(output(&outs["lenient"]).ok);
}

// ---- measurements (not assertions): cargo test --release -- --ignored --nocapture ----

#[test]
fn abi_md_wat_example_runs() {
    let doc = std::fs::read_to_string(plugins_dir().join("ABI.md")).unwrap();
    let start = doc.find("```wat\n").unwrap() + "```wat\n".len();
    let wat = &doc[start..start + doc[start..].find("```").unwrap()];
    let dir = TempDir::new("abi-doc");
    dir.plugin("example", "", wat);
    let host = load(&dir.0);
    let outs = host.run("prod", &request(), &verified());
    let out = output(&outs[0]);
    assert!(out.ok && out.violations.is_empty());
}

#[test]
fn one_pool_slot_is_reused_check_after_check() {
    let options = HostOptions {
        max_instances: 1,
        ..HostOptions::default()
    };
    let host = PluginHost::load(&plugins_dir(), &options).unwrap();
    for _ in 0..3 {
        let outs = host.run("prod", &request(), &verified());
        assert!(outs.iter().all(|o| o.result.is_ok()), "{outs:?}");
    }
}
