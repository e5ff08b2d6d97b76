//! Decision logs out, through the real `serve` binary and a collector the test runs on
//! loopback: events arrive batched and gzipped in OPA's shape with the signed envelope,
//! masked and traced; a collector that is down loses nothing within the buffer, and every
//! event beyond it is counted as dropped.

use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::support::{request, statement_of, AT};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[derive(Default)]
struct Collector {
    up: AtomicBool,
    uploads: AtomicU64,
    events: Mutex<Vec<Value>>,
}

/// A collector on 127.0.0.1:0: 204 and keeps the events while up, 503 while down.
fn collector() -> (Arc<Collector>, String) {
    let state = Arc::new(Collector::default());
    state.up.store(true, Ordering::SeqCst);
    let s = Arc::clone(&state);
    let app = axum::Router::new().route(
        "/logs",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = Arc::clone(&s);
            async move {
                s.uploads.fetch_add(1, Ordering::SeqCst);
                if !s.up.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                assert_eq!(headers["content-encoding"], "gzip");
                let mut json = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut json)
                    .unwrap();
                let batch: Vec<Value> = serde_json::from_slice(&json).unwrap();
                s.events.lock().unwrap().extend(batch);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let url = format!("http://{}/logs", crate::support::serve_router(app));
    (state, url)
}

/// `serve` with the decision log pointed at `url`; the running sidecar.
fn serve(url: &str, extra: &[&str]) -> crate::support::Sidecar {
    let mut args = vec!["--environment", "prod", "--watch-interval", "0", "--at", AT];
    args.extend(["--decision-log-url", url]);
    args.extend(extra);
    crate::support::spawn_serve(args)
}

fn decide(base: &str) -> Value {
    ureq::post(&format!("{base}/v1/promotions/evaluate"))
        .send_json(request())
        .unwrap()
        .into_json()
        .unwrap()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metric(base: &str, prefix: &str) -> f64 {
    let text = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn decisions_arrive_in_opa_shape_masked_traced_and_signed() {
    let (rx, url) = collector();
    let sidecar = serve(&url, &["--decision-log-mask", "/change/author"]);
    let base = sidecar.base.clone();
    let plain = decide(&base);
    let traced = ureq::post(&format!("{base}/v1/promotions/evaluate"))
        .set("traceparent", TP)
        .send_json(request())
        .unwrap();
    let header = traced.header("traceparent").unwrap().to_string();
    let traced: Value = traced.into_json().unwrap();
    assert!(
        header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{header}"
    );
    assert_eq!(traced["decision"]["trace"]["parentId"], "00f067aa0ba902b7");
    wait_for("two events", || rx.events.lock().unwrap().len() == 2);
    let events = rx.events.lock().unwrap().clone();
    for (event, signed) in events.iter().zip([&plain, &traced]) {
        assert_eq!(event["decision_id"], signed["decision"]["decisionId"]);
        assert_eq!(event["path"], "promo/decision");
        assert_eq!(event["result"]["allowed"], true);
        assert_eq!(event["timestamp"], AT);
        assert_eq!(event["labels"]["app"], "promo-policy");
        assert_eq!(event["labels"]["environment"], "prod");
        assert_eq!(
            event["bundles"]["promo"]["digest"],
            signed["decision"]["policy"]["digest"]
        );
        assert_eq!(event["input"]["change"]["author"], "***masked***");
        assert_eq!(event["input"]["id"], request()["id"]);
        // The signed envelope travels with the event: the collector can verify it.
        assert_eq!(
            statement_of(&event["envelope"])["predicate"]["decisionId"],
            signed["decision"]["decisionId"]
        );
    }
    assert!(events[0].get("trace_id").is_none());
    assert_eq!(events[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(events[1]["span_id"], traced["decision"]["trace"]["spanId"]);
    assert_eq!(
        metric(&base, "promo_decision_log_events_total{result=\"sent\"}"),
        2.0
    );
    crate::support::stop_serve(sidecar);
}

#[test]
fn a_collector_down_for_a_while_loses_nothing_within_the_buffer_and_counts_the_rest() {
    let (rx, url) = collector();
    rx.up.store(false, Ordering::SeqCst);
    let sidecar = serve(&url, &["--decision-log-buffer", "20"]);
    let base = sidecar.base.clone();
    let mut ids = Vec::new();
    for _ in 0..15 {
        ids.push(decide(&base)["decision"]["decisionId"].clone());
    }
    wait_for("a failed upload", || {
        metric(&base, "promo_decision_log_failed_uploads_total") >= 1.0
    });
    assert!(rx.events.lock().unwrap().is_empty());
    rx.up.store(true, Ordering::SeqCst);
    wait_for("the 15 held events", || {
        rx.events.lock().unwrap().len() >= 15
    });
    std::thread::sleep(Duration::from_millis(300));
    let got: Vec<Value> = rx
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["decision_id"].clone())
        .collect();
    assert_eq!(got, ids, "every held event, once, in order");

    // Down again, and more decisions than the buffer holds: each is sent or counted.
    rx.up.store(false, Ordering::SeqCst);
    rx.events.lock().unwrap().clear();
    let before = metric(&base, "promo_decision_log_events_total{result=\"sent\"}");
    for _ in 0..60 {
        decide(&base);
    }
    let dropped = metric(&base, "promo_decision_log_events_total{result=\"dropped\"}");
    assert!(
        dropped >= 20.0,
        "60 events through a buffer of 20: {dropped} dropped"
    );
    rx.up.store(true, Ordering::SeqCst);
    wait_for("the rest", || {
        metric(&base, "promo_decision_log_events_total{result=\"sent\"}") - before + dropped >= 60.0
    });
    let sent = metric(&base, "promo_decision_log_events_total{result=\"sent\"}") - before;
    assert_eq!(sent + dropped, 60.0, "sent {sent} + dropped {dropped}");
    assert_eq!(rx.events.lock().unwrap().len() as f64, sent);
    crate::support::stop_serve(sidecar);
}

#[test]
fn data_api_answers_are_logged_too_masked_and_with_the_bundle() {
    let (rx, url) = collector();
    let sidecar = serve(&url, &["--decision-log-mask", "/change/author"]);
    let base = sidecar.base.clone();
    let body = serde_json::json!({"input": request()});
    let answer: Value = ureq::post(&format!("{base}/v1/data/promo/decision/allow"))
        .send_json(body.clone())
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(answer["result"], true);
    // An undefined document is logged without a result, as OPA logs it.
    ureq::post(&format!("{base}/v1/data/promo/nothing_here"))
        .send_json(body)
        .unwrap();
    wait_for("two events", || rx.events.lock().unwrap().len() == 2);
    let events = rx.events.lock().unwrap().clone();
    assert_eq!(events[0]["path"], "promo/decision/allow");
    assert_eq!(events[0]["result"], true);
    assert_eq!(events[1]["path"], "promo/nothing_here");
    assert!(events[1].get("result").is_none(), "{}", events[1]);
    for event in &events {
        assert_eq!(event["input"]["change"]["author"], "***masked***");
        assert_eq!(event["timestamp"], AT);
        assert_eq!(event["labels"]["app"], "promo-policy");
        assert_eq!(
            event["bundles"]["promo"]["digest"]["sha256"]
                .as_str()
                .unwrap()
                .len(),
            64
        );
        // No promotion decision was made, so nothing was signed.
        assert!(event.get("envelope").is_none());
        assert_eq!(event["decision_id"].as_str().unwrap().len(), 36);
    }
    assert_ne!(events[0]["decision_id"], events[1]["decision_id"]);
    crate::support::stop_serve(sidecar);
}
