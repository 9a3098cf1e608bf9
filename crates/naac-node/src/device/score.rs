//! The compute score: the built-in WebAssembly benchmark ([`measure_score`]) and its
//! cache in `device.json`, keyed by the hardware fingerprint.

use anyhow::Context as _;
use naac_sandbox::{Sandbox, SandboxConfig, TaskRun};
use naac_types::host::Cpu;
use naac_types::{ContentId, Limits, Outcome};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{now_ms, write_atomically};
use crate::Home;

/// The benchmark guest (naac's test guest, committed with the source).
const TESTKIT: &[u8] = include_bytes!("../../../../examples/testkit/testkit.wasm");

/// Benchmark runs per kernel; the fastest counts.
const BENCH_RUNS: usize = 3;

/// `pi` samples per benchmark run (~25 ms on a 2020s server core, 375 M fuel).
const BENCH_PI_SAMPLES: u64 = 5_000_000;

/// `sha256` rounds per benchmark run (~25 ms on a 2020s server core, 530 M fuel).
const BENCH_SHA_ROUNDS: u64 = 100_000;

/// Part of the fingerprint: bump when the benchmark changes, so cached scores are re-measured.
const BENCH_VERSION: u32 = 1;

/// Scores cached in `device.json`, for as many fingerprints (newest first).
const MAX_CACHED_SCORES: usize = 8;

/// Whether the compute score came from `device.json` or was measured by this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreOrigin {
    /// Read from `device.json`, measured earlier on the same hardware.
    Cached,
    /// Measured by this process (and written to `device.json`).
    Measured,
}

/// What a cached score is valid for: when any of it changes, the score is measured again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Fingerprint {
    model: String,
    arch: String,
    cores: u32,
    features: Vec<String>,
    naac_version: String,
    bench: u32,
}

impl Fingerprint {
    pub(super) fn of(cpu: &Cpu) -> Self {
        Self {
            model: cpu.model.clone(),
            arch: cpu.arch.clone(),
            cores: cpu.cores,
            features: cpu.features.clone(),
            naac_version: env!("CARGO_PKG_VERSION").to_string(),
            bench: BENCH_VERSION,
        }
    }
}

/// `device.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DeviceCache {
    /// Newest first.
    scores: Vec<CachedScore>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedScore {
    fingerprint: Fingerprint,
    score: f64,
    measured_at_ms: u64,
}

/// The score for `fingerprint`: from the cache, else measured (and cached).
pub(super) fn score_for(
    home: &Home,
    fingerprint: &Fingerprint,
) -> anyhow::Result<(f64, ScoreOrigin)> {
    let path = home.device_cache();
    let mut cache = read_device_cache(&path);
    if let Some(c) = cache
        .scores
        .iter()
        .find(|c| c.fingerprint == *fingerprint && c.score.is_finite() && c.score > 0.0)
    {
        return Ok((c.score, ScoreOrigin::Cached));
    }
    let score = measure_score(home.root()).context("measure the compute score")?;
    cache.scores.retain(|c| c.fingerprint != *fingerprint);
    cache.scores.insert(
        0,
        CachedScore {
            fingerprint: fingerprint.clone(),
            score,
            measured_at_ms: now_ms(),
        },
    );
    cache.scores.truncate(MAX_CACHED_SCORES);
    let written = serde_json::to_vec_pretty(&cache)
        .context("encode the device cache")
        .and_then(|bytes| write_atomically(&path, &bytes, true));
    if let Err(e) = written {
        tracing::warn!("cannot cache the compute score: {e:#}");
    }
    Ok((score, ScoreOrigin::Measured))
}

fn read_device_cache(path: &Path) -> DeviceCache {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!("ignoring device cache {}: {e}", path.display());
            }
            return DeviceCache::default();
        }
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::debug!("ignoring corrupt device cache {}: {e}", path.display());
        DeviceCache::default()
    })
}

/// Measures the compute score (giga-fuel per second on one core; see the [`device`](super)
/// module docs) by running the built-in benchmark in a fresh sandbox whose scratch is a
/// temporary directory inside `work_dir` (removed afterwards). Blocking; ~0.3 s on a
/// 2020s server core.
pub fn measure_score(work_dir: &Path) -> anyhow::Result<f64> {
    std::fs::create_dir_all(work_dir).with_context(|| format!("create {}", work_dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".bench-")
        .tempdir_in(work_dir)
        .with_context(|| format!("create a scratch dir in {}", work_dir.display()))?;
    let mut config = SandboxConfig::new(scratch.path().to_path_buf());
    config.max_concurrent = 1;
    let sandbox = Sandbox::start(config)?;
    let module = sandbox
        .compile(&ContentId::of(TESTKIT), TESTKIT)
        .context("compile the benchmark guest")?;
    // Giga-fuel per second of one run.
    let rate = |args: &[String]| -> anyhow::Result<f64> {
        let task = TaskRun {
            argv0: "bench".into(),
            env: Vec::new(),
            args: args.to_vec(),
            limits: Limits {
                fuel: u64::MAX / 4,
                memory: 64 << 20,
                timeout_ms: 60_000,
            },
            ..TaskRun::default()
        };
        // The guest runs on this thread: its CPU time, unlike wall time, does not count
        // the time other programs held the core, so a busy machine still measures close
        // to its real speed.
        let cpu0 = thread_cpu_time();
        let r = sandbox.run(&module, &task, &Arc::new(AtomicBool::new(false)))?;
        let cpu = thread_cpu_time().saturating_sub(cpu0);
        anyhow::ensure!(
            r.outcome == Outcome::Ok,
            "benchmark guest ({}) failed: {:?} {}",
            args.join(" "),
            r.outcome,
            r.message
        );
        // Thread CPU time is never more than wall time; fall back on wall time when the
        // clock is missing.
        let busy = if cpu.is_zero() {
            r.wall
        } else {
            cpu.min(r.wall)
        };
        tracing::debug!(
            "benchmark {}: {} fuel in {:?} of CPU time, {:?} wall",
            args.join(" "),
            r.fuel_used,
            cpu,
            r.wall
        );
        let secs = busy.max(Duration::from_micros(1)).as_secs_f64();
        Ok(r.fuel_used as f64 / secs / 1e9)
    };
    let pi_args = ["pi".to_string(), "1".into(), BENCH_PI_SAMPLES.to_string()];
    let sha_args = [
        "sha256".to_string(),
        "1".into(),
        BENCH_SHA_ROUNDS.to_string(),
    ];
    // Interleaved, so a burst of other load spoils one run of each kernel at most.
    let (mut pi, mut sha) = (0.0f64, 0.0f64);
    for _ in 0..BENCH_RUNS {
        pi = pi.max(rate(&pi_args)?);
        sha = sha.max(rate(&sha_args)?);
    }
    let score = (pi * sha).sqrt();
    tracing::debug!("compute score {score:.3} (pi {pi:.3}, sha256 {sha:.3}) giga-fuel/s");
    anyhow::ensure!(score.is_finite() && score > 0.0, "benchmark gave no score");
    Ok(score)
}

/// CPU time this thread has used (zero where the clock is missing).
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceManager;

    #[test]
    fn device_score_is_cached_by_fingerprint() {
        let d = tempfile::tempdir().expect("tempdir");
        let home = Home::at(d.path().join("home"));
        let first = DeviceManager::start(&home).expect("start");
        assert_eq!(first.score_origin(), ScoreOrigin::Measured);
        let score = first.resources().cpu.score;
        assert!(score > 0.0);
        assert!(first.resources().memory.total > 0);
        assert!(first.resources().disk.total > 0);
        assert!((first.resources().availability - 1.0).abs() < 1e-9);
        // The scratch dir is gone.
        let leftovers: Vec<_> = std::fs::read_dir(home.root())
            .expect("read home")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".bench-"))
            .collect();
        assert!(leftovers.is_empty());

        let mut second = DeviceManager::start(&home).expect("start");
        assert_eq!(second.score_origin(), ScoreOrigin::Cached);
        assert_eq!(second.resources().cpu.score, score);
        let r = second.refresh().clone();
        assert_eq!(second.score_origin(), ScoreOrigin::Cached);
        assert_eq!(r.cpu.score, score);
        assert!(r.probed_at_ms > 0);

        // Another machine's score in the file: measured again, and both kept.
        let mut cache: serde_json::Value =
            serde_json::from_slice(&std::fs::read(home.device_cache()).expect("read cache"))
                .expect("json");
        cache["scores"][0]["fingerprint"]["model"] = "Other CPU".into();
        std::fs::write(home.device_cache(), cache.to_string()).expect("write");
        let third = DeviceManager::start(&home).expect("start");
        assert_eq!(third.score_origin(), ScoreOrigin::Measured);
        assert!(third.resources().cpu.score > 0.0);
        let cache = read_device_cache(&home.device_cache());
        assert_eq!(cache.scores.len(), 2);
        assert_eq!(cache.scores[1].fingerprint.model, "Other CPU");

        // A corrupt file is ignored (and replaced).
        std::fs::write(home.device_cache(), "{not json").expect("write");
        let fourth = DeviceManager::start(&home).expect("start");
        assert_eq!(fourth.score_origin(), ScoreOrigin::Measured);
        assert_eq!(read_device_cache(&home.device_cache()).scores.len(), 1);
    }
}
