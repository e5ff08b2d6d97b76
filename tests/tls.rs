//! `serve --tls-cert/--tls-key/--tls-client-ca` through the real binary and a real TLS
//! client (curl): HTTP/2 by ALPN, rotation without restart, client certificates, the
//! handshake budget.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use crate::support::AT;

/// A CA that can issue server and client certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `localhost` with the given purpose: (certificate PEM, key PEM).
    fn issue(&self, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// curl, or None (skip) when it is missing outside CI.
fn curl_available() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("HTTP2"));
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl with HTTP/2 is required in CI (.ci/run installs it)"
        );
        eprintln!("skipping: curl with HTTP/2 support is not installed");
    }
    found
}

/// A running `serve --tls-*`, its port and everything it printed on stderr.
struct Sidecar {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Sidecar {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("promo-policy"))
            .args(["serve", "--addr", "127.0.0.1:0", "--watch-interval", "0"])
            .args(["--at", AT, "--tls-reload-interval", "1"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 {
            if let Some(rest) = line.split("serving on https://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                let port = addr.rsplit(':').next().unwrap().parse().unwrap();
                let log = Arc::new(Mutex::new(String::new()));
                let sink = Arc::clone(&log);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stderr.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sink.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                });
                return Self {
                    child,
                    port,
                    stderr: log,
                };
            }
            line.clear();
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the sidecar never said it serves https: {line}");
    }

    /// curl `/health` trusting `ca`, with `extra` flags: (exit success, http version).
    fn curl(&self, ca: &Path, extra: &[&str]) -> (bool, String) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version}",
            ])
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", self.port))
            .arg("--cacert")
            .arg(ca)
            .args(extra)
            .arg(format!("https://localhost:{}/health", self.port))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Poll `check` for up to 15 s (the reload interval is 1 s).
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn https_negotiates_http2_and_serves_http1_and_refuses_plain_http() {
    if !curl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let ca_pem = write(dir.path(), "ca.pem", &ca.pem());
    let cert = write(dir.path(), "tls.crt", &cert);
    let key = write(dir.path(), "tls.key", &key);
    let sidecar = Sidecar::start(&["--tls-cert", s(&cert), "--tls-key", s(&key)]);

    assert_eq!(sidecar.curl(&ca_pem, &["--http2"]), (true, "2".into()));
    assert_eq!(sidecar.curl(&ca_pem, &["--http1.1"]), (true, "1.1".into()));
    // A CA that did not issue the certificate: curl refuses the server.
    let other = write(dir.path(), "other.pem", &Ca::new("other CA").pem());
    assert!(!sidecar.curl(&other, &[]).0);
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{}/health", sidecar.port))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
}

#[test]
fn a_rotated_pair_is_picked_up_without_restart_and_a_bad_one_keeps_the_old() {
    if !curl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::new("first CA");
    let second = Ca::new("second CA");
    let first_pem = write(dir.path(), "first.pem", &first.pem());
    let second_pem = write(dir.path(), "second.pem", &second.pem());
    let (cert, key) = first.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let cert_path = write(dir.path(), "tls.crt", &cert);
    let key_path = write(dir.path(), "tls.key", &key);
    let sidecar = Sidecar::start(&["--tls-cert", s(&cert_path), "--tls-key", s(&key_path)]);
    assert!(sidecar.curl(&first_pem, &[]).0);
    assert!(!sidecar.curl(&second_pem, &[]).0);

    // cert-manager style rotation: both files replaced in place.
    let (cert, key) = second.issue(ExtendedKeyUsagePurpose::ServerAuth);
    write(dir.path(), "tls.key", &key);
    write(dir.path(), "tls.crt", &cert);
    assert!(
        eventually(|| sidecar.curl(&second_pem, &[]).0),
        "the rotated pair was never served: {}",
        sidecar.log()
    );
    assert!(!sidecar.curl(&first_pem, &[]).0);

    // A key that does not match the certificate: the second pair keeps serving.
    let (_, stray_key) = second.issue(ExtendedKeyUsagePurpose::ServerAuth);
    write(dir.path(), "tls.key", &stray_key);
    assert!(
        eventually(|| sidecar.log().contains("TLS reload failed")),
        "the bad pair was not reported: {}",
        sidecar.log()
    );
    assert!(sidecar.curl(&second_pem, &[]).0, "{}", sidecar.log());
}

#[test]
fn a_client_ca_requires_a_client_certificate_it_issued() {
    if !curl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("stranger CA");
    let (cert, key) = server_ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let ca_pem = write(dir.path(), "ca.pem", &server_ca.pem());
    let cert = write(dir.path(), "tls.crt", &cert);
    let key = write(dir.path(), "tls.key", &key);
    let clients = write(dir.path(), "clients.pem", &client_ca.pem());
    let (ok_cert, ok_key) = client_ca.issue(ExtendedKeyUsagePurpose::ClientAuth);
    let ok_cert = write(dir.path(), "client.crt", &ok_cert);
    let ok_key = write(dir.path(), "client.key", &ok_key);
    let (bad_cert, bad_key) = stranger_ca.issue(ExtendedKeyUsagePurpose::ClientAuth);
    let bad_cert = write(dir.path(), "stranger.crt", &bad_cert);
    let bad_key = write(dir.path(), "stranger.key", &bad_key);
    let sidecar = Sidecar::start(&[
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
        "--tls-client-ca",
        s(&clients),
    ]);

    assert_eq!(
        sidecar.curl(&ca_pem, &["--cert", s(&ok_cert), "--key", s(&ok_key)]),
        (true, "2".into())
    );
    assert!(
        !sidecar.curl(&ca_pem, &[]).0,
        "no client certificate was admitted"
    );
    assert!(
        !sidecar
            .curl(&ca_pem, &["--cert", s(&bad_cert), "--key", s(&bad_key)])
            .0,
        "a client certificate from another CA was admitted"
    );
}

#[test]
fn a_silent_client_is_dropped_after_the_handshake_budget() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let cert = write(dir.path(), "tls.crt", &cert);
    let key = write(dir.path(), "tls.key", &key);
    let sidecar = Sidecar::start(&[
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
        "--tls-handshake-timeout",
        "1",
    ]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    // EOF (or a reset): the server closed the connection, well before our 10 s.
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let _ = stream.write_all(b"x");
}

#[test]
fn unusable_tls_files_stop_the_start_with_a_reason_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, _) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let (_, other_key) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let cert = write(dir.path(), "tls.crt", &cert);
    let key = write(dir.path(), "tls.key", &other_key);
    let garbage = write(dir.path(), "garbage.crt", "not a certificate");
    for (c, k, needle) in [
        (&garbage, &key, "garbage.crt"),
        (&cert, &key, "tls.key"),
        (&cert, &dir.path().join("missing.key"), "missing.key"),
    ] {
        let out = Command::new(assert_cmd::cargo::cargo_bin("promo-policy"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--tls-cert",
                s(c),
                "--tls-key",
                s(k),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
}
