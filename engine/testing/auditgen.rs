//! A realistic audit-log generator for the report (weeks of promotions of several services through dev, staging and prod, with retries, approvals, freezes and break-glass), deterministic from a seed; test and demo support only, never linked into a release of the gate.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::attest::{SigningKey, Verified};
use crate::audit::{AuditLog, RecordOptions};
use crate::decision::{canonical_json, Decision, EngineRef, PolicyRef, Source, Violation};
use crate::digest::DigestSet;
use crate::sign::{decision_statement, Signer, DEV_SIGNING_KEY_PEM};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Stop after this many records.
    pub records: u64,
    /// Services (artifact names).
    pub services: usize,
    /// Builds per service per day, on average.
    pub builds_per_day: f64,
    /// The seed: the same options give the same decisions (ids and signatures aside).
    pub seed: u64,
    /// The first build (unix seconds).
    pub start: i64,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            records: 5_000,
            services: 6,
            builds_per_day: 4.0,
            seed: 1,
            // Monday 2026-09-07 00:00 UTC.
            start: 1_788_739_200,
        }
    }
}

/// SplitMix64: small, seedable, good enough for a workload (not for secrets).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi] seconds.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo).max(0) as u64 + 1)) as i64
    }
}

const SERVICES: [&str; 10] = [
    "payments/api",
    "payments/worker",
    "checkout/web",
    "catalog/search",
    "identity/auth",
    "ledger/core",
    "notify/email",
    "orders/api",
    "shipping/rates",
    "reports/batch",
];
const ENVS: [&str; 3] = ["dev", "staging", "prod"];
const BUNDLE: &str = "5b1d6a3c1f0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa";

/// A prod freeze: the last full week of December (and a shorter one each month's last
/// Friday afternoon), in unix seconds, as `[start, end)`.
fn frozen(t: i64) -> Option<i64> {
    let day = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // 2026-12-21 .. 2026-12-28.
    let (xmas_start, xmas_end) = (1_797_811_200, 1_798_416_000);
    if (xmas_start..xmas_end).contains(&t) {
        return Some(xmas_end);
    }
    // Fridays (1970-01-01 was a Thursday) from 16:00 to Monday 06:00.
    let weekday = (day + 3).rem_euclid(7); // 0 = Monday
    let friday_16 = (day - (weekday - 4)) * 86_400 + 16 * 3600;
    let monday_06 = friday_16 + 62 * 3600;
    match weekday {
        4 if secs >= 16 * 3600 => Some(monday_06),
        5 | 6 => Some(monday_06),
        _ => None,
    }
}

/// Where one artifact is in its walk to prod.
#[derive(Debug, Clone)]
struct Walk {
    service: usize,
    build: u64,
    digest: String,
    finished_on: i64,
    env: usize,
    /// The request being (re)evaluated: its revision makes a new request digest.
    revision: u32,
    requested_at: i64,
    approvals: Vec<(String, i64)>,
    emergency: bool,
    retries: u32,
}

fn rfc(t: i64) -> String {
    crate::report::metrics::rfc3339(t)
}

fn provenance(digest: &str, name: &str, finished_on: i64) -> Value {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {"buildType": "https://ci.example.com/release@v2", "externalParameters": {}},
            "runDetails": {
                "builder": {"id": "https://ci.example.com/builders/release@v2"},
                "metadata": {"startedOn": rfc(finished_on - 420), "finishedOn": rfc(finished_on)}
            }
        }
    });
    let payload = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&statement).unwrap_or_default());
    json!({"payloadType": "application/vnd.in-toto+json", "payload": payload,
           "signatures": [{"keyid": "ci-builder-2026", "sig": "c2lnbmF0dXJl"}]})
}

impl Walk {
    fn name(&self) -> String {
        format!(
            "registry.example.com/{}",
            SERVICES
                .get(self.service % SERVICES.len())
                .copied()
                .unwrap_or("svc")
        )
    }

    fn request(&self) -> Value {
        let from = if self.env == 0 {
            "build"
        } else {
            ENVS.get(self.env - 1).copied().unwrap_or("dev")
        };
        let to = ENVS.get(self.env).copied().unwrap_or("prod");
        let version = format!("1.{}.{}", self.build / 10, self.build % 10);
        let approvals: Vec<Value> = self
            .approvals
            .iter()
            .map(|(who, at)| {
                json!({"approver": who, "roles": ["release-manager"], "decision": "approved", "at": rfc(*at)})
            })
            .collect();
        json!({
            "apiVersion": "promo-policy/v1",
            "kind": "PromotionRequest",
            "id": format!("req-{}-{}-{}-r{}", self.service, self.build, to, self.revision),
            "requestedAt": rfc(self.requested_at),
            "artifact": {"name": self.name(), "digest": {"sha256": self.digest}, "version": version},
            "from": from,
            "to": to,
            "change": {"type": "app", "author": "dev-bot", "ticket": format!("CHG-{}", 1000 + self.build), "emergency": self.emergency},
            "attestations": [provenance(&self.digest, &self.name(), self.finished_on)],
            "approvals": approvals,
        })
    }
}

/// What a decision says.
struct Outcome {
    allowed: bool,
    violations: Vec<&'static str>,
    warnings: Vec<&'static str>,
}

/// Generate a log at `path` (created; it must not exist). Returns the records written.
#[expect(
    clippy::too_many_lines,
    reason = "one simulation loop, each branch one kind of promotion event"
)]
pub fn generate(path: &Path, opts: &GenOptions) -> Result<u64, String> {
    if path.exists() {
        return Err(format!(
            "`{}` exists; the generator writes a new log",
            path.display()
        ));
    }
    let key = SigningKey::from_pkcs8_pem(DEV_SIGNING_KEY_PEM).map_err(|e| e.to_string())?;
    let signer = Signer::new(key, true);
    let mut log = AuditLog::open_for_append(path, None).map_err(|e| e.to_string())?;
    let options = RecordOptions::default();
    let mut rng = Rng::new(opts.seed);
    let services = opts.services.clamp(1, SERVICES.len());
    let mut heap: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
    let mut walks: BTreeMap<u64, Walk> = BTreeMap::new();
    let mut next_id = 0u64;
    let gap = (86_400.0 / (opts.builds_per_day * services as f64)).max(1.0) as i64;
    let mut next_build = opts.start;
    let mut builds = vec![0u64; services];
    let mut written = 0u64;
    let mut pending = Vec::with_capacity(1024);
    while written + (pending.len() as u64) < opts.records {
        // Builds arrive in time order, interleaved with the walks in flight.
        if heap.peek().is_none_or(|Reverse((t, _))| next_build <= *t) {
            let service = (rng.next_u64() % services as u64) as usize;
            let build = builds.get(service).copied().unwrap_or(0);
            if let Some(b) = builds.get_mut(service) {
                *b += 1;
            }
            let finished_on = next_build;
            let digest = hex::encode(sha2::Digest::finalize(sha2::Digest::chain_update(
                <sha2::Sha256 as sha2::Digest>::new(),
                format!("{}:{service}:{build}", opts.seed),
            )));
            let requested_at = finished_on + rng.between(60, 900);
            walks.insert(
                next_id,
                Walk {
                    service,
                    build,
                    digest,
                    finished_on,
                    env: 0,
                    revision: 0,
                    requested_at,
                    approvals: Vec::new(),
                    emergency: false,
                    retries: 0,
                },
            );
            heap.push(Reverse((requested_at + rng.between(2, 20), next_id)));
            next_id += 1;
            next_build += gap / 2 + rng.between(0, gap);
            continue;
        }
        let Some(Reverse((t, id))) = heap.pop() else {
            break;
        };
        let Some(walk) = walks.get_mut(&id) else {
            continue;
        };
        let env = ENVS.get(walk.env).copied().unwrap_or("prod");
        let needs_approvals = walk.env == 2;
        let freeze_end = if walk.env == 2 { frozen(t) } else { None };
        let outcome = if let Some(_end) = freeze_end {
            if walk.emergency {
                Outcome {
                    allowed: true,
                    violations: vec![],
                    warnings: vec!["freeze.break_glass"],
                }
            } else {
                Outcome {
                    allowed: false,
                    violations: vec!["freeze.active"],
                    warnings: vec![],
                }
            }
        } else if needs_approvals && walk.approvals.len() < 2 {
            Outcome {
                allowed: false,
                violations: vec!["approvals.min_count"],
                warnings: vec![],
            }
        } else {
            let deny = [0.04, 0.10, 0.08].get(walk.env).copied().unwrap_or(0.1);
            if walk.retries < 3 && rng.unit() < deny {
                let pick = rng.unit();
                let v = match walk.env {
                    0 => {
                        if pick < 0.6 {
                            "checks.failed"
                        } else {
                            "provenance.missing"
                        }
                    }
                    1 => {
                        if pick < 0.5 {
                            "checks.missing"
                        } else if pick < 0.8 {
                            "soak.too_short"
                        } else {
                            "checks.failed"
                        }
                    }
                    _ => {
                        if pick < 0.5 {
                            "slo.fast_burn"
                        } else if pick < 0.8 {
                            "soak.too_short"
                        } else {
                            "slo.budget_exhausted"
                        }
                    }
                };
                Outcome {
                    allowed: false,
                    violations: vec![v],
                    warnings: vec![],
                }
            } else {
                Outcome {
                    allowed: true,
                    violations: vec![],
                    warnings: vec![],
                }
            }
        };
        let request = walk.request();
        let decision = Decision {
            decision_id: uuid::Builder::from_unix_timestamp_millis(
                (t as u64).saturating_mul(1000) + (written + pending.len() as u64) % 1000,
                &{
                    let mut b = [0u8; 10];
                    b[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
                    b
                },
            )
            .into_uuid()
            .to_string(),
            request_id: request["id"].as_str().unwrap_or_default().to_owned(),
            artifact: crate::request::Artifact {
                name: walk.name(),
                digest: [("sha256", walk.digest.as_str())].into_iter().collect(),
            },
            from: request["from"].as_str().unwrap_or_default().to_owned(),
            to: env.to_owned(),
            allowed: outcome.allowed,
            violations: outcome
                .violations
                .iter()
                .map(|v| Violation::new(*v, Source::Policy, format!("{v} (generated)")))
                .collect(),
            warnings: outcome
                .warnings
                .iter()
                .map(|v| Violation::new(*v, Source::Policy, format!("break-glass used: {v}")))
                .collect(),
            evaluated_at: rfc(t),
            input_digest: DigestSet::sha256_of(&canonical_json(&request)),
            policy: PolicyRef {
                uri: "policies/".into(),
                digest: DigestSet::sha256_hex(BUNDLE.to_owned()),
                revision: None,
                signed_by: None,
            },
            plugins: Vec::new(),
            engine: EngineRef {
                id: crate::decision::ENGINE_ID.into(),
                version: crate::decision::ENGINE_VERSION.into(),
            },
            trace: None,
            collected: None,
        };
        let statement =
            decision_statement(&decision, &Verified::default()).map_err(|e| e.to_string())?;
        let envelope = signer
            .sign_statement(&statement)
            .map_err(|e| e.to_string())?;
        pending.push(
            options
                .prepare(&decision, &envelope, &request)
                .map_err(|e| e.to_string())?,
        );
        if pending.len() >= 1000 {
            log.append(&mut pending).map_err(|e| e.to_string())?;
            written += pending.len() as u64;
            pending.clear();
        }

        // What happens next to this artifact.
        if outcome.allowed {
            walk.env += 1;
            walk.retries = 0;
            walk.revision = 0;
            walk.emergency = false;
            walk.approvals.clear();
            if walk.env >= ENVS.len() {
                walks.remove(&id);
                continue;
            }
            // Next environment after a soak: dev -> staging within hours, staging ->
            // prod within a day or two.
            let soak = if walk.env == 1 {
                rng.between(1800, 6 * 3600)
            } else {
                rng.between(4 * 3600, 40 * 3600)
            };
            walk.requested_at = t + soak;
            let mut at = walk.requested_at + rng.between(2, 30);
            if walk.env == 2 && rng.unit() < 0.75 {
                // Most pipelines wait for the approvals before asking.
                let first = walk.requested_at + rng.between(120, 40 * 60);
                let second = first + rng.between(60, 30 * 60);
                walk.approvals = vec![("alice".into(), first), ("bob".into(), second)];
                at = second + rng.between(5, 120);
            }
            heap.push(Reverse((at, id)));
            continue;
        }
        walk.retries += 1;
        if rng.unit() < 0.02 {
            // Abandoned: a newer build supersedes it.
            walks.remove(&id);
            continue;
        }
        let next = match outcome.violations.first().copied().unwrap_or_default() {
            "approvals.min_count" => {
                // A new request revision once the approvers answer.
                walk.revision += 1;
                walk.requested_at = t;
                let first = t + rng.between(120, 40 * 60);
                let second = first + rng.between(60, 30 * 60);
                walk.approvals = vec![("alice".into(), first), ("bob".into(), second)];
                second + rng.between(5, 120)
            }
            "freeze.active" => {
                if rng.unit() < 0.08 {
                    // Break-glass: an emergency change with the incident commander.
                    walk.revision += 1;
                    walk.emergency = true;
                    t + rng.between(600, 3600)
                } else {
                    // The same request, retried after the freeze.
                    freeze_end.unwrap_or(t) + rng.between(600, 4 * 3600)
                }
            }
            // Waiting (soak, burn rate) retries the same request.
            "soak.too_short" | "slo.fast_burn" | "slo.budget_exhausted" => {
                t + rng.between(1800, 6 * 3600)
            }
            // A fix: a new request revision.
            _ => {
                walk.revision += 1;
                walk.requested_at = t + rng.between(600, 3 * 3600);
                walk.requested_at + rng.between(5, 60)
            }
        };
        heap.push(Reverse((next, id)));
    }
    if !pending.is_empty() {
        log.append(&mut pending).map_err(|e| e.to_string())?;
        written += pending.len() as u64;
    }
    Ok(written)
}
