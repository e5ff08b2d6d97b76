//! Unit tests of the report's metrics on a constructed log whose every number is worked out by hand in the comments.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; splitting it hides the story"
)]

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value};

use super::metrics::{unix, Aggregator, Bucket, EventKind, Events, ReportOptions, Totals};
use crate::audit::{Digest256, Record};
use crate::digest::DigestSet;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn at(hm: &str) -> String {
    format!("2026-11-26T{hm}:00Z")
}

fn envelope(warnings: &[&str], trace: bool) -> Value {
    let mut predicate =
        json!({"warnings": warnings.iter().map(|w| json!({"id": w})).collect::<Vec<_>>()});
    if trace {
        predicate["traceId"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
    }
    let payload = serde_json::to_vec(&json!({"predicate": predicate})).unwrap();
    json!({"payload": base64::engine::general_purpose::STANDARD.encode(payload)})
}

/// The provenance attestation of artifact A: built at 10:00.
fn provenance() -> Value {
    let statement = json!({"predicate": {"runDetails": {"metadata": {"finishedOn": at("10:00")}}}});
    json!({"payload": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&statement).unwrap())})
}

struct R<'a> {
    seq: u64,
    t: &'a str,
    to: &'a str,
    artifact: &'a str,
    attempt: &'a str,
    allowed: bool,
    violations: &'a [&'a str],
    warnings: &'a [&'a str],
    trace: bool,
    request: Option<Value>,
}

fn record(r: R) -> Record {
    let service = if r.artifact == A { "svc/a" } else { "svc/b" };
    Record {
        seq: r.seq,
        decision_id: format!("d{}", r.seq),
        request_id: r.attempt.to_owned(),
        artifact: crate::request::Artifact {
            name: service.to_owned(),
            digest: DigestSet::sha256_hex(r.artifact.to_owned()),
        },
        from: String::new(),
        to: r.to.to_owned(),
        allowed: r.allowed,
        violations: r.violations.iter().map(|v| (*v).to_owned()).collect(),
        evaluated_at: at(r.t),
        bundle_digest: Digest256 {
            sha256: "0".repeat(64),
        },
        request_digest: Digest256 {
            sha256: r.attempt.to_owned(),
        },
        request: r.request,
        masked: Vec::new(),
        envelope: envelope(r.warnings, r.trace),
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// Artifact A walks dev -> staging -> prod; artifact B (requests not stored) is held by
/// a freeze and goes to prod by break-glass.
fn log() -> Vec<Record> {
    let req = |requested: &str, approvals: Value| {
        Some(
            json!({"requestedAt": at(requested), "attestations": [provenance()], "approvals": approvals,
                    "artifact": {"version": "1.0.0"}, "change": {"ticket": "CHG-1"}}),
        )
    };
    let none = &[][..];
    vec![
        record(R {
            seq: 1,
            t: "10:10",
            to: "dev",
            artifact: A,
            attempt: "r1",
            allowed: true,
            violations: none,
            warnings: none,
            trace: true,
            request: req("10:05", json!([])),
        }),
        record(R {
            seq: 2,
            t: "11:00",
            to: "staging",
            artifact: A,
            attempt: "r2",
            allowed: false,
            violations: &["checks.failed"],
            warnings: none,
            trace: false,
            request: req("10:55", json!([])),
        }),
        record(R {
            seq: 3,
            t: "11:30",
            to: "staging",
            artifact: A,
            attempt: "r2",
            allowed: true,
            violations: none,
            warnings: none,
            trace: false,
            request: req("10:55", json!([])),
        }),
        record(R {
            seq: 4,
            t: "13:00",
            to: "prod",
            artifact: A,
            attempt: "r4",
            allowed: true,
            violations: none,
            warnings: none,
            trace: true,
            request: req(
                "12:10",
                json!([
                    {"approver": "alice", "decision": "approved", "at": at("12:30")},
                    {"approver": "bob", "decision": "approved", "at": at("12:50")},
                    {"approver": "carol", "decision": "rejected", "at": at("12:55")},
                    {"approver": "dave", "decision": "approved", "at": at("13:30")}
                ]),
            ),
        }),
        record(R {
            seq: 5,
            t: "14:00",
            to: "prod",
            artifact: B,
            attempt: "r5",
            allowed: false,
            violations: &["freeze.active"],
            warnings: none,
            trace: false,
            request: None,
        }),
        record(R {
            seq: 6,
            t: "14:20",
            to: "prod",
            artifact: B,
            attempt: "r5",
            allowed: false,
            violations: &["freeze.active"],
            warnings: none,
            trace: false,
            request: None,
        }),
        record(R {
            seq: 7,
            t: "15:00",
            to: "prod",
            artifact: B,
            attempt: "r6",
            allowed: true,
            violations: none,
            warnings: &["freeze.break_glass"],
            trace: false,
            request: None,
        }),
    ]
}

fn run(opts: ReportOptions, verified_through: u64, events: Option<&Events>) -> Totals {
    run_records(opts, verified_through, events, log())
}

fn run_records(
    opts: ReportOptions,
    verified_through: u64,
    events: Option<&Events>,
    records: Vec<Record>,
) -> Totals {
    let mut agg = Aggregator::new(opts, verified_through, events.cloned());
    for r in records {
        agg.add(&r);
    }
    agg.finish(&BTreeMap::from([(
        "freeze.active".to_owned(),
        "a freeze window covers now".to_owned(),
    )]))
    .unwrap()
}

#[test]
fn every_metric_matches_the_hand_count() {
    let t = run(ReportOptions::default(), 7, None);
    let s = &t.summary;
    assert_eq!(s.decisions, 7);
    // Attempts are request digests: r1, r2 (retried once), r4, r5 (denied twice), r6.
    assert_eq!(s.attempts, 5);
    // r1, r2, r4, r6 were allowed in the end; r5 never.
    assert_eq!(s.allowed_attempts, 4);
    assert_eq!(s.success_rate, Some(0.8));
    // First decisions allowed: r1, r4, r6.
    assert_eq!(s.first_attempt_pass_rate, Some(0.6));
    // From A's finishedOn 10:00: dev 10:10, staging 11:30, prod 13:00 = 600, 5400,
    // 10800 s; B has no stored provenance. Nearest rank: median 2nd, p90 3rd.
    assert_eq!(s.time_to_promote.count, 3);
    assert_eq!(s.time_to_promote.median_seconds, Some(5400.0));
    assert_eq!(s.time_to_promote.p90_seconds, Some(10800.0));
    // A: first allowed anywhere 10:10, into prod 13:00; B reached prod first.
    assert_eq!(s.lead_time.count, 1);
    assert_eq!(s.lead_time.median_seconds, Some(10200.0));
    // r4 requested 12:10; the approval completing it came 12:50 (the rejection and
    // the approval after the decision do not count).
    assert_eq!(s.approval_latency.count, 1);
    assert_eq!(s.approval_latency.median_seconds, Some(2400.0));
    // A staging denied 11:00, allowed 11:30; B prod first denied 14:00, allowed 15:00.
    assert_eq!(s.time_to_unblock.count, 2);
    assert_eq!(s.time_to_unblock.median_seconds, Some(1800.0));
    assert_eq!(s.time_to_unblock.p90_seconds, Some(3600.0));
    assert_eq!(s.break_glass, 1);
    assert_eq!(s.freeze_blocked, 2);
    assert_eq!(s.trace_coverage, Some(2.0 / 7.0));
    assert_eq!(s.promotions, 4);
    // Without --events: no data, not zero.
    assert_eq!(s.rollback_rate, None);
    assert_eq!(s.canary_failure_rate, None);
    assert_eq!(s.post_promote_incidents, None);
    let blockers: Vec<(&str, u64, u64)> = t
        .blockers
        .iter()
        .map(|b| (b.id.as_str(), b.decisions, b.attempts))
        .collect();
    assert_eq!(blockers, [("freeze.active", 2, 1), ("checks.failed", 1, 1)]);
    assert_eq!(
        t.blockers[0].catalog.as_deref(),
        Some("a freeze window covers now")
    );
    assert_eq!(t.blockers[1].catalog, None);
    assert_eq!(t.break_glass.count, 1);
    assert_eq!(t.break_glass.listed[0].service, "svc/b");
    // Records 1-4 hold a request with requestedAt and a readable envelope; 5-7 none.
    assert_eq!(t.completeness.records, 7);
    assert_eq!(t.completeness.fields_present, 4);
    assert_eq!(t.completeness.complete_and_verified, 4);
    // One bin of lead time: 10200 s is in 1-4 h.
    let bins: Vec<u64> = t.lead_time_histogram.iter().map(|b| b.count).collect();
    assert_eq!(bins, [0, 1, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn per_environment_and_service_split_the_same_counts() {
    let t = run(ReportOptions::default(), 7, None);
    let env = |name: &str| {
        &t.environments
            .iter()
            .find(|e| e.environment == name)
            .unwrap()
            .metrics
    };
    assert_eq!(env("dev").attempts, 1);
    assert_eq!(env("staging").success_rate, Some(1.0));
    assert_eq!(env("staging").first_attempt_pass_rate, Some(0.0));
    assert_eq!(env("prod").attempts, 3);
    assert_eq!(env("prod").success_rate, Some(2.0 / 3.0));
    assert_eq!(env("dev").approval_latency.median_seconds, None);
    let b = t
        .services
        .iter()
        .find(|s| s.environment == "prod" && s.service == "svc/b")
        .unwrap();
    assert_eq!(b.metrics.attempts, 2);
    assert_eq!(b.metrics.time_to_promote.count, 0);
    // One week: the trend has one point per environment.
    assert_eq!(t.trend.len(), 3);
    assert!(t.trend.iter().all(|p| p.bucket == "2026-11-23T00:00:00Z"));
}

#[test]
fn filters_and_the_verified_part_narrow_what_counts() {
    let prod = run(
        ReportOptions {
            env: Some("prod".into()),
            ..ReportOptions::default()
        },
        7,
        None,
    );
    assert_eq!(prod.summary.attempts, 3);
    let late = run(
        ReportOptions {
            since: unix(&at("14:00")),
            ..ReportOptions::default()
        },
        7,
        None,
    );
    assert_eq!(late.summary.attempts, 2);
    assert_eq!(late.summary.success_rate, Some(0.5));
    let b = run(
        ReportOptions {
            service: Some("svc/b".into()),
            until: unix(&at("14:10")),
            ..ReportOptions::default()
        },
        7,
        None,
    );
    assert_eq!(b.summary.decisions, 1);
    assert_eq!(b.summary.success_rate, Some(0.0));
    // A chain broken at seq 3: only records 1 and 2 are verified and complete.
    assert_eq!(
        run(ReportOptions::default(), 2, None)
            .completeness
            .complete_and_verified,
        2
    );
}

#[test]
fn events_give_rates_per_promotion_and_a_real_zero_is_zero() {
    let mut events: Events = Events::new();
    let e = |t: &str, kind| (kind, unix(&at(t)).unwrap());
    // A rolled back out of prod after its 13:00 promotion.
    events.insert(
        (A.into(), "prod".into()),
        vec![e("14:00", EventKind::Rollback)],
    );
    // B's canary failed before its promotion (15:00): not after it, so not counted.
    events.insert(
        (B.into(), "prod".into()),
        vec![e("14:30", EventKind::CanaryFailure)],
    );
    // An incident on A in staging an hour after its 11:30 promotion.
    events.insert(
        (A.into(), "staging".into()),
        vec![e("12:30", EventKind::Incident)],
    );
    let t = run(ReportOptions::default(), 7, Some(&events));
    let env = |name: &str| {
        &t.environments
            .iter()
            .find(|e| e.environment == name)
            .unwrap()
            .metrics
    };
    assert_eq!(env("prod").promotions, 2);
    assert_eq!(env("prod").rollback_rate, Some(0.5));
    assert_eq!(env("prod").canary_failure_rate, Some(0.0));
    assert_eq!(env("staging").post_promote_incidents, Some(1));
    assert_eq!(env("dev").rollback_rate, Some(0.0));
    assert_eq!(t.summary.post_promote_incidents, Some(1));
}

#[test]
fn state_folded_after_the_horizon_gives_the_same_numbers() {
    let mut events: Events = Events::new();
    events.insert(
        (A.into(), "prod".into()),
        vec![(EventKind::Rollback, unix(&at("14:00")).unwrap())],
    );
    let whole = run(ReportOptions::default(), 7, Some(&events));
    // 200 days later a decision into dev: everything above is idle past the horizon,
    // folded (events applied) and forgotten while the log is still being read.
    let mut later = record(R {
        seq: 8,
        t: "10:00",
        to: "dev",
        artifact: B,
        attempt: "r9",
        allowed: true,
        violations: &[],
        warnings: &[],
        trace: false,
        request: None,
    });
    later.evaluated_at = "2027-06-14T10:00:00Z".into();
    let mut records = log();
    records.push(later);
    let folded = run_records(ReportOptions::default(), 8, Some(&events), records);
    for env in ["staging", "prod"] {
        let metrics = |t: &Totals| {
            t.environments
                .iter()
                .find(|e| e.environment == env)
                .unwrap()
                .metrics
                .clone()
        };
        assert_eq!(metrics(&folded), metrics(&whole), "{env}");
    }
    assert_eq!(folded.blockers, whole.blockers);
    assert_eq!(folded.summary.attempts, whole.summary.attempts + 1);
}

#[test]
fn a_retry_after_the_horizon_is_a_new_attempt() {
    let decision = |seq: u64, evaluated_at: &str, allowed: bool| {
        let mut r = record(R {
            seq,
            t: "10:00",
            to: "prod",
            artifact: A,
            attempt: "r1",
            allowed,
            violations: if allowed { &[] } else { &["checks.failed"] },
            warnings: &[],
            trace: false,
            request: None,
        });
        r.evaluated_at = evaluated_at.into();
        r
    };
    let records = || {
        vec![
            decision(1, "2026-11-02T10:00:00Z", false),
            decision(2, "2026-11-04T10:00:00Z", true),
        ]
    };
    let day = ReportOptions {
        horizon: 86_400,
        ..ReportOptions::default()
    };
    let t = run_records(day, 2, None, records());
    assert_eq!((t.summary.attempts, t.summary.allowed_attempts), (2, 1));
    // The denied promotion was idle a day too: the allowed decision starts a new one,
    // with no denial to be unblocked from.
    assert_eq!(t.summary.time_to_unblock.count, 0);
    let t = run_records(ReportOptions::default(), 2, None, records());
    assert_eq!((t.summary.attempts, t.summary.allowed_attempts), (1, 1));
    assert_eq!(t.summary.time_to_unblock.median_seconds, Some(172_800.0));
}

/// `r` moved from 2026-11-26 to `day` (its time, the stored request's times and the
/// provenance's `finishedOn`), as artifact `artifact` and attempt `attempt`.
fn moved(r: &Record, day: &str, seq: u64, artifact: &str, attempt: &str) -> Record {
    let mut r = r.clone();
    r.seq = seq;
    r.decision_id = format!("d{seq}");
    r.evaluated_at = r.evaluated_at.replace("2026-11-26", day);
    r.artifact.digest.insert("sha256", artifact);
    r.request_digest.sha256 = attempt.to_owned();
    if let Some(request) = &r.request {
        let mut request: Value =
            serde_json::from_str(&request.to_string().replace("2026-11-26", day)).unwrap();
        for a in request["attestations"].as_array_mut().unwrap() {
            let b64 = base64::engine::general_purpose::STANDARD;
            let text = String::from_utf8(b64.decode(a["payload"].as_str().unwrap()).unwrap())
                .unwrap()
                .replace("2026-11-26", day);
            a["payload"] = b64.encode(text).into();
        }
        r.request = Some(request);
    }
    r
}

/// The hand-counted log again every third day for `copies` copies (each its own
/// artifacts and attempts), then `late` copies dated back to the first days.
fn long_log(copies: i64, late: i64) -> Vec<Record> {
    let base = unix("2026-11-26T00:00:00Z").unwrap();
    let mut out = Vec::new();
    let mut seq = 0;
    let days = (0..copies).map(|k| 3 * k).chain((0..late).map(|k| k % 5));
    for (copy, day) in days.enumerate() {
        let day = &super::metrics::rfc3339(base + day * 86_400)[..10];
        for r in log() {
            seq += 1;
            let artifact = format!(
                "{:064x}",
                copy * 2 + usize::from(r.artifact.digest.sha256().unwrap_or_default() == B)
            );
            let attempt = format!("{}-{copy}", r.request_digest.sha256);
            out.push(moved(&r, day, seq, &artifact, &attempt));
        }
    }
    out
}

#[test]
fn durations_set_aside_come_back_to_the_same_numbers() {
    // Day buckets and a two-day horizon: every sweep sets ended days aside, and the late
    // copies land in days already set aside.
    let opts = ReportOptions {
        bucket: Bucket::Day,
        horizon: 2 * 86_400,
        ..ReportOptions::default()
    };
    let records = long_log(60, 12);
    let n = records.len() as u64;
    let mut spilling = Aggregator::new(opts.clone(), n, None);
    let mut whole = Aggregator::new(opts, n, None).without_spill();
    for r in &records {
        spilling.add(r);
        whole.add(r);
    }
    assert!(spilling.spilled() && !whole.spilled());
    let catalog = BTreeMap::new();
    let (spilled, whole) = (
        spilling.finish(&catalog).unwrap(),
        whole.finish(&catalog).unwrap(),
    );
    assert_eq!(spilled, whole);
    assert_eq!(spilled.summary.decisions, n);
    // 60 days with decisions, and the late copies' days 1, 2 and 4 (new cells behind
    // the set-aside ones), three environments each.
    assert_eq!(spilled.trend.len(), 3 * 63);
    let first_prod = spilled
        .trend
        .iter()
        .find(|p| p.environment == "prod")
        .unwrap();
    // Day one holds its own copy and three late ones: four of each duration.
    assert_eq!(first_prod.bucket, "2026-11-26T00:00:00Z");
    assert_eq!(first_prod.metrics.time_to_unblock.count, 4);
    assert_eq!(first_prod.metrics.approval_latency.count, 4);
}

#[test]
fn many_durations_are_sketched_within_the_documented_error() {
    use super::metrics::{Samples, EXACT_SAMPLES, SKETCH_ALPHA};
    // Log-uniform durations from 1 s to a day, from a fixed-seed LCG.
    let mut state: u64 = 42;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let values: Vec<f64> = (0..100_000)
        .map(|_| 86_400f64.powf(next()).round())
        .collect();
    let exact = |n: usize, q: f64| {
        let mut sorted = values[..n].to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
    };
    for n in [10, EXACT_SAMPLES, EXACT_SAMPLES + 1, 100_000] {
        // Pushed one by one, and merged from halves as the roll-up merges cells.
        let mut pushed = Samples::default();
        let (mut left, mut right) = (Samples::default(), Samples::default());
        for (i, v) in values[..n].iter().enumerate() {
            pushed.push(*v);
            if i % 2 == 0 {
                left.push(*v)
            } else {
                right.push(*v)
            }
        }
        left.merge(&right);
        for mut samples in [pushed, left] {
            let d = samples.dist();
            assert_eq!(d.count, n as u64);
            for (q, got) in [(0.5, d.median_seconds), (0.9, d.p90_seconds)] {
                let want = exact(n, q);
                let got = got.unwrap();
                if n <= EXACT_SAMPLES {
                    assert_eq!(
                        got, want,
                        "exact up to {EXACT_SAMPLES} values (n {n}, q {q})"
                    );
                } else {
                    let err = (got - want).abs() / want;
                    assert!(err <= SKETCH_ALPHA * 1.5, "n {n} q {q}: {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn buckets_start_on_utc_days_and_mondays() {
    let thursday = unix("2026-11-26T18:00:00Z").unwrap();
    assert_eq!(
        Bucket::Day.start(thursday),
        unix("2026-11-26T00:00:00Z").unwrap()
    );
    assert_eq!(
        Bucket::Week.start(thursday),
        unix("2026-11-23T00:00:00Z").unwrap()
    );
    let monday = unix("2026-11-23T00:00:00Z").unwrap();
    assert_eq!(Bucket::Week.start(monday), monday);
}

#[test]
fn the_catalog_is_read_from_the_bundle_readme() {
    let catalog = super::load_catalog(std::path::Path::new("policies"));
    assert!(catalog
        .get("approvals.min_count")
        .is_some_and(|t| t.contains("fewer than")));
    assert!(catalog.contains_key("freeze.active"));
    assert!(super::load_catalog(std::path::Path::new("no/such/dir")).is_empty());
}

#[test]
fn bad_event_lines_are_refused_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let good = format!(
        r#"{{"type": "rollback", "artifact": {{"digest": {{"sha256": "{A}"}}}}, "environment": "prod", "at": "2026-11-26T14:00:00Z"}}"#
    );
    std::fs::write(
        &path,
        format!("{good}\n\n{}\n", good.replace("rollback", "reboot")),
    )
    .unwrap();
    let e = super::load_events(&path).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("`reboot`"), "{e}");
    std::fs::write(&path, format!("{good}\n")).unwrap();
    let events = super::load_events(&path).unwrap();
    assert_eq!(events[&(A.to_owned(), "prod".to_owned())].len(), 1);
}

#[test]
fn html_escapes_what_it_prints() {
    assert_eq!(
        super::html::escape("<script>\"a\"&'b'"),
        "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;"
    );
}
