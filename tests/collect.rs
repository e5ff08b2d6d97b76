//! `collect` and `eval --collect` against a real registry (Debian's `docker-registry`, the CNCF distribution registry, started per test on loopback) and a fake one for the limits.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use promo_policy::testing::{
    read_attestation_sources, sign_attestation_sources, AttestationSource,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{bin, eval_json, write};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const BASELINE_DIGEST: &str = "0d9d2f9cf3e9b5229f514b2a03365b0437cdd20cf875cf840b50996620fce5ef";

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` on loopback with its storage in a temporary directory; killed on
/// drop.
struct Registry {
    child: Child,
    host: String,
    storage: tempfile::TempDir,
    client: oci_client::Client,
    rt: tokio::runtime::Runtime,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry, or `None` (skip, with a message) when `docker-registry` is missing
/// outside CI; in CI (`CI=true`) a missing registry fails the test.
fn registry() -> Option<Registry> {
    if !Path::new(REGISTRY_BIN).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{REGISTRY_BIN} (Debian package docker-registry) is missing; .ci/run installs it"
        );
        eprintln!("skipped: {REGISTRY_BIN} (Debian package docker-registry) is not installed");
        return None;
    }
    let storage = tempfile::tempdir().unwrap();
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let config = write(
        storage.path(),
        "config.yml",
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            storage.path().join("data").display()
        ),
    );
    let child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = oci_client::Client::try_from(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
    .unwrap();
    let reg = Registry {
        child,
        host,
        storage,
        client,
        rt,
    };
    for _ in 0..100 {
        if ureq::get(&format!("http://{}/v2/", reg.host))
            .call()
            .is_ok()
        {
            return Some(reg);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("docker-registry did not start on {}", reg.host);
}

impl Registry {
    fn reference(&self, repo: &str, tag_or_digest: &str) -> Reference {
        let sep = if tag_or_digest.contains(':') {
            "@"
        } else {
            ":"
        };
        format!("{}/{repo}{sep}{tag_or_digest}", self.host)
            .parse()
            .unwrap()
    }

    fn push_blob(&self, repo: &str, bytes: &[u8]) -> Value {
        let digest = sha(bytes);
        let r = self.reference(repo, "x");
        self.rt.block_on(async {
            self.client
                .auth(&r, &RegistryAuth::Anonymous, RegistryOperation::Push)
                .await
                .unwrap();
            self.client
                .push_blob(&r, bytes.to_vec(), &digest)
                .await
                .unwrap()
        });
        json!({"digest": digest, "size": bytes.len()})
    }

    /// Pushes `manifest` under `tag` (or by digest when `tag` is None); its descriptor.
    fn push_manifest(&self, repo: &str, tag: Option<&str>, manifest: &Value) -> Value {
        let body = serde_json::to_vec(manifest).unwrap();
        let digest = sha(&body);
        let media_type = manifest["mediaType"].as_str().unwrap().to_string();
        let r = self.reference(repo, tag.unwrap_or(&digest));
        self.rt
            .block_on(self.client.push_manifest_raw(
                &r,
                body.clone(),
                reqwest::header::HeaderValue::from_str(&media_type).unwrap(),
            ))
            .unwrap();
        json!({"mediaType": media_type, "digest": digest, "size": body.len()})
    }

    fn config(&self, repo: &str) -> Value {
        let mut d = self.push_blob(repo, b"{}");
        d["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
        d
    }

    /// A one-layer image; its descriptor.
    fn push_image(&self, repo: &str, tag: Option<&str>, content: &str) -> Value {
        let mut layer = self.push_blob(repo, content.as_bytes());
        layer["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": self.config(repo), "layers": [layer]});
        self.push_manifest(repo, tag, &manifest)
    }

    /// cosign's convention: one manifest under `sha256-<hex>.att`, a DSSE layer per
    /// envelope.
    fn attach_cosign(&self, repo: &str, subject: &Value, envelopes: &[Value]) {
        let layers: Vec<Value> = envelopes
            .iter()
            .map(|e| {
                let mut d = self.push_blob(repo, e.to_string().as_bytes());
                d["mediaType"] = json!(DSSE);
                d
            })
            .collect();
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": self.config(repo), "layers": layers});
        let tag = format!(
            "{}.att",
            subject["digest"].as_str().unwrap().replace(':', "-")
        );
        self.push_manifest(repo, Some(&tag), &manifest);
    }

    /// An OCI 1.1 referrer (`subject` set) holding `blob` as a `media_type` layer, listed
    /// in the referrers tag-schema index `sha256-<hex>` (this registry has no referrers
    /// API); `index` is that index so far.
    fn attach_referrer(
        &self,
        repo: &str,
        subject: &Value,
        blob: &[u8],
        media_type: &str,
        index: &mut Vec<Value>,
    ) -> Value {
        let mut layer = self.push_blob(repo, blob);
        layer["mediaType"] = json!(media_type);
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": media_type, "config": self.config(repo),
            "layers": [layer.clone()], "subject": subject});
        let mut desc = self.push_manifest(repo, None, &manifest);
        desc["artifactType"] = json!(media_type);
        index.push(desc);
        let tag = subject["digest"].as_str().unwrap().replace(':', "-");
        self.push_manifest(
            repo,
            Some(&tag),
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}),
        );
        layer
    }

    fn collect(&self) -> assert_cmd::Command {
        let mut c = bin();
        c.args(["collect", "--insecure-registry", &self.host]);
        c
    }

    fn image(&self, repo: &str, desc: &Value) -> String {
        format!("{}/{repo}@{}", self.host, desc["digest"].as_str().unwrap())
    }
}

/// The baseline case's attestations (provenance, scan, and the signed approvals, check
/// runs and SLO snapshot its claims derive), signed by the corpus keys for `digest`.
fn envelopes_for(digest: &str) -> Vec<Value> {
    let hex = digest.trim_start_matches("sha256:");
    let mut sources: Vec<AttestationSource> =
        read_attestation_sources(Path::new("corpus/cases/prod-allow-baseline"))
            .unwrap()
            .unwrap();
    for src in &mut sources {
        src.statement =
            serde_json::from_str(&src.statement.to_string().replace(BASELINE_DIGEST, hex)).unwrap();
    }
    sign_attestation_sources(&sources, Path::new("corpus/keys")).unwrap()
}

/// The baseline request for `digest`, its attestations removed (or kept inline).
fn request_for(dir: &Path, digest: &str, inline: Option<&[Value]>) -> PathBuf {
    let mut r = crate::support::request();
    r["artifact"]["digest"]["sha256"] = json!(digest.trim_start_matches("sha256:"));
    r["attestations"] = json!(inline.unwrap_or(&[]));
    let name = if inline.is_some() {
        "inline.json"
    } else {
        "bare.json"
    };
    write(dir, name, r.to_string())
}

fn decision_of(out: &std::process::Output) -> Value {
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    doc["decision"].clone()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn provenance_and_scan_attached_both_ways_decide_as_inline_envelopes() {
    let Some(reg) = registry() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Image A: both envelopes in cosign's `.att`. Image B: both as OCI 1.1 referrers.
    let a = reg.push_image("payments/api", Some("a"), "image a");
    let env_a = envelopes_for(a["digest"].as_str().unwrap());
    reg.attach_cosign("payments/api", &a, &env_a);
    let b = reg.push_image("payments/api", Some("b"), "image b");
    let env_b = envelopes_for(b["digest"].as_str().unwrap());
    let mut index = Vec::new();
    for e in &env_b {
        reg.attach_referrer(
            "payments/api",
            &b,
            e.to_string().as_bytes(),
            DSSE,
            &mut index,
        );
    }

    // Image C: provenance in `.att`, the scan and the rest as referrers; the file lists
    // the referrers first, then cosign's tag.
    let c = reg.push_image("payments/api", Some("c"), "image c");
    let env_c = envelopes_for(c["digest"].as_str().unwrap());
    reg.attach_cosign("payments/api", &c, &env_c[..1]);
    let mut index = Vec::new();
    for e in &env_c[1..] {
        reg.attach_referrer(
            "payments/api",
            &c,
            e.to_string().as_bytes(),
            DSSE,
            &mut index,
        );
    }
    let env_c: Vec<Value> = env_c[1..].iter().chain(&env_c[..1]).cloned().collect();

    for (desc, envelopes, how) in [
        (&a, &env_a, "cosign .att"),
        (&b, &env_b, "referrers tag schema"),
        (&c, &env_c, "cosign .att"),
        (&c, &env_c, "referrers tag schema"),
    ] {
        let digest = desc["digest"].as_str().unwrap();
        let evidence = d.join(format!("{}.jsonl", &digest[7..19]));
        let out = reg
            .collect()
            .arg(reg.image("payments/api", desc))
            .args(["--out", evidence.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("collected from {how}")),
            "{stderr}"
        );
        assert!(stderr.contains("plain HTTP"), "{stderr}");
        assert_eq!(&lines(&evidence), envelopes);

        // The same decision as the envelopes inline...
        let inline = eval_json(request_for(d, digest, Some(envelopes)).to_str().unwrap())
            .output()
            .unwrap();
        let bare = request_for(d, digest, None);
        let collected = eval_json(bare.to_str().unwrap())
            .args(["--attestations", evidence.to_str().unwrap()])
            .output()
            .unwrap();
        let (inline, collected_d) = (decision_of(&inline), decision_of(&collected));
        assert_eq!(inline["allowed"], true, "{inline}");
        for field in ["allowed", "violations", "warnings", "inputDigest"] {
            assert_eq!(inline[field], collected_d[field], "{field}");
        }
        // ...and without them prod denies: the collected evidence is what allowed.
        let none = decision_of(&eval_json(bare.to_str().unwrap()).output().unwrap());
        assert_eq!(none["allowed"], false, "{none}");

        // `eval --collect`: the same, in one process, recording what it collected.
        let out = eval_json(bare.to_str().unwrap())
            .args(["--collect", &reg.image("payments/api", desc)])
            .args(["--insecure-registry", &reg.host])
            .output()
            .unwrap();
        let one = decision_of(&out);
        for field in ["allowed", "violations", "warnings", "inputDigest"] {
            assert_eq!(inline[field], one[field], "{field}");
        }
        let file_digest = sha(&std::fs::read(&evidence).unwrap());
        assert_eq!(
            one["collected"],
            json!({"image": reg.image("payments/api", desc),
                   "evidenceDigest": {"sha256": &file_digest[7..]}})
        );
        assert!(inline.get("collected").is_none(), "{inline}");
    }
}

#[test]
fn an_index_collects_its_own_and_the_platform_manifests_attestations() {
    let Some(reg) = registry() else { return };
    let amd = reg.push_image("multi", None, "amd64");
    let arm = reg.push_image("multi", None, "arm64");
    let platform = |d: &Value, arch: &str| {
        let mut d = d.clone();
        d["platform"] = json!({"os": "linux", "architecture": arch});
        d
    };
    let index = reg.push_manifest(
        "multi",
        Some("v1"),
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [platform(&amd, "amd64"), platform(&arm, "arm64")]}),
    );
    let on_index = envelopes_for(index["digest"].as_str().unwrap());
    let on_arm = envelopes_for(arm["digest"].as_str().unwrap());
    let on_amd = envelopes_for(amd["digest"].as_str().unwrap());
    reg.attach_cosign("multi", &index, &on_index[1..2]);
    reg.attach_cosign("multi", &arm, &on_arm[..1]);
    reg.attach_cosign("multi", &amd, &on_amd[..1]);

    let run = |platform: Option<&str>| {
        let mut c = reg.collect();
        c.arg(reg.image("multi", &index));
        if let Some(p) = platform {
            c.args(["--platform", p]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (got, String::from_utf8(out.stderr).unwrap())
    };
    let (got, stderr) = run(Some("linux/arm64"));
    assert_eq!(got, vec![on_index[1].clone(), on_arm[0].clone()]);
    assert!(stderr.contains("(index)"), "{stderr}");
    assert!(stderr.contains("(linux/arm64 manifest)"), "{stderr}");
    assert!(stderr.contains(arm["digest"].as_str().unwrap()), "{stderr}");

    let (got, stderr) = run(None);
    assert_eq!(got, vec![on_index[1].clone()]);
    assert!(
        stderr.contains("pass --platform, one of: linux/amd64, linux/arm64"),
        "{stderr}"
    );

    let out = reg
        .collect()
        .arg(reg.image("multi", &index))
        .args(["--platform", "linux/s390x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest for platform linux/s390x"));
}

#[test]
fn a_tag_is_pinned_once_and_a_moved_tag_does_not_change_the_evidence() {
    let Some(reg) = registry() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = reg.push_image("app", Some("release"), "first");
    let first_digest = first["digest"].as_str().unwrap();
    reg.attach_cosign("app", &first, &envelopes_for(first_digest));
    let tag_ref = format!("{}/app:release", reg.host);

    // A tag is refused unless asked for.
    let out = reg.collect().arg(&tag_ref).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("names a tag"));

    let evidence = d.join("evidence.jsonl");
    let out = reg
        .collect()
        .args([&tag_ref, "--allow-tag", "--out", evidence.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pinned `{tag_ref}` to {}",
            reg.image("app", &first)
        )),
        "{stderr}"
    );

    // The tag moves to an image with no evidence.
    reg.push_image("app", Some("release"), "second");
    let bare = request_for(d, first_digest, None);
    let pinned = decision_of(
        &eval_json(bare.to_str().unwrap())
            .args(["--attestations", evidence.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert_eq!(pinned["allowed"], true, "{pinned}");
    // Collecting the moved tag for the first image's request is refused by digest.
    let out = eval_json(bare.to_str().unwrap())
        .args(["--collect", &tag_ref, "--allow-tag"])
        .args(["--insecure-registry", &reg.host])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("the request promotes {first_digest}")),
        "{stderr}"
    );
}

#[test]
fn a_referrer_blob_off_its_digest_is_refused() {
    let Some(reg) = registry() else { return };
    let image = reg.push_image("app", None, "tampered");
    let envelopes = envelopes_for(image["digest"].as_str().unwrap());
    let mut index = Vec::new();
    let body = envelopes[0].to_string();
    let layer = reg.attach_referrer("app", &image, body.as_bytes(), DSSE, &mut index);
    // Change the stored blob behind the registry's back (same length).
    let hex = &layer["digest"].as_str().unwrap()[7..];
    let data = reg.storage.path().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let tampered = body.replacen("\"payloadType\"", "\"payloadTypX\"", 1);
    assert_eq!(tampered.len(), body.len());
    std::fs::write(&data, tampered).unwrap();

    let out = reg
        .collect()
        .arg(reg.image("app", &image))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "registry {}: blob {}",
            reg.host,
            layer["digest"].as_str().unwrap()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("not what the descriptor says"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_sigstore_bundle_referrer_is_collected_and_simple_signing_is_named() {
    let Some(reg) = registry() else { return };
    let image = reg.push_image("gh", None, "bundled");
    let bundle = json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {}, "dsseEnvelope": {}});
    let mut index = Vec::new();
    reg.attach_referrer(
        "gh",
        &image,
        bundle.to_string().as_bytes(),
        BUNDLE,
        &mut index,
    );
    // cosign's `.sig`: a simple-signing payload, not an attestation.
    let mut sig = reg.push_blob("gh", br#"{"critical":{}}"#);
    sig["mediaType"] = json!("application/vnd.dev.cosign.simplesigning.v1+json");
    let tag = format!(
        "{}.sig",
        image["digest"].as_str().unwrap().replace(':', "-")
    );
    reg.push_manifest(
        "gh",
        Some(&tag),
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": reg.config("gh"), "layers": [sig]}),
    );
    let out = reg.collect().arg(reg.image("gh", &image)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, bundle);
    assert!(
        stderr.contains("skipped 1 simple-signing layer(s)"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_registry_is_exit_2_naming_the_host() {
    let host = format!("127.0.0.1:{}", free_port());
    let out = bin()
        .args(["collect", "--insecure-registry", &host])
        .arg(format!("{host}/app@sha256:{BASELINE_DIGEST}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("registry {host}:")), "{stderr}");
    // Plain HTTP is for loopback only.
    let out = bin()
        .args(["collect", "--insecure-registry", "10.0.0.1:5000"])
        .arg(format!("10.0.0.1:5000/app@sha256:{BASELINE_DIGEST}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback registries only"));
}

/// A fake registry answering every manifest GET with `manifest` (headers included) and
/// the referrers API with `referrers`; serves until the test ends.
fn fake_registry(manifest: &'static [u8], referrers: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or("/").to_string();
            let _ = if path.contains("/referrers/") {
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: {OCI_INDEX}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    referrers.len()
                )
                .and_then(|_| stream.write_all(&referrers))
            } else if path.contains("/manifests/") {
                stream.write_all(manifest)
            } else {
                stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                )
            };
        }
    });
    host
}

#[test]
fn a_huge_manifest_or_ten_thousand_referrers_are_refused() {
    // A manifest that says it is 1 GB (and would stream on).
    let host = fake_registry(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\n{\"schemaVersion\":2,",
        Vec::new(),
    );
    let out = bin()
        .args(["collect", "--insecure-registry", &host])
        .arg(format!("{host}/app@sha256:{BASELINE_DIGEST}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("registry {host}: manifest app@sha256:{BASELINE_DIGEST} is 1073741824 bytes; the limit is 4194304")),
        "{stderr}"
    );

    // A manifest that hashes to its digest, and 10,000 referrers.
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let digest = sha(manifest);
    let response: &'static [u8] = Box::leak(
        [
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                manifest.len()
            )
            .as_bytes(),
            manifest,
        ]
        .concat()
        .into_boxed_slice(),
    );
    let entries: Vec<Value> = (0..10_000)
        .map(|i| json!({"mediaType": OCI_MANIFEST, "digest": sha(format!("{i}").as_bytes()), "size": 1}))
        .collect();
    let referrers = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
    )
    .unwrap();
    let host = fake_registry(response, referrers);
    let out = bin()
        .args(["collect", "--insecure-registry", &host])
        .arg(format!("{host}/app@{digest}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "registry {host}: {digest} has 10000 referrers; the limit is 256"
        )),
        "{stderr}"
    );
}
