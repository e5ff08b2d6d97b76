//! Helpers the integration-test modules share: the binary, the pinned time and baseline
//! request, and copies of the shipped bundle to change.

use std::path::Path;

/// The evaluation time every corpus case and test request is written for.
pub const AT: &str = "2026-11-26T18:00:00Z";

/// The allowed baseline request (staging -> prod).
pub const ALLOWED: &str = "corpus/cases/prod-allow-baseline/request.json";

/// The real `promo-policy` binary, with a deadline: a hang fails its test instead of
/// stalling CI.
pub fn bin() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("promo-policy").unwrap();
    c.timeout(std::time::Duration::from_secs(300));
    c
}

/// `eval REQUEST --at AT --format json`, to add flags to.
pub fn eval_json(request: &str) -> assert_cmd::Command {
    let mut c = bin();
    c.args(["eval", request, "--at", AT, "--format", "json"]);
    c
}

/// The in-toto statement a DSSE envelope signs.
pub fn statement_of(envelope: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// The baseline request as JSON, to edit.
pub fn request() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(ALLOWED).unwrap()).unwrap()
}

/// The baseline request with no approvals at all: neither claimed nor signed (prod
/// counts only signed approvals, so emptying the claims alone changes nothing).
pub fn without_approvals() -> serde_json::Value {
    let mut r = request();
    r["approvals"] = serde_json::json!([]);
    let kept: Vec<serde_json::Value> = r["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| statement_of(e)["predicateType"] != "https://promo-policy.dev/approval/v1")
        .cloned()
        .collect();
    r["attestations"] = kept.into();
    r
}

/// Copy a directory tree (files and subdirectories).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Write `body` to `dir/name`, creating parent directories; the path written.
pub fn write(dir: &Path, name: &str, body: impl AsRef<[u8]>) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}

/// A copy of the shipped `policies/` bundle in a fresh temporary directory.
pub fn bundle_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new("policies"), dir.path());
    dir
}

/// Start `promo-policy serve --addr 127.0.0.1:0 ARGS...` and read the base URL from its
/// "serving on" line; stderr keeps draining so the server never blocks on a full pipe.
/// Stop it with [`stop_serve`].
pub fn spawn_serve<I, S>(args: I) -> (std::process::Child, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("promo-policy"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.split("serving on ").nth(1) {
            let base = rest.split_whitespace().next().unwrap().to_string();
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return (child, base);
        }
        line.clear();
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    panic!("the sidecar never said where it serves ({status})");
}

/// SIGTERM a sidecar from [`spawn_serve`]; it must drain and exit 0.
pub fn stop_serve(mut child: std::process::Child) {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {}", child.id()))
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Serve `app` on 127.0.0.1:0 from a thread with its own runtime (a bundle server, a
/// decision-log collector); returns where it listens.
pub fn serve_router(app: axum::Router) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}
