//! The sandbox's gate against the real testkit guest: pausing, resuming and throttling
//! running guests never changes their results, stops them using CPU, does not count against
//! their wall-clock limit, and leaves cancellation working.
//!
//! Each test makes its own `Sandbox` (the gate is per sandbox) and asserts behaviour, not
//! speed: tests run in parallel on noisy machines.

use naac_sandbox::{Gate, Prepared, RunResult, Sandbox, SandboxConfig, TaskRun};
use naac_types::{ContentId, Limits, Outcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Fixture {
    _dir: tempfile::TempDir,
    sandbox: Arc<Sandbox>,
    module: Prepared,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = SandboxConfig::new(dir.path().join("work")).with_cache_dir(dir.path().join("cache"));
    let sandbox = Sandbox::start(cfg).expect("sandbox");
    let p = example("testkit/testkit.wasm");
    let bytes = std::fs::read(p).expect("examples/testkit/testkit.wasm is committed");
    let module = sandbox
        .compile(&ContentId::of(&bytes), &bytes)
        .expect("compile testkit");
    Fixture {
        _dir: dir,
        sandbox: Arc::new(sandbox),
        module,
    }
}

fn task(args: &[&str]) -> TaskRun {
    TaskRun {
        argv0: "testkit".into(),
        env: Vec::new(),
        args: args.iter().map(|s| s.to_string()).collect(),
        limits: Limits {
            fuel: u64::MAX / 2,
            memory: 64 << 20,
            timeout_ms: 60_000,
        },
        seed: [7; 32],
        ..TaskRun::default()
    }
}

/// A running task: the run's thread, its cancel flag and the kernel id of its thread.
struct Running {
    handle: JoinHandle<(RunResult, Duration)>,
    cancel: Arc<AtomicBool>,
    tid: String,
}

impl Fixture {
    fn gate(&self) -> Gate {
        self.sandbox.gate()
    }

    fn run(&self, t: &TaskRun) -> RunResult {
        self.sandbox
            .run(&self.module, t, &Arc::new(AtomicBool::new(false)))
            .expect("host-side run")
    }

    /// Starts `t` on a thread of its own; returns once the run has begun.
    fn spawn(&self, t: TaskRun) -> Running {
        let (sandbox, module) = (self.sandbox.clone(), self.module.clone());
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            // "PID/task/TID": lets other threads read this thread's CPU time.
            let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
            let tid = link
                .file_name()
                .and_then(|n| n.to_str())
                .expect("thread id")
                .to_string();
            tid_tx.send(tid).expect("send tid");
            let t0 = Instant::now();
            let r = sandbox.run(&module, &t, &c).expect("host-side run");
            (r, t0.elapsed())
        });
        let tid = tid_rx.recv().expect("thread id");
        Running {
            handle,
            cancel,
            tid,
        }
    }
}

impl Running {
    fn join(self) -> (RunResult, Duration) {
        self.handle.join().expect("run thread")
    }

    /// CPU time the run's thread has used, in clock ticks (1/100 s).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{}/stat", self.tid))
            .expect("thread stat");
        // Fields after the command name (which may hold spaces) start at field 3; utime and
        // stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("comm") + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f[i - 3].parse::<u64>().expect("number");
        n(14) + n(15)
    }
}

/// Waits (up to 10 s) until `cond` holds; returns how long it took.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
    t0.elapsed()
}

/// How many `spin` milliseconds (the testkit's nominal unit) the guest gets through per
/// second of wall time here, measured with a short unthrottled run.
fn spin_rate(f: &Fixture) -> f64 {
    let r = f.run(&task(&["spin", "100"]));
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    100.0 / r.wall.as_secs_f64().max(0.001)
}

/// A `spin` task taking about `secs` of CPU here (at least 50 nominal ms).
fn spin_for(f: &Fixture, secs: f64) -> TaskRun {
    let ms = ((spin_rate(f) * secs) as u64).max(50);
    task(&["spin", &ms.to_string()])
}

#[test]
fn a_paused_guest_stops_using_cpu_and_resumes_where_it_was() {
    let f = fixture();
    let gate = f.gate();
    let t = spin_for(&f, 1.0);
    let reference = f.run(&t);
    assert_eq!(reference.outcome, Outcome::Ok, "{}", reference.message);
    assert!(reference.paused.is_zero());

    let run = f.spawn(t);
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        !run.handle.is_finished(),
        "the guest should still be running"
    );
    let paused_at = Instant::now();
    gate.pause();
    let latency = wait_for("the guest to stop", || gate.paused_guests() == 1);
    eprintln!("pause latency: {latency:?}");
    assert!(gate.is_paused());
    assert_eq!(gate.running(), 1);
    // Let the tick that noticed the pause settle, then watch the thread use no CPU.
    std::thread::sleep(Duration::from_millis(20));
    let cpu0 = run.cpu_ticks();
    std::thread::sleep(Duration::from_millis(500));
    let cpu1 = run.cpu_ticks();
    assert!(
        cpu1 - cpu0 < 5,
        "a paused guest used {} ms of CPU in 500 ms",
        (cpu1 - cpu0) * 10
    );
    assert!(!run.handle.is_finished());
    assert!(cpu0 > 0, "the guest used CPU before the pause");
    let held = paused_at.elapsed();
    gate.resume();
    let (r, _) = run.join();

    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(
        r.stdout, reference.stdout,
        "pausing does not change the result"
    );
    assert_eq!(r.fuel_used, reference.fuel_used);
    assert!(
        r.paused >= Duration::from_millis(450) && r.paused <= held + Duration::from_millis(200),
        "paused {:?}, held {held:?}",
        r.paused
    );
    assert!(r.wall >= r.paused + Duration::from_millis(100), "{r:?}");
    assert_eq!(gate.paused_guests(), 0);
    assert_eq!(gate.running(), 0);
}

#[test]
fn many_pauses_do_not_change_the_result() {
    let f = fixture();
    let gate = f.gate();
    let rate = spin_rate(&f);
    // About 0.5 s of pi sampling: ~100 ns per sample in wasm, calibrated by the spin rate.
    let samples = ((rate / 1000.0) * 5_000_000.0) as u64;
    let t = task(&["pi", "42", &samples.max(100_000).to_string()]);
    let reference = f.run(&t);
    assert_eq!(reference.outcome, Outcome::Ok, "{}", reference.message);

    let run = f.spawn(t);
    let mut pauses = 0;
    while !run.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(25));
        gate.pause();
        std::thread::sleep(Duration::from_millis(15));
        gate.resume();
        pauses += 1;
    }
    let (r, _) = run.join();
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(r.stdout, reference.stdout, "after {pauses} pauses");
    assert_eq!(r.fuel_used, reference.fuel_used);
}

#[test]
fn a_guest_paused_before_it_starts_waits_and_sees_no_time_pass() {
    let f = fixture();
    let gate = f.gate();
    // Prints the virtual clocks and the seeded random source.
    let t = task(&["random"]);
    let reference = f.run(&t);
    assert_eq!(reference.outcome, Outcome::Ok, "{}", reference.message);

    gate.pause();
    let run = f.spawn(t);
    wait_for("the guest to wait at the gate", || {
        gate.paused_guests() == 1
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !run.handle.is_finished(),
        "the guest must not run while paused"
    );
    gate.resume();
    let (r, _) = run.join();
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(r.stdout, reference.stdout);
    assert_eq!(r.fuel_used, reference.fuel_used);
    assert!(r.paused >= Duration::from_millis(200), "{:?}", r.paused);
}

#[test]
fn paused_time_does_not_count_against_the_wall_clock_limit() {
    let f = fixture();
    let gate = f.gate();
    let mut t = spin_for(&f, 0.3);
    t.limits.timeout_ms = 1_000;
    let run = f.spawn(t);
    std::thread::sleep(Duration::from_millis(100));
    gate.pause();
    wait_for("the guest to stop", || gate.paused_guests() == 1);
    std::thread::sleep(Duration::from_millis(1_500));
    gate.resume();
    let (r, _) = run.join();
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert!(r.wall > Duration::from_millis(1_500), "{:?}", r.wall);
    assert!(r.paused >= Duration::from_millis(1_400), "{:?}", r.paused);
}

#[test]
fn a_run_still_times_out_on_its_own_time() {
    let f = fixture();
    let gate = f.gate();
    let mut t = task(&["loop"]);
    t.limits.timeout_ms = 500;
    let run = f.spawn(t);
    std::thread::sleep(Duration::from_millis(100));
    gate.pause();
    wait_for("the guest to stop", || gate.paused_guests() == 1);
    std::thread::sleep(Duration::from_millis(600));
    gate.resume();
    let (r, _) = run.join();
    assert_eq!(r.outcome, Outcome::Timeout, "{}", r.message);
    assert!(r.message.contains("wall-clock"), "{}", r.message);
    assert!(r.paused >= Duration::from_millis(550), "{:?}", r.paused);
    assert!(
        r.wall - r.paused >= Duration::from_millis(490),
        "ran its own 500 ms: {r:?}"
    );
}

#[test]
fn cancelling_a_paused_guest_ends_it_promptly() {
    let f = fixture();
    let gate = f.gate();
    let run = f.spawn(task(&["loop"]));
    std::thread::sleep(Duration::from_millis(50));
    gate.pause();
    wait_for("the guest to stop", || gate.paused_guests() == 1);
    let t0 = Instant::now();
    run.cancel.store(true, Ordering::SeqCst);
    let handle = &run.handle;
    let took = wait_for("the cancelled run to end", || handle.is_finished());
    let (r, _) = run.join();
    assert_eq!(r.outcome, Outcome::Timeout, "{}", r.message);
    assert!(r.message.contains("cancelled"), "{}", r.message);
    assert!(took < Duration::from_secs(1), "took {took:?} after cancel");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(gate.paused_guests(), 0);
    assert_eq!(gate.running(), 0);
    assert!(gate.is_paused(), "cancelling a run leaves the gate alone");
}

#[test]
fn a_guest_about_to_start_can_be_cancelled_while_paused() {
    let f = fixture();
    let gate = f.gate();
    gate.pause();
    let run = f.spawn(task(&["print", "never"]));
    wait_for("the guest to wait at the gate", || {
        gate.paused_guests() == 1
    });
    run.cancel.store(true, Ordering::SeqCst);
    let (r, _) = run.join();
    assert_eq!(r.outcome, Outcome::Timeout, "{}", r.message);
    assert!(r.message.contains("cancelled"), "{}", r.message);
    assert!(r.stdout.is_empty());
}

#[test]
fn duty_cycling_slows_a_guest_down() {
    let f = fixture();
    let gate = f.gate();
    let t = spin_for(&f, 1.0);
    let full = f.run(&t);
    assert_eq!(full.outcome, Outcome::Ok, "{}", full.message);

    gate.set_duty(0.5);
    assert_eq!(gate.duty(), 0.5);
    let half = f.run(&t);
    assert_eq!(half.outcome, Outcome::Ok, "{}", half.message);
    assert_eq!(half.stdout, full.stdout);
    assert_eq!(half.fuel_used, full.fuel_used);
    eprintln!(
        "duty 0.5: {:?} (paused {:?}) vs {:?} unthrottled",
        half.wall, half.paused, full.wall
    );
    // What the guest needs unthrottled: the unthrottled run, or the throttled run's own
    // running time if that was less (the unthrottled one may have shared the CPU with other
    // tests).
    let needs = full.wall.min(half.wall - half.paused);
    assert!(
        half.wall.as_secs_f64() >= 1.4 * needs.as_secs_f64(),
        "duty 0.5 took {:?}, unthrottled {:?}",
        half.wall,
        full.wall
    );
    // The throttle sleeps as long as the guest ran (less the last, unfinished period).
    assert!(
        half.paused.as_secs_f64() >= 0.35 * half.wall.as_secs_f64(),
        "{:?} of {:?} throttled",
        half.paused,
        half.wall
    );
    assert_eq!(gate.paused_guests(), 0, "throttling is not pausing");

    gate.set_duty(1.0);
    let again = f.run(&t);
    assert!(again.paused.is_zero(), "duty 1 never throttles");
}

#[test]
fn throttled_time_does_not_count_against_the_wall_clock_limit() {
    let f = fixture();
    let gate = f.gate();
    let mut t = spin_for(&f, 0.3);
    t.limits.timeout_ms = 1_000;
    gate.set_duty(0.1);
    let r = f.run(&t);
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert!(r.wall > Duration::from_millis(1_000), "{:?}", r.wall);
    assert!(r.paused > Duration::from_millis(800), "{:?}", r.paused);
}

/// A committed example module, found at run time: the test binary may have been built in
/// another checkout sharing the target directory, so a compile-time path could be stale.
fn example(rel: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    std::path::Path::new(&dir).join("../../examples").join(rel)
}
