//! `naac run --join ADDR --local N`: local worker processes beside the remote pool (real
//! `naac node --provide` processes): a slow remote host leaves most work to the local
//! workers, and with no remote host in view the job runs on them alone.

mod common;

use common::{Scratch, provider};
use serde_json::Value;

/// (tasks run locally, tasks run remotely) from a summary.
fn split(v: &Value) -> (u64, u64) {
    let mut out = (0, 0);
    for p in v["providers"].as_array().expect("providers") {
        let n = p["tasks"].as_u64().unwrap_or(0);
        if p["local"] == true {
            out.0 += n;
        } else {
            out.1 += n;
        }
    }
    out
}

#[test]
fn a_slow_remote_host_leaves_most_work_to_the_local_worker() {
    let s = Scratch::new();
    let remote = provider(&s, "remote", "idle_only = false\n", &["--slowdown", "10"]);
    let job = s.job(
        "mixed",
        "testkit/testkit.wasm",
        "args = [\"spin\", \"40\"]\nstraggler_factor = 0\n[sweep]\ni = { from = 0, to = 24 }\n",
    );
    let (out, v) = s.run(&job, &["--no-mdns", "--join", &remote.addr, "--local", "1"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 24, "{v:#}");
    let (local, far) = split(&v);
    assert_eq!(local + far, 24, "{v:#}");
    assert!(
        local > far,
        "most work local: {local} local, {far} remote\n{v:#}"
    );
    assert!(far > 0, "the remote host got work too: {v:#}");
}

#[test]
fn with_no_remote_host_in_view_the_local_workers_run_the_job() {
    let s = Scratch::new();
    let job = s.job(
        "alone",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[sweep]\ni = { from = 0, to = 6 }\n",
    );
    // Nobody listens there.
    let nowhere = format!("/ip4/127.0.0.1/tcp/{}", common::free_port());
    let (out, v) = s.run(&job, &["--no-mdns", "--join", &nowhere, "--local", "2"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 6, "{v:#}");
    assert_eq!(split(&v), (6, 0), "{v:#}");
    // With --no-local-fallback they only work beside a remote host: none, so under
    // --no-wait the run gives up at once, saying why.
    let (out, _) = s.run(
        &job,
        &[
            "--no-mdns",
            "--join",
            &nowhere,
            "--local",
            "1",
            "--no-local-fallback",
            "--no-wait",
        ],
    );
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(err.contains("waiting for a remote host"), "{err}");
    // --local needs a remote pool to be beside.
    let bad = s
        .cmd()
        .arg("run")
        .arg(&job)
        .args(["--local", "1"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        common::stderr(&bad).contains("--join"),
        "{}",
        common::stderr(&bad)
    );
}
