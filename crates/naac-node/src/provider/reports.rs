//! Reporting: what a provider holds of each job and what it tells the requester. Results
//! batch up in an outbox while one report is in flight (at most [`REPORT_SOFT_LIMIT`] bytes
//! each, one larger result alone); a heartbeat renews the lease of everything held even
//! while a large report uploads; every report lists all attempts held (queued, running,
//! waiting to be sent, sent but unacknowledged), the highest `Assign` applied, and what was
//! handed back. No IO: the shell sends what [`JobState::next_report`] returns.

use naac_proto::{REPORT_SOFT_LIMIT, Report, TaskResult};
use naac_types::JobId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One task attempt held: queued or running.
#[derive(Debug)]
pub struct Held {
    pub attempt: u32,
    pub cancel: Arc<AtomicBool>,
    /// It got a slot (it is running, or paused while running).
    pub started: Arc<AtomicBool>,
}

impl Held {
    pub fn new(attempt: u32) -> Self {
        Self {
            attempt,
            cancel: Arc::new(AtomicBool::new(false)),
            started: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What to send for a job now.
#[derive(Debug)]
pub enum Outgoing {
    Nothing,
    /// A bare lease renewal beside the report in flight (its answer changes nothing).
    Renewal(Report),
    /// The next report; the shell tells [`JobState::report_answered`] when it is answered.
    Report(Report),
}

/// One requester's job on this provider.
#[derive(Debug, Default)]
pub struct JobState {
    /// Tasks queued or running, by index.
    pub held: HashMap<u32, Held>,
    /// Finished results not yet sent.
    outbox: Vec<TaskResult>,
    /// `(task, attempt)` of results in the report in flight.
    inflight: Vec<(u32, u32)>,
    reporting: bool,
    /// Highest `Assign::seq` applied.
    seen_seq: u64,
    /// Attempts handed back unfinished, for the next report.
    returned: Vec<(u32, u32)>,
    /// `(task, attempt)` of results sent as the answer to an `Assign`: listed as held until
    /// a later report is answered, since the requester may read that report before the
    /// answer (they travel on different exchanges) and must not take their runs for lost.
    replied: Vec<(u32, u32)>,
}

impl JobState {
    /// An `Assign` numbered `seq` was applied.
    pub fn applied(&mut self, seq: u64) {
        self.seen_seq = self.seen_seq.max(seq);
    }

    /// Holds a new attempt of task `index`; a stale attempt of it is cancelled.
    pub fn hold(&mut self, index: u32, held: Held) {
        if let Some(old) = self.held.insert(index, held) {
            old.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// A run finished: kept for the next report only if it is the attempt still held and
    /// not cancelled (a cancelled or superseded attempt's result is not wanted).
    pub fn finished(&mut self, result: TaskResult) -> bool {
        match self.held.get(&result.index) {
            Some(h) if h.attempt == result.attempt && !h.cancel.load(Ordering::Relaxed) => {}
            _ => return false,
        }
        self.held.remove(&result.index);
        self.outbox.push(result);
        true
    }

    /// Cancels the named attempts.
    pub fn cancel(&mut self, tasks: impl IntoIterator<Item = (u32, u32)>) {
        let wanted: HashSet<(u32, u32)> = tasks.into_iter().collect();
        self.held.retain(|t, h| {
            if wanted.contains(&(*t, h.attempt)) {
                h.cancel.store(true, Ordering::Relaxed);
                false
            } else {
                true
            }
        });
    }

    /// Cancels everything held (the job is dropped).
    pub fn cancel_all(&self) {
        for h in self.held.values() {
            h.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Hands back what has not started (and what is running too, if `running`): cancelled
    /// here and listed as returned in the next report. Returns whether anything went back.
    pub fn hand_back(&mut self, running: bool) -> bool {
        let mut back = Vec::new();
        self.held.retain(|index, h| {
            if running || !h.started.load(Ordering::Relaxed) {
                h.cancel.store(true, Ordering::Relaxed);
                back.push((*index, h.attempt));
                false
            } else {
                true
            }
        });
        let any = !back.is_empty();
        self.returned.extend(back);
        any
    }

    /// Hands back attempts that were never started here (an `Assign` that raced with a
    /// pause).
    pub fn return_unstarted(&mut self, runs: impl IntoIterator<Item = (u32, u32)>) {
        self.returned.extend(runs);
    }

    /// How many task attempts this job has here: held, waiting to be sent, in the report in
    /// flight, or handed back and not yet reported (what counts against the requester's
    /// share of this node).
    pub fn load(&self) -> usize {
        self.held.len() + self.outbox.len() + self.inflight.len() + self.returned.len()
    }

    /// Every attempt the requester should consider ours: held, waiting to be sent, or sent
    /// and not yet acknowledged.
    pub fn all_held(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self.held.iter().map(|(i, h)| (*i, h.attempt)).collect();
        v.extend(self.outbox.iter().map(|r| (r.index, r.attempt)));
        v.extend_from_slice(&self.inflight);
        v.extend_from_slice(&self.replied);
        v
    }

    /// What to send for `job` now: the next report (unless one is in flight or there is
    /// nothing to say), or on a `heartbeat` at least a renewal.
    pub fn next_report(&mut self, job: JobId, heartbeat: bool) -> Outgoing {
        // The job's state stays until the requester cancels it or goes away: an idle
        // provider keeps sending heartbeats, so the requester knows what it holds.
        if !heartbeat && self.outbox.is_empty() && self.returned.is_empty() {
            return Outgoing::Nothing;
        }
        if self.reporting {
            if !heartbeat {
                return Outgoing::Nothing;
            }
            return Outgoing::Renewal(Report {
                job,
                results: Vec::new(),
                held: self.all_held(),
                seen_seq: self.seen_seq,
                returned: Vec::new(),
            });
        }
        let mut size = 0;
        let mut n = 0;
        for r in &self.outbox {
            if n > 0 && size + r.size() > REPORT_SOFT_LIMIT {
                break;
            }
            size += r.size();
            n += 1;
        }
        let results: Vec<TaskResult> = self.outbox.drain(..n).collect();
        self.inflight = results.iter().map(|r| (r.index, r.attempt)).collect();
        self.reporting = true;
        Outgoing::Report(Report {
            job,
            results,
            held: self.all_held(),
            seen_seq: self.seen_seq,
            returned: std::mem::take(&mut self.returned),
        })
    }

    /// The report in flight was answered (or failed: it is not resent, and its results
    /// drop out of what we hold, so the requester reassigns them).
    pub fn report_answered(&mut self) {
        self.reporting = false;
        self.inflight.clear();
        // No answer can go out while a report is in flight, so what was replied before
        // this report is exactly what it listed.
        self.replied.clear();
    }

    /// The report in flight went out as the answer to an `Assign` instead of a request of
    /// its own: nothing acknowledges it, so the next report may go at once, and lists its
    /// results as held until that one is answered.
    pub fn report_replied(&mut self) {
        self.reporting = false;
        self.replied.append(&mut self.inflight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use naac_types::{ContentId, Outcome};

    fn job() -> JobId {
        JobId::derive(&ContentId::of(b"j"), b"1")
    }

    fn result(index: u32, attempt: u32, bytes: usize) -> TaskResult {
        TaskResult {
            index,
            attempt,
            outcome: Some(Outcome::Ok),
            exit_code: Some(0),
            message: String::new(),
            fuel_used: 1,
            wall_us: 1,
            stdout: vec![b'x'; bytes],
            stderr: Vec::new(),
            outputs: Vec::new(),
            signature: Vec::new(),
            checkpoints: 0,
            resumed: None,
            held: Vec::new(),
        }
    }

    fn sorted(mut v: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
        v.sort();
        v
    }

    #[test]
    fn one_report_in_flight_and_results_batch_up_meanwhile() {
        let mut j = JobState::default();
        j.applied(3);
        for i in 0..3 {
            j.hold(i, Held::new(0));
        }
        assert!(matches!(j.next_report(job(), false), Outgoing::Nothing));
        assert!(j.finished(result(0, 0, 10)));
        let Outgoing::Report(r) = j.next_report(job(), false) else {
            panic!("a report")
        };
        assert_eq!((r.results.len(), r.seen_seq), (1, 3));
        assert_eq!(
            sorted(r.held),
            vec![(0, 0), (1, 0), (2, 0)],
            "in flight counts as held"
        );
        assert!(j.finished(result(1, 0, 10)));
        assert!(j.finished(result(2, 0, 10)));
        assert!(matches!(j.next_report(job(), false), Outgoing::Nothing));
        // A heartbeat renews everything while the report uploads.
        let Outgoing::Renewal(r) = j.next_report(job(), true) else {
            panic!("a renewal")
        };
        assert!(r.results.is_empty());
        assert_eq!(sorted(r.held), vec![(0, 0), (1, 0), (2, 0)]);
        j.report_answered();
        let Outgoing::Report(r) = j.next_report(job(), false) else {
            panic!("a report")
        };
        assert_eq!(r.results.len(), 2, "what finished meanwhile rides together");
        j.report_answered();
        assert!(j.all_held().is_empty());
        // Idle, a heartbeat still goes out.
        assert!(matches!(j.next_report(job(), true), Outgoing::Report(_)));
    }

    #[test]
    fn results_replied_stay_listed_until_a_later_report_is_answered() {
        let mut j = JobState::default();
        for i in 0..2 {
            j.hold(i, Held::new(0));
        }
        assert!(j.finished(result(0, 0, 10)));
        let Outgoing::Report(r) = j.next_report(job(), false) else {
            panic!("a report")
        };
        assert_eq!(r.results.len(), 1);
        j.report_replied();
        assert!(j.finished(result(1, 0, 10)));
        // Not held back behind the answer, which nothing acknowledges.
        let Outgoing::Report(r) = j.next_report(job(), false) else {
            panic!("a report")
        };
        assert_eq!(r.results.len(), 1);
        assert_eq!(
            sorted(r.held),
            vec![(0, 0), (1, 0)],
            "the replied result is listed, so the requester never takes it for lost"
        );
        j.report_answered();
        assert!(j.all_held().is_empty());
        assert_eq!(j.load(), 0, "results sent count against no share");
    }

    #[test]
    fn reports_are_cut_at_the_soft_limit_but_a_large_result_goes_alone() {
        let mut j = JobState::default();
        let big = REPORT_SOFT_LIMIT / 2;
        for i in 0..3 {
            j.hold(i, Held::new(0));
            assert!(j.finished(result(i, 0, big)));
        }
        j.hold(3, Held::new(0));
        assert!(j.finished(result(3, 0, REPORT_SOFT_LIMIT * 2)));
        let mut sizes = Vec::new();
        while let Outgoing::Report(r) = j.next_report(job(), false) {
            sizes.push(r.results.len());
            j.report_answered();
        }
        assert_eq!(sizes, vec![1, 1, 1, 1]);
    }

    #[test]
    fn stale_and_cancelled_attempts_are_not_reported() {
        let mut j = JobState::default();
        j.hold(5, Held::new(0));
        let old = j.held[&5].cancel.clone();
        j.hold(5, Held::new(1));
        assert!(
            old.load(Ordering::Relaxed),
            "the superseded attempt is cancelled"
        );
        assert!(!j.finished(result(5, 0, 1)));
        j.hold(6, Held::new(0));
        j.cancel([(6, 0), (5, 0)]);
        assert!(!j.finished(result(6, 0, 1)));
        assert_eq!(j.all_held(), vec![(5, 1)], "a cancel names the attempt");
        assert!(j.finished(result(5, 1, 1)));
    }

    #[test]
    fn a_pause_hands_back_what_has_not_started_then_the_rest() {
        let mut j = JobState::default();
        j.hold(1, Held::new(0));
        j.hold(2, Held::new(4));
        j.held[&2].started.store(true, Ordering::Relaxed);
        assert!(j.hand_back(false));
        assert_eq!(j.all_held(), vec![(2, 4)]);
        let Outgoing::Report(r) = j.next_report(job(), false) else {
            panic!("a report")
        };
        assert_eq!(r.returned, vec![(1, 0)]);
        j.report_answered();
        assert!(!j.hand_back(false), "nothing unstarted is left");
        assert!(j.hand_back(true));
        j.return_unstarted([(9, 0)]);
        let Outgoing::Report(r) = j.next_report(job(), false) else {
            panic!("a report")
        };
        assert_eq!(r.returned, vec![(2, 4), (9, 0)]);
        assert!(r.held.is_empty());
    }
}
