//! Decision logs out: each decision as an OPA decision-log event, shipped to a collector in
//! gzipped JSON batches from a bounded buffer, with retry and backoff, drops counted.
//!
//! One shipper thread owns the network; the request path only pushes into the buffer.
//! When the collector is down, events wait in the buffer (oldest first) and the batch
//! that failed is retried with exponential backoff and jitter; once the buffer is full,
//! `drop-oldest` drops the oldest waiting event and counts it, `block` makes the decision
//! wait (up to [`BLOCK_WAIT`], then drops and counts) so nothing is lost silently.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::metrics::DecisionLogMetrics;
use crate::error_chain::ErrorChain;

/// How long `block` mode makes a decision wait for room before dropping its event.
pub const BLOCK_WAIT: Duration = Duration::from_secs(5);

/// The most bytes (uncompressed JSON) of one upload; a batch is cut before it would pass
/// this, except that one event always goes.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// What happens to a new event when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Overflow {
    /// Drop the oldest waiting event and count it (`decision_log_dropped`).
    DropOldest,
    /// Make the decision wait for room (at most 5 s, then drop and count).
    Block,
}

/// Where and how decision logs are shipped.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The collector's URL; events are POSTed to it as a gzipped JSON array (OPA's
    /// `/logs` upload format).
    pub url: String,
    /// The most events waiting in memory.
    pub buffer_events: usize,
    /// The most bytes (their JSON, as allocated) waiting in memory: events carry the
    /// (masked) request, so a count alone would not bound memory.
    pub buffer_bytes: usize,
    /// The most events in one upload.
    pub batch_events: usize,
    /// How long the shipper waits to fill a batch before sending what it has.
    pub flush_interval: Duration,
    /// First retry delay after a failed upload; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Per-upload timeout.
    pub timeout: Duration,
    /// Buffer-full behaviour.
    pub overflow: Overflow,
}

impl LogConfig {
    /// Defaults for `url`: 10 000 events or 64 MiB buffered, batches of up to 500 sent at least
    /// every second, retries from 250 ms to 30 s, 10 s per upload, drop-oldest.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            buffer_events: 10_000,
            buffer_bytes: 64 << 20,
            batch_events: 500,
            flush_interval: Duration::from_secs(1),
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            overflow: Overflow::DropOldest,
        }
    }
}

/// The sidecar's decision-log settings: where and how to ship, what of the request goes
/// in the event's `input`, and the `labels` every event carries.
#[derive(Debug, Clone)]
pub struct DecisionLogSetup {
    /// Shipping.
    pub log: LogConfig,
    /// Masking (the audit log's rules: `--audit-mask` and `--decision-log-mask`) and
    /// whether `input` is sent at all.
    pub input: crate::audit::RecordOptions,
    /// OPA's `labels` (`id`, `version`, and the sidecar's environment).
    pub labels: Value,
}

/// Counters since start: what was shipped, dropped, and how many uploads failed.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Events the collector accepted (2xx).
    pub sent: AtomicU64,
    /// Events dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// Uploads that failed (connection error, timeout, non-2xx); each is retried.
    pub failed_uploads: AtomicU64,
}

struct Queue {
    /// Each event's JSON.
    events: VecDeque<Vec<u8>>,
    bytes: usize,
    closing: bool,
}

impl Queue {
    fn full(&self, cfg: &LogConfig, adding: usize) -> bool {
        !self.events.is_empty()
            && (self.events.len() >= cfg.buffer_events.max(1)
                || self.bytes + adding > cfg.buffer_bytes)
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let e = self.events.pop_front()?;
        self.bytes -= e.capacity();
        Some(e)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when events arrive or the logger closes.
    arrived: Condvar,
    /// Signalled when the shipper takes events out (room for `block`).
    room: Condvar,
    stats: LogStats,
    metrics: DecisionLogMetrics,
    config: LogConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue half-changed (every
        // change is one VecDeque call), so a poisoned lock is still usable.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The decision logger: cheap to clone, one shipper thread behind it.
#[derive(Clone)]
pub struct DecisionLogger {
    shared: Arc<Shared>,
    shipper: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl DecisionLogger {
    /// Starts the shipper thread.
    pub fn start(config: LogConfig, metrics: DecisionLogMetrics) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                events: VecDeque::new(),
                bytes: 0,
                closing: false,
            }),
            arrived: Condvar::new(),
            room: Condvar::new(),
            stats: LogStats::default(),
            metrics,
            config,
        });
        let for_thread = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || ship(&for_thread))?;
        Ok(Self {
            shared,
            shipper: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// Queue one event; never waits on the network.
    pub fn log(&self, event: &Value) {
        let shared = &self.shared;
        let cfg = &shared.config;
        let Ok(mut json) = serde_json::to_vec(event) else {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            shared.metrics.events("dropped", 1);
            return;
        };
        // The buffer's bound is on memory: `to_vec` grows by doubling, so an event could
        // hold twice its length (measured: a full 64 MiB buffer cost 121 MiB of RSS).
        json.shrink_to_fit();
        let size = json.capacity();
        let mut q = shared.lock();
        if q.full(cfg, size) && cfg.overflow == Overflow::Block {
            let deadline = Instant::now() + BLOCK_WAIT;
            while q.full(cfg, size) && !q.closing {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                q = shared
                    .room
                    .wait_timeout(q, left)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        while q.full(cfg, size) {
            q.pop();
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            shared.metrics.events("dropped", 1);
        }
        q.bytes += size;
        q.events.push_back(json);
        drop(q);
        shared.arrived.notify_one();
    }

    /// The counters.
    pub fn stats(&self) -> &LogStats {
        &self.shared.stats
    }

    /// Events waiting now.
    pub fn waiting(&self) -> usize {
        self.shared.lock().events.len()
    }

    /// Stop taking events and give the shipper until `deadline` to send what waits;
    /// returns how many events were still unsent (and are lost).
    pub fn shutdown(&self, within: Duration) -> usize {
        self.shared.lock().closing = true;
        self.shared.arrived.notify_all();
        self.shared.room.notify_all();
        let handle = self
            .shipper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let deadline = Instant::now() + within;
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        self.waiting()
    }
}

/// The shipper loop: take a batch, upload until it is accepted (or the logger closes
/// past its deadline), repeat.
fn ship(shared: &Shared) {
    let agent = ureq::AgentBuilder::new()
        .timeout(shared.config.timeout)
        .redirects(0)
        .build();
    let mut delay = shared.config.retry_min;
    loop {
        let batch = match next_batch(shared) {
            Some(b) => b,
            None => return,
        };
        loop {
            match upload(&agent, &shared.config.url, &batch) {
                Ok(()) => {
                    shared
                        .stats
                        .sent
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    shared.metrics.events("sent", batch.len() as u64);
                    delay = shared.config.retry_min;
                    break;
                }
                Err(e) => {
                    let why = ErrorChain(&e);
                    shared.stats.failed_uploads.fetch_add(1, Ordering::Relaxed);
                    shared.metrics.failed_upload();
                    tracing::warn!(url = %shared.config.url, events = batch.len(), "decision log upload failed, retrying in {delay:?}: {why}");
                    if shared.lock().closing {
                        // Closing: one try only; what is left is reported by shutdown.
                        let mut q = shared.lock();
                        for e in batch.into_iter().rev() {
                            q.bytes += e.capacity();
                            q.events.push_front(e);
                        }
                        return;
                    }
                    std::thread::sleep(jitter(delay));
                    delay = (delay * 2).min(shared.config.retry_max);
                }
            }
        }
    }
}

/// Waits for events (up to the flush interval once one is there), then takes a batch.
/// `None` when closing with nothing left.
fn next_batch(shared: &Shared) -> Option<Vec<Vec<u8>>> {
    let cfg = &shared.config;
    let mut q = shared.lock();
    while q.events.is_empty() {
        if q.closing {
            return None;
        }
        q = shared
            .arrived
            .wait(q)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    let first = Instant::now();
    while q.events.len() < cfg.batch_events && !q.closing {
        let left = cfg.flush_interval.saturating_sub(first.elapsed());
        if left.is_zero() {
            break;
        }
        q = shared
            .arrived
            .wait_timeout(q, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
    let mut batch = Vec::new();
    let mut bytes = 0;
    while batch.len() < cfg.batch_events.max(1) {
        let next = q.events.front().map_or(0, Vec::len);
        if next == 0 || (!batch.is_empty() && bytes + next > MAX_BATCH_BYTES) {
            break;
        }
        bytes += next;
        batch.extend(q.pop());
    }
    drop(q);
    shared.room.notify_all();
    Some(batch)
}

/// Why a batch did not reach the endpoint (for the log line; the batch is retried).
#[derive(Debug, thiserror::Error)]
enum UploadError {
    /// Gzip refused the bytes (writing to memory: not expected, but not hidden).
    #[error("cannot compress the batch")]
    Compress(#[source] std::io::Error),
    /// The endpoint answered, but not with a success.
    #[error("HTTP {0}")]
    Status(u16),
    /// The request did not get an answer (boxed: ureq's error is large). Its words
    /// already end with its causes.
    #[error(transparent)]
    Transport(Box<ureq::Error>),
}

/// POST one gzipped JSON array; `Err` says why.
fn upload(agent: &ureq::Agent, url: &str, batch: &[Vec<u8>]) -> Result<(), UploadError> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"[").map_err(UploadError::Compress)?;
    for (i, event) in batch.iter().enumerate() {
        if i > 0 {
            gz.write_all(b",").map_err(UploadError::Compress)?;
        }
        gz.write_all(event).map_err(UploadError::Compress)?;
    }
    gz.write_all(b"]").map_err(UploadError::Compress)?;
    let body = gz.finish().map_err(UploadError::Compress)?;
    match agent
        .post(url)
        .set("Content-Type", "application/json")
        .set("Content-Encoding", "gzip")
        .send_bytes(&body)
    {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) => Err(UploadError::Status(code)),
        Err(e) => Err(UploadError::Transport(Box::new(e))),
    }
}

/// `d` plus up to 20 % more, so a fleet does not retry in step.
fn jitter(d: Duration) -> Duration {
    use rand_core::RngCore as _;
    let spread = d.as_millis() as u64 / 5;
    let extra = if spread == 0 {
        0
    } else {
        rand_core::OsRng.next_u64() % spread
    };
    d + Duration::from_millis(extra)
}

/// One decision as an OPA decision-log event, with our signed envelope beside it.
pub fn event(
    signed: &crate::evaluator::SignedDecision,
    input: Option<&Value>,
    path: &str,
    labels: &Value,
) -> Value {
    let d = &signed.decision;
    let result = json!({
        "allowed": d.allowed,
        "violations": d.violations.iter().map(|v| &v.id).collect::<Vec<_>>(),
        "warnings": d.warnings.iter().map(|v| &v.id).collect::<Vec<_>>(),
    });
    let mut e = query_event(
        &QueryFacts {
            decision_id: &d.decision_id,
            path,
            timestamp: &d.evaluated_at,
            bundle_revision: d.policy.revision.as_deref(),
            bundle_sha256: d.policy.digest.sha256().unwrap_or(""),
        },
        input,
        Some(result),
        labels,
    );
    e["envelope"] = signed.envelope.clone();
    if let Some(t) = &d.trace {
        e["trace_id"] = json!(t.trace_id);
        e["span_id"] = json!(t.span_id);
    }
    e
}

/// What every event names besides its input and result.
pub struct QueryFacts<'a> {
    /// A fresh UUIDv7 for a Data API query; the decision's id for a promotion.
    pub decision_id: &'a str,
    /// The queried path, OPA style (`promo/decision`).
    pub path: &'a str,
    /// RFC 3339.
    pub timestamp: &'a str,
    /// The bundle's `.manifest` revision, if any.
    pub bundle_revision: Option<&'a str>,
    /// The bundle digest: sha256, lowercase hex.
    pub bundle_sha256: &'a str,
}

/// An OPA decision-log event for any query: a Data API answer (`result` absent when the
/// document was undefined, as OPA logs it) or, through [`event`], a signed promotion
/// decision.
pub fn query_event(
    facts: &QueryFacts<'_>,
    input: Option<&Value>,
    result: Option<Value>,
    labels: &Value,
) -> Value {
    let mut bundles = serde_json::Map::new();
    bundles.insert(
        "promo".into(),
        json!({
            "revision": facts.bundle_revision.unwrap_or_default(),
            "digest": {"sha256": facts.bundle_sha256},
        }),
    );
    let mut e = json!({
        "decision_id": facts.decision_id,
        "path": facts.path,
        "timestamp": facts.timestamp,
        "labels": labels,
        "bundles": bundles,
    });
    if let Some(result) = result {
        e["result"] = result;
    }
    if let Some(input) = input {
        e["input"] = input.clone();
    }
    e
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    fn config(url: &str, buffer: usize) -> LogConfig {
        LogConfig {
            buffer_events: buffer,
            batch_events: 10,
            flush_interval: Duration::from_millis(20),
            retry_min: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            ..LogConfig::new(url)
        }
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_it() {
        // Nothing listens on port 9 of a closed loopback: every upload fails fast.
        let log = DecisionLogger::start(
            config("http://127.0.0.1:9/logs", 5),
            DecisionLogMetrics::default(),
        )
        .unwrap();
        for i in 0..50 {
            log.log(&json!({"decision_id": i}));
        }
        std::thread::sleep(Duration::from_millis(100));
        let dropped = log.stats().dropped.load(Ordering::Relaxed);
        let waiting = log.waiting();
        // The shipper may hold one batch (up to 10) in hand while it retries.
        assert!(waiting <= 5, "{waiting}");
        assert!(dropped >= 35, "{dropped}");
        assert!(log.stats().failed_uploads.load(Ordering::Relaxed) >= 1);
        assert_eq!(log.stats().sent.load(Ordering::Relaxed), 0);
        log.shutdown(Duration::from_millis(500));
    }
}
