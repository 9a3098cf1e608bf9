//! The guest's world: WASI context with virtual clocks and seeded randomness, plus the
//! store-level state the limits need.

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
    pub memory_limit: u64,
    pub deadline: Instant,
    pub cancel: Arc<AtomicBool>,
    pub stop: Option<Stop>,
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
