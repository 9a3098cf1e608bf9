//! `[requirements]`: hosts that do not meet a job's requirements get none of its tasks, and
//! `--explain` counts each unmet requirement (real `naac node --provide` processes).

mod common;

use common::{Scratch, provider, spawn_node};
use serde_json::Value;

#[test]
fn only_hosts_that_meet_the_requirements_get_tasks_and_explain_says_why_not() {
    let s = Scratch::new();
    let eu = provider(
        &s,
        "eu",
        "idle_only = false\nlabels = [\"zone=eu\", \"ssd\"]\n",
        &[],
    );
    let us = provider(&s, "us", "idle_only = false\nlabels = [\"zone=us\"]\n", &[]);
    let job = s.job(
        "placed",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[sweep]\ni = { from = 0, to = 6 }\n[requirements]\nlabels = [\"zone=eu\"]\n",
    );
    let join = ["--no-mdns", "--join", &eu.addr, "--join", &us.addr];
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
    let eu_id = eu.addr.rsplit('/').next().expect("peer id");
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

#[test]
fn each_stage_runs_on_the_hosts_that_meet_its_own_requirements() {
    let s = Scratch::new();
    let eu = provider(&s, "eu", "idle_only = false\nlabels = [\"zone=eu\"]\n", &[]);
    let us = provider(&s, "us", "idle_only = false\nlabels = [\"zone=us\"]\n", &[]);
    let job = s.job("split", "testkit/testkit.wasm", "");
    common::with_stages(
        &job,
        r#"
[[stage]]
name = "eu_only"
module = "testkit.wasm"
args = ["spin", "100"]
[stage.sweep]
i = { from = 0, to = 6 }
[stage.requirements]
labels = ["zone=eu"]

[[stage]]
name = "anywhere"
module = "testkit.wasm"
args = ["spin", "300"]
for_each = "eu_only"
"#,
    );
    let out = s.path().join("out-split");
    let (run, v) = s.run_to(
        &job,
        &out,
        &["--no-mdns", "--join", &eu.addr, "--join", &us.addr],
    );
    assert!(run.status.success(), "{}", common::stderr(&run));
    assert_eq!(v["tasks"]["succeeded"], 12, "{v:#}");
    let eu_id = eu.addr.rsplit('/').next().expect("peer id");
    let text = std::fs::read_to_string(out.join("tasks.jsonl")).expect("tasks.jsonl");
    let mut us_ran = 0;
    for line in text.lines() {
        let l: Value = serde_json::from_str(line).expect("line");
        if l["stage"] == "eu_only" {
            assert_eq!(l["provider"], eu_id, "an eu_only task ran elsewhere: {l}");
        } else if l["provider"] != eu_id {
            us_ran += 1;
        }
    }
    assert!(
        us_ran > 0,
        "the unlabeled host took none of the stage any host may run"
    );
}

/// A guest that writes its whole environment (`KEY=value` strings, each NUL-ended) to
/// stdout.
const PRINT_ENV: &str = r#"
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $get (i32.const 16) (i32.const 1024)))
    (i32.store (i32.const 8) (i32.const 1024))
    (i32.store (i32.const 12) (i32.load (i32.const 4)))
    (drop (call $write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 4000)))))
"#;

#[test]
fn a_job_gives_its_tasks_an_environment_and_nothing_of_the_hosts_leaks_in() {
    let s = Scratch::new();
    let home = s.path().join("p");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("policy.toml"), "idle_only = false\n").expect("policy");
    let mut c = common::naac();
    c.env("NAAC_HOME", &home)
        .env("HOST_SECRET", "do-not-leak")
        .args(["node", "--provide", "--no-mdns", "--slots", "1"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let (child, addr) = spawn_node(c);
    let _p = common::Node {
        child,
        addr: addr.clone(),
        home,
    };
    let wasm = wat::parse_str(PRINT_ENV).expect("assembles");
    std::fs::write(s.path().join("env.wasm"), wasm).expect("module");
    let job = s.path().join("env.toml");
    std::fs::write(
        &job,
        "name = \"env\"\nmodule = \"env.wasm\"\nenv = { MODE = \"fast\", SEED = \"{i}\" }\n[sweep]\ni = [3, 4]\n",
    )
    .expect("job");
    let (out, v) = s.run(&job, &["--no-mdns", "--join", &addr]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 2, "{v:#}");
    for (task, seed) in [(0, 3), (1, 4)] {
        let got =
            std::fs::read(s.path().join(format!("out-env/tasks/{task}/stdout"))).expect("stdout");
        let vars: Vec<String> = got
            .split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert_eq!(vars, ["MODE=fast".to_string(), format!("SEED={seed}")]);
    }
    // A bad variable name is the job file's error, with its line.
    std::fs::write(&job, "module = \"env.wasm\"\n\nenv = { \"A-B\" = \"x\" }\n").expect("job");
    let (out, _) = s.run(&job, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(err.contains("line 3") && err.contains("env.A-B"), "{err}");
}
