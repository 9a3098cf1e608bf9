use super::*;
use std::collections::HashSet;

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
        let mut h = Self {
            s: Scheduler::new(total, config),
            held: HashMap::new(),
            failed: Vec::new(),
            cancels: Vec::new(),
            accepted: HashMap::new(),
            ever_accepted: HashSet::new(),
            verdicts: Vec::new(),
            reopened: Vec::new(),
            finished: false,
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(c) = self.s.poll_command() {
            match c {
                Command::Assign { provider, tasks } => {
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
                        self.accepted.insert(task, d);
                        self.ever_accepted.insert(task);
                    }
                    self.verdicts.push((task, accepted, verified, votes));
                }
                Command::Reopened { task, provider } => self.reopened.push((task, provider)),
                Command::Lost { .. } => {}
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
        for _ in 0..300 {
            now += next(50);
            let p = next(4) as u32;
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
                _ => {
                    if let Some(t) = h.complete_one(p, now) {
                        assert!(accepted.insert(t), "seed {seed}: {t:?} accepted twice");
                    }
                }
            }
            h.check();
            for (t, _) in &h.failed {
                assert!(
                    !accepted.contains(t),
                    "seed {seed}: {t:?} accepted and failed"
                );
            }
        }
        // Calm period: one reliable provider finishes the job.
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

fn verify_cfg(replicas: u32, quorum: u32, max_replicas: u32) -> Config {
    Config {
        verify: VerifyPolicy {
            replicas,
            quorum,
            max_replicas,
            ..VerifyPolicy::default()
        },
        ..cfg()
    }
}

/// Runs the job to the end: every provider answers its oldest task each round, faulty
/// ones with a wrong digest.
fn run_to_end(h: &mut Harness, providers: &[u32], faulty: impl Fn(u32, TaskId) -> bool) -> u64 {
    let mut now = 0;
    while !h.finished {
        now += 10;
        for &p in providers {
            h.s.renew(&p, Millis(now));
            h.answer_one(p, now, |t| if faulty(p, t) { bad(t, p) } else { good(t) });
        }
        h.s.tick(Millis(now));
        h.drain();
        h.check();
        assert!(now < 100_000_000, "job never finished");
    }
    now
}

#[test]
fn replicas_outvote_faulty_providers() {
    let mut h = Harness::new(60, verify_cfg(3, 2, 5));
    let providers = [1, 2, 3, 4, 5];
    for p in providers {
        h.join(p, 2, 0);
    }
    run_to_end(&mut h, &providers, |p, _| p >= 4);
    assert!(h.failed.is_empty(), "{:?}", h.failed);
    for t in 0..60 {
        assert_eq!(h.accepted[&TaskId(t)], good(TaskId(t)), "task {t}");
    }
    // Every verdict is backed by a quorum of distinct providers, and the faulty ones are
    // always on the losing side.
    for (t, d, verified, votes) in &h.verdicts {
        let d = d.expect("no task failed");
        let agree: HashSet<u32> = votes
            .iter()
            .filter(|(_, v)| *v == d)
            .map(|(p, _)| *p)
            .collect();
        assert!(agree.len() >= 2 && *verified, "task {t:?}: {votes:?}");
        assert!(agree.iter().all(|p| *p <= 3));
    }
    assert!(h.s.progress().disagreements > 0);
    assert_eq!(h.s.streak(&4), Some(0));
    assert!(h.s.streak(&1).expect("known") > 0);
}

#[test]
fn copies_never_share_an_owner() {
    let mut h = Harness::new(30, verify_cfg(2, 2, 2));
    let mut assigned: HashMap<TaskId, Vec<u32>> = HashMap::new();
    for (p, owner) in [(1, "a"), (2, "a"), (3, "b"), (4, "c")] {
        h.s.provider_joined(
            p,
            ProviderInfo {
                slots: 1,
                groups: vec![format!("owner:{owner}")],
                streak: 0,
                ..ProviderInfo::default()
            },
            Millis(0),
        );
    }
    let mut now = 0;
    while !h.finished {
        while let Some(c) = h.s.poll_command() {
            match c {
                Command::Assign { provider, tasks } => {
                    for (t, a) in tasks {
                        assigned.entry(t).or_default().push(provider);
                        h.held.entry(provider).or_default().push((t, a));
                    }
                }
                Command::JobFinished => h.finished = true,
                _ => {}
            }
        }
        now += 10;
        for p in 1..=4 {
            if let Some(held) = h.held.get_mut(&p)
                && !held.is_empty()
            {
                let (t, a) = held.remove(0);
                h.s.task_result(&p, t, a, good(t), Millis(now));
            }
        }
        assert!(now < 1_000_000);
    }
    for (t, ps) in assigned {
        let owners: HashSet<bool> = ps.iter().map(|p| *p <= 2).collect();
        assert!(
            !(ps.contains(&1) && ps.contains(&2)),
            "task {t:?} ran on both of owner a's providers: {ps:?} {owners:?}"
        );
    }
}

#[test]
fn disagreement_adds_replicas_then_fails_without_quorum() {
    let mut h = Harness::new(1, verify_cfg(2, 2, 3));
    for p in [1, 2, 3, 4] {
        h.join(p, 1, 0);
    }
    // Everyone returns a different answer: 2 votes, then one more, then give up.
    run_to_end(&mut h, &[1, 2, 3, 4], |_, _| true);
    assert_eq!(h.failed, vec![(TaskId(0), FailureKind::NoQuorum)]);
    let (_, accepted, _, votes) = h.verdicts.last().expect("known");
    assert_eq!((*accepted, votes.len()), (None, 3));
    assert_eq!(h.s.progress().started, 3);
}

#[test]
fn a_tie_is_broken_by_an_extra_replica() {
    let mut h = Harness::new(1, verify_cfg(2, 2, 3));
    for p in [1, 2, 3] {
        h.join(p, 1, 0);
    }
    run_to_end(&mut h, &[1, 2, 3], |p, _| p == 1);
    assert_eq!(h.accepted[&TaskId(0)], good(TaskId(0)));
    let (_, _, verified, votes) = h.verdicts.last().expect("known");
    assert!(*verified);
    assert_eq!(votes.len(), 3);
    assert_eq!(h.s.streak(&1), Some(0));
}

fn adaptive_cfg() -> Config {
    Config {
        verify: VerifyPolicy {
            adaptive: true,
            max_replicas: 3,
            trust_after: 10,
            ..VerifyPolicy::default()
        },
        seed: 7,
        ..cfg()
    }
}

#[test]
fn adaptive_replication_falls_once_trust_is_earned() {
    let total = 3_000;
    let mut h = Harness::new(total, adaptive_cfg());
    for p in [1, 2, 3] {
        h.join(p, 2, 0);
    }
    let mut now = 0;
    let mut half = None;
    while !h.finished {
        now += 10;
        for p in [1, 2, 3] {
            h.answer_one(p, now, good);
        }
        let pr = h.s.progress();
        if half.is_none() && pr.succeeded >= total / 2 {
            half = Some((pr.succeeded, pr.started));
        }
    }
    let pr = h.s.progress();
    let (done, started) = half.expect("known");
    let overhead = (pr.started - started) as f64 / (pr.succeeded - done) as f64;
    assert!(overhead < 1.2, "second-half overhead {overhead}");
    assert!(pr.verified > 30, "trust was earned by verification: {pr:?}");
    assert!(h.s.streak(&1).expect("known") >= 10);
}

#[test]
fn a_provider_that_turns_faulty_is_caught_and_its_results_rechecked() {
    let total = 3_000;
    let mut h = Harness::new(total, adaptive_cfg());
    for p in [1, 2, 3] {
        h.join(p, 2, 0);
    }
    let mut now = 0;
    let mut turned = false;
    while !h.finished {
        now += 10;
        if h.s.progress().succeeded >= total / 2 {
            turned = true;
        }
        for p in [1, 2, 3] {
            h.answer_one(
                p,
                now,
                |t| if turned && p == 1 { bad(t, 1) } else { good(t) },
            );
        }
        assert!(now < 100_000_000);
    }
    assert!(!h.reopened.is_empty(), "no recheck happened");
    assert!(h.reopened.iter().all(|(_, p)| *p == 1));
    // Caught: every result it got accepted on its own word was re-checked and replaced.
    for t in 0..total {
        assert_eq!(h.accepted[&TaskId(t)], good(TaskId(t)), "task {t}");
    }
    assert!(h.s.streak(&1).expect("known") < 10);
}

/// A provider cheating on 10% of its tasks under `spot_check = 0.1` is caught: each task it
/// cheats on is checked with probability 0.1, so a cheated result is caught with probability
/// 0.1 and the expected number of its tasks before detection is 1 / (0.1 * 0.1) = 100.
/// Detection within 10x that fails with probability 0.99^1000 < 5e-5; the seeds are fixed.
#[test]
fn spot_checks_catch_a_cheater_within_the_expected_number_of_tasks() {
    for seed in 0..20 {
        let total = 20_000;
        let mut h = Harness::new(
            total,
            Config {
                verify: VerifyPolicy {
                    spot_check: 0.1,
                    max_replicas: 3,
                    ..VerifyPolicy::default()
                },
                seed,
                ..cfg()
            },
        );
        for p in [1, 2, 3, 4] {
            h.join(p, 1, 0);
        }
        let cheats = |t: TaskId| blake3_like(t.0 as u64 ^ seed).is_multiple_of(10);
        let mut now = 0;
        let mut cheater_tasks = 0u32;
        let caught_after = loop {
            now += 10;
            for p in [1, 2, 3, 4] {
                if h.answer_one(p, now, |t| {
                    if p == 4 && cheats(t) {
                        bad(t, 4)
                    } else {
                        good(t)
                    }
                })
                .is_some()
                    && p == 4
                {
                    cheater_tasks += 1;
                }
            }
            let caught = h
                .verdicts
                .iter()
                .any(|(t, _, _, votes)| votes.iter().any(|(p, d)| *p == 4 && *d != good(*t)));
            if caught {
                break cheater_tasks;
            }
            assert!(
                !h.finished && cheater_tasks < 1_000,
                "seed {seed}: cheater not caught"
            );
        };
        assert!(caught_after <= 1_000, "seed {seed}: {caught_after}");
    }
}

fn blake3_like(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn stragglers_get_a_speculative_copy_and_the_first_result_wins() {
    let mut h = Harness::new(
        6,
        Config {
            straggler_factor: 3.0,
            straggler_min_ms: 0,
            ..cfg()
        },
    );
    h.join(1, 1, 0);
    h.join(2, 1, 0);
    // Provider 1 is fast; provider 2 never answers (but keeps renewing its lease).
    let mut now = 0;
    while !h.finished {
        now += 10;
        h.s.renew(&2, Millis(now));
        h.complete_one(1, now);
        h.s.tick(Millis(now));
        h.drain();
        assert!(now < 10_000, "the slow provider held the job hostage");
    }
    assert!(h.s.progress().speculative >= 1);
    // The slow provider's copies were cancelled.
    assert!(h.cancels.iter().any(|(p, _)| *p == 2));
    assert_eq!(h.s.progress().succeeded, 6);
}

/// Random interleavings with replication and faulty providers: every accepted digest is
/// backed by `quorum` distinct providers, no task ends both accepted and failed, and with
/// honest majorities no wrong result is accepted.
#[test]
fn quorum_never_accepts_a_minority() {
    for seed in 0..150u64 {
        let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let total = 1 + next(30) as u32;
        let (replicas, quorum) = [(2, 2), (3, 2), (3, 3), (4, 3)][next(4) as usize];
        let mut h = Harness::new(total, verify_cfg(replicas, quorum, replicas + 2));
        let faulty = |p: u32| p == 0;
        let mut now = 0;
        for _ in 0..400 {
            now += next(50);
            let p = next(6) as u32;
            match next(12) {
                0 => h.join(p, 1 + next(2) as u32, now),
                1 => h.lose(p),
                2 => {
                    h.fail_one(p, FailureKind::Trap, now);
                }
                3 => {
                    h.s.tick(Millis(now));
                    h.drain();
                }
                _ => {
                    h.answer_one(p, now, |t| if faulty(p) { bad(t, p) } else { good(t) });
                }
            }
            h.check();
        }
        for (t, d, _, votes) in &h.verdicts {
            if let Some(d) = d {
                let agree: HashSet<u32> = votes
                    .iter()
                    .filter(|(_, v)| v == d)
                    .map(|(p, _)| *p)
                    .collect();
                assert!(agree.len() as u32 >= quorum, "seed {seed}: {t:?} {votes:?}");
                assert_eq!(*d, good(*t), "seed {seed}: a wrong result won");
            }
        }
        // Without adaptive re-checks nothing is ever re-opened: accepted means final.
        for (t, _) in &h.failed {
            assert!(
                !h.ever_accepted.contains(t),
                "seed {seed}: {t:?} accepted and failed"
            );
        }
        let pr = h.s.progress();
        assert_eq!(pr.succeeded as usize, h.accepted.len(), "seed {seed}");
    }
}

#[test]
fn a_late_vote_cannot_make_a_quorum_with_its_own_owner() {
    let mut h = Harness::new(1, verify_cfg(2, 2, 2));
    for (p, owner) in [(1, "x"), (2, "y"), (3, "x")] {
        h.s.provider_joined(
            p,
            ProviderInfo {
                slots: 1,
                groups: vec![format!("owner:{owner}")],
                streak: 0,
                ..ProviderInfo::default()
            },
            Millis(0),
        );
    }
    h.drain();
    let (t, _) = h.held[&1][0];
    assert!(h.held[&2].iter().any(|(x, _)| *x == t));
    // Provider 1's lease lapses; the replacement copy may go to 3 (only 2 is out).
    h.s.renew(&2, Millis(1_500));
    h.s.renew(&3, Millis(1_500));
    h.s.tick(Millis(1_500));
    h.drain();
    assert!(
        h.held
            .get(&3)
            .is_some_and(|v| v.iter().any(|(x, _)| *x == t))
    );
    // 3 answers, then 1's late result arrives: same owner as 3, so it is no vote.
    let (_, a3) = h.held[&3][0];
    assert!(h.s.task_result(&3, t, a3, good(t), Millis(1_600)));
    assert!(
        !h.s.task_result(&1, t, 1, good(t), Millis(1_700)),
        "late vote from owner x"
    );
    h.drain();
    assert!(h.accepted.is_empty(), "accepted on owner x alone");
    // Provider 2 (owner y) completes the quorum.
    let (_, a2) = h.held[&2][0];
    assert!(h.s.task_result(&2, t, a2, good(t), Millis(1_800)));
    h.drain();
    assert_eq!(h.accepted[&t], good(t));
}

#[test]
fn a_lost_speculative_copy_does_not_fail_the_task() {
    let mut h = Harness::new(
        6,
        Config {
            retries: 0,
            straggler_factor: 2.0,
            straggler_min_ms: 0,
            ..cfg()
        },
    );
    h.join(1, 1, 0);
    h.join(2, 1, 0);
    let mut now = 0;
    // Provider 1 finishes its tasks quickly; provider 2 sits on its first one.
    while h.s.progress().speculative == 0 {
        now += 10;
        h.s.renew(&2, Millis(now));
        h.complete_one(1, now);
        h.s.tick(Millis(now));
        h.drain();
        assert!(now < 10_000, "no speculation");
    }
    // Provider 1 (holding the speculative copy) dies: the original on 2 carries on.
    h.lose_at(1, now);
    assert!(h.failed.is_empty(), "{:?}", h.failed);
    while !h.finished {
        now += 10;
        assert!(h.complete_one(2, now).is_some());
    }
    assert_eq!(h.s.progress().succeeded, 6);
}

#[test]
fn leaving_does_not_wipe_a_providers_unchecked_results() {
    let mut h = Harness::new(2_000, adaptive_cfg());
    for p in [1, 2, 3] {
        h.join(p, 1, 0);
    }
    let mut now = 0;
    // Earn trust, then provider 1 turns faulty.
    while h.s.progress().succeeded < 1_000 {
        now += 10;
        for p in [1, 2, 3] {
            h.answer_one(p, now, good);
        }
    }
    let mut cheated = 0;
    while cheated < 30 {
        now += 10;
        if h.answer_one(1, now, |t| bad(t, 1)).is_some() {
            cheated += 1;
        }
        for p in [2, 3] {
            h.answer_one(p, now, good);
        }
    }
    // It leaves before being caught, and comes back: its old results are still on file.
    h.lose_at(1, now);
    h.join(1, 1, now);
    while !h.finished {
        now += 10;
        for p in [1, 2, 3] {
            h.answer_one(p, now, |t| if p == 1 { bad(t, 1) } else { good(t) });
        }
        assert!(now < 100_000_000);
    }
    for t in 0..2_000 {
        assert_eq!(h.accepted[&TaskId(t)], good(TaskId(t)), "task {t}");
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
