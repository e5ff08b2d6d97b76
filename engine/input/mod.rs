//! Reading many requests: JSONL lines, request files, directories and stdin, with their
//! limits, error positions and one time rule; `eval --batch` and `diff` read here only.
//!
//! # What an input is
//!
//! An [`Input`] yields [`Item`]s in input order, each with a 0-based `index` and an
//! [`Origin`] (a JSONL line, a request file, a corpus case) that the command names in
//! its own terms. It is read chunk by chunk ([`Input::read_chunk`]), so memory stays
//! flat whatever the size of the input.
//!
//! - **JSONL** (a file or stdin): every line is one input, including an empty or blank
//!   line, which is invalid (`empty line`), so line N is always the input with index
//!   N-1 and a request lost upstream cannot hide as a blank line. A final newline does
//!   not start another line; a `\r` before the newline is JSON whitespace. A line longer
//!   than [`MAX_LINE_BYTES`] is measured and skipped, never held.
//! - **A directory of request files** ([`list_dir`]): the entries whose name ends in
//!   `.json` (any case) and does not start with `.`, in byte order of their names, not
//!   recursing; the others are skipped and named ([`Input::skipped`]). Only the names
//!   are held; each file is read (capped, regular files only: [`crate::fsio`]) when its
//!   item is evaluated.
//! - **A list of files** ([`Input::files`]): one request file, or corpus case
//!   directories (their `request.json`, at their `case.json`'s `at`) as `diff` lists them.
//!
//! # Records vs bare requests
//!
//! A line or file is a bare request or an audit record `{"request": {...},
//! "evaluatedAt": "..."}` ([`record::from_line`]); a record's request is evaluated at
//! its recorded time under the rule in [`time`]: `--at` wins, then the recorded time,
//! then (`diff` only) the request's `requestedAt`, then the clock.
//!
//! # What can go wrong with one item
//!
//! [`Item::read`] gives the parsed request or a [`Refusal`]: `Unread` when the bytes
//! never reached the request parser (an unreadable or over-long input, a record that
//! does not read), `Invalid` when the parser refused them, with positions in the
//! file's terms (`line 12, column 7`), `Admission` for an audit record of an admission,
//! which holds no promotion request and is skipped (counted) by every command. Only opening or reading the input stream itself
//! is an [`InputError`] that stops the run.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ::time::OffsetDateTime;

use crate::request::{PromotionRequest, RequestError, MAX_BODY_BYTES};

pub mod record;
pub mod time;

pub use time::{format_time, parse_time, Clock, RequestedAtError, TimeError, TimeRule};

/// Inputs read and evaluated as one chunk. Large enough that the wait for a chunk's
/// slowest input (about one decision, ~2 ms) is noise next to the chunk's work (~0.5 s
/// at 2 ms x 512 / 2 threads), small enough that results stream out steadily.
pub const CHUNK_INPUTS: usize = 512;

/// Input bytes read into one chunk at most (the input that crosses it included). Lines
/// may be up to [`MAX_LINE_BYTES`] each, so the count alone would allow gigabytes in
/// flight; 32 MiB keeps memory flat with any mix of line sizes.
pub const CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// Longest JSONL line or request file read: an audit record carries a request (at most
/// [`MAX_BODY_BYTES`]) plus its decision and chain fields. A longer one is refused by
/// size, and its bytes are skipped, never held.
pub const MAX_LINE_BYTES: usize = 4 * MAX_BODY_BYTES;

/// The error id of an input the request parser refused, or that never reached it: the
/// id [`RequestError::violation_id`] gives.
pub const INVALID_ID: &str = "request.invalid";

/// Errors that stop reading (the command exits 2); problems with one item never do. The
/// I/O error is the `source` and not repeated in the message (see [`crate::error_chain`]).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The input path cannot be opened or listed.
    #[error("cannot read `{path}`")]
    Open {
        /// The input path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading the input stream failed part-way.
    #[error("cannot read {what} after {offset} bytes")]
    Read {
        /// `stdin` or the file, in backticks.
        what: String,
        /// Bytes read before the failure.
        offset: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl InputError {
    /// The reason without the path, for messages that already name the input.
    pub fn reason(&self) -> String {
        match self {
            InputError::Open { source, .. } => source.to_string(),
            InputError::Read { offset, source, .. } => format!("after {offset} bytes: {source}"),
        }
    }
}

/// One of N shards of an input: the items whose index mod `count` is `index`. Indices
/// stay those of the whole input, so the shards' outputs merged by index are the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// K, 0-based.
    pub index: u64,
    /// N, at least 1.
    pub count: u64,
}

/// A `--shard` value that is not `K/N` with `0 <= K < N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid shard `{value}`: {reason}")]
pub struct ShardError {
    /// What was given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Shard {
    /// The whole input as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether the item with this index belongs to this shard.
    pub fn contains(&self, index: u64) -> bool {
        index % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ShardError {
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

/// Where an item came from; each command names it in its own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A JSONL line: the stream's name (`stdin` or the path) and the 1-based line.
    Line {
        /// `stdin` or the path as given.
        name: String,
        /// 1-based.
        line: u64,
    },
    /// A request file: a directory entry or a file named on its own.
    File(PathBuf),
    /// A corpus case directory.
    Case(PathBuf),
}

/// One input as read, not yet evaluated.
#[derive(Debug)]
pub struct Item {
    /// 0-based position in the whole input (all shards).
    pub index: u64,
    /// Where it came from.
    pub origin: Origin,
    /// Progress position once this item is done (a byte offset or an item count).
    pub end: u64,
    body: Body,
    /// A time the listing recorded (a corpus case's `at`).
    at: Option<OffsetDateTime>,
}

#[derive(Debug)]
enum Body {
    Bytes(Vec<u8>),
    /// Read when the item is, so a directory's files are never all in memory.
    File(PathBuf),
    /// Why the bytes could not be had.
    Unread(String),
}

/// Why an item has no request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Never reached the request parser (unreadable, over-long, a record that does not
    /// read, a bad recorded time): what it holds is unknown.
    Unread(String),
    /// Refused by the request parser (JSON, limits, schema); the message has positions.
    Invalid(String),
    /// An audit record of an admission (break-glass, dry-run), not of a promotion
    /// ([`crate::audit::RecordKind`]): skipped and counted, never replayed as a request.
    Admission(String),
}

impl Refusal {
    /// The message, whichever kind.
    pub fn msg(&self) -> &str {
        match self {
            Refusal::Unread(m) | Refusal::Invalid(m) | Refusal::Admission(m) => m,
        }
    }
}

/// Why an admission record is not replayed, for the row that says so.
pub const ADMISSION_RECORD_MSG: &str =
    "an audit record of an admission (break-glass or dry-run), not a promotion: not replayed";

/// An item's request and the time its input recorded, if any.
#[derive(Debug)]
pub struct Request {
    /// The parsed, schema-checked request.
    pub request: PromotionRequest,
    /// A record's `evaluatedAt` or a case's `at`; see [`TimeRule`].
    pub recorded_at: Option<OffsetDateTime>,
}

impl Item {
    /// A listed file, evaluated at `at` when its listing recorded a time.
    pub fn file(index: u64, origin: Origin, path: PathBuf, at: Option<OffsetDateTime>) -> Self {
        Self {
            index,
            origin,
            end: index + 1,
            body: Body::File(path),
            at,
        }
    }

    /// An item that cannot be read, and why (e.g. a case whose `at` is not a time).
    pub fn unread(index: u64, origin: Origin, why: String) -> Self {
        Self {
            index,
            origin,
            end: index + 1,
            body: Body::Unread(why),
            at: None,
        }
    }

    /// Read the item (a listed file now, capped), split a record from a bare request,
    /// and parse the request.
    pub fn read(&self) -> Result<Request, Refusal> {
        let file;
        let bytes = match &self.body {
            Body::Bytes(b) => b.as_slice(),
            Body::File(path) => {
                file = read_file(path).map_err(Refusal::Unread)?;
                file.as_slice()
            }
            Body::Unread(msg) => return Err(Refusal::Unread(msg.clone())),
        };
        let recorded = record::from_line(bytes).map_err(Refusal::Unread)?;
        match recorded.kind {
            // Not a promotion: there is no request to evaluate, and none is guessed at.
            crate::audit::RecordKind::Admission => {
                return Err(Refusal::Admission(ADMISSION_RECORD_MSG.to_string()))
            }
            // A bare request or a promotion record: read its request.
            crate::audit::RecordKind::Promotion => {}
        }
        let line = match self.origin {
            Origin::Line { line, .. } => Some(line),
            Origin::File(_) | Origin::Case(_) => None,
        };
        let request = parse(&recorded.request, line).map_err(Refusal::Invalid)?;
        Ok(Request {
            request,
            recorded_at: self.at.or(recorded.at),
        })
    }

    fn len(&self) -> usize {
        match &self.body {
            Body::Bytes(b) => b.len(),
            Body::File(_) | Body::Unread(_) => 0,
        }
    }
}

/// Where requests are read from.
pub struct Input {
    kind: Kind,
    skipped: Vec<String>,
}

enum Kind {
    Lines(LineReader),
    Files { items: std::vec::IntoIter<Item> },
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Lines(r) => format!("lines from {}", r.name),
            Kind::Files { items } => format!("{} files", items.len()),
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
    pub fn open(path: &Path) -> Result<Input, InputError> {
        if path.as_os_str() == "-" {
            return Ok(Self::stdin());
        }
        let meta = std::fs::metadata(path).map_err(open_err(path))?;
        if meta.is_dir() {
            return Self::dir(path);
        }
        Self::jsonl_file(path)
    }

    /// JSONL on stdin.
    pub fn stdin() -> Input {
        Self::from_reader(io::stdin(), "stdin", None)
    }

    /// A JSONL file.
    pub fn jsonl_file(path: &Path) -> Result<Input, InputError> {
        let meta = std::fs::metadata(path).map_err(open_err(path))?;
        let file = File::open(path).map_err(open_err(path))?;
        let len = meta.is_file().then_some(meta.len());
        Ok(Self::from_reader(file, &path.display().to_string(), len))
    }

    /// JSONL from any reader; `name` names it in sources and errors, `len` (bytes, when
    /// known) feeds progress.
    pub fn from_reader(reader: impl Read + 'static, name: &str, len: Option<u64>) -> Input {
        Input {
            kind: Kind::Lines(LineReader {
                inner: Box::new(BufReader::with_capacity(256 * 1024, reader)),
                name: name.to_string(),
                line: 0,
                offset: 0,
                len,
            }),
            skipped: Vec::new(),
        }
    }

    /// The request files of a directory (see the module docs for which are skipped).
    pub fn dir(path: &Path) -> Result<Input, InputError> {
        let (files, skipped) = list_dir(path)?;
        let items = files
            .into_iter()
            .enumerate()
            .map(|(i, file)| Item::file(i as u64, Origin::File(file.clone()), file, None))
            .collect();
        Ok(Self {
            skipped,
            ..Self::files(items)
        })
    }

    /// Items listed by the caller (one request file, corpus cases), in their order; the
    /// indices are renumbered from 0.
    pub fn files(items: Vec<Item>) -> Input {
        let items: Vec<Item> = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| Item {
                index: i as u64,
                end: i as u64 + 1,
                ..item
            })
            .collect();
        Input {
            kind: Kind::Files {
                items: items.into_iter(),
            },
            skipped: Vec::new(),
        }
    }

    /// Directory entries that are not request files, by name.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// How much progress will count to, when known: the items in `shard` for listed
    /// files, the byte length for a JSONL file (`None` for a stream).
    pub fn progress_len(&self, shard: Shard) -> Option<ProgressLen> {
        match &self.kind {
            Kind::Lines(r) => r.len.map(ProgressLen::Bytes),
            Kind::Files { items } => Some(ProgressLen::Inputs(
                items
                    .as_slice()
                    .iter()
                    .filter(|item| shard.contains(item.index))
                    .count() as u64,
            )),
        }
    }

    /// Read the next items of `shard`: up to [`CHUNK_INPUTS`], stopping once
    /// [`CHUNK_BYTES`] are held. Empty at the end of the input.
    pub fn read_chunk(&mut self, shard: Shard) -> Result<Vec<Item>, InputError> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while chunk.len() < CHUNK_INPUTS && bytes < CHUNK_BYTES {
            let Some(item) = self.next_item(shard)? else {
                break;
            };
            bytes += item.len();
            chunk.push(item);
        }
        Ok(chunk)
    }

    fn next_item(&mut self, shard: Shard) -> Result<Option<Item>, InputError> {
        match &mut self.kind {
            Kind::Lines(reader) => loop {
                let index = reader.line;
                let keep = shard.contains(index);
                let Some(line) = reader.next_line(keep)? else {
                    return Ok(None);
                };
                if !keep {
                    continue;
                }
                let body = match line {
                    Line::Bytes(b) => Body::Bytes(b),
                    Line::TooLong(size) => Body::Unread(too_large(size)),
                };
                return Ok(Some(Item {
                    index,
                    origin: Origin::Line {
                        name: reader.name.clone(),
                        line: index + 1,
                    },
                    end: reader.offset,
                    body,
                    at: None,
                }));
            },
            Kind::Files { items } => Ok(items.find(|item| shard.contains(item.index))),
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

fn open_err(path: &Path) -> impl Fn(io::Error) -> InputError + '_ {
    move |source| InputError::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a file name is a request file's: `*.json` (any case), not hidden.
pub fn is_request_name(name: &str) -> bool {
    !name.starts_with('.')
        && name.len() > ".json".len()
        && name
            .get(name.len() - ".json".len()..)
            .is_some_and(|ext| ext.eq_ignore_ascii_case(".json"))
}

/// A directory's request files (see the module docs), in byte order of their names,
/// and the names of the entries skipped, sorted.
pub fn list_dir(path: &Path) -> Result<(Vec<PathBuf>, Vec<String>), InputError> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for entry in std::fs::read_dir(path).map_err(open_err(path))? {
        let entry = entry.map_err(open_err(path))?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        // Follows symlinks; an entry whose type cannot be read is kept, so that its
        // read error becomes its result rather than a silent skip.
        let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
        if !is_dir && is_request_name(&text) {
            files.push(entry.path());
        } else {
            skipped.push(text.into_owned());
        }
    }
    // Byte order of the names: the same on every machine, whatever the locale.
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    skipped.sort();
    Ok((files, skipped))
}

fn too_large(size: u64) -> String {
    RequestError::TooLarge {
        size: usize::try_from(size).unwrap_or(usize::MAX),
        limit: MAX_BODY_BYTES,
    }
    .to_string()
}

/// Read a request file: regular files only (a FIFO named `*.json` is refused before an
/// open could block), never more than [`MAX_LINE_BYTES`] whatever the file claims.
fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    match crate::fsio::read_capped(path, MAX_LINE_BYTES as u64) {
        Ok(bytes) => Ok(bytes),
        Err(crate::fsio::ReadError::TooLarge { size, .. }) => Err(too_large(size)),
        Err(e) => Err(e.to_string()),
    }
}

/// JSONL split into lines without ever holding more than [`MAX_LINE_BYTES`] of one.
struct LineReader {
    inner: Box<dyn BufRead>,
    name: String,
    /// Lines returned so far.
    line: u64,
    /// Bytes consumed so far.
    offset: u64,
    len: Option<u64>,
}

enum Line {
    Bytes(Vec<u8>),
    /// Longer than the limit: its length, the bytes dropped.
    TooLong(u64),
}

impl LineReader {
    /// The next line without its `\n`; its bytes are dropped unless `keep`.
    fn next_line(&mut self, keep: bool) -> Result<Option<Line>, InputError> {
        let mut buf = Vec::new();
        let mut size: u64 = 0;
        let mut started = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(InputError::Read {
                        what: match self.name.as_str() {
                            "stdin" => "stdin".to_string(),
                            name => format!("`{name}`"),
                        },
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
            if keep && size <= MAX_LINE_BYTES as u64 {
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
        Ok(Some(if size > MAX_LINE_BYTES as u64 {
            Line::TooLong(size)
        } else {
            Line::Bytes(buf)
        }))
    }
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
        // The whole chain: the refusal is a message in the output, not an error.
        (e, _) => crate::error_chain::ErrorChain(&e).to_string(),
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    fn lines(body: &[u8]) -> Vec<Result<Vec<u8>, u64>> {
        let mut input = Input::from_reader(std::io::Cursor::new(body.to_vec()), "test", None);
        let Kind::Lines(reader) = &mut input.kind else {
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
        let mut body = vec![b' '; MAX_LINE_BYTES + 10];
        body.extend_from_slice(b"\n{}\n");
        assert_eq!(
            lines(&body),
            vec![Err(MAX_LINE_BYTES as u64 + 10), Ok(b"{}".to_vec())]
        );
        // Exactly at the limit is still a line.
        let mut body = vec![b' '; MAX_LINE_BYTES];
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
    fn jsonl_lines_are_numbered_and_records_keep_their_time() {
        let text = "{\"request\":{\"id\":\"a\"},\"evaluatedAt\":\"2026-11-26T18:00:00Z\"}\n\n{\"id\":\"b\"}\r\n{\"request\":\"x\"}";
        let mut input = Input::from_reader(std::io::Cursor::new(text), "log", None);
        let items = input.read_chunk(Shard::ALL).unwrap();
        let origins: Vec<_> = items
            .iter()
            .map(|i| match &i.origin {
                Origin::Line { name, line } => format!("{name}:{line}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(origins, ["log:1", "log:2", "log:3", "log:4"]);
        // Line 1 is a record: its request is refused by the schema, not unread.
        assert!(matches!(items[0].read(), Err(Refusal::Invalid(_))));
        assert_eq!(
            items[1].read().unwrap_err(),
            Refusal::Invalid("empty line: expected one JSON request per line".into())
        );
        assert!(matches!(items[3].read(), Err(Refusal::Unread(m)) if m.contains("`request`")));
    }

    #[test]
    fn a_record_file_keeps_its_time_and_a_case_time_wins_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let request: serde_json::Value = serde_json::from_slice(
            &std::fs::read("corpus/cases/prod-allow-baseline/request.json").unwrap(),
        )
        .unwrap();
        let path = dir.path().join("r.json");
        let record = serde_json::json!({"request": request, "evaluatedAt": "2026-01-01T00:00:00Z"});
        std::fs::write(&path, record.to_string()).unwrap();
        let item = Item::file(0, Origin::File(path.clone()), path.clone(), None);
        let read = item.read().unwrap();
        assert_eq!(
            read.recorded_at,
            Some(parse_time("2026-01-01T00:00:00Z").unwrap())
        );
        let case_at = parse_time("2027-01-01T00:00:00Z").unwrap();
        let item = Item::file(0, Origin::Case(path.clone()), path, Some(case_at));
        assert_eq!(item.read().unwrap().recorded_at, Some(case_at));
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
        let (files, skipped) = list_dir(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.JSON", "b.json"]);
        assert_eq!(
            skipped,
            [".hidden.json", ".json", "notes.txt", "sub.json", "x.jsonl"]
        );
        let input = Input::dir(dir.path()).unwrap();
        assert_eq!(input.skipped().len(), 5);
        assert_eq!(
            input.progress_len(Shard { index: 1, count: 2 }),
            Some(ProgressLen::Inputs(1))
        );
    }
}
