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

use naac_types::{ContentId, FailureKind, VerifyPolicy};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
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
/// Completed run times kept for the median.
const DURATION_SAMPLES: usize = 1001;
/// Completed runs needed before stragglers are judged.
const MIN_DURATION_SAMPLES: usize = 3;
/// Queue entries examined per provider per fill (tasks that cannot go to it are skipped).
const SCAN_BUDGET: usize = 512;
/// Tasks waiting for another copy beyond which no fresh tasks are started.
const MAX_WAITING: usize = 4096;

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

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Open,
    Accepted { verified: bool },
    Failed,
}

#[derive(Clone, Debug)]
struct Run<P> {
    provider: P,
    attempt: Attempt,
    since: Millis,
    speculative: bool,
}

#[derive(Clone, Debug)]
struct Task<P> {
    status: Status,
    runs: Vec<Run<P>>,
    votes: Vec<(P, ContentId)>,
    /// Votes wanted before judging.
    need: u32,
    quorum: u32,
    /// Attempts started so far.
    attempts: u32,
    /// Failed or lost runs.
    failures: u32,
    /// The provider of the last failed or lost run, avoided on retry when possible.
    avoid: Option<P>,
    /// In the waiting queue.
    queued: bool,
    /// Replication was decided by a trust sample (adaptive) and may be revised.
    sampled: bool,
}

impl<P> Task<P> {
    fn new() -> Self {
        Self {
            status: Status::Open,
            runs: Vec::new(),
            votes: Vec::new(),
            need: 1,
            quorum: 1,
            attempts: 0,
            failures: 0,
            avoid: None,
            queued: false,
            sampled: false,
        }
    }

    /// More copies wanted right now.
    fn wanted(&self) -> u32 {
        if self.status != Status::Open {
            return 0;
        }
        self.need
            .saturating_sub(self.votes.len() as u32 + self.runs.len() as u32)
    }

    /// Copies must be on independent providers.
    fn independent(&self) -> bool {
        self.need > 1 || !self.votes.is_empty()
    }
}

#[derive(Clone, Debug)]
struct Provider {
    slots: u32,
    /// Owner and network labels; copies of a task never share one.
    groups: Vec<String>,
    /// Tasks it has a run of (one run per task per provider).
    assigned: HashSet<TaskId>,
    lease_deadline: Millis,
    /// Its lease lapsed: no new work until it renews.
    lapsed: bool,
    /// Its owner's policy stopped it taking work (or this job does not fit it): it keeps
    /// what it holds but gets nothing new.
    paused: bool,
    /// Verified results in a row (for adaptive replication).
    streak: u32,
    /// Recent tasks accepted on its word alone, oldest first.
    unchecked: VecDeque<TaskId>,
}

/// What is kept of a provider that left: enough to keep copies apart from its votes, and
/// to hold it to account (its streak and unchecked results) if it comes back.
#[derive(Clone, Debug, Default)]
struct Departed {
    groups: Vec<String>,
    streak: u32,
    unchecked: VecDeque<TaskId>,
}

/// What the scheduler knows about a provider when it joins.
#[derive(Clone, Debug, Default)]
pub struct ProviderInfo {
    /// Parallel slots it offers.
    pub slots: u32,
    /// Labels such as `owner:alice` or `net:203.0.113.0/24`; copies of one task go to
    /// providers that share none.
    pub groups: Vec<String>,
    /// Verified results in a row so far (from the reputation store).
    pub streak: u32,
    /// It may not take new work yet (see [`Scheduler::set_paused`]).
    pub paused: bool,
}

impl ProviderInfo {
    pub fn slots(slots: u32) -> Self {
        Self {
            slots,
            ..Self::default()
        }
    }
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
        };
        s.check_finished();
        s
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

    /// The provider's current streak of verified results, if it is known.
    pub fn streak(&self, provider: &P) -> Option<u32> {
        self.providers
            .get(provider)
            .map(|p| p.streak)
            .or_else(|| self.departed.get(provider).map(|d| d.streak))
    }

    /// Asks for an independent second opinion on `task` before it is accepted (used for a
    /// result that resumed from another provider's checkpoint).
    pub fn require_check(&mut self, task: TaskId) {
        if !self.config.verify.compares() {
            return;
        }
        if let Some(t) = self.tasks.get_mut(task.0 as usize)
            && t.status == Status::Open
        {
            t.need = t.need.max(2);
            t.quorum = t.quorum.max(2);
            t.sampled = false;
        }
    }

    fn groups_of(&self, p: &P) -> Option<&Vec<String>> {
        self.providers
            .get(p)
            .map(|x| &x.groups)
            .or_else(|| self.departed.get(p).map(|d| &d.groups))
    }

    /// Whether `provider` shares an identity or a group with another provider that ran or
    /// voted on `task`.
    fn conflicts(&self, task: TaskId, provider: &P) -> bool {
        let t = &self.tasks[task.0 as usize];
        let mine = self.groups_of(provider);
        t.runs
            .iter()
            .map(|r| &r.provider)
            .chain(t.votes.iter().map(|(p, _)| p))
            .filter(|o| *o != provider)
            .any(|o| match (mine, self.groups_of(o)) {
                (Some(a), Some(b)) => a.iter().any(|g| b.contains(g)),
                _ => false,
            })
    }

    /// Whether `attempt` of `task` is out on `provider` right now.
    pub fn is_running(&self, provider: &P, task: TaskId, attempt: Attempt) -> bool {
        self.tasks.get(task.0 as usize).is_some_and(|t| {
            t.runs
                .iter()
                .any(|r| r.provider == *provider && r.attempt == attempt)
        })
    }

    /// Runs out and votes in for `task`.
    pub fn copies(&self, task: TaskId) -> (usize, usize) {
        self.tasks
            .get(task.0 as usize)
            .map_or((0, 0), |t| (t.runs.len(), t.votes.len()))
    }

    /// The median run time of completed runs, once there are enough of them.
    pub fn median_run_ms(&mut self) -> Option<u64> {
        if self.durations.len() < MIN_DURATION_SAMPLES {
            return None;
        }
        if self.median_cache.is_none() {
            let mut v: Vec<u64> = self.durations.iter().copied().collect();
            let mid = v.len() / 2;
            let (_, m, _) = v.select_nth_unstable(mid);
            self.median_cache = Some(*m);
        }
        self.median_cache
    }

    /// How many tasks `provider` may hold (running plus queued) right now.
    pub fn capacity(&self, provider: &P) -> u32 {
        self.providers
            .get(provider)
            .map(|p| self.capacity_of(p))
            .unwrap_or(0)
    }

    fn capacity_of(&self, p: &Provider) -> u32 {
        let extra_per_slot = match self.mean_run_ms {
            // Before any task finished: one queued task per provider.
            None => return p.slots + 1,
            Some(mean) => {
                let n = (self.config.queue_target_ms as f64 / mean.max(0.001)).floor();
                (n as u32).min(self.config.max_queue_per_slot)
            }
        };
        p.slots
            .saturating_add(p.slots.saturating_mul(extra_per_slot))
    }

    /// A provider offers work slots (again, if it was known: its slots and labels update).
    pub fn provider_joined(&mut self, provider: P, info: ProviderInfo, now: Millis) {
        let slots = info.slots.clamp(1, MAX_SLOTS);
        match self.providers.get_mut(&provider) {
            Some(p) => {
                p.slots = slots;
                p.groups = info.groups;
                p.lapsed = false;
                p.paused = info.paused;
                p.lease_deadline = now.plus(self.config.lease_ms);
            }
            None => {
                // A provider that left and came back keeps what it had (leaving does not
                // wipe its unchecked results or restore a lost streak).
                let back = self.departed.remove(&provider);
                let (streak, unchecked) = match back {
                    Some(d) => (d.streak, d.unchecked),
                    None => (info.streak, VecDeque::new()),
                };
                self.providers.insert(
                    provider.clone(),
                    Provider {
                        slots,
                        groups: info.groups,
                        assigned: HashSet::new(),
                        lease_deadline: now.plus(self.config.lease_ms),
                        lapsed: false,
                        paused: info.paused,
                        streak,
                        unchecked,
                    },
                );
                self.order.push(provider);
            }
        }
        self.fill(now);
    }

    /// The provider is gone (disconnected, refused us, banned): its runs are lost.
    pub fn provider_lost(&mut self, provider: &P, now: Millis) {
        let Some(p) = self.providers.remove(provider) else {
            return;
        };
        self.order.retain(|o| o != provider);
        self.departed.insert(
            provider.clone(),
            Departed {
                groups: p.groups,
                streak: p.streak,
                unchecked: p.unchecked,
            },
        );
        self.lose_runs(provider, p.assigned.into_iter().collect());
        self.fill(now);
        self.check_finished();
    }

    /// The provider may (`false`) or may not (`true`) take new work now; what it already
    /// holds stays with it. Unknown providers are ignored.
    pub fn set_paused(&mut self, provider: &P, paused: bool, now: Millis) {
        if let Some(p) = self.providers.get_mut(provider)
            && p.paused != paused
        {
            p.paused = paused;
            if !paused {
                self.fill(now);
            }
        }
    }

    /// Sets the order in which providers are offered work: the listed ones first, in this
    /// order (the market's auction ranking: cheapest ask, then reputation, then latency),
    /// then the rest in join order. Only who gets work first changes; nothing is reassigned.
    pub fn set_preference(&mut self, ranked: &[P], now: Millis) {
        let pos = |p: &P| ranked.iter().position(|r| r == p).unwrap_or(usize::MAX);
        // A stable sort keeps join order among the unranked.
        self.order.sort_by_key(|p| pos(p));
        self.fill(now);
    }

    /// Whether `provider` is known and not paused.
    pub fn is_available(&self, provider: &P) -> bool {
        self.providers.get(provider).is_some_and(|p| !p.paused)
    }

    /// The provider handed these runs back unfinished (its owner's policy stopped them):
    /// their tasks go to other providers without counting as failures. Runs it no longer
    /// has are ignored.
    pub fn runs_returned(&mut self, provider: &P, runs: &[(TaskId, Attempt)], now: Millis) {
        for (task, attempt) in runs {
            if !self.is_running(provider, *task, *attempt) {
                continue;
            }
            if self.take_run(*task, provider).is_some()
                && self.tasks[task.0 as usize].status == Status::Open
            {
                self.enqueue(*task);
            }
        }
        self.fill(now);
        self.check_finished();
    }

    /// The provider reported in: all its leases are renewed.
    pub fn renew(&mut self, provider: &P, now: Millis) {
        let lease = self.config.lease_ms;
        if let Some(p) = self.providers.get_mut(provider) {
            p.lease_deadline = now.plus(lease);
            if p.lapsed {
                p.lapsed = false;
                self.fill(now);
            }
        }
    }

    /// A provider returned a result with output digest `digest` for `attempt` of `task`.
    /// Returns `true` when the result counts as a vote: the caller keeps its bytes until a
    /// [`Command::Verdict`] for the task says which digest won. A late result from a run
    /// that was given up on still counts while the task is open.
    pub fn task_result(
        &mut self,
        provider: &P,
        task: TaskId,
        attempt: Attempt,
        digest: ContentId,
        now: Millis,
    ) -> bool {
        if !self.providers.contains_key(provider) {
            return false;
        }
        self.renew(provider, now);
        let Some(t) = self.tasks.get(task.0 as usize) else {
            return false;
        };
        if t.status != Status::Open || t.votes.iter().any(|(p, _)| p == provider) {
            return false;
        }
        let current = t
            .runs
            .iter()
            .any(|r| r.provider == *provider && r.attempt == attempt);
        // A late result must come from the provider whose run was given up on last, and
        // must not share an owner or network with the copies that replaced it.
        if !current && t.avoid.as_ref() != Some(provider) {
            return false;
        }
        if !current && t.independent() && self.conflicts(task, provider) {
            return false;
        }
        if let Some(run) = self.take_run(task, provider) {
            if run.attempt != attempt {
                self.commands.push_back(Command::Cancel {
                    provider: provider.clone(),
                    tasks: vec![(task, run.attempt)],
                });
            }
            self.record_duration(now.0.saturating_sub(run.since.0));
        }
        let t = &mut self.tasks[task.0 as usize];
        t.votes.push((provider.clone(), digest));
        // Adaptive: a provider that lost its trust since the task was sampled out gets
        // its result checked after all.
        if t.sampled && t.need == 1 && t.votes.len() == 1 {
            let trusted = self
                .providers
                .get(provider)
                .is_some_and(|p| p.streak >= self.config.verify.trust_after);
            if !trusted {
                let t = &mut self.tasks[task.0 as usize];
                t.need = 2;
                t.quorum = t.quorum.max(2);
            }
        }
        self.judge(task);
        self.fill(now);
        self.check_finished();
        true
    }

    /// A run failed on the provider (`kind` is never `Lost` here), or its result was
    /// refused (bad signature, rejected by the verifier). Stale reports (for a run that is
    /// no longer out) are ignored.
    pub fn task_failed(
        &mut self,
        provider: &P,
        task: TaskId,
        attempt: Attempt,
        kind: FailureKind,
        now: Millis,
    ) {
        self.renew(provider, now);
        // Runs of a closed task were cancelled, so "running" implies open.
        if !self.is_running(provider, task, attempt) {
            return;
        }
        let run = self.take_run(task, provider).expect("checked above");
        self.run_failed(task, run, kind);
        self.fill(now);
        self.check_finished();
    }

    /// The provider returned a result that was provably wrong (a verifier rejected it or
    /// its signature did not match): its trust is gone and its recent unchecked results
    /// are checked again. The run itself ends as a failure of kind `kind`.
    pub fn task_rejected(
        &mut self,
        provider: &P,
        task: TaskId,
        attempt: Attempt,
        kind: FailureKind,
        now: Millis,
    ) {
        self.distrust(provider);
        self.task_failed(provider, task, attempt, kind, now);
        self.fill(now);
        self.check_finished();
    }

    /// Time passed: lapse the leases of providers that stopped reporting, and look for
    /// stragglers.
    pub fn tick(&mut self, now: Millis) {
        let expired: Vec<P> = self
            .order
            .iter()
            .filter(|id| {
                // Only work can lapse: an idle provider owes us no reports.
                self.providers
                    .get(*id)
                    .is_some_and(|p| !p.lapsed && !p.assigned.is_empty() && p.lease_deadline < now)
            })
            .cloned()
            .collect();
        for id in expired {
            let p = self.providers.get_mut(&id).expect("listed in order");
            p.lapsed = true;
            let tasks: Vec<TaskId> = p.assigned.iter().copied().collect();
            let cancel = self.lose_runs(&id, tasks);
            self.commands.push_back(Command::Cancel {
                provider: id.clone(),
                tasks: cancel,
            });
        }
        self.fill(now);
        self.check_finished();
    }

    /// The provider reported which attempts it still holds (running, queued, or finished but
    /// not yet acknowledged). Runs assigned to it long enough ago that are missing from
    /// `held` went missing on the way (a lost assignment or result): they are lost.
    pub fn reconcile(&mut self, provider: &P, held: &[(TaskId, Attempt)], now: Millis) {
        let grace = self.config.reconcile_grace_ms;
        let Some(p) = self.providers.get(provider) else {
            return;
        };
        let held: HashSet<(TaskId, Attempt)> = held.iter().copied().collect();
        let missing: Vec<TaskId> = p
            .assigned
            .iter()
            .filter(|t| {
                self.tasks[t.0 as usize].runs.iter().any(|r| {
                    r.provider == *provider
                        && r.since.plus(grace) <= now
                        && !held.contains(&(**t, r.attempt))
                })
            })
            .copied()
            .collect();
        if missing.is_empty() {
            return;
        }
        self.lose_runs(provider, missing);
        self.fill(now);
        self.check_finished();
    }

    /// The provider's runs of `tasks` are lost: reported, ended, and their tasks retried.
    /// Returns the `(task, attempt)` pairs that were out.
    fn lose_runs(&mut self, provider: &P, mut tasks: Vec<TaskId>) -> Vec<(TaskId, Attempt)> {
        tasks.sort();
        let mut ended = Vec::with_capacity(tasks.len());
        for t in &tasks {
            if let Some(run) = self.take_run(*t, provider) {
                ended.push((*t, run.attempt));
                self.run_failed(*t, run, FailureKind::Lost);
            }
        }
        if !tasks.is_empty() {
            self.commands.push_back(Command::Lost {
                provider: provider.clone(),
                tasks,
            });
        }
        ended
    }

    /// Removes `provider`'s run of `task`, keeping the counters right.
    fn take_run(&mut self, task: TaskId, provider: &P) -> Option<Run<P>> {
        let t = self.tasks.get_mut(task.0 as usize)?;
        let i = t.runs.iter().position(|r| r.provider == *provider)?;
        let run = t.runs.swap_remove(i);
        if t.runs.is_empty() {
            self.active.remove(&task);
        }
        self.progress.runs -= 1;
        if let Some(p) = self.providers.get_mut(provider) {
            p.assigned.remove(&task);
        }
        Some(run)
    }

    /// The unchecked list and streak of a present or departed provider.
    fn trust_of(&mut self, provider: &P) -> Option<(&mut u32, &mut VecDeque<TaskId>)> {
        if let Some(p) = self.providers.get_mut(provider) {
            return Some((&mut p.streak, &mut p.unchecked));
        }
        self.departed
            .get_mut(provider)
            .map(|d| (&mut d.streak, &mut d.unchecked))
    }

    fn add_run(&mut self, task: TaskId, provider: &P, now: Millis, speculative: bool) -> Attempt {
        let t = &mut self.tasks[task.0 as usize];
        t.attempts += 1;
        let attempt = t.attempts;
        t.runs.push(Run {
            provider: provider.clone(),
            attempt,
            since: now,
            speculative,
        });
        self.active.insert(task);
        self.progress.runs += 1;
        self.progress.started += 1;
        if speculative {
            self.progress.speculative += 1;
        }
        let p = self
            .providers
            .get_mut(provider)
            .expect("assigning to a known provider");
        p.assigned.insert(task);
        // New work starts a full lease, even for a provider that was idle (and silent).
        p.lease_deadline = p.lease_deadline.max(now.plus(self.config.lease_ms));
        attempt
    }

    /// A run ended without a vote: retry the task or fail it for good.
    fn run_failed(&mut self, task: TaskId, run: Run<P>, kind: FailureKind) {
        let retries = self.config.retries;
        let t = &mut self.tasks[task.0 as usize];
        if t.status != Status::Open {
            return;
        }
        if run.speculative {
            // A spare copy failing says nothing about the task: the original is still out.
            self.enqueue(task);
            return;
        }
        t.failures += 1;
        if t.failures == 1 {
            self.progress.retried += 1;
        }
        t.avoid = Some(run.provider);
        if t.failures > retries {
            self.fail(task, kind);
        } else {
            self.enqueue(task);
        }
    }

    fn enqueue(&mut self, task: TaskId) {
        let t = &mut self.tasks[task.0 as usize];
        if !t.queued && t.wanted() > 0 {
            t.queued = true;
            self.waiting.push_back(task);
        }
    }

    fn fail(&mut self, task: TaskId, kind: FailureKind) {
        let t = &mut self.tasks[task.0 as usize];
        if let Status::Accepted { verified } = t.status {
            self.progress.succeeded -= 1;
            if verified {
                self.progress.verified -= 1;
            }
        }
        t.status = Status::Failed;
        self.progress.failed += 1;
        self.cancel_runs(task);
        self.commands.push_back(Command::TaskFailed { task, kind });
    }

    fn cancel_runs(&mut self, task: TaskId) {
        let runs: Vec<(P, Attempt)> = self.tasks[task.0 as usize]
            .runs
            .iter()
            .map(|r| (r.provider.clone(), r.attempt))
            .collect();
        for (provider, attempt) in runs {
            self.take_run(task, &provider);
            self.commands.push_back(Command::Cancel {
                provider,
                tasks: vec![(task, attempt)],
            });
        }
    }

    /// Looks at the votes of an open task: accept, wait, add copies, or give up.
    fn judge(&mut self, task: TaskId) {
        let t = &self.tasks[task.0 as usize];
        if t.status != Status::Open || t.votes.is_empty() {
            return;
        }
        let mut counts: Vec<(ContentId, u32)> = Vec::new();
        for (_, d) in &t.votes {
            match counts.iter_mut().find(|(c, _)| c == d) {
                Some((_, n)) => *n += 1,
                None => counts.push((*d, 1)),
            }
        }
        // Most votes first; ties by first seen.
        let (best, best_n) = counts
            .iter()
            .copied()
            .fold(None::<(ContentId, u32)>, |acc, (d, n)| match acc {
                Some((_, m)) if m >= n => acc,
                _ => Some((d, n)),
            })
            .expect("at least one vote");
        if best_n >= t.quorum {
            self.accept(task, best);
            return;
        }
        let votes = t.votes.len() as u32;
        if votes < t.need {
            // Copies still out (or to be started).
            self.enqueue(task);
            return;
        }
        // Every wanted vote is in and there is no quorum: add just enough copies that one
        // could form, if the budget allows.
        let short = t.quorum - best_n;
        let max = self.config.verify.max_replicas.max(t.quorum);
        if votes + short > max {
            let votes_list = t.votes.clone();
            self.progress.disagreements += 1;
            self.commands.push_back(Command::Verdict {
                task,
                accepted: None,
                verified: false,
                votes: votes_list,
            });
            self.fail(task, FailureKind::NoQuorum);
            return;
        }
        self.tasks[task.0 as usize].need = votes + short;
        self.enqueue(task);
    }

    fn accept(&mut self, task: TaskId, digest: ContentId) {
        let t = &mut self.tasks[task.0 as usize];
        let agreeing = t.votes.iter().filter(|(_, d)| *d == digest).count();
        let verified = agreeing >= 2;
        t.status = Status::Accepted { verified };
        t.queued = false;
        let votes = std::mem::take(&mut t.votes);
        self.progress.succeeded += 1;
        if verified {
            self.progress.verified += 1;
        }
        self.cancel_runs(task);
        let disagreed = votes.iter().any(|(_, d)| *d != digest);
        if disagreed {
            self.progress.disagreements += 1;
        }
        if verified {
            for (p, d) in &votes {
                if *d == digest
                    && let Some(pr) = self.providers.get_mut(p)
                {
                    pr.streak = pr.streak.saturating_add(1);
                }
            }
        } else if self.config.verify.compares() {
            // Accepted on one provider's word: remember it in case that provider is caught.
            let window = self.config.recheck_window;
            if let Some((_, unchecked)) = self.trust_of(&votes[0].0) {
                if unchecked.len() >= window {
                    unchecked.pop_front();
                }
                unchecked.push_back(task);
            }
        }
        // Keep the winning vote: a re-check needs to know whose word it was.
        self.tasks[task.0 as usize].votes = votes
            .iter()
            .filter(|(_, d)| *d == digest)
            .take(1)
            .cloned()
            .collect();
        self.commands.push_back(Command::Verdict {
            task,
            accepted: Some(digest),
            verified,
            votes: votes.clone(),
        });
        for (p, d) in &votes {
            if *d != digest {
                self.distrust(p);
            }
        }
    }

    /// The provider was caught with a wrong result: reset its streak and re-open the
    /// results accepted on its word alone.
    fn distrust(&mut self, provider: &P) {
        let finished = self.finished;
        let Some((streak, unchecked)) = self.trust_of(provider) else {
            return;
        };
        *streak = 0;
        if finished {
            return;
        }
        let unchecked: Vec<TaskId> = unchecked.drain(..).collect();
        for task in unchecked {
            let t = &mut self.tasks[task.0 as usize];
            let on_its_word = t.status == (Status::Accepted { verified: false })
                && t.votes.len() == 1
                && t.votes[0].0 == *provider;
            if !on_its_word {
                continue;
            }
            t.status = Status::Open;
            t.need = 2;
            t.quorum = t.quorum.max(2);
            // A fresh retry budget: the check must not fail for the original's troubles.
            t.failures = 0;
            t.avoid = None;
            self.progress.succeeded -= 1;
            self.progress.rechecked += 1;
            self.commands.push_back(Command::Reopened {
                task,
                provider: provider.clone(),
            });
            self.enqueue(task);
        }
    }

    fn record_duration(&mut self, ms: u64) {
        if self.durations.len() >= DURATION_SAMPLES {
            self.durations.pop_front();
        }
        self.durations.push_back(ms);
        self.median_cache = None;
        let run = ms as f64;
        self.mean_run_ms = Some(match self.mean_run_ms {
            None => run,
            Some(m) => m * 0.9 + run * 0.1,
        });
    }

    fn random(&mut self) -> f64 {
        // xorshift64*; seeded by the caller, so runs replay exactly.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Sets a fresh task's replication from the policy and its first provider.
    fn decide(&mut self, task: TaskId, first: &P) {
        let v = &self.config.verify;
        let (replicas, quorum, adaptive, spot, trust_after) = (
            v.replicas,
            v.quorum,
            v.adaptive,
            v.spot_check,
            v.trust_after,
        );
        let (mut need, mut q) = (replicas.max(1), quorum.max(1));
        let mut sampled = false;
        if adaptive && need == 1 {
            let streak = self.providers.get(first).map_or(0, |p| p.streak);
            let check = streak < trust_after || self.random() * streak as f64 <= 1.0;
            if check {
                need = 2;
                q = 2;
            } else {
                sampled = true;
            }
        }
        if spot > 0.0 && need == 1 && self.random() < spot {
            need = 2;
            q = 2;
        }
        let t = &mut self.tasks[task.0 as usize];
        t.need = need;
        t.quorum = q;
        t.sampled = sampled;
    }

    /// Whether a copy of `task` may go to `provider`.
    fn eligible(&self, task: TaskId, provider: &P, active_providers: usize) -> bool {
        let t = &self.tasks[task.0 as usize];
        if t.runs.iter().any(|r| r.provider == *provider) {
            return false;
        }
        if t.independent() {
            if t.votes.iter().any(|(p, _)| p == provider) {
                return false;
            }
            return !self.conflicts(task, provider);
        }
        // A single copy: avoid the provider it last failed on when another exists.
        !(active_providers > 1 && t.avoid.as_ref() == Some(provider))
    }

    /// Hands out waiting copies and fresh tasks to providers with room, in join order; then,
    /// with slots to spare and nothing waiting, speculative copies of stragglers.
    fn fill(&mut self, now: Millis) {
        if self.finished {
            return;
        }
        let order = self.order.clone();
        let active = order
            .iter()
            .filter(|id| {
                self.providers
                    .get(*id)
                    .is_some_and(|p| !p.lapsed && !p.paused)
            })
            .count();
        for id in &order {
            let Some(p) = self.providers.get(id) else {
                continue;
            };
            if p.lapsed || p.paused {
                continue;
            }
            let cap = self.capacity_of(p);
            let mut room = cap.saturating_sub(p.assigned.len() as u32);
            let mut batch: Vec<(TaskId, Attempt)> = Vec::new();
            // Waiting copies first, skipping those that cannot go here.
            let mut kept = VecDeque::new();
            let mut scanned = 0;
            while room > 0 && scanned < SCAN_BUDGET {
                let Some(t) = self.waiting.pop_front() else {
                    break;
                };
                scanned += 1;
                if self.tasks[t.0 as usize].wanted() == 0 {
                    self.tasks[t.0 as usize].queued = false;
                    continue;
                }
                if !self.eligible(t, id, active) {
                    kept.push_back(t);
                    continue;
                }
                batch.push((t, self.add_run(t, id, now, false)));
                room -= 1;
                if self.tasks[t.0 as usize].wanted() > 0 {
                    kept.push_back(t);
                } else {
                    self.tasks[t.0 as usize].queued = false;
                }
            }
            while let Some(t) = kept.pop_back() {
                self.waiting.push_front(t);
            }
            while room > 0 && self.next_fresh < self.total && self.waiting.len() < MAX_WAITING {
                let t = TaskId(self.next_fresh);
                self.next_fresh += 1;
                self.tasks.push(Task::new());
                self.decide(t, id);
                batch.push((t, self.add_run(t, id, now, false)));
                room -= 1;
                // Replicas go to other providers.
                self.enqueue(t);
            }
            if room > 0 && self.waiting.is_empty() && self.next_fresh == self.total {
                self.speculate(id, &mut room, &mut batch, now, active);
            }
            if !batch.is_empty() {
                self.commands.push_back(Command::Assign {
                    provider: id.clone(),
                    tasks: batch,
                });
            }
        }
    }

    /// Starts speculative copies on `provider` of runs that are taking far longer than the
    /// median.
    fn speculate(
        &mut self,
        provider: &P,
        room: &mut u32,
        batch: &mut Vec<(TaskId, Attempt)>,
        now: Millis,
        active_providers: usize,
    ) {
        let factor = self.config.straggler_factor;
        if factor <= 0.0 {
            return;
        }
        let Some(median) = self.median_run_ms() else {
            return;
        };
        let threshold = ((median as f64 * factor) as u64).max(self.config.straggler_min_ms);
        let candidates: Vec<TaskId> = self
            .active
            .iter()
            .filter(|t| {
                let task = &self.tasks[t.0 as usize];
                task.wanted() == 0
                    && !task.runs.iter().any(|r| r.speculative)
                    && task
                        .runs
                        .iter()
                        .all(|r| now.0.saturating_sub(r.since.0) > threshold)
            })
            .copied()
            .collect();
        for t in candidates {
            if *room == 0 {
                break;
            }
            if !self.eligible(t, provider, active_providers) {
                continue;
            }
            batch.push((t, self.add_run(t, provider, now, true)));
            *room -= 1;
        }
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
