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

use crate::error_chain::ErrorChain;
use crate::evaluator::EngineConfig;
use crate::policy::{PolicyBundle, PolicyError, MAX_BUNDLE_BYTES};

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

/// Why a poll changed nothing; the cached bundle is as it was. An underlying error is the
/// `source` and not repeated in the message: `/health` and the logs print the chain (see
/// [`crate::error_chain`]).
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The cache directory cannot be created.
    #[error("cache directory `{path}`")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The bundle's URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// No answer: connection, TLS, DNS, timeout, too many redirects.
    #[error("{url}")]
    Request {
        /// The bundle's URL.
        url: String,
        /// The transport's error (it names the URL again, as ureq words it); boxed, as
        /// it is large.
        #[source]
        source: Box<ureq::Transport>,
    },
    /// The body could not be read to its end.
    #[error("{url}: reading the bundle")]
    Read {
        /// The bundle's URL.
        url: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The body is over [`MAX_BUNDLE_BYTES`].
    #[error("{url}: the bundle is over {MAX_BUNDLE_BYTES} bytes")]
    TooLarge {
        /// The bundle's URL.
        url: String,
    },
    /// The trust file the new bundle is checked against does not load.
    #[error("{url}: the new bundle cannot be checked; the last good bundle keeps serving")]
    Trust {
        /// The bundle's URL.
        url: String,
        /// Why the trust file does not load.
        #[source]
        source: Box<crate::evaluator::Error>,
    },
    /// The new bundle does not load as the engine would load it (damaged, unsigned
    /// where signing is required, tampered, not valid Rego).
    #[error("{url}: the new bundle is refused; the last good bundle keeps serving")]
    Refused {
        /// The bundle's URL.
        url: String,
        /// Why it does not load.
        #[source]
        source: Box<PolicyError>,
    },
    /// A file in the cache directory cannot be written.
    #[error("cannot write `{path}`")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The verified download cannot replace the cached bundle.
    #[error("cannot replace `{path}`")]
    Replace {
        /// The cached bundle.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The blocking task that polls died (a panic, or the runtime shutting down).
    #[error("the poll task failed")]
    Task(#[source] tokio::task::JoinError),
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
    pub fn poll(&self, engine: &EngineConfig) -> Result<Polled, PollError> {
        std::fs::create_dir_all(&self.cache_dir).map_err(|source| PollError::CacheDir {
            path: self.cache_dir.clone(),
            source,
        })?;
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
            Err(ureq::Error::Status(status, _)) => {
                return Err(PollError::Status {
                    url: self.url.clone(),
                    status,
                })
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(PollError::Request {
                    url: self.url.clone(),
                    source: Box::new(t),
                })
            }
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
            .map_err(|source| PollError::Read {
                url: self.url.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(PollError::TooLarge {
                url: self.url.clone(),
            });
        }
        if std::fs::read(&cached).is_ok_and(|old| old == bytes) {
            return Ok(Polled::Unchanged);
        }
        let tmp = self.cache_dir.join(format!("{CACHED_BUNDLE}.download"));
        write_synced(&tmp, &bytes)?;
        if let Err(e) = verify(&self.url, &tmp, engine) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &cached).map_err(|source| PollError::Replace {
            path: cached.clone(),
            source,
        })?;
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
fn verify(url: &str, archive: &Path, engine: &EngineConfig) -> Result<(), PollError> {
    let trust = engine.load_trust().map_err(|e| PollError::Trust {
        url: url.to_string(),
        source: Box::new(e),
    })?;
    PolicyBundle::load_trusted(archive, engine.backend, &trust)
        .map(|_| ())
        .map_err(|e| PollError::Refused {
            url: url.to_string(),
            source: Box::new(e),
        })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PollError> {
    use std::io::Write as _;
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|source| PollError::Write {
            path: path.to_path_buf(),
            source,
        })
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
    pub fn record(&self, outcome: &Result<Polled, PollError>, etag: Option<String>) -> u32 {
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
                s.last_error = Some(ErrorChain(e).to_string());
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
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    fn source(url: &str, cache_dir: PathBuf) -> BundleSource {
        BundleSource {
            url: url.into(),
            cache_dir,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn a_failed_poll_keeps_its_cause_and_health_shows_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/b.tar.gz");
        let outcome = source(&url, dir.path().join("cache")).poll(&EngineConfig::default());
        let err = outcome.as_ref().unwrap_err();
        assert!(matches!(err, PollError::Request { .. }), "{err:?}");
        let cause = std::error::Error::source(err).unwrap();
        assert!(
            cause.downcast_ref::<Box<ureq::Transport>>().is_some(),
            "{cause}"
        );

        let state = PollState::new(&url);
        assert_eq!(state.record(&outcome, None), 1);
        let shown = state.snapshot().last_error.unwrap();
        assert_eq!(shown, ErrorChain(err).to_string());
        assert!(shown.starts_with(&format!("{url}: {url}")), "{shown}");
        assert!(
            shown.len() > 2 * url.len() + 2,
            "the cause is shown: {shown}"
        );

        // A cache directory that cannot be made: the I/O error is the source.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = source(&url, file.join("cache"))
            .poll(&EngineConfig::default())
            .unwrap_err();
        assert!(matches!(err, PollError::CacheDir { .. }), "{err:?}");
        let io = std::error::Error::source(&err).unwrap();
        assert!(io.downcast_ref::<std::io::Error>().is_some(), "{io}");
    }

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
