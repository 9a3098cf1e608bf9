//! Outputs by content id and lineage, over real provider processes: a large output of an
//! earlier stage stays with the provider that made it (only its id reaches the requester),
//! a later stage's task fetches it from there, and when that provider is SIGKILLed before
//! the task ran, the task that made it runs again and the job still succeeds.

mod common;

use common::{Scratch, provider};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Bytes of outputs a provider keeps for later stages now.
fn held_bytes(home: &Path) -> u64 {
    let Ok(dirs) = std::fs::read_dir(home.join("work")) else {
        return 0;
    };
    dirs.flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("held-"))
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

const JOB: &str = r#"
[[stage]]
name = "make"
module = "testkit.wasm"
args = ["outfile", "data.bin", "2097152"]

[[stage]]
name = "slow"
module = "testkit.wasm"
args = ["spin", "2500"]

[[stage]]
name = "use"
module = "testkit.wasm"
args = ["readin", "from/make/data.bin"]
for_each = "make"
after = ["slow"]
"#;

#[test]
fn a_lost_holder_of_an_intermediate_output_is_made_up_for_by_lineage() {
    let s = Scratch::new();
    let policy = "idle_only = false\n";
    let a = provider(&s, "a", policy, &[]);
    let mut b = provider(&s, "b", policy, &[]);
    let job = s.job("lineage", "testkit/testkit.wasm", "");
    common::with_stages(&job, JOB);
    let out = s.path().join("out");
    let child = s
        .run_cmd(&job, &out)
        .args(["--no-mdns", "--join", &a.addr, "--join", &b.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    // The 2 MiB output stays with the provider that made it: only its id comes back.
    let t0 = Instant::now();
    while !out.join("stages/make/tasks/0/held.json").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "make never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!out.join("stages/make/tasks/0/out/data.bin").exists());
    let (ha, hb) = (held_bytes(&a.home), held_bytes(&b.home));
    assert!(ha + hb >= 2 << 20, "held on a provider: {ha} + {hb}");
    // Its holder dies before the task that takes it ran (that waits for `slow`).
    if ha >= 2 << 20 {
        drop(a);
    } else {
        let _ = b.child.kill();
        let _ = b.child.wait();
    }
    let done = child.wait_with_output().expect("wait");
    assert!(done.status.success(), "{}", common::stderr(&done));
    let v: Value = serde_json::from_slice(&done.stdout).expect("summary");
    assert_eq!(v["tasks"]["succeeded"], 3, "{v:#}");
    assert_eq!(v["recomputed"], 1, "make ran again: {v:#}");
    let used = std::fs::read_to_string(out.join("stages/use/tasks/0/stdout")).expect("use");
    assert!(used.starts_with("2097152 "), "{used}");
    // The requester handed out no intermediate bytes: the module (to each provider) and
    // tiny stdins only, not the 2 MiB output.
    assert!(
        v["served"]["bytes"].as_u64().expect("served") < 1 << 20,
        "{v:#}"
    );
}
