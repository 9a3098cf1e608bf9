//! A task's run: its resource [`Limits`], how one attempt ended ([`Outcome`]) and why a
//! task failed for good ([`FailureKind`]).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Per-task resource limits, enforced by the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel budget: roughly one unit per WebAssembly instruction.
    pub fuel: u64,
    /// Maximum linear memory, in bytes.
    pub memory: u64,
    /// Wall-clock limit, in milliseconds.
    pub timeout_ms: u64,
}

impl Limits {
    /// 100 G instructions: tens of seconds of work on a desktop core.
    pub const DEFAULT_FUEL: u64 = 100_000_000_000;
    /// 256 MiB of linear memory.
    pub const DEFAULT_MEMORY: u64 = 256 << 20;
    /// Five minutes.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
    /// Largest memory a task may ask for: 4 GiB, the wasm32 address space.
    pub const MAX_MEMORY: u64 = 4 << 30;

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: Self::DEFAULT_FUEL,
            memory: Self::DEFAULT_MEMORY,
            timeout_ms: Self::DEFAULT_TIMEOUT.as_millis() as u64,
        }
    }
}

/// How one run of a task ended. Everything but `Ok` is a failure of that attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `_start` returned or the guest called `exit(0)`.
    Ok,
    /// The guest exited with a non-zero code.
    Exit,
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, output too big, ...).
    Trap,
    /// The fuel budget ran out.
    OutOfFuel,
    /// The wall-clock limit passed.
    Timeout,
    /// The guest tried to grow its memory past the limit.
    Memory,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Exit => "exit",
            Outcome::Trap => "trap",
            Outcome::OutOfFuel => "out_of_fuel",
            Outcome::Timeout => "timeout",
            Outcome::Memory => "memory",
        }
    }
}

/// Why a task failed for good, as reported in `summary.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Exit,
    Trap,
    OutOfFuel,
    Timeout,
    Memory,
    /// Retries ran out after the providers running it vanished or let their lease lapse.
    Lost,
    /// The provider could not run it at all (could not fetch the module, bad input, ...).
    Rejected,
    /// Its replicas disagreed and no result reached the quorum within `max_replicas`.
    NoQuorum,
    /// The job's verifier module rejected every result returned for it.
    Unverified,
    /// A task of an earlier stage it takes input from failed.
    Upstream,
}

impl FailureKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Exit => "exit",
            FailureKind::Trap => "trap",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Lost => "lost",
            FailureKind::Rejected => "rejected",
            FailureKind::NoQuorum => "no_quorum",
            FailureKind::Unverified => "unverified",
            FailureKind::Upstream => "upstream",
        }
    }

    /// The failure kind for a failed outcome; `None` for `Ok`.
    pub fn from_outcome(o: Outcome) -> Option<Self> {
        Some(match o {
            Outcome::Ok => return None,
            Outcome::Exit => FailureKind::Exit,
            Outcome::Trap => FailureKind::Trap,
            Outcome::OutOfFuel => FailureKind::OutOfFuel,
            Outcome::Timeout => FailureKind::Timeout,
            Outcome::Memory => FailureKind::Memory,
        })
    }
}
