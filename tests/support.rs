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

/// A `promo-policy serve` started by [`spawn_serve`]: where it serves, and the process,
/// which is killed and reaped when the guard is dropped, so a test that panics never
/// leaves a sidecar running (nor the test binary waiting on it). [`stop_serve`] stops it
/// the way Kubernetes does and checks the exit.
pub struct Sidecar {
    /// `http://127.0.0.1:PORT`, from its "serving on" line.
    pub base: String,
    /// `None` once [`stop_serve`] has taken it.
    child: Option<std::process::Child>,
}

impl Sidecar {
    /// The process id, to signal it (`kill -HUP`).
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Start `promo-policy serve --addr 127.0.0.1:0 ARGS...` and read the base URL from its
/// "serving on" line; stderr keeps draining so the server never blocks on a full pipe.
/// Stop it with [`stop_serve`]; dropping the guard kills it.
pub fn spawn_serve<I, S>(args: I) -> Sidecar
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
    let stderr = child.stderr.take().unwrap();
    // From here on the guard owns the child: a panic below still kills it.
    let mut sidecar = Sidecar {
        base: String::new(),
        child: Some(child),
    };
    let mut stderr = std::io::BufReader::new(stderr);
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.split("serving on ").nth(1) {
            sidecar.base = rest.split_whitespace().next().unwrap().to_string();
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return sidecar;
        }
        line.clear();
    }
    let mut child = sidecar.child.take().unwrap();
    let _ = child.kill();
    let status = child.wait().unwrap();
    panic!("the sidecar never said where it serves ({status})");
}

/// How long a sidecar may take to drain and exit after SIGTERM before the test fails.
const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// SIGTERM a sidecar from [`spawn_serve`]; it must drain and exit 0 (within
/// [`STOP_DEADLINE`]; one that does not is killed and the test fails).
pub fn stop_serve(mut sidecar: Sidecar) {
    let mut child = sidecar.child.take().unwrap();
    let signalled = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {}", child.id()))
        .status()
        .is_ok_and(|s| s.success());
    let deadline = std::time::Instant::now() + STOP_DEADLINE;
    let exit = loop {
        match child.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if !signalled || std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    assert!(signalled, "kill -TERM {} failed", child.id());
    let exit = exit.expect("the sidecar did not exit after SIGTERM");
    assert_eq!(exit.code(), Some(0));
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
