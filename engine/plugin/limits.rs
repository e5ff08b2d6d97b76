//! The budgets a plugin check runs under, as named constants with their reasons; never enforces
//! anything itself (the host does).

use std::time::Duration;

use serde::Serialize;

/// Default wall-time limit of one check.
///
/// A check reads one request of a few KB and should take microseconds (the shipped
/// plugins take 10 to 20 µs per call here with a 1 KB request). 100 ms is thousands of
/// times that, and still keeps a decision interactive when a plugin hangs.
pub const DEFAULT_WALL_TIME: Duration = Duration::from_millis(100);

/// Highest wall-time limit a manifest may ask for (`limits.wall_ms`).
///
/// A gate sits in a deploy pipeline: a check that needs more than 10 s belongs in a
/// pipeline step that produces an attestation, not in the gate.
pub const MAX_WALL_TIME: Duration = Duration::from_secs(10);

/// Default cap on a plugin's linear memory.
///
/// Enough for a plugin that parses the whole input into a DOM (typically 5 to 10x the
/// input) with the input at its cap; small enough that a thread pool of checks at the
/// cap stays well inside a small container.
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;

/// Highest memory cap a manifest may ask for (`limits.memory_mb`).
///
/// Also the pooling allocator's per-slot maximum: every slot reserves address space
/// for it, so it must stay a fixed ceiling rather than grow with manifests.
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Default cap on the result a plugin returns.
///
/// A result is a verdict, a few violations and some facts: kilobytes. 1 MiB leaves
/// room for a plugin that reports many findings while bounding the host's JSON parse.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Highest result cap a manifest may ask for (`limits.output_kb`).
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// Default cap on the input handed to a plugin.
///
/// The input is the request (itself size-capped when parsed) plus the verified
/// attestations' decoded predicates plus the plugin's config; SBOM or scan predicates
/// can be a few MB. Past the cap the check fails as `plugin.memory_limit` rather than
/// making every plugin pay to copy it.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 8 << 20;

/// Highest input cap a manifest may ask for (`limits.input_kb`).
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// Interval of the epoch ticker that enforces wall-time limits.
///
/// A deadline is enforced to within one tick. 5 ms makes a 100 ms budget accurate to
/// 5 % at 200 wake-ups a second of a thread that does nothing else.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(5);

/// Most wasm stack a check may use before it traps with `stack_overflow`.
///
/// wasmtime's default; checks run on the caller's thread, and every thread we run
/// them on (main, rayon, tokio blocking) has at least 2 MiB of native stack.
pub const MAX_WASM_STACK_BYTES: usize = 512 << 10;

/// Most elements a plugin's function table may hold.
///
/// Tables hold function references for indirect calls; C plugins need tens. The cap
/// bounds the host memory a table can claim outside the linear-memory cap.
pub const MAX_TABLE_ELEMENTS: usize = 10_000;

/// Largest module file the host will read.
///
/// The shipped plugins are 1 to 10 KB; a plugin that embeds a vulnerability database
/// might be a few MB. Anything past 32 MiB is a mistake or an attack on load time.
pub const MAX_MODULE_BYTES: u64 = 32 << 20;

/// Default number of sandboxes that may be live at once (pooling allocator slots).
///
/// A check holds one slot while it runs; checks run on the caller's thread, so this
/// bounds concurrent checks across batch and server threads. Each slot reserves
/// address space (not memory) for [`MAX_MEMORY_BYTES`] plus guards: 128 slots is
/// about 0.5 TiB of the 128 TiB a 64-bit process has.
pub const DEFAULT_MAX_INSTANCES: u32 = 128;

/// Linear memory kept resident (reset with `memset` instead of `madvise`) per pool slot.
///
/// wasmtime finds the pages a check dirtied (Linux `PAGEMAP_SCAN`) and resets just those
/// with `memset`, up to this much; beyond it, `madvise` and page faults on the next use.
/// The shipped plugins dirty a few pages, so every ordinary check stays on the fast
/// path: a trivial plugin costs 3.6 µs per call here with it, 9 to 12 µs without.
pub const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// The budgets of one plugin: the host defaults, overridden by the manifest's `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginLimits {
    /// Wall-time limit of one check, enforced by epoch interruption.
    #[serde(serialize_with = "ser_millis")]
    pub wall_time: Duration,
    /// Cap on linear memory, in bytes.
    pub memory_bytes: usize,
    /// Fuel budget of one check (wasm instructions, roughly); `None` = no fuel metering.
    pub fuel: Option<u64>,
    /// Cap on the result's length, in bytes.
    pub max_output_bytes: usize,
    /// Cap on the input's length, in bytes.
    pub max_input_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            wall_time: DEFAULT_WALL_TIME,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            fuel: None,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

fn ser_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}
