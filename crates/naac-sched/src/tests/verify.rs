//! Tests of the verification policy: replication and quorum, independence of copies,
//! adaptive trust and re-checks, spot checks, and speculative copies of stragglers.

use super::*;

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
