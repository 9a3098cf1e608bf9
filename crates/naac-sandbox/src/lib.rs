//! The sandbox: runs one task — a WebAssembly (wasm32-wasip1) module — under wasmtime with
//! WASI preview 1, deterministically and within limits.
//!
//! Per task the guest gets its argv, its stdin, a read-only `/in` with its input files and a
//! writable `/out` whose files become its outputs; nothing else of the host: no other files,
//! no network, no environment. Clocks and randomness are virtual and seeded from the task,
//! NaNs are canonical and threads are off, so the same task prints the same bytes on every
//! host. Fuel (≈ instructions), memory and wall-clock time are limited; every run ends in one
//! [`Outcome`](naac_types::Outcome). A guest trap is an outcome, never a host error.
//!
//! A guest may also save its progress through the `naac` import module (`checkpoint`,
//! `restore_size`, `restore`): the host keeps a copy at most once per
//! [`TaskRun::checkpoint_interval`] and hands it to [`TaskRun::on_checkpoint`]; a later run
//! given it as [`TaskRun::restore`], on any host, resumes from there.
//!
//! One [`Sandbox`] per process: it owns the wasmtime `Engine`, the WASI linker, an epoch
//! ticker thread for timeouts, and the compiled-module cache (in memory, and on disk keyed by
//! the module's BLAKE3 hash plus the engine's settings and version; checksummed, synced and
//! kept within [`SandboxConfig::cache_quota`] by evicting the least recently used). Only this
//! crate knows wasmtime.
//!
//! Compiling is bounded too: a module over [`MAX_MODULE_BYTES`] is refused before anything
//! else, one module compiles at a time per sandbox (on a thread of its own), and one that
//! takes longer than [`SandboxConfig::compile_timeout`] is refused (and remembered, so it is
//! not compiled again); its compilation runs out in the background, holding the compile turn,
//! and is thrown away.
//!
//! The sandbox's [`Gate`] ([`Sandbox::gate`]) lets the owner's policy pause all its guests
//! (they stop within one [`EPOCH_TICK`] and later go on exactly where they were) and cap the
//! share of time they run ([`Gate::set_duty`], duty cycling over [`DUTY_PERIOD`]). Blocked
//! guests use no CPU, still notice cancellation, and do not have the time they spent blocked
//! counted against their wall-clock limit ([`RunResult::paused`] reports it). Since guests
//! are deterministic and their clocks virtual, neither changes a task's result. The epoch
//! ticker sleeps while no guest needs ticks, so an idle sandbox costs no CPU.

mod cache;
mod checkpoint;
mod gate;
pub mod nan;
mod run;
mod shims;
mod wasi;

pub use checkpoint::{CheckpointSink, MAX_CHECKPOINT_BYTES};
pub use gate::{DUTY_PERIOD, Gate, MIN_DUTY};
pub use run::{RunResult, TaskRun};

use anyhow::Context as _;
use naac_types::ContentId;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::{Config, Engine, InstancePre, Linker, Module};

/// How often the epoch ticks while a guest runs; timeouts, cancellation and a
/// [`Gate::pause`] are noticed within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Compiled modules kept ready in memory.
const MEMORY_CACHE_ENTRIES: usize = 64;

/// Sandbox settings that are the host's, not the task's.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Directory for compiled modules; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Directory under which each task gets a scratch directory for `/in` and `/out`.
    pub work_dir: PathBuf,
    /// Most bytes a task may write to stdout.
    pub stdout_limit: usize,
    /// Most bytes a task may write to stderr.
    pub stderr_limit: usize,
    /// Most bytes a task may leave in `/out`, all files together.
    pub output_limit: u64,
    /// How NaN bits are made the same on every CPU (see [`nan`]): by default only where
    /// they can be observed, which costs float-heavy code almost nothing. The other modes
    /// are for measurements: after every float instruction (Cranelift's canonicalization,
    /// up to ~40% slower), or not at all (replicas could then disagree across CPUs).
    pub nans: NanMode,
    /// Most guests running at once in this process (instance slots are preallocated and
    /// reused, which makes starting a task cheap).
    pub max_concurrent: u32,
    /// Most bytes of compiled modules kept in `cache_dir` (the least recently used go
    /// first; an artifact larger than this is not kept). Changeable later with
    /// [`Sandbox::set_cache_quota`].
    pub cache_quota: u64,
    /// Longest a module may take to compile; a slower one is refused.
    pub compile_timeout: Duration,
    /// Let wasmtime compile one module's functions on every core at once. Off, a compile
    /// uses one core (a provider's setting: compiling a peer's module is work under its
    /// owner's CPU cap).
    pub parallel_compilation: bool,
}

/// Most files a task may leave in `/out`.
pub const MAX_OUT_FILES: usize = 10_000;

impl SandboxConfig {
    pub const DEFAULT_STDOUT_LIMIT: usize = 64 << 20;
    pub const DEFAULT_STDERR_LIMIT: usize = 1 << 20;
    pub const DEFAULT_OUTPUT_LIMIT: u64 = 256 << 20;
    pub const DEFAULT_CACHE_QUOTA: u64 = 1 << 30;
    pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);

    pub fn new(work_dir: PathBuf) -> Self {
        Self {
            cache_dir: None,
            work_dir,
            stdout_limit: Self::DEFAULT_STDOUT_LIMIT,
            stderr_limit: Self::DEFAULT_STDERR_LIMIT,
            output_limit: Self::DEFAULT_OUTPUT_LIMIT,
            nans: NanMode::Boundary,
            max_concurrent: 64,
            cache_quota: Self::DEFAULT_CACHE_QUOTA,
            compile_timeout: Self::DEFAULT_COMPILE_TIMEOUT,
            parallel_compilation: true,
        }
    }

    pub fn with_cache_dir(mut self, dir: PathBuf) -> Self {
        self.cache_dir = Some(dir);
        self
    }
}

/// Where the sandbox makes NaN bits canonical; see [`nan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NanMode {
    /// Where a float's bits can be observed (stores, reinterprets, sign operations, the
    /// host): deterministic at nearly native speed. The default.
    Boundary,
    /// After every float instruction that can make a NaN (Cranelift's canonicalization).
    EveryOp,
    /// Nowhere: results may differ across CPUs. For measurements only.
    Off,
}

/// Largest module the sandbox compiles: real guests are a few MiB; more is a peer trying
/// to make the host spend its CPU and memory compiling.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// A module that cannot be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("module of {len} bytes is over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("module bytes do not match their hash (expected {expected}, got {actual})")]
    HashMismatch { expected: String, actual: String },
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    #[error("module cannot run under naac: {0}")]
    Unlinkable(String),
    #[error("module {id} took longer than {limit:?} to compile")]
    TooSlow { id: String, limit: Duration },
}

/// Modules remembered as too slow to compile (then the memory starts over).
const MAX_TOO_SLOW: usize = 1024;

/// A compiled module, linked against WASI and ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Prepared {
    pre: InstancePre<wasi::Ctx>,
    id: ContentId,
}

impl Prepared {
    pub fn id(&self) -> ContentId {
        self.id
    }
}

/// The per-process sandbox; see the crate docs.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<wasi::Ctx>,
    config: SandboxConfig,
    /// Hash of the engine's settings and wasmtime's version: part of every disk cache key.
    engine_key: [u8; 32],
    ready: Mutex<HashMap<ContentId, Prepared>>,
    /// Held by the thread compiling a module: one compile at a time.
    compiling: Arc<Mutex<()>>,
    /// Modules that took too long to compile: refused at once.
    too_slow: Mutex<HashSet<ContentId>>,
    cache_quota: AtomicU64,
    scratch: run::ScratchPool,
    gate: Gate,
    stop_ticker: Arc<AtomicBool>,
}

impl Sandbox {
    /// Builds the engine and starts the epoch ticker.
    pub fn start(config: SandboxConfig) -> anyhow::Result<Self> {
        let mut c = Config::new();
        c.consume_fuel(true)
            .epoch_interruption(true)
            // Determinism: identical bits on every host (by default the module rewrite of
            // `nan` does it, at compile time).
            .cranelift_nan_canonicalization(config.nans == NanMode::EveryOp)
            .relaxed_simd_deterministic(true)
            // One linear memory per guest, so the memory limit is the guest's limit.
            .wasm_multi_memory(false)
            // No threads: the `threads` feature of wasmtime is not even compiled in.
            .parallel_compilation(config.parallel_compilation);
        // Preallocated, reused instance slots: no mmap/munmap (and TLB shootdowns) per task.
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        let n = config.max_concurrent.max(1);
        pool.total_core_instances(n)
            .total_memories(n)
            .total_tables(n)
            .max_memories_per_module(1)
            .max_memory_size(naac_types::Limits::MAX_MEMORY as usize)
            .table_elements(100_000)
            // Small memories are zeroed in place on reuse instead of unmapped.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(1 << 16)
            // Where Linux has PAGEMAP_SCAN (6.7+), only the pages a guest touched are reset:
            // a tiny task no longer pays for zeroing the whole resident megabyte.
            .pagemap_scan(wasmtime::Enabled::Auto);
        c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&c).map_err(|e| wasm_err(e, "create the wasmtime engine"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx: &mut wasi::Ctx| &mut ctx.wasi)
            .map_err(|e| wasm_err(e, "link WASI preview 1"))?;
        wasi::add_virtual_poll(&mut linker).map_err(|e| wasm_err(e, "link virtual poll_oneoff"))?;
        shims::add_to_linker(&mut linker)
            .map_err(|e| wasm_err(e, "link the WASI argument checks"))?;
        checkpoint::add_to_linker(&mut linker)
            .map_err(|e| wasm_err(e, "link the checkpoint functions"))?;
        std::fs::create_dir_all(&config.work_dir)
            .with_context(|| format!("create work dir {}", config.work_dir.display()))?;
        if let Some(d) = &config.cache_dir {
            std::fs::create_dir_all(d)
                .with_context(|| format!("create module cache dir {}", d.display()))?;
        }
        let engine_key = cache::engine_key(&engine, config.nans);
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let gate = Gate::new();
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            let tick_gate = gate.clone();
            let ticker = std::thread::Builder::new()
                .name("naac-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        // Ticks only while some guest runs (and is not blocked by the gate):
                        // a run wakes the ticker when it starts.
                        if !tick_gate.needs_ticks() {
                            std::thread::park();
                            continue;
                        }
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .context("start the epoch ticker thread")?;
            gate.set_ticker(ticker.thread().clone());
        }
        if let Some(d) = &config.cache_dir {
            // A quota lowered since the last start holds from now on.
            cache::evict(d, config.cache_quota);
        }
        Ok(Self {
            engine,
            linker,
            engine_key,
            ready: Mutex::new(HashMap::new()),
            compiling: Arc::new(Mutex::new(())),
            too_slow: Mutex::new(HashSet::new()),
            cache_quota: AtomicU64::new(config.cache_quota),
            config,
            scratch: run::ScratchPool::default(),
            gate,
            stop_ticker,
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The gate all runs of this sandbox pass: pause, resume and throttle them.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Changes the disk cache's quota (bytes); the cache is trimmed to it now.
    pub fn set_cache_quota(&self, bytes: u64) {
        if self.cache_quota.swap(bytes, Ordering::Relaxed) > bytes
            && let Some(d) = &self.config.cache_dir
        {
            cache::evict(d, bytes);
        }
    }

    /// The module, if it is compiled already (in memory or in the disk cache).
    pub fn cached(&self, id: &ContentId) -> Option<Prepared> {
        if let Some(p) = self.ready.lock().expect("cache lock").get(id) {
            return Some(p.clone());
        }
        let module = cache::load(
            &self.engine,
            self.config.cache_dir.as_deref(),
            &self.key(id),
        )?;
        let p = self.link(*id, &module).ok()?;
        self.remember(p.clone());
        Some(p)
    }

    /// Validates, compiles and links `bytes`, which must hash to `id`. The compiled artifact
    /// goes to the disk cache so the next run (in any naac process on this machine) skips
    /// compilation. One module compiles at a time; one that takes longer than
    /// [`SandboxConfig::compile_timeout`] is refused, now and whenever it comes again.
    pub fn compile(&self, id: &ContentId, bytes: &[u8]) -> Result<Prepared, ModuleError> {
        // Checked before anything else: a peer's oversized module costs no hashing or
        // compiling (compile time grows with size).
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(ModuleError::TooLarge {
                len: bytes.len(),
                limit: MAX_MODULE_BYTES,
            });
        }
        let actual = ContentId::of(bytes);
        if actual != *id {
            return Err(ModuleError::HashMismatch {
                expected: id.to_hex(),
                actual: actual.to_hex(),
            });
        }
        if let Some(p) = self.cached(id) {
            return Ok(p);
        }
        let module = self.compile_limited(id, bytes)?;
        let p = self.link(*id, &module)?;
        let quota = self.cache_quota.load(Ordering::Relaxed);
        if let Some(dir) = &self.config.cache_dir
            && let Err(e) = cache::store(&module, dir, &self.key(id), quota)
        {
            tracing::warn!("failed to cache compiled module {}: {e:#}", id.short());
        }
        self.remember(p.clone());
        Ok(p)
    }

    /// Runs one task to its outcome. Host-side failures (cannot create the scratch
    /// directory, ...) are errors; everything the guest does is an outcome. The run passes
    /// the sandbox's [`Gate`]: while it is paused or throttled the run blocks (and its
    /// wall-clock limit is extended by that time).
    pub fn run(
        &self,
        module: &Prepared,
        task: &TaskRun,
        cancel: &Arc<AtomicBool>,
    ) -> anyhow::Result<RunResult> {
        run::run(
            &self.engine,
            &self.config,
            &self.scratch,
            &self.gate,
            module,
            task,
            cancel,
        )
    }

    /// Compiles on a thread of its own once no other compile runs, and gives up after the
    /// time limit (the thread finishes in the background and its module is dropped).
    fn compile_limited(&self, id: &ContentId, bytes: &[u8]) -> Result<Module, ModuleError> {
        let limit = self.config.compile_timeout;
        let too_slow = || ModuleError::TooSlow {
            id: id.short(),
            limit,
        };
        if self.too_slow.lock().expect("too-slow lock").contains(id) {
            return Err(too_slow());
        }
        enum Msg {
            Started,
            Done(Result<Module, ModuleError>),
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (engine, turn, bytes) = (self.engine.clone(), self.compiling.clone(), bytes.to_vec());
        let nans = self.config.nans;
        std::thread::Builder::new()
            .name("naac-compile".into())
            .spawn(move || {
                let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
                let _ = tx.send(Msg::Started);
                let _ = tx.send(Msg::Done(compile_deterministic(&engine, &bytes, nans)));
            })
            .map_err(|e| ModuleError::Invalid(format!("cannot start a compiler thread: {e}")))?;
        let gone = || ModuleError::Invalid("the compiler thread panicked".into());
        // Waiting for an earlier compile (itself bounded) is not this module's time.
        match rx.recv() {
            Ok(Msg::Started) => {}
            Ok(Msg::Done(_)) | Err(_) => return Err(gone()),
        }
        match rx.recv_timeout(limit) {
            Ok(Msg::Done(r)) => r,
            Ok(Msg::Started) => Err(gone()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    "module {} took longer than {limit:?} to compile: refused",
                    id.short()
                );
                let mut slow = self.too_slow.lock().expect("too-slow lock");
                if slow.len() >= MAX_TOO_SLOW {
                    slow.clear();
                }
                slow.insert(*id);
                Err(too_slow())
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }

    fn key(&self, id: &ContentId) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("naac module cache v2");
        h.update(&id.0);
        h.update(&self.engine_key);
        *h.finalize().as_bytes()
    }

    fn link(&self, id: ContentId, module: &Module) -> Result<Prepared, ModuleError> {
        if module.get_export("_start").is_none() {
            return Err(ModuleError::Unlinkable(
                "it exports no `_start`; build it as a WASI command (a binary with fn main)".into(),
            ));
        }
        let pre = self
            .linker
            .instantiate_pre(module)
            .map_err(|e| ModuleError::Unlinkable(format!("{e:#}")))?;
        Ok(Prepared { pre, id })
    }

    fn remember(&self, p: Prepared) {
        let mut ready = self.ready.lock().expect("cache lock");
        if ready.len() >= MEMORY_CACHE_ENTRIES
            && let Some(k) = ready.keys().next().copied()
        {
            ready.remove(&k);
        }
        ready.insert(p.id, p);
    }
}

/// Compiles `bytes` after the NaN rewrite its mode asks for. Errors name the module as it
/// was given: a module the rewrite cannot read is checked as it came, so its error is the
/// validator's own, and a rewrite that breaks a valid module (a naac bug) says so.
fn compile_deterministic(
    engine: &Engine,
    bytes: &[u8],
    nans: NanMode,
) -> Result<Module, ModuleError> {
    let invalid = |e: wasmtime::Error| ModuleError::Invalid(format!("{e:#}"));
    if nans != NanMode::Boundary {
        return Module::new(engine, bytes).map_err(invalid);
    }
    let rewritten = nan::rewrite(bytes);
    let original_error = || Module::validate(engine, bytes).err().map(invalid);
    match rewritten {
        Err(e) => Err(original_error().unwrap_or_else(|| {
            ModuleError::Unlinkable(format!("its floats cannot be made deterministic: {e}"))
        })),
        Ok(b) => Module::new(engine, &b).map_err(|e| {
            original_error().unwrap_or_else(|| {
                ModuleError::Invalid(format!(
                    "the NaN rewrite made it invalid (a naac bug, please report it): {e:#}"
                ))
            })
        }),
    }
}

/// wasmtime has its own error type; carry its full chain into `anyhow`.
pub(crate) fn wasm_err(e: wasmtime::Error, what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {e:#}")
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::SeqCst);
        self.gate.wake_ticker();
    }
}
