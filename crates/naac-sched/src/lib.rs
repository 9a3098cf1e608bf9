//! The requester's task scheduler as a sans-IO state machine.
//!
//! Events go in (a provider joined, a result came back, time passed), commands come out
//! (assign these tasks to that provider, cancel those, the job is finished). No clocks, no
//! sockets, no threads: the caller passes the current time ([`Millis`]) and performs the
//! commands, so the same code runs under the daemon and under a simulator or a unit test
//! with a fake clock.
//!
//! Life of a task: `pending → assigned(provider, attempt) → done | failed`. Every
//! assignment is a lease that the provider renews with each report; a provider that
//! disconnects, or whose lease lapses, has its tasks put back at the front of the queue. A
//! failed attempt is retried, preferring a different provider, until the task's retry
//! budget is spent. Each provider is kept fed with a small queue beyond its slots, sized
//! from the observed task duration, so no slot waits on a network round trip while long
//! tasks do not pile up behind one host.

use naac_types::FailureKind;
use std::collections::{HashMap, HashSet, VecDeque};
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

/// Which run of a task this is; the first run is attempt 1.
pub type Attempt = u32;

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Extra attempts allowed per task after the first fails or is lost.
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
    /// Tell the provider to drop these attempts (they were reassigned or the job ended).
    Cancel {
        provider: P,
        tasks: Vec<(TaskId, Attempt)>,
    },
    /// The task failed for good; `kind` is the last attempt's failure.
    TaskFailed { task: TaskId, kind: FailureKind },
    /// Every task is done or failed.
    JobFinished,
}

/// Counts for progress displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: u32,
    pub succeeded: u32,
    pub failed: u32,
    /// Assigned to a provider (running or queued there).
    pub running: u32,
    pub pending: u32,
    /// Tasks that needed more than one attempt.
    pub retried: u32,
    pub providers: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State<P> {
    Pending,
    Assigned {
        provider: P,
        attempt: Attempt,
        since: Millis,
    },
    Done,
    Failed,
}

#[derive(Clone, Debug)]
struct Task<P> {
    state: State<P>,
    /// Attempts started so far.
    attempts: u32,
    /// The provider of the last failed or lost attempt, avoided on retry when possible.
    avoid: Option<P>,
}

#[derive(Clone, Debug)]
struct Provider {
    slots: u32,
    assigned: HashSet<TaskId>,
    lease_deadline: Millis,
    /// Its lease lapsed: no new work until it renews.
    lapsed: bool,
}

/// The scheduler for one job. `P` identifies a provider (a libp2p `PeerId` in the daemon,
/// a small integer in tests).
#[derive(Debug)]
pub struct Scheduler<P> {
    config: Config,
    total: u32,
    /// Tasks below this index that were never assigned do not exist: fresh tasks are handed
    /// out in index order from `next_fresh`, so a sweep of millions needs no queue.
    next_fresh: u32,
    /// Task states for tasks that have been touched (index < next_fresh).
    tasks: Vec<Task<P>>,
    /// Tasks waiting for a retry, oldest first; they go before fresh tasks.
    retry_queue: VecDeque<TaskId>,
    providers: HashMap<P, Provider>,
    /// Providers in join order, for deterministic assignment.
    order: Vec<P>,
    commands: VecDeque<Command<P>>,
    succeeded: u32,
    failed: u32,
    running: u32,
    retried: u32,
    /// Exponential moving average of task run time in milliseconds; `None` until the first result.
    mean_run_ms: Option<f64>,
    finished: bool,
}

impl<P: Clone + Eq + Hash + std::fmt::Debug> Scheduler<P> {
    pub fn new(total: u32, config: Config) -> Self {
        let mut s = Self {
            config,
            total,
            next_fresh: 0,
            tasks: Vec::new(),
            retry_queue: VecDeque::new(),
            providers: HashMap::new(),
            order: Vec::new(),
            commands: VecDeque::new(),
            succeeded: 0,
            failed: 0,
            running: 0,
            retried: 0,
            mean_run_ms: None,
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
        Progress {
            total: self.total,
            succeeded: self.succeeded,
            failed: self.failed,
            running: self.running,
            pending: self.total - self.succeeded - self.failed - self.running,
            retried: self.retried,
            providers: self.providers.len() as u32,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
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

    /// A provider offers `slots` parallel slots.
    pub fn provider_joined(&mut self, provider: P, slots: u32, now: Millis) {
        let slots = slots.clamp(1, MAX_SLOTS);
        match self.providers.get_mut(&provider) {
            Some(p) => {
                p.slots = slots;
                p.lapsed = false;
                p.lease_deadline = now.plus(self.config.lease_ms);
            }
            None => {
                self.providers.insert(
                    provider.clone(),
                    Provider {
                        slots,
                        assigned: HashSet::new(),
                        lease_deadline: now.plus(self.config.lease_ms),
                        lapsed: false,
                    },
                );
                self.order.push(provider);
            }
        }
        self.fill(now);
    }

    /// The provider is gone (disconnected, refused us): its tasks go back to the queue.
    pub fn provider_lost(&mut self, provider: &P, now: Millis) {
        let Some(p) = self.providers.remove(provider) else {
            return;
        };
        self.order.retain(|o| o != provider);
        let mut lost: Vec<TaskId> = p.assigned.into_iter().collect();
        lost.sort();
        for t in lost {
            self.attempt_ended(t, provider, FailureKind::Lost);
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

    /// A provider returned a good result. Returns `true` when the result is accepted (the
    /// task was not already finished); the caller keeps the result only then.
    pub fn task_succeeded(&mut self, provider: &P, task: TaskId, run_ms: u64, now: Millis) -> bool {
        let Some(t) = self.tasks.get(task.0 as usize) else {
            return false;
        };
        // Only the current holder, or the one that held it last, may deliver its result.
        let entitled = match &t.state {
            State::Assigned { provider: p, .. } => {
                p == provider || t.avoid.as_ref() == Some(provider)
            }
            State::Pending => t.avoid.as_ref() == Some(provider),
            State::Done | State::Failed => false,
        };
        if !entitled || !self.providers.contains_key(provider) {
            return false;
        }
        self.renew(provider, now);
        let t = &mut self.tasks[task.0 as usize];
        match &t.state {
            State::Done | State::Failed => return false,
            State::Pending => {
                // A late result from an attempt we had given up on: still a result.
                if let Some(pos) = self.retry_queue.iter().position(|q| *q == task) {
                    self.retry_queue.remove(pos);
                }
            }
            State::Assigned {
                provider: holder,
                attempt,
                ..
            } => {
                let (holder, attempt) = (holder.clone(), *attempt);
                self.running -= 1;
                if let Some(h) = self.providers.get_mut(&holder) {
                    h.assigned.remove(&task);
                }
                if holder != *provider {
                    self.commands.push_back(Command::Cancel {
                        provider: holder,
                        tasks: vec![(task, attempt)],
                    });
                }
            }
        }
        self.tasks[task.0 as usize].state = State::Done;
        self.succeeded += 1;
        let run = run_ms as f64;
        self.mean_run_ms = Some(match self.mean_run_ms {
            None => run,
            Some(m) => m * 0.9 + run * 0.1,
        });
        self.fill(now);
        self.check_finished();
        true
    }

    /// An attempt failed on the provider (`kind` is never `Lost` here). Stale reports (for an
    /// attempt that is no longer current) are ignored.
    pub fn task_failed(
        &mut self,
        provider: &P,
        task: TaskId,
        attempt: Attempt,
        kind: FailureKind,
        now: Millis,
    ) {
        self.renew(provider, now);
        let current = matches!(
            self.tasks.get(task.0 as usize).map(|t| &t.state),
            Some(State::Assigned { provider: p, attempt: a, .. }) if p == provider && *a == attempt
        );
        if !current {
            return;
        }
        if let Some(p) = self.providers.get_mut(provider) {
            p.assigned.remove(&task);
        }
        self.attempt_ended(task, provider, kind);
        self.fill(now);
        self.check_finished();
    }

    /// Time passed: lapse the leases of providers that stopped reporting.
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
            let mut tasks: Vec<TaskId> = p.assigned.drain().collect();
            tasks.sort();
            if !tasks.is_empty() {
                let with_attempts = tasks.iter().map(|t| (*t, self.attempt_of(*t))).collect();
                self.commands.push_back(Command::Cancel {
                    provider: id.clone(),
                    tasks: with_attempts,
                });
            }
            for t in tasks {
                self.attempt_ended(t, &id, FailureKind::Lost);
            }
        }
        self.fill(now);
        self.check_finished();
    }

    /// The provider reported which attempts it still holds (running, queued, or finished but
    /// not yet acknowledged). Attempts assigned to it long enough ago that are missing from
    /// `held` went missing on the way (a lost assignment or result): they are lost.
    pub fn reconcile(&mut self, provider: &P, held: &[(TaskId, Attempt)], now: Millis) {
        let grace = self.config.reconcile_grace_ms;
        let Some(p) = self.providers.get(provider) else {
            return;
        };
        let held: HashSet<(TaskId, Attempt)> = held.iter().copied().collect();
        let mut missing: Vec<TaskId> = p
            .assigned
            .iter()
            .filter(|t| match &self.tasks[t.0 as usize].state {
                State::Assigned { attempt, since, .. } => {
                    since.plus(grace) <= now && !held.contains(&(**t, *attempt))
                }
                _ => false,
            })
            .copied()
            .collect();
        if missing.is_empty() {
            return;
        }
        missing.sort();
        let p = self.providers.get_mut(provider).expect("checked above");
        for t in &missing {
            p.assigned.remove(t);
        }
        for t in missing {
            self.attempt_ended(t, provider, FailureKind::Lost);
        }
        self.fill(now);
        self.check_finished();
    }

    fn attempt_of(&self, task: TaskId) -> Attempt {
        match &self.tasks[task.0 as usize].state {
            State::Assigned { attempt, .. } => *attempt,
            _ => 0,
        }
    }

    /// Ends the current attempt of `task` (already removed from the provider's set):
    /// requeue it or fail it for good.
    fn attempt_ended(&mut self, task: TaskId, provider: &P, kind: FailureKind) {
        let retries = self.config.retries;
        let t = &mut self.tasks[task.0 as usize];
        if !matches!(t.state, State::Assigned { .. }) {
            return;
        }
        self.running -= 1;
        t.avoid = Some(provider.clone());
        if t.attempts <= retries {
            if t.attempts == 1 {
                self.retried += 1;
            }
            t.state = State::Pending;
            self.retry_queue.push_back(task);
        } else {
            t.state = State::Failed;
            self.failed += 1;
            self.commands.push_back(Command::TaskFailed { task, kind });
        }
    }

    /// Hands out pending tasks to providers with room, in join order.
    fn fill(&mut self, now: Millis) {
        if self.finished {
            return;
        }
        let order = self.order.clone();
        let active = order
            .iter()
            .filter(|id| self.providers.get(*id).is_some_and(|p| !p.lapsed))
            .count();
        for id in &order {
            let Some(p) = self.providers.get(id) else {
                continue;
            };
            if p.lapsed {
                continue;
            }
            let cap = self.capacity_of(p);
            let mut room = cap.saturating_sub(p.assigned.len() as u32);
            let mut batch = Vec::new();
            // Retries first, skipping ones that last failed here when another host exists.
            let mut skipped = Vec::new();
            while room > 0 {
                let Some(t) = self.retry_queue.pop_front() else {
                    break;
                };
                if active > 1 && self.tasks[t.0 as usize].avoid.as_ref() == Some(id) {
                    skipped.push(t);
                    continue;
                }
                batch.push(t);
                room -= 1;
            }
            for t in skipped.into_iter().rev() {
                self.retry_queue.push_front(t);
            }
            while room > 0 && self.next_fresh < self.total {
                let t = TaskId(self.next_fresh);
                self.next_fresh += 1;
                self.tasks.push(Task {
                    state: State::Pending,
                    attempts: 0,
                    avoid: None,
                });
                batch.push(t);
                room -= 1;
            }
            if batch.is_empty() {
                continue;
            }
            let mut out = Vec::with_capacity(batch.len());
            let p = self.providers.get_mut(id).expect("checked above");
            // New work starts a full lease, even for a provider that was idle (and silent).
            p.lease_deadline = p.lease_deadline.max(now.plus(self.config.lease_ms));
            for t in batch {
                let task = &mut self.tasks[t.0 as usize];
                task.attempts += 1;
                task.state = State::Assigned {
                    provider: id.clone(),
                    attempt: task.attempts,
                    since: now,
                };
                p.assigned.insert(t);
                out.push((t, task.attempts));
            }
            self.running += out.len() as u32;
            self.commands.push_back(Command::Assign {
                provider: id.clone(),
                tasks: out,
            });
        }
    }

    fn check_finished(&mut self) {
        if !self.finished && self.succeeded + self.failed == self.total {
            self.finished = true;
            self.commands.push_back(Command::JobFinished);
        }
    }
}

#[cfg(test)]
mod tests;
