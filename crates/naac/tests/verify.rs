//! End-to-end tests of zero-trust execution over real `naac` processes on 127.0.0.1:
//! replicas outvoting faulty providers, reputation, stragglers, and checkpoints carrying a
//! task across a SIGKILL.

mod common;

use common::{Provider, Scratch, stderr};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Tests that measure nothing take this shared; the one whose verifier must finish within
/// its time limit takes it alone, so the others' guests do not slow it down.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

fn join_args(providers: &[&Provider]) -> Vec<String> {
    let mut v = vec!["--no-mdns".to_string()];
    for p in providers {
        v.push("--join".into());
        v.push(p.addr.clone());
    }
    v
}

#[test]
fn replicas_outvote_faulty_providers_and_name_them() {
    let _machine = shared();
    let s = Scratch::new();
    let honest: Vec<Provider> = (0..3).map(|_| Provider::start(&s, 1)).collect();
    let faulty: Vec<Provider> = (0..2)
        .map(|_| Provider::start_with(&s, 1, &["--faulty", "wrong:1.0"]))
        .collect();
    let samples = 100_000u64;
    let job = s.job(
        "vote",
        "testkit/testkit.wasm",
        &format!(
            "args = [\"pi\", \"{{seed}}\", \"{samples}\"]\n[sweep]\nseed = {{ from = 0, to = 30 }}\n[verify]\nreplicas = 3\nquorum = 2\n"
        ),
    );
    let all: Vec<&Provider> = honest.iter().chain(faulty.iter()).collect();
    let args = join_args(&all);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, v) = s.run(&job, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 30, "{v:#}");
    // Every accepted result is the right one.
    for seed in 0..30u64 {
        let got = std::fs::read_to_string(s.path().join(format!("out-vote/tasks/{seed}/stdout")))
            .expect("stdout");
        assert_eq!(
            got.trim(),
            naac_guest::kernels::pi_hits(seed, samples).to_string(),
            "task {seed}"
        );
    }
    // The discrepancy report names the faulty providers, and only them, as the losing side.
    let bad: Vec<String> = faulty.iter().map(Provider::peer_id).collect();
    let good: Vec<String> = honest.iter().map(Provider::peer_id).collect();
    let disc = v["discrepancies"].as_array().expect("discrepancies");
    assert!(!disc.is_empty(), "{v:#}");
    let mut named = std::collections::HashSet::new();
    for d in disc {
        let accepted = d["accepted"].as_str().expect("a winner");
        for side in d["sides"].as_array().expect("sides") {
            let providers: Vec<&str> = side["providers"]
                .as_array()
                .expect("providers")
                .iter()
                .map(|p| p.as_str().expect("peer id"))
                .collect();
            if side["output"] == accepted {
                assert!(
                    providers.iter().all(|p| good.iter().any(|g| g == p)),
                    "{d:#}"
                );
            } else {
                assert!(
                    providers.iter().all(|p| bad.iter().any(|b| b == p)),
                    "{d:#}"
                );
                named.extend(providers.iter().map(|p| p.to_string()));
            }
        }
    }
    assert!(!named.is_empty());
    // Their reputation fell below the honest providers'.
    for p in v["providers"].as_array().expect("providers") {
        let id = p["peer_id"].as_str().expect("peer id");
        let score = p["reputation"].as_f64().expect("score");
        if bad.iter().any(|b| b == id) {
            assert!(score < 0.5, "faulty {id}: {p:#}");
            assert_eq!(p["tasks"], 0, "a faulty result was accepted: {p:#}");
        } else {
            assert!(score > 0.5, "honest {id}: {p:#}");
        }
    }
    assert!(v["verification"]["verified"].as_u64().expect("verified") >= 30);
    // tasks.jsonl records each accepted result's signed record.
    let index = std::fs::read_to_string(s.path().join("out-vote/tasks.jsonl")).expect("index");
    for line in index.lines() {
        let r: Value = serde_json::from_str(line).expect("json line");
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(
            r["signature"].as_str().expect("signature").len(),
            128,
            "{r}"
        );
    }
    // The reputation store remembers them: a second job does not use them at all.
    let (out, v) = s.run(&job, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    for p in v["providers"].as_array().expect("providers") {
        let id = p["peer_id"].as_str().expect("peer id");
        assert!(
            !bad.iter().any(|b| b == id),
            "excluded provider {id} was used: {p:#}"
        );
    }
    assert_eq!(
        v["discrepancies"].as_array().map(Vec::len),
        Some(0),
        "{v:#}"
    );
    // `naac reputation` shows what was learned.
    let out = s
        .cmd()
        .args(["reputation", "--json"])
        .output()
        .expect("reputation");
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect();
    for b in &bad {
        let row = rows
            .iter()
            .find(|r| r["peer_id"] == b.as_str())
            .expect("faulty on record");
        assert!(row["rejected"].as_u64().expect("rejected") >= 2, "{row}");
        assert!(row["score"].as_f64().expect("score") < 0.5, "{row}");
    }
    // `--explain` counts them out, and says why.
    let out = s
        .cmd()
        .args(["run", "--explain", "--json"])
        .arg(&job)
        .args(&args)
        .output()
        .expect("explain");
    assert!(out.status.success(), "{}", stderr(&out));
    let e: Value = serde_json::from_slice(&out.stdout).expect("explain json");
    assert_eq!(e["hosts"], 5, "{e:#}");
    assert_eq!(e["usable"], 3, "{e:#}");
    for h in e["per_host"].as_array().expect("per host") {
        let why = h["ruled_out"].to_string();
        let is_bad = bad.iter().any(|b| h["peer_id"] == b.as_str());
        assert_eq!(
            why.contains("its results were rejected here"),
            is_bad,
            "{h}"
        );
    }
}

#[test]
fn a_slow_provider_does_not_hold_the_job_hostage() {
    let _machine = shared();
    let s = Scratch::new();
    let fast = Provider::start(&s, 1);
    let slow = Provider::start_with(&s, 1, &["--slowdown", "200"]);
    // 12 tasks of ~150 ms: the slow provider takes ~30 s for each one it holds.
    let job = s.job(
        "slow",
        "testkit/testkit.wasm",
        "args = [\"spin\", \"150\"]\n[sweep]\nn = { from = 0, to = 12 }\n",
    );
    let args = join_args(&[&fast, &slow]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let (out, v) = s.run(&job, &args);
    let took = t0.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 12);
    assert!(
        v["verification"]["speculative"]
            .as_u64()
            .expect("speculative")
            >= 1,
        "{v:#}"
    );
    // Waiting for the slow provider would take at least 30 s; its copies were overtaken.
    assert!(took < Duration::from_secs(30), "took {took:?}: {v:#}");
    for p in v["providers"].as_array().expect("providers") {
        if p["peer_id"] == slow.peer_id().as_str() {
            assert_eq!(p["tasks"], 0, "{p:#}");
        }
    }
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

#[test]
fn a_checkpointing_task_survives_a_sigkill_of_its_provider() {
    let _machine = shared();
    let s = Scratch::new();
    let mut a = Provider::start(&s, 1);
    let mut b = Provider::start(&s, 1);
    // One SHA-256 chain of ~20 s on this machine, checkpointing every second.
    let (seed, steps) = (7u64, 70_000_000u64);
    let job = s.job(
        "ckpt",
        "testkit/testkit.wasm",
        &format!(
            "args = [\"ckpt\", \"{seed}\", \"{steps}\", \"20000\"]\ncheckpoint_interval = \"1s\"\nstraggler_factor = 0\n[limits]\nfuel = 2_000_000_000_000\n"
        ),
    );
    let out_dir = s.path().join("out-ckpt");
    let args = join_args(&[&a, &b]);
    let child = s
        .run_cmd(&job, &out_dir)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    std::thread::sleep(Duration::from_secs(15));
    // Kill whichever provider is doing the work.
    let (ta, tb) = (cpu_ticks(a.child.id()), cpu_ticks(b.child.id()));
    let victim = if ta >= tb { &mut a } else { &mut b };
    victim.child.kill().expect("SIGKILL the busy provider");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["tasks"]["succeeded"], 1, "{v:#}");
    // The same bytes as an uninterrupted run (the chain computed natively).
    let want = naac_guest::hex(&naac_guest::kernels::sha256_chain(seed, steps));
    let got = std::fs::read_to_string(out_dir.join("tasks/0/stdout")).expect("stdout");
    assert_eq!(got.trim(), want);
    // It resumed from a checkpoint rather than starting over.
    let err = std::fs::read_to_string(out_dir.join("tasks/0/stderr")).expect("stderr");
    assert!(err.contains("resumed at step"), "stderr: {err}");
    assert!(
        v["checkpoints"]["resumed"].as_u64().expect("resumed") >= 1,
        "{v:#}"
    );
    assert!(
        v["checkpoints"]["received"].as_u64().expect("received") >= 5,
        "{v:#}"
    );
    // It picked up well into the chain, not from the start (checkpoints came every ~1 s
    // for ~15 s before the kill).
    let step: u64 = err
        .split("resumed at step ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("resumed step");
    assert!(step >= steps / 10, "resumed at step {step} of {steps}");
}

#[test]
fn a_verifier_module_rejects_wrong_results() {
    let _machine = shared();
    let s = Scratch::new();
    let honest = Provider::start(&s, 1);
    let faulty = Provider::start_with(&s, 1, &["--faulty", "wrong:1.0"]);
    let job = s.job(
        "factor",
        "testkit/testkit.wasm",
        "args = [\"factor\", \"{n}\"]\n[sweep]\nn = [1000001, 999999937000000063, 77, 91, 1234567, 8051]\n[verify]\nverifier = \"testkit.wasm\"\nverifier_args = [\"checkfactor\", \"{n}\"]\n",
    );
    let args = join_args(&[&honest, &faulty]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, v) = s.run(&job, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 6, "{v:#}");
    for (i, n) in [1000001u64, 999999937000000063, 77, 91, 1234567, 8051]
        .iter()
        .enumerate()
    {
        let got = std::fs::read_to_string(s.path().join(format!("out-factor/tasks/{i}/stdout")))
            .expect("stdout");
        let f: Vec<u64> = got
            .split_whitespace()
            .map(|w| w.parse().expect("number"))
            .collect();
        assert_eq!(f[0] * f[1], *n, "task {i}: {got}");
    }
    assert!(
        v["verification"]["rejected_results"]
            .as_u64()
            .expect("rejected")
            >= 1,
        "{v:#}"
    );
    let bad = faulty.peer_id();
    for p in v["providers"].as_array().expect("providers") {
        if p["peer_id"] == bad.as_str() {
            assert_eq!(p["tasks"], 0, "{p:#}");
            assert!(p["rejected"].as_u64().expect("rejected") >= 1, "{p:#}");
        }
    }
}

/// A provider cheating on 10% of its tasks under `spot_check = 0.2`: each cheated result is
/// checked with probability 0.2, so about 1 / (0.1 * 0.2) = 50 of its tasks pass before it
/// is caught. With 3000 tasks over 5 providers it runs ~600, so it escapes with probability
/// below 0.98^600 ≈ 5e-6.
#[test]
fn spot_checks_catch_a_provider_cheating_on_a_tenth_of_its_tasks() {
    let _machine = shared();
    let s = Scratch::new();
    let honest: Vec<Provider> = (0..4).map(|_| Provider::start(&s, 1)).collect();
    let cheater = Provider::start_with(&s, 1, &["--faulty", "wrong:0.1"]);
    let job = s.job(
        "spot",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[sweep]\ni = { from = 0, to = 3000 }\n[verify]\nspot_check = 0.2\n",
    );
    let all: Vec<&Provider> = honest.iter().chain([&cheater]).collect();
    let args = join_args(&all);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, v) = s.run(&job, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = cheater.peer_id();
    let caught = v["discrepancies"]
        .as_array()
        .expect("discrepancies")
        .iter()
        .any(|d| {
            d["sides"].as_array().expect("sides").iter().any(|side| {
                side["output"] != d["accepted"]
                    && side["providers"]
                        .as_array()
                        .expect("providers")
                        .iter()
                        .any(|p| p == bad.as_str())
            })
        });
    assert!(
        caught,
        "the cheater was never caught: {:#}",
        v["verification"]
    );
    // 20% checks, plus re-checks of the cheater's unchecked results each time it is caught
    // (about its whole output: ~20% of the tasks again).
    let cost = v["verification"]["runs"].as_u64().expect("runs") as f64 / 3000.0;
    assert!(cost < 1.7, "spot checks cost {cost}x");
    assert!(v["verification"]["rechecked"].as_u64().expect("rechecked") > 0);
    // (Spot checks catch the cheater, they do not guarantee every result: wrong results it
    // returned after it was last caught stay unless the job asks for replicas.)
}

#[test]
fn adaptive_replication_costs_little_once_trust_is_earned() {
    let _machine = shared();
    let s = Scratch::new();
    let job = s.job(
        "adaptive",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[sweep]\ni = { from = 0, to = 3000 }\n[verify]\nadaptive = true\n",
    );
    let (out, v) = s.run(&job, &["--workers", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ver = &v["verification"];
    // Every provider had to earn trust (10 verified results each) before sampling began.
    assert!(ver["verified"].as_u64().expect("verified") >= 15, "{ver:#}");
    assert!(ver["overhead"].as_f64().expect("overhead") < 1.2, "{ver:#}");
    for i in [0, 1234, 2999] {
        let got = std::fs::read_to_string(s.path().join(format!("out-adaptive/tasks/{i}/stdout")))
            .expect("stdout");
        assert_eq!(got.trim(), i.to_string());
    }
}

/// A result's verifier runs off the requester's loop, within its provider's budget: while a
/// slow verification of one provider's result runs, another provider's heartbeats are still
/// heard, so its lease does not lapse and its long task is not taken from it.
#[test]
fn a_slow_verifier_does_not_stall_the_other_providers() {
    let _machine = MACHINE.write().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new();
    let a = Provider::start(&s, 1);
    let b = Provider::start(&s, 1);
    // Task 0 runs 0.1 s and its verification about 11 s; task 1 about 15 s: the lease (10 s)
    // of whoever runs it must be renewed while task 0 is being verified.
    let job = s.job(
        "slowcheck",
        "testkit/testkit.wasm",
        "args = [\"spin\", \"{run}\"]\n[sweep]\nrun = [100, 12000]\ncheck = [9000]\n[limits]\nfuel = 1_000_000_000_000\ntimeout = \"2m\"\n[verify]\nverifier = \"testkit.wasm\"\nverifier_args = [\"spin\", \"{check}\"]\n",
    );
    let args = join_args(&[&a, &b]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, v) = s.run(&job, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 2, "{v:#}");
    for p in v["providers"].as_array().expect("providers") {
        assert_eq!(p["lost"], 0, "a provider was taken for dead: {v:#}");
    }
    assert_eq!(v["tasks"]["retried"], 0, "{v:#}");
}
