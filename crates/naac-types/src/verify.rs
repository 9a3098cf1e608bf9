//! How much a job trusts its providers: the `[verify]` table of a job file.
//!
//! ```toml
//! [verify]
//! replicas = 3          # run every task on 3 distinct providers ...
//! quorum = 2            # ... and accept when 2 agree bit for bit
//! max_replicas = 5      # on disagreement, add replicas up to this many
//! adaptive = false      # BOINC-style: replicate less for providers with a verified streak
//! spot_check = 0.0      # fraction of tasks silently re-run elsewhere
//! verifier = "check.wasm"  # optional: a module that accepts or rejects each result
//! verifier_args = ["check", "{n}"]  # optional: its argv (default: the task's args)
//! min_reputation = 0.5  # providers scoring below this are not used
//! ```

use std::path::PathBuf;

/// Consecutive verified results after which adaptive replication starts sampling.
pub const DEFAULT_TRUST_AFTER: u32 = 10;
/// Most replicas of one task, whatever the job file says.
pub const MAX_REPLICAS: u32 = 16;

/// The verification level of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyPolicy {
    /// Copies of every task, on distinct providers.
    pub replicas: u32,
    /// Agreeing copies needed to accept a result.
    pub quorum: u32,
    /// Most copies of a task when copies disagree; then the task fails with `no_quorum`.
    pub max_replicas: u32,
    /// Replicate a task from a provider with a streak of `n` verified results only with
    /// probability `1/n` once `n >= trust_after`; always before.
    pub adaptive: bool,
    /// Verified results a provider needs before adaptive replication trusts it.
    pub trust_after: u32,
    /// Fraction of tasks re-run on another provider to check the first.
    pub spot_check: f64,
    /// Module that checks each result (exit 0 = acceptable).
    pub verifier: Option<PathBuf>,
    /// Providers whose reputation score is below this are not used.
    pub min_reputation: f64,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            replicas: 1,
            quorum: 1,
            max_replicas: 1,
            adaptive: false,
            trust_after: DEFAULT_TRUST_AFTER,
            spot_check: 0.0,
            verifier: None,
            min_reputation: 0.5,
        }
    }
}

impl VerifyPolicy {
    /// Whether any result may be compared against another provider's.
    pub fn compares(&self) -> bool {
        self.replicas > 1 || self.adaptive || self.spot_check > 0.0
    }

    /// Upper bound on copies per task for budgeting: `max_replicas`, or 3 when single
    /// copies may be checked (a check plus a tie-breaker).
    pub fn copies_bound(&self) -> u32 {
        self.max_replicas.max(if self.compares() { 3 } else { 1 })
    }
}
