//! The escrows a provider paid at a bank has looked at: each job's escrow as the bank last
//! showed it and when, whether a look is under way, and whether a check failed on an older
//! look. No IO: the node asks the bank and reports back.
//!
//! A check that fails is not believed at once: the requester may have topped the escrow up
//! since the bank was last asked, so the tasks go back unstarted and the bank is asked
//! again; only a check that fails on a look taken after the last failure refuses the work.

use naac_proto::EscrowView;
use naac_types::JobId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A look younger than this is not repeated (a passing check on an older one asks again in
/// the background).
pub const FRESH: Duration = Duration::from_secs(1);
/// Most jobs remembered; the oldest looks go first.
pub const MAX_ESCROWS: usize = 4096;

/// One job's escrow as last seen.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When the bank answered.
    pub at: Instant,
    /// `None`: the job has no escrow there.
    pub view: Option<EscrowView>,
}

/// What to do with an assignment, as far as its escrow goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Hand the tasks back unstarted; the bank is being asked.
    Wait,
    /// Refuse the assignment: the escrow does not pay for it.
    Refuse(String),
}

#[derive(Debug, Default)]
pub struct Escrows {
    seen: HashMap<JobId, Seen>,
    asking: HashMap<JobId, Instant>,
    /// When a check last failed, per job.
    failed: HashMap<JobId, Instant>,
}

impl Escrows {
    pub fn get(&self, job: &JobId) -> Option<&Seen> {
        self.seen.get(job)
    }

    /// Whether to ask the bank about `job` now: not while a look is under way (for up to
    /// 10 s), nor when the last look is fresh. Marks it asked.
    pub fn should_ask(&mut self, job: JobId, now: Instant) -> bool {
        if let Some(since) = self.asking.get(&job)
            && now.duration_since(*since) < Duration::from_secs(10)
        {
            return false;
        }
        if let Some(s) = self.seen.get(&job)
            && now.duration_since(s.at) < FRESH
            && !self.failed.contains_key(&job)
        {
            return false;
        }
        if self.asking.len() >= MAX_ESCROWS {
            self.asking.clear();
        }
        self.asking.insert(job, now);
        true
    }

    /// Whether to ask the bank about `job` now, fresh look or not: not while a look is under
    /// way (for up to 10 s). Marks it asked.
    pub fn force_ask(&mut self, job: JobId, now: Instant) -> bool {
        if let Some(since) = self.asking.get(&job)
            && now.duration_since(*since) < Duration::from_secs(10)
        {
            return false;
        }
        if self.asking.len() >= MAX_ESCROWS {
            self.asking.clear();
        }
        self.asking.insert(job, now);
        true
    }

    /// A check of `job` is in doubt since `at` (an assignment that came then and waited for
    /// a look): a failure on a look taken after it is believed.
    pub fn doubt(&mut self, job: JobId, at: Instant) {
        let f = self.failed.entry(job).or_insert(at);
        *f = (*f).min(at);
    }

    /// The bank answered about `job` (an error keeps the last look).
    pub fn answered(&mut self, job: JobId, view: Result<Option<EscrowView>, String>, now: Instant) {
        self.asking.remove(&job);
        let Ok(view) = view else {
            return;
        };
        if self.seen.len() >= MAX_ESCROWS
            && !self.seen.contains_key(&job)
            && let Some(oldest) = self.seen.iter().min_by_key(|(_, s)| s.at).map(|(j, _)| *j)
        {
            self.seen.remove(&oldest);
            self.failed.remove(&oldest);
        }
        self.seen.insert(job, Seen { at: now, view });
    }

    /// What to do with an assignment of `job` whose check against the last look gave
    /// `check` (`None`: no look yet).
    pub fn verdict(
        &mut self,
        job: JobId,
        check: Option<Result<(), String>>,
        now: Instant,
    ) -> Verdict {
        match check {
            None => Verdict::Wait,
            Some(Ok(())) => {
                self.failed.remove(&job);
                Verdict::Run
            }
            Some(Err(why)) => {
                let look = self.seen.get(&job).map(|s| s.at);
                match (self.failed.get(&job), look) {
                    // It failed before, and this look was taken since: believe it (and
                    // doubt the next failure afresh: the escrow may be topped up).
                    (Some(failed), Some(at)) if at > *failed => {
                        self.failed.remove(&job);
                        Verdict::Refuse(why)
                    }
                    _ => {
                        self.failed.entry(job).or_insert(now);
                        Verdict::Wait
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use naac_types::{ContentId, Credits, Price};

    fn job() -> JobId {
        JobId::derive(&ContentId::of(b"e"), b"1")
    }

    fn view() -> EscrowView {
        EscrowView {
            payer: naac_proto::AccountKey([1; 32]),
            controller: None,
            left: Credits(10),
            max_price: Price(1),
            fuel_limit: 1,
            closed: false,
            expires_ms: u64::MAX,
            claim_window_ms: 0,
            closing: false,
            reserved_for: Credits::ZERO,
        }
    }

    #[test]
    fn a_failed_check_is_believed_only_on_a_look_taken_after_it() {
        let mut e = Escrows::default();
        let t0 = Instant::now();
        assert_eq!(e.verdict(job(), None, t0), Verdict::Wait);
        assert!(e.should_ask(job(), t0));
        assert!(!e.should_ask(job(), t0), "one look at a time");
        e.answered(job(), Ok(Some(view())), t0);
        // Fails on that look: wait and look again, it may have been topped up since.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(
            e.verdict(job(), Some(Err("short".into())), t1),
            Verdict::Wait
        );
        assert!(e.should_ask(job(), t1), "a failure asks again at once");
        e.answered(job(), Ok(Some(view())), t1 + Duration::from_millis(5));
        let t2 = t1 + Duration::from_millis(10);
        assert_eq!(
            e.verdict(job(), Some(Err("short".into())), t2),
            Verdict::Refuse("short".into())
        );
        // A refusal is followed by a fresh doubt, not by refusals on the same look.
        assert_eq!(e.verdict(job(), Some(Err("x".into())), t2), Verdict::Wait);
        // A pass clears the failure.
        assert_eq!(e.verdict(job(), Some(Ok(())), t2), Verdict::Run);
        assert_eq!(e.verdict(job(), Some(Err("x".into())), t2), Verdict::Wait);
    }

    #[test]
    fn looks_are_bounded_and_a_fresh_one_is_not_repeated() {
        let mut e = Escrows::default();
        let t = Instant::now();
        for i in 0..(MAX_ESCROWS as u32 + 10) {
            let j = JobId::derive(&ContentId::of(&i.to_le_bytes()), b"1");
            e.answered(j, Ok(None), t);
        }
        assert_eq!(e.seen.len(), MAX_ESCROWS);
        e.answered(job(), Ok(None), t);
        assert!(!e.should_ask(job(), t + Duration::from_millis(100)));
        assert!(e.should_ask(job(), t + FRESH));
    }
}
