//! Jobs of stages: pipelining, failures reaching exactly the dependents, re-runs after a
//! changed input, and random DAGs under random events against the invariants.
#![allow(clippy::unwrap_used)]

use super::*;

fn stage(width: u32, each: Option<usize>, all: &[usize]) -> StageSpec {
    StageSpec {
        width,
        each,
        all: all.to_vec(),
        verify: VerifyPolicy::default(),
        retries: 1,
    }
}

/// The tasks `t` takes input from, computed from the specs (independently of the scheduler).
fn inputs_of(specs: &[StageSpec], t: TaskId) -> Vec<TaskId> {
    let mut base = 0;
    for s in specs {
        if t.0 < base + s.width {
            let i = t.0 - base;
            let base_of = |u: usize| specs[..u].iter().map(|x| x.width).sum::<u32>();
            let mut out: Vec<TaskId> = s.each.iter().map(|&u| TaskId(base_of(u) + i)).collect();
            for &u in &s.all {
                out.extend((0..specs[u].width).map(|k| TaskId(base_of(u) + k)));
            }
            return out;
        }
        base += s.width;
    }
    panic!("{t:?} is in no stage")
}

/// count (4) -> copy (one per count task) -> sum (one, of every copy).
fn three_stages() -> Vec<StageSpec> {
    vec![
        stage(4, None, &[]),
        stage(4, Some(0), &[]),
        stage(1, None, &[1]),
    ]
}

#[test]
fn stages_are_checked() {
    let c = cfg();
    let bad_order = vec![stage(2, Some(1), &[]), stage(2, None, &[])];
    assert!(matches!(
        Scheduler::<u32>::with_stages(bad_order, c.clone()),
        Err(StageError::Order(0, 1))
    ));
    let roots_late = vec![
        stage(2, None, &[]),
        stage(2, Some(0), &[]),
        stage(1, None, &[]),
    ];
    assert!(matches!(
        Scheduler::<u32>::with_stages(roots_late, c.clone()),
        Err(StageError::RootsFirst(2))
    ));
    let widths = vec![stage(2, None, &[]), stage(3, Some(0), &[])];
    assert!(matches!(
        Scheduler::<u32>::with_stages(widths, c),
        Err(StageError::Width(1, 0))
    ));
}

#[test]
fn a_for_each_task_starts_as_soon_as_its_own_input_is_accepted() {
    let s = Scheduler::with_stages(three_stages(), cfg()).unwrap();
    let mut h = Harness::with(s);
    h.join(1, 1, 0);
    // Only count's tasks go out at first.
    assert!(h.held[&1].iter().all(|(t, _)| t.0 < 4), "{:?}", h.held[&1]);
    assert_eq!(h.complete_one(1, 1), Some(TaskId(0)));
    // copy[0] (task 4) goes before the rest of count.
    let first_copy = h.log.iter().position(|e| *e == Seen::Assigned(TaskId(4)));
    let last_count = h.log.iter().position(|e| *e == Seen::Assigned(TaskId(3)));
    assert!(first_copy.is_some());
    assert!(
        last_count.is_none() || first_copy < last_count,
        "{:?}",
        h.log
    );
    let mut now = 2;
    while !h.finished {
        h.complete_one(1, now).expect("work to do");
        now += 1;
        assert!(now < 100);
    }
    // The gather task ran last, once every copy was accepted.
    let sum = h
        .log
        .iter()
        .position(|e| *e == Seen::Assigned(TaskId(8)))
        .unwrap();
    for t in 4..8 {
        let acc = h
            .log
            .iter()
            .position(|e| matches!(e, Seen::Accepted(x, _) if *x == TaskId(t)))
            .unwrap();
        assert!(acc < sum, "{:?}", h.log);
    }
    assert_eq!(h.s.stage_counts(1), (4, 4, 0, 0));
    assert_eq!(h.s.stage_of(TaskId(8)), (2, 0));
}

#[test]
fn a_failed_task_fails_exactly_its_dependents() {
    // count (4) -> copy -> sum, and an unrelated root stage of 2.
    let mut specs = vec![stage(4, None, &[]), stage(2, None, &[])];
    specs.push(stage(4, Some(0), &[]));
    specs.push(stage(1, None, &[2]));
    let config = Config {
        retries: 0,
        ..cfg()
    };
    for s in &mut specs {
        s.retries = 0;
    }
    let mut h = Harness::with(Scheduler::with_stages(specs, config).unwrap());
    h.join(1, 8, 0);
    let mut now = 1;
    while !h.finished {
        let held = h.held.get(&1).cloned().unwrap_or_default();
        let Some(&(t, _)) = held.first() else {
            panic!("nothing held and not finished: {:?}", h.log)
        };
        if t == TaskId(1) {
            h.fail_one(1, FailureKind::Trap, now);
        } else {
            h.complete_one(1, now);
        }
        now += 1;
    }
    let mut failed: Vec<(u32, FailureKind)> = h.failed.iter().map(|(t, k)| (t.0, *k)).collect();
    failed.sort_by_key(|f| f.0);
    // count[1] trapped; copy[1] (task 7) and sum (task 10) never ran.
    assert_eq!(
        failed,
        vec![
            (1, FailureKind::Trap),
            (7, FailureKind::Upstream),
            (10, FailureKind::Upstream)
        ]
    );
    for t in [7, 10] {
        assert!(!h.log.contains(&Seen::Assigned(TaskId(t))));
    }
    assert_eq!(h.s.stage_counts(1), (2, 2, 0, 0));
    assert_eq!(h.s.stage_counts(2), (4, 3, 1, 0));
    let p = h.s.progress();
    assert_eq!((p.succeeded, p.failed), (8, 3));
}

#[test]
fn kept_tasks_release_their_dependents() {
    let mut h = Harness::with(Scheduler::with_stages(three_stages(), cfg()).unwrap());
    // An earlier run accepted all of count and copy[0].
    h.s.keep_accepted([0, 1, 2, 3, 4]);
    h.drain();
    h.join(1, 8, 0);
    let mut ran = Vec::new();
    let mut now = 1;
    while !h.finished {
        ran.push(h.complete_one(1, now).expect("work").0);
        now += 1;
    }
    ran.sort();
    assert_eq!(ran, vec![5, 6, 7, 8]);
}

#[test]
fn random_dags_under_random_events_keep_invariants() {
    for seed in 0..300u64 {
        let mut rng = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        // A random DAG: roots first, then stages fed by one (each) or many (all).
        let n = 1 + next(5) as usize;
        let mut specs: Vec<StageSpec> = Vec::new();
        for i in 0..n {
            let roots = specs.iter().all(|s| s.each.is_none() && s.all.is_empty());
            let mut s = match next(3) {
                _ if i == 0 => stage(1 + next(6) as u32, None, &[]),
                0 if roots => stage(1 + next(6) as u32, None, &[]),
                1 => {
                    let u = next(i as u64) as usize;
                    stage(specs[u].width, Some(u), &[])
                }
                _ => {
                    let mut all: Vec<usize> = (0..i).filter(|_| next(2) == 0).collect();
                    if all.is_empty() {
                        all.push(next(i as u64) as usize);
                    }
                    stage(1 + next(3) as u32, None, &all)
                }
            };
            s.retries = next(3) as u32;
            s.verify = match next(3) {
                0 => VerifyPolicy::default(),
                1 => VerifyPolicy {
                    replicas: 2,
                    quorum: 2,
                    max_replicas: 3,
                    ..VerifyPolicy::default()
                },
                _ => VerifyPolicy {
                    adaptive: true,
                    trust_after: 1,
                    max_replicas: 3,
                    ..VerifyPolicy::default()
                },
            };
            specs.push(s);
        }
        let total: u32 = specs.iter().map(|s| s.width).sum();
        let config = Config { seed, ..cfg() };
        let mut h = Harness::with(Scheduler::with_stages(specs.clone(), config).unwrap());
        // Provider 3 lies (a wrong digest of its own); the others answer right.
        let answer = |p: u32| move |t: TaskId| if p == 3 { bad(t, p) } else { good(t) };
        let mut now = 0;
        for _ in 0..300 {
            now += next(50);
            let p = next(4) as u32;
            match next(10) {
                0 => {
                    let info = ProviderInfo {
                        slots: 1 + next(3) as u32,
                        streak: next(20) as u32,
                        ..ProviderInfo::default()
                    };
                    h.s.provider_joined(p, info, Millis(now));
                    h.drain();
                }
                1 => h.lose_at(p, now),
                2 => {
                    h.fail_one(p, FailureKind::Trap, now);
                }
                3 => {
                    h.s.tick(Millis(now));
                    h.drain();
                }
                4 => {
                    // Lineage: the inputs of a run about to go out were lost with their
                    // holders; it is taken back and they are made again.
                    let mut ps: Vec<u32> = h.held.keys().copied().collect();
                    ps.sort_unstable();
                    let found = ps.into_iter().find_map(|q| {
                        h.held[&q]
                            .iter()
                            .position(|(t, _)| !inputs_of(&specs, *t).is_empty())
                            .map(|i| (q, i))
                    });
                    if let Some((q, i)) = found {
                        let (t, a) = h.held.get_mut(&q).expect("held").remove(i);
                        h.s.unassign(&q, t, a, Millis(now));
                        for u in inputs_of(&specs, t) {
                            h.s.recompute(u, Millis(now));
                        }
                        h.drain();
                    }
                }
                _ => {
                    h.answer_one(p, now, answer(p));
                }
            }
            h.check();
        }
        // Calm: two honest providers finish the job (the liar's work lapses).
        for p in [98, 99] {
            h.join(p, 4, now);
        }
        while !h.finished {
            now += 10;
            for p in [98, 99] {
                h.s.renew(&p, Millis(now));
            }
            h.s.tick(Millis(now));
            h.drain();
            for p in [0, 1, 2, 98, 99] {
                h.answer_one(p, now, answer(p));
            }
            assert!(now < 10_000_000, "seed {seed}: job never finished");
        }
        check_dag_log(seed, &specs, &h, total);
    }
}

/// Checks a finished job's command log against the DAG.
fn check_dag_log(seed: u64, specs: &[StageSpec], h: &Harness, total: u32) {
    // No task runs before every input has an accepted result (replaying the log).
    let mut have: HashSet<TaskId> = HashSet::new();
    for (k, e) in h.log.iter().enumerate() {
        match *e {
            Seen::Assigned(t) => {
                for u in inputs_of(specs, t) {
                    assert!(
                        have.contains(&u),
                        "seed {seed}: {t:?} assigned at {k} before its input {u:?} was accepted\n{:?}",
                        &h.log[..=k]
                    );
                }
            }
            Seen::Accepted(t, _) => {
                have.insert(t);
            }
            // A reset task's earlier result stands until replaced.
            Seen::Reset(_) => {}
            // A task made again is not an input until it is accepted again.
            Seen::Recompute(t) => {
                have.remove(&t);
            }
            Seen::Failed(t, _) => {
                have.remove(&t);
            }
        }
    }
    // Every task ends accepted or failed, failed at most once.
    let p = h.s.progress();
    assert_eq!(p.succeeded + p.failed, total, "seed {seed}");
    let mut failed: HashMap<TaskId, FailureKind> = HashMap::new();
    for (t, k) in &h.failed {
        assert!(
            failed.insert(*t, *k).is_none(),
            "seed {seed}: {t:?} failed twice"
        );
    }
    for t in (0..total).map(TaskId) {
        assert!(
            failed.contains_key(&t) != h.accepted.contains_key(&t),
            "seed {seed}: {t:?} must end accepted or failed, once"
        );
        let inputs = inputs_of(specs, t);
        // Failures reach exactly the dependents: an upstream failure has a failed input,
        // and a task with a failed input failed.
        let input_failed = inputs.iter().any(|u| failed.contains_key(u));
        if failed.get(&t) == Some(&FailureKind::Upstream) {
            assert!(
                input_failed,
                "seed {seed}: {t:?} failed upstream with none failed"
            );
        }
        if input_failed {
            assert!(
                failed.contains_key(&t),
                "seed {seed}: {t:?} outlived a failed input"
            );
        }
        // An accepted task's result was computed from its inputs' final results: its last
        // start came after each input's result last changed.
        if h.accepted.contains_key(&t) {
            let last_reset = h.log.iter().rposition(|e| *e == Seen::Reset(t));
            let start = h
                .log
                .iter()
                .enumerate()
                .position(|(k, e)| *e == Seen::Assigned(t) && last_reset.is_none_or(|r| k > r));
            for u in inputs {
                // Where `u`'s accepted result last changed (accepted again with the same
                // digest changes nothing).
                let mut last: Option<ContentId> = None;
                let mut changed = None;
                for (k, e) in h.log.iter().enumerate() {
                    if let Seen::Accepted(x, d) = *e
                        && x == u
                        && last != Some(d)
                    {
                        last = Some(d);
                        changed = Some(k);
                    }
                }
                if let (Some(s), Some(c)) = (start, changed) {
                    assert!(
                        s > c,
                        "seed {seed}: {t:?} started at {s} before its input {u:?} last changed at {c}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_lost_output_is_made_again_before_the_task_that_takes_it() {
    let specs = vec![stage(1, None, &[]), stage(1, Some(0), &[])];
    let mut h = Harness::with(Scheduler::with_stages(specs, cfg()).unwrap());
    h.join(1, 1, 0);
    h.join(2, 1, 0);
    assert_eq!(h.complete_one(1, 1), Some(TaskId(0)));
    // Task 1 went out, but its input's holder is gone: it is taken back, unsent, and task
    // 0 runs again.
    let (p, run) = h
        .held
        .iter()
        .find_map(|(p, runs)| runs.first().map(|r| (*p, *r)))
        .expect("task 1 out");
    assert_eq!(run.0, TaskId(1));
    h.held.get_mut(&p).unwrap().clear();
    h.s.unassign(&p, run.0, run.1, Millis(2));
    h.s.recompute(TaskId(0), Millis(2));
    h.drain();
    assert!(h.log.contains(&Seen::Recompute(TaskId(0))));
    let p = h.s.progress();
    assert_eq!((p.succeeded, p.failed, p.runs), (0, 0, 1), "{p:?}");
    // A run that makes something else is refused; the one that makes the same is accepted,
    // and only then does task 1 go out again.
    let maker = *h
        .held
        .iter()
        .find(|(_, r)| !r.is_empty())
        .expect("task 0 out")
        .0;
    h.answer_one(maker, 3, |t| bad(t, 9));
    assert!(!h.finished);
    let mut now = 4;
    while !h.finished {
        for q in [1, 2] {
            h.complete_one(q, now);
        }
        now += 1;
        assert!(now < 100, "{:?}", h.log);
    }
    assert_eq!(h.s.progress().failed, 0);
    assert_eq!(h.accepted[&TaskId(0)], good(TaskId(0)));
    let again = h
        .log
        .iter()
        .rposition(|e| matches!(e, Seen::Accepted(t, _) if *t == TaskId(0)));
    let sent = h.log.iter().rposition(|e| *e == Seen::Assigned(TaskId(1)));
    assert!(again < sent, "{:?}", h.log);
}

#[test]
fn a_provider_gets_no_task_of_a_stage_it_may_not_run() {
    let mut h = Harness::with(Scheduler::with_stages(three_stages(), cfg()).unwrap());
    // Provider 1 may run count only; provider 2 anything but count.
    let info = |mask| ProviderInfo {
        slots: 1,
        stage_mask: mask,
        ..ProviderInfo::default()
    };
    h.s.provider_joined(1, info(0b110), Millis(0));
    h.s.provider_joined(2, info(0b001), Millis(0));
    h.drain();
    let mut now = 1;
    while !h.finished {
        for p in [1, 2] {
            if let Some(t) = h.complete_one(p, now) {
                let (stage, _) = h.s.stage_of(t);
                assert_eq!(stage == 0, p == 1, "{t:?} of stage {stage} ran on {p}");
            }
        }
        now += 1;
        assert!(now < 200, "{:?}", h.log);
    }
}
