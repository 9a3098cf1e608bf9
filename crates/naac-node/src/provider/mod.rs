//! The provider: runs tasks for any requester that reaches it.
//!
//! Inbound `Assign`s are acknowledged at once; each task then waits for its module and input
//! blobs (fetched once from the requester and checked against their hashes) and for a free
//! slot, runs in the sandbox on a blocking thread, and its result joins the job's outbox. One
//! `Report` per job is in flight at a time, so results batch up naturally under load; a
//! heartbeat report renews the leases of held tasks every [`HEARTBEAT`]. A requester that
//! disconnects has its tasks cancelled. Nothing a requester or a guest does stops the node.
//!
//! Every result is signed with the node's key over its [`naac_types::ResultRecord`] (job,
//! task, module, inputs, output digest, outcome, fuel). A guest's checkpoints are sent to the
//! requester as they are taken (one upload per task at a time; a checkpoint taken while the
//! previous one is still uploading is skipped), and a task assigned with `resume` starts from
//! one.
//!
//! Testing aids make misbehaviour reproducible: `faulty` returns a wrong output
//! ([`Fault::Wrong`]) or claims the task's whole fuel limit ([`Fault::Fuel`]) for a fraction
//! of tasks (still signed: a cheater signs its own lies), and `slowdown` makes the node hold
//! every result for that many times the task's run time.
//!
//! Parts: [`admission`] (may this peer's `Hello` and `Assign` be served: pure), [`escrows`]
//! (the escrows a provider paid at a bank has looked at, and when to believe a failed
//! check: pure), [`claims`] (what it may claim from an escrow a payer left unpaid: pure),
//! `paid.rs` (the shell's paid side: escrow looks and checks, claims), [`passes`] (pool
//! tokens requesters show, and their grants' slot counts), [`runner`]
//! (blobs, slots, sandbox, signing), [`reports`] (what each job holds and reports: pure),
//! `control.rs` (the owner's policy, device and storage, status and offers) and `node.rs`
//! (the shell: [`run`] builds the node's network and sandbox, [`serve`] takes them).

pub mod admission;
pub mod claims;
mod control;
pub mod escrows;
pub mod held;
mod node;
mod paid;
pub mod passes;
mod replies;
pub mod reports;
pub mod runner;
mod services;

pub use node::{Deps, run, serve};

use crate::Home;
use std::time::Duration;

/// The shortest claim window a provider paid at a bank accepts by default.
pub const DEFAULT_MIN_CLAIM_WINDOW: Duration = Duration::from_secs(60);

/// How often a provider renews the leases of the tasks it holds.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// How often the owner's policy and activity are checked while tasks are held (pause latency
/// is this plus an epoch tick); an idle node checks every second.
pub const POLICY_POLL: Duration = Duration::from_millis(100);

/// The compiled-module cache's quota under an owner's `storage_quota` (which the cache dir
/// counts toward, beside the tasks' scratch): a quarter of it, at most the sandbox's default
/// (1 GiB); a node with no owner policy keeps that default.
pub fn module_cache_quota(storage_quota: u64) -> u64 {
    (storage_quota / 4).min(naac_sandbox::SandboxConfig::DEFAULT_CACHE_QUOTA)
}

/// Testing aids: how a provider misbehaves on purpose, for a fraction of tasks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Returns a wrong output (signed: a cheater signs its own lies).
    Wrong(f64),
    /// Returns the right output but claims the task's whole fuel limit (overbilling).
    Fuel(f64),
}

/// Provider settings.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub home: Home,
    /// Tasks run at once.
    pub slots: u32,
    pub net: naac_net::Config,
    /// Who runs this node, announced so requesters keep replicas of one task apart.
    pub owner: Option<String>,
    /// Testing aid: return a wrong output for this fraction of tasks.
    pub faulty: Option<Fault>,
    /// Testing aid: hold each result for this many times its run time (1 = normal speed).
    pub slowdown: f64,
    /// Obey the owner's policy file and probe the device (off for embedded pools, which run
    /// their own user's job on their own machine).
    pub owner_policy: bool,
    /// Asking price per giga-fuel before the owner's window multiplier; the policy's
    /// `min_price` is the floor.
    pub price: naac_types::Price,
    /// This node is also the pool's bank: bank requests go here.
    pub bank: Option<crate::bank::BankHandle>,
    /// The bank this provider is paid at (its address, with `/p2p/`): it bids only for jobs
    /// whose escrow is there, and runs paid work only while that escrow pays for it.
    /// `None`: it takes the requester's word.
    pub paid_at: Option<naac_net::Multiaddr>,
    /// With `paid_at`: the shortest claim window an escrow must give (how long this node may
    /// claim results the payer left unpaid once it closes the escrow).
    pub min_claim_window: Duration,
    /// Run tasks (a node may be only a bank).
    pub provide: bool,
    /// Lend disk: hold shards of stored data within the owner's storage quota.
    pub store: bool,
    /// Asking price per GiB-day of storage.
    pub store_price: naac_types::Price,
    /// Testing aid: a storage host that misbehaves.
    pub store_fault: Option<crate::store::host::StoreFault>,
}

impl ProviderConfig {
    pub fn new(home: Home, slots: u32, net: naac_net::Config) -> Self {
        Self {
            home,
            slots,
            net,
            owner: None,
            faulty: None,
            slowdown: 1.0,
            owner_policy: true,
            price: naac_types::Price(0),
            bank: None,
            paid_at: None,
            min_claim_window: DEFAULT_MIN_CLAIM_WINDOW,
            provide: true,
            store: false,
            store_price: naac_types::Price(0),
            store_fault: None,
        }
    }
}
