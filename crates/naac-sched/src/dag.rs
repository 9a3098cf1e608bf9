//! Jobs of stages: a DAG whose tasks wait for the upstream tasks they take input from.
//!
//! Task ids run over every stage: stage `s` holds `base[s] .. base[s] + width[s]`. A stage
//! may depend on another in two ways:
//!
//! - **each** (`for_each`): its task `i` waits for the upstream's task `i` only, so it can
//!   start while the rest of the upstream still runs (pipelining);
//! - **all** (`gather`, `after`): its tasks wait for every task of the upstream.
//!
//! A task is *released* once every task it waits for has an accepted result; released tasks
//! join the waiting queue, ahead of fresh tasks, so downstream work drains before more
//! upstream work starts. Stages with no upstream come first and are handed out fresh in index
//! order, as a one-stage job's tasks are.
//!
//! A task that fails for good fails exactly the tasks that wait on it (and theirs), with
//! [`FailureKind::Upstream`]. When a re-check accepts a different result for a task than the
//! one accepted before, the tasks that took the old one run again ([`Command::Reset`]).

use crate::model::Status;
use crate::{Command, Config, Scheduler, TaskId};
use naac_types::{ContentId, FailureKind, VerifyPolicy};

/// Most times one task is made again for lost outputs before it fails as `lost`.
pub const MAX_RECOMPUTES: u32 = 3;

/// One stage of a job, as the scheduler sees it.
#[derive(Clone, Debug)]
pub struct StageSpec {
    /// Tasks in the stage.
    pub width: u32,
    /// `for_each`: one task per task of this stage (of the same width), task `i` after its
    /// task `i`.
    pub each: Option<usize>,
    /// Stages every task of which must be accepted before any task of this one starts
    /// (`gather` and `after`).
    pub all: Vec<usize>,
    /// The stage's verification policy.
    pub verify: VerifyPolicy,
    /// Failed or lost runs a task of the stage may have before it fails for good.
    pub retries: u32,
}

impl StageSpec {
    /// A stage of `width` tasks with the config's policy and retries and no upstream.
    pub fn new(width: u32, config: &Config) -> Self {
        Self {
            width,
            each: None,
            all: Vec::new(),
            verify: config.verify.clone(),
            retries: config.retries,
        }
    }

    fn is_root(&self) -> bool {
        self.each.is_none() && self.all.is_empty()
    }
}

/// Why stages cannot be scheduled as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    #[error("stage {0} depends on stage {1}, which does not come before it")]
    Order(usize, usize),
    #[error("stage {0} has no upstream but comes after a stage that has one")]
    RootsFirst(usize),
    #[error("stage {0} runs one task per task of stage {1}, but their widths differ")]
    Width(usize, usize),
    #[error("the stages hold more than {} tasks", u32::MAX)]
    TooMany,
}

/// The stages of a job and what the scheduler tracks per stage.
#[derive(Debug)]
pub(crate) struct Stages {
    pub(crate) specs: Vec<StageSpec>,
    pub(crate) base: Vec<u32>,
    /// Tasks with an accepted result, per stage.
    accepted: Vec<u32>,
    /// Tasks being made again (lineage), per stage: what waits for all of a stage waits
    /// for them too.
    recomputing: Vec<u32>,
    /// Stages failed whole because a stage they wait all of failed a task: a later failure
    /// there need not walk them again.
    doomed: Vec<bool>,
    /// Per stage, the stages that depend on it and whether one task each (`true`) or all.
    down: Vec<Vec<(usize, bool)>>,
    /// Tasks of the stages with no upstream: fresh tasks are handed out below this.
    pub(crate) fresh_end: u32,
}

impl Stages {
    /// Checks the stages: each after the ones it depends on, those with no upstream first,
    /// `each` links between stages of one width.
    pub(crate) fn new(specs: Vec<StageSpec>) -> Result<Self, StageError> {
        let mut base = Vec::with_capacity(specs.len());
        let mut total: u32 = 0;
        let mut fresh_end = None;
        let mut down = vec![Vec::new(); specs.len()];
        for (i, s) in specs.iter().enumerate() {
            for &u in s.each.iter().chain(&s.all) {
                if u >= i {
                    return Err(StageError::Order(i, u));
                }
            }
            if let Some(u) = s.each {
                if specs[u].width != s.width {
                    return Err(StageError::Width(i, u));
                }
                down[u].push((i, true));
            }
            for &u in &s.all {
                down[u].push((i, false));
            }
            match (s.is_root(), fresh_end) {
                (true, Some(_)) => return Err(StageError::RootsFirst(i)),
                (false, None) => fresh_end = Some(total),
                _ => {}
            }
            base.push(total);
            total = total.checked_add(s.width).ok_or(StageError::TooMany)?;
        }
        Ok(Self {
            accepted: vec![0; specs.len()],
            recomputing: vec![0; specs.len()],
            doomed: vec![false; specs.len()],
            fresh_end: fresh_end.unwrap_or(total),
            specs,
            base,
            down,
        })
    }

    pub(crate) fn total(&self) -> u32 {
        self.base
            .last()
            .map_or(0, |b| b + self.specs[self.specs.len() - 1].width)
    }

    /// The stage of a task and its index within the stage.
    pub(crate) fn locate(&self, task: TaskId) -> (usize, u32) {
        let s = self
            .base
            .partition_point(|b| *b <= task.0)
            .saturating_sub(1);
        (s, task.0 - self.base[s])
    }

    /// The tasks that take input from `task` (one stage link at a time): `(each, tasks)`.
    fn dependents(&self, task: TaskId) -> Vec<TaskId> {
        let (s, i) = self.locate(task);
        let mut out = Vec::new();
        for &(d, each) in &self.down[s] {
            let b = self.base[d];
            if each {
                out.push(TaskId(b + i));
            } else {
                out.extend((b..b + self.specs[d].width).map(TaskId));
            }
        }
        out
    }
}

impl<P: Clone + Eq + std::hash::Hash + std::fmt::Debug> Scheduler<P> {
    /// A scheduler for a job of stages (see the module docs of `dag`). Stages come in an
    /// order where each follows those it depends on, and those with no upstream first.
    pub fn with_stages(specs: Vec<StageSpec>, config: Config) -> Result<Self, StageError> {
        let stages = Stages::new(specs)?;
        let total = stages.total();
        let mut s = Self::new(total, config);
        s.finished = false;
        s.commands.clear();
        // Every task has a state from the start: released ones join the queue out of order.
        s.tasks = (0..total).map(|_| crate::model::Task::new()).collect();
        s.stages = Some(stages);
        s.check_finished();
        Ok(s)
    }

    /// The stage and index within it of `task` (stage 0 for a one-stage job).
    pub fn stage_of(&self, task: TaskId) -> (usize, u32) {
        match &self.stages {
            Some(st) => st.locate(task),
            None => (0, task.0),
        }
    }

    /// Counts of one stage's tasks: `(total, succeeded, failed, retried)`.
    pub fn stage_counts(&self, stage: usize) -> (u32, u32, u32, u32) {
        let Some(st) = &self.stages else {
            let p = self.progress();
            return (p.total, p.succeeded, p.failed, p.retried);
        };
        let (b, w) = (st.base[stage] as usize, st.specs[stage].width as usize);
        let (mut ok, mut failed, mut retried) = (0, 0, 0);
        for t in &self.tasks[b..b + w] {
            match t.status {
                Status::Accepted { .. } => ok += 1,
                Status::Failed => failed += 1,
                Status::Open => {}
            }
            retried += u32::from(t.failures > 0);
        }
        (w as u32, ok, failed, retried)
    }

    /// The verification policy of `task`'s stage.
    pub(crate) fn policy(&self, task: TaskId) -> &VerifyPolicy {
        match &self.stages {
            Some(st) => &st.specs[st.locate(task).0].verify,
            None => &self.config.verify,
        }
    }

    /// The retry budget of `task`'s stage.
    pub(crate) fn retries_of(&self, task: TaskId) -> u32 {
        match &self.stages {
            Some(st) => st.specs[st.locate(task).0].retries,
            None => self.config.retries,
        }
    }

    /// Where fresh tasks stop: the end of the stages with no upstream.
    pub(crate) fn fresh_end(&self) -> u32 {
        self.stages.as_ref().map_or(self.total, |st| st.fresh_end)
    }

    /// Whether every task `task` waits for has an accepted result.
    fn inputs_ready(&self, task: TaskId) -> bool {
        let Some(st) = &self.stages else {
            return true;
        };
        let (s, i) = st.locate(task);
        let spec = &st.specs[s];
        let has = |t: u32| {
            let t = &self.tasks[t as usize];
            t.accepted.is_some() && t.status != Status::Failed && t.expect.is_none()
        };
        spec.each.is_none_or(|u| has(st.base[u] + i))
            && spec
                .all
                .iter()
                .all(|&u| st.accepted[u] == st.specs[u].width && st.recomputing[u] == 0)
    }

    /// Releases `task` into the queue if it waits for nothing now.
    fn try_release(&mut self, task: TaskId) {
        let t = &self.tasks[task.0 as usize];
        if t.released || t.status != Status::Open || !self.inputs_ready(task) {
            return;
        }
        self.tasks[task.0 as usize].released = true;
        self.enqueue(task);
    }

    /// `task` has an accepted result with `digest` (`previous`: the one accepted before,
    /// if a re-check accepted it again): release what waits on it, or run again what took
    /// a result that changed.
    pub(crate) fn on_accepted(
        &mut self,
        task: TaskId,
        previous: Option<ContentId>,
        digest: ContentId,
    ) {
        let Some(st) = &mut self.stages else {
            return;
        };
        match previous {
            None => {
                let (s, _) = st.locate(task);
                st.accepted[s] += 1;
                let full = st.accepted[s] == st.specs[s].width;
                let down = st.down[s].clone();
                let (_, i) = st.locate(task);
                for (d, each) in down {
                    let b = self.stages.as_ref().map_or(0, |st| st.base[d]);
                    if each {
                        self.try_release(TaskId(b + i));
                    } else if full {
                        let w = self.stages.as_ref().map_or(0, |st| st.specs[d].width);
                        for t in b..b + w {
                            self.try_release(TaskId(t));
                        }
                    }
                }
            }
            Some(p) if p != digest => {
                for d in st.dependents(task) {
                    self.reset(d);
                }
            }
            Some(_) => {
                // The same result again (a re-check, or a lost output made again): what
                // waited for it may go.
                for d in st.dependents(task) {
                    self.try_release(d);
                }
            }
        }
    }

    /// Lineage: every copy of an output `task` made is gone, so it runs again (once, on
    /// any provider) and must return the result accepted before; the tasks that take it
    /// wait (see [`Scheduler::unassign`]). Returns whether it is being made again (false:
    /// not accepted, or made again [`MAX_RECOMPUTES`] times already, and now failed).
    pub fn recompute(&mut self, task: TaskId, now: crate::Millis) -> bool {
        if task.0 >= self.total {
            return false;
        }
        if let Some(t) = self.tasks.get(task.0 as usize)
            && t.status == Status::Open
            && t.expect.is_some()
        {
            // Being made again already.
            return true;
        }
        // Its own inputs may be being made again too: then it waits for them.
        let ready = self.inputs_ready(task);
        let t = &mut self.tasks[task.0 as usize];
        let Status::Accepted { verified } = t.status else {
            return false;
        };
        let Some(digest) = t.accepted else {
            return false;
        };
        t.recomputes += 1;
        if t.recomputes > MAX_RECOMPUTES {
            // Its outputs keep vanishing (a holder that never serves them): give up on it.
            self.fail(task, FailureKind::Lost);
            return false;
        }
        let t = &mut self.tasks[task.0 as usize];
        t.restart(ready);
        t.expect = Some(digest);
        t.decided = true;
        self.progress.succeeded -= 1;
        if verified {
            self.progress.verified -= 1;
        }
        if let Some(st) = &mut self.stages {
            let (s, _) = st.locate(task);
            st.recomputing[s] += 1;
            // What takes it starts no new copy until it is made again (copies out go on).
            for d in st.dependents(task) {
                let t = &mut self.tasks[d.0 as usize];
                if t.status == Status::Open {
                    t.released = false;
                }
            }
        }
        self.commands.push_back(Command::Recompute { task });
        self.enqueue(task);
        self.fill(now);
        true
    }

    /// The run `attempt` of `task` on `provider` was never sent: an output it takes is
    /// being made again ([`Scheduler::recompute`]). The run ends without counting as a
    /// failure and the task waits until its inputs are accepted again.
    pub fn unassign(
        &mut self,
        provider: &P,
        task: TaskId,
        attempt: crate::Attempt,
        now: crate::Millis,
    ) {
        if !self.is_running(provider, task, attempt) {
            return;
        }
        self.take_run(task, provider);
        self.tasks[task.0 as usize].released = false;
        self.fill(now);
    }

    /// `task` runs again from scratch: an input it took was replaced by a re-check.
    fn reset(&mut self, task: TaskId) {
        let t = &self.tasks[task.0 as usize];
        if t.status == Status::Failed {
            return;
        }
        let touched =
            t.status != Status::Open || !t.runs.is_empty() || !t.votes.is_empty() || t.attempts > 0;
        if self.tasks[task.0 as usize].expect.take().is_some() {
            self.recomputed(task);
        }
        self.cancel_runs(task);
        let t = &mut self.tasks[task.0 as usize];
        if let Status::Accepted { verified } = t.status {
            self.progress.succeeded -= 1;
            if verified {
                self.progress.verified -= 1;
            }
        }
        t.restart(false);
        t.decided = false;
        if touched {
            self.commands.push_back(Command::Reset { task });
        }
        self.try_release(task);
    }

    /// A task being made again (lineage) was accepted or failed: it is no longer awaited.
    pub(crate) fn recomputed(&mut self, task: TaskId) {
        if let Some(st) = &mut self.stages {
            let (s, _) = st.locate(task);
            st.recomputing[s] = st.recomputing[s].saturating_sub(1);
        }
    }

    /// `task` failed for good: so does every task that waits on it, and theirs.
    pub(crate) fn fail_dependents(&mut self, task: TaskId) {
        let Some(st) = &mut self.stages else {
            return;
        };
        let (s, i) = st.locate(task);
        let mut doomed = Vec::new();
        for &(d, each) in &st.down[s] {
            let b = st.base[d];
            if each {
                doomed.push(TaskId(b + i));
            } else if !st.doomed[d] {
                st.doomed[d] = true;
                doomed.extend((b..b + st.specs[d].width).map(TaskId));
            }
        }
        for d in doomed {
            if self.tasks[d.0 as usize].status != Status::Failed {
                self.fail(d, FailureKind::Upstream);
            }
        }
    }
}
