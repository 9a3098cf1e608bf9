//! The watchdog: when a run gives up instead of waiting forever. Each tick it looks at the
//! scheduler's progress and the hosts in view and says whether to go on, to wait with a
//! reason shown (hosts are there but none may run the job now), or to fail, and why: no
//! provider joined (or none bid) within the wait, no host can run the job under `--no-wait`,
//! or providers are there but tasks stalled without one to run them. No IO; time is passed in.

use crate::explain::Explanation;
use naac_sched::Millis;
use naac_types::VerifyPolicy;
use std::time::Duration;

/// What the run looks like at one tick.
pub struct Sight<'a> {
    pub progress: &'a naac_sched::Progress,
    pub finished: bool,
    /// Why the hosts in view cannot run the job now.
    pub explanation: &'a Explanation,
    /// Providers that declined the job, as "peer: why".
    pub declined: &'a dyn Fn() -> Vec<String>,
    pub verify: &'a VerifyPolicy,
    /// Why the job's escrow cannot fund more copies, while it cannot.
    pub budget: Option<&'a str>,
}

/// The watchdog's word for one tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Watch {
    Go,
    /// Tasks wait for a host in view that may not run them now, for this reason.
    Wait(String),
    /// Give up, with a message that says what to do.
    Fail(String),
}

/// Timers of the three ways a run can wait too long.
#[derive(Debug)]
pub struct Watchdog {
    wait: Duration,
    no_wait: bool,
    no_provider_since: Option<Millis>,
    stalled_since: Option<Millis>,
}

impl Watchdog {
    /// Gives up after `wait` without providers or with stalled tasks; `no_wait` gives up at
    /// once when no host in view may run the job.
    pub fn new(wait: Duration, no_wait: bool, now: Millis) -> Self {
        Self {
            wait,
            no_wait,
            no_provider_since: Some(now),
            stalled_since: None,
        }
    }

    fn over(&self, since: Millis, now: Millis) -> bool {
        Duration::from_millis(now.0.saturating_sub(since.0)) > self.wait
    }

    pub fn tick(&mut self, now: Millis, s: &Sight<'_>) -> Watch {
        let p = s.progress;
        if p.providers > 0 {
            self.no_provider_since = None;
        } else if self.no_provider_since.is_none() {
            self.no_provider_since = Some(now);
        }
        if let Some(since) = self.no_provider_since
            && self.over(since, now)
        {
            let mut why = (s.declined)();
            if !why.is_empty() {
                why.sort();
                return Watch::Fail(format!(
                    "no provider bid for the job within {:?} ({} declined: {})\nhint: raise [budget] max_price in the job file, or pay through a bank (--bank ADDR)",
                    self.wait,
                    why.len(),
                    why.join("; ")
                ));
            }
            return Watch::Fail(format!(
                "no provider joined within {:?}; {} tasks are waiting\nhint: start providers with `naac node --provide` and pass --join ADDR, or run without --join to use this machine's cores",
                self.wait, p.pending
            ));
        }
        let e = s.explanation;
        if p.runs == 0 && !s.finished && e.hosts > 0 && e.usable == 0 {
            // Hosts are there but none may run the tasks now: wait (the reason is shown),
            // unless told not to.
            if self.no_wait {
                return Watch::Fail(format!(
                    "no host in view can run the job now: {}\nhint: see `naac pool`, or run without --no-wait to wait until one can",
                    e.reasons()
                ));
            }
            self.stalled_since = None;
            return Watch::Wait(e.reasons());
        }
        if let Some(why) = s.budget
            && p.runs == 0
            && !s.finished
        {
            // The payer must top up: waiting for that is not a stall.
            self.stalled_since = None;
            return Watch::Wait(why.to_string());
        }
        if p.providers > 0 && p.runs == 0 && !s.finished {
            let since = *self.stalled_since.get_or_insert(now);
            if self.over(since, now) {
                let v = s.verify;
                let why = if v.compares() {
                    format!(
                        "copies of a task must run on providers with distinct owners and networks (replicas = {}, quorum = {}), and only {} usable providers joined",
                        v.replicas, v.quorum, p.providers
                    )
                } else {
                    format!("none of the {} providers will take them", p.providers)
                };
                return Watch::Fail(format!(
                    "{} tasks have waited {:?} without a provider to run them: {why}\nhint: add providers (or --workers N for the embedded pool), or lower [verify] replicas",
                    p.pending, self.wait
                ));
            }
        } else {
            self.stalled_since = None;
        }
        Watch::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn progress(providers: u32, runs: u32, pending: u32) -> naac_sched::Progress {
        naac_sched::Progress {
            providers,
            runs,
            pending,
            total: pending + runs,
            ..Default::default()
        }
    }

    fn tick(w: &mut Watchdog, t: u64, p: &naac_sched::Progress, e: &Explanation) -> Watch {
        tick_with(w, t, p, e, &VerifyPolicy::default(), &Vec::new)
    }

    fn tick_with(
        w: &mut Watchdog,
        t: u64,
        p: &naac_sched::Progress,
        e: &Explanation,
        verify: &VerifyPolicy,
        declined: &dyn Fn() -> Vec<String>,
    ) -> Watch {
        w.tick(
            Millis(t),
            &Sight {
                progress: p,
                finished: false,
                explanation: e,
                declined,
                verify,
                budget: None,
            },
        )
    }

    #[test]
    fn no_provider_within_the_wait_fails_and_one_joining_resets_the_timer() {
        let mut w = Watchdog::new(WAIT, false, Millis(0));
        let none = Explanation::default();
        assert_eq!(tick(&mut w, 9_000, &progress(0, 0, 5), &none), Watch::Go);
        // One joins and runs tasks, then leaves: the wait starts again.
        assert_eq!(tick(&mut w, 9_500, &progress(1, 1, 4), &none), Watch::Go);
        assert_eq!(tick(&mut w, 12_000, &progress(0, 0, 4), &none), Watch::Go);
        assert_eq!(tick(&mut w, 22_000, &progress(0, 0, 4), &none), Watch::Go);
        let Watch::Fail(why) = tick(&mut w, 22_001, &progress(0, 0, 4), &none) else {
            panic!("expected a failure")
        };
        assert!(
            why.starts_with("no provider joined within 10s; 4 tasks are waiting"),
            "{why}"
        );
    }

    #[test]
    fn providers_that_declined_are_named_sorted() {
        let mut w = Watchdog::new(WAIT, false, Millis(0));
        let declined = || vec!["b: too cheap".to_string(), "a: busy".to_string()];
        let Watch::Fail(why) = tick_with(
            &mut w,
            10_001,
            &progress(0, 0, 1),
            &Explanation::default(),
            &VerifyPolicy::default(),
            &declined,
        ) else {
            panic!("expected a failure")
        };
        assert!(
            why.starts_with(
                "no provider bid for the job within 10s (2 declined: a: busy; b: too cheap)"
            ),
            "{why}"
        );
    }

    #[test]
    fn hosts_that_may_not_run_the_job_make_it_wait_or_fail_under_no_wait() {
        let ruled_out = Explanation::of_reasons([vec!["paused by its owner".to_string()]]);
        let mut w = Watchdog::new(WAIT, false, Millis(0));
        // Long past the wait: still waiting, with the reason, never stalled.
        for t in [100, 60_000, 600_000] {
            let Watch::Wait(why) = tick(&mut w, t, &progress(1, 0, 3), &ruled_out) else {
                panic!("expected to wait")
            };
            assert!(why.contains("paused by its owner"), "{why}");
        }
        let mut w = Watchdog::new(WAIT, true, Millis(0));
        let Watch::Fail(why) = tick(&mut w, 100, &progress(1, 0, 3), &ruled_out) else {
            panic!("expected a failure")
        };
        assert!(
            why.starts_with("no host in view can run the job now: "),
            "{why}"
        );
    }

    #[test]
    fn stalled_tasks_fail_after_the_wait_and_any_run_resets_it() {
        let usable = Explanation::of_reasons([Vec::new(), Vec::new()]);
        let mut w = Watchdog::new(WAIT, false, Millis(0));
        assert_eq!(tick(&mut w, 1_000, &progress(2, 0, 3), &usable), Watch::Go);
        assert_eq!(tick(&mut w, 10_000, &progress(2, 1, 2), &usable), Watch::Go);
        assert_eq!(tick(&mut w, 11_000, &progress(2, 0, 2), &usable), Watch::Go);
        assert_eq!(tick(&mut w, 21_000, &progress(2, 0, 2), &usable), Watch::Go);
        let verify = VerifyPolicy {
            replicas: 3,
            quorum: 2,
            ..VerifyPolicy::default()
        };
        let Watch::Fail(why) = tick_with(
            &mut w,
            21_001,
            &progress(2, 0, 2),
            &usable,
            &verify,
            &Vec::new,
        ) else {
            panic!("expected a failure")
        };
        assert!(
            why.contains("distinct owners and networks (replicas = 3, quorum = 2), and only 2 usable providers joined"),
            "{why}"
        );
    }

    #[test]
    fn a_job_paused_for_its_budget_waits_with_the_reason_never_stalls() {
        let usable = Explanation::of_reasons([Vec::new()]);
        let mut w = Watchdog::new(WAIT, false, Millis(0));
        let why = "paused: balance 3 credits, next batch needs 12; top up or lower max_price";
        for t in [1_000, 60_000, 600_000] {
            let got = w.tick(
                Millis(t),
                &Sight {
                    progress: &progress(1, 0, 3),
                    finished: false,
                    explanation: &usable,
                    declined: &Vec::new,
                    verify: &VerifyPolicy::default(),
                    budget: Some(why),
                },
            );
            assert_eq!(got, Watch::Wait(why.to_string()));
        }
    }
}
