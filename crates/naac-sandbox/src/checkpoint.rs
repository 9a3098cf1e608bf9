//! Checkpoint and restore: the `naac` host functions through which a guest saves its state
//! and a later run of the same task resumes from it.
//!
//! The guest calls `checkpoint(ptr, len)` as often as it likes; the host takes a copy at most
//! once per [`TaskRun::checkpoint_interval`](crate::TaskRun::checkpoint_interval) and hands it
//! to the task's [`CheckpointSink`]. The call returns nothing, so whether a copy was taken
//! (which depends on wall time) cannot change what the guest prints. `restore_size()` and
//! `restore(ptr, len)` give the guest the checkpoint its run was started from, if any.

use crate::wasi::Ctx;
use naac_types::units::format_size;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Caller, Linker, Memory};

/// Largest state a guest may checkpoint, in bytes; a larger `checkpoint` call traps.
pub const MAX_CHECKPOINT_BYTES: usize = 64 << 20;

/// Wasm import module of the host functions.
const MODULE: &str = "naac";

/// Receives each checkpoint a run takes: the guest's state bytes, an owned copy. Called
/// synchronously from the guest's `checkpoint` call, so it should return quickly.
#[derive(Clone)]
pub struct CheckpointSink(pub Arc<dyn Fn(Vec<u8>) + Send + Sync>);

impl CheckpointSink {
    /// Wraps `f` as a sink.
    pub fn new(f: impl Fn(Vec<u8>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl fmt::Debug for CheckpointSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CheckpointSink(..)")
    }
}

/// A guest misused the checkpoint functions; the run ends as a trap with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GuestFault(pub String);

/// One run's checkpoint state, kept in the store's [`Ctx`].
pub(crate) struct Checkpoints {
    /// The checkpoint the run resumes from.
    restore: Option<Arc<Vec<u8>>>,
    /// Where checkpoints go and how often; `None` when they are disabled.
    taker: Option<Taker>,
    /// Checkpoints taken so far.
    pub taken: u32,
}

struct Taker {
    interval: Duration,
    sink: CheckpointSink,
    /// When the run started or the last checkpoint was handed over.
    last: Instant,
}

impl Checkpoints {
    pub(crate) fn new(
        restore: Option<Arc<Vec<u8>>>,
        interval: Option<Duration>,
        sink: Option<CheckpointSink>,
        started: Instant,
    ) -> Self {
        let taker = interval.zip(sink).map(|(interval, sink)| Taker {
            interval,
            sink,
            last: started,
        });
        Self {
            restore,
            taker,
            taken: 0,
        }
    }

    /// Whether a checkpoint offered now should be taken.
    fn due(&self) -> bool {
        self.taker
            .as_ref()
            .is_some_and(|t| t.last.elapsed() >= t.interval)
    }

    /// Hands `state` to the sink and restarts the interval.
    fn take(&mut self, state: Vec<u8>) {
        if let Some(t) = &mut self.taker {
            (t.sink.0)(state);
            t.last = Instant::now();
            self.taken = self.taken.saturating_add(1);
        }
    }
}

/// Links `naac::checkpoint`, `naac::restore_size` and `naac::restore`.
pub(crate) fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "checkpoint",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let len = len as u32 as usize;
            if len > MAX_CHECKPOINT_BYTES {
                return Err(fault(format!(
                    "checkpoint of {len} bytes exceeds the {} limit",
                    format_size(MAX_CHECKPOINT_BYTES as u64)
                )));
            }
            // Checked on every call, taken or not, so a bad call traps on every host.
            let mem = memory(&mut caller)?;
            let range = guest_range(&mem, &caller, ptr, len, "checkpoint")?;
            if !caller.data().checkpoints.due() {
                return Ok(());
            }
            let state = mem.data(&caller)[range].to_vec();
            caller.data_mut().checkpoints.take(state);
            Ok(())
        },
    )?;
    linker.func_wrap(MODULE, "restore_size", |caller: Caller<'_, Ctx>| -> i64 {
        caller
            .data()
            .checkpoints
            .restore
            .as_ref()
            .map_or(-1, |r| r.len() as i64)
    })?;
    linker.func_wrap(
        MODULE,
        "restore",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let Some(state) = caller.data().checkpoints.restore.clone() else {
                return Ok(0);
            };
            let n = (len as u32 as usize).min(state.len());
            let mem = memory(&mut caller)?;
            let range = guest_range(&mem, &caller, ptr, n, "restore")?;
            mem.data_mut(&mut caller)[range].copy_from_slice(&state[..n]);
            // At most MAX_CHECKPOINT_BYTES: `run` refuses larger checkpoints to restore.
            Ok(n as i32)
        },
    )?;
    Ok(())
}

fn fault(message: String) -> wasmtime::Error {
    wasmtime::Error::new(GuestFault(message))
}

fn memory(caller: &mut Caller<'_, Ctx>) -> wasmtime::Result<Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| fault("the guest exports no memory".into()))
}

/// `ptr..ptr + len` in the guest's memory, or a fault naming `what` if it does not fit.
fn guest_range(
    mem: &Memory,
    caller: &Caller<'_, Ctx>,
    ptr: i32,
    len: usize,
    what: &str,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    start
        .checked_add(len)
        .filter(|end| *end <= mem.data_size(caller))
        .map(|end| start..end)
        .ok_or_else(|| {
            fault(format!(
                "{what} of {len} bytes at {start:#x} is outside the guest's memory"
            ))
        })
}
