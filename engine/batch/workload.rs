//! A deterministic batch workload for benches and tests: requests made from the corpus cases
//! that share one evaluation time, with fresh ids and artifact digests and their attestations
//! re-signed by the corpus test keys; test support only, it never decides anything.
//!
//! Request `i` depends only on the seed and `i` (not on the requests before it), so any
//! slice of a workload can be generated alone. Each request names the case it came
//! from and that case's expected decision, which still holds: only ids and artifact
//! digests change, and a digest changes consistently in the request and in the
//! statements signed for it (cases whose digest is not a lowercase sha256, or whose
//! envelopes have no readable sources, keep theirs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::testing::{
    load_cases, read_attestation_sources, sign_attestation_sources, AttestationSource, Expectation,
};

/// The evaluation time of every workload request (`--at`): the corpus cases at this
/// time are the templates.
pub const WORKLOAD_AT: &str = "2026-11-26T18:00:00Z";

/// Distinct artifacts per case: requests for one artifact carry the same signed
/// envelopes, as a release train's requests for one build do, which is what an
/// attestation verification cache can exploit.
pub const DEFAULT_ARTIFACTS: u64 = 64;

/// One generated request and the decision its case expects.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The request JSON.
    pub request: Value,
    /// The corpus case it was made from.
    pub case: String,
    /// The expected decision.
    pub expect: Expectation,
}

struct Template {
    name: String,
    expect: Expectation,
    /// The request with the case's own attestations.
    request: Value,
    /// The case's readable attestation sources, if it has them.
    sources: Option<Vec<AttestationSource>>,
    /// The artifact's sha256 when it may be varied.
    digest: Option<String>,
}

/// A workload: the templates, a seed, and a cache of signed envelopes per artifact.
pub struct Workload {
    templates: Vec<Template>,
    keys_dir: PathBuf,
    seed: u64,
    artifacts: u64,
    signed: HashMap<(usize, u64), Vec<Value>>,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("templates", &self.templates.len())
            .field("seed", &self.seed)
            .field("artifacts", &self.artifacts)
            .finish()
    }
}

impl Workload {
    /// Templates from the cases under `cases_dir` evaluated at [`WORKLOAD_AT`], signed
    /// with the keys in `keys_dir`; `artifacts` distinct artifacts per case (at least 1).
    pub fn from_corpus(
        cases_dir: &Path,
        keys_dir: &Path,
        seed: u64,
        artifacts: u64,
    ) -> Result<Workload, String> {
        let mut templates = Vec::new();
        for case in load_cases(cases_dir)? {
            let Some(expect) = case.spec.expect.clone() else {
                continue;
            };
            if case.spec.at != WORKLOAD_AT {
                continue;
            }
            let path = case.dir.join("request.json");
            let text =
                crate::fsio::read_capped_string(&path, crate::request::MAX_BODY_BYTES as u64)
                    .map_err(|e| e.to_string())?;
            let request: Value =
                serde_json::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))?;
            let sources = read_attestation_sources(&case.dir)?;
            let has_envelopes = request["attestations"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            let digest = request["artifact"]["digest"]["sha256"]
                .as_str()
                .filter(|d| is_sha256_hex(d))
                .filter(|_| sources.is_some() || !has_envelopes)
                .map(str::to_string);
            templates.push(Template {
                name: case.name,
                expect,
                request,
                sources,
                digest,
            });
        }
        if templates.is_empty() {
            return Err(format!(
                "no corpus case under `{}` is evaluated at {WORKLOAD_AT}",
                cases_dir.display()
            ));
        }
        Ok(Workload {
            templates,
            keys_dir: keys_dir.to_path_buf(),
            seed,
            artifacts: artifacts.max(1),
            signed: HashMap::new(),
        })
    }

    /// The cases requests are drawn from, by name.
    pub fn cases(&self) -> impl Iterator<Item = &str> {
        self.templates.iter().map(|t| t.name.as_str())
    }

    /// Request `index` of this workload.
    pub fn request(&mut self, index: u64) -> Result<Generated, String> {
        let mut rng = SplitMix64::new(self.seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
        let t = rng.below(self.templates.len() as u64) as usize;
        let variant = rng.below(self.artifacts);
        self.build(t, variant, index)
    }

    /// The first request of every case, each for its first artifact: one of each.
    pub fn one_per_case(&mut self) -> Result<Vec<Generated>, String> {
        (0..self.templates.len())
            .map(|t| self.build(t, 0, t as u64))
            .collect()
    }

    fn build(&mut self, t: usize, variant: u64, index: u64) -> Result<Generated, String> {
        let template = &self.templates[t];
        let mut request = template.request.clone();
        if let Some(old) = &template.digest {
            let new = self.variant_digest(t, variant);
            request = replace_in(&request, old, &new)?;
            if let Some(sources) = &template.sources {
                let key = (t, variant);
                if !self.signed.contains_key(&key) {
                    let mut varied = sources.clone();
                    for s in &mut varied {
                        s.statement = replace_in(&s.statement, old, &new)?;
                    }
                    let envelopes = sign_attestation_sources(&varied, &self.keys_dir)?;
                    self.signed.insert(key, envelopes);
                }
                if let Some(envelopes) = self.signed.get(&key) {
                    request["attestations"] = Value::Array(envelopes.clone());
                }
            }
        }
        let template = &self.templates[t];
        // Only the id and the artifact vary: any other field may be what a case (or a
        // plugin, e.g. a ticket-format check) is about.
        request["id"] = format!("req-w{}-{index:08}", self.seed).into();
        Ok(Generated {
            request,
            case: template.name.clone(),
            expect: template.expect.clone(),
        })
    }

    fn variant_digest(&self, t: usize, variant: u64) -> String {
        let mut h = Sha256::new();
        h.update(b"promo-policy/workload/v1");
        h.update(self.seed.to_be_bytes());
        h.update((t as u64).to_be_bytes());
        h.update(variant.to_be_bytes());
        hex::encode(h.finalize())
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Replace every occurrence of the hex string `old` in the JSON `value`.
fn replace_in(value: &Value, old: &str, new: &str) -> Result<Value, String> {
    let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    serde_json::from_str(&text.replace(old, new)).map_err(|e| e.to_string())
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and plenty for picking cases.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value below `n` (`n` >= 1; the modulo bias is below 2^-40 for our `n`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
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
    use crate::testing::Expectation;
    use crate::{Engine, EngineConfig, PromotionRequest};

    fn workload(seed: u64) -> Workload {
        Workload::from_corpus(
            Path::new("corpus/cases"),
            Path::new("corpus/keys"),
            seed,
            DEFAULT_ARTIFACTS,
        )
        .unwrap()
    }

    #[test]
    fn deterministic_and_independent_of_order() {
        let mut a = workload(7);
        let mut b = workload(7);
        let forward: Vec<Value> = (0..20).map(|i| a.request(i).unwrap().request).collect();
        let backward: Vec<Value> = (0..20)
            .rev()
            .map(|i| b.request(i).unwrap().request)
            .collect();
        assert!(forward.iter().eq(backward.iter().rev()));
        let mut c = workload(8);
        assert_ne!(c.request(0).unwrap().request, forward[0]);
    }

    #[test]
    fn requests_vary_ids_and_artifacts_and_mix_verdicts() {
        let mut w = workload(1);
        let batch: Vec<Generated> = (0..200).map(|i| w.request(i).unwrap()).collect();
        let ids: std::collections::BTreeSet<&str> = batch
            .iter()
            .map(|g| g.request["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 200);
        let digests: std::collections::BTreeSet<&str> = batch
            .iter()
            .filter_map(|g| g.request["artifact"]["digest"]["sha256"].as_str())
            .collect();
        assert!(digests.len() > 50, "{}", digests.len());
        let allowed = batch.iter().filter(|g| g.expect.allowed).count();
        assert!((20..180).contains(&allowed), "{allowed}");
    }

    #[test]
    fn every_case_keeps_its_expected_decision_after_variation() {
        let engine = Engine::load(&EngineConfig::with_policies("policies")).unwrap();
        let now = parse_time(WORKLOAD_AT).unwrap();
        let mut evaluator = engine.evaluator();
        let mut w = workload(3);
        // One request per case on a varied artifact (variant 5, not the first).
        for t in 0..w.templates.len() {
            let g = w.build(t, 5, t as u64).unwrap();
            let bytes = serde_json::to_vec(&g.request).unwrap();
            let request = PromotionRequest::from_slice(&bytes).unwrap();
            let decision = evaluator.evaluate(&request, now).decision;
            assert_eq!(Expectation::of(&decision), g.expect, "case {}", g.case);
        }
    }
}
