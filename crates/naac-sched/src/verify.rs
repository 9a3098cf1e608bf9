//! The verification policy: how many copies a fresh task gets (replication, adaptive
//! sampling, spot checks), judging the votes, and adaptive trust (streaks, re-checks).

use crate::model::Status;
use crate::{Command, Scheduler, TaskId};
use naac_types::{ContentId, FailureKind};
use std::collections::VecDeque;
use std::hash::Hash;

impl<P: Clone + Eq + Hash + std::fmt::Debug> Scheduler<P> {
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
        if !self.policy(task).compares() {
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

    /// Sets a fresh task's replication from the policy and its first provider.
    pub(crate) fn decide(&mut self, task: TaskId, first: &P) {
        let v = self.policy(task);
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
        t.decided = true;
    }

    pub(crate) fn random(&mut self) -> f64 {
        // xorshift64*; seeded by the caller, so runs replay exactly.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Looks at the votes of an open task: accept, wait, add copies, or give up.
    pub(crate) fn judge(&mut self, task: TaskId) {
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
        let max = self.policy(task).max_replicas.max(t.quorum);
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

    pub(crate) fn accept(&mut self, task: TaskId, digest: ContentId) {
        let t = &mut self.tasks[task.0 as usize];
        let agreeing = t.votes.iter().filter(|(_, d)| *d == digest).count();
        let verified = agreeing >= 2;
        t.status = Status::Accepted { verified };
        t.queued = false;
        let was_recomputing = t.expect.take().is_some();
        let previous = t.accepted.replace(digest);
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
        } else if self.policy(task).compares() {
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
        if was_recomputing {
            self.recomputed(task);
        }
        self.on_accepted(task, previous, digest);
    }

    /// The provider was caught with a wrong result: reset its streak and re-open the
    /// results accepted on its word alone.
    pub(crate) fn distrust(&mut self, provider: &P) {
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

    /// The unchecked list and streak of a present or departed provider.
    pub(crate) fn trust_of(&mut self, provider: &P) -> Option<(&mut u32, &mut VecDeque<TaskId>)> {
        if let Some(p) = self.providers.get_mut(provider) {
            return Some((&mut p.streak, &mut p.unchecked));
        }
        self.departed
            .get_mut(provider)
            .map(|d| (&mut d.streak, &mut d.unchecked))
    }
}
