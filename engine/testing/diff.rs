//! Policy diff: evaluates the same recorded requests under two bundles, each at its own
//! recorded time, and reports every decision that changes; it reads and compares, it never
//! edits a bundle or an input, and it never turns an input it could not read into "unchanged".
//!
//! # Inputs
//!
//! Each input path is one of (read through [`crate::input`]):
//!
//! - a **corpus directory**: one whose subdirectories hold `request.json` + `case.json`
//!   ([`super::load_cases`]), or one such case directory; each case records its `at`;
//! - a **directory of request files**: its `*.json` files (not recursing, hidden files
//!   skipped), in byte order of their names; or one `*.json` request file;
//! - any other file is **JSONL**, and so is `-` (stdin): each line a bare request or an audit
//!   record `{"request": {...}, "evaluatedAt": "..."}` ([`crate::input::record::from_line`]),
//!   so `audit query --format jsonl` output feeds diff directly. An audit record of an
//!   admission (break-glass, dry-run; [`crate::audit::RecordKind`]) is no promotion: it is
//!   skipped and counted (`admissionRecords`), neither a change nor an error.
//!
//! # The time each input is evaluated at (the same on both sides)
//!
//! The one rule of [`crate::input::time`], with `requestedAt` and a clock read once:
//!
//! 1. `--at` ([`TimeRule::at`]), when given: it wins for every input;
//! 2. else its recorded time: the case's `at`, the record's `evaluatedAt`;
//! 3. else the request's own `requestedAt`, when present;
//! 4. else one clock reading taken once at the start ([`diff_time_rule`]).
//!
//! # Errors per input
//!
//! A request the schema refuses is refused before policy runs, by either bundle alike
//! (the schema ships in the binary, not in the bundle), so it is an `invalid` error
//! row and can never be a change. An input that could not be read at all (an
//! unreadable file, a record with a bad `evaluatedAt`, an over-long line, a bad
//! `requestedAt`) is an `unread` error row: its outcome is unknown, and the CLI fails
//! (exit 2) rather than let it pass as unchanged.
//!
//! # Memory
//!
//! Inputs are read and evaluated [`crate::input::CHUNK_INPUTS`] at a time, and only the
//! changes and errors are kept, so a long audit export runs in bounded memory.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;
use time::OffsetDateTime;

use super::{load_cases, CaseSpec, Expectation};
use crate::evaluator::{Engine, Evaluator};
use crate::input::{
    format_time, is_request_name, list_dir, parse_time, Clock, Input, Item, Origin, Refusal, Shard,
    TimeRule, INVALID_ID,
};
use crate::pool::EvaluatorPool;

/// Errors that stop a diff (exit 2); problems with one input never do.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// An input path cannot be opened, listed or read.
    #[error("cannot read input `{path}`: {reason}")]
    Input {
        /// The input path as given.
        path: String,
        /// What reading it ran into (missing, too large, not JSON or JSONL).
        reason: String,
    },
    /// A corpus directory has a case whose `case.json` cannot be loaded.
    #[error("corpus `{path}`: {reason}")]
    Corpus {
        /// The corpus directory.
        path: String,
        /// The case loader's message (names the case and file).
        reason: String,
    },
    /// A policies directory could not be materialised at a git revision.
    #[error("git revision `{rev}` of `{path}`: {reason}")]
    Git {
        /// The revision as given.
        rev: String,
        /// The policies directory.
        path: String,
        /// What git said.
        reason: String,
    },
}

/// The time rule of a diff: `--at`, else the recorded time, else the request's
/// `requestedAt`, else `now` (one clock reading, so both sides see the same time).
pub fn diff_time_rule(at: Option<OffsetDateTime>, now: OffsetDateTime) -> TimeRule {
    TimeRule {
        at,
        requested_at: true,
        clock: Clock::Fixed(now),
    }
}

/// One side of the diff: a loaded engine and how to name its bundle.
#[derive(Debug, Clone)]
pub struct Side {
    /// The engine built from this side's bundle.
    pub engine: Arc<Engine>,
    /// How to name the bundle: its directory, or `REV:dir` for a git revision.
    pub label: String,
}

/// A bundle as the report names it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BundleRef {
    /// Its directory or revision.
    pub label: String,
    /// Hex sha256 of the bundle (policy and data files; tests excluded).
    pub digest: String,
    /// The trust file this side verified attestations against, if any.
    pub trust: Option<String>,
}

impl BundleRef {
    fn of(side: &Side) -> Self {
        Self {
            label: side.label.clone(),
            digest: side.engine.bundle().digest().hex(),
            trust: side.engine.trust_path().map(|p| p.display().to_string()),
        }
    }
}

/// How a decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    /// Denied under the base bundle, allowed under the new one: a person must look.
    DenyToAllow,
    /// Allowed under the base bundle, denied under the new one.
    AllowToDeny,
    /// Same outcome, different violation or warning ids.
    IdsChanged,
}

impl ChangeKind {
    /// The short name in tables: `deny->allow`, `allow->deny`, `ids`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::DenyToAllow => "deny->allow",
            ChangeKind::AllowToDeny => "allow->deny",
            ChangeKind::IdsChanged => "ids",
        }
    }
}

/// Violation and warning ids, one side's or a difference.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Ids {
    /// Violation ids, sorted.
    pub deny: Vec<String>,
    /// Warning ids, sorted.
    pub warn: Vec<String>,
}

impl Ids {
    fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.warn.is_empty()
    }
}

/// One decision that differs between the bundles.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Which input: `corpus/cases/<name>`, `<file>:<line>`, `<dir>/<file>.json`.
    pub source: String,
    /// The request's `id`.
    pub request_id: String,
    /// The time both sides evaluated it at.
    pub evaluated_at: String,
    /// How it changed.
    pub change: ChangeKind,
    /// The base bundle's decision.
    pub base: Expectation,
    /// The new bundle's decision.
    pub new: Expectation,
    /// Ids the new bundle gives and the base did not.
    pub added: Ids,
    /// Ids the base bundle gave and the new one does not.
    pub removed: Ids,
}

/// Why an input has no comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// Refused before policy (JSON, limits, schema) by both bundles alike: the same
    /// outcome on both sides, so never a change.
    Invalid,
    /// Not evaluated (unreadable, a bad record, a bad time): its outcome is unknown.
    Unread,
}

/// An input that could not be compared.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UncomparedInput {
    /// Which input.
    pub source: String,
    /// Invalid (same on both sides) or unread (unknown).
    pub kind: ErrorKind,
    /// What is wrong, naming the field or file.
    pub msg: String,
}

/// Tallies of a diff.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiffSummary {
    /// Inputs evaluated under both bundles (errors excluded).
    pub evaluated: u64,
    /// Of those, decisions with the same outcome and ids.
    pub unchanged: u64,
    /// Of those, decisions that differ.
    pub changed: u64,
    /// Changes from deny to allow.
    pub deny_to_allow: u64,
    /// Changes from allow to deny.
    pub allow_to_deny: u64,
    /// Changes of ids only (same outcome).
    pub ids_changed: u64,
    /// Inputs not compared (invalid + unread).
    pub errors: u64,
    /// Of the errors, those not evaluated at all (outcome unknown).
    pub unread: u64,
    /// Audit records of admissions (break-glass, dry-run): no promotion to compare, so
    /// skipped, neither evaluated nor errors.
    pub admission_records: u64,
}

impl DiffSummary {
    /// The closing line: `N evaluated, N changed (N deny->allow, N allow->deny, N ids
    /// changed), N errors`, and `; N admission records skipped` when there were any.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} evaluated, {} changed ({} deny->allow, {} allow->deny, {} ids changed), {} errors",
            self.evaluated,
            self.changed,
            self.deny_to_allow,
            self.allow_to_deny,
            self.ids_changed,
            self.errors
        );
        if self.admission_records > 0 {
            let _ = write!(
                line,
                "; {} admission records skipped (not promotions)",
                self.admission_records
            );
        }
        line
    }
}

/// The whole diff: both bundles, the tallies, every change and every error.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// The old bundle (`--base`).
    pub base: BundleRef,
    /// The new bundle (`--policies`).
    pub new: BundleRef,
    /// Counts.
    pub summary: DiffSummary,
    /// Every changed decision: deny->allow first, then allow->deny, then id changes;
    /// input order within each.
    pub changes: Vec<Change>,
    /// Every input that could not be compared, in input order.
    pub errors: Vec<UncomparedInput>,
}

impl DiffReport {
    fn new(base: &Side, new: &Side) -> Self {
        Self {
            base: BundleRef::of(base),
            new: BundleRef::of(new),
            summary: DiffSummary::default(),
            changes: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Whether any decision flips from deny to allow (the CLI exits 1).
    pub fn loosens(&self) -> bool {
        self.summary.deny_to_allow > 0
    }

    /// Inputs compared or not, all told (skipped admission records included).
    pub fn inputs(&self) -> u64 {
        self.summary.evaluated + self.summary.errors + self.summary.admission_records
    }

    fn add(&mut self, outcome: SideOutcome) {
        let s = &mut self.summary;
        match outcome {
            SideOutcome::Same => {
                s.evaluated += 1;
                s.unchanged += 1;
            }
            SideOutcome::Changed(change) => {
                s.evaluated += 1;
                s.changed += 1;
                match change.change {
                    ChangeKind::DenyToAllow => s.deny_to_allow += 1,
                    ChangeKind::AllowToDeny => s.allow_to_deny += 1,
                    ChangeKind::IdsChanged => s.ids_changed += 1,
                }
                self.changes.push(*change);
            }
            SideOutcome::AdmissionRecord => s.admission_records += 1,
            SideOutcome::Error(error) => {
                s.errors += 1;
                if error.kind == ErrorKind::Unread {
                    s.unread += 1;
                }
                self.errors.push(error);
            }
        }
    }

    fn finish(mut self) -> Self {
        // Stable: input order is kept within each kind.
        self.changes.sort_by_key(|c| c.change);
        self
    }
}

/// What became of one input.
#[derive(Debug)]
enum SideOutcome {
    Same,
    Changed(Box<Change>),
    /// An audit record of an admission: no promotion request, nothing to compare.
    AdmissionRecord,
    Error(UncomparedInput),
}

/// Evaluate every input under both sides and compare, at the times `rule` gives. Only
/// an input path that cannot be opened or listed (or a corpus with a broken
/// `case.json`) stops the diff; every problem with one input is that input's error row.
pub fn run(
    base: &Side,
    new: &Side,
    inputs: &[PathBuf],
    rule: TimeRule,
) -> Result<DiffReport, DiffError> {
    let mut report = DiffReport::new(base, new);
    let threads = rayon::current_num_threads();
    let base_pool = EvaluatorPool::new(Arc::clone(&base.engine), threads);
    let new_pool = EvaluatorPool::new(Arc::clone(&new.engine), threads);
    for path in inputs {
        let mut input = open(path)?;
        loop {
            let chunk = input
                .read_chunk(Shard::ALL)
                .map_err(|e| input_error(path, &e))?;
            if chunk.is_empty() {
                break;
            }
            let outcomes: Vec<SideOutcome> = chunk
                .into_par_iter()
                .map(|item| {
                    let source = source(&item.origin);
                    base_pool
                        .guarded(|b| new_pool.with(|n| compare(b, n, &item, &source, rule)))
                        .unwrap_or_else(|panicked| {
                            SideOutcome::Error(UncomparedInput {
                                source,
                                kind: ErrorKind::Unread,
                                msg: panicked.to_string(),
                            })
                        })
                })
                .collect();
            for outcome in outcomes {
                report.add(outcome);
            }
        }
    }
    Ok(report.finish())
}

/// How the report names an input: `<file>:<line>`, `<dir>/<file>.json`, `<case dir>`.
fn source(origin: &Origin) -> String {
    match origin {
        Origin::Line { name, line } => format!("{name}:{line}"),
        Origin::File(path) | Origin::Case(path) => path.display().to_string(),
    }
}

fn compare(
    base: &mut Evaluator,
    new: &mut Evaluator,
    item: &Item,
    source: &str,
    rule: TimeRule,
) -> SideOutcome {
    let error = |kind, msg: String| {
        SideOutcome::Error(UncomparedInput {
            source: source.to_string(),
            kind,
            msg,
        })
    };
    let read = match item.read() {
        Ok(read) => read,
        Err(Refusal::Unread(msg)) => return error(ErrorKind::Unread, msg),
        Err(Refusal::Invalid(msg)) => {
            return error(ErrorKind::Invalid, format!("{INVALID_ID}: {msg}"))
        }
        Err(Refusal::Admission(_)) => return SideOutcome::AdmissionRecord,
    };
    let request = read.request;
    let at = match rule.time_for(read.recorded_at, &request) {
        Ok(t) => t,
        Err(e) => {
            return error(
                ErrorKind::Unread,
                crate::error_chain::ErrorChain(&e).to_string(),
            )
        }
    };
    let before = Expectation::of(&base.evaluate(&request, at).decision);
    let after = Expectation::of(&new.evaluate(&request, at).decision);
    match classify(&before, &after) {
        None => SideOutcome::Same,
        Some(kind) => SideOutcome::Changed(Box::new(Change {
            source: source.to_string(),
            request_id: request.typed.id,
            evaluated_at: format_time(at),
            change: kind,
            added: Ids {
                deny: multiset_minus(&after.deny, &before.deny),
                warn: multiset_minus(&after.warn, &before.warn),
            },
            removed: Ids {
                deny: multiset_minus(&before.deny, &after.deny),
                warn: multiset_minus(&before.warn, &after.warn),
            },
            base: before,
            new: after,
        })),
    }
}

/// How `after` differs from `before`, if it does.
fn classify(before: &Expectation, after: &Expectation) -> Option<ChangeKind> {
    // Every combination spelled out: the one that must never be missed is deny->allow.
    match (before.allowed, after.allowed) {
        // Loosened: the new bundle lets through what the base stopped.
        (false, true) => Some(ChangeKind::DenyToAllow),
        // Tightened: the new bundle stops what the base let through.
        (true, false) => Some(ChangeKind::AllowToDeny),
        // Same outcome: a change only if the reasons or warnings differ.
        (true, true) | (false, false) => (before != after).then_some(ChangeKind::IdsChanged),
    }
}

/// `a` minus `b` as sorted multisets (an id given twice and then once was removed once).
fn multiset_minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut j = 0;
    for x in a {
        while j < b.len() && b[j] < *x {
            j += 1;
        }
        if j < b.len() && b[j] == *x {
            j += 1;
        } else {
            out.push(x.clone());
        }
    }
    out
}

fn input_error(path: &Path, e: &crate::input::InputError) -> DiffError {
    DiffError::Input {
        path: path.display().to_string(),
        reason: e.reason(),
    }
}

/// Open one input path (see the module docs for what each kind of path is).
fn open(path: &Path) -> Result<Input, DiffError> {
    let fail = |reason: String| DiffError::Input {
        path: path.display().to_string(),
        reason,
    };
    if path.as_os_str() == "-" {
        return Ok(Input::stdin());
    }
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !is_request_name(&name) {
            return Input::jsonl_file(path).map_err(|e| input_error(path, &e));
        }
        // One request file, like `eval REQUEST.json`.
        let origin = Origin::File(path.to_path_buf());
        return Ok(Input::files(vec![Item::file(
            0,
            origin,
            path.to_path_buf(),
            None,
        )]));
    }
    if path.join("request.json").is_file() && path.join("case.json").is_file() {
        // One corpus case directory.
        let spec_path = path.join("case.json");
        let spec: CaseSpec =
            crate::fsio::read_capped_string(&spec_path, crate::fsio::MAX_CONFIG_BYTES)
                .map_err(|e| e.reason())
                .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
                .map_err(|e| fail(format!("`{}`: {e}", spec_path.display())))?;
        return Ok(Input::files(vec![case_item(path, &spec.at)]));
    }
    let cases = load_cases(path).map_err(|reason| DiffError::Corpus {
        path: path.display().to_string(),
        reason,
    })?;
    // Case directories and loose request files alike: none is left out. Only paths are
    // held here; the files are read when evaluated.
    let (files, _not_requests) = list_dir(path).map_err(|e| input_error(path, &e))?;
    let items = cases
        .iter()
        .map(|case| case_item(&case.dir, &case.spec.at))
        .chain(
            files
                .into_iter()
                .map(|file| Item::file(0, Origin::File(file.clone()), file, None)),
        )
        .collect();
    Ok(Input::files(items))
}

/// A corpus case: its `request.json`, at its `case.json`'s `at`.
fn case_item(dir: &Path, at: &str) -> Item {
    let origin = Origin::Case(dir.to_path_buf());
    match parse_time(at) {
        Ok(at) => Item::file(0, origin, dir.join("request.json"), Some(at)),
        Err(e) => Item::unread(
            0,
            origin,
            format!("`{}` field `at`: {e}", dir.join("case.json").display()),
        ),
    }
}

/// A policies directory as it was at a git revision, written to a fresh temporary
/// directory that is removed on drop.
#[derive(Debug)]
pub struct Checkout {
    dir: PathBuf,
    label: String,
}

impl Checkout {
    /// Where the bundle was written.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `<rev>:<dir> (<commit>)`, to name the bundle in the report.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("cannot remove `{}`: {e}", self.dir.display());
        }
    }
}

/// Write `dir` (a policies directory inside the git work tree of the current
/// directory) as it was at revision `rev` into a temporary directory, with
/// `git ls-tree` and `git cat-file`: files only, a symlink or submodule in the bundle is
/// an error rather than a bundle that differs from the one at `rev`.
pub fn checkout(dir: &Path, rev: &str) -> Result<Checkout, DiffError> {
    let fail = |reason: String| DiffError::Git {
        rev: rev.to_string(),
        path: dir.display().to_string(),
        reason,
    };
    if rev.starts_with('-') || rev.contains(':') {
        return Err(fail("not a revision name".to_string()));
    }
    let commit = git(&[
        "rev-parse",
        "--verify",
        "--end-of-options",
        &format!("{rev}^{{commit}}"),
    ])
    .map_err(|e| fail(format!("not a commit: {e}")))?;
    let commit = String::from_utf8_lossy(&commit).trim().to_string();
    // `<commit>:./<dir>` names the tree relative to the current directory; an absolute
    // `dir` is made relative to the work tree's top.
    let tree = if dir.is_absolute() {
        let top = git(&["rev-parse", "--show-toplevel"]).map_err(fail)?;
        let top = PathBuf::from(String::from_utf8_lossy(&top).trim());
        let top = top.canonicalize().unwrap_or(top);
        let abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let rel = abs
            .strip_prefix(&top)
            .map_err(|_| fail(format!("not inside the git work tree `{}`", top.display())))?;
        format!("{commit}:{}", rel.display())
    } else {
        format!("{commit}:./{}", dir.display())
    };
    let listing = git(&["ls-tree", "-r", "-z", "--end-of-options", &tree])
        .map_err(|e| fail(format!("no such directory at that revision: {e}")))?;
    let out = temp_dir().map_err(|e| fail(format!("cannot create a temporary directory: {e}")))?;
    let checkout = Checkout {
        dir: out,
        label: format!(
            "{rev}:{} ({})",
            dir.display(),
            commit.get(..12).unwrap_or(&commit)
        ),
    };
    for entry in listing.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        // `<mode> <type> <object>\t<path>`
        let (meta, path) = entry
            .split_once('\t')
            .ok_or_else(|| fail(format!("unexpected `git ls-tree` line `{entry}`")))?;
        let mut meta = meta.split(' ');
        let (mode, kind, object) = (meta.next(), meta.next(), meta.next());
        let object = match (mode, kind, object) {
            (Some("100644" | "100755"), Some("blob"), Some(object)) => object,
            _ => {
                return Err(fail(format!(
                    "`{path}` is not a regular file (symlink or submodule)"
                )))
            }
        };
        let rel = Path::new(path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(fail(format!("unexpected path `{path}`")));
        }
        let contents = git(&["cat-file", "blob", object]).map_err(fail)?;
        let target = checkout.dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot write `{}`: {e}", parent.display())))?;
        }
        std::fs::write(&target, contents)
            .map_err(|e| fail(format!("cannot write `{}`: {e}", target.display())))?;
    }
    Ok(checkout)
}

/// Run git in the current directory; its stdout, or its stderr as the error.
fn git(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = std::process::Command::new("git")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(one_line(&String::from_utf8_lossy(&out.stderr)))
    }
}

/// A new, empty, uniquely named directory under the system temp dir.
fn temp_dir() -> io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "promo-policy-diff-{}-{nanos}-{n}",
            std::process::id()
        ));
        // `create_dir` fails if the name exists: never reuse someone else's directory.
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            other => return other.map(|()| dir),
        }
    }
}

/// The report as an aligned table for a terminal or a CI log, ending with the
/// summary line.
pub fn render_text(report: &DiffReport) -> String {
    let mut out = String::new();
    for (name, b) in [("base", &report.base), ("new ", &report.new)] {
        let _ = writeln!(
            out,
            "{name}  {}  sha256:{}",
            crate::textsafe::printable(&b.label),
            b.digest
        );
    }
    if report.base.digest == report.new.digest {
        out.push_str("(the two bundles have the same digest)\n");
    }
    if report.loosens() {
        let _ = writeln!(
            out,
            "\n!!! {} decision(s) flip from DENY to ALLOW under the new bundle: a person must review them !!!",
            report.summary.deny_to_allow
        );
    }
    let mut rows: Vec<[String; 6]> = Vec::new();
    for c in &report.changes {
        let marker = match c.change {
            ChangeKind::DenyToAllow => "!! deny->allow",
            ChangeKind::AllowToDeny => "allow->deny",
            ChangeKind::IdsChanged => "ids",
        };
        rows.push([
            marker.to_string(),
            c.source.clone(),
            c.evaluated_at.clone(),
            outcome_word(c.base.allowed).to_string(),
            outcome_word(c.new.allowed).to_string(),
            ids_text(&c.added, &c.removed),
        ]);
    }
    for e in &report.errors {
        rows.push([
            format!("error ({})", kind_word(e.kind)),
            e.source.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            one_line(&e.msg),
        ]);
    }
    // Sources, recorded times and messages come from the inputs: shown escaped.
    for cell in rows.iter_mut().flatten() {
        if let std::borrow::Cow::Owned(safe) = crate::textsafe::printable(cell) {
            *cell = safe;
        }
    }
    if !rows.is_empty() {
        out.push('\n');
        let header = ["CHANGE", "INPUT", "EVALUATED AT", "BASE", "NEW", "IDS"].map(String::from);
        let mut widths = [0usize; 6];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out.push('\n');
    out.push_str(&report.summary.line());
    out.push('\n');
    out
}

/// The report as Markdown for a pull-request comment: a warning when anything flips
/// from deny to allow, both bundles, the summary, then one table of changes and errors.
pub fn render_markdown(report: &DiffReport) -> String {
    let mut out = String::from("## promo-policy diff\n\n");
    if report.loosens() {
        let _ = writeln!(
            out,
            "> [!WARNING]\n> :warning: **{} decision(s) flip from deny to allow** under the new bundle. A person must review them before this change merges.\n",
            report.summary.deny_to_allow
        );
    }
    out.push_str("| bundle | source | sha256 |\n|---|---|---|\n");
    for (name, b) in [("base", &report.base), ("new", &report.new)] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} |",
            md_code(&b.label),
            md_code(&b.digest)
        );
    }
    let _ = writeln!(out, "\n**{}**\n", report.summary.line());
    if report.changes.is_empty() && report.errors.is_empty() {
        out.push_str("No decision changes.\n");
        return out;
    }
    out.push_str(
        "| change | input | evaluated at | base | new | ids |\n|---|---|---|---|---|---|\n",
    );
    let mut rows = Vec::with_capacity(report.changes.len() + report.errors.len());
    for c in &report.changes {
        let change = match c.change {
            ChangeKind::DenyToAllow => ":warning: **deny->allow**",
            ChangeKind::AllowToDeny => "allow->deny",
            ChangeKind::IdsChanged => "ids",
        };
        let new = if c.change == ChangeKind::DenyToAllow {
            "**allowed**"
        } else {
            outcome_word(c.new.allowed)
        };
        rows.push(format!(
            "| {change} | {} | {} | {} | {new} | {} |\n",
            md_code(&c.source),
            c.evaluated_at,
            outcome_word(c.base.allowed),
            md_escape(&ids_text(&c.added, &c.removed)),
        ));
    }
    for e in &report.errors {
        rows.push(format!(
            "| error ({}) | {} | | | | {} |\n",
            kind_word(e.kind),
            md_code(&e.source),
            md_escape(&truncate(&e.msg, MARKDOWN_CELL_CHARS))
        ));
    }
    let total = rows.len();
    for (shown, row) in rows.into_iter().enumerate() {
        if out.len() + row.len() > MARKDOWN_BUDGET {
            let _ = writeln!(
                out,
                "\n{} more row(s) not shown (a comment holds 65,536 characters); `--format json` lists them all.",
                total - shown
            );
            break;
        }
        out.push_str(&row);
    }
    out
}

/// Bytes of Markdown written at most: GitHub refuses a comment over 65,536 characters
/// (and a character is at least a byte); the rest leaves room for a note and a margin.
pub const MARKDOWN_BUDGET: usize = 60_000;

/// Characters of an error message shown in a Markdown cell (schema errors list every
/// field; the JSON report has them whole).
const MARKDOWN_CELL_CHARS: usize = 300;

fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &s[..cut])),
        None => Cow::Borrowed(s),
    }
}

fn outcome_word(allowed: bool) -> &'static str {
    if allowed {
        "allowed"
    } else {
        "denied"
    }
}

fn kind_word(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid => "invalid",
        ErrorKind::Unread => "unread",
    }
}

/// `+deny:a -warn:b`: what the new bundle added (+) and removed (-).
fn ids_text(added: &Ids, removed: &Ids) -> String {
    let mut parts = Vec::new();
    for (sign, ids) in [('+', added), ('-', removed)] {
        if ids.is_empty() {
            continue;
        }
        for (kind, list) in [("deny", &ids.deny), ("warn", &ids.warn)] {
            parts.extend(list.iter().map(|id| format!("{sign}{kind}:{id}")));
        }
    }
    parts.join(" ")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text safe inside a Markdown table cell.
fn md_escape(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

/// A Markdown code span safe inside a table cell, whatever backticks it holds.
fn md_code(s: &str) -> String {
    let s = md_escape(s);
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
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

    fn exp(allowed: bool, deny: &[&str], warn: &[&str]) -> Expectation {
        Expectation {
            allowed,
            deny: deny.iter().map(|s| s.to_string()).collect(),
            warn: warn.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn classify_covers_every_combination() {
        let allow = exp(true, &[], &[]);
        let deny = exp(false, &["freeze.active"], &[]);
        assert_eq!(classify(&deny, &allow), Some(ChangeKind::DenyToAllow));
        assert_eq!(classify(&allow, &deny), Some(ChangeKind::AllowToDeny));
        assert_eq!(classify(&deny, &deny), None);
        assert_eq!(classify(&allow, &allow), None);
        let deny2 = exp(false, &["approvals.min_count"], &[]);
        assert_eq!(classify(&deny, &deny2), Some(ChangeKind::IdsChanged));
        let warned = exp(true, &[], &["approvals.stale"]);
        assert_eq!(classify(&allow, &warned), Some(ChangeKind::IdsChanged));
    }

    #[test]
    fn deny_to_allow_sorts_first() {
        let mut kinds = [
            ChangeKind::IdsChanged,
            ChangeKind::AllowToDeny,
            ChangeKind::DenyToAllow,
        ];
        kinds.sort();
        assert_eq!(kinds[0], ChangeKind::DenyToAllow);
        assert_eq!(kinds[1], ChangeKind::AllowToDeny);
    }

    #[test]
    fn multiset_difference_counts_repeats() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            multiset_minus(&v(&["a", "a", "b"]), &v(&["a"])),
            v(&["a", "b"])
        );
        assert_eq!(multiset_minus(&v(&["a"]), &v(&["a", "a"])), v(&[]));
        assert_eq!(multiset_minus(&v(&["b", "c"]), &v(&["a", "c"])), v(&["b"]));
    }

    #[test]
    fn markdown_cells_escape_pipes_and_backticks() {
        assert_eq!(md_code("a|b"), "`a\\|b`");
        assert_eq!(md_code("a`b"), "`` a`b ``");
        assert_eq!(md_escape("x\ny | z"), "x y \\| z");
    }

    #[test]
    fn markdown_stays_within_a_comment() {
        let side = |label: &str| BundleRef {
            label: label.into(),
            digest: "0".repeat(64),
            trust: None,
        };
        let change = Change {
            source: "corpus/cases/x".into(),
            request_id: "r".into(),
            evaluated_at: "2026-11-26T18:00:00Z".into(),
            change: ChangeKind::DenyToAllow,
            base: exp(false, &["a.very.long.violation.id.that.takes.room"], &[]),
            new: exp(true, &[], &[]),
            added: Ids::default(),
            removed: Ids {
                deny: vec!["a.very.long.violation.id.that.takes.room".into()],
                warn: vec![],
            },
        };
        let report = DiffReport {
            base: side("a"),
            new: side("b"),
            summary: DiffSummary::default(),
            changes: vec![change; 2000],
            errors: vec![UncomparedInput {
                source: "log:1".into(),
                kind: ErrorKind::Invalid,
                msg: "x".repeat(5000),
            }],
        };
        let md = render_markdown(&report);
        assert!(md.len() <= MARKDOWN_BUDGET + 200, "{}", md.len());
        assert!(md.contains("more row(s) not shown"));
        assert!(md.contains("| :warning: **deny->allow** |"));
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn ids_text_shows_added_then_removed() {
        let added = Ids {
            deny: vec!["a".into()],
            warn: vec![],
        };
        let removed = Ids {
            deny: vec![],
            warn: vec!["w".into()],
        };
        assert_eq!(ids_text(&added, &removed), "+deny:a -warn:w");
    }
}
