//! Hot reload: on SIGHUP or when the watched files change, build a complete new
//! generation and swap it in atomically; a generation that fails to load never replaces
//! the one serving.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::JoinHandle;

use super::{Loaded, ReloadFailure, Server, ServerError};
use crate::error_chain::ErrorChain;

/// Most directory entries the watcher stats per poll. A bundle is dozens of files; this
/// only bounds the cost if someone points `--policies` at a huge tree.
const MAX_WATCHED_ENTRIES: usize = 10_000;

/// Deepest directory level the watcher descends into (a bundle is a few levels deep).
const MAX_WATCH_DEPTH: usize = 8;

/// Build a new generation and swap it in; see [`Server::reload`].
pub(super) async fn reload(server: &Server) -> Result<(), ServerError> {
    let _one_at_a_time = server.inner.reloading.lock().await;
    let config = server.inner.config.clone();
    let built = tokio::task::spawn_blocking(move || Loaded::build(&config))
        .await
        .map_err(ServerError::Task)
        .and_then(|r| r);
    match built {
        Ok(loaded) => {
            let digest = loaded.engine.bundle().digest().hex();
            server
                .inner
                .metrics
                .set_revision(loaded.engine.bundle().revision());
            let decisions: usize = loaded
                .admission_environments
                .values()
                .map(|e| e.index.len())
                .sum();
            server.inner.loaded.store(Arc::new(loaded));
            server.inner.reload_failure.store(None);
            server.inner.metrics.reload(true);
            server.inner.metrics.set_bundle(&digest);
            tracing::info!(bundle = %digest, decisions, "reloaded");
            Ok(())
        }
        Err(e) => {
            server.inner.metrics.reload(false);
            server
                .inner
                .reload_failure
                .store(Some(Arc::new(ReloadFailure {
                    at: crate::input::format_time(time::OffsetDateTime::now_utc()),
                    reason: ErrorChain(&e).to_string(),
                })));
            tracing::error!(error = %ErrorChain(&e), serving = %server.loaded().engine.bundle().digest().hex(), "reload failed; the previous bundle keeps serving");
            Err(e)
        }
    }
}

/// Start the reload triggers: SIGHUP (unix) and the file watcher when configured.
pub(super) fn spawn_triggers(server: Server) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    #[cfg(unix)]
    {
        let s = server.clone();
        tasks.push(tokio::spawn(async move { on_sighup(s).await }));
    }
    if let (Some(source), Some(state)) = (
        server.inner.config.bundle_source.clone(),
        server.inner.bundle_poll.clone(),
    ) {
        tasks.push(tokio::spawn(poll_bundles(server.clone(), source, state)));
    }
    if let Some(every) = server.inner.config.watch_interval {
        tasks.push(tokio::spawn(watch(server, every)));
    }
    tasks
}

/// Ask the bundle server on its interval (backing off after failures); a verified new
/// bundle is swapped in at once, anything else changes nothing.
async fn poll_bundles(
    server: Server,
    source: super::bundle_poll::BundleSource,
    state: Arc<super::bundle_poll::PollState>,
) {
    let mut failures = 0;
    loop {
        tokio::time::sleep(super::bundle_poll::next_wait(source.interval, failures)).await;
        let (s, engine) = (source.clone(), server.inner.config.engine.clone());
        let outcome = tokio::task::spawn_blocking(move || s.poll(&engine))
            .await
            .unwrap_or_else(|e| Err(super::bundle_poll::PollError::Task(e)));
        failures = state.record(&outcome, super::bundle_poll::cached_etag(&source));
        match outcome {
            Ok(super::bundle_poll::Polled::Updated) => {
                tracing::info!(url = %source.url, "new bundle from the bundle server: reloading");
                let _ = reload(&server).await;
            }
            Ok(super::bundle_poll::Polled::Unchanged) => {}
            Err(e) => {
                server.inner.metrics.reload(false);
                tracing::warn!(error = %ErrorChain(&e), failures, "bundle poll failed; the last good bundle keeps serving");
            }
        }
    }
}

#[cfg(unix)]
async fn on_sighup(server: Server) {
    use tokio::signal::unix::{signal, SignalKind};
    let early = server
        .inner
        .hangups
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let mut hangups = match early.map_or_else(|| signal(SignalKind::hangup()), Ok) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by signal is off");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        // The outcome is logged, counted and shown in /health by `reload`.
        let _ = reload(&server).await;
    }
}

/// Poll the watched paths and reload when their fingerprint changes. A failed reload is
/// not retried until the files change again.
async fn watch(server: Server, every: std::time::Duration) {
    let paths = watched_paths(&server);
    let mut last = fingerprint_blocking(paths.clone()).await;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let now = fingerprint_blocking(paths.clone()).await;
        if now != last {
            last = now;
            tracing::info!("watched files changed: reloading");
            let _ = reload(&server).await;
        }
    }
}

async fn fingerprint_blocking(paths: Vec<PathBuf>) -> u64 {
    tokio::task::spawn_blocking(move || fingerprint(&paths))
        .await
        .unwrap_or_default()
}

/// The bundle directory, the trust file, the signing key, the decision directory and the
/// admission config.
pub(super) fn watched_paths(server: &Server) -> Vec<PathBuf> {
    let config = &server.inner.config;
    let mut paths = vec![config.engine.policies.clone()];
    if let Some(trust) = config
        .engine
        .trust
        .clone()
        .or_else(|| server.loaded().engine.trust_path().map(Path::to_path_buf))
    {
        paths.push(trust);
    }
    if let Some(key) = &config.engine.signing_key {
        paths.push(key.clone());
    }
    if let Some(dir) = &config.decisions {
        paths.push(dir.clone());
    }
    if let Some(file) = &config.admission_config {
        paths.push(file.clone());
    }
    paths
}

/// A hash of every path, size and modification time under `paths` (symlinks followed,
/// so a ConfigMap's atomic `..data` swap shows up).
pub(super) fn fingerprint(paths: &[PathBuf]) -> u64 {
    let mut entries: Vec<(PathBuf, u64, Option<SystemTime>)> = Vec::new();
    for path in paths {
        collect(path, 0, &mut entries);
    }
    entries.sort();
    let mut hasher = DefaultHasher::new();
    entries.hash(&mut hasher);
    hasher.finish()
}

fn collect(path: &Path, depth: usize, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
    if out.len() >= MAX_WATCHED_ENTRIES {
        return;
    }
    let Ok(meta) = std::fs::metadata(path) else {
        // Gone (or unreadable): that is a change too, recorded as absent.
        out.push((path.to_path_buf(), u64::MAX, None));
        return;
    };
    out.push((path.to_path_buf(), meta.len(), meta.modified().ok()));
    if meta.is_dir() && depth < MAX_WATCH_DEPTH {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                collect(&entry.path(), depth + 1, out);
            }
        }
    }
}
