//! The events the caller feeds in: providers joining, leaving, pausing, ranked and
//! reporting in; results, failures and rejections; time passing (leases) and reconciling
//! what a provider holds.

use crate::model::{Departed, Provider, ProviderInfo, Status};
use crate::{Attempt, Command, MAX_SLOTS, Millis, Scheduler, TaskId};
use naac_types::{ContentId, FailureKind};
use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

impl<P: Clone + Eq + Hash + std::fmt::Debug> Scheduler<P> {
    /// A provider offers work slots (again, if it was known: its slots and labels update).
    pub fn provider_joined(&mut self, provider: P, info: ProviderInfo, now: Millis) {
        let slots = info.slots.clamp(1, MAX_SLOTS);
        match self.providers.get_mut(&provider) {
            Some(p) => {
                p.slots = slots;
                p.groups = info.groups;
                p.lapsed = false;
                p.paused = info.paused;
                p.fallback = info.fallback;
                p.stage_mask = info.stage_mask;
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
                        assigned: std::collections::BTreeSet::new(),
                        lease_deadline: now.plus(self.config.lease_ms),
                        lapsed: false,
                        paused: info.paused,
                        fallback: info.fallback,
                        stage_mask: info.stage_mask,
                        streak,
                        unchecked,
                    },
                );
                // Local workers come after every remote provider.
                let at = match info.fallback {
                    true => self.order.len(),
                    false => self
                        .order
                        .iter()
                        .position(|o| self.providers.get(o).is_some_and(|p| p.fallback))
                        .unwrap_or(self.order.len()),
                };
                self.order.insert(at, provider);
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

    /// In a job of stages, the stages `provider` may not run (bit `s` set: none of stage
    /// `s`'s tasks go to it); what it holds stays. Unknown providers are ignored.
    pub fn set_stage_mask(&mut self, provider: &P, mask: u64, now: Millis) {
        if let Some(p) = self.providers.get_mut(provider)
            && p.stage_mask != mask
        {
            p.stage_mask = mask;
            self.fill(now);
        }
    }

    /// At most `limit` runs may have been started in all (copies, retries and speculation
    /// included); `None` lifts the limit. A paid job keeps it at the runs started so far
    /// plus the copies its escrow still covers, so nothing is placed that could not be paid:
    /// a run that ends does not free room by itself, a payment does. Raising it places work
    /// at once.
    pub fn set_start_limit(&mut self, limit: Option<u64>, now: Millis) {
        let raised = match (self.start_limit, limit) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(old), Some(new)) => new > old,
        };
        self.start_limit = limit;
        if raised {
            self.fill(now);
        }
    }

    /// Sets the order in which providers are offered work: the listed ones first, in this
    /// order (the market's auction ranking: cheapest ask, then reputation, then latency),
    /// then the rest in join order, local workers last. Only who gets work first changes; nothing is reassigned.
    pub fn set_preference(&mut self, ranked: &[P], now: Millis) {
        let pos = |p: &P| ranked.iter().position(|r| r == p).unwrap_or(usize::MAX);
        let local = |p: &P| self.providers.get(p).is_some_and(|x| x.fallback);
        // A stable sort keeps join order among the unranked; local workers stay last.
        let mut order = std::mem::take(&mut self.order);
        order.sort_by_key(|p| (local(p), pos(p)));
        self.order = order;
        self.fill(now);
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
        if let Some(expect) = t.expect
            && expect != digest
        {
            // A task made again must make what was accepted before: this provider lies.
            self.distrust(provider);
            if let Some(run) = self.take_run(task, provider) {
                self.run_failed(task, run, FailureKind::Rejected);
            }
            self.fill(now);
            self.check_finished();
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
}
