//! The vote tally: what the requester makes of each result and each verdict, without IO.
//!
//! A result is checked against the record the requester rebuilds from what it assigned (the
//! provider's signature over it, in batches), the task's fuel limit, the sandbox's output
//! limits (stdout, stderr, `/out` bytes and files) and safe output names;
//! the answer is a [`Check`]: stale, a failure to retry, a provably bad result to refuse, a
//! request to run the job's verifier on it first, or a vote for the scheduler. When the
//! scheduler's verdict on a task comes, [`Tally::verdict`] says what follows from it: which
//! copy to write, which copies to pay, whose reputation changes, who disagreed. The tally
//! keeps the per-provider counts, discrepancies and failures that go into `summary.json`.

use crate::output::{Discrepancy, Failure, Side};
use naac_net::{PeerId, PeerKeys};
use naac_proto::TaskResult;
use naac_types::{ContentId, FailureKind, JobId, Outcome, ResultRecord};
use std::collections::{HashMap, HashSet};

/// A result waiting for its task's verdict.
#[derive(Debug)]
pub struct Vote {
    pub provider: PeerId,
    pub digest: ContentId,
    /// The id of its signed record.
    pub record: ContentId,
    pub result: TaskResult,
}

/// Per-provider counts for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    pub verified: u64,
    pub rejected: u64,
    pub lost: u64,
}

/// What to do with one result.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Not wanted: its task is closed, or unknown.
    Stale,
    /// Not usable and not provably the provider's fault: retry the task (`task_failed`).
    Failed(FailureKind),
    /// Provably bad: retry elsewhere and count it against the provider (`task_rejected`,
    /// one rejection in its reputation, its streak reset).
    Refused(FailureKind),
    /// Run the job's verifier on it, then pass the outcome to [`Tally::verified`].
    Verify,
    /// A vote for the scheduler (`task_result`); if it counts, [`Tally::add_vote`]. A
    /// `resumed` run started from another provider's state and needs an independent check.
    Vote {
        digest: ContentId,
        record: ContentId,
        resumed: bool,
    },
}

/// A copy to pay: it agreed with the accepted output.
#[derive(Debug, PartialEq, Eq)]
pub struct Payable {
    pub provider: PeerId,
    pub attempt: u32,
    /// The signed record's bytes and the provider's signature over them.
    pub record: Vec<u8>,
    pub signature: Vec<u8>,
    /// Fuel to pay for when less than the record claims: the lowest claim among the fresh
    /// copies that agreed (fuel is deterministic for a fresh run, so a higher claim is a
    /// lie); `None`: the record's claim.
    pub fuel: Option<u64>,
}

/// What happens to a provider's streak with the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streak {
    /// It lost a vote: back to zero.
    Reset,
    /// Whatever the scheduler counts now.
    Current,
}

/// One provider's reputation change after a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepChange {
    pub provider: PeerId,
    pub verified: u64,
    pub rejected: u64,
    pub streak: Streak,
}

/// What follows from a verdict.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The accepted copy to write (none when it was written before a re-check, or no
    /// quorum formed), and how many copies voted.
    pub write: Option<(Vote, u32)>,
    pub pay: Vec<Payable>,
    pub reputation: Vec<RepChange>,
    /// Providers that lost a vote: their reputation may now be below the job's floor.
    pub suspects: Vec<PeerId>,
    /// Each agreeing copy's provider and the outputs it says it kept: who holds what.
    pub holders: Vec<(PeerId, Vec<ContentId>)>,
}

/// The tally of one job.
pub struct Tally {
    job: JobId,
    module: ContentId,
    tasks: u64,
    fuel_limit: u64,
    has_verifier: bool,
    keys: PeerKeys,
    /// Input digest of every open task, for rebuilding result records.
    digests: HashMap<u32, ContentId>,
    votes: HashMap<u32, Vec<Vote>>,
    /// Attempts of each open task assigned to resume from a checkpoint.
    resumed: HashMap<u32, Vec<u32>>,
    /// Tasks whose written result is being checked again.
    reopened: HashSet<u32>,
    /// The most recent failure of each task, for the summary when it fails for good.
    last_failure: HashMap<u32, (FailureKind, String)>,
    /// A job of stages: each stage's first task, module, fuel limit and `hold_over`.
    stages: Vec<(u32, ContentId, u64, Option<u64>)>,
    /// Tasks of a later stage that run again on changed input, until their next run opens.
    resetting: HashSet<u32>,
    /// The first attempt of each task that ran again on changed input: earlier attempts
    /// were made (and signed) over the old input, and are stale.
    floors: HashMap<u32, u32>,
    pub stats: HashMap<PeerId, Stats>,
    pub discrepancies: Vec<Discrepancy>,
    pub failures: Vec<Failure>,
    pub rejected_results: u64,
    /// Fuel of accepted results.
    pub fuel: u64,
    /// Fuel of every signed result received.
    pub fuel_spent: u64,
}

impl Tally {
    /// The tally of `tasks` tasks of `job`, whose runs may use `fuel_limit` each.
    pub fn new(
        job: JobId,
        module: ContentId,
        tasks: u64,
        fuel_limit: u64,
        has_verifier: bool,
    ) -> Self {
        Self {
            job,
            module,
            tasks,
            fuel_limit,
            has_verifier,
            keys: PeerKeys::default(),
            digests: HashMap::new(),
            votes: HashMap::new(),
            resumed: HashMap::new(),
            reopened: HashSet::new(),
            last_failure: HashMap::new(),
            stages: Vec::new(),
            resetting: HashSet::new(),
            floors: HashMap::new(),
            stats: HashMap::new(),
            discrepancies: Vec::new(),
            failures: Vec::new(),
            rejected_results: 0,
            fuel: 0,
            fuel_spent: 0,
        }
    }

    /// A job of stages: each stage's first task id, module and fuel limit, which records
    /// and fuel claims of its tasks are judged by.
    pub fn set_stages(&mut self, stages: Vec<(u32, ContentId, u64, Option<u64>)>) {
        self.stages = stages;
    }

    /// The module, fuel limit and `hold_over` of task `index`.
    fn module_of(&self, index: u32) -> (ContentId, u64, Option<u64>) {
        match self.stages.partition_point(|(b, ..)| *b <= index) {
            0 => (self.module, self.fuel_limit, None),
            n => {
                let (_, m, f, h) = self.stages[n - 1];
                (m, f, h)
            }
        }
    }

    /// Run `attempt` of task `index` went out: its results are judged against
    /// `input_digest`.
    pub fn open(&mut self, index: u32, attempt: u32, input_digest: impl FnOnce() -> ContentId) {
        if self.resetting.remove(&index) {
            self.floors.insert(index, attempt);
        }
        self.digests.entry(index).or_insert_with(input_digest);
    }

    /// The task runs again because an input it took changed: what it was judged by goes,
    /// and its written result is void unless a new verdict replaces it.
    pub fn reset(&mut self, index: u32) {
        self.close(index);
        self.resetting.insert(index);
        self.reopened.insert(index);
    }

    /// A run of the task resumes from a checkpoint.
    pub fn resuming(&mut self, index: u32, attempt: u32) {
        self.resumed.entry(index).or_default().push(attempt);
    }

    /// A run was handed back unfinished.
    pub fn returned(&mut self, index: u32, attempt: u32) {
        self.take_resumed(index, attempt);
    }

    /// Whether the run resumed from a checkpoint (asked once: it is forgotten).
    fn take_resumed(&mut self, index: u32, attempt: u32) -> bool {
        let Some(attempts) = self.resumed.get_mut(&index) else {
            return false;
        };
        let Some(pos) = attempts.iter().position(|a| *a == attempt) else {
            return false;
        };
        attempts.swap_remove(pos);
        if attempts.is_empty() {
            self.resumed.remove(&index);
        }
        true
    }

    /// Whether a run of the task failed before (a failed run must not get a fresh budget by
    /// resuming from a checkpoint).
    pub fn failed_before(&self, index: u32) -> bool {
        self.last_failure.contains_key(&index)
    }

    /// The task could not be sent (its inputs could not be read, ...).
    pub fn unsendable(&mut self, index: u32, why: String) {
        self.last_failure
            .insert(index, (FailureKind::Rejected, why));
    }

    /// The record a result claims to be signed over, rebuilt from what was assigned; `None`
    /// for a stale result or one without an outcome (unsigned).
    pub fn record_of(&self, result: &TaskResult) -> Option<ResultRecord> {
        let input = *self.digests.get(&result.index)?;
        if self
            .floors
            .get(&result.index)
            .is_some_and(|f| result.attempt < *f)
        {
            return None;
        }
        Some(ResultRecord {
            job: self.job,
            task: result.index,
            attempt: result.attempt,
            module: self.module_of(result.index).0,
            input,
            output: result.output_digest(),
            outcome: result.outcome?,
            fuel_used: result.fuel_used,
        })
    }

    /// Rebuilds every result's record and checks all of `peer`'s signatures in one batch.
    pub fn signatures(
        &mut self,
        peer: PeerId,
        results: &[TaskResult],
    ) -> Vec<Option<(ResultRecord, bool)>> {
        let checked: Vec<Option<(ResultRecord, Vec<u8>)>> = results
            .iter()
            .map(|r| {
                self.record_of(r).map(|rec| {
                    let bytes = rec.signing_bytes();
                    (rec, bytes)
                })
            })
            .collect();
        let items: Vec<(PeerId, &[u8], &[u8])> = checked
            .iter()
            .zip(results)
            .filter_map(|(c, r)| {
                c.as_ref()
                    .map(|(_, b)| (peer, b.as_slice(), r.signature.as_slice()))
            })
            .collect();
        let mut ok = self.keys.verify_many(&items).into_iter();
        checked
            .into_iter()
            .map(|c| c.map(|(rec, _)| (rec, ok.next().unwrap_or(false))))
            .collect()
    }

    /// Judges one result from `peer`, given its rebuilt record and whether the signature
    /// matched (from [`Tally::signatures`]).
    pub fn check(
        &mut self,
        peer: PeerId,
        result: &TaskResult,
        signed: Option<&(ResultRecord, bool)>,
    ) -> Check {
        let index = result.index;
        if index as u64 >= self.tasks {
            tracing::warn!("provider {peer} reported unknown task {index}");
            return Check::Stale;
        }
        // A task that is no longer open has no digest: a stale result, not wanted.
        if !self.digests.contains_key(&index)
            || self.floors.get(&index).is_some_and(|f| result.attempt < *f)
        {
            return Check::Stale;
        }
        let (Some(outcome), Some((record, signature_ok))) = (result.outcome, signed) else {
            // The provider could not run it at all (fetch failed, ...): unsigned, a retry.
            return self.fail(index, FailureKind::Rejected, result.message.clone());
        };
        self.fuel_spent = self.fuel_spent.saturating_add(result.fuel_used);
        if !signature_ok {
            tracing::warn!(
                "provider {peer}: the record of task {index} is not signed by it; result refused"
            );
            return self.refuse(
                peer,
                index,
                FailureKind::Rejected,
                "the result's signature does not match its record".into(),
            );
        }
        let fuel_limit = self.module_of(index).1;
        if result.fuel_used > fuel_limit {
            // Fuel is what a result is paid for: a claim above the task's limit is a lie.
            tracing::warn!(
                "provider {peer}: task {index} claims {} fuel, above its limit {}; result refused",
                result.fuel_used,
                fuel_limit
            );
            return self.refuse(
                peer,
                index,
                FailureKind::Rejected,
                "the result claims more fuel than the task's limit".into(),
            );
        }
        if outcome != Outcome::Ok {
            let kind = FailureKind::from_outcome(outcome).unwrap_or(FailureKind::Rejected);
            tracing::debug!(
                "task {index} failed on {peer}: {}: {}",
                kind.as_str(),
                result.message
            );
            return self.fail(index, kind, result.message.clone());
        }
        if let Some(why) = oversized(result) {
            // No sandbox lets a task make this much: the provider made it up.
            tracing::warn!("provider {peer}: task {index}: {why}; result refused");
            return self.refuse(peer, index, FailureKind::Rejected, why);
        }
        if let Some(why) = held_wrong(result, self.module_of(index).2) {
            // Kept outputs it was not asked to keep, or not as it was asked: made up.
            tracing::warn!("provider {peer}: task {index}: {why}; result refused");
            return self.refuse(peer, index, FailureKind::Rejected, why);
        }
        if let Some(bad) = result
            .outputs
            .iter()
            .find(|o| crate::output::safe_relative(&o.name).is_none())
        {
            let why = format!(
                "output file name {:?} is not a safe relative path",
                bad.name
            );
            return self.fail(index, FailureKind::Rejected, why);
        }
        if self.has_verifier {
            return Check::Verify;
        }
        self.vote_of(result, record)
    }

    /// The verifier's word on a result [`Check::Verify`] asked about: `Ok(None)` accepts,
    /// `Ok(Some(why))` rejects, `Err` is the requester's own failure (retried, nobody blamed).
    pub fn verified(
        &mut self,
        peer: PeerId,
        result: &TaskResult,
        record: &ResultRecord,
        verdict: Result<Option<String>, String>,
    ) -> Check {
        let index = result.index;
        match verdict {
            Ok(None) => self.vote_of(result, record),
            Ok(Some(why)) => {
                tracing::warn!("the verifier rejected task {index} from {peer}: {why}");
                self.refuse(peer, index, FailureKind::Unverified, why)
            }
            Err(e) => {
                tracing::error!("could not run the verifier on task {index}: {e}");
                self.fail(index, FailureKind::Rejected, format!("verifier: {e}"))
            }
        }
    }

    fn vote_of(&mut self, result: &TaskResult, record: &ResultRecord) -> Check {
        Check::Vote {
            digest: record.output,
            record: record.id(),
            resumed: self.take_resumed(result.index, result.attempt),
        }
    }

    fn fail(&mut self, index: u32, kind: FailureKind, why: String) -> Check {
        self.last_failure.insert(index, (kind, why));
        Check::Failed(kind)
    }

    fn refuse(&mut self, peer: PeerId, index: u32, kind: FailureKind, why: String) -> Check {
        self.rejected_results += 1;
        self.stats.entry(peer).or_default().rejected += 1;
        self.last_failure.insert(index, (kind, why));
        Check::Refused(kind)
    }

    /// The scheduler counted the vote: it waits for the task's verdict.
    pub fn add_vote(
        &mut self,
        peer: PeerId,
        result: TaskResult,
        digest: ContentId,
        record: ContentId,
    ) {
        self.votes.entry(result.index).or_default().push(Vote {
            provider: peer,
            digest,
            record,
            result,
        });
    }

    /// The scheduler reopened an accepted task for a re-check.
    pub fn reopened(&mut self, index: u32) {
        self.reopened.insert(index);
    }

    /// `provider` lost `tasks` runs.
    pub fn lost(&mut self, provider: PeerId, tasks: u64) {
        self.stats.entry(provider).or_default().lost += tasks;
    }

    /// Forgets what an open task needed: its input digest, votes, resumed runs and last
    /// failure.
    fn close(&mut self, index: u32) {
        self.digests.remove(&index);
        self.votes.remove(&index);
        self.resumed.remove(&index);
        self.last_failure.remove(&index);
    }

    /// Tasks with something still remembered (for tests of what closing forgets).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        let mut open: HashSet<u32> = self.digests.keys().copied().collect();
        open.extend(self.votes.keys());
        open.extend(self.resumed.keys());
        open.extend(self.last_failure.keys());
        open.len()
    }

    /// The task failed for good: its failure goes into the summary. Returns whether a result
    /// written earlier must be removed (it did not survive a re-check).
    pub fn task_failed(&mut self, index: u32, kind: FailureKind) -> bool {
        let last = self.last_failure.remove(&index);
        self.close(index);
        let remove = self.reopened.remove(&index);
        let message = match last {
            Some((_, m)) if kind != FailureKind::Lost && kind != FailureKind::NoQuorum => m,
            _ if kind == FailureKind::NoQuorum => {
                "its replicas disagreed and no output reached the quorum".to_string()
            }
            _ if kind == FailureKind::Upstream => {
                "a task of an earlier stage it takes input from failed".to_string()
            }
            _ => "its providers vanished or stopped reporting".to_string(),
        };
        self.failures.push(Failure {
            task: index as u64,
            stage: None,
            kind: kind.as_str().to_string(),
            message,
        });
        remove
    }

    /// The scheduler's verdict on a task: `accepted` is the output digest that reached the
    /// quorum (none: the task failed), `votes` every copy's digest.
    pub fn verdict(
        &mut self,
        index: u32,
        accepted: Option<ContentId>,
        verified: bool,
        votes: &[(PeerId, ContentId)],
    ) -> Verdict {
        let mut mine = self.votes.remove(&index).unwrap_or_default();
        let mut out = Verdict::default();
        // Fresh copies that agreed on the output must agree on the fuel too: each is paid
        // for at most the lowest claim among them, and a claim above the figure most of
        // them (two or more) report is overbilling, counted against its provider.
        let mut overbilled: Vec<PeerId> = Vec::new();
        if let Some(d) = accepted {
            let fresh: Vec<u64> = mine
                .iter()
                .filter(|v| v.digest == d && v.result.resumed.is_none())
                .map(|v| v.result.fuel_used)
                .collect();
            let lowest = fresh.iter().min().copied();
            let agreed_fuel = majority(&fresh);
            for v in &mine {
                let claim = v.result.fuel_used;
                if v.digest == d
                    && v.result.resumed.is_none()
                    && agreed_fuel.is_some_and(|f| claim > f)
                {
                    tracing::warn!(
                        "provider {}: task {index} claims {claim} fuel; the copies that agreed used {}; paid for that",
                        v.provider,
                        agreed_fuel.unwrap_or_default()
                    );
                    overbilled.push(v.provider);
                }
            }
            out.pay = mine
                .iter()
                .filter(|v| v.digest == d)
                .filter_map(|v| {
                    let record = self.record_of(&v.result)?;
                    let claim = v.result.fuel_used;
                    let fuel = lowest.filter(|l| v.result.resumed.is_none() && *l < claim);
                    Some(Payable {
                        provider: v.provider,
                        attempt: v.result.attempt,
                        record: record.signing_bytes(),
                        signature: v.result.signature.clone(),
                        fuel,
                    })
                })
                .collect();
        }
        self.close(index);
        if let Some(d) = accepted {
            out.holders = mine
                .iter()
                .filter(|v| v.digest == d && !v.result.held.is_empty())
                .map(|v| (v.provider, v.result.held.iter().map(|h| h.id).collect()))
                .collect();
            self.reopened.remove(&index);
            // The copy written is an agreeing one with the lowest fuel claim (a fresh one when
            // there is one), so an overbiller's claim never reaches the results.
            let pos = mine
                .iter()
                .enumerate()
                .filter(|(_, v)| v.digest == d)
                .min_by_key(|(_, v)| (v.result.resumed.is_some(), v.result.fuel_used))
                .map(|(i, _)| i);
            if let Some(pos) = pos {
                let v = mine.swap_remove(pos);
                self.fuel = self.fuel.saturating_add(v.result.fuel_used);
                self.stats.entry(v.provider).or_default().accepted += 1;
                out.write = Some((v, votes.len() as u32));
            }
            // Otherwise the winner is the result already written before a re-check.
        }
        if votes.len() < 2 {
            return out;
        }
        let winner = accepted;
        for (p, d) in votes {
            let cheated = overbilled.contains(p);
            let agreed = Some(*d) == winner && !cheated;
            let lost = winner.is_some() && !agreed;
            let st = self.stats.entry(*p).or_default();
            if agreed && verified {
                st.verified += 1;
            } else if lost {
                st.rejected += 1;
            }
            out.reputation.push(RepChange {
                provider: *p,
                verified: u64::from(agreed && verified),
                rejected: u64::from(lost),
                streak: if lost { Streak::Reset } else { Streak::Current },
            });
        }
        out.suspects.extend(overbilled.iter().copied());
        if votes.iter().any(|(_, d)| Some(*d) != winner) {
            let mut sides: Vec<Side> = Vec::new();
            for (p, d) in votes {
                let hex = d.to_hex();
                match sides.iter_mut().find(|s| s.output == hex) {
                    Some(side) => side.providers.push(p.to_string()),
                    None => sides.push(Side {
                        output: hex,
                        providers: vec![p.to_string()],
                    }),
                }
            }
            tracing::warn!(
                "task {index}: results disagreed ({} sides){}",
                sides.len(),
                if winner.is_some() {
                    "; the quorum's output was kept"
                } else {
                    ""
                }
            );
            self.discrepancies.push(Discrepancy {
                task: index as u64,
                accepted: winner.map(|d| d.to_hex()),
                sides,
            });
            out.suspects.extend(
                votes
                    .iter()
                    .filter(|(_, d)| winner.is_some() && Some(*d) != winner)
                    .map(|(p, _)| *p),
            );
        }
        out
    }
}

/// The value more than half of `xs` share, when at least two do.
fn majority(xs: &[u64]) -> Option<u64> {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for x in xs {
        *counts.entry(*x).or_default() += 1;
    }
    counts
        .into_iter()
        .find(|(_, n)| *n >= 2 && *n * 2 > xs.len())
        .map(|(x, _)| x)
}

/// Why a result is more than a provider's sandbox lets a task make (stdout, stderr, `/out`
/// bytes or files), if it is: the requester holds and writes what providers return to the
/// same limits.
pub fn oversized(r: &TaskResult) -> Option<String> {
    use naac_sandbox::{MAX_OUT_FILES, SandboxConfig};
    use naac_types::units::format_size;
    if r.stdout.len() > SandboxConfig::DEFAULT_STDOUT_LIMIT {
        return Some(format!(
            "its stdout of {} is over the sandbox's {} limit",
            format_size(r.stdout.len() as u64),
            format_size(SandboxConfig::DEFAULT_STDOUT_LIMIT as u64)
        ));
    }
    if r.stderr.len() > SandboxConfig::DEFAULT_STDERR_LIMIT {
        return Some(format!(
            "its stderr of {} is over the sandbox's {} limit",
            format_size(r.stderr.len() as u64),
            format_size(SandboxConfig::DEFAULT_STDERR_LIMIT as u64)
        ));
    }
    if r.outputs.len() > MAX_OUT_FILES {
        return Some(format!(
            "it returned {} output files; a task may leave at most {MAX_OUT_FILES}",
            r.outputs.len()
        ));
    }
    let bytes: u64 = r.outputs.iter().map(|o| o.data.len() as u64).sum();
    if bytes > SandboxConfig::DEFAULT_OUTPUT_LIMIT {
        return Some(format!(
            "its output files hold {}; a task may leave at most {}",
            format_size(bytes),
            format_size(SandboxConfig::DEFAULT_OUTPUT_LIMIT)
        ));
    }
    None
}

/// Why the outputs a result says its provider kept cannot be so: it was not asked to keep
/// any (`hold_over` is `None`), or one is smaller than asked, or there are too many, or
/// they and the sent ones are over a task's limits, or a name is unsafe or repeated.
pub fn held_wrong(r: &TaskResult, hold_over: Option<u64>) -> Option<String> {
    use naac_sandbox::{MAX_OUT_FILES, SandboxConfig};
    if r.held.is_empty() {
        return None;
    }
    let Some(over) = hold_over else {
        return Some("it kept outputs it was not asked to keep".into());
    };
    if r.held.len() > naac_proto::MAX_HELD_OUTPUTS || r.held.len() + r.outputs.len() > MAX_OUT_FILES
    {
        return Some(format!("it names {} kept output files", r.held.len()));
    }
    if let Some(h) = r.held.iter().find(|h| h.len < over) {
        return Some(format!(
            "it kept {:?} of {} bytes, under the {over} asked",
            h.name, h.len
        ));
    }
    let sent: u64 = r.outputs.iter().map(|o| o.data.len() as u64).sum();
    let kept = r.held.iter().fold(0u64, |a, h| a.saturating_add(h.len));
    if sent.saturating_add(kept) > SandboxConfig::DEFAULT_OUTPUT_LIMIT {
        return Some("its output files are over a task's limit".into());
    }
    let mut names = std::collections::HashSet::new();
    for n in r
        .outputs
        .iter()
        .map(|o| &o.name)
        .chain(r.held.iter().map(|h| &h.name))
    {
        if crate::output::safe_relative(n).is_none() || !names.insert(n) {
            return Some(format!("output file name {n:?} is unsafe or repeated"));
        }
    }
    None
}

#[cfg(test)]
#[path = "tally_tests.rs"]
mod tests;
