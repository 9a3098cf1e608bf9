//! The device manager: what this host has and offers, probed at start and kept current, in
//! the [`Resources`] schema of `naac-types` that a node publishes with its offer.
//!
//! Where each value comes from, and its unit (Linux; elsewhere the probes return zeros,
//! `"unknown"` or `None` rather than failing):
//!
//! - `cpu.model` (text): `/proc/cpuinfo` `model name`; on ARM, a well-known core named by
//!   its `CPU implementer` and `CPU part` ids (e.g. `ARM Neoverse-N1`), else `Hardware` (the
//!   SoC), `Model` (the board) or the raw ids; else `"unknown"`.
//! - `cpu.arch` (text): the architecture naac was built for (`x86_64`, `aarch64`, ...).
//! - `cpu.cores` (count): logical cores this process may use (CPU affinity and the cgroup's
//!   CPU quota included).
//! - `cpu.features` (names): notable instruction-set extensions the CPU has, out of x86
//!   `sse4.2 avx avx2 avx512f fma bmi2 aes sha` or aarch64
//!   `neon sve sve2 aes sha2 sha3 crc lse dotprod fp16 i8mm bf16`.
//! - `cpu.score` (giga-fuel per second, one core): a built-in WebAssembly benchmark, below.
//! - `memory.total`, `memory.available` (bytes): `/proc/meminfo` `MemTotal` and
//!   `MemAvailable` (`MemFree` on kernels before 3.14), narrowed to this process's cgroup
//!   memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`; less what the cgroup
//!   uses) when that is lower.
//! - `disk.free`, `disk.total` (bytes): `statvfs` of the data dir: blocks available to
//!   unprivileged users, and all blocks, times the fragment size.
//! - `gpus` (vendor, model, bytes of memory): NVIDIA only, through NVML
//!   (`libnvidia-ml.so.1`, from the driver); empty when there is no driver.
//! - `power.on_ac` (yes, no, unknown) and `power.battery_percent` (0–100):
//!   `/sys/class/power_supply/*`, below.
//! - `availability` (0–1): the share of the last 7 days this node was up, from
//!   `uptime.json` in the data dir, below.
//! - `network`: not probed here (the daemon fills it in).
//! - `probed_at_ms` (Unix time, ms): when [`DeviceManager::refresh`] last ran.
//!
//! **Compute score.** Fuel is what the sandbox meters and bills: about one unit per
//! WebAssembly instruction. The score is the fuel one core burns per second, in billions,
//! running naac's own test guest in the real sandbox with the settings tasks get (NaN
//! canonicalization included): the `pi` kernel (a 64-bit integer PRNG feeding float
//! multiply-adds) and the `sha256` kernel (32-bit integer rotations and shifts over a small
//! buffer), three runs of each (~25 ms a run on a 2020s server core), interleaved; the
//! fastest run of each kernel counts and the two rates are combined by geometric mean.
//! Since fuel is the billing unit, a host with score 2 finishes a task about twice as fast
//! as one with score 1. The score is measured once per hardware fingerprint (CPU model,
//! architecture, cores, features, naac version) and kept in `device.json` in the data dir;
//! a missing or corrupt file, or a changed fingerprint, means a new measurement (~0.15 s,
//! plus ~0.15 s to compile the guest). Each run is timed by the CPU time of the thread that
//! runs it, not the wall clock, so other programs competing for the core do not lower the
//! score (they still slow it a little through shared caches and hyper-threads); delete
//! `device.json` to measure again.
//!
//! **Power.** A supply of type `Mains` or `USB*` that is `online` means on AC; a system
//! battery (type `Battery`, not `scope` `Device` like a wireless mouse's) that is
//! `Discharging` means on battery, and wins over an online supply (a charger too weak to keep
//! up still drains the battery). With a battery, supplies that are all offline mean on
//! battery, and a battery `Charging`, `Full` or `Not charging` with no supply information
//! means on AC. Without a battery or an online supply (servers, VMs, a desktop whose USB-C
//! ports show up as offline supplies) it is unknown.
//!
//! **Availability.** Up time is kept as a list of `[start_ms, end_ms]` intervals, one per
//! run of the node: the current one is extended every 30 s (so a crash loses at most 30 s of
//! up time); intervals older than 7 days are pruned and at most 1024 are kept.
//!
//! The daemon also reads the host's CPU load ([`cpu_times`], [`own_cpu_ticks`]) and the
//! owner's keyboard and mouse activity ([`input_interrupts`]) through this module.
//!
//! This file holds the [`DeviceManager`], which assembles the probes; each probe lives in
//! its own submodule (`cpu`, `memory`, `disk`, `gpu`, `power`, `score`, `uptime`, `load`,
//! `input`), re-exported here.

use anyhow::Context as _;
use naac_types::host::Resources;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Home;

mod cpu;
mod disk;
mod gpu;
mod input;
mod load;
mod memory;
mod power;
mod score;
mod uptime;

pub use cpu::probe_cpu;
pub use disk::probe_disk;
pub use gpu::probe_gpus;
pub use input::input_interrupts;
pub use load::{CpuTimes, cpu_ticks_of, cpu_ticks_with_children_of, cpu_times, own_cpu_ticks};
pub use memory::probe_memory;
pub use power::{SYSFS_POWER_SUPPLY, probe_power};
use score::{Fingerprint, score_for};
pub use score::{ScoreOrigin, measure_score};
pub use uptime::Uptime;

/// How often [`DeviceManager::refresh`] writes the up-time file.
const UPTIME_WRITE_EVERY_MS: u64 = 30_000;

/// Keeps this host's [`Resources`] current.
#[derive(Debug)]
pub struct DeviceManager {
    home: Home,
    resources: Resources,
    fingerprint: Fingerprint,
    score_origin: ScoreOrigin,
    uptime: Uptime,
    uptime_written_ms: u64,
}

impl DeviceManager {
    /// Probes everything once (the compute score from cache or measured; GPUs once).
    /// Creates the data dir if needed. Blocking: call from `spawn_blocking`.
    pub fn start(home: &Home) -> anyhow::Result<DeviceManager> {
        home.ensure()?;
        let mut cpu = probe_cpu();
        let fingerprint = Fingerprint::of(&cpu);
        let (score, score_origin) = score_for(home, &fingerprint)?;
        cpu.score = score;
        let gpus = probe_gpus();
        let now = now_ms();
        let mut uptime = Uptime::open(&home.uptime(), now);
        if let Err(e) = uptime.touch(now) {
            tracing::warn!("cannot record up time: {e:#}");
        }
        let mut dm = DeviceManager {
            home: home.clone(),
            resources: Resources {
                cpu,
                gpus,
                ..Resources::default()
            },
            fingerprint,
            score_origin,
            uptime,
            uptime_written_ms: now,
        };
        dm.refresh_changing(now);
        let r = &dm.resources;
        tracing::info!(
            "device: {} ({} cores, {}), score {:.2} giga-fuel/s per core ({}), {} GPU(s)",
            r.cpu.model,
            r.cpu.cores,
            r.cpu.arch,
            r.cpu.score,
            match score_origin {
                ScoreOrigin::Cached => "cached",
                ScoreOrigin::Measured => "measured",
            },
            r.gpus.len()
        );
        Ok(dm)
    }

    /// Re-reads the cheap, changing things (memory available, disk free, power,
    /// availability) and returns the current snapshot; also re-checks the hardware
    /// fingerprint and re-measures the score if it changed. Writes the up-time file when
    /// 30 s have passed since the last write, so calling this at least every 30 s keeps up
    /// time recorded. Blocking but fast (a few ms) apart from a re-measure.
    pub fn refresh(&mut self) -> &Resources {
        let now = now_ms();
        let mut cpu = probe_cpu();
        let fingerprint = Fingerprint::of(&cpu);
        cpu.score = self.resources.cpu.score;
        if fingerprint != self.fingerprint {
            tracing::info!(
                "hardware changed ({} cores, {}): checking the compute score",
                cpu.cores,
                cpu.model
            );
            match score_for(&self.home, &fingerprint) {
                Ok((score, origin)) => {
                    cpu.score = score;
                    self.score_origin = origin;
                }
                // Keep the old score; the new fingerprint is kept too, so a broken sandbox
                // is not re-tried on every refresh.
                Err(e) => tracing::warn!("cannot measure the compute score: {e:#}"),
            }
            self.fingerprint = fingerprint;
        }
        self.resources.cpu = cpu;
        if now.saturating_sub(self.uptime_written_ms) >= UPTIME_WRITE_EVERY_MS {
            if let Err(e) = self.uptime.touch(now) {
                tracing::warn!("cannot record up time: {e:#}");
            }
            self.uptime_written_ms = now;
        }
        self.refresh_changing(now);
        &self.resources
    }

    /// [`refresh`](Self::refresh), and the GPUs probed again (NVML can take a few hundred
    /// ms to start): for the slow refresh, every few minutes.
    pub fn refresh_slow(&mut self) -> &Resources {
        self.resources.gpus = probe_gpus();
        self.refresh()
    }

    /// The snapshot of the last refresh.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// Whether the current score was read from the cache or measured by this process.
    pub fn score_origin(&self) -> ScoreOrigin {
        self.score_origin
    }

    fn refresh_changing(&mut self, now: u64) {
        let r = &mut self.resources;
        r.memory = probe_memory();
        r.disk = probe_disk(self.home.root());
        r.power = probe_power(Path::new(SYSFS_POWER_SUPPLY));
        r.availability = self.uptime.fraction(now);
        r.probed_at_ms = now;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so readers see the old content or the new, never a mix.
fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("write {}", path.display()))?;
    if sync {
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("sync {}", path.display()))?;
    }
    tmp.persist(path)
        .with_context(|| format!("replace {}", path.display()))?;
    Ok(())
}
