//! `[requirements]`: hosts that do not meet a job's requirements get none of its tasks, and
//! `--explain` counts each unmet requirement (real `naac node --provide` processes).

mod common;

use common::{Scratch, spawn_node};
use serde_json::Value;
use std::process::Child;

struct Node(Child, String);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A one-slot provider with `policy` in a data dir of its own.
fn provider(s: &Scratch, name: &str, policy: &str) -> Node {
    let home = s.path().join(name);
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("policy.toml"), policy).expect("policy");
    let mut c = common::naac();
    c.env("NAAC_HOME", &home).args([
        "node",
        "--provide",
        "--no-mdns",
        "--slots",
        "1",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    let (child, addr) = spawn_node(c);
    Node(child, addr)
}

#[test]
fn only_hosts_that_meet_the_requirements_get_tasks_and_explain_says_why_not() {
    let s = Scratch::new();
    let eu = provider(
        &s,
        "eu",
        "idle_only = false\nlabels = [\"zone=eu\", \"ssd\"]\n",
    );
    let us = provider(&s, "us", "idle_only = false\nlabels = [\"zone=us\"]\n");
    let job = s.job(
        "placed",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[sweep]\ni = { from = 0, to = 6 }\n[requirements]\nlabels = [\"zone=eu\"]\n",
    );
    let join = ["--no-mdns", "--join", &eu.1, "--join", &us.1];
    // --explain: one host can, the other lacks the label.
    let out = s
        .cmd()
        .arg("run")
        .arg(&job)
        .args(["--explain", "--json"])
        .args(join)
        .output()
        .expect("explain");
    let v: Value = serde_json::from_slice(&out.stdout).expect("explain json");
    assert_eq!(v["usable"], 1, "{v:#}");
    let ruled = v["ruled_out"].to_string();
    assert!(ruled.contains("no label zone=eu"), "{v:#}");
    // The run: every task on the labeled host.
    let (out, v) = s.run(&job, &join);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 6, "{v:#}");
    let eu_id = eu.1.rsplit('/').next().expect("peer id");
    for p in v["providers"].as_array().expect("providers") {
        let tasks = p["tasks"].as_u64().unwrap_or(0);
        if p["peer_id"] != eu_id {
            assert_eq!(tasks, 0, "a host without the label ran tasks: {v:#}");
        }
    }
    // A requirement no host meets: --explain names it for both.
    let none = s.job(
        "nowhere",
        "testkit/testkit.wasm",
        "args = [\"noop\"]\n[requirements]\ngpus = 4\n",
    );
    let out = s
        .cmd()
        .arg("run")
        .arg(&none)
        .args(["--explain", "--json"])
        .args(join)
        .output()
        .expect("explain");
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("explain json");
    assert_eq!(v["usable"], 0, "{v:#}");
    assert!(v["ruled_out"].to_string().contains("0 GPUs < 4"), "{v:#}");
}
