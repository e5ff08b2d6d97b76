//! The sidecar's audit writer: one thread owns the log and commits the records that handlers send it through a bounded channel, a batch per transaction; a handler answers only once its decision is committed, and never hands out a decision it could not record.
//!
//! When the channel is full the handler waits up to [`AUDIT_ENQUEUE_TIMEOUT`] for room,
//! then answers 503 with `Retry-After`; a failed commit (a full disk) or a commit slower
//! than [`AUDIT_COMMIT_TIMEOUT`] is a 503 too. Allowed and denied decisions alike: the
//! log must hold every decision the sidecar hands out. A decision signed but refused
//! this way may still land in the log later (the commit was only slow): the log can hold
//! decisions nobody received, never the other way round.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::errors::ApiError;
use super::metrics::AuditMetrics;
use super::ServerError;
use crate::audit::{AuditError, AuditLog, Record, RecordOptions};
use crate::sign::SignError;

/// Records waiting for the writer. Above the evaluation gate's default capacity (workers
/// plus [`super::MAX_QUEUED_EVALUATIONS`]), so the channel only fills when commits fall
/// behind, not because of a burst the gate already admitted.
pub const AUDIT_CHANNEL_CAPACITY: usize = 512;

/// Most records committed in one transaction. One fsync per commit is the cost that
/// matters; a few hundred records amortise it to nothing while a commit stays well
/// under a millisecond of SQLite work.
pub const AUDIT_BATCH: usize = 256;

/// How long a handler waits for room in a full channel before answering 503. Long
/// enough to ride out one slow fsync, short next to the caller's own timeouts.
pub const AUDIT_ENQUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a handler waits for its record's commit before answering 503. A commit is
/// one fsync (milliseconds); a disk that takes longer is failing. Evaluation (3 s) plus
/// this stays under the sidecar's 9 s request budget.
pub const AUDIT_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how the sidecar records its decisions.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The SQLite log (created if missing).
    pub path: PathBuf,
    /// Masking and whether to store requests.
    pub options: RecordOptions,
    /// `PRAGMA max_page_count` (tests fill the "disk" with it).
    pub max_pages: Option<u64>,
}

/// Why a decision was not recorded, and so is not handed out.
#[derive(Debug, thiserror::Error)]
pub enum Unrecorded {
    /// The writer's queue stayed full.
    #[error("the audit log's queue stayed full ({AUDIT_CHANNEL_CAPACITY} records) for {} ms", AUDIT_ENQUEUE_TIMEOUT.as_millis())]
    QueueFull,
    /// The writer thread is gone.
    #[error("the audit writer has stopped")]
    Stopped,
    /// The writer thread went away with the record.
    #[error("the audit writer stopped before committing")]
    Dropped,
    /// The commit took longer than [`AUDIT_COMMIT_TIMEOUT`].
    #[error("the audit log did not commit within {} s", AUDIT_COMMIT_TIMEOUT.as_secs())]
    Slow,
    /// The commit failed (one error for the whole batch, so shared).
    #[error(transparent)]
    Append(Arc<AuditError>),
    /// The record could not be made (an admission's decision unsigned, a digest missing).
    #[error(transparent)]
    Unprepared(AuditError),
    /// An admission's record could not be signed.
    #[error(transparent)]
    Unsigned(SignError),
}

struct Job {
    record: Record,
    done: oneshot::Sender<Result<u64, Arc<AuditError>>>,
}

/// The handlers' end of the writer.
pub(super) struct AuditSink {
    tx: mpsc::Sender<Job>,
    options: RecordOptions,
}

impl AuditSink {
    /// Open the log (refusing to start if it cannot be written) and start the writer
    /// thread. Blocking.
    pub(super) fn start(config: &AuditConfig, metrics: AuditMetrics) -> Result<Self, ServerError> {
        let log = AuditLog::open_for_append(&config.path, config.max_pages)?;
        let (tx, rx) = mpsc::channel(AUDIT_CHANNEL_CAPACITY);
        std::thread::Builder::new()
            .name("promo-audit".into())
            .spawn(move || write_loop(log, rx, &metrics))
            .map_err(ServerError::AuditWriter)?;
        Ok(Self {
            tx,
            options: config.options.clone(),
        })
    }

    /// How records are made (masking), for the handler to prepare one off the runtime.
    pub(super) fn options(&self) -> &RecordOptions {
        &self.options
    }

    /// Hand a record to the writer and wait for its commit; its seq, or why the
    /// decision must not be handed out.
    pub(super) async fn record(&self, record: Record) -> Result<u64, ApiError> {
        let (done, committed) = oneshot::channel();
        self.tx
            .send_timeout(Job { record, done }, AUDIT_ENQUEUE_TIMEOUT)
            .await
            .map_err(|e| {
                ApiError::AuditUnavailable(match e {
                    mpsc::error::SendTimeoutError::Timeout(_) => Unrecorded::QueueFull,
                    mpsc::error::SendTimeoutError::Closed(_) => Unrecorded::Stopped,
                })
            })?;
        match tokio::time::timeout(AUDIT_COMMIT_TIMEOUT, committed).await {
            Ok(Ok(Ok(seq))) => Ok(seq),
            Ok(Ok(Err(e))) => Err(ApiError::AuditUnavailable(Unrecorded::Append(e))),
            Ok(Err(_dropped)) => Err(ApiError::AuditUnavailable(Unrecorded::Dropped)),
            Err(_elapsed) => Err(ApiError::AuditUnavailable(Unrecorded::Slow)),
        }
    }
}

/// The writer: take what is waiting (up to [`AUDIT_BATCH`]), commit it in one
/// transaction, answer every sender; until every sender is gone.
fn write_loop(mut log: AuditLog, mut rx: mpsc::Receiver<Job>, metrics: &AuditMetrics) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < AUDIT_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics
            .queued
            .set(i64::try_from(rx.len()).unwrap_or(i64::MAX));
        let (mut records, senders): (Vec<Record>, Vec<_>) =
            jobs.into_iter().map(|j| (j.record, j.done)).unzip();
        let started = std::time::Instant::now();
        let appended = log.append(&mut records);
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.records(appended.is_ok(), senders.len());
        match appended {
            Ok(_) => {
                for (record, done) in records.iter().zip(senders) {
                    let _ = done.send(Ok(record.seq));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = senders.len(), "audit append failed: refusing these decisions");
                let e = Arc::new(e);
                for done in senders {
                    let _ = done.send(Err(Arc::clone(&e)));
                }
            }
        }
    }
}
