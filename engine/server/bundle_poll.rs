//! Bundles from a server: poll an HTTP(S) bundle server (ETag, jitter, backoff), verify
//! each new archive before it replaces the cached copy the sidecar serves from, and keep
//! the last good bundle on any failure, across restarts too.
//!
//! The sidecar always decides from `<cache>/bundle.tar.gz`. A download goes to a
//! temporary file in the same directory, is loaded and verified exactly as the engine
//! will load it (signature against the trust file, `requireSignedBundle`), and only then
//! renamed over the cached copy; the reload that follows swaps it in atomically. So a
//! truncated, tampered, unsigned (where signing is required) or slow download never
//! reaches a decision, and a restart without the server serves the last good bundle.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::evaluator::EngineConfig;
use crate::policy::{PolicyBundle, MAX_BUNDLE_BYTES};

/// The cached bundle's name in the cache directory.
pub const CACHED_BUNDLE: &str = "bundle.tar.gz";

/// The ETag of the cached bundle, beside it.
const CACHED_ETAG: &str = "bundle.etag";

/// The longest wait between polls after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Where bundles come from and how often to ask.
#[derive(Debug, Clone)]
pub struct BundleSource {
    /// The bundle's URL (`http://` or `https://`).
    pub url: String,
    /// Where the last good bundle is kept (created if missing).
    pub cache_dir: PathBuf,
    /// Poll this often (plus up to 10 % jitter); failures back off from here.
    pub interval: Duration,
    /// One download, connect to last byte.
    pub timeout: Duration,
}

/// What `/health` shows about the bundle source.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PollStatus {
    /// The bundle server's URL.
    pub url: String,
    /// The ETag of the bundle being served, when the server gave one.
    pub etag: Option<String>,
    /// When the server was last asked (RFC 3339).
    pub last_poll: Option<String>,
    /// What the last poll did: `updated`, `unchanged` or `error`.
    pub last_result: Option<String>,
    /// Why the last poll failed.
    pub last_error: Option<String>,
    /// Polls that failed in a row.
    pub failures: u32,
}

/// What one poll did.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    /// A new bundle was verified and cached.
    Updated,
    /// The server said 304 (or sent the bundle already cached).
    Unchanged,
}

impl BundleSource {
    /// The cached bundle the engine loads.
    pub fn cached(&self) -> PathBuf {
        self.cache_dir.join(CACHED_BUNDLE)
    }

    /// Ask the server once; on a new bundle, verify it against `engine` (its trust file
    /// and backend) and replace the cached copy. Any failure leaves the cache as it was.
    pub fn poll(&self, engine: &EngineConfig) -> Result<Polled, String> {
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(|e| format!("cache directory `{}`: {e}", self.cache_dir.display()))?;
        let etag_path = self.cache_dir.join(CACHED_ETAG);
        let cached = self.cached();
        let etag = cached
            .exists()
            .then(|| std::fs::read_to_string(&etag_path).ok())
            .flatten();
        let agent = ureq::AgentBuilder::new()
            .timeout(self.timeout)
            .redirects(3)
            .build();
        let mut req = agent.get(&self.url);
        if let Some(tag) = &etag {
            req = req.set("If-None-Match", tag.trim());
        }
        let response = match req.call() {
            Ok(r) if r.status() == 304 => return Ok(Polled::Unchanged),
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => return Err(format!("{}: HTTP {code}", self.url)),
            Err(e) => return Err(format!("{}: {e}", self.url)),
        };
        if response.status() == 304 {
            return Ok(Polled::Unchanged);
        }
        let new_etag = response.header("ETag").map(str::to_string);
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(MAX_BUNDLE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: reading the bundle: {e}", self.url))?;
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(format!(
                "{}: the bundle is over {MAX_BUNDLE_BYTES} bytes",
                self.url
            ));
        }
        if std::fs::read(&cached).is_ok_and(|old| old == bytes) {
            return Ok(Polled::Unchanged);
        }
        let tmp = self.cache_dir.join(format!("{CACHED_BUNDLE}.download"));
        write_synced(&tmp, &bytes)?;
        let checked = verify(&tmp, engine);
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "{}: {e}; the last good bundle keeps serving",
                self.url
            ));
        }
        std::fs::rename(&tmp, &cached)
            .map_err(|e| format!("cannot replace `{}`: {e}", cached.display()))?;
        match new_etag {
            Some(tag) => write_synced(&etag_path, tag.as_bytes())?,
            None => {
                let _ = std::fs::remove_file(&etag_path);
            }
        }
        Ok(Polled::Updated)
    }
}

/// Load `archive` as the engine will: the trust file's bundle keys and
/// `requireSignedBundle` decide.
fn verify(archive: &Path, engine: &EngineConfig) -> Result<(), String> {
    let trust = engine.load_trust().map_err(|e| e.to_string())?;
    PolicyBundle::load_trusted(archive, engine.backend, &trust)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// The wait before the next poll: the interval, doubled per failure up to
/// [`MAX_BACKOFF`], plus up to 10 % jitter so a fleet does not poll in step.
pub fn next_wait(interval: Duration, failures: u32) -> Duration {
    use rand_core::RngCore as _;
    let base = interval
        .saturating_mul(1 << failures.min(16))
        .min(MAX_BACKOFF.max(interval));
    let spread = (base.as_millis() as u64 / 10).max(1);
    base + Duration::from_millis(rand_core::OsRng.next_u64() % spread)
}

/// The poller's status, shared with `/health`.
#[derive(Debug, Default)]
pub struct PollState(Mutex<PollStatus>);

impl PollState {
    /// For `url`.
    pub fn new(url: &str) -> Self {
        Self(Mutex::new(PollStatus {
            url: url.to_string(),
            ..PollStatus::default()
        }))
    }

    /// A copy for `/health`.
    pub fn snapshot(&self) -> PollStatus {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Record one poll's outcome; returns the failures in a row.
    pub fn record(&self, outcome: &Result<Polled, String>, etag: Option<String>) -> u32 {
        let mut s = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.last_poll = Some(crate::input::format_time(time::OffsetDateTime::now_utc()));
        match outcome {
            Ok(p) => {
                s.last_result = Some(
                    if *p == Polled::Updated {
                        "updated"
                    } else {
                        "unchanged"
                    }
                    .into(),
                );
                s.last_error = None;
                s.failures = 0;
                if etag.is_some() {
                    s.etag = etag;
                }
            }
            Err(e) => {
                s.last_result = Some("error".into());
                s.last_error = Some(e.clone());
                s.failures = s.failures.saturating_add(1);
            }
        }
        s.failures
    }
}

/// The cached ETag, for the status.
pub fn cached_etag(source: &BundleSource) -> Option<String> {
    std::fs::read_to_string(source.cache_dir.join(CACHED_ETAG))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let i = Duration::from_secs(10);
        let first = next_wait(i, 0);
        assert!(first >= i && first <= i + i / 10, "{first:?}");
        let third = next_wait(i, 2);
        assert!(third >= i * 4 && third <= i * 4 + i * 4 / 10, "{third:?}");
        let capped = next_wait(i, 30);
        assert!(
            capped >= MAX_BACKOFF && capped <= MAX_BACKOFF + MAX_BACKOFF / 10,
            "{capped:?}"
        );
    }
}
