//! The runs of a task: starting a copy on a provider, ending it, and what an ended run
//! means for its task (retry on another provider, or fail for good).

use crate::model::{Run, Status};
use crate::{Attempt, Command, Millis, Scheduler, TaskId};
use naac_types::FailureKind;
use std::hash::Hash;

impl<P: Clone + Eq + Hash + std::fmt::Debug> Scheduler<P> {
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

    pub(crate) fn add_run(
        &mut self,
        task: TaskId,
        provider: &P,
        now: Millis,
        speculative: bool,
    ) -> Attempt {
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

    /// Removes `provider`'s run of `task`, keeping the counters right.
    pub(crate) fn take_run(&mut self, task: TaskId, provider: &P) -> Option<Run<P>> {
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

    /// The provider's runs of `tasks` are lost: reported, ended, and their tasks retried.
    /// Returns the `(task, attempt)` pairs that were out.
    pub(crate) fn lose_runs(
        &mut self,
        provider: &P,
        mut tasks: Vec<TaskId>,
    ) -> Vec<(TaskId, Attempt)> {
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

    /// A run ended without a vote: retry the task or fail it for good.
    pub(crate) fn run_failed(&mut self, task: TaskId, run: Run<P>, kind: FailureKind) {
        let retries = self.retries_of(task);
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

    pub(crate) fn enqueue(&mut self, task: TaskId) {
        let t = &mut self.tasks[task.0 as usize];
        if !t.queued && t.wanted() > 0 {
            t.queued = true;
            self.waiting.push_back(task);
        }
    }

    pub(crate) fn fail(&mut self, task: TaskId, kind: FailureKind) {
        let t = &mut self.tasks[task.0 as usize];
        if let Status::Accepted { verified } = t.status {
            self.progress.succeeded -= 1;
            if verified {
                self.progress.verified -= 1;
            }
        }
        t.status = Status::Failed;
        let was_recomputing = t.expect.take().is_some();
        self.progress.failed += 1;
        if was_recomputing {
            self.recomputed(task);
        }
        self.cancel_runs(task);
        self.commands.push_back(Command::TaskFailed { task, kind });
        self.fail_dependents(task);
    }

    pub(crate) fn cancel_runs(&mut self, task: TaskId) {
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
}
