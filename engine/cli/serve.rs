//! `promo-policy serve`: run the HTTP sidecar until SIGTERM or Ctrl-C, then drain; the
//! routes and their rules live in `promo_policy::server`, not here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use promo_policy::error_chain::ErrorChain;
use promo_policy::input::parse_time;
use promo_policy::server::bundle_poll::BundleSource;
use promo_policy::server::decision_log::{DecisionLogSetup, LogConfig, Overflow};
use promo_policy::server::{
    DecisionClock, Server, ServerConfig, ServerLimits, TlsConfig, DEFAULT_ADDR,
    MAX_QUEUED_EVALUATIONS, TLS_HANDSHAKE_TIMEOUT, TLS_RELOAD_INTERVAL,
};

use super::{CommonArgs, Exit};

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; a pod's sidecar needs no more).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADDR)]
    addr: SocketAddr,
    /// The environment admission requires decisions into, where the admission config
    /// names none for the namespace (in its rule or at its top level). It must be an
    /// environment of the bundle (exit 2 otherwise).
    #[arg(long, value_name = "NAME")]
    environment: Option<String>,
    /// A directory of signed decision envelopes (`*.json`) that admission may rely on.
    #[arg(long, value_name = "DIR")]
    decisions: Option<PathBuf>,
    /// Evaluations run at once [default: the number of CPUs].
    #[arg(long, value_name = "N")]
    max_concurrency: Option<usize>,
    /// Requests that may wait for an evaluation before the sidecar answers 503.
    #[arg(long, value_name = "N", default_value_t = MAX_QUEUED_EVALUATIONS)]
    max_queue: usize,
    /// Check the bundle, trust file, key and decision directory for changes every SECS
    /// seconds and reload (0: reload on SIGHUP only).
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    watch_interval: u64,
    /// Admission rollout and rules (YAML or JSON): the environment and mode per namespace
    /// (`enforce`, `warn`, `dry-run`), where break-glass is honoured, the decision signer
    /// threshold and the allowed policy bundle digests. Checked at startup (a bad file,
    /// or an environment the bundle does not configure, exits 2) and reloaded with the
    /// bundle (a bad edit keeps the last good config and decision indexes) [default:
    /// `--environment` everywhere, enforce, no break-glass].
    #[arg(long, value_name = "FILE")]
    admission_config: Option<PathBuf>,
    /// Admission refuses a decision made longer ago than this (`30d`, `12h`, `90m`):
    /// an old allow should not admit an image forever [default: any age].
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    max_decision_age: Option<Duration>,
    /// Answer ad-hoc Rego queries on `/v1/query` (off by default: anyone who reaches the
    /// port could make the sidecar compute; each query is still bounded by the policy
    /// time limit and the evaluation queue).
    #[arg(long)]
    allow_query: bool,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1, ALPN) with this PEM certificate chain, leaf
    /// first; re-read when it changes (cert-manager rotation), no restart needed.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require every client to present a certificate issued by one of these PEM CAs.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Re-read the TLS files every SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = TLS_RELOAD_INTERVAL.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    tls_reload_interval: u64,
    /// Drop a connection that has not finished its TLS handshake within SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = TLS_HANDSHAKE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    tls_handshake_timeout: u64,
    /// Fixed evaluation time for every decision (tests and demos only).
    #[arg(long, value_name = "TIME", hide = true)]
    at: Option<String>,
    #[command(flatten)]
    audit: super::audit::AuditArgs,
    #[command(flatten)]
    decision_log: DecisionLogArgs,
    #[command(flatten)]
    bundle: BundleArgs,
    #[command(flatten)]
    common: CommonArgs,
}

/// Bundles pulled from a bundle server.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Decide from the OPA bundle archive at this URL (http or https), polled for new
    /// revisions; each is verified against `--trust` before it serves. Replaces
    /// `--policies`.
    #[arg(long, value_name = "URL", requires = "bundle_cache")]
    bundle_url: Option<String>,
    /// Where the last good bundle is kept, so a restart without the server still serves.
    #[arg(long, value_name = "DIR", requires = "bundle_url")]
    bundle_cache: Option<PathBuf>,
    /// How often to ask the bundle server (`60s`, `5m`); failures back off to 10 minutes.
    #[arg(long, value_name = "DURATION", value_parser = parse_age, default_value = "60s", requires = "bundle_url")]
    bundle_poll_interval: Duration,
    /// Longest one bundle download may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_age, default_value = "30s", requires = "bundle_url")]
    bundle_timeout: Duration,
}

impl BundleArgs {
    /// The bundle source, after a first poll: the server's bundle when it answers with
    /// one that verifies, else the cached one (with a warning), else an error.
    fn source(
        &self,
        engine: &mut promo_policy::EngineConfig,
    ) -> anyhow::Result<Option<BundleSource>> {
        let (Some(url), Some(cache)) = (&self.bundle_url, &self.bundle_cache) else {
            return Ok(None);
        };
        let parsed =
            url::Url::parse(url).with_context(|| format!("--bundle-url `{url}` is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!("--bundle-url `{url}`: only http and https are supported");
        }
        let source = BundleSource {
            url: url.clone(),
            cache_dir: cache.clone(),
            interval: self.bundle_poll_interval,
            timeout: self.bundle_timeout,
        };
        engine.policies = source.cached();
        match source.poll(engine) {
            Ok(_) => {}
            Err(e) if source.cached().is_file() => eprintln!(
                "promo-policy: warning: {}; serving the cached bundle `{}`",
                ErrorChain(&e),
                source.cached().display()
            ),
            Err(e) => anyhow::bail!(
                "no bundle to serve: {}, and nothing is cached in `{}`",
                ErrorChain(&e),
                cache.display()
            ),
        }
        Ok(Some(source))
    }
}

/// Decision logs shipped to a collector (OPA's decision-log upload format).
#[derive(Debug, clap::Args)]
pub struct DecisionLogArgs {
    /// POST every decision, batched and gzipped, as OPA decision-log events (with the
    /// signed envelope) to this URL.
    #[arg(long, value_name = "URL")]
    decision_log_url: Option<String>,
    /// The most events held in memory while the collector is slow or down.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10_000,
        requires = "decision_log_url"
    )]
    decision_log_buffer: usize,
    /// What a full buffer does: drop the oldest event (counted in
    /// `promo_decision_log_events{result="dropped"}`) or make decisions wait (up to 5 s).
    #[arg(
        long,
        value_enum,
        default_value = "drop-oldest",
        requires = "decision_log_url"
    )]
    decision_log_overflow: Overflow,
    /// Mask this JSON pointer in the shipped `input` (repeatable; `--audit-mask` applies
    /// too).
    #[arg(long, value_name = "POINTER", requires = "decision_log_url")]
    decision_log_mask: Vec<String>,
    /// Ship events without the request (`input`).
    #[arg(long, requires = "decision_log_url")]
    decision_log_no_input: bool,
}

impl DecisionLogArgs {
    fn setup(
        &self,
        audit_mask: &[String],
        environment: Option<&str>,
    ) -> anyhow::Result<Option<DecisionLogSetup>> {
        let Some(url) = &self.decision_log_url else {
            return Ok(None);
        };
        let parsed = url::Url::parse(url)
            .with_context(|| format!("--decision-log-url `{url}` is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!("--decision-log-url `{url}`: only http and https are supported");
        }
        let mut mask = audit_mask.to_vec();
        mask.extend(self.decision_log_mask.iter().cloned());
        let input = promo_policy::audit::RecordOptions::new(mask, !self.decision_log_no_input)?;
        let log = LogConfig {
            buffer_events: self.decision_log_buffer.max(1),
            overflow: self.decision_log_overflow,
            ..LogConfig::new(url.clone())
        };
        let labels = serde_json::json!({
            "id": uuid::Uuid::now_v7().to_string(),
            "app": "promo-policy",
            "version": env!("CARGO_PKG_VERSION"),
            "environment": environment,
        });
        Ok(Some(DecisionLogSetup { log, input, labels }))
    }
}

/// `30d`, `12h`, `90m` or `45s`: a positive whole number and a unit.
fn parse_age(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration like 30d, 12h, 90m or 45s");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    }
    .filter(|&s| s > 0)
    .ok_or_else(bad)?;
    Ok(Duration::from_secs(secs))
}

pub fn run(args: ServeArgs) -> anyhow::Result<Exit> {
    let config = server_config(&args)?;
    let server = Server::new(config).with_context(|| {
        format!(
            "cannot start the sidecar with the bundle `{}`",
            args.common.policies.display()
        )
    })?;
    let loaded = server.loaded();
    let environments = startup_warnings(&loaded, &args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on `{}`", args.addr))?;
        let bound = listener.local_addr()?;
        let shutdown = shutdown_signal();
        // SIGHUP's handler too, before the line: a SIGHUP right after it reloads rather
        // than killing the process (SIGHUP's default action until a handler exists).
        #[cfg(unix)]
        if let Err(e) = server.listen_for_reload_signal() {
            eprintln!(
                "promo-policy: warning: cannot listen for SIGHUP ({e}); reload by signal is off"
            );
        }
        // One line on stderr that scripts (and tests binding port 0) can read.
        let scheme = if args.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        eprintln!(
            "promo-policy: serving on {scheme}://{bound} (bundle sha256:{}, {environments})",
            &loaded.engine.bundle().digest().hex()[..12],
        );
        drop(loaded);
        let flusher = server.clone();
        let served = server
            .serve(listener, shutdown)
            .await
            .context("the sidecar stopped with an error");
        let lost = tokio::task::spawn_blocking(move || {
            flusher.flush_decision_log(Duration::from_secs(10))
        })
        .await
        .unwrap_or(0);
        if lost > 0 {
            eprintln!(
                "promo-policy: warning: {lost} decision-log events could not be sent before exit"
            );
        }
        served
    })?;
    eprintln!("promo-policy: stopped");
    Ok(Exit::Ok)
}

/// The sidecar's configuration from the command line.
fn server_config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let clock = match &args.at {
        Some(at) => DecisionClock::Fixed(parse_time(at)?),
        None => DecisionClock::System,
    };
    let mut limits = ServerLimits {
        max_queued_evaluations: args.max_queue,
        ..ServerLimits::default()
    };
    if let Some(n) = args.max_concurrency {
        limits.max_concurrent_evaluations = n.max(1);
    }
    let mut engine = args.common.engine_config();
    let bundle_source = args.bundle.source(&mut engine)?;
    Ok(ServerConfig {
        engine,
        environment: args.environment.clone(),
        decisions: args.decisions.clone(),
        clock,
        limits,
        watch_interval: (args.watch_interval > 0).then(|| Duration::from_secs(args.watch_interval)),
        audit: args.audit.server_config()?,
        max_decision_age: args.max_decision_age,
        allow_query: args.allow_query,
        decision_log: args
            .decision_log
            .setup(&args.audit.audit_mask, args.environment.as_deref())?,
        bundle_source,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                handshake_timeout: Duration::from_secs(args.tls_handshake_timeout),
                reload_interval: Duration::from_secs(args.tls_reload_interval),
                ..TlsConfig::new(cert.clone(), key.clone(), args.tls_client_ca.clone())
            }),
            _ => None,
        },
        admission_config: args.admission_config.clone(),
    })
}

/// Warn on stderr about what the operator should know at start (the dev key, the audit
/// log, admission without a default environment); the environments, for the start line.
fn startup_warnings(loaded: &promo_policy::server::Loaded, args: &ServeArgs) -> String {
    if loaded.engine.signer().is_dev_key() {
        eprintln!(
            "promo-policy: warning: decisions are signed with the shipped DEV key (keyid {}); they prove nothing: pass --key for real use",
            &loaded.engine.signer().keyid()[..16]
        );
    }
    if let Some(path) = &args.audit.audit {
        eprintln!(
            "promo-policy: recording every decision in the audit log `{}`",
            path.display()
        );
    }
    let environments: Vec<String> = loaded
        .admission
        .environments()
        .into_iter()
        .map(str::to_string)
        .collect();
    if loaded.admission.environment.is_none() {
        let refused = if environments.is_empty() {
            "every image"
        } else {
            "every image in a namespace whose admission config rule names no environment"
        };
        eprintln!(
            "promo-policy: warning: no default environment (--environment, or `environment` in the admission config): /v1/admission refuses {refused}"
        );
    }
    if environments.is_empty() {
        "environment <none>".to_string()
    } else {
        format!("environments {}", environments.join(", "))
    }
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C. The SIGTERM handler is
/// installed by this call, not when the future is first polled: call it before saying
/// where the sidecar serves, so a SIGTERM right after that line still drains and exits 0
/// rather than killing the process. Must run inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::terminate()).ok()
    };
    async move {
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
    }
}
