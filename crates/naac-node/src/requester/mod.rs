//! The requester: turns a job into tasks, drives the sans-IO scheduler over the network,
//! serves module and input blobs to providers, writes results as they arrive, runs the reduce
//! step and writes `summary.json`.
//!
//! [`prepare`] does everything that can fail because of the user's input (job file, module,
//! input files) before anything runs; [`run`] then needs only a network client.
//!
//! The IO shell is the [`session`]: it owns the network client, the scheduler, the payer and
//! the reputation store, and is the only part that drives the scheduler or pays. Everything
//! it decides with goes through parts that never touch IO and take `now` as an argument:
//!
//! - [`tally`]: result checks (signature, fuel, output names), verifier requests, votes and
//!   verdicts returned as "write this copy, pay these copies, change these reputations";
//! - [`checkpoints`]: the latest checkpoint of each open task, refcounted under a budget;
//! - [`bidding`]: sealed asks, the first bidding window, auction order and each run's terms;
//! - [`budget`]: the rolling escrow: how many copies it covers, when to top it up, and
//!   when the payer's balance pauses the job;
//! - [`assigns`]: sequence numbers of `Assign`s and what a provider holds but has not seen;
//! - [`watchdog`]: giving up when no provider comes, none may run the job, or tasks stall.
//!
//! The [`writer`] thread and the [`sandboxed`] verifier and reduce runs do the file and
//! sandbox IO off the event loop. Parts import nothing from the session.

mod accepted;
mod asks;
pub mod assigns;
pub mod bidding;
pub mod budget;
pub mod checkpoints;
mod dispatch;
mod events;
pub mod prepare;
pub mod sandboxed;
pub mod session;
pub mod stages;
pub mod stored;
pub mod tally;
pub mod watchdog;
pub mod writer;

pub use prepare::{
    MAX_INPUT_BYTES, PreparedJob, RunError, StoredModules, fetch_modules, prepare, prepare_with,
};
pub use sandboxed::VERIFIER_TIMEOUT;
pub use session::{Finished, Options, Payment, Progress, run};

/// The requester's own local workers (`naac run --local N`).
#[derive(Clone, Debug)]
pub struct Local {
    /// The owner name they give (unique per run).
    pub owner: String,
    pub workers: u32,
    /// They work on their own when no remote host is in view (`false`: only beside one).
    pub fallback: bool,
}

/// Most checkpoint bytes kept in memory for all open tasks together; beyond it new
/// checkpoints are refused (the older ones stay usable).
pub const CHECKPOINT_BUDGET: usize = checkpoints::BUDGET;
