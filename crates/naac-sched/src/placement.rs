//! Placement: which provider may hold a copy of which task (independence of copies,
//! avoiding a failed provider), how much each provider may hold, and handing work out.

use crate::model::{Provider, Status, Task};
use crate::{Attempt, Command, Millis, Scheduler, TaskId};
use std::collections::VecDeque;
use std::hash::Hash;

/// Queue entries examined per provider per fill (tasks that cannot go to it are skipped).
const SCAN_BUDGET: usize = 512;
/// Tasks waiting for another copy beyond which no fresh tasks are started.
const MAX_WAITING: usize = 4096;

impl<P: Clone + Eq + Hash + std::fmt::Debug> Scheduler<P> {
    pub(crate) fn groups_of(&self, p: &P) -> Option<&Vec<String>> {
        self.providers
            .get(p)
            .map(|x| &x.groups)
            .or_else(|| self.departed.get(p).map(|d| &d.groups))
    }

    /// Whether `provider` shares an identity or a group with another provider that ran or
    /// voted on `task`.
    pub(crate) fn conflicts(&self, task: TaskId, provider: &P) -> bool {
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

    /// Whether a copy of `task` may go to `provider`.
    pub(crate) fn eligible(&self, task: TaskId, provider: &P, active_providers: usize) -> bool {
        if !self.runs_stage_of(provider, task) {
            return false;
        }
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

    /// Whether a local worker with room may take a copy of `task` now.
    fn a_local_may_take(&self, task: TaskId, order: &[P], active: usize) -> bool {
        order.iter().any(|l| {
            self.providers.get(l).is_some_and(|p| {
                p.fallback
                    && !p.lapsed
                    && !p.paused
                    && self.capacity_of(p) > p.assigned.len() as u32
                    && self.eligible(task, l, active)
            })
        })
    }

    /// Whether `provider` meets the requirements of `task`'s stage.
    pub(crate) fn runs_stage_of(&self, provider: &P, task: TaskId) -> bool {
        let mask = self.providers.get(provider).map_or(0, |p| p.stage_mask);
        mask == 0 || {
            let (s, _) = self.stage_of(task);
            s >= 64 || mask & (1 << s) == 0
        }
    }

    /// Whether `provider` is known and not paused.
    pub fn is_available(&self, provider: &P) -> bool {
        self.providers.get(provider).is_some_and(|p| !p.paused)
    }

    /// How many tasks `provider` may hold (running plus queued) right now.
    pub fn capacity(&self, provider: &P) -> u32 {
        self.providers
            .get(provider)
            .map(|p| self.capacity_of(p))
            .unwrap_or(0)
    }

    pub(crate) fn capacity_of(&self, p: &Provider) -> u32 {
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

    /// Hands out waiting copies and fresh tasks to providers with room, in join order; then,
    /// with slots to spare and nothing waiting, speculative copies of stragglers.
    pub(crate) fn fill(&mut self, now: Millis) {
        if self.finished {
            return;
        }
        // Nothing to hand out: no copy waits, no fresh task is left and no run straggles.
        let mut stragglers: Option<Vec<TaskId>> = None;
        if self.waiting.is_empty() && self.next_fresh >= self.fresh_end() {
            let found = self.stragglers(now);
            if found.is_empty() {
                return;
            }
            stragglers = Some(found);
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
        // A local worker with room takes the retries of runs that failed elsewhere.
        let local_room = order.iter().any(|id| {
            self.providers.get(id).is_some_and(|p| {
                p.fallback
                    && !p.lapsed
                    && !p.paused
                    && self.capacity_of(p) > p.assigned.len() as u32
            })
        });
        for id in &order {
            let Some(p) = self.providers.get(id) else {
                continue;
            };
            if p.lapsed || p.paused {
                continue;
            }
            let leave_retries = local_room && !p.fallback;
            let cap = self.capacity_of(p);
            let mut room = cap.saturating_sub(p.assigned.len() as u32);
            if let Some(limit) = self.start_limit {
                let left = limit.saturating_sub(self.progress.started);
                room = room.min(u32::try_from(left).unwrap_or(u32::MAX));
            }
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
                if !self.eligible(t, id, active)
                    || (leave_retries
                        && self.tasks[t.0 as usize].failures > 0
                        && self.a_local_may_take(t, &order, active))
                {
                    kept.push_back(t);
                    continue;
                }
                if !self.tasks[t.0 as usize].decided {
                    self.decide(t, id);
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
            let fresh_end = self.fresh_end();
            while room > 0 && self.next_fresh < fresh_end && self.waiting.len() < MAX_WAITING {
                let t = TaskId(self.next_fresh);
                if !self.runs_stage_of(id, t) {
                    // Not its stage: fresh tasks go in order, to the providers that may.
                    break;
                }
                self.next_fresh += 1;
                if self.kept.contains(&t.0) {
                    let mut kept = Task::new();
                    kept.status = Status::Accepted { verified: false };
                    self.tasks.push(kept);
                    continue;
                }
                match self.tasks.get(t.0 as usize) {
                    // A job of stages has every task's state already (kept ones accepted).
                    Some(task) if task.status != Status::Open => continue,
                    Some(_) => {}
                    None => self.tasks.push(Task::new()),
                }
                self.tasks[t.0 as usize].released = true;
                self.decide(t, id);
                batch.push((t, self.add_run(t, id, now, false)));
                room -= 1;
                // Replicas go to other providers.
                self.enqueue(t);
            }
            if room > 0 && self.waiting.is_empty() && self.next_fresh == fresh_end {
                let candidates = stragglers.get_or_insert_with(|| self.stragglers(now));
                self.speculate(candidates, id, &mut room, &mut batch, now, active);
            }
            if !batch.is_empty() {
                self.commands.push_back(Command::Assign {
                    provider: id.clone(),
                    tasks: batch,
                });
            }
        }
    }
}
