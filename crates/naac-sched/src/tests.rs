//! Tests of the scheduler: placement, leases, retries, reconciliation, pauses and random
//! event interleavings against its invariants (verification tests are in `tests/verify.rs`).

use super::*;
use std::collections::HashSet;

mod dag;
mod verify;

/// Drains commands and keeps what each provider holds, like the requester would.
struct Harness {
    s: Scheduler<u32>,
    held: HashMap<u32, Vec<(TaskId, Attempt)>>,
    failed: Vec<(TaskId, FailureKind)>,
    cancels: Vec<(u32, Vec<TaskId>)>,
    /// Accepted digest per task (the latest verdict).
    accepted: HashMap<TaskId, ContentId>,
    /// Every task that was ever accepted.
    ever_accepted: HashSet<TaskId>,
    verdicts: Vec<VerdictSeen>,
    reopened: Vec<(TaskId, u32)>,
    finished: bool,
    /// What happened, in command order.
    log: Vec<Seen>,
}

/// A command as it came out, for checks of order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Assigned(TaskId),
    Accepted(TaskId, ContentId),
    Failed(TaskId, FailureKind),
    Reset(TaskId),
    Recompute(TaskId),
}

/// A verdict as the harness saw it: task, accepted digest, verified, votes.
type VerdictSeen = (TaskId, Option<ContentId>, bool, Vec<(u32, ContentId)>);

/// The right output of task `t`.
fn good(t: TaskId) -> ContentId {
    ContentId::of(&t.0.to_le_bytes())
}

/// A wrong output of task `t`, different per provider.
fn bad(t: TaskId, p: u32) -> ContentId {
    ContentId::of(&[t.0.to_le_bytes(), p.to_le_bytes()].concat())
}

impl Harness {
    fn new(total: u32, config: Config) -> Self {
        Self::with(Scheduler::new(total, config))
    }

    fn with(s: Scheduler<u32>) -> Self {
        let mut h = Self {
            s,
            held: HashMap::new(),
            failed: Vec::new(),
            cancels: Vec::new(),
            accepted: HashMap::new(),
            ever_accepted: HashSet::new(),
            verdicts: Vec::new(),
            reopened: Vec::new(),
            finished: false,
            log: Vec::new(),
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(c) = self.s.poll_command() {
            match c {
                Command::Assign { provider, tasks } => {
                    self.log
                        .extend(tasks.iter().map(|(t, _)| Seen::Assigned(*t)));
                    self.held.entry(provider).or_default().extend(tasks)
                }
                Command::Cancel { provider, tasks } => {
                    if let Some(h) = self.held.get_mut(&provider) {
                        h.retain(|held| !tasks.contains(held));
                    }
                    self.cancels
                        .push((provider, tasks.iter().map(|(t, _)| *t).collect()));
                }
                Command::TaskFailed { task, kind } => {
                    self.log.push(Seen::Failed(task, kind));
                    self.accepted.remove(&task);
                    self.failed.push((task, kind))
                }
                Command::Verdict {
                    task,
                    accepted,
                    verified,
                    votes,
                } => {
                    if let Some(d) = accepted {
                        self.log.push(Seen::Accepted(task, d));
                        self.accepted.insert(task, d);
                        self.ever_accepted.insert(task);
                    }
                    self.verdicts.push((task, accepted, verified, votes));
                }
                Command::Reopened { task, provider } => self.reopened.push((task, provider)),
                Command::Lost { .. } => {}
                Command::Reset { task } => self.log.push(Seen::Reset(task)),
                Command::Recompute { task } => self.log.push(Seen::Recompute(task)),
                Command::JobFinished => {
                    assert!(!self.finished, "finished twice");
                    self.finished = true
                }
            }
        }
    }

    fn join(&mut self, p: u32, slots: u32, now: u64) {
        self.s
            .provider_joined(p, ProviderInfo::slots(slots), Millis(now));
        self.drain();
    }

    /// Provider `p` completes its oldest held task successfully.
    fn complete_one(&mut self, p: u32, now: u64) -> Option<TaskId> {
        self.answer_one(p, now, good)
    }

    /// Provider `p` returns `digest(task)` for its oldest held task.
    fn answer_one(
        &mut self,
        p: u32,
        now: u64,
        digest: impl Fn(TaskId) -> ContentId,
    ) -> Option<TaskId> {
        let held = self.held.get_mut(&p)?;
        if held.is_empty() {
            return None;
        }
        let (t, a) = held.remove(0);
        self.s.task_result(&p, t, a, digest(t), Millis(now));
        self.drain();
        Some(t)
    }

    fn fail_one(&mut self, p: u32, kind: FailureKind, now: u64) -> Option<TaskId> {
        let held = self.held.get_mut(&p)?;
        if held.is_empty() {
            return None;
        }
        let (t, a) = held.remove(0);
        self.s.task_failed(&p, t, a, kind, Millis(now));
        self.drain();
        Some(t)
    }

    fn lose(&mut self, p: u32) {
        self.lose_at(p, 0);
    }

    fn lose_at(&mut self, p: u32, now: u64) {
        self.held.remove(&p);
        self.s.provider_lost(&p, Millis(now));
        self.drain();
    }

    fn check(&self) {
        let pr = self.s.progress();
        assert_eq!(pr.succeeded + pr.failed + pr.running + pr.pending, pr.total);
        let held: usize = self.held.values().map(Vec::len).sum();
        assert_eq!(held as u32, pr.runs, "what providers hold = runs out");
        assert!(pr.runs >= pr.running);
    }
}

fn cfg() -> Config {
    Config {
        retries: 2,
        lease_ms: 1_000,
        queue_target_ms: 20,
        max_queue_per_slot: 8,
        reconcile_grace_ms: 500,
        straggler_factor: 0.0,
        ..Config::default()
    }
}

#[test]
fn attempts_missing_from_a_report_are_lost_after_the_grace() {
    let mut h = Harness::new(3, cfg());
    h.join(1, 1, 0);
    let held = h.held[&1].clone();
    assert_eq!(held.len(), 2);
    // Too early: nothing happens even though the provider lists nothing.
    h.s.reconcile(&1, &[], Millis(100));
    h.drain();
    assert_eq!(h.s.progress().running, 2);
    // The provider only knows the first one: the second went missing.
    h.s.reconcile(&1, &held[..1], Millis(600));
    h.drain();
    assert_eq!(h.s.progress().retried, 1);
    // The lost task went out again as its second attempt (the harness keeps the stale copy).
    let (lost, _) = held[1];
    assert!(h.held[&1].contains(&(lost, 2)), "{:?}", h.held[&1]);
    // A result for the first task still counts; the listed one was never lost.
    assert!(h.s.task_result(&1, held[0].0, held[0].1, good(held[0].0), Millis(700)));
}

#[test]
fn strangers_cannot_deliver_results() {
    let mut h = Harness::new(2, cfg());
    h.join(1, 1, 0);
    h.join(2, 1, 0);
    let (t, _) = h.held[&1][0];
    assert!(
        !h.s.task_result(&2, t, 1, good(t), Millis(1)),
        "not its task"
    );
    assert!(
        !h.s.task_result(&9, t, 1, good(t), Millis(1)),
        "never joined"
    );
    assert!(h.s.task_result(&1, t, 1, good(t), Millis(1)));
}

#[test]
fn absurd_slot_counts_are_clamped() {
    let mut h = Harness::new(100_000, cfg());
    h.join(1, u32::MAX, 0);
    assert_eq!(h.s.capacity(&1), MAX_SLOTS + 1);
    h.complete_one(1, 1);
    assert!(h.s.capacity(&1) <= MAX_SLOTS * 9);
}

#[test]
fn empty_job_finishes_at_once() {
    let h = Harness::new(0, cfg());
    assert!(h.finished);
}

#[test]
fn tasks_kept_from_an_earlier_run_are_never_handed_out() {
    let mut h = Harness::new(10, cfg());
    h.s.keep_accepted([0, 3, 4, 9, 9, 42]);
    h.drain();
    assert_eq!(h.s.progress().succeeded, 4, "repeats and strangers ignored");
    h.join(1, 2, 0);
    let mut seen = HashSet::new();
    let mut now = 0;
    while !h.finished {
        now += 10;
        for (t, _) in &h.held[&1] {
            seen.insert(t.0);
        }
        h.complete_one(1, now);
        h.check();
    }
    assert!(seen.iter().all(|t| ![0, 3, 4, 9].contains(t)), "{seen:?}");
    assert_eq!(seen.len(), 6);
    assert_eq!(h.s.progress().succeeded, 10);
    // A job whose every task was kept is done before any provider joins.
    let mut all = Harness::new(3, cfg());
    all.s.keep_accepted(0..3);
    all.drain();
    assert!(all.finished);
}

#[test]
fn two_providers_share_and_finish() {
    let mut h = Harness::new(20, cfg());
    h.join(1, 2, 0);
    h.join(2, 1, 0);
    // Before any result: slots + 1 queued per provider.
    assert_eq!(h.held[&1].len(), 3);
    assert_eq!(h.held[&2].len(), 2);
    let mut now = 0;
    while !h.finished {
        now += 10;
        h.complete_one(1, now);
        h.complete_one(2, now);
        h.check();
    }
    let pr = h.s.progress();
    assert_eq!(pr.succeeded, 20);
    assert_eq!(pr.retried, 0);
}

#[test]
fn queue_depth_follows_task_duration() {
    let mut h = Harness::new(10_000, cfg());
    h.join(1, 2, 0);
    // Tiny tasks: the queue grows to the per-slot bound.
    for _ in 0..50 {
        h.complete_one(1, 0);
    }
    assert_eq!(h.s.capacity(&1), 2 + 2 * 8);
    assert_eq!(h.held[&1].len(), 18);
    // Long tasks: no queue beyond the slots (after the average settles).
    for i in 0..200 {
        h.complete_one(1, 100 + i * 100);
    }
    assert_eq!(h.s.capacity(&1), 2);
}

#[test]
fn provider_lost_mid_task_is_reassigned() {
    let mut h = Harness::new(6, cfg());
    h.join(1, 1, 0);
    h.join(2, 1, 0);
    let on_1: Vec<TaskId> = h.held[&1].iter().map(|(t, _)| *t).collect();
    assert!(!on_1.is_empty());
    h.lose(1);
    h.check();
    // Provider 2 picks the lost tasks up first (they go before fresh ones).
    h.complete_one(2, 1);
    let on_2: Vec<TaskId> = h.held[&2].iter().map(|(t, _)| *t).collect();
    assert!(on_1.iter().any(|t| on_2.contains(t)), "{on_1:?} {on_2:?}");
    let mut now = 0;
    while !h.finished {
        now += 1;
        assert!(h.complete_one(2, now).is_some(), "provider 2 has work");
    }
    assert_eq!(h.s.progress().succeeded, 6);
    assert_eq!(h.s.progress().retried as usize, on_1.len());
}

#[test]
fn provider_joining_late_gets_work() {
    let mut h = Harness::new(100, cfg());
    assert!(h.held.is_empty(), "no providers, nothing assigned");
    assert_eq!(h.s.progress().pending, 100);
    h.join(1, 1, 0);
    h.complete_one(1, 100);
    h.join(7, 4, 150);
    assert!(!h.held[&7].is_empty());
    h.check();
    let mut now = 200;
    while !h.finished {
        now += 100;
        h.complete_one(1, now);
        h.complete_one(7, now);
        h.complete_one(7, now);
    }
    assert_eq!(h.s.progress().succeeded, 100);
}

#[test]
fn lapsed_lease_reassigns_and_cancels() {
    let mut h = Harness::new(4, cfg());
    h.join(1, 1, 0);
    h.join(2, 1, 0);
    let stuck: Vec<TaskId> = h.held[&1].iter().map(|(t, _)| *t).collect();
    // Provider 2 keeps reporting; provider 1 goes silent.
    h.s.renew(&2, Millis(900));
    h.s.tick(Millis(1_500));
    h.drain();
    assert!(h.cancels.iter().any(|(p, ts)| *p == 1 && *ts == stuck));
    assert!(h.held.get(&1).is_none_or(Vec::is_empty));
    h.check();
    let mut now = 1_500;
    while !h.finished {
        now += 10;
        assert!(h.complete_one(2, now).is_some());
    }
    // Provider 1 comes back: renewing makes it eligible again, but there is nothing left.
    h.s.renew(&1, Millis(now));
    h.drain();
    assert!(h.held.get(&1).is_none_or(Vec::is_empty));
}

#[test]
fn late_result_after_lapse_is_accepted_once() {
    let mut h = Harness::new(1, cfg());
    h.join(1, 1, 0);
    let (t, _) = h.held[&1][0];
    h.s.tick(Millis(5_000));
    h.drain();
    h.join(2, 1, 5_000);
    assert_eq!(h.held[&2][0].0, t);
    // The slow provider's result arrives after all: accepted, the copy is cancelled.
    assert!(h.s.task_result(&1, t, 1, good(t), Millis(5_100)));
    h.drain();
    assert!(h.cancels.iter().any(|(p, ts)| *p == 2 && ts.contains(&t)));
    assert!(h.finished);
    // The duplicate is not accepted.
    assert!(!h.s.task_result(&2, t, 2, good(t), Millis(5_200)));
    assert_eq!(h.s.progress().succeeded, 1);
}

#[test]
fn failures_retry_elsewhere_then_fail_for_good() {
    let mut h = Harness::new(1, cfg()); // retries = 2: three attempts
    h.join(1, 1, 0);
    h.join(2, 1, 0);
    let first = if h.held.get(&1).is_some_and(|v| !v.is_empty()) {
        1
    } else {
        2
    };
    let other = 3 - first;
    h.fail_one(first, FailureKind::Trap, 1);
    assert_eq!(h.held[&other].len(), 1, "retried on the other provider");
    h.fail_one(other, FailureKind::Trap, 2);
    assert_eq!(h.held[&first].len(), 1, "and back");
    h.fail_one(first, FailureKind::OutOfFuel, 3);
    assert_eq!(h.failed, vec![(TaskId(0), FailureKind::OutOfFuel)]);
    assert!(h.finished);
    let pr = h.s.progress();
    assert_eq!((pr.succeeded, pr.failed, pr.retried), (0, 1, 1));
}

#[test]
fn a_lone_provider_still_gets_the_retry() {
    let mut h = Harness::new(1, cfg());
    h.join(1, 1, 0);
    h.fail_one(1, FailureKind::Exit, 1);
    assert_eq!(h.held[&1].len(), 1);
}

#[test]
fn losses_exhaust_retries_as_lost() {
    let mut h = Harness::new(
        1,
        Config {
            retries: 1,
            ..cfg()
        },
    );
    h.join(1, 1, 0);
    h.lose(1);
    h.join(2, 1, 10);
    h.lose(2);
    assert_eq!(h.failed, vec![(TaskId(0), FailureKind::Lost)]);
    assert!(h.finished);
}

#[test]
fn stale_failure_reports_are_ignored() {
    let mut h = Harness::new(1, cfg());
    h.join(1, 1, 0);
    let (t, a) = h.held[&1][0];
    h.s.task_failed(&1, t, a + 5, FailureKind::Trap, Millis(1));
    h.s.task_failed(&9, t, a, FailureKind::Trap, Millis(1));
    h.drain();
    assert_eq!(h.s.progress().running, 1);
    assert_eq!(h.s.progress().retried, 0);
}

/// Random interleavings of every event: counts always add up, no task is both accepted and
/// failed, and the job always finishes once providers stop misbehaving.
#[test]
fn a_start_limit_caps_the_runs_started_and_a_higher_one_places_at_once() {
    let mut h = Harness::new(100, cfg());
    h.s.set_start_limit(Some(3), Millis(0));
    h.join(1, 4, 0);
    h.join(2, 4, 0);
    h.drain();
    assert_eq!(
        h.s.progress().runs,
        3,
        "the limit, not the 10 slots and queues"
    );
    // A run that ends frees no room: only a higher limit (a payment) does.
    h.complete_one(1, 10);
    assert_eq!(h.s.progress().runs, 2);
    assert_eq!(h.s.progress().started, 3);
    h.s.set_start_limit(Some(4), Millis(20));
    h.drain();
    assert_eq!(h.s.progress().started, 4);
    // A lower limit places nothing and takes nothing back.
    h.s.set_start_limit(Some(1), Millis(30));
    h.drain();
    assert_eq!(h.s.progress().runs, 3);
    // Raised: placed at once, without waiting for an event.
    h.s.set_start_limit(Some(10), Millis(40));
    h.drain();
    assert_eq!(h.s.progress().started, 10);
    h.s.set_start_limit(None, Millis(50));
    h.drain();
    assert!(h.s.progress().started > 10);
    h.check();
}

#[test]
fn random_event_sequences_keep_invariants() {
    for seed in 0..200u64 {
        let mut rng = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let total = 1 + next(40) as u32;
        let mut h = Harness::new(
            total,
            Config {
                retries: 2,
                ..cfg()
            },
        );
        let mut now = 0;
        let mut accepted = HashSet::new();
        let mut limit: Option<u64> = None;
        for _ in 0..300 {
            now += next(50);
            let p = next(4) as u32;
            let started_before = h.s.progress().started;
            match next(10) {
                0 => h.join(p, 1 + next(3) as u32, now),
                1 => h.lose(p),
                2 => {
                    h.fail_one(p, FailureKind::Trap, now);
                }
                3 => {
                    h.s.tick(Millis(now));
                    h.drain();
                }
                4 if seed % 2 == 1 => {
                    // Half the seeds run under a changing run limit (a rolling escrow).
                    let l = h.s.progress().started + next(4);
                    limit = Some(l);
                    h.s.set_start_limit(limit, Millis(now));
                    h.drain();
                }
                _ => {
                    if let Some(t) = h.complete_one(p, now) {
                        assert!(accepted.insert(t), "seed {seed}: {t:?} accepted twice");
                    }
                }
            }
            h.check();
            if let Some(l) = limit {
                let started = h.s.progress().started;
                assert!(
                    started <= l.max(started_before),
                    "seed {seed}: {started} runs started under a limit of {l}"
                );
            }
            for (t, _) in &h.failed {
                assert!(
                    !accepted.contains(t),
                    "seed {seed}: {t:?} accepted and failed"
                );
            }
        }
        // Calm period: one reliable provider finishes the job.
        h.s.set_start_limit(None, Millis(now));
        h.drain();
        h.join(99, 4, now);
        while !h.finished {
            now += 10;
            h.s.renew(&99, Millis(now));
            h.s.tick(Millis(now));
            h.drain();
            for p in [0, 1, 2, 3, 99] {
                if let Some(t) = h.complete_one(p, now) {
                    accepted.insert(t);
                }
            }
            assert!(now < 10_000_000, "seed {seed}: job never finished");
        }
        let pr = h.s.progress();
        assert_eq!(pr.succeeded + pr.failed, total, "seed {seed}");
        assert_eq!(pr.succeeded as usize, accepted.len(), "seed {seed}");
    }
}

#[test]
fn idle_providers_do_not_lapse_and_new_work_gets_a_full_lease() {
    let mut h = Harness::new(3, cfg()); // lease 1 s
    h.join(1, 1, 0);
    h.join(2, 1, 0);
    // Provider 2 finishes its work and goes quiet; provider 1 keeps reporting.
    h.complete_one(2, 10);
    while h.held.get(&2).is_some_and(|v| !v.is_empty()) {
        h.complete_one(2, 20);
    }
    for now in (100..5_000).step_by(100) {
        h.s.renew(&1, Millis(now));
        h.s.tick(Millis(now));
        h.drain();
    }
    assert!(
        h.cancels.iter().all(|(p, _)| *p != 2),
        "idle provider 2 was lapsed"
    );
    // Provider 1 dies: its work goes to provider 2, which was idle for seconds.
    h.lose_at(1, 5_000);
    assert!(h.held.get(&2).is_some_and(|v| !v.is_empty()));
    h.s.tick(Millis(5_100));
    h.drain();
    assert!(
        h.held.get(&2).is_some_and(|v| !v.is_empty()),
        "fresh lease, not lapsed at once"
    );
    while !h.finished {
        assert!(h.complete_one(2, 5_200).is_some());
    }
}

#[test]
fn a_paused_provider_keeps_its_runs_but_gets_no_new_work() {
    let mut h = Harness::new(20, cfg());
    h.join(1, 1, 0);
    let before = h.held[&1].clone();
    assert!(!before.is_empty());
    h.s.set_paused(&1, true, Millis(1));
    h.drain();
    assert!(!h.s.is_available(&1));
    // It finishes what it holds, and nothing new arrives while paused.
    while h.complete_one(1, 2).is_some() {}
    assert!(h.held[&1].is_empty(), "no work for a paused provider");
    h.check();
    h.s.set_paused(&1, false, Millis(3));
    h.drain();
    assert!(!h.held[&1].is_empty(), "work again once it may take it");
    h.check();
}

#[test]
fn returned_runs_go_elsewhere_without_spending_retries() {
    let mut h = Harness::new(
        2,
        Config {
            retries: 0,
            ..cfg()
        },
    );
    h.join(1, 2, 0);
    let runs = h.held[&1].clone();
    assert_eq!(runs.len(), 2);
    h.s.set_paused(&1, true, Millis(1));
    // Handed back twice (the second time stale): neither counts as a failure.
    for _ in 0..2 {
        h.held.get_mut(&1).expect("held").clear();
        h.s.runs_returned(&1, &runs, Millis(2));
        h.drain();
    }
    assert!(h.failed.is_empty(), "a returned run is not a failure");
    h.join(2, 2, 3);
    assert_eq!(h.held[&2].len(), 2, "both tasks went to the other provider");
    while h.complete_one(2, 4).is_some() {}
    assert!(h.finished);
    assert_eq!(h.s.progress().retried, 0);
}

#[test]
fn local_workers_come_last_and_take_the_retries() {
    let mut h = Harness::new(6, cfg());
    let local = ProviderInfo {
        slots: 1,
        fallback: true,
        ..ProviderInfo::default()
    };
    // The local worker joins first, yet remote providers are offered work before it.
    h.s.provider_joined(9, local, Millis(0));
    h.drain();
    assert_eq!(h.held[&9].len(), 2, "alone, it works");
    h.join(1, 1, 0);
    h.join(2, 1, 0);
    // Local 9 holds 0 and 1; remotes 1 and 2 hold 2..6, and nothing fresh is left.
    assert_eq!(h.held[&1].len() + h.held[&2].len(), 4);
    h.complete_one(9, 1);
    h.complete_one(9, 2);
    h.complete_one(2, 3);
    // Remote 1's run fails: remote 2 has room, but the retry goes to the local worker.
    let failed = h.fail_one(1, FailureKind::Trap, 4).expect("a task");
    assert!(
        h.held[&9].iter().any(|(t, a)| *t == failed && *a == 2),
        "retry of {failed:?} on the local worker: {:?}",
        h.held
    );
    h.check();
}
