//! The scheduler's state for one task (its runs and votes) and for one provider (slots,
//! groups, lease, trust), and what the caller says about a provider when it joins.

use crate::{Attempt, Millis, TaskId};
use naac_types::ContentId;
use std::collections::{BTreeSet, VecDeque};

/// Where a task stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    Accepted { verified: bool },
    Failed,
}

/// One copy of a task on one provider: the `(attempt, provider)` lease of a task that is
/// out right now. (Not a whole job's run: a task may have several of these at once.)
#[derive(Clone, Debug)]
pub(crate) struct Run<P> {
    pub(crate) provider: P,
    pub(crate) attempt: Attempt,
    /// When it was assigned.
    pub(crate) since: Millis,
    /// A spare copy of a straggler, not a replica the policy asked for.
    pub(crate) speculative: bool,
}

/// One task of the job: its status, the copies out and the votes in.
#[derive(Clone, Debug)]
pub(crate) struct Task<P> {
    pub(crate) status: Status,
    pub(crate) runs: Vec<Run<P>>,
    pub(crate) votes: Vec<(P, ContentId)>,
    /// Votes wanted before judging.
    pub(crate) need: u32,
    pub(crate) quorum: u32,
    /// Attempts started so far.
    pub(crate) attempts: u32,
    /// Failed or lost runs.
    pub(crate) failures: u32,
    /// The provider of the last failed or lost run, avoided on retry when possible.
    pub(crate) avoid: Option<P>,
    /// In the waiting queue.
    pub(crate) queued: bool,
    /// Replication was decided by a trust sample (adaptive) and may be revised.
    pub(crate) sampled: bool,
    /// Its replication was decided (at its first placement).
    pub(crate) decided: bool,
    /// It may run: its inputs are accepted (always, for a task with no upstream once it is
    /// handed out).
    pub(crate) released: bool,
    /// The digest of its accepted result, kept while a re-check is under way.
    pub(crate) accepted: Option<ContentId>,
    /// It runs again to make an output that was lost (lineage): a run must return this
    /// digest, the one accepted before.
    pub(crate) expect: Option<ContentId>,
    /// Times it was made again for lost outputs.
    pub(crate) recomputes: u32,
}

impl<P> Task<P> {
    pub(crate) fn new() -> Self {
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
            decided: false,
            released: false,
            accepted: None,
            expect: None,
            recomputes: 0,
        }
    }

    /// Open again with no votes, one copy wanted and a fresh retry budget (its attempts go
    /// on counting, so stale results stay stale).
    pub(crate) fn restart(&mut self, released: bool) {
        self.status = Status::Open;
        self.votes.clear();
        self.need = 1;
        self.quorum = 1;
        self.sampled = false;
        self.failures = 0;
        self.avoid = None;
        self.released = released;
    }

    /// More copies wanted right now.
    pub(crate) fn wanted(&self) -> u32 {
        if self.status != Status::Open || !self.released {
            return 0;
        }
        self.need
            .saturating_sub(self.votes.len() as u32 + self.runs.len() as u32)
    }

    /// Copies must be on independent providers.
    pub(crate) fn independent(&self) -> bool {
        self.need > 1 || !self.votes.is_empty()
    }
}

/// A provider present in the job.
#[derive(Clone, Debug)]
pub(crate) struct Provider {
    pub(crate) slots: u32,
    /// Owner and network labels; copies of a task never share one.
    pub(crate) groups: Vec<String>,
    /// Tasks it has a run of (one run per task per provider).
    /// In task order, so what is lost with it is re-queued in the same order on every run
    /// (a simulator replays a seed exactly).
    pub(crate) assigned: BTreeSet<TaskId>,
    pub(crate) lease_deadline: Millis,
    /// Its lease lapsed: no new work until it renews.
    pub(crate) lapsed: bool,
    /// Its owner's policy stopped it taking work (or this job does not fit it): it keeps
    /// what it holds but gets nothing new.
    pub(crate) paused: bool,
    /// A local worker of the requester's own (see [`ProviderInfo::fallback`]).
    pub(crate) fallback: bool,
    /// Stages it may not run (bit `s` for stage `s`; see [`ProviderInfo::stage_mask`]).
    pub(crate) stage_mask: u64,
    /// Verified results in a row (for adaptive replication).
    pub(crate) streak: u32,
    /// Recent tasks accepted on its word alone, oldest first.
    pub(crate) unchecked: VecDeque<TaskId>,
}

/// What is kept of a provider that left: enough to keep copies apart from its votes, and
/// to hold it to account (its streak and unchecked results) if it comes back.
#[derive(Clone, Debug, Default)]
pub(crate) struct Departed {
    pub(crate) groups: Vec<String>,
    pub(crate) streak: u32,
    pub(crate) unchecked: VecDeque<TaskId>,
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
    ///
    /// [`Scheduler::set_paused`]: crate::Scheduler::set_paused
    pub paused: bool,
    /// A local worker the requester runs itself alongside the remote pool ("eager remote,
    /// retry local"): offered work after every remote provider, and the first to get the
    /// retry of a run that failed or was lost elsewhere.
    pub fallback: bool,
    /// In a job of stages, the stages whose requirements it does not meet: bit `s` set,
    /// it gets no task of stage `s` (at most 64 stages).
    pub stage_mask: u64,
}

impl ProviderInfo {
    pub fn slots(slots: u32) -> Self {
        Self {
            slots,
            ..Self::default()
        }
    }
}
