//! What a host is and what it offers: the device manager's schema (probed by each node and
//! published with its offer), the owner policy's state (accepting, or paused and why) and the
//! limits a requester must respect. Plain data; the probes live in `naac-node`.
//!
//! Units: bytes for sizes, milliseconds for durations, percent as 0–100 integers, compute
//! scores in giga-fuel per second (see [`Cpu::score`]).

use serde::{Deserialize, Serialize};

/// Everything the device manager knows about one host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: Cpu,
    pub memory: Memory,
    /// Free space under the node's data dir (where tasks' scratch and storage live).
    pub disk: Disk,
    /// Empty when there is no GPU or no way to see one (no NVML library).
    pub gpus: Vec<Gpu>,
    pub power: Power,
    /// Round-trip time to each peer this node is connected to (libp2p ping), filled in by the
    /// daemon; the probes leave it empty.
    pub network: Vec<PeerRtt>,
    /// Fraction of the last 7 days this node was up (0–1), counted from its first start when
    /// that is more recent.
    pub availability: f64,
    /// Unix time (ms) of the probe.
    pub probed_at_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// e.g. "AMD EPYC 7B13"; "unknown" when the OS does not say.
    pub model: String,
    /// e.g. "x86_64", "aarch64".
    pub arch: String,
    /// Logical cores this process may use.
    pub cores: u32,
    /// Notable instruction-set features (e.g. "avx2", "neon").
    pub features: Vec<String>,
    /// Normalized compute score: giga-fuel (≈ billions of WebAssembly instructions) per
    /// second on one core, measured by a short built-in WebAssembly benchmark under the same
    /// sandbox settings tasks use. Comparable across hosts of different CPUs.
    pub score: f64,
}

impl Cpu {
    /// The whole host's compute: score × cores.
    pub fn total_score(&self) -> f64 {
        self.score * f64::from(self.cores)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub total: u64,
    pub available: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub free: u64,
    pub total: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    /// e.g. "nvidia".
    pub vendor: String,
    pub model: String,
    pub memory: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Power {
    /// `None`: unknown (no power supply information, e.g. a server or a VM).
    pub on_ac: Option<bool>,
    /// `None`: no battery.
    pub battery_percent: Option<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerRtt {
    pub peer: String,
    pub rtt_ms: f64,
}

/// Whether a host takes work now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostState {
    #[default]
    Accepting,
    /// Paused by its owner's policy; the text says why (e.g. "owner active").
    Paused(String),
}

impl HostState {
    pub fn is_accepting(&self) -> bool {
        matches!(self, HostState::Accepting)
    }
}

/// The limits of a host's policy that decide whether a task may go there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostLimits {
    /// Largest memory limit a task may ask for.
    pub max_task_memory: Option<u64>,
    /// Longest wall-clock limit a task may ask for (ms).
    pub max_task_runtime_ms: Option<u64>,
    /// Room left in the storage quota (inputs and outputs of tasks live there).
    pub storage_free: Option<u64>,
    /// Least price the owner takes (credits per giga-fuel), before the window multiplier.
    pub min_price: u64,
    /// The current time window's minimum price multiplier (1 outside priced windows).
    pub price_multiplier: f64,
    /// Share of the machine naac may use (percent of all cores).
    pub max_cpu_percent: u8,
    /// What its owner says it is (`labels` in `policy.toml`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}
