//! The requester's task scheduler and verification policy as a sans-IO state machine.
//!
//! Events go in (a provider joined, a result came back, time passed), commands come out
//! (assign these tasks to that provider, cancel those, this result is accepted, the job is
//! finished). No clocks, no sockets, no threads, no OS randomness: the caller passes the
//! current time ([`Millis`]) and a seed, and performs the commands, so the same code runs
//! under the daemon and under a simulator or a unit test with a fake clock.
//!
//! **Runs and votes.** A task is `open` until it is `accepted` or `failed`. While open it has
//! zero or more *runs* (copies assigned to distinct providers, each an `(attempt, provider)`
//! lease) and collects *votes* (the output digest each provider returned). It needs `need`
//! votes and accepts a digest that `quorum` of them share:
//!
//! * plain jobs: `need = quorum = 1`, the first result wins;
//! * `replicas = k, quorum = q`: `need = k` copies on providers with no owner or network in
//!   common; when the votes are in and no digest has `q`, more copies are added (just enough
//!   that a quorum becomes possible) up to `max_replicas`, else the task fails `no_quorum`;
//! * `adaptive`: a task's first provider decides. Until it has `trust_after` verified results
//!   in a row the task is replicated (`need = quorum = 2`); after that only with probability
//!   `1/streak`. A result accepted on one unchecked vote is remembered; when that provider is
//!   later caught disagreeing, its streak resets and its recent unchecked results are
//!   re-opened and checked on another provider;
//! * `spot_check = r`: a fraction `r` of tasks silently get a second copy (`need = quorum =
//!   2`); the copies are identical, so no provider can tell a check from a normal task.
//!
//! **Failures.** A run that fails (trap, lost provider, lapsed lease, missing from a report,
//! rejected by a verifier) ends; the task gets another copy, preferring another provider,
//! until its retry budget is spent.
//!
//! **Stragglers.** When no work is waiting and a provider has room, a run that has been out
//! longer than `straggler_factor` × the median task time gets one speculative copy on another
//! provider; the first result to be accepted wins and the other copy is cancelled.
//!
//! Each provider is kept fed with a small queue beyond its slots, sized from the observed
//! task duration, so no slot waits on a network round trip while long tasks do not pile up
//! behind one host.

mod dag;
mod events;
mod model;
mod placement;
mod runs;
mod straggler;
mod verify;

pub use dag::{StageError, StageSpec};
pub use model::ProviderInfo;

use model::{Departed, Provider, Task};
use naac_types::{ContentId, FailureKind, VerifyPolicy};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;

/// Milliseconds on the caller's clock (monotonic, any origin).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// Index of a task within its job (0-based, in sweep order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u32);

/// Which run of a task this is; the first run is attempt 1. Copies of a task running at the
/// same time have different attempts.
pub type Attempt = u32;

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Failed or lost runs a task may have before it fails for good.
    pub retries: u32,
    /// How long an assignment stays valid without a renewal from its provider.
    pub lease_ms: u64,
    /// How much work (in milliseconds of observed task time) to keep queued per slot
    /// beyond the running task, to hide the network round trip.
    pub queue_target_ms: u64,
    /// Upper bound on queued tasks per slot, whatever the task duration.
    pub max_queue_per_slot: u32,
    /// A task assigned at least this long ago that its provider does not list as held is
    /// lost (the assignment or its result went missing).
    pub reconcile_grace_ms: u64,
    /// Replication, quorum, adaptive replication and spot checks.
    pub verify: VerifyPolicy,
    /// Speculate on runs out longer than this many times the median; 0 turns it off.
    pub straggler_factor: f64,
    /// Runs shorter than this are never stragglers, however fast the median.
    pub straggler_min_ms: u64,
    /// Seeds the random choices (adaptive sampling, spot checks).
    pub seed: u64,
    /// Unchecked results remembered per provider for re-checking if it is caught.
    pub recheck_window: usize,
}

/// Most slots a provider may claim; more is treated as this many.
pub const MAX_SLOTS: u32 = 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            retries: 3,
            lease_ms: 10_000,
            queue_target_ms: 20,
            max_queue_per_slot: 64,
            reconcile_grace_ms: 5_000,
            verify: VerifyPolicy::default(),
            straggler_factor: 3.0,
            straggler_min_ms: 250,
            seed: 0,
            recheck_window: 128,
        }
    }
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<P> {
    /// Send these tasks to the provider.
    Assign {
        provider: P,
        tasks: Vec<(TaskId, Attempt)>,
    },
    /// Tell the provider to drop these attempts (reassigned, decided, or the job ended).
    Cancel {
        provider: P,
        tasks: Vec<(TaskId, Attempt)>,
    },
    /// The task's votes were judged. `accepted` is the winning digest (keep that result,
    /// replacing any earlier one for the task), or `None` when no quorum formed (a
    /// `TaskFailed` follows). `verified` is true when at least two distinct providers agreed.
    /// `votes` lists every provider's digest, so the losing side can be reported.
    Verdict {
        task: TaskId,
        accepted: Option<ContentId>,
        verified: bool,
        votes: Vec<(P, ContentId)>,
    },
    /// A result accepted earlier on one provider's word is being checked again, because
    /// that provider was caught returning a wrong result elsewhere.
    Reopened { task: TaskId, provider: P },
    /// The task failed for good; `kind` is the last run's failure. A result accepted for it
    /// earlier (before a re-check) is void.
    TaskFailed { task: TaskId, kind: FailureKind },
    /// These runs of the provider were lost (it vanished, its lease lapsed, or it forgot
    /// them).
    Lost { provider: P, tasks: Vec<TaskId> },
    /// A task of a later stage runs again: a re-check accepted a different result for a
    /// task it took input from. An earlier result of it stands (and feeds its own
    /// dependents) until a new verdict replaces it or a `TaskFailed` voids it.
    Reset { task: TaskId },
    /// An accepted task runs again because every copy of an output it made is gone
    /// (lineage); its new result must be the one accepted before.
    Recompute { task: TaskId },
    /// Every task is accepted or failed.
    JobFinished,
}

/// Counts for progress displays and figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: u32,
    pub succeeded: u32,
    pub failed: u32,
    /// Open tasks with at least one run out.
    pub running: u32,
    pub pending: u32,
    /// Tasks that needed more than one attempt because a run failed or was lost.
    pub retried: u32,
    pub providers: u32,
    /// Runs out right now (copies included).
    pub runs: u32,
    /// Runs started so far (copies, retries and speculation included).
    pub started: u64,
    /// Tasks accepted on the agreement of two or more providers.
    pub verified: u32,
    /// Disagreements seen (verdicts with a losing side).
    pub disagreements: u32,
    /// Accepted results re-opened for a check.
    pub rechecked: u32,
    /// Speculative copies started for stragglers.
    pub speculative: u32,
}

/// The scheduler for one job. `P` identifies a provider (a libp2p `PeerId` in the daemon,
/// a small integer in tests).
#[derive(Debug)]
pub struct Scheduler<P> {
    config: Config,
    total: u32,
    /// Fresh tasks are handed out in index order from `next_fresh`, so a sweep of millions
    /// needs no queue; tasks below it have a state in `tasks`.
    next_fresh: u32,
    tasks: Vec<Task<P>>,
    /// Open tasks that want another copy, oldest first; they go before fresh tasks.
    waiting: VecDeque<TaskId>,
    /// Open tasks with at least one run out.
    active: BTreeSet<TaskId>,
    providers: HashMap<P, Provider>,
    /// Providers that left during the job.
    departed: HashMap<P, Departed>,
    /// Providers in preference order (see [`Scheduler::set_preference`]), then join order,
    /// for deterministic assignment.
    order: Vec<P>,
    commands: VecDeque<Command<P>>,
    progress: Progress,
    /// Exponential moving average of run time in milliseconds; `None` until the first result.
    mean_run_ms: Option<f64>,
    /// Recent run times (assignment to result), for the straggler median.
    durations: VecDeque<u64>,
    median_cache: Option<u64>,
    rng: u64,
    finished: bool,
    /// At most this many runs started in all (the copies a paid job's escrow covers);
    /// `None`: no limit. See [`Scheduler::set_start_limit`].
    start_limit: Option<u64>,
    /// Tasks accepted by an earlier run of this job (see [`Scheduler::keep_accepted`]):
    /// never handed out.
    kept: BTreeSet<u32>,
    /// A job of stages: the DAG and its per-stage state (`None`: one stage).
    stages: Option<dag::Stages>,
}

impl<P: Clone + Eq + Hash + std::fmt::Debug> Scheduler<P> {
    pub fn new(total: u32, config: Config) -> Self {
        let rng = config.seed ^ 0x9e37_79b9_7f4a_7c15;
        let mut s = Self {
            config,
            total,
            next_fresh: 0,
            tasks: Vec::new(),
            waiting: VecDeque::new(),
            active: BTreeSet::new(),
            providers: HashMap::new(),
            departed: HashMap::new(),
            order: Vec::new(),
            commands: VecDeque::new(),
            progress: Progress {
                total,
                ..Progress::default()
            },
            mean_run_ms: None,
            durations: VecDeque::new(),
            median_cache: None,
            rng,
            finished: false,
            start_limit: None,
            kept: BTreeSet::new(),
            stages: None,
        };
        s.check_finished();
        s
    }

    /// Counts `tasks` as accepted already (their results kept from an earlier run of the
    /// same job, e.g. before a restart): they are never run again. Call before the first
    /// provider joins. Indexes out of range and repeats are ignored.
    pub fn keep_accepted(&mut self, tasks: impl IntoIterator<Item = u32>) {
        if self.stages.is_some() {
            // Every task has a state already: mark it, and release what waits on it.
            for t in tasks {
                let Some(task) = self.tasks.get_mut(t as usize) else {
                    continue;
                };
                if task.status != model::Status::Open {
                    continue;
                }
                task.status = model::Status::Accepted { verified: false };
                task.released = true;
                task.accepted = Some(ContentId([0; 32]));
                self.progress.succeeded += 1;
                self.on_accepted(TaskId(t), None, ContentId([0; 32]));
            }
            self.check_finished();
            return;
        }
        for t in tasks {
            if t < self.total && t >= self.next_fresh && self.kept.insert(t) {
                self.progress.succeeded += 1;
            }
        }
        self.check_finished();
    }

    /// The next command to perform, if any.
    pub fn poll_command(&mut self) -> Option<Command<P>> {
        self.commands.pop_front()
    }

    pub fn progress(&self) -> Progress {
        let mut p = self.progress;
        p.running = self.active.len() as u32;
        p.pending = self.total - p.succeeded - p.failed - p.running;
        p.providers = self.providers.len() as u32;
        p
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn check_finished(&mut self) {
        if !self.finished && self.progress.succeeded + self.progress.failed == self.total {
            self.finished = true;
            // Nothing more is needed: drop copies still out.
            let open: Vec<TaskId> = self.active.iter().copied().collect();
            for t in open {
                self.cancel_runs(t);
            }
            self.commands.push_back(Command::JobFinished);
        }
    }
}

#[cfg(test)]
mod tests;
