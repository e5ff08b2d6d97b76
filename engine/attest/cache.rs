//! A bounded, thread-safe cache of per-envelope verification results, so that an envelope
//! shared by many requests (one provenance for one artifact) is verified once; it must never
//! change what verification decides, only how often it runs.
//!
//! The key covers everything the result depends on: the SHA-256 of the envelope as
//! received (compact JSON, key order kept: the same bytes as the result's
//! `envelopeDigest`, so a hit can never report another envelope's digest), the trust
//! store's digest, the artifact digest (for `subjectMatches`) and the target environment
//! (for key permissions). Rejections are cached too: they are just as deterministic.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::attest::trust::TrustStore;
use crate::attest::verify::{
    collect_verified, verify_envelope, AttestationSigner, Verified, VerifiedAttestation,
};
use crate::attest::AttestError;
use crate::digest::DigestSet;

/// Entries kept by [`VerifyCache::default`]. A release train or a re-evaluation of
/// recorded requests touches a few hundred distinct artifacts; 4096 covers that with
/// room, and the byte bound below caps what large provenance can cost.
pub const DEFAULT_MAX_ENTRIES: usize = 4096;

/// Memory [`VerifyCache::default`] lets its entries take, as estimated by walking them
/// (see [`approx_size`]). A verified attestation of 1.2 KiB as received takes about
/// 7 KiB decoded (every JSON node is its own allocation), so 4096 such entries take
/// about 28 MiB; this bound is the one that holds when envelopes are large.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// What a cache key is derived from, hashed into 32 bytes (a collision is a SHA-256
/// collision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key for verifying the envelope whose as-received bytes hash to
    /// `envelope_sha256`, against the store with `trust_digest`, for promoting the
    /// artifact with `artifact_digest` into `environment`.
    pub fn new(
        envelope_sha256: &[u8; 32],
        trust_digest: &crate::digest::Sha256,
        artifact_digest: &DigestSet,
        environment: &str,
    ) -> Self {
        // Every variable-length field is length-prefixed, so no two different tuples
        // hash the same bytes.
        fn field(h: &mut Sha256, bytes: &[u8]) {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        let mut h = Sha256::new();
        field(&mut h, b"promo-policy/verify-cache/v1");
        field(&mut h, envelope_sha256);
        field(&mut h, trust_digest.as_bytes());
        h.update((artifact_digest.len() as u64).to_be_bytes());
        for (alg, hex) in artifact_digest.iter() {
            field(&mut h, alg.as_bytes());
            field(&mut h, hex.as_bytes());
        }
        field(&mut h, environment.as_bytes());
        CacheKey(h.finalize().into())
    }
}

/// Counters, for benches, logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that verified.
    pub misses: u64,
    /// Results held now.
    pub entries: usize,
    /// Estimated memory of the results held now (see [`approx_size`]).
    pub bytes: usize,
}

type VerifyOutcome = Result<VerifiedAttestation, AttestError>;

struct Entry {
    outcome: Arc<VerifyOutcome>,
    weight: usize,
    /// Set on a hit, cleared when eviction passes over it (CLOCK, a cheap LRU).
    referenced: bool,
}

#[derive(Default)]
struct Inner {
    map: HashMap<CacheKey, Entry>,
    /// Keys in insertion order; the eviction clock's hand is its front.
    queue: VecDeque<CacheKey>,
    bytes: usize,
}

/// A bounded, thread-safe map from [`CacheKey`] to a verification result. Share one
/// per trust store (e.g. in the `Engine`); the trust digest in the key keeps results of
/// another store apart anyway.
pub struct VerifyCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for VerifyCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)
    }
}

impl std::fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyCache")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("stats", &self.stats())
            .finish()
    }
}

impl VerifyCache {
    /// A cache holding at most `max_entries` results taking at most `max_bytes` of
    /// memory (estimated). A result larger than that is never cached; a cache
    /// with `max_entries == 0` caches nothing.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_entries,
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// [`crate::attest::verify_attestations`] through the cache: the same `Verified`,
    /// attestation for attestation, with each distinct envelope verified once while its
    /// result stays cached.
    pub fn verify_attestations(
        &self,
        store: &TrustStore,
        attestations: &[Value],
        artifact_digest: &DigestSet,
        environment: &str,
    ) -> Verified {
        collect_verified(attestations, |index, value| {
            self.verify_envelope(store, index, value, artifact_digest, environment)
        })
    }

    /// [`verify_envelope`] through the cache.
    pub fn verify_envelope(
        &self,
        store: &TrustStore,
        index: usize,
        value: &Value,
        artifact_digest: &DigestSet,
        environment: &str,
    ) -> Result<VerifiedAttestation, AttestError> {
        let Ok(bytes) = serde_json::to_vec(value) else {
            // A `Value` always serialises; if it ever did not, verify uncached.
            return verify_envelope(store, index, value, artifact_digest, environment);
        };
        let envelope_sha256: [u8; 32] = Sha256::digest(&bytes).into();
        let key = CacheKey::new(
            &envelope_sha256,
            &store.digest(),
            artifact_digest,
            environment,
        );
        if let Some(outcome) = self.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return with_index(&outcome, index);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Verified outside the lock: two threads may verify the same envelope at once
        // and both insert; the results are equal, so that only costs the work.
        let outcome = verify_envelope(store, index, value, artifact_digest, environment);
        let weight = approx_size(&outcome) + ENTRY_BOOKKEEPING;
        self.insert(key, Arc::new(outcome.clone()), weight);
        outcome
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: inner.map.len(),
            bytes: inner.bytes,
        }
    }

    /// Drop every result (e.g. after the trust file changed, though the key's trust
    /// digest already keeps stale results from being used).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.queue.clear();
        inner.bytes = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The lock is never held across verification or user code, so a poisoned lock
        // can only follow a panic inside HashMap/VecDeque operations; the map is still
        // a valid map then, and every entry in it a complete result.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &CacheKey) -> Option<Arc<VerifyOutcome>> {
        let mut inner = self.lock();
        let entry = inner.map.get_mut(key)?;
        entry.referenced = true;
        Some(Arc::clone(&entry.outcome))
    }

    fn insert(&self, key: CacheKey, outcome: Arc<VerifyOutcome>, weight: usize) {
        if self.max_entries == 0 || weight > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if inner.map.contains_key(&key) {
            return;
        }
        inner.map.insert(
            key,
            Entry {
                outcome,
                weight,
                referenced: false,
            },
        );
        inner.queue.push_back(key);
        inner.bytes += weight;
        // CLOCK eviction: the hand skips (and clears) recently hit entries. Each pass
        // clears every mark it meets, so this ends within two turns of the queue.
        while inner.map.len() > self.max_entries || inner.bytes > self.max_bytes {
            let Some(victim) = inner.queue.pop_front() else {
                break;
            };
            let keep = match inner.map.get_mut(&victim) {
                Some(e) if e.referenced => {
                    e.referenced = false;
                    true
                }
                Some(_) => false,
                // INVARIANT: queue and map hold the same keys; a stray key is dropped.
                None => continue,
            };
            if keep {
                inner.queue.push_back(victim);
            } else if let Some(e) = inner.map.remove(&victim) {
                inner.bytes -= e.weight;
            }
        }
    }
}

/// What one entry costs the cache itself beyond its result: the key and entry in the
/// hash map (with its share of empty buckets) and the key in the eviction queue.
const ENTRY_BOOKKEEPING: usize = 128;

/// The heap an allocation of `n` bytes takes: an 8-byte header, rounded up to 16, at
/// least 32 (glibc's malloc; other allocators are within a few percent).
fn alloc(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// Elements a vector grown one push at a time holds room for (serde_json builds arrays
/// and maps that way).
fn grown(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.next_power_of_two().max(4)
    }
}

/// The memory a verification result holds, estimated by walking it: the struct, each
/// string, each JSON node and map index, with allocator rounding. It (plus a fixed
/// bookkeeping cost per entry) is what the cache's byte bound counts; for 10,000
/// results from the generated workload (SLSA provenance and vulnerability scans) the
/// sum, bookkeeping included, came out 14% above the resident memory they took.
pub fn approx_size(outcome: &Result<VerifiedAttestation, AttestError>) -> usize {
    use std::mem::size_of;
    fn text(s: &str) -> usize {
        alloc(s.len())
    }
    fn json(v: &Value) -> usize {
        match v {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(s) => text(s),
            Value::Array(items) => {
                alloc(grown(items.len()) * size_of::<Value>())
                    + items.iter().map(json).sum::<usize>()
            }
            // An ordered map: a vector of (hash, key, value) and a hash index of
            // positions (one word and one control byte per bucket, at most 7/8 full).
            Value::Object(map) => {
                let n = map.len();
                let slot = size_of::<usize>() + size_of::<String>() + size_of::<Value>();
                let buckets = grown(n * 8 / 7 + 1);
                alloc(grown(n) * slot)
                    + alloc(buckets * (size_of::<usize>() + 1) + 16)
                    + map.iter().map(|(k, v)| text(k) + json(v)).sum::<usize>()
            }
        }
    }
    fn strings<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> usize {
        // A B-tree node holds up to 11 pairs; a digest set has one or two.
        alloc(11 * 2 * size_of::<String>()) + pairs.map(|(k, v)| text(k) + text(v)).sum::<usize>()
    }
    fn signer_size(signer: &AttestationSigner) -> usize {
        match signer {
            AttestationSigner::Key { id } => text(id),
            AttestationSigner::Keyless(k) => {
                text(&k.identity)
                    + text(&k.issuer)
                    + text(&k.subject)
                    + text(&k.signed_at)
                    + strings(k.extensions.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    + k.transparency_log
                        .as_ref()
                        .map_or(0, |l| l.integrated_time.as_deref().map_or(0, text))
            }
        }
    }
    // The `Arc` the cache holds the result in.
    let base =
        alloc(2 * size_of::<usize>() + size_of::<Result<VerifiedAttestation, AttestError>>());
    base + match outcome {
        Ok(a) => {
            text(&a.keyid)
                + signer_size(&a.signer)
                + alloc(a.signers.len() * size_of::<String>())
                + a.signers.iter().map(|s| text(s)).sum::<usize>()
                + text(&a.predicate_type)
                + json(&a.subject)
                + json(&a.predicate)
                + a.provenance.as_ref().map_or(0, |p| {
                    // Plain strings; their JSON form walks them with no map overhead.
                    serde_json::to_value(p).map_or(0, |v| match v {
                        Value::Object(m) => m.values().map(json).sum(),
                        other => json(&other),
                    })
                })
                + a.evidence
                    .as_ref()
                    .map_or(0, |f| serde_json::to_value(f).map_or(0, |v| json(&v)))
                + strings(a.envelope_digest.iter())
        }
        // Every variant holds at most a few short strings.
        Err(e) => 2 * text(&e.to_string()),
    }
}

/// A cached outcome for the attestation at `index` (the only part that is per-request).
fn with_index(outcome: &VerifyOutcome, index: usize) -> VerifyOutcome {
    match outcome {
        Ok(att) => Ok(VerifiedAttestation {
            index,
            ..att.clone()
        }),
        Err(e) => Err(e.clone()),
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
    use crate::attest::verify_attestations;
    use crate::testing::{read_attestation_sources, sign_attestation_sources};
    use std::path::Path;

    const CASE: &str = "corpus/cases/prod-allow-baseline";

    fn fixture() -> (TrustStore, Vec<Value>, DigestSet) {
        let store = TrustStore::load(Path::new("policies/trust.json")).unwrap();
        let request: Value =
            serde_json::from_slice(&std::fs::read(format!("{CASE}/request.json")).unwrap())
                .unwrap();
        let attestations = request["attestations"].as_array().unwrap().clone();
        let digest = serde_json::from_value(request["artifact"]["digest"].clone()).unwrap();
        (store, attestations, digest)
    }

    #[test]
    fn cached_results_equal_uncached_and_hit_on_repeat() {
        let (store, atts, digest) = fixture();
        let cache = VerifyCache::default();
        let want = verify_attestations(&store, &atts, &digest, "prod");
        assert!(!want.attestations.is_empty());
        for _ in 0..3 {
            assert_eq!(
                cache.verify_attestations(&store, &atts, &digest, "prod"),
                want
            );
        }
        let stats = cache.stats();
        assert_eq!(stats.misses, atts.len() as u64);
        assert_eq!(stats.hits, 2 * atts.len() as u64);
        assert_eq!(stats.entries, atts.len());
    }

    #[test]
    fn index_comes_from_the_request_not_the_cache() {
        let (store, atts, digest) = fixture();
        let cache = VerifyCache::default();
        let first = &atts[0];
        let twice = vec![Value::Null, first.clone(), first.clone()];
        let got = cache.verify_attestations(&store, &twice, &digest, "prod");
        assert_eq!(got, verify_attestations(&store, &twice, &digest, "prod"));
        let indices: Vec<usize> = got.attestations.iter().map(|a| a.index).collect();
        assert_eq!(indices, vec![1, 2]);
        assert_eq!(got.rejected[0].index, 0);
    }

    #[test]
    fn artifact_environment_and_trust_are_part_of_the_key() {
        let (store, atts, digest) = fixture();
        let cache = VerifyCache::default();
        let _ = cache.verify_attestations(&store, &atts, &digest, "prod");

        // Another artifact: the same envelope no longer matches the subject.
        let other = DigestSet::sha256_hex("ab".repeat(32));
        let got = cache.verify_attestations(&store, &atts, &other, "prod");
        assert_eq!(got, verify_attestations(&store, &atts, &other, "prod"));
        assert!(!got.attestations[0].subject_matches);

        // Another environment and an empty trust store: each its own result.
        for env in ["staging", "dev"] {
            assert_eq!(
                cache.verify_attestations(&store, &atts, &digest, env),
                verify_attestations(&store, &atts, &digest, env)
            );
        }
        let empty = TrustStore::empty();
        let got = cache.verify_attestations(&empty, &atts, &digest, "prod");
        assert_eq!(got, verify_attestations(&empty, &atts, &digest, "prod"));
        assert!(got.attestations.is_empty());
        assert_eq!(cache.stats().hits, 0);
    }

    #[test]
    fn rejections_are_cached_too() {
        let (store, _, digest) = fixture();
        let dir = Path::new("corpus/cases/attestation-untrusted-key-deny");
        let sources = read_attestation_sources(dir).unwrap().unwrap();
        let atts = sign_attestation_sources(&sources, Path::new("corpus/keys")).unwrap();
        let cache = VerifyCache::default();
        let want = verify_attestations(&store, &atts, &digest, "prod");
        assert!(!want.rejected.is_empty());
        assert_eq!(
            cache.verify_attestations(&store, &atts, &digest, "prod"),
            want
        );
        assert_eq!(
            cache.verify_attestations(&store, &atts, &digest, "prod"),
            want
        );
        assert_eq!(cache.stats().hits, atts.len() as u64);
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let (store, atts, digest) = fixture();
        let envs: Vec<String> = (0..10).map(|i| format!("env{i}")).collect();

        let cache = VerifyCache::new(3, usize::MAX);
        for env in &envs {
            let _ = cache.verify_attestations(&store, &atts[..1], &digest, env);
        }
        assert_eq!(cache.stats().entries, 3);

        // Every `envN` is refused with a message of the same length: equal sizes.
        let size =
            approx_size(&verify_envelope(&store, 0, &atts[0], &digest, "env0")) + ENTRY_BOOKKEEPING;
        let cache = VerifyCache::new(100, 2 * size);
        for env in &envs {
            let _ = cache.verify_attestations(&store, &atts[..1], &digest, env);
        }
        let stats = cache.stats();
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.bytes, 2 * size);

        // Larger than the whole budget: verified, never cached.
        let cache = VerifyCache::new(100, size - 1);
        let _ = cache.verify_attestations(&store, &atts[..1], &digest, "prod");
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn sizes_count_the_decoded_result_not_the_envelope() {
        let (store, atts, digest) = fixture();
        let ok = verify_envelope(&store, 0, &atts[0], &digest, "prod");
        assert!(ok.is_ok());
        let envelope = serde_json::to_vec(&atts[0]).unwrap().len();
        // Decoded JSON takes several times its text: one allocation per node.
        assert!(
            approx_size(&ok) > 2 * envelope,
            "{} vs {envelope}",
            approx_size(&ok)
        );
        let refused = verify_envelope(&store, 0, &atts[0], &digest, "nowhere");
        assert!(approx_size(&refused) < approx_size(&ok));
    }

    #[test]
    fn recently_hit_entries_survive_eviction() {
        let (store, atts, digest) = fixture();
        let cache = VerifyCache::new(2, usize::MAX);
        let one = &atts[..1];
        let _ = cache.verify_attestations(&store, one, &digest, "a");
        let _ = cache.verify_attestations(&store, one, &digest, "b");
        let _ = cache.verify_attestations(&store, one, &digest, "a"); // hit: marks `a`
        let _ = cache.verify_attestations(&store, one, &digest, "c"); // evicts `b`
        let before = cache.stats().hits;
        let _ = cache.verify_attestations(&store, one, &digest, "a");
        assert_eq!(cache.stats().hits, before + 1);
        let _ = cache.verify_attestations(&store, one, &digest, "b");
        assert_eq!(cache.stats().hits, before + 1);
    }

    #[test]
    fn shared_across_threads() {
        let (store, atts, digest) = fixture();
        let cache = VerifyCache::default();
        let want = verify_attestations(&store, &atts, &digest, "prod");
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10 {
                        assert_eq!(
                            cache.verify_attestations(&store, &atts, &digest, "prod"),
                            want
                        );
                    }
                });
            }
        });
        let stats = cache.stats();
        assert_eq!(stats.hits + stats.misses, 40 * atts.len() as u64);
        assert_eq!(stats.entries, atts.len());
    }
}
