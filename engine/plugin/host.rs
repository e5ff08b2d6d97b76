//! The plugin host: one shared wasmtime `Engine` with compiled modules, and a fresh capped
//! `Store` + instance per check; never lets a guest value index host memory unchecked, and
//! never turns a failure into a pass.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::digest::Sha256;
use wasmtime::{
    Config, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap,
};

use super::abi::{self, Exports, InputParts, ABI_VERSION};
use super::cache::ModuleCache;
use super::limits::{
    PluginLimits, DEFAULT_EPOCH_TICK, DEFAULT_MAX_INSTANCES, KEEP_RESIDENT_BYTES, MAX_MEMORY_BYTES,
    MAX_MODULE_BYTES, MAX_TABLE_ELEMENTS, MAX_WASM_STACK_BYTES,
};
use super::manifest::{Manifest, Mode, ANY_ENVIRONMENT, MANIFEST_FILE};
use super::{FailureKind, PluginError, PluginFailure, PluginOutcome, PluginOutput};

/// Shortest epoch tick accepted from [`HostOptions`].
const MIN_EPOCH_TICK: Duration = Duration::from_millis(1);

/// How the host is set up; `Default` gives the documented budgets and no disk cache.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Where compiled modules are cached (`None` = compile on every load).
    pub cache_dir: Option<PathBuf>,
    /// Limits for plugins whose manifest does not override them.
    pub defaults: PluginLimits,
    /// Epoch ticker interval: wall-time limits are enforced to within one tick.
    pub epoch_tick: Duration,
    /// Sandboxes that may be live at once (pooling allocator slots); a check beyond
    /// this fails closed as `plugin.load_failed`.
    pub max_instances: u32,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            cache_dir: None,
            defaults: PluginLimits::default(),
            epoch_tick: DEFAULT_EPOCH_TICK,
            max_instances: DEFAULT_MAX_INSTANCES,
        }
    }
}

/// What the host knows about one plugin, for listings and the decision record.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// The plugin name.
    pub name: String,
    /// The manifest's description.
    pub description: String,
    /// SHA-256 of the module file's bytes; `None` when the file could not be read.
    pub digest: Option<Sha256>,
    /// The manifest file.
    pub manifest: PathBuf,
    /// The module file.
    pub module: PathBuf,
    /// Target environments it runs for (`["*"]` = all).
    pub environments: Vec<String>,
    /// Required or advisory.
    pub mode: Mode,
    /// Environments where an advisory plugin counts as required.
    pub required_in: Vec<String>,
    /// The effective limits.
    pub limits: PluginLimits,
    /// Why the module could not be made ready; every check then fails with it.
    pub load_error: Option<PluginFailure>,
    /// Whether the compiled module came from the disk cache.
    pub from_cache: bool,
}

impl PluginInfo {
    /// Whether the plugin runs when promoting to `environment`.
    pub fn runs_for(&self, environment: &str) -> bool {
        self.environments
            .iter()
            .any(|e| e == ANY_ENVIRONMENT || e == environment)
    }

    /// Whether a failure or `ok: false` denies (rather than warns) in `environment`.
    pub fn required_for(&self, environment: &str) -> bool {
        match self.mode {
            Mode::Required => true,
            Mode::Advisory => self.required_in.iter().any(|e| e == environment),
        }
    }
}

/// Per-check store data: the limiter, which also records why it refused.
struct StoreState {
    limiter: MemoryLimiter,
}

/// Caps linear memory and tables. Refusing with an error (rather than letting
/// `memory.grow` return -1) stops the guest at once, and `hit` tells the cause apart
/// from any other error.
struct MemoryLimiter {
    memory_cap: usize,
    /// The size the guest asked for when it hit the cap.
    hit: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.hit = Some(desired);
            return Err(wasmtime::Error::msg(format!(
                "memory limit exceeded: {desired} bytes requested, cap is {} bytes",
                self.memory_cap
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::msg(format!(
                "table limit exceeded: {desired} elements requested, cap is {MAX_TABLE_ELEMENTS}"
            )));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }
    fn memories(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        1
    }
}

/// A plugin ready to run.
struct Ready {
    pre: InstancePre<StoreState>,
    exports: Exports,
    /// The `[config]` object, serialized once.
    config_json: Vec<u8>,
}

struct Loaded {
    info: PluginInfo,
    /// `None` when `info.load_error` is set.
    ready: Option<Ready>,
}

/// Increments the engine epoch every tick; stops when dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &Engine, tick: Duration) -> std::io::Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.weak();
        let thread = std::thread::Builder::new()
            .name("promo-plugin-epoch".into())
            .spawn(move || loop {
                match stopped.recv_timeout(tick) {
                    Err(mpsc::RecvTimeoutError::Timeout) => match engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => return,
                    },
                    // The sender was dropped (host dropped) or sent a stop.
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Loaded plugins and the wasmtime engine that runs them. `Send + Sync`: share one
/// per process (in an `Arc`) and call [`PluginHost::run`] from any thread.
pub struct PluginHost {
    // Field order matters for drop: stop the ticker before the engine goes.
    _ticker: Option<Ticker>,
    plugins: Vec<Loaded>,
    infos: Vec<PluginInfo>,
    engine: Engine,
    fuel: bool,
    epoch_tick: Duration,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.infos)
            .field("fuel", &self.fuel)
            .field("epoch_tick", &self.epoch_tick)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Loads every `<dir>/<name>/plugin.toml`, in name order. A missing `dir` means no
    /// plugins; subdirectories without a manifest are skipped (e.g. a shared `sdk/`).
    ///
    /// A manifest that cannot be read or validated is an `Err`. A module that cannot be
    /// read, compiled or does not follow the ABI loads as a failed plugin: every check
    /// for its environments then fails closed with `plugin.load_failed` or
    /// `plugin.abi_mismatch`.
    pub fn load(dir: &Path, options: &HostOptions) -> Result<PluginHost, PluginError> {
        let manifests = discover(dir)?;
        let fuel =
            manifests.iter().any(|m| m.limits.fuel.is_some()) || options.defaults.fuel.is_some();
        let engine = build_engine(options, fuel)?;
        let cache = options
            .cache_dir
            .as_deref()
            .map(|d| ModuleCache::new(d, &engine));

        let plugins: Vec<Loaded> = manifests
            .into_iter()
            .map(|m| prepare(&engine, cache.as_ref(), m, options))
            .collect();
        // A zero tick would make the ticker spin.
        let epoch_tick = options.epoch_tick.max(MIN_EPOCH_TICK);
        let ticker = if plugins.iter().any(|p| p.ready.is_some()) {
            Some(Ticker::start(&engine, epoch_tick).map_err(PluginError::Ticker)?)
        } else {
            None
        };
        let infos = plugins.iter().map(|p| p.info.clone()).collect();
        Ok(PluginHost {
            _ticker: ticker,
            plugins,
            infos,
            engine,
            fuel,
            epoch_tick,
        })
    }

    /// Every loaded plugin, failed ones included, in name order.
    pub fn plugins(&self) -> &[PluginInfo] {
        &self.infos
    }

    /// Whether fuel metering is on (some manifest or the defaults asked for fuel).
    pub fn fuel_enabled(&self) -> bool {
        self.fuel
    }

    /// Runs every plugin configured for `environment`, in name order, each in a fresh
    /// sandbox, and returns one outcome per plugin. Never panics on guest behaviour.
    pub fn run(
        &self,
        environment: &str,
        request: &serde_json::Value,
        verified: &serde_json::Value,
    ) -> Vec<PluginOutcome> {
        let mut selected = self
            .plugins
            .iter()
            .filter(|p| p.info.runs_for(environment))
            .peekable();
        if selected.peek().is_none() {
            return Vec::new();
        }
        let shared = SharedInput::new(environment, request, verified);
        selected
            .map(|p| self.outcome(p, environment, &shared))
            .collect()
    }

    /// Runs the plugin called `name` for `environment`, whether or not its manifest
    /// lists that environment; `None` when there is no such plugin. For `test` and benches.
    pub fn run_plugin(
        &self,
        name: &str,
        environment: &str,
        request: &serde_json::Value,
        verified: &serde_json::Value,
    ) -> Option<PluginOutcome> {
        let p = self.plugins.iter().find(|p| p.info.name == name)?;
        let shared = SharedInput::new(environment, request, verified);
        Some(self.outcome(p, environment, &shared))
    }

    fn outcome(&self, p: &Loaded, environment: &str, shared: &SharedInput) -> PluginOutcome {
        let result = match (&p.ready, &p.info.load_error) {
            (Some(ready), _) => self.call(&p.info, ready, shared),
            (None, Some(failure)) => Err(failure.clone()),
            // INVARIANT: prepare() sets exactly one of `ready` and `load_error`; fail
            // closed anyway rather than trusting it.
            (None, None) => Err(PluginFailure {
                kind: FailureKind::LoadFailed,
                message: format!("plugin `{}` is not loaded", p.info.name),
            }),
        };
        PluginOutcome {
            name: p.info.name.clone(),
            digest: p.info.digest,
            required: p.info.required_for(environment),
            result,
        }
    }

    /// Ticks to wait so that at least `wall` passes: the epoch may advance right after
    /// the deadline is set, so one tick is added.
    fn deadline_ticks(&self, wall: Duration) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        let ticks = wall.as_nanos().div_ceil(tick);
        u64::try_from(ticks)
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// One check in a fresh store and instance: the input cap, the store, the exports
    /// and the ABI version, the input written, the result read (each its own function).
    fn call(
        &self,
        info: &PluginInfo,
        ready: &Ready,
        shared: &SharedInput,
    ) -> Result<PluginOutput, PluginFailure> {
        let name = info.name.as_str();
        let limits = &info.limits;
        let input = InputParts {
            request: &shared.request,
            verified: &shared.verified,
            config: &ready.config_json,
            environment: &shared.environment,
        };
        let input_len = input.len();
        if input_len > limits.max_input_bytes {
            return Err(fail(
                FailureKind::MemoryLimit,
                format!(
                    "plugin `{name}` was not run: its input of {input_len} bytes exceeds the input cap of {} bytes",
                    limits.max_input_bytes
                ),
            ));
        }
        let mut store = self.new_store(info)?;
        let started = Instant::now();
        let why = |store: &Store<StoreState>, e: wasmtime::Error, stage: Stage| {
            classify(name, limits, store, e, stage, started.elapsed())
        };
        let instance = ready
            .pre
            .instantiate(&mut store)
            .map_err(|e| why(&store, e, Stage::Instantiate))?;
        let exports = GuestExports::resolve(name, &instance, &mut store, ready)?;
        if let Some(init) = &exports.initialize {
            init.call(&mut store, ())
                .map_err(|e| why(&store, e, Stage::Initialize))?;
        }
        let version = exports
            .abi_version
            .call(&mut store, ())
            .map_err(|e| why(&store, e, Stage::Call))?;
        if version != ABI_VERSION {
            return Err(fail(
                FailureKind::AbiMismatch,
                format!(
                    "plugin `{name}` speaks ABI version {version}, but this host speaks version {ABI_VERSION} (see plugins/ABI.md)"
                ),
            ));
        }
        // INVARIANT: input_len <= max_input_bytes <= MAX_INPUT_BYTES < 2^31.
        let len_i32 = i32::try_from(input_len).map_err(|_| {
            fail(
                FailureKind::MemoryLimit,
                format!("plugin `{name}`: input of {input_len} bytes is too large"),
            )
        })?;
        let in_ptr = exports
            .alloc
            .call(&mut store, len_i32)
            .map_err(|e| why(&store, e, Stage::Call))? as u32;
        write_input(name, &input, exports.memory.data_mut(&mut store), in_ptr)?;
        let packed = exports
            .check
            .call(&mut store, (in_ptr as i32, len_i32))
            .map_err(|e| why(&store, e, Stage::Call))?;
        read_output(name, limits, exports.memory.data(&store), packed)
    }

    /// A store with the plugin's memory cap, deadline and fuel.
    fn new_store(&self, info: &PluginInfo) -> Result<Store<StoreState>, PluginFailure> {
        let limits = &info.limits;
        let mut store = Store::new(
            &self.engine,
            StoreState {
                limiter: MemoryLimiter {
                    memory_cap: limits.memory_bytes,
                    hit: None,
                },
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks(limits.wall_time));
        if self.fuel {
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| {
                    fail(
                        FailureKind::LoadFailed,
                        format!("plugin `{}`: cannot set fuel: {e}", info.name),
                    )
                })?;
        }
        Ok(store)
    }
}

/// The ABI's exports of one instance, resolved and typed.
struct GuestExports {
    memory: wasmtime::Memory,
    alloc: wasmtime::TypedFunc<i32, i32>,
    check: wasmtime::TypedFunc<(i32, i32), i64>,
    abi_version: wasmtime::TypedFunc<(), i32>,
    initialize: Option<wasmtime::TypedFunc<(), ()>>,
}

impl GuestExports {
    /// Resolves the exports by index; check_module() proved their types, so a failure
    /// here means a host bug, reported as an ABI mismatch (fail closed).
    fn resolve(
        name: &str,
        instance: &wasmtime::Instance,
        store: &mut Store<StoreState>,
        ready: &Ready,
    ) -> Result<GuestExports, PluginFailure> {
        let abi_err = |what: &str| {
            fail(
                FailureKind::AbiMismatch,
                format!("plugin `{name}`: export `{what}` could not be resolved"),
            )
        };
        let memory = match instance.get_module_export(&mut *store, &ready.exports.memory) {
            Some(Extern::Memory(m)) => m,
            _ => return Err(abi_err(abi::EXPORT_MEMORY)),
        };
        let func =
            |store: &mut Store<StoreState>, e: &wasmtime::ModuleExport, what: &str| match instance
                .get_module_export(&mut *store, e)
            {
                Some(Extern::Func(f)) => Ok(f),
                _ => Err(abi_err(what)),
            };
        let alloc = func(store, &ready.exports.alloc, abi::EXPORT_ALLOC)?
            .typed::<i32, i32>(&*store)
            .map_err(|_| abi_err(abi::EXPORT_ALLOC))?;
        let check = func(store, &ready.exports.check, abi::EXPORT_CHECK)?
            .typed::<(i32, i32), i64>(&*store)
            .map_err(|_| abi_err(abi::EXPORT_CHECK))?;
        let abi_version = func(store, &ready.exports.abi_version, abi::EXPORT_ABI_VERSION)?
            .typed::<(), i32>(&*store)
            .map_err(|_| abi_err(abi::EXPORT_ABI_VERSION))?;
        let initialize = match &ready.exports.initialize {
            None => None,
            Some(init) => Some(
                func(store, init, abi::EXPORT_INITIALIZE)?
                    .typed::<(), ()>(&*store)
                    .map_err(|_| abi_err(abi::EXPORT_INITIALIZE))?,
            ),
        };
        Ok(GuestExports {
            memory,
            alloc,
            check,
            abi_version,
            initialize,
        })
    }
}

/// Writes the input where the guest's `alloc` put it, if that is a real region.
fn write_input(
    name: &str,
    input: &InputParts<'_>,
    mem: &mut [u8],
    in_ptr: u32,
) -> Result<(), PluginFailure> {
    let input_len = input.len();
    let range = guest_range(in_ptr, input_len as u32, mem.len()).ok_or_else(|| {
        fail(
            FailureKind::BadOutput,
            format!(
                "plugin `{name}`: `alloc({input_len})` returned {in_ptr}, which is not a writable region of its {} byte memory",
                mem.len()
            ),
        )
    })?;
    if in_ptr == 0 && input_len > 0 {
        return Err(fail(
            FailureKind::BadOutput,
            format!("plugin `{name}`: `alloc({input_len})` returned 0 (allocation failed)"),
        ));
    }
    input.write_to(&mut mem[range]);
    Ok(())
}

/// Reads the result `check` pointed at, within the output cap and the guest's memory.
fn read_output(
    name: &str,
    limits: &PluginLimits,
    mem: &[u8],
    packed: i64,
) -> Result<PluginOutput, PluginFailure> {
    let (out_ptr, out_len) = abi::unpack_result(packed);
    if out_len as usize > limits.max_output_bytes {
        return Err(fail(
            FailureKind::BadOutput,
            format!(
                "plugin `{name}` returned a result of {out_len} bytes, over its cap of {} bytes",
                limits.max_output_bytes
            ),
        ));
    }
    let range = guest_range(out_ptr, out_len, mem.len()).ok_or_else(|| {
        fail(
            FailureKind::BadOutput,
            format!(
                "plugin `{name}` returned a result at {out_ptr}..{} outside its {} byte memory",
                out_ptr as u64 + out_len as u64,
                mem.len()
            ),
        )
    })?;
    abi::parse_output(&mem[range]).map_err(|why| {
        // A failure is a message in the decision: the parser's error is said in it.
        let why = crate::error_chain::ErrorChain(&why);
        fail(FailureKind::BadOutput, format!("plugin `{name}` {why}"))
    })
}

/// The parts of the input shared by every plugin of one `run`.
struct SharedInput {
    request: Vec<u8>,
    verified: Vec<u8>,
    environment: Vec<u8>,
}

impl SharedInput {
    fn new(
        environment: &str,
        request: &serde_json::Value,
        verified: &serde_json::Value,
    ) -> SharedInput {
        // Serializing a `Value` cannot fail (its map keys are strings); `null` would
        // still reach the plugin as valid JSON, so there is no silent pass either way.
        let json =
            |v: &serde_json::Value| serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
        SharedInput {
            request: json(request),
            verified: json(verified),
            environment: json(&serde_json::Value::String(environment.to_string())),
        }
    }
}

/// `ptr..ptr+len` as a host range, if it lies inside a memory of `mem_len` bytes.
fn guest_range(ptr: u32, len: u32, mem_len: usize) -> Option<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize)?;
    (end <= mem_len).then_some(start..end)
}

fn fail(kind: FailureKind, message: String) -> PluginFailure {
    PluginFailure { kind, message }
}

#[derive(Clone, Copy)]
enum Stage {
    Instantiate,
    Initialize,
    Call,
}

/// Maps a wasmtime error to a failure kind. The limiter's record is checked first: a
/// grow past the cap surfaces as a plain error, not a `Trap`.
fn classify(
    name: &str,
    limits: &PluginLimits,
    store: &Store<StoreState>,
    e: wasmtime::Error,
    stage: Stage,
    elapsed: Duration,
) -> PluginFailure {
    if let Some(desired) = store.data().limiter.hit {
        return fail(
            FailureKind::MemoryLimit,
            format!(
                "plugin `{name}`: memory limit exceeded (tried to grow its memory to {}; the cap is {})",
                mib(desired),
                mib(limits.memory_bytes)
            ),
        );
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => fail(
                FailureKind::Timeout,
                format!(
                    "plugin `{name}` exceeded its wall-time limit of {} ms (stopped after {} ms)",
                    limits.wall_time.as_millis(),
                    elapsed.as_millis()
                ),
            ),
            Trap::OutOfFuel => fail(
                FailureKind::Timeout,
                format!(
                    "plugin `{name}` ran out of fuel (budget {})",
                    limits
                        .fuel
                        .map_or_else(|| "unlimited".to_string(), |f| f.to_string())
                ),
            ),
            other => fail(
                FailureKind::Trap,
                format!(
                    "plugin `{name}` trapped{}: {} ({})",
                    match stage {
                        Stage::Instantiate => " while starting",
                        Stage::Initialize => " in `_initialize`",
                        Stage::Call => "",
                    },
                    trap_text(other),
                    trap_code(other)
                ),
            ),
        };
    }
    match stage {
        // Not a trap while instantiating: data segments that do not fit, a full
        // instance pool, an allocation failure. The sandbox never ran the plugin.
        Stage::Instantiate => fail(
            FailureKind::LoadFailed,
            format!(
                "plugin `{name}` could not be instantiated: {}",
                first_line(&e)
            ),
        ),
        Stage::Initialize | Stage::Call => fail(
            FailureKind::Trap,
            format!("plugin `{name}` failed: {}", first_line(&e)),
        ),
    }
}

/// `16 MiB`, or `16.06 MiB` when not a whole number of MiB.
fn mib(bytes: usize) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}

/// wasmtime's text for a trap without its "wasm trap: " prefix.
fn trap_text(trap: &Trap) -> String {
    let text = trap.to_string();
    text.strip_prefix("wasm trap: ")
        .unwrap_or(&text)
        .to_string()
}

/// The trap's kind in snake case (`StackOverflow` -> `stack_overflow`).
pub fn trap_code(trap: &Trap) -> String {
    let debug = format!("{trap:?}");
    let mut out = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The shared engine: epochs always, fuel when asked, pooled instances with
/// keep-resident memory, no wasm proposals a plugin could use to escape the caps.
fn build_engine(options: &HostOptions, fuel: bool) -> Result<Engine, PluginError> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(fuel)
        .max_wasm_stack(MAX_WASM_STACK_BYTES)
        // More than one memory or 64-bit memories are outside ABI v1. Shared memories,
        // which would bypass the resource limiter, need wasmtime's `threads` feature,
        // which is not compiled in (a test checks that such a module does not load).
        .wasm_multi_memory(false)
        .wasm_memory64(false);

    let mut pool = PoolingAllocationConfig::new();
    let slots = options.max_instances.max(1);
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(MAX_MEMORY_BYTES)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES);
    let mut pooled = config.clone();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(pool_err) => {
            // The pool reserves address space up front; a process under `ulimit -v`
            // may not have it. Checks still work on demand, only slower.
            tracing::warn!(error = %crate::error_chain::ErrorChain(pool_err.as_ref()), "cannot reserve the plugin instance pool; using on-demand allocation");
            Engine::new(&config).map_err(PluginError::Engine)
        }
    }
}

/// Manifests under `dir`, sorted by directory name.
fn discover(dir: &Path) -> Result<Vec<Manifest>, PluginError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PluginError::ReadDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PluginError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        // `Path::is_dir` follows symlinks, so a linked plugin directory is found too.
        if entry.path().is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();

    let mut manifests: Vec<Manifest> = Vec::new();
    for sub in dirs {
        let path = sub.join(MANIFEST_FILE);
        // Absent means no plugin here; anything present under the name (a FIFO, a
        // directory, a dangling link) is loaded, so the reader refuses it by name
        // instead of a required check silently disappearing.
        if std::fs::symlink_metadata(&path).is_err() {
            for other in ["plugin.yaml", "plugin.yml"] {
                let p = sub.join(other);
                if p.is_file() {
                    return Err(PluginError::YamlManifest { path: p });
                }
            }
            tracing::debug!(dir = %sub.display(), "no plugin manifest; skipped");
            continue;
        }
        let manifest = Manifest::load(&path)?;
        let dir_name = sub.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if manifest.name != dir_name {
            return Err(PluginError::ManifestField {
                path,
                field: "name".into(),
                reason: format!(
                    "is `{}`, but the plugin's directory is `{dir_name}`; they must match",
                    manifest.name
                ),
            });
        }
        // Names are unique because they equal their (distinct) directory names.
        manifests.push(manifest);
    }
    Ok(manifests)
}

/// Reads, compiles (or loads from cache) and checks one plugin's module.
fn prepare(
    engine: &Engine,
    cache: Option<&ModuleCache>,
    m: Manifest,
    options: &HostOptions,
) -> Loaded {
    let mut info = PluginInfo {
        name: m.name.clone(),
        description: m.description.clone(),
        digest: None,
        manifest: m.path.clone(),
        module: m.module.clone(),
        environments: m.environments.clone(),
        mode: m.mode,
        required_in: m.required_in.clone(),
        limits: m.limits.apply(&options.defaults),
        load_error: None,
        from_cache: false,
    };
    match make_ready(engine, cache, &m, &mut info) {
        Ok(ready) => Loaded {
            info,
            ready: Some(ready),
        },
        Err(failure) => {
            tracing::warn!(plugin = %info.name, error = %failure.message, "plugin failed to load; its checks will fail closed");
            info.load_error = Some(failure);
            Loaded { info, ready: None }
        }
    }
}

fn make_ready(
    engine: &Engine,
    cache: Option<&ModuleCache>,
    m: &Manifest,
    info: &mut PluginInfo,
) -> Result<Ready, PluginFailure> {
    let name = &m.name;
    let path = &m.module;
    let load_failed =
        |why: String| fail(FailureKind::LoadFailed, format!("plugin `{name}`: {why}"));

    let bytes = crate::fsio::read_capped(path, MAX_MODULE_BYTES).map_err(|e| match e {
        crate::fsio::ReadError::TooLarge { size, .. } => load_failed(format!(
            "module `{}` is {size} bytes, over the {MAX_MODULE_BYTES} byte limit",
            path.display()
        )),
        e => load_failed(format!(
            "cannot read module `{}`: {}",
            path.display(),
            e.reason()
        )),
    })?;
    let sha = Sha256::of(&bytes);
    info.digest = Some(sha);

    let cached = cache.and_then(|c| c.load(engine, sha.as_bytes()));
    info.from_cache = cached.is_some();
    let module = match cached {
        Some(module) => module,
        None => {
            let started = Instant::now();
            let module = Module::new(engine, &bytes).map_err(|e| {
                load_failed(format!(
                    "module `{}` does not compile: {}",
                    path.display(),
                    first_line(&e)
                ))
            })?;
            tracing::debug!(plugin = %name, ms = started.elapsed().as_millis() as u64, "compiled plugin module");
            if let Some(c) = cache {
                c.store(&module, sha.as_bytes());
            }
            module
        }
    };

    let exports = abi::check_module(&module).map_err(|why| {
        fail(
            FailureKind::AbiMismatch,
            format!("plugin `{name}` {why} (see plugins/ABI.md)"),
        )
    })?;
    let pre = Linker::<StoreState>::new(engine)
        .instantiate_pre(&module)
        .map_err(|e| load_failed(format!("cannot prepare instances: {}", first_line(&e))))?;
    let config_json = serde_json::to_vec(&m.config)
        .map_err(|e| load_failed(format!("cannot encode config: {e}")))?;
    Ok(Ready {
        pre,
        exports,
        config_json,
    })
}
