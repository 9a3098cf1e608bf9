//! Running one task: scratch directories, WASI context, limits, outcome classification.

use crate::checkpoint::{CheckpointSink, Checkpoints, GuestFault, MAX_CHECKPOINT_BYTES};
use crate::gate::{Gate, Passed, Throttle};
use crate::wasi::{Ctx, SeededRandom, Stop, VirtualClock};
use crate::{Prepared, SandboxConfig, wasm_err};
use anyhow::Context as _;
use naac_types::units::format_size;
use naac_types::{Limits, Outcome};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// Everything one run needs.
#[derive(Clone, Debug, Default)]
pub struct TaskRun {
    /// `argv[0]`, conventionally the job name.
    pub argv0: String,
    /// argv after `argv[0]`.
    pub args: Vec<String>,
    /// The guest's environment (nothing of the host's leaks in).
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    /// Files for `/in`: plain names (no `/`), contents.
    pub inputs: Vec<(String, Arc<Vec<u8>>)>,
    pub limits: Limits,
    /// Seeds the virtual random source; replicas of a task get the same seed.
    pub seed: [u8; 32],
    /// Checkpoint to resume from (what an earlier run of the same task handed to its
    /// [`on_checkpoint`](Self::on_checkpoint)); `None` starts the task afresh. One larger
    /// than [`MAX_CHECKPOINT_BYTES`] makes the run a host-side error.
    pub restore: Option<Arc<Vec<u8>>>,
    /// Least wall time between checkpoints, counted from the start of the run and then from
    /// the last checkpoint taken: the guest's `checkpoint` calls in between are ignored.
    /// `None` (or no [`on_checkpoint`](Self::on_checkpoint)) disables checkpoints.
    pub checkpoint_interval: Option<Duration>,
    /// Receives the checkpoints this run takes.
    pub on_checkpoint: Option<CheckpointSink>,
}

/// How a run ended and what it produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub outcome: Outcome,
    /// The guest's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Human-readable detail for failures (trap message, limit hit); empty for `ok`.
    pub message: String,
    /// Fuel consumed: the billing unit.
    pub fuel_used: u64,
    /// Wall time of the whole run, including [`paused`](Self::paused).
    pub wall: Duration,
    /// Time the run spent blocked by the sandbox's [`Gate`](crate::Gate) (paused, or
    /// sleeping off its duty); it does not count against the wall-clock limit.
    pub paused: Duration,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Files the guest left in `/out`: relative paths with `/`, contents.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// Checkpoints taken (handed to [`TaskRun::on_checkpoint`]) during this run.
    pub checkpoints: u32,
}

pub(crate) fn run(
    engine: &Engine,
    cfg: &SandboxConfig,
    scratch_pool: &ScratchPool,
    gate: &Gate,
    module: &Prepared,
    task: &TaskRun,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<RunResult> {
    let started = Instant::now();
    let _running = gate.enter();
    let scratch = scratch_pool.take(&cfg.work_dir)?;
    let result = run_in(engine, cfg, gate, module, task, cancel, &scratch, started);
    // Skip the cleanup reads where nothing can be there: no inputs were written, and `/out`
    // was seen empty after the run.
    let in_used = !task.inputs.is_empty();
    let out_used = !matches!(&result, Ok((_, false)));
    scratch_pool.give_back(scratch, in_used, out_used);
    result.map(|(r, _)| r)
}

/// A task's `/in` and `/out`, reused across tasks: creating and deleting directories per task
/// costs more than a no-op task itself on ext4.
pub(crate) struct Scratch {
    _root: tempfile::TempDir,
    in_dir: PathBuf,
    out_dir: PathBuf,
}

/// Clean scratch directories ready for the next task.
#[derive(Default)]
pub(crate) struct ScratchPool {
    free: Mutex<Vec<Scratch>>,
}

/// Scratch directories kept for reuse.
const MAX_FREE_SCRATCH: usize = 64;

impl ScratchPool {
    fn take(&self, work_dir: &Path) -> anyhow::Result<Scratch> {
        if let Some(s) = self.free.lock().expect("scratch lock").pop() {
            return Ok(s);
        }
        let root = tempfile::Builder::new()
            .prefix("task-")
            .tempdir_in(work_dir)
            .with_context(|| format!("create a task directory in {}", work_dir.display()))?;
        let in_dir = root.path().join("in");
        let out_dir = root.path().join("out");
        std::fs::create_dir(&in_dir).context("create /in")?;
        std::fs::create_dir(&out_dir).context("create /out")?;
        Ok(Scratch {
            _root: root,
            in_dir,
            out_dir,
        })
    }

    /// Empties the directories and keeps them, or drops (deletes) them if that fails.
    fn give_back(&self, s: Scratch, in_used: bool, out_used: bool) {
        let in_ok = !in_used || empty_dir(&s.in_dir).is_ok();
        let out_ok = !out_used || empty_dir(&s.out_dir).is_ok();
        if in_ok && out_ok {
            let mut free = self.free.lock().expect("scratch lock");
            if free.len() < MAX_FREE_SCRATCH {
                free.push(s);
            }
        }
    }
}

fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_in(
    engine: &Engine,
    cfg: &SandboxConfig,
    gate: &Gate,
    module: &Prepared,
    task: &TaskRun,
    cancel: &Arc<AtomicBool>,
    scratch: &Scratch,
    started: Instant,
) -> anyhow::Result<(RunResult, bool)> {
    if let Some(state) = &task.restore
        && state.len() > MAX_CHECKPOINT_BYTES
    {
        anyhow::bail!(
            "checkpoint to restore holds {} bytes, more than the {} limit",
            state.len(),
            format_size(MAX_CHECKPOINT_BYTES as u64)
        );
    }
    let (in_dir, out_dir) = (&scratch.in_dir, &scratch.out_dir);
    for (name, bytes) in &task.inputs {
        if !is_input_path(name) {
            anyhow::bail!(
                "input file name {name:?} is not a relative path of plain names (at most {MAX_INPUT_DEPTH})"
            );
        }
        let path = in_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("make the folder of input {name}"))?;
        }
        std::fs::write(path, bytes.as_slice()).with_context(|| format!("write input {name}"))?;
    }

    // One byte of headroom: a buffer longer than the limit means the guest tried to write
    // past it, whether or not it noticed the write error.
    let stdout = MemoryOutputPipe::new(cfg.stdout_limit + 1);
    let stderr = MemoryOutputPipe::new(cfg.stderr_limit + 1);
    let clock = VirtualClock::new();
    let mut b = WasiCtxBuilder::new();
    b.arg(&task.argv0)
        .stdin(MemoryInputPipe::new(task.stdin.clone()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(clock.clone())
        .monotonic_clock(clock.clone())
        .secure_random(SeededRandom::new(&task.seed, "secure"))
        .insecure_random(SeededRandom::new(&task.seed, "insecure"))
        .insecure_random_seed(u128::from_le_bytes(
            task.seed[..16].try_into().expect("16 bytes"),
        ))
        .allow_blocking_current_thread(true)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    for a in &task.args {
        b.arg(a);
    }
    for (k, v) in &task.env {
        b.env(k, v);
    }
    b.preopened_dir(in_dir, "/in", FsPerms::ReadOnly)
        .map_err(|e| wasm_err(e, "preopen /in"))?;
    b.preopened_dir(out_dir, "/out", FsPerms::ReadWrite)
        .map_err(|e| wasm_err(e, "preopen /out"))?;

    let timeout = task.limits.timeout();
    let mut store = Store::new(
        engine,
        Ctx {
            wasi: b.build_p1(),
            clock,
            memory_limit: task.limits.memory,
            deadline: started + timeout,
            blocked: Duration::ZERO,
            cancel: cancel.clone(),
            stop: None,
            checkpoints: Checkpoints::new(
                task.restore.clone(),
                task.checkpoint_interval,
                task.on_checkpoint.clone(),
                started,
            ),
            seed: task.seed,
        },
    );
    store.limiter(|c| c);
    store
        .set_fuel(task.limits.fuel)
        .map_err(|e| wasm_err(e, "set fuel"))?;
    store.set_epoch_deadline(1);
    // `/out` is on the host's disk: watch it while the guest runs, so a guest cannot fill the
    // disk before the run ends and the size check after it.
    let watch_dir = out_dir.to_path_buf();
    let out_limit = cfg.output_limit;
    let mut ticks = 0u32;
    let tick_gate = gate.clone();
    let mut throttle = Throttle::default();
    store.epoch_deadline_callback(move |mut cx| {
        let c = cx.data_mut();
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(OUT_CHECK_TICKS) && dir_exceeds(&watch_dir, out_limit) {
            c.stop = Some(Stop::Output);
            return Err(wasmtime::Error::msg("/out grew past its limit"));
        }
        if c.cancel.load(Ordering::Relaxed) {
            c.stop = Some(Stop::Cancelled);
            return Err(wasmtime::Error::msg("cancelled by the host"));
        }
        // Paused or throttled: block here, then go on where the guest was.
        let passed = tick_gate.pass(&mut throttle, &c.cancel);
        c.note_blocked(passed)?;
        if Instant::now() >= c.deadline {
            c.stop = Some(Stop::Timeout);
            return Err(wasmtime::Error::msg("wall-clock limit reached"));
        }
        Ok(UpdateDeadline::Continue(1))
    });

    let result = module
        .pre
        .instantiate(&mut store)
        .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
        .and_then(|start| {
            // A guest about to start while the gate is paused waits before running any code.
            let passed = gate.pass(&mut Throttle::default(), cancel);
            store.data_mut().note_blocked(passed)?;
            start.call(&mut store, ())
        });
    let fuel_used = task
        .limits
        .fuel
        .saturating_sub(store.get_fuel().unwrap_or(0));
    let stop = store.data().stop;
    let paused = store.data().blocked;
    let checkpoints = store.data().checkpoints.taken;
    drop(store);

    // The store (and the WASI context's handles on the pipes) is gone: take the buffers
    // without copying them.
    let mut stdout = pipe_bytes(stdout);
    let mut stderr = pipe_bytes(stderr);
    let (mut outcome, exit_code, mut message) = classify(result, stop, &task.limits, timeout);
    if stdout.len() > cfg.stdout_limit {
        outcome = Outcome::Trap;
        message = format!(
            "stdout exceeded its {} limit",
            format_size(cfg.stdout_limit as u64)
        );
        stdout.truncate(cfg.stdout_limit);
    } else if stderr.len() > cfg.stderr_limit {
        outcome = Outcome::Trap;
        message = format!(
            "stderr exceeded its {} limit",
            format_size(cfg.stderr_limit as u64)
        );
        stderr.truncate(cfg.stderr_limit);
    }

    let mut outputs = Vec::new();
    // Whether `/out` may hold anything; only a successful run's `/out` is read.
    let mut out_used = true;
    if outcome == Outcome::Ok {
        let mut total = 0u64;
        let mut entries = 0usize;
        match collect_outputs(
            out_dir,
            out_dir,
            cfg.output_limit,
            &mut total,
            &mut outputs,
            &mut entries,
        ) {
            Ok(()) => out_used = entries > 0,
            Err(e) => {
                outcome = Outcome::Trap;
                message = e;
                outputs.clear();
            }
        }
    }
    let result = RunResult {
        outcome,
        exit_code,
        message,
        fuel_used,
        wall: started.elapsed(),
        paused,
        stdout,
        stderr,
        outputs,
        checkpoints,
    };
    Ok((result, out_used))
}

impl Ctx {
    /// Accounts for time blocked by the gate: it does not count against the wall-clock
    /// limit. Fails the run if it was cancelled meanwhile.
    fn note_blocked(&mut self, passed: Passed) -> wasmtime::Result<()> {
        self.deadline += passed.blocked;
        self.blocked += passed.blocked;
        if passed.cancelled {
            self.stop = Some(Stop::Cancelled);
            return Err(wasmtime::Error::msg("cancelled by the host"));
        }
        Ok(())
    }
}

fn classify(
    result: wasmtime::Result<()>,
    stop: Option<Stop>,
    limits: &Limits,
    timeout: Duration,
) -> (Outcome, Option<i32>, String) {
    let err = match result {
        Ok(()) => return (Outcome::Ok, Some(0), String::new()),
        Err(e) => e,
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return if exit.0 == 0 {
            (Outcome::Ok, Some(0), String::new())
        } else {
            (
                Outcome::Exit,
                Some(exit.0),
                format!("exited with code {}", exit.0),
            )
        };
    }
    match stop {
        Some(Stop::Timeout) => {
            return (
                Outcome::Timeout,
                None,
                format!("ran past its {timeout:?} wall-clock limit"),
            );
        }
        Some(Stop::Cancelled) => return (Outcome::Timeout, None, "cancelled by the host".into()),
        Some(Stop::Output) => {
            return (
                Outcome::Trap,
                None,
                "/out grew past its size limit while the task ran".into(),
            );
        }
        Some(Stop::Memory) => {
            return (
                Outcome::Memory,
                None,
                format!(
                    "tried to grow memory past its {} limit",
                    format_size(limits.memory)
                ),
            );
        }
        None => {}
    }
    if let Some(fault) = err.downcast_ref::<GuestFault>() {
        return (Outcome::Trap, None, fault.0.clone());
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        if *trap == Trap::OutOfFuel {
            return (
                Outcome::OutOfFuel,
                None,
                format!("used all {} units of fuel", limits.fuel),
            );
        }
        return (Outcome::Trap, None, trap.to_string());
    }
    let msg = format!("{err:#}");
    (
        Outcome::Trap,
        None,
        msg.lines().next().unwrap_or("trap").to_string(),
    )
}

/// Epoch ticks between checks of `/out`'s size (25 × 10 ms).
const OUT_CHECK_TICKS: u32 = 25;

/// Longest path under `/out` (from the scratch dir) the walkers follow. A guest can nest
/// directories without bound through directory handles, past what a path may name
/// (PATH_MAX); a tree deeper than this counts as over the limit, so nothing it writes
/// there escapes the size check.
pub(crate) const MAX_OUT_PATH: usize = 2048;

/// Whether the files under `dir` hold more than `limit` bytes (or an absurd number of
/// entries, or a tree nested too deep to measure). Stops walking as soon as it knows; a
/// directory that cannot be read (but was not just removed) also counts as over.
fn dir_exceeds(dir: &Path, limit: u64) -> bool {
    let mut total = 0u64;
    let mut entries = 0usize;
    let base = dir.as_os_str().len();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.as_os_str().len() - base > MAX_OUT_PATH {
            return true;
        }
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return true,
        };
        for e in rd.flatten() {
            entries += 1;
            if entries > 100_000 {
                return true;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    total += m.len();
                    if total > limit {
                        return true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => return true,
            }
        }
    }
    false
}

fn pipe_bytes(p: MemoryOutputPipe) -> Vec<u8> {
    match p.try_into_inner() {
        Some(b) => Vec::from(b),
        None => {
            // Cannot happen once the store is dropped; never lose output silently though.
            tracing::error!("guest output pipe still shared after the run; output lost");
            Vec::new()
        }
    }
}

/// Most folders deep an input may sit in `/in` (a later stage's inputs are
/// `from/<stage>/<task>/<path of an output>`).
pub const MAX_INPUT_DEPTH: usize = 16;

/// An input's name: plain names joined by `/`, no more than [`MAX_INPUT_DEPTH`] of them.
fn is_input_path(name: &str) -> bool {
    let parts = name.split('/').count();
    parts <= MAX_INPUT_DEPTH && name.split('/').all(is_plain_name)
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

fn collect_outputs(
    root: &Path,
    dir: &Path,
    limit: u64,
    total: &mut u64,
    out: &mut Vec<(String, Vec<u8>)>,
    seen: &mut usize,
) -> Result<(), String> {
    if dir.as_os_str().len() - root.as_os_str().len() > MAX_OUT_PATH {
        return Err(format!(
            "/out nests directories deeper than {MAX_OUT_PATH} bytes of path"
        ));
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read /out: {e}"))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    *seen += entries.len();
    for e in entries {
        let ft = e
            .file_type()
            .map_err(|e| format!("cannot read /out: {e}"))?;
        let path = e.path();
        if ft.is_dir() {
            collect_outputs(root, &path, limit, total, out, seen)?;
        } else if ft.is_file() {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            *total += len;
            if *total > limit || out.len() >= crate::MAX_OUT_FILES {
                return Err(format!(
                    "/out holds more than {} or {} files",
                    format_size(limit),
                    crate::MAX_OUT_FILES
                ));
            }
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read /out file: {e}"))?;
            let rel = path
                .strip_prefix(root)
                .expect("walked from root")
                .to_str()
                .ok_or_else(|| format!("/out holds a file whose name is not UTF-8: {path:?}"))?
                .to_string();
            out.push((rel, bytes));
        }
    }
    Ok(())
}
