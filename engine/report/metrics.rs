//! Streams audit records into per-(environment, service, bucket) aggregates and turns them into the promotion metrics; it reads records and never writes or judges them.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use super::spill::Spill;
use super::ReportError;
use crate::audit::store::ScratchError;
use crate::audit::{Record, RecordKind};

/// Violation id of a freeze that blocked a promotion.
pub const FREEZE_ACTIVE: &str = "freeze.active";
/// Warning id of a promotion admitted during a freeze by break-glass.
pub const BREAK_GLASS: &str = "freeze.break_glass";
/// Most break-glass promotions listed one by one (the count covers all of them).
pub const MAX_LISTED: usize = 500;
/// How long after a promotion an incident counts as post-promote: a week.
pub const INCIDENT_WINDOW_SECONDS: i64 = 7 * 24 * 3600;

/// How wide a trend bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// A UTC day.
    Day,
    /// An ISO week, Monday 00:00 UTC.
    Week,
}

impl Bucket {
    /// The start (unix seconds) of the bucket holding `t`.
    pub fn start(self, t: i64) -> i64 {
        let day = t.div_euclid(86_400);
        match self {
            Bucket::Day => day * 86_400,
            // 1970-01-01 was a Thursday: day 0 is weekday 3 counted from Monday.
            Bucket::Week => (day - (day + 3).rem_euclid(7)) * 86_400,
        }
    }

    /// Its length in seconds.
    pub fn width(self) -> i64 {
        match self {
            Bucket::Day => 86_400,
            Bucket::Week => 7 * 86_400,
        }
    }
}

/// What to count.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Decisions at or after this time (unix seconds).
    pub since: Option<i64>,
    /// Decisions before this time.
    pub until: Option<i64>,
    /// Only this target environment.
    pub env: Option<String>,
    /// Only this service (artifact name).
    pub service: Option<String>,
    /// Trend bucket width.
    pub bucket: Bucket,
    /// The environment lead time ends in.
    pub production: String,
    /// Seconds of log time after which an idle attempt, promotion or artifact is final:
    /// folded into the counters and forgotten (a later decision on it starts anew).
    pub horizon: i64,
}

/// How many of the latest verified records [`Aggregator::set_verified_through`] can take back.
const RECENT: usize = 8;

/// The default [`ReportOptions::horizon`]: 90 days.
pub const DEFAULT_HORIZON_SECONDS: i64 = 90 * 86_400;

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            since: None,
            until: None,
            env: None,
            service: None,
            bucket: Bucket::Week,
            production: "prod".into(),
            horizon: DEFAULT_HORIZON_SECONDS,
        }
    }
}

/// One rollback, canary failure or incident from `--events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The artifact was rolled back out of the environment.
    Rollback,
    /// Its canary failed there.
    CanaryFailure,
    /// An incident was attributed to it there.
    Incident,
}

/// Events by (artifact sha256, environment): kind and time.
pub type Events = HashMap<(String, String), Vec<(EventKind, i64)>>;

/// A value's distribution: how many, median and p90, in seconds. Exact (nearest rank)
/// up to [`EXACT_SAMPLES`] values, within [`SKETCH_ALPHA`] relative error above.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dist {
    /// How many values.
    pub count: u64,
    /// The median, or `None` ("no data") with no values.
    pub median_seconds: Option<f64>,
    /// The 90th percentile.
    pub p90_seconds: Option<f64>,
}

/// Most values a distribution keeps one by one; above this it keeps a DDSketch.
pub const EXACT_SAMPLES: usize = 4096;
/// The sketch's relative accuracy: a quantile it reports is within 1 % of the value at
/// that rank (its rank is `floor(q * (n - 1))`, at most one off nearest rank).
pub const SKETCH_ALPHA: f64 = 0.01;

/// Nearest-rank percentile of sorted values.
fn rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let idx = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
    sorted.get(idx).copied()
}

/// Duration values: exact while few, a sketch of bounded size once many.
#[derive(Clone)]
pub(super) enum Samples {
    Exact(Vec<f64>),
    Sketch(Box<DDSketch>),
}

impl Default for Samples {
    fn default() -> Self {
        Samples::Exact(Vec::new())
    }
}

impl std::fmt::Debug for Samples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Samples::Exact(v) => write!(f, "Exact({} values)", v.len()),
            Samples::Sketch(s) => write!(f, "Sketch({} values)", s.count()),
        }
    }
}

fn sketch_of(values: &[f64]) -> Box<DDSketch> {
    let mut sketch = DDSketch::new(SketchConfig::new(SKETCH_ALPHA, 2048, 1.0e-9));
    for v in values {
        sketch.add(*v);
    }
    Box::new(sketch)
}

impl Samples {
    pub(super) fn push(&mut self, v: f64) {
        match self {
            Samples::Exact(values) if values.len() < EXACT_SAMPLES => values.push(v),
            Samples::Exact(values) => {
                let mut sketch = sketch_of(values);
                sketch.add(v);
                *self = Samples::Sketch(sketch);
            }
            Samples::Sketch(sketch) => sketch.add(v),
        }
    }

    pub(super) fn merge(&mut self, other: &Samples) {
        if let (Samples::Exact(mine), Samples::Exact(theirs)) = (&mut *self, other) {
            if mine.len() + theirs.len() <= EXACT_SAMPLES {
                mine.extend_from_slice(theirs);
                return;
            }
        }
        let mut sketch = match std::mem::take(self) {
            Samples::Exact(values) => sketch_of(&values),
            Samples::Sketch(sketch) => sketch,
        };
        // INVARIANT: every sketch here has the same config, the one merge requires.
        let _ = match other {
            Samples::Exact(values) => sketch.merge(&sketch_of(values)),
            Samples::Sketch(theirs) => sketch.merge(theirs),
        };
        *self = Samples::Sketch(sketch);
    }

    pub(super) fn dist(&mut self) -> Dist {
        match self {
            Samples::Exact(values) => {
                values.sort_by(f64::total_cmp);
                Dist {
                    count: values.len() as u64,
                    median_seconds: rank(values, 0.5),
                    p90_seconds: rank(values, 0.9),
                }
            }
            Samples::Sketch(sketch) => Dist {
                count: sketch.count() as u64,
                median_seconds: sketch.quantile(0.5).ok().flatten(),
                p90_seconds: sketch.quantile(0.9).ok().flatten(),
            },
        }
    }
}

/// The headline metrics of one slice (a cell, an environment, the whole log). A rate
/// or distribution with nothing to measure is `None` ("no data"), never 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportMetrics {
    /// Decisions in the slice.
    pub decisions: u64,
    /// Distinct promotion attempts (request digests), by their first decision.
    pub attempts: u64,
    /// Attempts with an allowed decision.
    pub allowed_attempts: u64,
    /// allowed attempts / attempts.
    pub success_rate: Option<f64>,
    /// Attempts whose first decision allowed / attempts.
    pub first_attempt_pass_rate: Option<f64>,
    /// Provenance `finishedOn` to the first allowed decision into the environment.
    pub time_to_promote: Dist,
    /// First allowed decision anywhere to the first allowed into production, per artifact.
    pub lead_time: Dist,
    /// `requestedAt` to the approval that completed the set.
    pub approval_latency: Dist,
    /// First denial to the next allowed decision, same artifact and target.
    pub time_to_unblock: Dist,
    /// Promotions allowed by break-glass during a freeze.
    pub break_glass: u64,
    /// Decisions denied by a freeze.
    pub freeze_blocked: u64,
    /// Decisions carrying a trace id / decisions.
    pub trace_coverage: Option<f64>,
    /// Promotions (first allowed per artifact and target) in the slice.
    pub promotions: u64,
    /// Promotions later rolled back / promotions (needs `--events`).
    pub rollback_rate: Option<f64>,
    /// Promotions whose canary failed / promotions (needs `--events`).
    pub canary_failure_rate: Option<f64>,
    /// Promotions followed by an incident within a week (needs `--events`).
    pub post_promote_incidents: Option<u64>,
}

/// Counts and values of one (environment, service, bucket) cell, mergeable.
#[derive(Debug, Clone, Default)]
struct Cell {
    decisions: u64,
    traced: u64,
    attempts: u64,
    allowed_attempts: u64,
    first_pass: u64,
    ttp: Samples,
    lead: Samples,
    approval: Samples,
    unblock: Samples,
    break_glass: u64,
    freeze_blocked: u64,
    promotions: u64,
    rolled_back: u64,
    canary_failed: u64,
    incidents: u64,
}

impl Cell {
    fn merge(&mut self, o: &Cell) {
        self.decisions += o.decisions;
        self.traced += o.traced;
        self.attempts += o.attempts;
        self.allowed_attempts += o.allowed_attempts;
        self.first_pass += o.first_pass;
        self.ttp.merge(&o.ttp);
        self.lead.merge(&o.lead);
        self.approval.merge(&o.approval);
        self.unblock.merge(&o.unblock);
        self.break_glass += o.break_glass;
        self.freeze_blocked += o.freeze_blocked;
        self.promotions += o.promotions;
        self.rolled_back += o.rolled_back;
        self.canary_failed += o.canary_failed;
        self.incidents += o.incidents;
    }

    fn metrics(mut self, events: bool) -> ReportMetrics {
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let with_events = |n: u64| {
            if events {
                ratio(n, self.promotions)
            } else {
                None
            }
        };
        ReportMetrics {
            decisions: self.decisions,
            attempts: self.attempts,
            allowed_attempts: self.allowed_attempts,
            success_rate: ratio(self.allowed_attempts, self.attempts),
            first_attempt_pass_rate: ratio(self.first_pass, self.attempts),
            time_to_promote: self.ttp.dist(),
            lead_time: self.lead.dist(),
            approval_latency: self.approval.dist(),
            time_to_unblock: self.unblock.dist(),
            break_glass: self.break_glass,
            freeze_blocked: self.freeze_blocked,
            trace_coverage: ratio(self.traced, self.decisions),
            promotions: self.promotions,
            rollback_rate: with_events(self.rolled_back),
            canary_failure_rate: with_events(self.canary_failed),
            post_promote_incidents: events.then_some(self.incidents),
        }
    }
}

/// (environment, service, bucket start), the first two interned.
type CellKey = (u32, u32, i64);

/// Which duration of a cell.
#[derive(Debug, Clone, Copy)]
enum Kind {
    TimeToPromote,
    LeadTime,
    Approval,
    Unblock,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::TimeToPromote,
        Kind::LeadTime,
        Kind::Approval,
        Kind::Unblock,
    ];

    fn of(self, cell: &mut Cell) -> &mut Samples {
        match self {
            Kind::TimeToPromote => &mut cell.ttp,
            Kind::LeadTime => &mut cell.lead,
            Kind::Approval => &mut cell.approval,
            Kind::Unblock => &mut cell.unblock,
        }
    }
}

/// Every count and duration goes to two cells: its (environment, service) cell, which the
/// summary, environment and service rows roll up from, and its (bucket, environment)
/// cell, a point of the trend. The first kind is bounded by the log's names; the second
/// grows with its span, so a trend cell's exact durations are set aside in a scratch file
/// once its bucket has ended a horizon ago (a record dated back there later adds to it
/// in memory and is set aside at the next sweep) and read back when it is rendered: the
/// numbers are those of the cells kept whole, and memory stays flat with the log's length.
#[derive(Debug, Default)]
struct Cells {
    services: HashMap<(u32, u32), Cell>,
    trend: BTreeMap<(i64, u32), Cell>,
    /// Trend cells of buckets starting before this have been set aside, but for `late`.
    spilled_below: i64,
    /// Trend cells behind `spilled_below` that took durations since they were set aside.
    late: HashSet<(i64, u32)>,
    spill: SpillState,
}

/// The scratch file, opened at the first bucket set aside.
#[derive(Default)]
enum SpillState {
    /// Nothing set aside yet.
    #[default]
    Unopened,
    /// Open; `full` once a write failed (a full temporary directory): what it holds is
    /// still read back, nothing more is written.
    Open { spill: Spill, full: bool },
    /// It could not be opened: durations stay in memory (the numbers do not change, only
    /// memory is no longer flat).
    Unavailable,
}

impl std::fmt::Debug for SpillState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpillState::Unopened => "Unopened",
            SpillState::Open { full: false, .. } => "Open",
            SpillState::Open { full: true, .. } => "Full",
            SpillState::Unavailable => "Unavailable",
        })
    }
}

impl Cells {
    fn new() -> Self {
        Self {
            spilled_below: i64::MIN,
            ..Self::default()
        }
    }

    /// Add to the counters of both cells of `key` (`f` touches counts, never durations).
    fn count(&mut self, (env, service, bucket): CellKey, f: impl Fn(&mut Cell)) {
        f(self.services.entry((env, service)).or_default());
        f(self.trend.entry((bucket, env)).or_default());
    }

    /// Add a duration to both cells of `key`.
    fn push(&mut self, (env, service, bucket): CellKey, kind: Kind, v: f64) {
        kind.of(self.services.entry((env, service)).or_default())
            .push(v);
        kind.of(self.trend.entry((bucket, env)).or_default())
            .push(v);
        if bucket < self.spilled_below {
            self.late.insert((bucket, env));
        }
    }

    /// Set aside the exact durations of trend cells whose bucket (`width` seconds) ended
    /// at or before `before`. A failure to write keeps them in memory; a failure to read
    /// back what was set aside is an error (the numbers would be wrong without it).
    fn spill_ended(&mut self, before: i64, width: i64) -> Result<(), ScratchError> {
        let end = before.saturating_sub(width).saturating_add(1);
        if end <= self.spilled_below && self.late.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<(i64, u32)> = self
            .trend
            .range((self.spilled_below, 0)..(end.max(self.spilled_below), 0))
            .map(|(k, _)| *k)
            .collect();
        keys.extend(self.late.drain());
        self.spilled_below = self.spilled_below.max(end);
        if matches!(self.spill, SpillState::Unopened) {
            self.spill = Spill::new().map_or(SpillState::Unavailable, |spill| SpillState::Open {
                spill,
                full: false,
            });
        }
        let SpillState::Open { spill, full } = &mut self.spill else {
            return Ok(());
        };
        if *full {
            return Ok(());
        }
        for key in keys {
            let Some(cell) = self.trend.get_mut(&key) else {
                continue;
            };
            for kind in Kind::ALL {
                let Samples::Exact(values) = kind.of(cell) else {
                    // A sketch is already of bounded size.
                    continue;
                };
                if values.is_empty() {
                    continue;
                }
                // What an earlier sweep set aside joins these values.
                let mut all = spill.take(key, kind as u8)?;
                all.append(values);
                if spill.put(key, kind as u8, &all).is_err() {
                    // Keep them all in memory rather than lose any.
                    *kind.of(cell) = Samples::Exact(Vec::new());
                    for v in all {
                        kind.of(cell).push(v);
                    }
                    *full = true;
                    return Ok(());
                }
                *kind.of(cell) = Samples::Exact(Vec::new());
            }
        }
        Ok(())
    }

    /// Trend cell `key` whole again: what was set aside pushed back into it.
    fn restore(&mut self, key: (i64, u32), cell: &mut Cell) -> Result<(), ScratchError> {
        let SpillState::Open { spill, .. } = &mut self.spill else {
            return Ok(());
        };
        for kind in Kind::ALL {
            for v in spill.take(key, kind as u8)? {
                kind.of(cell).push(v);
            }
        }
        Ok(())
    }
}

/// A promotion attempt (one request digest), until it is folded into its cell.
#[derive(Debug)]
struct Attempt {
    cell: CellKey,
    first_allowed: bool,
    allowed: bool,
    blockers: Vec<u16>,
    /// Its latest decision (unix seconds).
    last: i64,
}

/// One artifact into one environment, until folded.
#[derive(Debug, Default)]
struct Promo {
    first_allowed: Option<(i64, CellKey)>,
    denied_since: Option<i64>,
    last: i64,
}

/// What [`Aggregator::promotion`] needs to know about a decision beyond the record.
struct PromoStep {
    key: (ArtifactKey, u32),
    cell: CellKey,
    t: i64,
    finished: Option<i64>,
    first_any: Option<i64>,
}

/// One artifact, until forgotten.
#[derive(Debug, Default)]
struct ArtifactState {
    finished_on: Option<i64>,
    first_allowed_any: Option<i64>,
    last: i64,
}

/// An artifact: its sha256 when the record gives one as 64 lowercase hex digits (the
/// form `--events` names), else a digest of whatever it gives (`hex` false).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ArtifactKey {
    bytes: [u8; 32],
    hex: bool,
}

impl ArtifactKey {
    fn of(digest: &str) -> Self {
        let lower_hex = digest.len() == 64
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut bytes = [0u8; 32];
        if lower_hex && hex::decode_to_slice(digest, &mut bytes).is_ok() {
            return Self { bytes, hex: true };
        }
        use sha2::Digest as _;
        bytes.copy_from_slice(&sha2::Sha256::digest(digest.as_bytes()));
        Self { bytes, hex: false }
    }
}

/// One promotion admitted by break-glass.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassPromotion {
    /// When it was decided.
    pub evaluated_at: String,
    /// Target environment.
    pub environment: String,
    /// Artifact name.
    pub service: String,
    /// Artifact version, when the stored request names it.
    pub version: Option<String>,
    /// Its request id.
    pub request_id: String,
    /// The change ticket, when stored.
    pub ticket: Option<String>,
}

/// A violation id and what it blocked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocker {
    /// The violation id.
    pub id: String,
    /// Denied decisions naming it.
    pub decisions: u64,
    /// Distinct attempts it denied at least once.
    pub attempts: u64,
    /// The catalog's text for it, if the catalog has one.
    pub catalog: Option<String>,
}

/// Per-record completeness: the fields a report needs, present and readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completeness {
    /// Records read.
    pub records: u64,
    /// Records with the request stored, `requestedAt` readable and a readable signed decision.
    pub fields_present: u64,
    /// Records that are both complete and inside the verified part of the chain.
    pub complete_and_verified: u64,
}

/// The streaming aggregator: feed records in seq order, then [`Aggregator::finish`].
/// Attempts, promotions and artifacts idle for [`ReportOptions::horizon`] seconds of log time
/// are folded into the counters and forgotten, and the exact durations of trend buckets
/// that ended a horizon ago are set aside in a scratch file (see `Cells`), so its memory
/// follows the log's recent activity, not its length in records (a trend point's counters,
/// a few hundred bytes each, are all that grows with its span).
#[derive(Debug)]
pub struct Aggregator {
    opts: ReportOptions,
    /// `--events`, applied to each promotion as it is folded.
    events: Option<Events>,
    /// `since` and `until` as the log's text, compared as the log's reader compares them.
    window: (Option<String>, Option<String>),
    envs: Interner,
    services: Interner,
    violations: Interner,
    cells: Cells,
    attempts: HashMap<[u8; 16], Attempt>,
    promos: HashMap<(ArtifactKey, u32), Promo>,
    artifacts: HashMap<ArtifactKey, ArtifactState>,
    blocker_decisions: Vec<u64>,
    blocker_attempts: Vec<u64>,
    lead_bins: [u64; LEAD_BINS.len()],
    break_glass: Vec<BreakGlassPromotion>,
    break_glass_count: u64,
    completeness: Completeness,
    /// Audit records of admissions in the window, left out of everything else.
    admission_records: u64,
    verified_through: u64,
    /// The last few records counted as complete and verified (see
    /// [`Aggregator::set_verified_through`]).
    recent_complete: Vec<u64>,
    /// The latest decision time seen, and when to look for idle state next.
    now: i64,
    next_sweep: Option<i64>,
    /// Why durations set aside could not be read back, if they could not.
    broken: Option<ScratchError>,
}

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }
}

/// RFC 3339 to unix seconds.
pub fn unix(text: &str) -> Option<i64> {
    crate::input::parse_time(text)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// Unix seconds to RFC 3339.
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(crate::input::format_time)
        .unwrap_or_default()
}

/// What the report reads from a record's signed envelope (already verified, or not,
/// by the audit walk): warnings and a trace id. `None` when the payload is unreadable.
#[derive(Debug)]
struct Signed {
    warnings: Vec<String>,
    traced: bool,
}

fn signed_part(envelope: &Value) -> Option<Signed> {
    let statement = crate::audit::envelope_statement(envelope)?;
    let predicate = statement.get("predicate")?;
    let warnings = predicate
        .get("warnings")?
        .as_array()?
        .iter()
        .filter_map(|w| w.get("id")?.as_str().map(str::to_owned))
        .collect();
    let is_trace = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let traced = is_trace(predicate.pointer("/trace/traceId"))
        || is_trace(predicate.get("traceId"))
        || is_trace(predicate.get("traceparent"));
    Some(Signed { warnings, traced })
}

/// The build's end from the first SLSA provenance attestation in a stored request.
fn finished_on(request: &Value) -> Option<i64> {
    request
        .get("attestations")?
        .as_array()?
        .iter()
        .find_map(|a| {
            let statement = crate::audit::envelope_statement(a)?;
            let p = statement.get("predicate")?;
            let at = p
                .pointer("/runDetails/metadata/finishedOn")
                .or_else(|| p.pointer("/metadata/buildFinishedOn"))?
                .as_str()?;
            unix(at)
        })
}

/// The approval that completed the set: the latest approved one at or before `t`.
fn approval_completed(request: &Value, t: i64) -> Option<i64> {
    request
        .get("approvals")?
        .as_array()?
        .iter()
        .filter(|a| a.get("decision").and_then(Value::as_str) == Some("approved"))
        .filter_map(|a| unix(a.get("at")?.as_str()?))
        .filter(|at| *at <= t)
        .max()
}

/// The attempt key: the first 16 bytes of the request digest (hex), or of its text.
fn attempt_key(hex_digest: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    match hex::decode(hex_digest) {
        Ok(bytes) if bytes.len() >= 16 => key.copy_from_slice(&bytes[..16]),
        _ => {
            use sha2::Digest as _;
            let d = sha2::Sha256::digest(hex_digest.as_bytes());
            key.copy_from_slice(&d[..16]);
        }
    }
    key
}

/// What [`Aggregator::add_with`] needs from a record beyond its columns, the costly
/// part (decoding the signed payload, parsing times): computed for each record apart,
/// so it can run in parallel ahead of the fold.
#[derive(Debug)]
pub struct Facts {
    signed: Option<Signed>,
    t: Option<i64>,
    requested: Option<i64>,
}

impl Facts {
    /// The facts of one record.
    pub fn of(record: &Record) -> Self {
        Facts {
            signed: signed_part(&record.envelope),
            t: unix(&record.evaluated_at),
            requested: record
                .request
                .as_ref()
                .and_then(|r| r.get("requestedAt"))
                .and_then(Value::as_str)
                .and_then(unix),
        }
    }
}

impl Aggregator {
    /// A new aggregator; records with seq above `verified_through` are outside the
    /// verified part of the chain.
    pub fn new(opts: ReportOptions, verified_through: u64, events: Option<Events>) -> Self {
        let window = (opts.since.map(rfc3339), opts.until.map(rfc3339));
        Self {
            opts,
            window,
            events,
            envs: Interner::default(),
            services: Interner::default(),
            violations: Interner::default(),
            cells: Cells::new(),
            attempts: HashMap::new(),
            promos: HashMap::new(),
            artifacts: HashMap::new(),
            blocker_decisions: Vec::new(),
            blocker_attempts: Vec::new(),
            lead_bins: [0; LEAD_BINS.len()],
            break_glass: Vec::new(),
            break_glass_count: 0,
            admission_records: 0,
            completeness: Completeness {
                records: 0,
                fields_present: 0,
                complete_and_verified: 0,
            },
            verified_through,
            recent_complete: Vec::with_capacity(RECENT),
            now: i64::MIN,
            next_sweep: None,
            broken: None,
        }
    }

    /// This aggregator with every duration kept in memory (the numbers must not change).
    #[cfg(test)]
    pub(super) fn without_spill(mut self) -> Self {
        self.cells.spill = SpillState::Unavailable;
        self
    }

    /// Whether durations were set aside in the scratch file.
    #[cfg(test)]
    pub(super) fn spilled(&self) -> bool {
        matches!(self.cells.spill, SpillState::Open { .. })
    }

    /// Records with seq above this are outside the verified part of the chain (for a
    /// caller that learns it only after feeding the verified records).
    pub fn set_verified_through(&mut self, seq: u64) {
        self.verified_through = seq;
        // The walk may name a break at a record it already handed over (one slipped in
        // before the record that gave it away): take back what such records counted.
        let beyond = self.recent_complete.iter().filter(|s| **s > seq).count() as u64;
        self.completeness.complete_and_verified -= beyond;
        self.recent_complete.clear();
    }

    /// A row whose columns are not a record (the verifier names it): an incomplete record.
    pub fn unreadable(&mut self) {
        self.completeness.records += 1;
    }

    /// Take one record (in seq order): [`Aggregator::add_with`] its [`Facts`].
    pub fn add(&mut self, record: &Record) {
        self.add_with(record, Facts::of(record));
    }

    /// Take one record (in seq order) with its facts. Records whose `evaluatedAt` text
    /// is outside `since..until` are skipped as the log's reader skips them; others
    /// outside the filters count only toward completeness; a record whose time is
    /// unreadable counts as incomplete. An admission record (break-glass, dry-run:
    /// [`crate::audit::RecordKind`]) is no promotion: it is counted as such and nowhere
    /// else, not even in completeness.
    pub fn add_with(&mut self, record: &Record, facts: Facts) {
        let (since, until) = &self.window;
        if since.as_ref().is_some_and(|s| record.evaluated_at < *s)
            || until.as_ref().is_some_and(|u| record.evaluated_at >= *u)
        {
            return;
        }
        match record.kind() {
            // Not a promotion decision: no attempt, no blocker, no completeness.
            RecordKind::Admission => {
                self.admission_records += 1;
                return;
            }
            // What every metric below is about.
            RecordKind::Promotion => {}
        }
        self.completeness.records += 1;
        let complete = facts.signed.is_some() && facts.requested.is_some() && facts.t.is_some();
        if complete {
            self.completeness.fields_present += 1;
            if record.seq <= self.verified_through {
                self.completeness.complete_and_verified += 1;
                if self.recent_complete.len() == RECENT {
                    self.recent_complete.remove(0);
                }
                self.recent_complete.push(record.seq);
            }
        }
        let Some(t) = facts.t else { return };
        if self.opts.since.is_some_and(|s| t < s)
            || self.opts.until.is_some_and(|u| t >= u)
            || self.opts.env.as_ref().is_some_and(|e| *e != record.to)
            || self
                .opts
                .service
                .as_ref()
                .is_some_and(|s| *s != record.artifact.name)
        {
            return;
        }
        self.advance(t);
        let env = self.envs.id(&record.to);
        let service = self.services.id(&record.artifact.name);
        let key: CellKey = (env, service, self.opts.bucket.start(t));
        let signed = facts.signed.unwrap_or(Signed {
            warnings: Vec::new(),
            traced: false,
        });
        let break_glass = record.allowed && signed.warnings.iter().any(|w| w == BREAK_GLASS);
        let artifact = ArtifactKey::of(record.artifact.digest.sha256().unwrap_or(""));
        let (finished, first_any) = self.artifact(record, artifact, t);

        let freeze_blocked =
            !record.allowed && record.violations.iter().any(|v| v == FREEZE_ACTIVE);
        self.cells.count(key, |cell| {
            cell.decisions += 1;
            cell.traced += u64::from(signed.traced);
            cell.break_glass += u64::from(break_glass);
            cell.freeze_blocked += u64::from(freeze_blocked);
        });
        self.attempt(record, key, t, facts.requested);
        let step = PromoStep {
            key: (artifact, env),
            cell: key,
            t,
            finished,
            first_any,
        };
        self.promotion(record, step);
        if break_glass {
            self.break_glass(record);
        }
    }

    /// The artifact (when it was built, from the first stored provenance, and when it
    /// was first promoted anywhere) as it was before this record, updated by it.
    fn artifact(
        &mut self,
        record: &Record,
        key: ArtifactKey,
        t: i64,
    ) -> (Option<i64>, Option<i64>) {
        let artifact = self.artifacts.entry(key).or_default();
        artifact.last = t;
        if artifact.finished_on.is_none() {
            artifact.finished_on = record.request.as_ref().and_then(finished_on);
        }
        let first_any = artifact.first_allowed_any;
        if record.allowed && first_any.is_none() {
            artifact.first_allowed_any = Some(t);
        }
        (artifact.finished_on, first_any)
    }

    /// The attempt (request digest): counted in the cell of its first decision.
    fn attempt(&mut self, record: &Record, key: CellKey, t: i64, requested: Option<i64>) {
        let attempt = self
            .attempts
            .entry(attempt_key(&record.request_digest.sha256))
            .or_insert(Attempt {
                cell: key,
                first_allowed: record.allowed,
                allowed: false,
                blockers: Vec::new(),
                last: t,
            });
        attempt.last = t;
        if record.allowed && !attempt.allowed {
            attempt.allowed = true;
            let done = record
                .request
                .as_ref()
                .and_then(|r| approval_completed(r, t));
            if let (Some(done), Some(req)) = (done, requested) {
                self.cells
                    .push(key, Kind::Approval, (done - req).max(0) as f64);
            }
        }
        if !record.allowed {
            for v in &record.violations {
                let id = self.violations.id(v);
                if self.blocker_decisions.len() <= id as usize {
                    self.blocker_decisions.resize(id as usize + 1, 0);
                }
                if let Some(n) = self.blocker_decisions.get_mut(id as usize) {
                    *n += 1;
                }
                let id = u16::try_from(id).unwrap_or(u16::MAX);
                if !attempt.blockers.contains(&id) {
                    attempt.blockers.push(id);
                }
            }
        }
    }

    /// The promotion (artifact, target): time to promote, time to unblock, lead time.
    fn promotion(&mut self, record: &Record, step: PromoStep) {
        let PromoStep {
            key,
            cell: cell_key,
            t,
            finished,
            first_any,
        } = step;
        let promo = self.promos.entry(key).or_default();
        promo.last = t;
        let cells = &mut self.cells;
        if record.allowed {
            if let Some(since) = promo.denied_since.take() {
                cells.push(cell_key, Kind::Unblock, (t - since).max(0) as f64);
            }
            if promo.first_allowed.is_none() {
                promo.first_allowed = Some((t, cell_key));
                cells.count(cell_key, |cell| cell.promotions += 1);
                if let Some(f) = finished {
                    cells.push(cell_key, Kind::TimeToPromote, (t - f).max(0) as f64);
                }
                if record.to == self.opts.production {
                    if let Some(first) = first_any {
                        let lead = (t - first).max(0) as f64;
                        cells.push(cell_key, Kind::LeadTime, lead);
                        let bin = LEAD_BINS.iter().position(|(_, upper)| lead < *upper);
                        if let Some(n) = bin.and_then(|i| self.lead_bins.get_mut(i)) {
                            *n += 1;
                        }
                    }
                }
            }
        } else if promo.denied_since.is_none() {
            promo.denied_since = Some(t);
        }
    }

    /// List a break-glass promotion (the first [`MAX_LISTED`]; all are counted).
    fn break_glass(&mut self, record: &Record) {
        self.break_glass_count += 1;
        if self.break_glass.len() >= MAX_LISTED {
            return;
        }
        let text = |p: &str| {
            record
                .request
                .as_ref()
                .and_then(|r| r.pointer(p))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        self.break_glass.push(BreakGlassPromotion {
            evaluated_at: record.evaluated_at.clone(),
            environment: record.to.clone(),
            service: record.artifact.name.clone(),
            version: text("/artifact/version"),
            request_id: record.request_id.clone(),
            ticket: text("/change/ticket"),
        });
    }

    /// Log time moves to `t`: every eighth of the horizon, fold what has been idle
    /// longer than the horizon.
    fn advance(&mut self, t: i64) {
        self.now = self.now.max(t);
        let horizon = self.opts.horizon.max(1);
        let next = *self.next_sweep.get_or_insert(t.saturating_add(horizon));
        if self.now >= next {
            let before = self.now.saturating_sub(horizon);
            self.fold_idle(before);
            if let Err(e) = self.cells.spill_ended(before, self.opts.bucket.width()) {
                self.broken.get_or_insert(e);
            }
            self.next_sweep = Some(self.now.saturating_add((horizon / 8).max(1)));
        }
    }

    /// Fold attempts and promotions last seen before `before` into their cells (with
    /// `--events` when given) and forget them and artifacts idle as long.
    fn fold_idle(&mut self, before: i64) {
        let events = self.events.as_ref();
        let cells = &mut self.cells;
        let blocker_attempts = &mut self.blocker_attempts;
        self.attempts.retain(|_, attempt| {
            if attempt.last >= before {
                return true;
            }
            cells.count(attempt.cell, |cell| {
                cell.attempts += 1;
                cell.allowed_attempts += u64::from(attempt.allowed);
                cell.first_pass += u64::from(attempt.first_allowed);
            });
            for id in &attempt.blockers {
                let id = usize::from(*id);
                if blocker_attempts.len() <= id {
                    blocker_attempts.resize(id + 1, 0);
                }
                if let Some(n) = blocker_attempts.get_mut(id) {
                    *n += 1;
                }
            }
            false
        });
        let envs = &self.envs;
        self.promos.retain(|(artifact, env), promo| {
            if promo.last >= before {
                return true;
            }
            if let (Some(events), Some((t, key)), true) =
                (events, promo.first_allowed, artifact.hex)
            {
                let digest = hex::encode(artifact.bytes);
                if let Some(list) = events.get(&(digest, envs.name(*env).to_owned())) {
                    let any = |kind: EventKind, window: i64| {
                        list.iter()
                            .any(|(k, at)| *k == kind && *at >= t && *at - t <= window)
                    };
                    let rolled_back = u64::from(any(EventKind::Rollback, i64::MAX));
                    let canary_failed = u64::from(any(EventKind::CanaryFailure, i64::MAX));
                    let incidents = u64::from(any(EventKind::Incident, INCIDENT_WINDOW_SECONDS));
                    cells.count(key, |cell| {
                        cell.rolled_back += rolled_back;
                        cell.canary_failed += canary_failed;
                        cell.incidents += incidents;
                    });
                }
            }
            false
        });
        self.artifacts.retain(|_, artifact| artifact.last >= before);
    }

    /// Fold what is left (with `--events`), then roll the cells up.
    /// Fails only if durations set aside in the scratch file cannot be read back.
    pub fn finish(mut self, catalog: &BTreeMap<String, String>) -> Result<Totals, ReportError> {
        self.fold_idle(i64::MAX);
        if let Some(e) = self.broken.take() {
            return Err(ReportError::Scratch(e));
        }
        let has_events = self.events.is_some();
        let blockers = self.blockers(catalog);
        let (summary, environments, services) = self.roll_up_services(has_events);
        let trend = self.trend_points(has_events)?;
        let lead_time_histogram = LEAD_BINS
            .iter()
            .zip(self.lead_bins)
            .map(|((label, _), count)| HistogramBin {
                label: (*label).to_owned(),
                count,
            })
            .collect();
        Ok(Totals {
            lead_time_histogram,
            summary,
            environments,
            services,
            trend,
            blockers,
            break_glass: BreakGlassList {
                count: self.break_glass_count,
                listed: self.break_glass,
            },
            completeness: self.completeness,
            admission_records: self.admission_records,
        })
    }

    /// Violation ids by the decisions and attempts they blocked, most first, with the
    /// catalog's text.
    fn blockers(&self, catalog: &BTreeMap<String, String>) -> Vec<Blocker> {
        let mut blockers: Vec<Blocker> = self
            .violations
            .names
            .iter()
            .enumerate()
            .map(|(i, id)| Blocker {
                id: id.clone(),
                decisions: self.blocker_decisions.get(i).copied().unwrap_or(0),
                attempts: self.blocker_attempts.get(i).copied().unwrap_or(0),
                catalog: catalog.get(id).cloned(),
            })
            .collect();
        blockers.sort_by(|a, b| {
            b.decisions
                .cmp(&a.decisions)
                .then(b.attempts.cmp(&a.attempts))
                .then(a.id.cmp(&b.id))
        });
        blockers
    }

    /// The (environment, service) cells rolled up: the whole log, each environment, each
    /// service into each environment (by name).
    fn roll_up_services(
        &mut self,
        has_events: bool,
    ) -> (ReportMetrics, Vec<EnvMetrics>, Vec<ServiceMetrics>) {
        let mut total = Cell::default();
        let mut by_env: BTreeMap<String, Cell> = BTreeMap::new();
        let mut by_service: BTreeMap<(String, String), Cell> = BTreeMap::new();
        for ((env, service), cell) in std::mem::take(&mut self.cells.services) {
            let env = self.envs.name(env).to_owned();
            let service = self.services.name(service).to_owned();
            total.merge(&cell);
            by_env.entry(env.clone()).or_default().merge(&cell);
            by_service.insert((env, service), cell);
        }
        let environments = by_env
            .into_iter()
            .map(|(environment, c)| EnvMetrics {
                environment,
                metrics: c.metrics(has_events),
            })
            .collect();
        let services = by_service
            .into_iter()
            .map(|((environment, service), c)| ServiceMetrics {
                environment,
                service,
                metrics: c.metrics(has_events),
            })
            .collect();
        (total.metrics(has_events), environments, services)
    }

    /// The trend: bucket, then environment by name; each cell made whole (its set-aside
    /// durations read back) and rendered in turn, so only one cell's durations are in
    /// memory at a time.
    fn trend_points(&mut self, has_events: bool) -> Result<Vec<TrendPoint>, ReportError> {
        let mut order: Vec<(i64, String, u32)> = self
            .cells
            .trend
            .keys()
            .map(|(bucket, env)| (*bucket, self.envs.name(*env).to_owned(), *env))
            .collect();
        order.sort();
        let mut trend = Vec::with_capacity(order.len());
        for (bucket, environment, env) in order {
            let mut cell = self.cells.trend.remove(&(bucket, env)).unwrap_or_default();
            self.cells
                .restore((bucket, env), &mut cell)
                .map_err(ReportError::Scratch)?;
            trend.push(TrendPoint {
                bucket: rfc3339(bucket),
                environment,
                metrics: cell.metrics(has_events),
            });
        }
        Ok(trend)
    }
}

/// Metrics of one target environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvMetrics {
    /// The target environment.
    pub environment: String,
    /// Its metrics.
    #[serde(flatten)]
    pub metrics: ReportMetrics,
}

/// Metrics of one service into one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceMetrics {
    /// The target environment.
    pub environment: String,
    /// The artifact name.
    pub service: String,
    /// Its metrics.
    #[serde(flatten)]
    pub metrics: ReportMetrics,
}

/// Metrics of one bucket into one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    /// The bucket's start (RFC 3339).
    pub bucket: String,
    /// The target environment.
    pub environment: String,
    /// Its metrics.
    #[serde(flatten)]
    pub metrics: ReportMetrics,
}

/// Break-glass promotions: how many, and the first [`MAX_LISTED`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakGlassList {
    /// All of them.
    pub count: u64,
    /// Listed, in log order.
    pub listed: Vec<BreakGlassPromotion>,
}

/// Everything the aggregator computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// The whole (filtered) log.
    pub summary: ReportMetrics,
    /// Per target environment.
    pub environments: Vec<EnvMetrics>,
    /// Per environment and service.
    pub services: Vec<ServiceMetrics>,
    /// Per bucket and environment.
    pub trend: Vec<TrendPoint>,
    /// Violation ids, most frequent first.
    pub blockers: Vec<Blocker>,
    /// Break-glass promotions.
    pub break_glass: BreakGlassList,
    /// Record completeness (of promotion records).
    pub completeness: Completeness,
    /// Audit records of admissions (break-glass, dry-run) in the window: not
    /// promotions, so in no metric here.
    pub admission_records: u64,
    /// Lead times of the whole log, binned.
    pub lead_time_histogram: Vec<HistogramBin>,
}

/// One bin of a distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramBin {
    /// Its range, for people.
    pub label: String,
    /// Values in it.
    pub count: u64,
}

/// Lead-time bins: label and exclusive upper bound in seconds.
const LEAD_BINS: [(&str, f64); 8] = [
    ("< 1 h", 3600.0),
    ("1-4 h", 4.0 * 3600.0),
    ("4-12 h", 12.0 * 3600.0),
    ("12-24 h", 86_400.0),
    ("1-2 d", 2.0 * 86_400.0),
    ("2-4 d", 4.0 * 86_400.0),
    ("4-7 d", 7.0 * 86_400.0),
    (">= 7 d", f64::INFINITY),
];
