//! The sidecar: an axum HTTP face over the shared `Engine` (OPA Data API, promotion
//! decisions, Kubernetes admission, health, metrics); it decides nothing itself and never
//! answers a bad request with an allow or a 5xx.
//!
//! Layout: [`Server`] owns the loaded engine generation (swapped atomically on reload),
//! the evaluation gate (bounded concurrency that sheds load with 503) and the metrics;
//! `routes` holds the promotion, health and metrics handlers, `opa` the OPA-compatible
//! API, `admission` the validating webhook and `reload` the hot reload.

mod admission;
pub mod admission_config;
mod audit;
pub mod bundle_poll;
pub mod decision_log;
mod errors;
mod metrics;
mod opa;
mod opa_params;
mod reload;
mod rollout;
mod routes;
mod tls;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::error_chain::ErrorChain;
use crate::evaluator::{Engine, EngineConfig, Evaluator};
use crate::pool::EvaluatorPool;

pub use admission::{DecisionIndex, EnvironmentDecisions, DECISIONS_ANNOTATION};
pub use audit::{
    AuditConfig, Unrecorded, AUDIT_BATCH, AUDIT_CHANNEL_CAPACITY, AUDIT_COMMIT_TIMEOUT,
    AUDIT_ENQUEUE_TIMEOUT,
};
pub use errors::{ApiError, Internal};
pub use metrics::Metrics;
pub use opa_params::MAX_QUERY_STRING_BYTES;
pub use tls::{TlsConfig, TLS_HANDSHAKE_TIMEOUT, TLS_RELOAD_INTERVAL};

/// The address `serve` binds by default: loopback only, as OPA does since 1.0, so a
/// sidecar is not reachable from the network unless someone asks for it.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8181";

/// Largest body accepted on the routes that carry a promotion request. The request itself
/// is capped at [`crate::request::MAX_BODY_BYTES`] by the strict parser; the slack lets a
/// client wrap it (`{"input": ...}`) and still get the parser's precise size error rather
/// than a bare 413 from the transport.
pub const MAX_REQUEST_BODY_BYTES: usize = crate::request::MAX_BODY_BYTES + 4 * 1024;

/// Largest AdmissionReview accepted. It carries `object` and `oldObject`, each up to
/// etcd's default 1.5 MiB object limit, plus the review's own fields.
pub const MAX_ADMISSION_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Longest ad-hoc query text (`/v1/query`). Real queries are a line; this only stops
/// someone from making the Rego parser chew on megabytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// How long a client may take to send its body. A 4 MiB body crosses loopback or a
/// cluster network in milliseconds; a client slower than this is broken or hostile
/// (slowloris), and it must not hold a connection for the API server's whole 10 s
/// webhook timeout.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one evaluation may take, queueing included. Above the policy's own 1 s budget
/// ([`crate::policy::POLICY_TIME_LIMIT`]) so a slow policy reports its own error first,
/// and well under the API server's default 10 s webhook timeout so the caller hears why.
pub const EVALUATION_TIMEOUT: Duration = Duration::from_secs(3);

/// Backstop for a whole request (body, queue, evaluation, response): the sum of the two
/// budgets above plus a margin, still under the API server's 10 s webhook timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(9);

/// How long a client may take to send a request's headers (the body has its own budget,
/// [`BODY_READ_TIMEOUT`]). Headers are a few hundred bytes; a client slower than this is
/// holding a connection open on purpose.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections open at once. A sidecar serves its own pod or an API server's few
/// connections; a thousand leaves room for bursts and keeps file descriptors and buffers
/// (tens of KiB each) bounded.
pub const MAX_CONNECTIONS: usize = 1024;

/// Most request-body bytes being read and decoded at once, across all connections. Each
/// body reserves its declared length (or its route's limit, when undeclared or chunked)
/// before a byte is read, and holds it while it is parsed; decoding JSON costs several
/// times the raw size, so 32 MiB of bodies bounds that work to a few hundred MiB however
/// many clients send at once. A body that cannot get its share within
/// [`BODY_BUDGET_WAIT`] is answered 503 with `Retry-After`.
pub const MAX_BODY_BYTES_IN_FLIGHT: usize = 32 * 1024 * 1024;

/// How long a request waits for its share of [`MAX_BODY_BYTES_IN_FLIGHT`].
pub const BODY_BUDGET_WAIT: Duration = Duration::from_secs(1);

/// A connection whose last response finished more recently than this is not evicted:
/// the response may still be on its way out.
const EVICTION_MIN_IDLE: Duration = Duration::from_millis(100);

/// The open connections, oldest first, with what each is doing; the accept loop evicts
/// the oldest idle one when the connection cap is reached.
struct OpenConnections {
    next: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
    by_age: std::sync::Mutex<std::collections::BTreeMap<u64, OpenConnection>>,
}

impl Default for OpenConnections {
    fn default() -> Self {
        Self {
            next: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            by_age: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }
}

struct OpenConnection {
    activity: Arc<Activity>,
    close: Arc<tokio::sync::Notify>,
}

/// What a connection is doing: requests in service, and when the last one finished.
#[derive(Default)]
struct Activity {
    in_service: std::sync::atomic::AtomicUsize,
    /// Milliseconds after [`OpenConnections::epoch`]; 0 = never served one.
    last_done_ms: std::sync::atomic::AtomicU64,
}

impl OpenConnections {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn register(&self) -> (u64, Arc<Activity>, Arc<tokio::sync::Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::default());
        let close = Arc::new(tokio::sync::Notify::new());
        if let Ok(mut map) = self.by_age.lock() {
            map.insert(
                id,
                OpenConnection {
                    activity: Arc::clone(&activity),
                    close: Arc::clone(&close),
                },
            );
        }
        (id, activity, close)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut map) = self.by_age.lock() {
            map.remove(&id);
        }
    }

    /// Ask the oldest connection that is idle (no request in service, none finished in
    /// the last [`EVICTION_MIN_IDLE`]) to close; whether there was one.
    fn evict_oldest_idle(&self) -> bool {
        let now = self.now_ms();
        let min_idle = EVICTION_MIN_IDLE.as_millis() as u64;
        let Ok(mut map) = self.by_age.lock() else {
            return false;
        };
        let victim = map
            .iter()
            .find(|(_, c)| {
                let done = c.activity.last_done_ms.load(Ordering::SeqCst);
                c.activity.in_service.load(Ordering::SeqCst) == 0
                    && (done == 0 || now.saturating_sub(done) >= min_idle)
            })
            .map(|(id, _)| *id);
        match victim.and_then(|id| map.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in service on its connection for as long as it lives.
struct InService(Arc<Activity>, Arc<OpenConnections>);

impl InService {
    fn enter(activity: &Arc<Activity>, open: &Arc<OpenConnections>) -> Self {
        activity.in_service.fetch_add(1, Ordering::SeqCst);
        InService(Arc::clone(activity), Arc::clone(open))
    }
}

impl Drop for InService {
    fn drop(&mut self) {
        self.0.last_done_ms.store(self.1.now_ms(), Ordering::SeqCst);
        self.0.in_service.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How many requests may wait for an evaluation worker before the sidecar sheds load.
/// One decision costs well under a millisecond of CPU, so 256 queued requests are tens of
/// milliseconds of work; past that, latency grows without bound and the caller is better
/// served by a 503 it can retry on another replica.
pub const MAX_QUEUED_EVALUATIONS: usize = 256;

/// `Retry-After` (seconds) sent with a 503 when the sidecar sheds load. One second is
/// long enough for a queue measured in milliseconds to drain.
pub const RETRY_AFTER_SECS: u64 = 1;

/// How often the bundle, trust file and decision directory are checked for changes when
/// watching is on. A mounted ConfigMap updates within about a minute anyway; two seconds
/// of a stale bundle is nothing next to that, and a stat of a few dozen files is free.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Most idle evaluators kept per generation. Only as many as run at once are ever made,
/// so this is a backstop, sized well above any sensible `--max-concurrency`.
pub const MAX_POOLED_EVALUATORS: usize = 64;

/// Why the sidecar could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The engine (bundle, trust file, signing key) could not be loaded.
    #[error(transparent)]
    Engine(#[from] crate::evaluator::Error),
    /// The decision directory could not be read.
    #[error("decision directory `{path}`: {reason}")]
    Decisions {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The listener failed.
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
    /// The blocking reload task died.
    #[error("reload task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The audit log cannot be opened for writing (`serve --audit`).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The audit writer thread could not be started.
    #[error("cannot start the audit writer")]
    AuditWriter(#[source] std::io::Error),
    /// The decision-log shipper could not start.
    #[error("cannot start the decision log")]
    DecisionLog(#[source] std::io::Error),
    /// The TLS certificate, key or client CA cannot be read or used (`serve --tls-*`).
    #[error("{what}")]
    Tls {
        /// Which file or step, e.g. ``TLS key `key.pem` ``.
        what: String,
        /// The reader's or rustls's error, when one was the cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The admission config cannot be read or is invalid (`serve --admission-config`).
    #[error("admission config `{path}`: {cause}")]
    AdmissionConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        #[source]
        cause: admission_config::AdmissionConfigError,
    },
    /// `serve --environment` names an environment the bundle does not configure.
    #[error("{0}")]
    Environment(String),
}

/// Why a client connection ended badly (logged at debug: clients hang up all the time).
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    /// HTTP on the connection failed (hyper's words, then its cause).
    #[error(transparent)]
    Http(hyper::Error),
    /// The client did not finish the TLS handshake in time.
    #[error("TLS handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The TLS handshake failed (or the connection was evicted during it).
    #[error("TLS handshake failed")]
    Handshake(#[source] std::io::Error),
}

/// Where the time of a decision comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionClock {
    /// The system clock, read once per decision.
    System,
    /// A fixed time, for tests and replays.
    Fixed(OffsetDateTime),
}

impl DecisionClock {
    /// The evaluation time for a decision made now.
    pub fn now(&self) -> OffsetDateTime {
        match self {
            DecisionClock::System => OffsetDateTime::now_utc(),
            DecisionClock::Fixed(t) => *t,
        }
    }
}

/// Budgets a deployment may tune; the defaults are the named constants above.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Evaluations running at once (each on a blocking thread). Default: the number of
    /// CPUs, since an evaluation is pure CPU work and more threads only contend.
    pub max_concurrent_evaluations: usize,
    /// Requests that may wait for a worker before 503 (see [`MAX_QUEUED_EVALUATIONS`]).
    pub max_queued_evaluations: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`EVALUATION_TIMEOUT`].
    pub evaluation_timeout: Duration,
    /// See [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`MAX_BODY_BYTES_IN_FLIGHT`].
    pub max_body_bytes_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_concurrent_evaluations: std::thread::available_parallelism()
                .map(std::num::NonZeroUsize::get)
                .unwrap_or(2),
            max_queued_evaluations: MAX_QUEUED_EVALUATIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            evaluation_timeout: EVALUATION_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_body_bytes_in_flight: MAX_BODY_BYTES_IN_FLIGHT,
        }
    }
}

/// Everything `serve` needs to know.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bundle, trust file and signing key.
    pub engine: EngineConfig,
    /// The environment admission judges images against where the admission config
    /// names none (neither in the namespace's rule nor at its top level); `None` there
    /// refuses every image.
    pub environment: Option<String>,
    /// A directory of signed decision envelopes (`*.json`) admission may rely on.
    pub decisions: Option<PathBuf>,
    /// Where decision time comes from.
    pub clock: DecisionClock,
    /// Budgets.
    pub limits: ServerLimits,
    /// Poll the bundle, trust file and decision directory for changes this often;
    /// `None` reloads on SIGHUP only.
    pub watch_interval: Option<Duration>,
    /// Record every signed decision here before answering with it (`serve --audit`).
    pub audit: Option<AuditConfig>,
    /// Admission refuses decisions made longer ago than this (`None`: any age).
    pub max_decision_age: Option<Duration>,
    /// Answer ad-hoc Rego on `/v1/query` (`serve --allow-query`). Off by default: an
    /// arbitrary query is arbitrary computation for anyone who can reach the port.
    pub allow_query: bool,
    /// Ship every decision to a collector as an OPA decision-log event
    /// (`serve --decision-log-url`).
    pub decision_log: Option<decision_log::DecisionLogSetup>,
    /// Poll a bundle server and decide from its verified bundle (`serve --bundle-url`);
    /// `engine.policies` is then the cached copy.
    pub bundle_source: Option<bundle_poll::BundleSource>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this pair instead of plain HTTP/1.1.
    pub tls: Option<TlsConfig>,
    /// Rollout modes, break-glass and decision rules for admission
    /// (`serve --admission-config`); `None`: enforce everywhere, no break-glass.
    pub admission_config: Option<PathBuf>,
}

impl ServerConfig {
    /// A config for a bundle directory with every default.
    pub fn new(engine: EngineConfig) -> Self {
        Self {
            engine,
            environment: None,
            decisions: None,
            clock: DecisionClock::System,
            limits: ServerLimits::default(),
            watch_interval: None,
            audit: None,
            max_decision_age: None,
            allow_query: false,
            decision_log: None,
            bundle_source: None,
            tls: None,
            admission_config: None,
        }
    }
}

/// One loaded generation: the engine and what was derived from it. Immutable (but for
/// its pool of idle evaluators); a reload builds a new one and swaps it in, and in-flight
/// requests finish on the old one.
#[derive(Debug)]
pub struct Loaded {
    /// The engine.
    pub engine: Arc<Engine>,
    /// For every environment the admission config uses (its default, `--environment`
    /// when it has none, and each namespace rule's): the keys trusted to sign decisions
    /// into it and the allowed decisions from `--decisions DIR`, verified at load. Built
    /// with the config, so a reload swaps both at once.
    pub admission_environments: std::collections::BTreeMap<String, EnvironmentDecisions>,
    /// The environments the bundle configures (`data.promo.config.environments`): the
    /// only values used as a metric label, so a caller cannot blow up cardinality.
    pub environments: std::collections::BTreeSet<String>,
    /// Whether the bundle defines `data.promo.admission.deny`.
    pub admission_rules: bool,
    /// The admission config (the defaults when none is given), with `--environment` as
    /// its default environment when the file names none.
    pub admission: admission_config::AdmissionConfig,
    /// Evaluators returned after use: a reused one skips the per-clone warm-up.
    pool: EvaluatorPool,
}

impl Loaded {
    /// Build a complete generation from the config; blocking (file I/O, compilation).
    pub fn build(config: &ServerConfig) -> Result<Self, ServerError> {
        let engine = Engine::load(&config.engine)?;
        engine.log_lints();
        let environments = configured_environments(&engine);
        let config_error = |path: &PathBuf, cause| ServerError::AdmissionConfig {
            path: path.clone(),
            cause,
        };
        let mut admission = match &config.admission_config {
            Some(path) => admission_config::AdmissionConfig::load(path)
                .map_err(|cause| config_error(path, cause))?,
            None => admission_config::AdmissionConfig::default(),
        };
        // `--environment` is checked even when the file's own default overrides it: a
        // name the bundle does not know is a mistake either way.
        if let Some(why) = config.environment.as_deref().and_then(|env| {
            admission_config::unknown_environment("`--environment`", env, &environments)
        }) {
            return Err(ServerError::Environment(why));
        }
        admission.adopt_flag_environment(config.environment.as_deref());
        admission
            .check_environments(&environments)
            .map_err(|reason| match &config.admission_config {
                Some(path) => config_error(
                    path,
                    admission_config::AdmissionConfigError::Invalid(reason),
                ),
                None => ServerError::Environment(reason),
            })?;
        let keys: std::collections::BTreeMap<String, Vec<crate::attest::PublicKey>> = admission
            .environments()
            .into_iter()
            .map(|env| (env.to_string(), admission::decision_keys(&engine, env)))
            .collect();
        let mut indexes = match &config.decisions {
            Some(dir) => DecisionIndex::load_per_environment(dir, &keys, &admission.decisions)?,
            None => std::collections::BTreeMap::new(),
        };
        let admission_environments = keys
            .into_iter()
            .map(|(env, keys)| {
                let index = indexes.remove(&env).unwrap_or_default();
                (env, EnvironmentDecisions { keys, index })
            })
            .collect();
        let admission_rules = engine
            .bundle()
            .evaluator()
            .get_packages()
            .map(|p| p.iter().any(|p| p == admission::ADMISSION_PACKAGE))
            .unwrap_or(false);
        Ok(Self {
            pool: EvaluatorPool::new(Arc::clone(&engine), MAX_POOLED_EVALUATORS),
            engine,
            admission_environments,
            environments,
            admission_rules,
            admission,
        })
    }

    /// Run `work` with an evaluator of this generation, taken from the pool (or made)
    /// and given back after. At most one evaluator per running evaluation exists, so
    /// the pool stays as small as the worker count.
    pub fn with_evaluator<T>(&self, work: impl FnOnce(&mut Evaluator) -> T) -> T {
        self.pool.with(work)
    }

    /// The metric label for an environment name from a request.
    pub fn environment_label(&self, name: &str) -> String {
        if self.environments.contains(name) {
            name.to_string()
        } else {
            "other".to_string()
        }
    }
}

fn configured_environments(engine: &Engine) -> std::collections::BTreeSet<String> {
    let mut rego = engine.bundle().evaluator();
    match opa::eval_document(&mut rego, "promo/config/environments") {
        Ok(Some(serde_json::Value::Object(map))) => map.keys().cloned().collect(),
        _ => std::collections::BTreeSet::new(),
    }
}

/// Why the last reload failed, for `/health` and the logs.
#[derive(Debug, Clone)]
pub struct ReloadFailure {
    /// When (RFC 3339, wall clock).
    pub at: String,
    /// The error.
    pub reason: String,
}

/// The sidecar: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ServerConfig,
    loaded: ArcSwap<Loaded>,
    reload_failure: ArcSwapOption<ReloadFailure>,
    metrics: Metrics,
    gate: Gate,
    draining: AtomicBool,
    /// Serialises reloads so two triggers cannot race to swap.
    reloading: tokio::sync::Mutex<()>,
    /// The audit writer, when decisions are recorded.
    audit: Option<audit::AuditSink>,
    /// The decision-log shipper, when decisions are shipped.
    decision_log: Option<decision_log::DecisionLogger>,
    /// The bundle poller's status, when bundles come from a server.
    bundle_poll: Option<Arc<bundle_poll::PollState>>,
    /// Body bytes that may be in flight, in KiB permits (see [`MAX_BODY_BYTES_IN_FLIGHT`]).
    body_budget: Arc<Semaphore>,
    /// The certificate pair new connections are handshaken with, when serving TLS.
    tls: Option<Arc<tls::TlsState>>,
    /// SIGHUP's listener when [`Server::listen_for_reload_signal`] registered it before
    /// `serve`; `serve`'s reload trigger takes it (or registers its own).
    #[cfg(unix)]
    hangups: std::sync::Mutex<Option<tokio::signal::unix::Signal>>,
}

impl Server {
    /// Load the engine (and decision directory) and build the sidecar; blocking.
    pub fn new(config: ServerConfig) -> Result<Self, ServerError> {
        let loaded = Loaded::build(&config)?;
        let metrics = Metrics::new();
        metrics.set_bundle(&loaded.engine.bundle().digest().hex());
        metrics.set_revision(loaded.engine.bundle().revision());
        let gate = Gate::new(&config.limits);
        let audit = config
            .audit
            .as_ref()
            .map(|c| audit::AuditSink::start(c, metrics.audit()))
            .transpose()?;
        let decision_log = match &config.decision_log {
            Some(setup) => Some(
                decision_log::DecisionLogger::start(setup.log.clone(), metrics.decision_log())
                    .map_err(ServerError::DecisionLog)?,
            ),
            None => None,
        };
        let tls = config
            .tls
            .clone()
            .map(|c| tls::TlsState::load(c).map(Arc::new))
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                loaded: ArcSwap::from_pointee(loaded),
                reload_failure: ArcSwapOption::empty(),
                metrics,
                gate,
                draining: AtomicBool::new(false),
                reloading: tokio::sync::Mutex::new(()),
                audit,
                decision_log,
                bundle_poll: config.bundle_source.as_ref().map(|s| {
                    let state = bundle_poll::PollState::new(&s.url);
                    let etag = bundle_poll::cached_etag(s);
                    state.record(&Ok(bundle_poll::Polled::Unchanged), etag);
                    Arc::new(state)
                }),
                tls,
                #[cfg(unix)]
                hangups: std::sync::Mutex::new(None),
                body_budget: Arc::new(Semaphore::new(
                    (config.limits.max_body_bytes_in_flight / 1024).max(1),
                )),
                config,
            }),
        })
    }

    /// Install the SIGHUP handler now, before `serve` starts: from this call on a SIGHUP
    /// reloads (once `serve` runs) instead of terminating the process, SIGHUP's default.
    /// Call it before announcing that the sidecar serves, as `promo-policy serve` does;
    /// must run inside the runtime. Without it `serve` installs the handler itself.
    #[cfg(unix)]
    pub fn listen_for_reload_signal(&self) -> std::io::Result<()> {
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        *self
            .inner
            .hangups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hangups);
        Ok(())
    }

    /// What a decision-log event is built with (the masking rules and OPA's labels),
    /// copied for the blocking pool, when decisions are shipped.
    pub(super) fn decision_log_options(
        &self,
    ) -> Option<(crate::audit::RecordOptions, serde_json::Value)> {
        self.inner
            .decision_log
            .as_ref()
            .and(self.config().decision_log.as_ref())
            .map(|s| (s.input.clone(), s.labels.clone()))
    }

    /// The configuration the sidecar runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The generation serving requests now.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.inner.loaded.load_full()
    }

    /// Send what the decision log still holds, for at most `within`; returns the events
    /// left unsent (lost). Call after [`Server::serve`] returns.
    pub fn flush_decision_log(&self, within: Duration) -> usize {
        self.inner
            .decision_log
            .as_ref()
            .map_or(0, |log| log.shutdown(within))
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Why the last reload failed, if it did (cleared by a good reload).
    pub fn reload_failure(&self) -> Option<Arc<ReloadFailure>> {
        self.inner.reload_failure.load_full()
    }

    /// Mark the sidecar as shutting down: `/health/ready` turns 503 so load balancers stop
    /// sending work while in-flight requests finish.
    pub fn begin_drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`Server::begin_drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Every route, with the body limits, timeout and shared state applied.
    pub fn router(&self) -> Router {
        let request_limit = DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES);
        let admission_limit = DefaultBodyLimit::max(MAX_ADMISSION_BODY_BYTES);
        Router::new()
            .route(
                "/v1/promotions/evaluate",
                post(routes::evaluate)
                    .fallback(routes::wrong_method("evaluate", "POST"))
                    .layer(request_limit),
            )
            .route("/v1/data", opa::data_v1_methods().layer(request_limit))
            .route(
                "/v1/data/{*path}",
                opa::data_v1_methods().layer(request_limit),
            )
            .route(
                "/v0/data/{*path}",
                opa::data_v0_methods().layer(request_limit),
            )
            .route("/v1/policies", opa::policies_methods())
            .route("/v1/policies/{*id}", opa::policy_methods())
            .route("/v1/query", opa::query_methods().layer(request_limit))
            .route(
                "/v1/admission",
                post(admission::handle)
                    .fallback(routes::wrong_method(admission::ROUTE_ADMISSION, "POST"))
                    .layer(admission_limit),
            )
            .route(
                "/v1/admission/{mode}",
                post(admission::handle_mode)
                    .fallback(routes::wrong_method(admission::ROUTE_ADMISSION, "POST"))
                    .layer(admission_limit),
            )
            .route("/health", get(routes::health))
            .route("/health/live", get(routes::live))
            .route("/health/ready", get(routes::ready))
            .route("/metrics", get(routes::metrics))
            .fallback(routes::not_found)
            .layer(axum::middleware::from_fn(routes::canonicalise))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                routes::track_in_flight,
            ))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                self.inner.config.limits.request_timeout,
            ))
            .with_state(self.clone())
    }

    /// Serve on `listener` until `shutdown` resolves, then stop accepting, let in-flight
    /// requests finish and return. Also runs the watcher (if configured) and, on unix,
    /// reloads on SIGHUP.
    ///
    /// HTTP/1.1 over hyper directly rather than `axum::serve`, for two budgets it lacks: a
    /// header-read timeout (a client trickling its headers would hold a connection
    /// forever) and a cap on open connections (past it, new ones wait in the kernel's
    /// backlog instead of costing memory here).
    #[expect(
        clippy::too_many_lines,
        reason = "the accept loop, its connection cap and eviction, and the drain on shutdown share the same counters and must be read together to see the budgets"
    )]
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        use hyper_util::rt::{TokioIo, TokioTimer};
        use hyper_util::service::TowerToHyperService;
        use tower::ServiceExt as _;

        let mut background = reload::spawn_triggers(self.clone());
        if let Some(tls) = &self.inner.tls {
            background.push(Arc::clone(tls).spawn_watcher());
        }
        let router = self.router();
        let limits = self.inner.config.limits.clone();
        let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let open = Arc::new(OpenConnections::default());
        let (stop, stopped) = tokio::sync::watch::channel(());
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // At the cap, the oldest connection with no request in service (idle, or
            // still trickling its headers) makes room: slow clients cannot hold every
            // slot while a probe or a real client waits in the kernel's backlog.
            let permit = match Arc::clone(&connections).try_acquire_owned() {
                Ok(permit) => Ok(permit),
                Err(_) => {
                    if open.evict_oldest_idle() {
                        self.inner.metrics.connection_evicted();
                    }
                    tokio::select! {
                        permit = Arc::clone(&connections).acquire_owned() => permit,
                        () = &mut shutdown => break,
                    }
                }
            };
            let Ok(permit) = permit else { break };
            let _ = stream.set_nodelay(true);
            let (id, activity, close) = open.register();
            let counted = Arc::clone(&open);
            let service = TowerToHyperService::new(
                router
                    .clone()
                    .map_request(|req: axum::http::Request<hyper::body::Incoming>| {
                        req.map(axum::body::Body::new)
                    })
                    .map_future(move |fut| {
                        let guard = InService::enter(&activity, &counted);
                        async move {
                            let response = fut.await;
                            drop(guard);
                            response
                        }
                    }),
            );
            let mut stopped = stopped.clone();
            let header_timeout = limits.header_read_timeout;
            let open = Arc::clone(&open);
            let tls = self
                .inner
                .tls
                .as_ref()
                .map(|t| (t.acceptor(), t.handshake_timeout()));
            tasks.spawn(async move {
                let _permit = permit;
                let mut http1 = hyper::server::conn::http1::Builder::new();
                http1
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout);
                // Drive one connection until it ends, the server drains or it is evicted.
                macro_rules! drive {
                    ($conn:expr) => {{
                        let conn = $conn;
                        tokio::pin!(conn);
                        tokio::select! {
                            result = conn.as_mut() => result.map_err(ConnectionError::Http),
                            _ = stopped.changed() => {
                                conn.as_mut().graceful_shutdown();
                                conn.await.map_err(ConnectionError::Http)
                            }
                            // Evicted while idle: dropping it closes the socket.
                            () = close.notified() => Ok(()),
                        }
                    }};
                }
                let result = match tls {
                    None => drive!(http1.serve_connection(TokioIo::new(stream), service)),
                    Some((acceptor, budget)) => {
                        // The handshake is bounded: a client that connects and says
                        // nothing is dropped, and an evicted one goes at once.
                        let handshake = tokio::select! {
                            done = tokio::time::timeout(budget, acceptor.accept(stream)) => done,
                            () = close.notified() => Ok(Err(std::io::Error::other("evicted"))),
                        };
                        match handshake {
                            Err(_) => Err(ConnectionError::HandshakeTimeout(budget)),
                            Ok(Err(e)) => Err(ConnectionError::Handshake(e)),
                            Ok(Ok(stream)) => {
                                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                                    let mut http2 = hyper::server::conn::http2::Builder::new(
                                        hyper_util::rt::TokioExecutor::new(),
                                    );
                                    http2.timer(TokioTimer::new());
                                    drive!(http2.serve_connection(TokioIo::new(stream), service))
                                } else {
                                    drive!(http1.serve_connection(TokioIo::new(stream), service))
                                }
                            }
                        }
                    }
                };
                open.remove(id);
                if let Err(e) = result {
                    tracing::debug!(error = %ErrorChain(&e), "connection ended with an error");
                }
            });
            // Reap finished connections so the set stays as small as the open ones.
            while tasks.try_join_next().is_some() {}
        }
        drop(listener);
        self.begin_drain();
        tracing::info!(
            connections = tasks.len(),
            "shutting down: draining in-flight requests"
        );
        let _ = stop.send(());
        while tasks.join_next().await.is_some() {}
        for task in background {
            task.abort();
        }
        Ok(())
    }

    /// Build a new generation from the same config and swap it in; on failure the old one
    /// keeps serving, and the failure is logged, counted and shown in `/health`.
    pub async fn reload(&self) -> Result<(), ServerError> {
        reload::reload(self).await
    }
}

/// Bounded concurrency for CPU-bound work: `workers` evaluations at once on blocking
/// threads, `admitted` caps workers plus queue; past it the sidecar answers 503.
struct Gate {
    admitted: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    capacity: usize,
    timeout: Duration,
}

impl Gate {
    fn new(limits: &ServerLimits) -> Self {
        let workers = limits.max_concurrent_evaluations.max(1);
        let capacity = workers + limits.max_queued_evaluations;
        Self {
            admitted: Arc::new(Semaphore::new(capacity)),
            workers: Arc::new(Semaphore::new(workers)),
            capacity,
            timeout: limits.evaluation_timeout,
        }
    }

    /// Run `work` on a blocking thread once a worker is free; 503 when the queue is full
    /// or the budget runs out. A timed-out evaluation keeps its worker until it ends, so
    /// the limit stays true even when callers give up.
    async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let _admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded {
                capacity: self.capacity,
            })?;
        let worker = match tokio::time::timeout_at(
            deadline,
            Arc::clone(&self.workers).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(ApiError::Internal(errors::Internal::PoolClosed)),
            Err(_elapsed) => {
                return Err(ApiError::EvaluationTimeout {
                    budget: self.timeout,
                })
            }
        };
        let task = tokio::task::spawn_blocking(move || {
            let _worker = worker;
            work()
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(join)) => Err(ApiError::Internal(errors::Internal::Task(join))),
            Err(_elapsed) => Err(ApiError::EvaluationTimeout {
                budget: self.timeout,
            }),
        }
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

    fn gate(workers: usize, queued: usize) -> Gate {
        Gate::new(&ServerLimits {
            max_concurrent_evaluations: workers,
            max_queued_evaluations: queued,
            ..ServerLimits::default()
        })
    }

    #[tokio::test]
    async fn a_full_gate_sheds_load_with_overloaded() {
        let gate = Arc::new(gate(1, 0));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let busy = Arc::clone(&gate);
        let first = tokio::spawn(async move {
            busy.run(move || {
                let _ = started.send(());
                let _ = wait.recv();
                1
            })
            .await
        });
        running.await.unwrap();
        let second = gate.run(|| 2).await;
        assert!(matches!(second, Err(ApiError::Overloaded { capacity: 1 })));
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        // Capacity is back once the first evaluation is done.
        assert_eq!(gate.run(|| 3).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_queued_request_waits_for_a_worker() {
        let gate = Arc::new(gate(1, 1));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let busy = Arc::clone(&gate);
        let first = tokio::spawn(async move {
            busy.run(move || {
                let _ = started.send(());
                let _ = wait.recv();
                1
            })
            .await
        });
        running.await.unwrap();
        let queued = Arc::clone(&gate);
        let second = tokio::spawn(async move { queued.run(|| 2).await });
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(second.await.unwrap().unwrap(), 2);
    }

    #[tokio::test]
    async fn an_evaluation_over_budget_is_a_timeout_and_keeps_its_worker() {
        let gate = Gate::new(&ServerLimits {
            max_concurrent_evaluations: 1,
            max_queued_evaluations: 1,
            evaluation_timeout: Duration::from_millis(20),
            ..ServerLimits::default()
        });
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slow = gate
            .run(move || {
                let _ = wait.recv();
            })
            .await;
        assert!(matches!(slow, Err(ApiError::EvaluationTimeout { .. })));
        // The abandoned evaluation still holds the only worker: the next one times out
        // waiting rather than running beside it.
        let next = gate.run(|| 1).await;
        assert!(matches!(next, Err(ApiError::EvaluationTimeout { .. })));
        release.send(()).unwrap();
    }

    #[test]
    fn fixed_clock_is_fixed() {
        let t = crate::input::parse_time("2026-11-26T18:00:00Z").unwrap();
        assert_eq!(DecisionClock::Fixed(t).now(), t);
    }
}
