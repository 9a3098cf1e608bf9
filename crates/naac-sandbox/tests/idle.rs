//! An idle sandbox costs no CPU: its epoch ticker sleeps while no guest runs, and wakes in
//! time for the next run's limits. (A test binary of its own, so no other test's sandbox
//! ticks meanwhile.)

use naac_sandbox::{Sandbox, SandboxConfig, TaskRun};
use naac_types::{ContentId, Limits, Outcome};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Context switches of this process's epoch ticker threads so far.
fn ticker_switches() -> u64 {
    let mut total = 0;
    let mut tickers = 0;
    for e in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = e.expect("task entry").path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim() != "naac-epoch" {
            continue;
        }
        tickers += 1;
        let status = std::fs::read_to_string(dir.join("status")).expect("status");
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().expect("number");
            }
        }
    }
    assert_eq!(tickers, 1, "one sandbox, one ticker");
    total
}

#[test]
fn the_epoch_ticker_sleeps_while_no_guest_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(SandboxConfig::new(dir.path().join("work"))).expect("sandbox");
    let p = example("testkit/testkit.wasm");
    let bytes = std::fs::read(p).expect("examples/testkit/testkit.wasm is committed");
    let module = sandbox
        .compile(&ContentId::of(&bytes), &bytes)
        .expect("compile testkit");
    let task = |args: &[&str], timeout_ms| TaskRun {
        argv0: "testkit".into(),
        env: Vec::new(),
        args: args.iter().map(|s| s.to_string()).collect(),
        limits: Limits {
            fuel: u64::MAX / 2,
            memory: 64 << 20,
            timeout_ms,
        },
        ..TaskRun::default()
    };
    let cancel = Arc::new(AtomicBool::new(false));

    for round in 0..3 {
        // Idle: the ticker does not wake (a ticking one would switch ~50 times in 500 ms).
        std::thread::sleep(Duration::from_millis(50));
        let a = ticker_switches();
        std::thread::sleep(Duration::from_millis(500));
        let b = ticker_switches();
        assert!(
            b - a <= 2,
            "round {round}: idle ticker woke {} times",
            b - a
        );

        // A run right after idling still gets its ticks: its timeout works.
        let r = sandbox
            .run(&module, &task(&["loop"], 200), &cancel)
            .expect("run");
        assert_eq!(r.outcome, Outcome::Timeout, "{}", r.message);
        assert!(r.wall < Duration::from_secs(5), "{:?}", r.wall);
        let c = ticker_switches();
        assert!(c - b >= 5, "round {round}: the ticker ticked ({})", c - b);
    }
}

/// A committed example module, found at run time: the test binary may have been built in
/// another checkout sharing the target directory, so a compile-time path could be stale.
fn example(rel: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    std::path::Path::new(&dir).join("../../examples").join(rel)
}
