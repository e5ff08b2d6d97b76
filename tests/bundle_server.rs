//! Bundles from a server, through the real `serve` binary and a bundle server the test
//! runs on loopback: new revisions are picked up (ETag honoured), and a 404, a truncated
//! archive, a tampered or unsigned bundle and a slow server change nothing; a restart
//! without the server serves the last good bundle from the cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

use crate::bundles::{rewrite, Setup};
use crate::support::{request, AT};

#[derive(Clone)]
enum Serve {
    Bundle(Vec<u8>, String),
    Status(u16),
    Slow(Duration, Vec<u8>),
}

struct BundleServer {
    serve: Mutex<Serve>,
    not_modified: AtomicU64,
}

fn bundle_server(first: Serve) -> (Arc<BundleServer>, String) {
    let state = Arc::new(BundleServer {
        serve: Mutex::new(first),
        not_modified: AtomicU64::new(0),
    });
    let s = Arc::clone(&state);
    let app = axum::Router::new().route(
        "/bundles/promo.tar.gz",
        axum::routing::get(move |headers: HeaderMap| {
            let s = Arc::clone(&s);
            async move {
                let serve = s.serve.lock().unwrap().clone();
                match serve {
                    Serve::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
                    Serve::Slow(wait, bytes) => {
                        tokio::time::sleep(wait).await;
                        bytes.into_response()
                    }
                    Serve::Bundle(bytes, etag) => {
                        if headers
                            .get("if-none-match")
                            .is_some_and(|v| v == etag.as_str())
                        {
                            s.not_modified.fetch_add(1, Ordering::SeqCst);
                            return StatusCode::NOT_MODIFIED.into_response();
                        }
                        let mut r = bytes.into_response();
                        r.headers_mut()
                            .insert("etag", HeaderValue::from_str(&etag).unwrap());
                        r
                    }
                }
            }
        }),
    );
    let url = format!(
        "http://{}/bundles/promo.tar.gz",
        crate::support::serve_router(app)
    );
    (state, url)
}

fn serve(setup: &Setup, url: &str, cache: &std::path::Path) -> crate::support::Sidecar {
    let mut args: Vec<std::ffi::OsString> = [
        "--environment",
        "prod",
        "--at",
        AT,
        "--watch-interval",
        "0",
        "--bundle-poll-interval",
        "1s",
        "--bundle-timeout",
        "2s",
        "--bundle-url",
        url,
        "--bundle-cache",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(cache.into());
    args.push("--trust".into());
    args.push(setup.path("trust.json").into());
    crate::support::spawn_serve(args)
}

fn health(base: &str) -> Value {
    ureq::get(&format!("{base}/health"))
        .call()
        .unwrap()
        .into_json()
        .unwrap()
}

fn revision(base: &str) -> Value {
    let d: Value = ureq::post(&format!("{base}/v1/promotions/evaluate"))
        .send_json(request())
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(d["decision"]["allowed"], true, "{d}");
    d["decision"]["policy"]["revision"].clone()
}

/// Waits until the sidecar has polled and recorded `result` (and `error` in its message).
fn wait_poll(base: &str, result: &str, error: &str) -> Value {
    let start = Instant::now();
    loop {
        let h = health(base);
        let source = &h["bundle"]["source"];
        if source["lastResult"] == result
            && source["lastError"].as_str().unwrap_or("").contains(error)
        {
            return h;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no `{result}` `{error}` poll: {h}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn new_revisions_arrive_and_bad_bundles_never_replace_the_last_good_one() {
    let setup = Setup::new();
    let key = Some(("bundle.key", "bundles-test"));
    let r1 = std::fs::read(setup.build_revision("r1.tar.gz", "r1", key)).unwrap();
    let r2_path = setup.build_revision("r2.tar.gz", "r2", key);
    let r2 = std::fs::read(&r2_path).unwrap();
    let (bs, url) = bundle_server(Serve::Bundle(r1, "\"r1\"".into()));
    let cache = setup.path("cache");
    let sidecar = serve(&setup, &url, &cache);
    let base = sidecar.base.clone();
    assert_eq!(health(&base)["bundle"]["revision"], "r1");
    assert_eq!(revision(&base), "r1");
    // Unchanged: the server is asked with If-None-Match and answers 304.
    let start = Instant::now();
    while bs.not_modified.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no conditional request"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    *bs.serve.lock().unwrap() = Serve::Bundle(r2.clone(), "\"r2\"".into());
    let start = Instant::now();
    while revision(&base) != "r2" {
        assert!(start.elapsed() < Duration::from_secs(20), "r2 never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("promo_bundle_revision_info{revision=\"r2\"} 1"),
        "{metrics}"
    );

    let tampered = setup.path("tampered.tar.gz");
    rewrite(&r2_path, &tampered, |files| {
        let f = files
            .iter_mut()
            .find(|f| f.path.ends_with("approvals.rego"))
            .unwrap();
        f.bytes.extend_from_slice(b"\n# changed\n");
    });
    let unsigned = std::fs::read(setup.build_revision("r9.tar.gz", "r9", None)).unwrap();
    let cases: Vec<(Serve, &str)> = vec![
        (
            Serve::Bundle(std::fs::read(&tampered).unwrap(), "\"t\"".into()),
            "tampered",
        ),
        (Serve::Status(404), "HTTP 404"),
        (
            Serve::Bundle(r2[..r2.len() / 2].to_vec(), "\"half\"".into()),
            "not a gzip-compressed tar archive",
        ),
        (
            Serve::Bundle(unsigned, "\"u\"".into()),
            "requireSignedBundle",
        ),
        (Serve::Slow(Duration::from_secs(5), r2.clone()), "timed out"),
    ];
    for (serve, error) in cases {
        *bs.serve.lock().unwrap() = serve;
        let h = wait_poll(&base, "error", error);
        assert_eq!(h["bundle"]["revision"], "r2", "{h}");
        assert_eq!(revision(&base), "r2");
    }
    crate::support::stop_serve(sidecar);

    // The server is gone; a restart serves the cached r2.
    *bs.serve.lock().unwrap() = Serve::Status(503);
    let sidecar = serve(&setup, &url, &cache);
    let base = sidecar.base.clone();
    assert_eq!(revision(&base), "r2");
    crate::support::stop_serve(sidecar);
}

#[test]
fn without_a_server_or_a_cache_the_sidecar_does_not_start() {
    let setup = Setup::new();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("promo-policy"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--bundle-url",
            "http://127.0.0.1:9/b.tar.gz",
        ])
        .arg("--bundle-cache")
        .arg(setup.path("empty-cache"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no bundle to serve") && stderr.contains("127.0.0.1:9"),
        "{stderr}"
    );
}
