//! Idle evaluators of one engine, lent out for one decision at a time and given back, so
//! batch, diff and the sidecar reuse warm evaluators; it never lends one out twice.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use crate::evaluator::{Engine, Evaluator};

/// The evaluation panicked (a bug); the evaluator it held was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the engine panicked on this input (a bug: see stderr and please report it)")]
pub struct Panicked;

/// A pool of evaluators of one [`Engine`]. A reused evaluator skips the per-clone
/// warm-up (about a fifth of a decision's cost with the default bundle); at most one
/// evaluator per running evaluation exists, so the pool stays as small as the number
/// of threads using it.
pub struct EvaluatorPool {
    engine: Arc<Engine>,
    idle: Mutex<Vec<Evaluator>>,
    max_idle: usize,
}

impl std::fmt::Debug for EvaluatorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvaluatorPool")
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

impl EvaluatorPool {
    /// A pool for `engine` keeping at most `max_idle` evaluators between uses.
    pub fn new(engine: Arc<Engine>, max_idle: usize) -> Self {
        Self {
            engine,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// The engine the evaluators come from.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Run `work` with an evaluator taken from the pool (or made) and given back after.
    /// Should `work` panic, the evaluator is not given back: it may be mid-update.
    pub fn with<T>(&self, work: impl FnOnce(&mut Evaluator) -> T) -> T {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut evaluator = pooled.unwrap_or_else(|| self.engine.evaluator());
        let out = work(&mut evaluator);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(evaluator);
            }
        }
        out
    }

    /// [`Self::with`], with a panic in `work` caught and returned as [`Panicked`], so one
    /// input that trips a bug fails alone.
    pub fn guarded<T>(&self, work: impl FnOnce(&mut Evaluator) -> T) -> Result<T, Panicked> {
        std::panic::catch_unwind(AssertUnwindSafe(|| self.with(work))).map_err(|_| Panicked)
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
    use crate::EngineConfig;

    #[test]
    fn evaluators_are_reused_and_a_panic_drops_one() {
        let engine = Engine::load(&EngineConfig::with_policies("policies")).unwrap();
        let pool = EvaluatorPool::new(engine, 1);
        pool.with(|_| ());
        assert_eq!(pool.idle.lock().unwrap().len(), 1);
        // Nested use (diff holds two at once) makes a second; only one is kept.
        pool.with(|_| pool.with(|_| ()));
        assert_eq!(pool.idle.lock().unwrap().len(), 1);
        let r: Result<(), Panicked> = pool.guarded(|_| panic!("boom"));
        assert_eq!(r, Err(Panicked));
        assert_eq!(pool.idle.lock().unwrap().len(), 0);
    }
}
