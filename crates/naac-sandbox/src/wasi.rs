//! The guest's world: WASI context with virtual clocks and seeded randomness, plus the
//! store-level state the limits need.

use crate::checkpoint::Checkpoints;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// Why the host stopped the guest, when it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Timeout,
    Cancelled,
    Memory,
    /// `/out` grew past its limit while the guest ran.
    Output,
}

pub(crate) struct Ctx {
    pub wasi: WasiP1Ctx,
    /// The task's virtual clock (shared with the WASI context's clocks).
    pub clock: VirtualClock,
    pub memory_limit: u64,
    /// When the run times out; pushed back by the time it spends blocked by the gate.
    pub deadline: Instant,
    /// Time the run spent blocked by the gate (paused or throttled).
    pub blocked: Duration,
    pub cancel: Arc<AtomicBool>,
    pub stop: Option<Stop>,
    /// The run's checkpoint to resume from and where new ones go.
    pub checkpoints: Checkpoints,
    /// The task's seed (AssemblyScript's `env.seed` answers from it).
    pub seed: [u8; 32],
}

impl ResourceLimiter for Ctx {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_limit {
            self.stop = Some(Stop::Memory);
            return Err(wasmtime::Error::msg(format!(
                "memory limit exceeded: the guest asked for {desired} bytes, the limit is {}",
                self.memory_limit
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
        Ok(desired <= 1_000_000)
    }

    // One memory, one instance: the memory limit is per memory, so more memories would
    // multiply it.
    fn memories(&self) -> usize {
        1
    }

    fn instances(&self) -> usize {
        1
    }
}

/// A clock that starts at a fixed instant and advances one microsecond per reading, so
/// time-measuring guests progress but print the same on every host.
#[derive(Clone)]
pub(crate) struct VirtualClock {
    ticks: Arc<AtomicU64>,
}

/// 2020-01-01T00:00:00Z, where virtual wall-clock time starts.
const WALL_BASE: Duration = Duration::from_secs(1_577_836_800);

impl VirtualClock {
    pub(crate) fn new() -> Self {
        Self {
            ticks: Arc::new(AtomicU64::new(0)),
        }
    }

    fn advance(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// What WASI's clocks resolve to: one microsecond.
    pub(crate) const RESOLUTION_NANOS: u64 = 1_000;

    /// A reading of the wall clock, in nanoseconds since 1970 (as `clock_time_get` gives it).
    pub(crate) fn wall_nanos(&self) -> u64 {
        HostWallClock::now(self).as_nanos() as u64
    }

    /// A reading of the monotonic clock, in nanoseconds.
    pub(crate) fn monotonic_nanos(&self) -> u64 {
        HostMonotonicClock::now(self)
    }

    /// Microseconds since the clock started.
    fn micros(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Jumps forward to `micros` (never backwards).
    fn advance_to(&self, micros: u64) {
        self.ticks.fetch_max(micros, Ordering::Relaxed);
    }
}

/// WASI p1 errno values used below.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

/// Replaces WASI's `poll_oneoff` with one that never blocks: clock subscriptions fire at once
/// and move the task's virtual clock forward, file-descriptor subscriptions (in-memory stdio,
/// files) are always ready. A sleeping guest thus costs no wall-clock time, cannot outlast its
/// timeout inside a host call, and sleeps the same on every host.
pub(crate) fn add_virtual_poll(linker: &mut wasmtime::Linker<Ctx>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: wasmtime::Caller<'_, Ctx>,
         subs: i32,
         events: i32,
         n: i32,
         nevents: i32|
         -> i32 {
            let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
                return ERRNO_FAULT;
            };
            let (subs, events, nevents) = (
                subs as u32 as usize,
                events as u32 as usize,
                nevents as u32 as usize,
            );
            let n = n as u32 as usize;
            if n == 0 {
                return ERRNO_INVAL;
            }
            let clock = caller.data().clock.clone();
            let data = mem.data(&caller);
            let Some(raw) = subs.checked_add(n * 48).and_then(|end| data.get(subs..end)) else {
                return ERRNO_FAULT;
            };
            let u64_at =
                |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
            let mut fd_events = Vec::new();
            let mut clocks = Vec::new();
            for sub in raw.chunks_exact(48) {
                let userdata = u64_at(sub, 0);
                match sub[8] {
                    0 => {
                        let id = u32::from_le_bytes(sub[16..20].try_into().expect("4 bytes"));
                        let timeout = u64_at(sub, 24);
                        let abstime =
                            u16::from_le_bytes(sub[40..42].try_into().expect("2 bytes")) & 1 == 1;
                        let now = clock.micros();
                        let due = if !abstime {
                            now.saturating_add(timeout / 1_000)
                        } else if id == 0 {
                            // Realtime: nanoseconds since 1970, virtual time starts at WALL_BASE.
                            (timeout / 1_000).saturating_sub(WALL_BASE.as_micros() as u64)
                        } else {
                            timeout / 1_000
                        };
                        clocks.push((due, userdata));
                    }
                    tag @ (1 | 2) => fd_events.push((userdata, tag)),
                    _ => return ERRNO_INVAL,
                }
            }
            // Ready file descriptors win; otherwise time jumps to the earliest clock.
            let fired: Vec<(u64, u8)> = if fd_events.is_empty() {
                let first = clocks.iter().map(|(due, _)| *due).min().unwrap_or(0);
                clock.advance_to(first);
                clocks
                    .iter()
                    .filter(|(due, _)| *due <= first)
                    .map(|(_, u)| (*u, 0u8))
                    .collect()
            } else {
                fd_events
            };
            let data = mem.data_mut(&mut caller);
            let Some(out) = events
                .checked_add(fired.len() * 32)
                .and_then(|end| data.get_mut(events..end))
            else {
                return ERRNO_FAULT;
            };
            for (slot, (userdata, kind)) in out.chunks_exact_mut(32).zip(&fired) {
                slot.fill(0);
                slot[0..8].copy_from_slice(&userdata.to_le_bytes());
                slot[10] = *kind;
            }
            let Some(count) = data.get_mut(nevents..nevents + 4) else {
                return ERRNO_FAULT;
            };
            count.copy_from_slice(&(fired.len() as u32).to_le_bytes());
            ERRNO_SUCCESS
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }
    fn now(&self) -> Duration {
        WALL_BASE + Duration::from_micros(self.advance())
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.advance() * 1_000
    }
}

/// A random source seeded from the task: BLAKE3 in extendable-output mode.
pub(crate) struct SeededRandom(blake3::OutputReader);

impl SeededRandom {
    pub(crate) fn new(seed: &[u8; 32], stream: &str) -> Self {
        let mut h = blake3::Hasher::new_derive_key("naac guest random v1");
        h.update(seed);
        h.update(stream.as_bytes());
        Self(h.finalize_xof())
    }
}

impl rand_core::TryRng for SeededRandom {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}
