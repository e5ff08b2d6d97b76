//! Batch evaluation: many requests through one shared `Engine` in parallel, results in
//! input order; one bad input becomes one failed result, never the end of the batch.
//!
//! # Inputs
//!
//! Read by [`crate::input`] (JSONL lines, a directory of request files, stdin; limits,
//! positions, records vs bare requests). Each input gets a 0-based `index` in input
//! order and a `source`: `line N` (1-based) for JSONL, the file name for a directory.
//! Each is evaluated at the time [`crate::input::time`] gives: `--at` ([`BatchOptions::at`])
//! when set, else a record's own `evaluatedAt`, else the clock (read per decision).
//!
//! # Results
//!
//! One JSONL line per input (in the shard), in input order:
//!
//! - evaluated: `{"index", "source", "allowed", "decision", "envelope"}`, where
//!   `allowed` repeats `decision.allowed` so `jq 'select(.allowed)'` works;
//! - not evaluated (not UTF-8, not JSON, schema, too large, unreadable file):
//!   `{"index", "source", "allowed": false, "error": {"id": "request.invalid", "msg"}}`,
//!   with no decision and no envelope;
//! - an audit record of an admission (break-glass, dry-run; [`crate::audit::RecordKind`]),
//!   which holds no promotion request: `{"index", "source", "allowed": false,
//!   "skipped": {"id": "audit.admission_record", "msg"}}`, counted as `admissionRecords`,
//!   neither a denial nor invalid (it does not change the exit code) and never recorded.
//!
//! # Audit
//!
//! With a [`Recorder`], each chunk's decisions are appended to the audit log in one
//! transaction, in input order, *before* the chunk's results are written: a result line
//! with a decision exists only for a recorded decision. A writer thread commits chunk k
//! while the pool evaluates chunk k+1, so the commit (and its fsync) costs little wall
//! time. Inputs that were not evaluated
//! (no decision) are not recorded. A failed append stops the batch
//! ([`BatchError::Audit`], saying how far the log got).
//!
//! # Memory
//!
//! At most [`CHUNK_INPUTS`] inputs (and about [`CHUNK_BYTES`] of them) are in memory at
//! once; a line longer than the limit is counted and skipped, never buffered.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::{AuditError, Record, RecordOptions, Sink};
use crate::decision::Decision;
use crate::evaluator::{Engine, Evaluator};
use crate::input::{InputError, Item, Origin, Refusal, ShardError, TimeRule};
use crate::pool::EvaluatorPool;

pub use crate::input::{Input, ProgressLen, Shard, CHUNK_BYTES, CHUNK_INPUTS, INVALID_ID};

#[cfg(feature = "test-support")]
pub mod workload;

/// The error id of a result whose decision could not be signed.
pub const UNSIGNED_ID: &str = "decision.unsigned";

/// The error id of a result whose evaluation panicked (a bug: please report it).
pub const INTERNAL_ID: &str = "engine.internal";

/// The error id of a result whose decision could not be made into an audit record, and
/// is therefore withheld.
pub const UNRECORDABLE_ID: &str = "audit.unrecordable";

/// The id of a skipped input that is an audit record of an admission, not a promotion.
pub const ADMISSION_RECORD_ID: &str = "audit.admission_record";

/// Errors that stop a batch (exit 2). Problems with one input never do: they become
/// that input's result.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The input cannot be opened, listed or read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Writing results failed (a full disk, a closed pipe).
    #[error("cannot write results: {0}")]
    Write(#[source] io::Error),
    /// Appending a chunk's decisions to the audit log failed; the batch stopped there.
    #[error("the batch stopped after recording {recorded} decisions and printing the results of its first {printed} inputs (nothing after)")]
    Audit {
        /// Why the append failed (names the log and its last committed seq).
        #[source]
        source: AuditError,
        /// Decisions of this batch committed to the log.
        recorded: u64,
        /// Results written (every one with a decision is recorded).
        printed: u64,
    },
    /// The worker threads could not be started.
    #[error("cannot start {jobs} worker threads: {reason}")]
    Pool {
        /// Threads asked for.
        jobs: usize,
        /// What rayon said.
        reason: String,
    },
    /// A `--shard` value is not `K/N` with `0 <= K < N`.
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// How to run a batch.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Worker threads (at least 1).
    pub jobs: usize,
    /// Which inputs to evaluate.
    pub shard: Shard,
    /// The evaluation time of every decision; `None` reads the clock per decision.
    pub at: Option<OffsetDateTime>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            jobs: default_jobs(),
            shard: Shard::ALL,
            at: None,
        }
    }
}

/// All cores (as the OS reports them to this process), or 1 if unknown.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Where a batch records its decisions: an open audit log and how records are made.
#[derive(Debug)]
pub struct Recorder<'a> {
    /// The log, opened for appending before the batch starts.
    pub log: &'a mut dyn Sink,
    /// Masking, and whether requests are stored.
    pub options: &'a RecordOptions,
}

/// What became of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputVerdict {
    /// Evaluated and allowed.
    Allowed,
    /// Evaluated and denied.
    Denied,
    /// Not evaluated (invalid input, or no signed decision could be made).
    Invalid,
    /// Not evaluated: an audit record of an admission, with no promotion to replay.
    AdmissionRecord,
}

/// Tallies of a batch so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Results written.
    pub inputs: u64,
    /// Allowed decisions.
    pub allowed: u64,
    /// Denied decisions.
    pub denied: u64,
    /// Inputs that could not be evaluated.
    pub invalid: u64,
    /// Audit records of admissions, skipped.
    pub admission_records: u64,
}

impl Counts {
    fn add(&mut self, v: InputVerdict) {
        self.inputs += 1;
        match v {
            InputVerdict::Allowed => self.allowed += 1,
            InputVerdict::Denied => self.denied += 1,
            InputVerdict::Invalid => self.invalid += 1,
            InputVerdict::AdmissionRecord => self.admission_records += 1,
        }
    }
}

/// What a batch did, for the closing line on stderr and `--summary-json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    /// Results written.
    pub inputs: u64,
    /// Allowed decisions.
    pub allowed: u64,
    /// Denied decisions.
    pub denied: u64,
    /// Inputs that could not be evaluated (each also a failed result).
    pub invalid: u64,
    /// Audit records of admissions (break-glass, dry-run), skipped: no promotion to
    /// replay; they neither deny nor count as invalid.
    pub admission_records: u64,
    /// Directory entries skipped as not request files.
    pub skipped: u64,
    /// Worker threads.
    pub jobs: usize,
    /// `K/N`, when sharded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Wall time of the batch, from the first read to the last write.
    pub wall_seconds: f64,
    /// Results (decisions and refusals) per second of wall time.
    pub decisions_per_second: f64,
    /// What went into the audit log, when recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<RecordedRange>,
}

/// The records a batch appended to the audit log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRange {
    /// Records appended.
    pub records: u64,
    /// The first one's seq (0 when none).
    pub first_seq: u64,
    /// The last one's seq (0 when none).
    pub last_seq: u64,
}

impl BatchSummary {
    /// Whether every input was allowed (exit 0); otherwise exit 1.
    pub fn all_allowed(&self) -> bool {
        self.denied == 0 && self.invalid == 0
    }
}

impl std::fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} inputs: {} allowed, {} denied, {} invalid",
            self.inputs, self.allowed, self.denied, self.invalid
        )?;
        if self.admission_records > 0 {
            write!(
                f,
                ", {} admission records skipped (not promotions)",
                self.admission_records
            )?;
        }
        if self.skipped > 0 {
            write!(f, " ({} files skipped)", self.skipped)?;
        }
        write!(
            f,
            "; {:.1} decisions/s; wall {:.2}s; {} jobs",
            self.decisions_per_second, self.wall_seconds, self.jobs
        )?;
        if let Some(shard) = &self.shard {
            write!(f, "; shard {shard}")?;
        }
        if let Some(r) = &self.recorded {
            match r.records {
                0 => write!(f, "; nothing to record")?,
                n => write!(
                    f,
                    "; recorded {n} decisions as seq {}..={}",
                    r.first_seq, r.last_seq
                )?,
            }
        }
        Ok(())
    }
}

/// Progress callbacks; the CLI draws a bar with them. All default to nothing.
pub trait Progress: Sync {
    /// An input is done; `position` is its end (a byte offset for JSONL, a count of
    /// inputs for a directory). Called from worker threads, in any order.
    fn input_done(&self, position: u64) {
        let _ = position;
    }
    /// A chunk was written; `counts` are the totals so far.
    fn chunk_written(&self, counts: &Counts, elapsed: Duration) {
        let _ = (counts, elapsed);
    }
}

/// No progress reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Evaluate every input of `options.shard`, writing one JSONL result per input to
/// `out` in input order, chunk by chunk. Only reading the input, writing `out` and
/// starting threads can fail; every problem with an input is that input's result.
pub fn run(
    engine: &Arc<Engine>,
    input: &mut Input,
    out: &mut dyn Write,
    options: &BatchOptions,
    progress: &dyn Progress,
) -> Result<BatchSummary, BatchError> {
    run_recorded(engine, input, out, options, progress, None)
}

/// [`run`], appending every decision to an audit log first (see the module docs).
pub fn run_recorded(
    engine: &Arc<Engine>,
    input: &mut Input,
    out: &mut dyn Write,
    options: &BatchOptions,
    progress: &dyn Progress,
    recorder: Option<Recorder<'_>>,
) -> Result<BatchSummary, BatchError> {
    let record_options = recorder.as_ref().map(|r| r.options);
    let jobs = options.jobs.max(1);
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("promo-batch-{i}"))
        .build()
        .map_err(|e| BatchError::Pool {
            jobs,
            reason: e.to_string(),
        })?;
    // One warm evaluator per worker thread for the whole batch.
    let evaluators = EvaluatorPool::new(Arc::clone(engine), threads.current_num_threads());
    let rule = TimeRule::at_or_clock(options.at);
    let started = Instant::now();
    let mut counts = Counts::default();
    let recorded = std::thread::scope(|scope| {
        // The audit writer commits chunk k while the pool evaluates chunk k+1; chunk k is
        // printed once its commit is confirmed.
        let mut writer = recorder.map(|r| ChunkWriter::spawn(scope, r.log));
        let mut pending: Option<Vec<InputResult>> = None;
        let mut print = |results: Vec<InputResult>,
                         writer: &mut Option<ChunkWriter>,
                         counts: &mut Counts|
         -> Result<(), BatchError> {
            if let Some(w) = writer.as_mut() {
                w.confirm(counts.inputs)?;
            }
            for result in results {
                out.write_all(&result.line).map_err(BatchError::Write)?;
                counts.add(result.verdict);
            }
            out.flush().map_err(BatchError::Write)?;
            progress.chunk_written(counts, started.elapsed());
            Ok(())
        };
        loop {
            let chunk = match input.read_chunk(options.shard) {
                Ok(chunk) => chunk,
                Err(e) => {
                    // What was decided and recorded before the failure is still printed.
                    if let Some(previous) = pending.take() {
                        print(previous, &mut writer, &mut counts)?;
                    }
                    return Err(BatchError::from(e));
                }
            };
            let results = (!chunk.is_empty()).then(|| {
                threads
                    .install(|| evaluate_chunk(&evaluators, chunk, rule, record_options, progress))
            });
            if let Some(previous) = pending.take() {
                print(previous, &mut writer, &mut counts)?;
            }
            let Some(mut results) = results else { break };
            match writer.as_mut() {
                Some(w) => {
                    w.send(results.iter_mut().filter_map(|r| r.record.take()).collect());
                    pending = Some(results);
                }
                None => print(results, &mut writer, &mut counts)?,
            }
        }
        Ok(writer.map(|w| w.range))
    })?;
    Ok(BatchSummary::new(
        &counts,
        input.skipped().len() as u64,
        options,
        jobs,
        started.elapsed(),
        recorded,
    ))
}

/// Evaluate one chunk in parallel on the current thread pool, results in input order;
/// a panic on one input becomes that input's failed result.
fn evaluate_chunk(
    evaluators: &EvaluatorPool,
    chunk: Vec<Item>,
    rule: TimeRule,
    record_options: Option<&RecordOptions>,
    progress: &dyn Progress,
) -> Vec<InputResult> {
    chunk
        .into_par_iter()
        .map(|item| {
            let source = source(&item.origin);
            let result = evaluators
                .guarded(|ev| evaluate_input(ev, &item, &source, rule, record_options))
                .unwrap_or_else(|panicked| {
                    error_line(item.index, &source, INTERNAL_ID, &panicked.to_string())
                });
            progress.input_done(item.end);
            result
        })
        .collect()
}

impl BatchSummary {
    fn new(
        counts: &Counts,
        skipped: u64,
        options: &BatchOptions,
        jobs: usize,
        elapsed: Duration,
        recorded: Option<RecordedRange>,
    ) -> Self {
        let wall = elapsed.as_secs_f64();
        Self {
            inputs: counts.inputs,
            allowed: counts.allowed,
            denied: counts.denied,
            invalid: counts.invalid,
            admission_records: counts.admission_records,
            skipped,
            jobs,
            shard: (options.shard != Shard::ALL).then(|| options.shard.to_string()),
            wall_seconds: wall,
            decisions_per_second: if wall > 0.0 {
                counts.inputs as f64 / wall
            } else {
                0.0
            },
            recorded,
        }
    }
}

/// The audit log's writer thread for one batch: chunks of records in, one commit
/// (or the error that stopped it) out per chunk, in order.
struct ChunkWriter {
    chunks: std::sync::mpsc::SyncSender<Vec<Record>>,
    commits: std::sync::mpsc::Receiver<Result<Committed, AuditError>>,
    /// What the confirmed commits recorded so far.
    range: RecordedRange,
}

/// One committed chunk.
struct Committed {
    records: u64,
    first_seq: u64,
    head_seq: u64,
    elapsed: Duration,
}

impl ChunkWriter {
    fn spawn<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        log: &'scope mut dyn Sink,
    ) -> Self {
        // One chunk in flight: the next one waits for it, so memory stays two chunks.
        let (chunks, incoming) = std::sync::mpsc::sync_channel::<Vec<Record>>(1);
        let (done, commits) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            for mut records in incoming {
                let started = Instant::now();
                let result = if records.is_empty() {
                    Ok(Committed {
                        records: 0,
                        first_seq: 0,
                        head_seq: log.head().seq,
                        elapsed: Duration::ZERO,
                    })
                } else {
                    log.append(&mut records).map(|head| Committed {
                        records: records.len() as u64,
                        first_seq: records[0].seq,
                        head_seq: head.seq,
                        elapsed: started.elapsed(),
                    })
                };
                let failed = result.is_err();
                if done.send(result).is_err() || failed {
                    break;
                }
            }
        });
        Self {
            chunks,
            commits,
            range: RecordedRange::default(),
        }
    }

    /// Hand a chunk's records over (a dead writer is noticed by `confirm`).
    fn send(&mut self, records: Vec<Record>) {
        let _ = self.chunks.send(records);
    }

    /// Wait for the oldest chunk's commit and count it; `printed` is how many results
    /// were written before it, for the error.
    fn confirm(&mut self, printed: u64) -> Result<(), BatchError> {
        let range = &mut self.range;
        let fail = |source, range: &RecordedRange| BatchError::Audit {
            source,
            recorded: range.records,
            printed,
        };
        let committed = match self.commits.recv() {
            Ok(Ok(c)) => c,
            Ok(Err(source)) => return Err(fail(source, range)),
            Err(_) => {
                return Err(fail(
                    AuditError::Append {
                        path: PathBuf::from("<audit log>"),
                        cause: "the audit writer thread stopped".into(),
                        head: crate::audit::Head {
                            seq: range.last_seq,
                            hash: String::new(),
                        },
                    },
                    range,
                ))
            }
        };
        if committed.records > 0 {
            if range.records == 0 {
                range.first_seq = committed.first_seq;
            }
            range.records += committed.records;
            range.last_seq = committed.head_seq;
            tracing::debug!(
                records = committed.records,
                last_seq = committed.head_seq,
                elapsed_us = committed.elapsed.as_micros() as u64,
                "audit chunk committed"
            );
        }
        Ok(())
    }
}

/// One input's result line (with the newline), verdict and, when recording, the audit
/// record of its decision.
struct InputResult {
    line: Vec<u8>,
    verdict: InputVerdict,
    record: Option<Record>,
}

/// How a batch result names its input: `line N`, or a directory entry's file name.
fn source(origin: &Origin) -> String {
    match origin {
        Origin::Line { line, .. } => format!("line {line}"),
        Origin::File(path) | Origin::Case(path) => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    }
}

/// Evaluate one input into its result line, verdict and, when `record` is given, its
/// audit record, at the time `rule` gives.
fn evaluate_input(
    evaluator: &mut Evaluator,
    item: &Item,
    source: &str,
    rule: TimeRule,
    record: Option<&RecordOptions>,
) -> InputResult {
    let read = match item.read() {
        Ok(read) => read,
        Err(Refusal::Admission(msg)) => return skipped_line(item.index, source, &msg),
        Err(refusal @ (Refusal::Unread(_) | Refusal::Invalid(_))) => {
            return error_line(item.index, source, INVALID_ID, refusal.msg())
        }
    };
    let request = &read.request;
    let now = match rule.time_for(read.recorded_at, request) {
        Ok(now) => now,
        Err(e) => {
            let msg = crate::error_chain::ErrorChain(&e).to_string();
            return error_line(item.index, source, INVALID_ID, &msg);
        }
    };
    let signed = match evaluator.decide(request, now) {
        Ok(signed) => signed,
        Err(e) => {
            return error_line(
                item.index,
                source,
                UNSIGNED_ID,
                &format!("the decision could not be signed: {e}"),
            )
        }
    };
    let record = match record.map(|o| o.prepare(&signed.decision, &signed.envelope, &request.raw)) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            return error_line(
                item.index,
                source,
                UNRECORDABLE_ID,
                &format!("the decision is withheld: {e}"),
            )
        }
    };
    InputResult {
        record,
        ..decision_line(item.index, source, &signed.decision, &signed.envelope)
    }
}

#[derive(Serialize)]
struct DecisionLine<'a> {
    index: u64,
    source: &'a str,
    allowed: bool,
    decision: &'a Decision,
    envelope: &'a serde_json::Value,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    index: u64,
    source: &'a str,
    /// Always false: a result that is not a decision must never read as an allow.
    allowed: bool,
    error: LineError<'a>,
}

#[derive(Serialize)]
struct LineError<'a> {
    id: &'a str,
    msg: &'a str,
}

#[derive(Serialize)]
struct SkippedLine<'a> {
    index: u64,
    source: &'a str,
    /// Always false: a skipped input allows nothing.
    allowed: bool,
    skipped: LineError<'a>,
}

fn decision_line(
    index: u64,
    source: &str,
    decision: &Decision,
    envelope: &serde_json::Value,
) -> InputResult {
    let line = DecisionLine {
        index,
        source,
        allowed: decision.allowed,
        decision,
        envelope,
    };
    match serde_json::to_vec(&line) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let verdict = if decision.allowed {
                InputVerdict::Allowed
            } else {
                InputVerdict::Denied
            };
            InputResult {
                line: bytes,
                verdict,
                record: None,
            }
        }
        Err(e) => error_line(
            index,
            source,
            INTERNAL_ID,
            &format!("the decision could not be written: {e}"),
        ),
    }
}

/// The result of an input that is an audit record of an admission: skipped, said so.
fn skipped_line(index: u64, source: &str, msg: &str) -> InputResult {
    let line = SkippedLine {
        index,
        source,
        allowed: false,
        skipped: LineError {
            id: ADMISSION_RECORD_ID,
            msg,
        },
    };
    match serde_json::to_vec(&line) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            InputResult {
                line: bytes,
                verdict: InputVerdict::AdmissionRecord,
                record: None,
            }
        }
        Err(e) => error_line(
            index,
            source,
            INTERNAL_ID,
            &format!("the result could not be written: {e}"),
        ),
    }
}

fn error_line(index: u64, source: &str, id: &str, msg: &str) -> InputResult {
    let line = ErrorLine {
        index,
        source,
        allowed: false,
        error: LineError { id, msg },
    };
    let mut bytes = serde_json::to_vec(&line).unwrap_or_else(|_| {
        // INVARIANT: a struct of integers and strings always serialises; should it
        // not, the input still gets its one failed line.
        format!(r#"{{"index":{index},"allowed":false,"error":{{"id":"{INTERNAL_ID}"}}}}"#)
            .into_bytes()
    });
    bytes.push(b'\n');
    InputResult {
        line: bytes,
        verdict: InputVerdict::Invalid,
        record: None,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;
    use crate::input::parse_time;
    use crate::EngineConfig;
    use serde_json::Value;

    const AT: &str = "2026-11-26T18:00:00Z";
    const ALLOWED: &str = "corpus/cases/prod-allow-baseline/request.json";

    fn engine() -> Arc<Engine> {
        Engine::load(&EngineConfig::with_policies("policies")).unwrap()
    }

    fn options(jobs: usize) -> BatchOptions {
        BatchOptions {
            jobs,
            shard: Shard::ALL,
            at: Some(parse_time(AT).unwrap()),
        }
    }

    fn allowed_line() -> String {
        let v: Value = serde_json::from_slice(&std::fs::read(ALLOWED).unwrap()).unwrap();
        v.to_string()
    }

    fn run_bytes(
        engine: &Arc<Engine>,
        body: Vec<u8>,
        options: &BatchOptions,
    ) -> (Vec<Value>, BatchSummary) {
        let mut input = Input::from_reader(std::io::Cursor::new(body), "test", None);
        let mut out = Vec::new();
        let summary = run(engine, &mut input, &mut out, options, &NoProgress).unwrap();
        let lines = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        (lines, summary)
    }

    #[test]
    fn results_keep_input_order_and_bad_lines_stay_alone() {
        let engine = engine();
        let good = allowed_line();
        let mut body = Vec::new();
        for i in 0..40 {
            match i % 10 {
                3 => body.extend_from_slice(b"not json"),
                5 => body.extend_from_slice(b"{\"apiVersion\": \"promo-policy/v1\"}"),
                7 => body.extend_from_slice(b"\xff\xfe"),
                9 => {}
                _ => body.extend_from_slice(good.as_bytes()),
            }
            body.push(b'\n');
        }
        body.extend_from_slice(&good.as_bytes()[..good.len() / 2]); // truncated last line
        let (out, summary) = run_bytes(&engine, body, &options(2));
        assert_eq!(out.len(), 41);
        for (i, line) in out.iter().enumerate() {
            assert_eq!(line["index"], i as u64);
            assert_eq!(line["source"], format!("line {}", i + 1));
            let bad = matches!(i % 10, 3 | 5 | 7 | 9) || i == 40;
            if bad {
                assert_eq!(line["allowed"], false, "{line}");
                assert_eq!(line["error"]["id"], INVALID_ID);
                assert!(line.get("decision").is_none() && line.get("envelope").is_none());
            } else {
                assert_eq!(line["allowed"], true, "{line}");
                assert_eq!(line["decision"]["allowed"], true);
                assert!(line["envelope"]["signatures"].is_array());
            }
        }
        assert!(out[5]["error"]["msg"].as_str().unwrap().contains("schema"));
        assert!(out[40]["error"]["msg"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON at line 41"));
        assert_eq!(
            (
                summary.inputs,
                summary.allowed,
                summary.denied,
                summary.invalid
            ),
            (41, 24, 0, 17)
        );
        assert!(!summary.all_allowed());
    }

    #[test]
    fn shards_together_are_the_whole() {
        let engine = engine();
        let good = allowed_line();
        let mut body = String::new();
        for i in 0..11 {
            body.push_str(if i % 4 == 1 { "[]" } else { &good });
            body.push('\n');
        }
        let strip = |mut v: Value| {
            if let Some(d) = v.get_mut("decision") {
                d["decisionId"] = Value::Null;
                v["envelope"] = Value::Null;
            }
            v
        };
        let (whole, _) = run_bytes(&engine, body.clone().into_bytes(), &options(1));
        let mut merged = Vec::new();
        for k in 0..3 {
            let mut o = options(1);
            o.shard = Shard { index: k, count: 3 };
            let (part, summary) = run_bytes(&engine, body.clone().into_bytes(), &o);
            assert_eq!(summary.shard.as_deref(), Some(format!("{k}/3").as_str()));
            assert!(part.iter().all(|l| l["index"].as_u64().unwrap() % 3 == k));
            merged.extend(part);
        }
        merged.sort_by_key(|l| l["index"].as_u64().unwrap());
        assert_eq!(
            merged.into_iter().map(strip).collect::<Vec<_>>(),
            whole.into_iter().map(strip).collect::<Vec<_>>()
        );
    }
}
