//! Walks an audit chain (a SQLite log or a JSONL export of one) and names the first place it is
//! broken: edited, deleted, reordered, inserted, badly signed or, against a checkpoint,
//! truncated; it only reads and never repairs.
//!
//! Each record is checked on its own in parallel (its hash, its envelope's signature, its
//! columns against the signed decision), then the links are walked in order. How a break
//! is named:
//!
//! - a gap in `seq` is **deleted**;
//! - a record whose `prevHash` is the hash of the record two back means the one between
//!   was **inserted** (likewise a bad record that the next one links past);
//! - a record that repeats an earlier decision id is **inserted** (a copy);
//! - a record whose `prevHash` is the hash of a record later in the log was **reordered**;
//! - a record whose envelope does not verify has a **bad signature**;
//! - a record whose hash does not match its contents, or whose columns disagree with
//!   its signed decision, was **edited**;
//! - a log that ends before a checkpoint's seq was **truncated**.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::seen::SeenIds;
use super::store::{AuditLog, Filter, Row, RowError, READ_CHUNK};
use super::{AuditError, Checkpoint, Head, Record, StoreCause, GENESIS};
use crate::attest::PublicKey;
use crate::error_chain::ErrorChain;
use crate::sign::{verify_decision_envelope, SignError};

/// What is wrong at the first broken record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tamper {
    /// A record's contents changed after it was written.
    Edited,
    /// Records are missing from the middle of the chain.
    Deleted,
    /// Records are out of their chained order.
    Reordered,
    /// A record that was never chained here was slipped in.
    Inserted,
    /// A record's envelope does not verify with the decision keys.
    BadSignature,
    /// Records after a checkpoint's head are gone.
    Truncated,
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tamper::Edited => "edited",
            Tamper::Deleted => "deleted",
            Tamper::Reordered => "reordered",
            Tamper::Inserted => "inserted",
            Tamper::BadSignature => "bad signature",
            Tamper::Truncated => "truncated",
        })
    }
}

/// The first broken place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The first seq that is wrong (or missing).
    pub seq: u64,
    /// How.
    pub kind: Tamper,
    /// What exactly, for a person.
    pub detail: String,
}

/// The outcome of a walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Records that verified, in order, before the finding (all of them when intact).
    pub verified: u64,
    /// The first seq walked (1 unless a partial export).
    pub first_seq: u64,
    /// The `prevHash` the walk started from: [`GENESIS`], or for an export that starts
    /// later, its first record's (taken as given: check it against the source).
    pub start_prev_hash: String,
    /// The last verified record.
    pub head: Head,
    /// The checkpoint's seq, when one was given and the chain reached it intact.
    pub checkpoint_seq: Option<u64>,
    /// The first broken place, if any.
    pub finding: Option<Finding>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn intact(&self) -> bool {
        self.finding.is_none()
    }
}

/// Where records come from, in chain order.
trait Source {
    /// The next records (up to [`READ_CHUNK`]); empty at the end. Each with its seq
    /// as read (0 when even that is unreadable) and the record or why it is unreadable.
    fn next_chunk(&mut self) -> Result<Vec<Row>, AuditError>;
    /// A record after `after` whose stored hash is `hash`.
    fn seq_with_hash(&mut self, hash: &str, after: u64) -> Result<Option<u64>, AuditError>;
    /// Whether a record with this seq comes later (out of order: an export's lines
    /// moved; a log is always read in seq order).
    fn holds_seq_later(&mut self, seq: u64) -> Result<bool, AuditError>;
    /// The seq the records must start at: 1, or N for an export made `--since N` and
    /// verified with `--from-seq N` (anything else is records missing at the start).
    fn first_seq(&self) -> u64;
}

struct Db<'a> {
    log: &'a AuditLog,
    after: u64,
}

impl Source for Db<'_> {
    fn next_chunk(&mut self) -> Result<Vec<Row>, AuditError> {
        let rows = self.log.read(self.after, READ_CHUNK, &Filter::default())?;
        if let Some((seq, _)) = rows.last() {
            self.after = *seq;
        }
        Ok(rows)
    }

    fn seq_with_hash(&mut self, hash: &str, after: u64) -> Result<Option<u64>, AuditError> {
        self.log.seq_with_hash(hash, after)
    }

    fn holds_seq_later(&mut self, _seq: u64) -> Result<bool, AuditError> {
        Ok(false)
    }

    fn first_seq(&self) -> u64 {
        1
    }
}

/// Cap for one line of an export: a record holds a request (at most 1 MiB, as JSON text
/// that may be escaped once more) with its decision and envelope.
const MAX_RECORD_LINE_BYTES: usize = 8 * 1024 * 1024;

struct Jsonl {
    path: PathBuf,
    reader: BufReader<File>,
    line: u64,
    from: u64,
}

#[derive(Deserialize)]
struct SeqHash {
    seq: u64,
    hash: String,
}

impl Jsonl {
    fn open(path: &Path) -> Result<Self, AuditError> {
        // Any length (an export grows with the log), but regular files only: a FIFO
        // must not block the open. Each line is capped in `next_line`.
        let file = crate::fsio::open_regular(path, u64::MAX).map_err(|e| AuditError::Read {
            path: path.to_path_buf(),
            cause: StoreCause::File(e),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            line: 0,
            from: 1,
        })
    }

    fn next_line(&mut self) -> Result<Option<String>, AuditError> {
        let mut buf = Vec::new();
        loop {
            let read =
                crate::fsio::read_line_capped(&mut self.reader, &mut buf, MAX_RECORD_LINE_BYTES)
                    .map_err(|e| AuditError::Read {
                        path: self.path.clone(),
                        cause: StoreCause::Line {
                            line: self.line,
                            source: e,
                        },
                    })?;
            match read {
                crate::fsio::CappedLine::Eof => return Ok(None),
                crate::fsio::CappedLine::TooLong(size) => {
                    self.line += 1;
                    return Err(AuditError::Read {
                        path: self.path.clone(),
                        cause: format!(
                            "line {} is {size} bytes; the limit is {MAX_RECORD_LINE_BYTES}",
                            self.line
                        )
                        .into(),
                    });
                }
                crate::fsio::CappedLine::Line => {
                    self.line += 1;
                    let text = String::from_utf8(std::mem::take(&mut buf)).map_err(|_| {
                        AuditError::Read {
                            path: self.path.clone(),
                            cause: format!("line {} is not UTF-8", self.line).into(),
                        }
                    })?;
                    if !text.trim().is_empty() {
                        return Ok(Some(text));
                    }
                }
            }
        }
    }
}

impl Source for Jsonl {
    fn next_chunk(&mut self) -> Result<Vec<Row>, AuditError> {
        let mut out = Vec::new();
        while out.len() < READ_CHUNK {
            let Some(text) = self.next_line()? else { break };
            let parsed = serde_json::from_str::<Record>(&text).map_err(|source| RowError::Line {
                line: self.line,
                source,
            });
            let seq = match &parsed {
                Ok(r) => r.seq,
                Err(_) => serde_json::from_str::<SeqHash>(&text).map_or(0, |s| s.seq),
            };
            out.push((seq, parsed));
        }
        Ok(out)
    }

    fn seq_with_hash(&mut self, hash: &str, after: u64) -> Result<Option<u64>, AuditError> {
        let mut again = Jsonl::open(&self.path)?;
        while let Some(text) = again.next_line()? {
            if let Ok(s) = serde_json::from_str::<SeqHash>(&text) {
                if s.hash == hash && s.seq > after {
                    return Ok(Some(s.seq));
                }
            }
        }
        Ok(None)
    }

    fn holds_seq_later(&mut self, seq: u64) -> Result<bool, AuditError> {
        let mut again = Jsonl::open(&self.path)?;
        while let Some(text) = again.next_line()? {
            if serde_json::from_str::<SeqHash>(&text).is_ok_and(|s| s.seq == seq) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn first_seq(&self) -> u64 {
        self.from
    }
}

/// One record with its own checks done, and what the caller extracted from it.
struct Checked<T> {
    seq: u64,
    record: Result<Record, RowError>,
    hash_ok: bool,
    signature: Result<(), SignError>,
    mismatch: Option<String>,
    extra: Option<T>,
}

/// What a caller of [`verify_log_with`] takes from each record: `extract` runs on every
/// readable record in parallel (with the checks), `visit` on each verified one in order.
pub struct Visitor<'a, T> {
    /// Runs beside the record's own checks, on the rayon pool.
    pub extract: &'a (dyn Fn(&Record) -> T + Sync),
    /// Runs once per record that verified, in chain order, before the next is judged.
    pub visit: &'a mut dyn FnMut(&Record, T),
}

fn check<T>(
    (seq, record): Row,
    keys: &[PublicKey],
    extract: &(dyn Fn(&Record) -> T + Sync),
) -> Checked<T> {
    let Ok(r) = &record else {
        return Checked {
            seq,
            record,
            hash_ok: false,
            signature: Ok(()),
            mismatch: None,
            extra: None,
        };
    };
    let extra = Some(extract(r));
    let hash_ok = r.compute_hash() == r.hash;
    let (signature, mismatch) = match verify_decision_envelope(&r.envelope, keys) {
        Ok(decision) => (Ok(()), r.mismatch(&decision)),
        Err(e) => (Err(e), None),
    };
    Checked {
        seq,
        record,
        hash_ok,
        signature,
        mismatch,
        extra,
    }
}

/// Verify the SQLite log at `log`: every record's hash, link and signature (with `keys`),
/// and, given a checkpoint, that the chain reaches its head unchanged.
pub fn verify_log(
    log: &AuditLog,
    keys: &[PublicKey],
    checkpoint: Option<&Checkpoint>,
) -> Result<VerifyReport, AuditError> {
    verify_log_with(
        log,
        keys,
        checkpoint,
        Visitor {
            extract: &|_| (),
            visit: &mut |_, ()| {},
        },
    )
}

/// [`verify_log`], handing each record to `visitor` as it goes: one read of the log
/// serves both the verification and whatever the caller computes from the records.
pub fn verify_log_with<T: Send>(
    log: &AuditLog,
    keys: &[PublicKey],
    checkpoint: Option<&Checkpoint>,
    visitor: Visitor<'_, T>,
) -> Result<VerifyReport, AuditError> {
    if let Some(cp) = checkpoint {
        if !cp.log_id.is_empty() && !log.log_id().is_empty() && cp.log_id != log.log_id() {
            return Err(AuditError::Checkpoint {
                path: log.path().to_path_buf(),
                reason: format!(
                    "the checkpoint is for log `{}`, this is log `{}`",
                    cp.log_id,
                    log.log_id()
                ),
            });
        }
    }
    walk(&mut Db { log, after: 0 }, keys, checkpoint, visitor)
}

/// Verify a JSONL export (`audit export`) the same way. It must start at seq 1, or at
/// `from_seq` when given (an export `--since N`), whose first record's `prevHash` is then
/// taken as given: without it, records cut off the start are found as deleted.
pub fn verify_export(
    path: &Path,
    keys: &[PublicKey],
    checkpoint: Option<&Checkpoint>,
    from_seq: Option<u64>,
) -> Result<VerifyReport, AuditError> {
    let mut source = Jsonl::open(path)?;
    source.from = from_seq.unwrap_or(1).max(1);
    let visitor = Visitor {
        extract: &|_| (),
        visit: &mut |_, ()| {},
    };
    walk(&mut source, keys, checkpoint, visitor)
}

fn walk<T: Send>(
    source: &mut dyn Source,
    keys: &[PublicKey],
    checkpoint: Option<&Checkpoint>,
    visitor: Visitor<'_, T>,
) -> Result<VerifyReport, AuditError> {
    let mut walker = Walker {
        source,
        keys,
        visitor,
        checkpoint,
        report: VerifyReport {
            verified: 0,
            first_seq: 1,
            start_prev_hash: GENESIS.to_string(),
            head: Head::genesis(),
            checkpoint_seq: None,
            finding: None,
        },
        queue: VecDeque::new(),
        exhausted: false,
        expected: 1,
        prev_prev: None,
        seen: SeenIds::new()?,
        first: true,
    };
    let finding = walker.run()?;
    walker.finish(finding)
}

/// One pass over a chain: what has been verified so far, and what the next record must
/// be to continue it.
struct Walker<'a, 'v, T> {
    source: &'a mut dyn Source,
    keys: &'a [PublicKey],
    visitor: Visitor<'v, T>,
    checkpoint: Option<&'a Checkpoint>,
    report: VerifyReport,
    /// Records checked (hash and signature, in parallel per chunk), one of lookahead.
    queue: VecDeque<Checked<T>>,
    exhausted: bool,
    /// The seq the next record must have.
    expected: u64,
    /// The hash before the head's: a record linking to it skipped the head.
    prev_prev: Option<String>,
    /// Decision ids walked past, with their seq: on disk, so memory stays flat.
    seen: SeenIds,
    first: bool,
}

impl<T: Send> Walker<'_, '_, T> {
    /// Walks to the first finding, or the end (`None`).
    fn run(&mut self) -> Result<Option<Finding>, AuditError> {
        loop {
            // Keep one record of lookahead.
            if self.queue.len() < 2 && !self.exhausted {
                let chunk = self.source.next_chunk()?;
                self.exhausted = chunk.is_empty();
                let keys = self.keys;
                let extract = self.visitor.extract;
                let checked: Vec<Checked<T>> = chunk
                    .into_par_iter()
                    .map(|c| check(c, keys, extract))
                    .collect();
                self.queue.extend(checked);
                continue;
            }
            let Some(mut c) = self.queue.pop_front() else {
                return Ok(None);
            };
            let extra = c.extra.take();
            let r = match &c.record {
                Ok(r) => r,
                Err(why) => {
                    return Ok(Some(Finding {
                        seq: if c.seq > 0 { c.seq } else { self.expected },
                        kind: Tamper::Edited,
                        detail: format!("the record cannot be read back: {}", ErrorChain(why)),
                    }))
                }
            };
            if self.first {
                self.first = false;
                if let Some(f) = self.anchor(r) {
                    return Ok(Some(f));
                }
            }
            if let Some(f) = self.judge(&c, r)? {
                return Ok(Some(f));
            }
            if let Some(f) = self.accept(r) {
                return Ok(Some(f));
            }
            if let Some(extra) = extra {
                (self.visitor.visit)(r, extra);
            }
        }
    }

    /// Where the chain starts: seq 1 from genesis, or the first record of an export
    /// told to start later (anchored on its link only then: an export whose first
    /// records were cut off must not verify as intact).
    fn anchor(&mut self, r: &Record) -> Option<Finding> {
        let from = self.source.first_seq();
        if r.seq != from && from > 1 {
            return Some(Finding {
                seq: from,
                kind: Tamper::Deleted,
                detail: format!(
                    "the export was to start at seq {from} but its first record is seq {}",
                    r.seq
                ),
            });
        }
        if from > 1 {
            self.expected = r.seq;
            self.report.first_seq = r.seq;
            self.report.start_prev_hash = r.prev_hash.clone();
            self.report.head = Head {
                seq: r.seq - 1,
                hash: r.prev_hash.clone(),
            };
        }
        None
    }

    /// Makes `r` the head; a finding if a checkpoint vouches for another hash here.
    fn accept(&mut self, r: &Record) -> Option<Finding> {
        self.prev_prev = Some(self.report.head.hash.clone());
        self.report.head = Head {
            seq: r.seq,
            hash: r.hash.clone(),
        };
        self.report.verified += 1;
        self.expected = r.seq + 1;
        let cp = self.checkpoint.filter(|cp| cp.seq == r.seq)?;
        if cp.hash != r.hash {
            return Some(Finding {
                seq: r.seq,
                kind: Tamper::Edited,
                detail: format!(
                    "the chain up to seq {} was rewritten: its hash is {} but the checkpoint of {} says {}",
                    r.seq, r.hash, cp.time, cp.hash
                ),
            });
        }
        self.report.checkpoint_seq = Some(cp.seq);
        None
    }

    /// The report, with the checkpoint's verdict on where the walk ended.
    fn finish(mut self, finding: Option<Finding>) -> Result<VerifyReport, AuditError> {
        let report = &mut self.report;
        report.finding = finding;
        let Some(cp) = self.checkpoint.filter(|_| report.finding.is_none()) else {
            return Ok(self.report);
        };
        if cp.seq == 0 && cp.hash == GENESIS {
            report.checkpoint_seq = Some(0);
        } else if cp.seq < report.first_seq {
            return Err(AuditError::Checkpoint {
                path: PathBuf::from("<checkpoint>"),
                reason: format!(
                    "it vouches for seq {}, before these records' first seq {}",
                    cp.seq, report.first_seq
                ),
            });
        } else if cp.seq > report.head.seq {
            report.finding = Some(Finding {
                seq: report.head.seq + 1,
                kind: Tamper::Truncated,
                detail: format!(
                    "the log ends at seq {} but the checkpoint of {} vouches for seq {}: records {}..={} were cut off",
                    report.head.seq,
                    cp.time,
                    cp.seq,
                    report.head.seq + 1,
                    cp.seq
                ),
            });
        }
        Ok(self.report)
    }

    /// The finding at record `r`, if it is broken (see the module docs for the names):
    /// its place in the order, its link, then its contents.
    fn judge(&mut self, c: &Checked<T>, r: &Record) -> Result<Option<Finding>, AuditError> {
        if let Some(f) = self.judge_order(r)? {
            return Ok(Some(f));
        }
        if let Some(f) = self.judge_link(c, r)? {
            return Ok(Some(f));
        }
        Ok(judge_contents(c, r, self.queue.front(), &self.report.head))
    }

    /// Reordered, deleted or repeated records.
    fn judge_order(&mut self, r: &Record) -> Result<Option<Finding>, AuditError> {
        let expected = self.expected;
        let at = |seq: u64, kind: Tamper, detail: String| Ok(Some(Finding { seq, kind, detail }));
        if r.seq < expected {
            return at(
                r.seq,
                Tamper::Reordered,
                format!("seq {} comes after seq {}", r.seq, expected - 1),
            );
        }
        if r.seq > expected && self.source.holds_seq_later(expected)? {
            return at(
                expected,
                Tamper::Reordered,
                format!("seq {} comes before seq {expected}", r.seq),
            );
        }
        if r.seq > expected {
            let missing = if r.seq == expected + 1 {
                format!("seq {expected} is missing")
            } else {
                format!("seq {expected}..={} are missing", r.seq - 1)
            };
            return at(
                expected,
                Tamper::Deleted,
                format!(
                    "{missing}: the chain jumps from seq {} to seq {}",
                    expected - 1,
                    r.seq
                ),
            );
        }
        // Recorded here rather than when the record is accepted: a finding at any later
        // check ends the walk, so the ids recorded are still exactly those of the records
        // walked past.
        if let Some(earlier) = self.seen.first_seen(&r.decision_id, r.seq)? {
            return at(
                r.seq,
                Tamper::Inserted,
                format!(
                    "it repeats decision `{}`, already recorded at seq {earlier}",
                    r.decision_id
                ),
            );
        }
        Ok(None)
    }

    /// A `prevHash` that does not link to the head: what happened, as precisely as the
    /// rest of the log tells.
    fn judge_link(&mut self, c: &Checked<T>, r: &Record) -> Result<Option<Finding>, AuditError> {
        let prev = &self.report.head;
        if r.prev_hash == prev.hash {
            return Ok(None);
        }
        let at = |seq: u64, kind: Tamper, detail: String| Ok(Some(Finding { seq, kind, detail }));
        if self.prev_prev.as_deref() == Some(r.prev_hash.as_str()) {
            return at(
                prev.seq,
                Tamper::Inserted,
                format!(
                    "seq {} links to seq {}, so seq {} was slipped in between",
                    r.seq,
                    prev.seq.saturating_sub(1),
                    prev.seq
                ),
            );
        }
        let prev_seq = prev.seq;
        if let Some(later) = self.source.seq_with_hash(&r.prev_hash, r.seq)? {
            return at(
                r.seq,
                Tamper::Reordered,
                format!("it links to the record now at seq {later}, which comes after it"),
            );
        }
        if c.hash_ok {
            return at(
                r.seq,
                Tamper::Deleted,
                format!(
                    "it links to a record that is no longer in the log (not seq {prev_seq}): a record before it was removed"
                ),
            );
        }
        at(
            r.seq,
            Tamper::Edited,
            format!("its prevHash does not link to seq {prev_seq}"),
        )
    }
}

/// A record that links correctly but whose hash, signature or fields are wrong (or
/// which the next record skips).
fn judge_contents<T>(
    c: &Checked<T>,
    r: &Record,
    next: Option<&Checked<T>>,
    prev: &Head,
) -> Option<Finding> {
    let at = |seq: u64, kind: Tamper, detail: String| Some(Finding { seq, kind, detail });
    let sound = c.hash_ok && c.signature.is_ok() && c.mismatch.is_none();
    if !sound {
        let skipped = next
            .and_then(|n| n.record.as_ref().ok())
            .is_some_and(|n| n.prev_hash == r.prev_hash);
        if skipped {
            return at(
                r.seq,
                Tamper::Inserted,
                format!(
                    "seq {} links to seq {}, past this record",
                    r.seq + 1,
                    prev.seq
                ),
            );
        }
    }
    if let Err(e) = &c.signature {
        return at(
            r.seq,
            Tamper::BadSignature,
            format!("its envelope: {}", ErrorChain(e)),
        );
    }
    if !c.hash_ok {
        let what = c
            .mismatch
            .as_ref()
            .map_or_else(String::new, |m| format!("; {m}"));
        return at(
            r.seq,
            Tamper::Edited,
            format!("its stored hash does not match its contents{what}"),
        );
    }
    if let Some(m) = &c.mismatch {
        return at(
            r.seq,
            Tamper::Edited,
            format!("{m} (and its hash was recomputed to hide it)"),
        );
    }
    None
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
    use crate::audit::tests::signed_n;
    use crate::audit::RecordOptions;
    use crate::sign::DEV_SIGNING_KEY_PEM;

    fn keys() -> Vec<PublicKey> {
        vec![
            crate::attest::SigningKey::from_pkcs8_pem(DEV_SIGNING_KEY_PEM)
                .unwrap()
                .public_key(),
        ]
    }

    /// A log of `n` records and its export lines.
    fn exported(n: usize) -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open_for_append(&dir.path().join("a.db"), None).unwrap();
        let mut records: Vec<Record> = signed_n(n)
            .iter()
            .map(|(d, e, q)| RecordOptions::default().prepare(d, e, q).unwrap())
            .collect();
        log.append(&mut records).unwrap();
        let lines = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        (dir, lines)
    }

    fn verify_lines(dir: &Path, lines: &[String]) -> VerifyReport {
        let path = dir.join("export.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let from = lines
            .first()
            .and_then(|l| serde_json::from_str::<SeqHash>(l).ok())
            .map(|s| s.seq);
        verify_export(&path, &keys(), None, from).unwrap()
    }

    #[test]
    fn an_export_walks_like_the_log_and_names_swapped_lines() {
        let (dir, lines) = exported(4);
        let report = verify_lines(dir.path(), &lines);
        assert!(report.intact(), "{report:?}");
        assert_eq!((report.verified, report.head.seq), (4, 4));

        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        let f = verify_lines(dir.path(), &swapped).finding.unwrap();
        assert_eq!((f.seq, f.kind), (2, Tamper::Reordered), "{f:?}");
        let mut dup = lines.clone();
        dup.insert(2, lines[1].clone());
        let f = verify_lines(dir.path(), &dup).finding.unwrap();
        assert_eq!((f.seq, f.kind), (2, Tamper::Reordered), "{f:?}");

        // From the middle: anchored on its first record's link.
        let report = verify_lines(dir.path(), &lines[2..]);
        assert!(report.intact());
        assert_eq!((report.first_seq, report.verified), (3, 2));
    }

    #[test]
    fn an_export_missing_its_first_records_is_not_intact() {
        let (dir, lines) = exported(4);
        let path = dir.path().join("export.jsonl");
        std::fs::write(&path, lines[2..].join("\n") + "\n").unwrap();
        // Not told it starts at 3: records 1 and 2 are missing.
        let f = verify_export(&path, &keys(), None, None)
            .unwrap()
            .finding
            .unwrap();
        assert_eq!(f.kind, Tamper::Deleted, "{f:?}");
        // Told it starts at 2, but it starts at 3: record 2 is missing.
        let f = verify_export(&path, &keys(), None, Some(2))
            .unwrap()
            .finding
            .unwrap();
        assert_eq!((f.seq, f.kind), (2, Tamper::Deleted), "{f:?}");
        assert!(verify_export(&path, &keys(), None, Some(3))
            .unwrap()
            .intact());
    }

    #[test]
    fn a_record_signed_by_another_key_is_a_bad_signature() {
        let (dir, lines) = exported(2);
        let other = crate::attest::SigningKey::ed25519_from_seed(&[9; 32]).public_key();
        let path = dir.path().join("export.jsonl");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let f = verify_export(&path, &[other], None, None)
            .unwrap()
            .finding
            .unwrap();
        assert_eq!((f.seq, f.kind), (1, Tamper::BadSignature), "{f:?}");
    }
}
