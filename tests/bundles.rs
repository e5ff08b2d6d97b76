//! Policy bundles as OPA archives and signed bundles, through the real binary: built,
//! signed, decided under, and refused when unsigned (where required), tampered, extended
//! or signed by a key the trust file does not trust for bundles.

use std::path::{Path, PathBuf};

use promo_policy::attest::keys::SigningKey;
use promo_policy::policy::archive::{self, RawFile};
use promo_policy::policy::signature::BUNDLE_PREDICATE;
use serde_json::{json, Value};

use crate::support::{bin, eval_json, ALLOWED};

pub(crate) struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// A bundle key `bundles-test` and trust files with it (required and optional).
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        std::fs::write(dir.path().join("bundle.key"), key.to_pkcs8_pem().unwrap()).unwrap();
        let other = SigningKey::generate();
        std::fs::write(dir.path().join("other.key"), other.to_pkcs8_pem().unwrap()).unwrap();
        let mut trust: Value =
            serde_json::from_slice(&std::fs::read("policies/trust.json").unwrap()).unwrap();
        let roots = std::fs::canonicalize("policies").unwrap();
        for (_, v) in trust["trustedRoots"].as_object_mut().unwrap() {
            if let Some(rel) = v.as_str().filter(|s| !s.starts_with("builtin:")) {
                *v = json!(roots.join(rel).display().to_string());
            }
        }
        trust["keys"].as_array_mut().unwrap().push(json!({
            "id": "bundles-test",
            "publicKey": key.public_key().to_pem(),
            "predicateTypes": [BUNDLE_PREDICATE],
        }));
        std::fs::write(dir.path().join("trust-optional.json"), trust.to_string()).unwrap();
        trust["requireSignedBundle"] = json!(true);
        std::fs::write(dir.path().join("trust.json"), trust.to_string()).unwrap();
        Self { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `bundle build policies -o NAME [--key KEY --keyid ID]`, revision r42.
    fn build(&self, name: &str, key: Option<(&str, &str)>) -> PathBuf {
        self.build_revision(name, "r42", key)
    }

    /// `bundle build policies -o NAME --revision REV [--key KEY --keyid ID]`.
    pub(crate) fn build_revision(
        &self,
        name: &str,
        rev: &str,
        key: Option<(&str, &str)>,
    ) -> PathBuf {
        let out = self.path(name);
        let mut c = bin();
        c.args(["bundle", "build", "policies", "--revision", rev, "-o"])
            .arg(&out);
        if let Some((k, id)) = key {
            c.arg("--key").arg(self.path(k)).args(["--keyid", id]);
        }
        c.assert().success();
        out
    }

    /// `eval` of the allowed baseline under `policies` with `trust`.
    fn eval(&self, policies: &Path, trust: &str) -> std::process::Output {
        eval_json(ALLOWED)
            .arg("--policies")
            .arg(policies)
            .arg("--trust")
            .arg(self.path(trust))
            .output()
            .unwrap()
    }
}

fn decision(out: &std::process::Output) -> Value {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    v["decision"].clone()
}

fn refused(out: &std::process::Output, want: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "no decision may be printed");
    assert!(stderr.contains(want), "want `{want}` in: {stderr}");
}

/// The archive's files, edited by `f`, written back as a new archive.
pub(crate) fn rewrite(from: &Path, to: &Path, f: impl FnOnce(&mut Vec<RawFile>)) {
    let mut files = archive::read(from).unwrap();
    f(&mut files);
    let mut bytes = Vec::new();
    archive::write(&files, &mut bytes).unwrap();
    std::fs::write(to, bytes).unwrap();
}

#[test]
fn a_signed_archive_decides_as_the_directory_and_records_revision_and_signer() {
    let s = Setup::new();
    let archive = s.build("b.tar.gz", Some(("bundle.key", "bundles-test")));
    let from_archive = decision(&s.eval(&archive, "trust.json"));
    let from_dir = decision(&s.eval(Path::new("policies"), "trust-optional.json"));
    assert_eq!(from_archive["allowed"], true, "{from_archive}");
    assert_eq!(from_archive["allowed"], from_dir["allowed"]);
    assert_eq!(
        from_archive["policy"]["digest"], from_dir["policy"]["digest"],
        "the bundle digest is the same for the archive and the directory"
    );
    assert_eq!(from_archive["policy"]["revision"], "r42");
    assert_eq!(from_archive["policy"]["signedBy"], "bundles-test");
    assert!(from_dir["policy"].get("signedBy").is_none(), "{from_dir}");
    // Reproducible: the same directory builds to the same bytes.
    let again = s.build("again.tar.gz", Some(("bundle.key", "bundles-test")));
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(again).unwrap()
    );
}

#[test]
fn unsigned_tampered_extended_and_foreign_bundles_never_decide() {
    let s = Setup::new();
    let unsigned = s.build("unsigned.tar.gz", None);
    refused(&s.eval(&unsigned, "trust.json"), "requireSignedBundle");
    // Where the trust file does not require signing, an unsigned bundle loads.
    assert_eq!(
        decision(&s.eval(&unsigned, "trust-optional.json"))["allowed"],
        true
    );

    let signed = s.build("signed.tar.gz", Some(("bundle.key", "bundles-test")));
    let tampered = s.path("tampered.tar.gz");
    rewrite(&signed, &tampered, |files| {
        let rego = files
            .iter_mut()
            .find(|f| f.path.ends_with("approvals.rego"))
            .unwrap();
        rego.bytes = String::from_utf8(rego.bytes.clone())
            .unwrap()
            .replace("deny contains", "ignored contains")
            .into_bytes();
    });
    // Even where signing is optional: a signature that is there must hold.
    refused(&s.eval(&tampered, "trust-optional.json"), "tampered");

    let extended = s.path("extended.tar.gz");
    rewrite(&signed, &extended, |files| {
        files.push(RawFile {
            path: "promo/rules/zz.rego".into(),
            bytes: b"package promo.rules.zz\n".to_vec(),
        });
    });
    refused(&s.eval(&extended, "trust.json"), "not in the signed set");

    let dropped = s.path("dropped.tar.gz");
    rewrite(&signed, &dropped, |files| {
        files.retain(|f| !f.path.ends_with("approvals.rego"));
    });
    refused(&s.eval(&dropped, "trust.json"), "missing from the bundle");

    let foreign = s.build("foreign.tar.gz", Some(("other.key", "bundles-test")));
    refused(&s.eval(&foreign, "trust.json"), "does not verify");
    let unknown = s.build("unknown.tar.gz", Some(("other.key", "someone")));
    refused(&s.eval(&unknown, "trust.json"), "does not trust");
}

#[test]
fn a_signed_directory_loads_and_an_edited_one_does_not() {
    let s = Setup::new();
    let dir = s.path("policies");
    crate::support::copy_dir(Path::new("policies"), &dir);
    let _ = std::fs::remove_dir_all(dir.join("roots"));
    refused(&s.eval(&dir, "trust.json"), "requireSignedBundle");
    bin()
        .args(["bundle", "sign"])
        .arg(&dir)
        .arg("--key")
        .arg(s.path("bundle.key"))
        .args(["--keyid", "bundles-test"])
        .assert()
        .success();
    assert_eq!(
        decision(&s.eval(&dir, "trust.json"))["policy"]["signedBy"],
        "bundles-test"
    );
    let inspect = bin()
        .args(["bundle", "inspect", "--json", "--trust"])
        .arg(s.path("trust.json"))
        .arg(&dir)
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(shown["signedBy"], "bundles-test", "{shown}");
    std::fs::write(dir.join("promo/rules/zz.rego"), "package promo.rules.zz\n").unwrap();
    refused(&s.eval(&dir, "trust.json"), "not in the signed set");
}

#[test]
fn a_hostile_archive_is_an_error_naming_the_entry() {
    let s = Setup::new();
    let out = s.path("x.tar.gz");
    std::fs::write(&out, b"\x1f\x8b definitely not gzip").unwrap();
    refused(
        &s.eval(&out, "trust-optional.json"),
        "not a gzip-compressed tar archive",
    );
    let signed = s.build("signed.tar.gz", None);
    let stranger = s.path("stranger.tar.gz");
    rewrite(&signed, &stranger, |files| {
        files.push(RawFile {
            path: "promo/run.sh".into(),
            bytes: b"#!/bin/sh\n".to_vec(),
        });
    });
    refused(&s.eval(&stranger, "trust-optional.json"), "promo/run.sh");
}

#[test]
fn manifest_roots_scope_what_a_bundle_may_define() {
    let s = Setup::new();
    // `--root promo` owns every package and data path of the shipped bundle.
    let scoped = s.path("scoped.tar.gz");
    bin()
        .args(["bundle", "build", "policies", "--root", "promo", "-o"])
        .arg(&scoped)
        .assert()
        .success();
    let out = s.eval(&scoped, "trust-optional.json");
    assert_eq!(decision(&out)["allowed"], true, "{out:?}");

    // Roots that leave out the shipped packages: `build` refuses and writes nothing.
    let narrow = s.path("narrow.tar.gz");
    let out = bin()
        .args(["bundle", "build", "policies", "--root", "promo/rules", "-o"])
        .arg(&narrow)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("outside the manifest roots"), "{stderr}");
    assert!(!narrow.exists() && !narrow.with_extension("tmp").exists());

    // A bundle that declares `promo` but smuggles in another package is refused on load,
    // as is data beside the root and a manifest with overlapping roots.
    type Edit = Box<dyn Fn(&mut Vec<RawFile>)>;
    let cases: [(&str, Edit, &str); 3] = [
        (
            "package",
            Box::new(|files| {
                files.push(RawFile {
                    path: "system/authz.rego".into(),
                    bytes: b"package system.authz\nallow := true\n".to_vec(),
                })
            }),
            "package `data.system.authz` is outside the manifest roots [\"promo\"]",
        ),
        (
            "data",
            Box::new(|files| {
                files.push(RawFile {
                    path: "system/data.json".into(),
                    bytes: b"{\"x\": 1}".to_vec(),
                })
            }),
            "data at `system` is outside the manifest roots",
        ),
        (
            "overlap",
            Box::new(|files| {
                let m = files.iter_mut().find(|f| f.path == ".manifest").unwrap();
                m.bytes = br#"{"roots": ["promo", "promo/config"]}"#.to_vec();
            }),
            "overlap",
        ),
    ];
    for (name, edit, want) in cases {
        let hostile = s.path(&format!("{name}.tar.gz"));
        rewrite(&scoped, &hostile, edit);
        refused(&s.eval(&hostile, "trust-optional.json"), want);
    }
}
