//! Batch evaluation: many requests through one shared `Engine` in parallel, read and written in bounded chunks, results in input order; one bad input becomes one failed result for that input, never the end of the batch, and never anything readable as an allow.
//!
//! # Inputs
//!
//! An [`Input`] is a JSONL stream (a file or stdin: one request per line) or a directory
//! of request files. Each input gets a 0-based `index` in input order and a `source`:
//! `line N` (1-based) for JSONL, the file name for a directory.
//!
//! - JSONL: every line is one input, including an empty or blank line, which is an
//!   invalid result (`empty line`), so that line N is always the result with index N-1
//!   and a request lost upstream cannot hide as a blank line. A final newline does not
//!   start another line; a `\r` before the newline is JSON whitespace.
//! - Directory: the entries whose name ends in `.json` (any case) and does not start
//!   with `.`, in byte order of their names, not recursing. Subdirectories, hidden files
//!   and other names (`README.md`, `x.jsonl`, editor backups) are skipped and listed in
//!   [`Input::skipped`]; a `.json` file that cannot be read or parsed is an invalid
//!   result. Only the names are held in memory, never the contents of the directory.
//!
//! # Results
//!
//! One JSONL line per input (in the shard), in input order:
//!
//! - evaluated: `{"index", "source", "allowed", "decision", "envelope"}`, where
//!   `allowed` repeats `decision.allowed` so `jq 'select(.allowed)'` works;
//! - not evaluated (not UTF-8, not JSON, schema, too large, unreadable file):
//!   `{"index", "source", "allowed": false, "error": {"id": "request.invalid", "msg"}}`,
//!   with no decision and no envelope.
//!
//! An input may also be a recorded request, `{"request": {...}, "evaluatedAt": "..."}`
//! (an audit export line, see [`crate::replay`]): its request is evaluated at its own
//! `evaluatedAt`, unless [`Options::at`] is set, which wins for every input; inputs with
//! no recorded time are evaluated at the clock.
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
//! once; a line longer than the request limit is counted and skipped, never buffered.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::{AuditError, AuditLog, Record, RecordOptions};
use crate::decision::Decision;
use crate::evaluator::{Engine, Evaluator};
use crate::request::{PromotionRequest, RequestError, MAX_BODY_BYTES};

pub mod workload;

/// Inputs read, evaluated and written as one chunk. Large enough that the wait for a
/// chunk's slowest input (about one decision, ~2 ms) is noise next to the chunk's work
/// (~0.5 s at 2 ms x 512 / 2 threads), small enough that results stream out steadily.
pub const CHUNK_INPUTS: usize = 512;

/// Input bytes read into one chunk at most (the input that crosses it included).
/// Requests may be up to 1 MiB each, so the count alone would allow 512 MiB in flight;
/// 32 MiB keeps memory flat with any mix of request sizes.
pub const CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// The error id of an input that could not be evaluated: the id
/// [`RequestError::violation_id`] gives, used also for inputs that never reached the
/// parser (unreadable file, oversized line).
pub const INVALID_ID: &str = "request.invalid";

/// The error id of a result whose decision could not be signed.
pub const UNSIGNED_ID: &str = "decision.unsigned";

/// The error id of a result whose evaluation panicked (a bug: please report it).
pub const INTERNAL_ID: &str = "engine.internal";

/// The error id of a result whose decision could not be made into an audit record, and
/// is therefore withheld.
pub const UNRECORDABLE_ID: &str = "audit.unrecordable";

/// Errors that stop a batch (exit 2). Problems with one input never do: they become
/// that input's result.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The input path cannot be opened or listed.
    #[error("cannot read `{path}`: {source}")]
    Open {
        /// The input path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading the input stream failed part-way.
    #[error("cannot read {what} after {offset} bytes: {source}")]
    Read {
        /// `stdin` or the file.
        what: String,
        /// Bytes read before the failure.
        offset: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
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
    #[error("invalid shard `{value}`: {reason}")]
    Shard {
        /// What was given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One of N shards of a batch: the inputs whose index mod `count` is `index`. Indices
/// stay those of the whole batch, so the shards' outputs merged by index are the
/// unsharded output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// K, 0-based.
    pub index: u64,
    /// N, at least 1.
    pub count: u64,
}

impl Shard {
    /// The whole batch as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether the input with this index belongs to this shard.
    pub fn contains(&self, index: u64) -> bool {
        index % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = BatchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| BatchError::Shard {
            value: s.to_string(),
            reason,
        };
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| err("expected K/N, e.g. `0/4`"))?;
        let index: u64 = k
            .trim()
            .parse()
            .map_err(|_| err("K is not a non-negative integer"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| err("N is not a positive integer"))?;
        if count == 0 {
            return Err(err("N must be at least 1"));
        }
        if index >= count {
            return Err(err("K must be less than N (shards count from 0)"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// How to run a batch.
#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads (at least 1).
    pub jobs: usize,
    /// Which inputs to evaluate.
    pub shard: Shard,
    /// The evaluation time of every decision; `None` reads the clock per decision.
    pub at: Option<OffsetDateTime>,
}

impl Default for Options {
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
    pub log: &'a mut AuditLog,
    /// Masking, and whether requests are stored.
    pub options: &'a RecordOptions,
}

/// Where a batch reads its requests.
pub struct Input {
    kind: InputKind,
    skipped: Vec<String>,
}

enum InputKind {
    Lines(LineReader),
    Dir { files: Vec<PathBuf>, next: usize },
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            InputKind::Lines(r) => format!("lines from {}", r.what),
            InputKind::Dir { files, .. } => format!("{} files", files.len()),
        };
        f.debug_struct("Input")
            .field("kind", &kind)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl Input {
    /// Open `path`: `-` is JSONL on stdin, a directory is its request files, anything
    /// else a JSONL file.
    pub fn open(path: &Path) -> Result<Input, BatchError> {
        if path.as_os_str() == "-" {
            return Ok(Self::from_reader(io::stdin(), "stdin", None));
        }
        let open_err = |source| BatchError::Open {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if meta.is_dir() {
            return Self::dir(path);
        }
        let file = File::open(path).map_err(open_err)?;
        let len = meta.is_file().then_some(meta.len());
        Ok(Self::from_reader(
            file,
            &format!("`{}`", path.display()),
            len,
        ))
    }

    /// JSONL from any reader; `what` names it in errors, `len` (bytes, when known)
    /// feeds progress.
    pub fn from_reader(reader: impl Read + 'static, what: &str, len: Option<u64>) -> Input {
        Input {
            kind: InputKind::Lines(LineReader {
                inner: Box::new(BufReader::with_capacity(256 * 1024, reader)),
                what: what.to_string(),
                line: 0,
                offset: 0,
                len,
            }),
            skipped: Vec::new(),
        }
    }

    /// The request files of a directory (see the module docs for which are skipped).
    pub fn dir(path: &Path) -> Result<Input, BatchError> {
        let open_err = |source| BatchError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        for entry in std::fs::read_dir(path).map_err(open_err)? {
            let entry = entry.map_err(open_err)?;
            let name = entry.file_name();
            let text = name.to_string_lossy();
            // Follows symlinks; an entry whose type cannot be read is kept, so that its
            // read error becomes its result rather than a silent skip.
            let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
            let is_request = !is_dir
                && !text.starts_with('.')
                && text.len() > ".json".len()
                && text
                    .get(text.len() - ".json".len()..)
                    .is_some_and(|ext| ext.eq_ignore_ascii_case(".json"));
            if is_request {
                files.push(entry.path());
            } else {
                skipped.push(text.into_owned());
            }
        }
        // Byte order of the names: the same on every machine, whatever the locale.
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        skipped.sort();
        Ok(Input {
            kind: InputKind::Dir { files, next: 0 },
            skipped,
        })
    }

    /// Directory entries that are not request files, by name.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// How much progress will count to, when known: the inputs in `shard` for a
    /// directory, the byte length for a JSONL file (`None` for a stream).
    pub fn progress_len(&self, shard: Shard) -> Option<ProgressLen> {
        match &self.kind {
            InputKind::Lines(r) => r.len.map(ProgressLen::Bytes),
            InputKind::Dir { files, .. } => Some(ProgressLen::Inputs(
                (0..files.len() as u64)
                    .filter(|&i| shard.contains(i))
                    .count() as u64,
            )),
        }
    }

    /// Read the next inputs of `shard`: up to `max_inputs`, stopping once `max_bytes`
    /// are held. Empty at the end of the input.
    fn read_chunk(
        &mut self,
        shard: Shard,
        max_inputs: usize,
        max_bytes: usize,
    ) -> Result<Vec<RawInput>, BatchError> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while chunk.len() < max_inputs && bytes < max_bytes {
            let Some(item) = self.next_input(shard)? else {
                break;
            };
            if let Body::Bytes(b) = &item.body {
                bytes += b.len();
            }
            chunk.push(item);
        }
        Ok(chunk)
    }

    fn next_input(&mut self, shard: Shard) -> Result<Option<RawInput>, BatchError> {
        match &mut self.kind {
            InputKind::Lines(reader) => loop {
                let index = reader.line;
                let keep = shard.contains(index);
                let Some(line) = reader.next_line(keep)? else {
                    return Ok(None);
                };
                if !keep {
                    continue;
                }
                let n = index + 1;
                let body = match line {
                    Line::Bytes(b) => Body::Bytes(b),
                    Line::TooLong(size) => Body::Invalid(too_large(size)),
                };
                return Ok(Some(RawInput {
                    index,
                    source: format!("line {n}"),
                    line: Some(n),
                    end: reader.offset,
                    body,
                }));
            },
            InputKind::Dir { files, next } => {
                while *next < files.len() {
                    let index = *next as u64;
                    *next += 1;
                    if !shard.contains(index) {
                        continue;
                    }
                    let path = &files[index as usize];
                    let source = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| path.display().to_string());
                    let body = read_file(path, &source);
                    return Ok(Some(RawInput {
                        index,
                        source,
                        line: None,
                        end: index + 1,
                        body,
                    }));
                }
                Ok(None)
            }
        }
    }
}

/// What progress counts to (see [`Input::progress_len`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressLen {
    /// Inputs to evaluate.
    Inputs(u64),
    /// Bytes of JSONL to read.
    Bytes(u64),
}

fn too_large(size: u64) -> String {
    RequestError::TooLarge {
        size: usize::try_from(size).unwrap_or(usize::MAX),
        limit: MAX_BODY_BYTES,
    }
    .to_string()
}

fn read_file(path: &Path, name: &str) -> Body {
    // Regular files only (a FIFO named `*.json` is refused before an open could block),
    // never more than the request limit whatever the file claims.
    match crate::fsio::read_capped(path, MAX_BODY_BYTES as u64) {
        Ok(bytes) => Body::Bytes(bytes),
        Err(crate::fsio::ReadError::TooLarge { size, .. }) => Body::Invalid(too_large(size)),
        Err(e) => Body::Invalid(format!("cannot read `{name}`: {}", e.reason())),
    }
}

/// JSONL split into lines without ever holding more than the request limit of one.
struct LineReader {
    inner: Box<dyn BufRead>,
    what: String,
    /// Lines returned so far.
    line: u64,
    /// Bytes consumed so far.
    offset: u64,
    len: Option<u64>,
}

enum Line {
    Bytes(Vec<u8>),
    /// Longer than the request limit: its length, the bytes dropped.
    TooLong(u64),
}

impl LineReader {
    /// The next line without its `\n`; its bytes are dropped unless `keep`.
    fn next_line(&mut self, keep: bool) -> Result<Option<Line>, BatchError> {
        let mut buf = Vec::new();
        let mut size: u64 = 0;
        let mut started = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(BatchError::Read {
                        what: self.what.clone(),
                        offset: self.offset,
                        source,
                    })
                }
            };
            if available.is_empty() {
                if !started {
                    return Ok(None);
                }
                break;
            }
            started = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let part = &available[..newline.unwrap_or(available.len())];
            size += part.len() as u64;
            if keep && size <= MAX_BODY_BYTES as u64 {
                buf.extend_from_slice(part);
            } else {
                // Past the limit (or not ours): stop holding bytes, only count them.
                buf = Vec::new();
            }
            let used = part.len() + usize::from(newline.is_some());
            self.inner.consume(used);
            self.offset += used as u64;
            if newline.is_some() {
                break;
            }
        }
        self.line += 1;
        Ok(Some(if size > MAX_BODY_BYTES as u64 {
            Line::TooLong(size)
        } else {
            Line::Bytes(buf)
        }))
    }
}

/// One input as read: bytes to evaluate, or already the reason it cannot be.
struct RawInput {
    index: u64,
    source: String,
    /// The JSONL line number, for positions in messages.
    line: Option<u64>,
    /// Progress position once this input is done (byte offset or input count).
    end: u64,
    body: Body,
}

enum Body {
    Bytes(Vec<u8>),
    Invalid(String),
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
}

impl Counts {
    fn add(&mut self, v: InputVerdict) {
        self.inputs += 1;
        match v {
            InputVerdict::Allowed => self.allowed += 1,
            InputVerdict::Denied => self.denied += 1,
            InputVerdict::Invalid => self.invalid += 1,
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
    options: &Options,
    progress: &dyn Progress,
) -> Result<BatchSummary, BatchError> {
    run_recorded(engine, input, out, options, progress, None)
}

/// [`run`], appending every decision to an audit log first (see the module docs).
pub fn run_recorded(
    engine: &Arc<Engine>,
    input: &mut Input,
    out: &mut dyn Write,
    options: &Options,
    progress: &dyn Progress,
    recorder: Option<Recorder<'_>>,
) -> Result<BatchSummary, BatchError> {
    let record_options = recorder.as_ref().map(|r| r.options);
    let jobs = options.jobs.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("promo-batch-{i}"))
        .build()
        .map_err(|e| BatchError::Pool {
            jobs,
            reason: e.to_string(),
        })?;
    // One evaluator per worker thread for the whole batch (rayon's `map_init` would
    // build one per split of every chunk: a regorus clone each time).
    let slots: Vec<Mutex<Option<Evaluator>>> = (0..pool.current_num_threads())
        .map(|_| Mutex::new(None))
        .collect();
    let started = Instant::now();
    let mut counts = Counts::default();
    let recorded = std::thread::scope(|scope| {
        // The audit writer commits chunk k while the pool evaluates chunk k+1; chunk k is
        // printed once its commit is confirmed.
        let mut writer = recorder.map(|r| ChunkWriter::spawn(scope, r.log));
        let mut pending: Option<Vec<InputOutcome>> = None;
        let mut print = |results: Vec<InputOutcome>,
                         writer: &mut Option<ChunkWriter>,
                         counts: &mut Counts|
         -> Result<(), BatchError> {
            if let Some(w) = writer.as_mut() {
                w.confirm(counts.inputs)?;
            }
            for (line, verdict, _) in results {
                out.write_all(&line).map_err(BatchError::Write)?;
                counts.add(verdict);
            }
            out.flush().map_err(BatchError::Write)?;
            progress.chunk_written(counts, started.elapsed());
            Ok(())
        };
        loop {
            let chunk = match input.read_chunk(options.shard, CHUNK_INPUTS, CHUNK_BYTES) {
                Ok(chunk) => chunk,
                Err(e) => {
                    // What was decided and recorded before the failure is still printed.
                    if let Some(previous) = pending.take() {
                        print(previous, &mut writer, &mut counts)?;
                    }
                    return Err(e);
                }
            };
            let results = (!chunk.is_empty()).then(|| {
                pool.install(|| {
                    chunk
                        .into_par_iter()
                        .map(|item| {
                            let result = with_evaluator(
                                engine,
                                &slots,
                                |ev| evaluate_input(ev, &item, options.at, record_options),
                                item.index,
                                &item.source,
                            );
                            progress.input_done(item.end);
                            result
                        })
                        .collect::<Vec<InputOutcome>>()
                })
            });
            if let Some(previous) = pending.take() {
                print(previous, &mut writer, &mut counts)?;
            }
            let Some(mut results) = results else { break };
            match writer.as_mut() {
                Some(w) => {
                    w.send(results.iter_mut().filter_map(|r| r.2.take()).collect());
                    pending = Some(results);
                }
                None => print(results, &mut writer, &mut counts)?,
            }
        }
        Ok(writer.map(|w| w.range))
    })?;
    let wall = started.elapsed().as_secs_f64();
    Ok(BatchSummary {
        inputs: counts.inputs,
        allowed: counts.allowed,
        denied: counts.denied,
        invalid: counts.invalid,
        skipped: input.skipped.len() as u64,
        jobs,
        shard: (options.shard != Shard::ALL).then(|| options.shard.to_string()),
        wall_seconds: wall,
        decisions_per_second: if wall > 0.0 {
            counts.inputs as f64 / wall
        } else {
            0.0
        },
        recorded,
    })
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
        log: &'scope mut AuditLog,
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
                        reason: "the audit writer thread stopped".into(),
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
type InputOutcome = (Vec<u8>, InputVerdict, Option<Record>);

/// Run `f` with this worker's evaluator, and turn a panic into a failed result.
fn with_evaluator(
    engine: &Arc<Engine>,
    slots: &[Mutex<Option<Evaluator>>],
    f: impl FnOnce(&mut Evaluator) -> InputOutcome,
    index: u64,
    source: &str,
) -> InputOutcome {
    let slot = slots.get(rayon::current_thread_index().unwrap_or(0));
    // The slot is only ever locked by its own thread; `try_lock` still guards against
    // re-entry should evaluation ever yield to rayon and run another input here.
    let mut guard = match slot.map(Mutex::try_lock) {
        Some(Ok(g)) => Some(g),
        Some(Err(TryLockError::Poisoned(p))) => Some(p.into_inner()),
        Some(Err(TryLockError::WouldBlock)) | None => None,
    };
    let mut spare = None;
    let evaluator = match guard.as_deref_mut() {
        Some(slot) => slot.get_or_insert_with(|| engine.evaluator()),
        None => spare.insert(engine.evaluator()),
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| f(evaluator))) {
        Ok(result) => result,
        Err(_) => {
            // The evaluator may be mid-update: drop it, the next input gets a fresh one.
            if let Some(slot) = guard.as_deref_mut() {
                *slot = None;
            }
            unrecorded(error_line(
                index,
                source,
                INTERNAL_ID,
                "the engine panicked on this input (a bug: see stderr and please report it)",
            ))
        }
    }
}

fn unrecorded((line, verdict): (Vec<u8>, InputVerdict)) -> InputOutcome {
    (line, verdict, None)
}

/// Evaluate one input into its result line (with the newline), verdict and, when
/// `record` is given, its audit record. The time is `at` (`--at`), else the input's
/// recorded `evaluatedAt`, else the clock.
fn evaluate_input(
    evaluator: &mut Evaluator,
    input: &RawInput,
    at: Option<OffsetDateTime>,
    record: Option<&RecordOptions>,
) -> InputOutcome {
    let id = INVALID_ID;
    let fail = |msg: &str| unrecorded(error_line(input.index, &input.source, id, msg));
    let bytes = match &input.body {
        Body::Bytes(b) => b,
        Body::Invalid(msg) => return fail(msg),
    };
    let recorded = match crate::replay::from_line(bytes) {
        Ok(r) => r,
        Err(msg) => return fail(&msg),
    };
    let request = match parse(&recorded.request, input.line) {
        Ok(r) => r,
        Err(msg) => return fail(&msg),
    };
    let now = at.or(recorded.at).unwrap_or_else(OffsetDateTime::now_utc);
    let signed = match evaluator.decide(&request, now) {
        Ok(signed) => signed,
        Err(e) => {
            return unrecorded(error_line(
                input.index,
                &input.source,
                UNSIGNED_ID,
                &format!("the decision could not be signed: {e}"),
            ))
        }
    };
    let record = match record.map(|o| o.prepare(&signed.decision, &signed.envelope, &request.raw)) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            return unrecorded(error_line(
                input.index,
                &input.source,
                UNRECORDABLE_ID,
                &format!("the decision is withheld: {e}"),
            ))
        }
    };
    let (line, verdict) = decision_line(
        input.index,
        &input.source,
        &signed.decision,
        &signed.envelope,
    );
    (line, verdict, record)
}

/// Parse request bytes, with positions in the file's terms (`line` is the JSONL line).
fn parse(bytes: &[u8], line: Option<u64>) -> Result<PromotionRequest, String> {
    if let Err(e) = std::str::from_utf8(bytes) {
        let at = e.valid_up_to();
        let (l, c) = position(&bytes[..at], line);
        return Err(format!(
            "invalid UTF-8 at line {l}, column {c} (byte {at} of the request): requests are UTF-8 JSON"
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(match line {
            Some(_) => "empty line: expected one JSON request per line".to_string(),
            None => "empty file: expected one JSON request".to_string(),
        });
    }
    PromotionRequest::from_slice(bytes).map_err(|e| match (e, line) {
        // A JSONL line holds no newline, so the parser's line is always 1: report the
        // file's line instead.
        (RequestError::Malformed { column, reason, .. }, Some(n)) => {
            format!("malformed JSON at line {n}, column {column}: {reason}")
        }
        (e, _) => e.to_string(),
    })
}

/// 1-based line and column (in bytes) just after `before`; JSONL lines are numbered
/// from the file's `line`.
fn position(before: &[u8], line: Option<u64>) -> (u64, u64) {
    let newlines = before.iter().filter(|&&b| b == b'\n').count() as u64;
    let column = match before.iter().rposition(|&b| b == b'\n') {
        Some(i) => before.len() - i,
        None => before.len() + 1,
    } as u64;
    (line.unwrap_or(1) + newlines, column)
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

fn decision_line(
    index: u64,
    source: &str,
    decision: &Decision,
    envelope: &serde_json::Value,
) -> (Vec<u8>, InputVerdict) {
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
            (bytes, verdict)
        }
        Err(e) => error_line(
            index,
            source,
            INTERNAL_ID,
            &format!("the decision could not be written: {e}"),
        ),
    }
}

fn error_line(index: u64, source: &str, id: &str, msg: &str) -> (Vec<u8>, InputVerdict) {
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
    (bytes, InputVerdict::Invalid)
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
    use crate::evaluator::parse_time;
    use crate::EngineConfig;
    use serde_json::Value;

    const AT: &str = "2026-11-26T18:00:00Z";
    const ALLOWED: &str = "corpus/cases/prod-allow-baseline/request.json";

    fn engine() -> Arc<Engine> {
        Engine::load(&EngineConfig::with_policies("policies")).unwrap()
    }

    fn options(jobs: usize) -> Options {
        Options {
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
        options: &Options,
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

    fn lines(body: &[u8]) -> Vec<Result<Vec<u8>, u64>> {
        let mut input = Input::from_reader(std::io::Cursor::new(body.to_vec()), "test", None);
        let InputKind::Lines(reader) = &mut input.kind else {
            panic!("not lines")
        };
        let mut out = Vec::new();
        while let Some(line) = reader.next_line(true).unwrap() {
            out.push(match line {
                Line::Bytes(b) => Ok(b),
                Line::TooLong(n) => Err(n),
            });
        }
        out
    }

    #[test]
    fn invalid_id_is_the_request_errors_id() {
        let e = RequestError::TooLarge { size: 2, limit: 1 };
        assert_eq!(INVALID_ID, e.violation_id());
    }

    #[test]
    fn shards_parse_and_partition() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        assert_eq!(s.to_string(), "1/3");
        assert!((0..9).filter(|&i| s.contains(i)).eq([1, 4, 7]));
        for bad in ["3/3", "1/0", "x/2", "1", "-1/2", "1/-2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_split_on_newline_only() {
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"a\n"), vec![Ok(b"a".to_vec())]);
        assert_eq!(lines(b"a"), vec![Ok(b"a".to_vec())]);
        assert_eq!(
            lines(b"a\r\n\nb"),
            vec![Ok(b"a\r".to_vec()), Ok(Vec::new()), Ok(b"b".to_vec())]
        );
    }

    #[test]
    fn an_overlong_line_is_measured_not_held() {
        let mut body = vec![b' '; MAX_BODY_BYTES + 10];
        body.extend_from_slice(b"\n{}\n");
        assert_eq!(
            lines(&body),
            vec![Err(MAX_BODY_BYTES as u64 + 10), Ok(b"{}".to_vec())]
        );
        // Exactly at the limit is still a line.
        let mut body = vec![b' '; MAX_BODY_BYTES];
        body.push(b'\n');
        assert_eq!(lines(&body).len(), 1);
        assert!(lines(&body)[0].is_ok());
    }

    #[test]
    fn positions_are_in_the_files_terms() {
        assert_eq!(position(b"", Some(7)), (7, 1));
        assert_eq!(position(b"abc", Some(7)), (7, 4));
        assert_eq!(position(b"ab\ncd", None), (2, 3));
        let err = parse(b"{\"a\": \xff}", Some(12)).unwrap_err();
        assert!(
            err.starts_with("invalid UTF-8 at line 12, column 7"),
            "{err}"
        );
        let err = parse(b"{\n  \"a\": \xff}", None).unwrap_err();
        assert!(
            err.starts_with("invalid UTF-8 at line 2, column 8"),
            "{err}"
        );
        let err = parse(b"{\"a\": ", Some(3)).unwrap_err();
        assert!(
            err.starts_with("malformed JSON at line 3, column 6"),
            "{err}"
        );
        assert_eq!(
            parse(b"  \r", Some(1)).unwrap_err(),
            "empty line: expected one JSON request per line"
        );
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

    #[test]
    fn directories_list_request_files_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b.json",
            "a.JSON",
            ".hidden.json",
            "notes.txt",
            "x.jsonl",
            ".json",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.json")).unwrap();
        let input = Input::dir(dir.path()).unwrap();
        let InputKind::Dir { files, .. } = &input.kind else {
            panic!("not a dir")
        };
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.JSON", "b.json"]);
        assert_eq!(
            input.skipped(),
            [".hidden.json", ".json", "notes.txt", "sub.json", "x.jsonl"]
        );
        assert_eq!(
            input.progress_len(Shard { index: 1, count: 2 }),
            Some(ProgressLen::Inputs(1))
        );
    }
}
