//! Jobs of stages (`[[stage]]`) run end to end on the embedded pool (real provider
//! processes): the example pipeline's answer and results layout, pipelining (a `for_each`
//! task starts before its upstream stage ends), failures reaching exactly the dependents,
//! and bad stage links refused with file and line.

mod common;

use common::{Scratch, examples};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Copies the testkit and primes modules into the scratch dir and writes a job file there.
fn staged_job(s: &Scratch, name: &str, body: &str) -> PathBuf {
    for m in ["testkit/testkit.wasm", "primes/primes.wasm"] {
        let file = Path::new(m).file_name().expect("name");
        std::fs::copy(examples().join(m), s.path().join(file)).expect("copy module");
    }
    let p = s.path().join(format!("{name}.toml"));
    std::fs::write(&p, format!("name = \"{name}\"\n{body}")).expect("write job");
    p
}

/// `tasks.jsonl` lines of one stage.
fn lines_of(out: &Path, stage: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("tasks.jsonl")).expect("tasks.jsonl");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|v| v["stage"] == stage)
        .collect()
}

#[test]
fn the_example_pipeline_prints_the_primes_and_lays_results_out_by_stage() {
    let s = Scratch::new();
    let job = examples().join("pipeline/job.toml");
    let out = s.path().join("out");
    let run = s
        .cmd()
        .arg("run")
        .arg(&job)
        .arg("--out")
        .arg(&out)
        .args(["--workers", "2"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", common::stderr(&run));
    assert_eq!(stdout.trim(), "primes below 1000000: 78498");
    let v: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("summary json");
    assert_eq!(v["tasks"]["succeeded"], 17, "{v:#}");
    for (stage, n) in [("count", 8), ("copy", 8), ("sum", 1)] {
        assert_eq!(v["stages"][stage]["tasks"]["total"], n, "{v:#}");
        assert_eq!(v["stages"][stage]["tasks"]["succeeded"], n, "{v:#}");
        assert_eq!(lines_of(&out, stage).len(), n as usize);
    }
    // Each copy task's stdout is its count task's, byte for byte.
    for i in 0..8 {
        let count =
            std::fs::read(out.join(format!("stages/count/tasks/{i}/stdout"))).expect("count");
        let copy = std::fs::read(out.join(format!("stages/copy/tasks/{i}/stdout"))).expect("copy");
        assert_eq!(count, copy, "task {i}");
    }
    let sum = std::fs::read_to_string(out.join("stages/sum/tasks/0/stdout")).expect("sum");
    assert_eq!(sum.trim(), "primes below 1000000: 78498");
}

#[test]
fn a_for_each_task_starts_before_its_upstream_stage_ends() {
    let s = Scratch::new();
    // Six tasks of 300 ms on two one-slot workers: three rounds.
    let job = staged_job(
        &s,
        "piped",
        r#"
[[stage]]
name = "slow"
module = "testkit.wasm"
args = ["spin", "300"]
[stage.sweep]
i = { from = 0, to = 6 }

[[stage]]
name = "copy"
module = "testkit.wasm"
args = ["echo"]
for_each = "slow"
"#,
    );
    let out = s.path().join("out");
    let (run, v) = s.run_to(&job, &out, &["--workers", "2"]);
    assert!(run.status.success(), "{}", common::stderr(&run));
    assert_eq!(v["stages"]["copy"]["tasks"]["succeeded"], 6, "{v:#}");
    let slow_done = lines_of(&out, "slow")
        .iter()
        .map(|l| l["accepted_ms"].as_u64().expect("accepted_ms"))
        .max()
        .expect("slow tasks");
    let copy_start = lines_of(&out, "copy")
        .iter()
        .map(|l| l["assigned_ms"].as_u64().expect("assigned_ms"))
        .min()
        .expect("copy tasks");
    assert!(
        copy_start < slow_done,
        "the first copy task started at {copy_start} ms, after the last slow task was accepted at {slow_done} ms"
    );
}

#[test]
fn a_failed_task_fails_exactly_the_tasks_that_wait_on_it() {
    let s = Scratch::new();
    let job = staged_job(
        &s,
        "broken",
        r#"
[[stage]]
name = "make"
module = "testkit.wasm"
args = ["exit", "{code}"]
retries = 0
[stage.sweep]
code = [0, 0, 3, 0]

[[stage]]
name = "copy"
module = "testkit.wasm"
args = ["echo"]
for_each = "make"

[[stage]]
name = "sum"
module = "testkit.wasm"
args = ["echo"]
gather = "copy"

[[stage]]
name = "side"
module = "testkit.wasm"
args = ["print", "{i}"]
[stage.sweep]
i = { from = 0, to = 2 }
"#,
    );
    let (run, v) = s.run(&job, &["--workers", "2"]);
    assert_eq!(run.status.code(), Some(1), "{}", common::stderr(&run));
    let counts = |st: &str| {
        let t = &v["stages"][st]["tasks"];
        (t["succeeded"].as_u64(), t["failed"].as_u64())
    };
    assert_eq!(counts("make"), (Some(3), Some(1)), "{v:#}");
    assert_eq!(counts("copy"), (Some(3), Some(1)), "{v:#}");
    assert_eq!(counts("sum"), (Some(0), Some(1)), "{v:#}");
    assert_eq!(counts("side"), (Some(2), Some(0)), "{v:#}");
    let mut failures: Vec<(String, u64, String)> = v["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| {
            (
                f["stage"].as_str().expect("stage").to_string(),
                f["task"].as_u64().expect("task"),
                f["kind"].as_str().expect("kind").to_string(),
            )
        })
        .collect();
    failures.sort();
    assert_eq!(
        failures,
        vec![
            ("copy".into(), 2, "upstream".into()),
            ("make".into(), 2, "exit".into()),
            ("sum".into(), 0, "upstream".into()),
        ],
        "{v:#}"
    );
    let why = v["failures"].to_string();
    assert!(why.contains("stage \\\"make\\\""), "{why}");
}

#[test]
fn a_cycle_is_refused_with_file_line_and_the_path() {
    let s = Scratch::new();
    let job = staged_job(
        &s,
        "loop",
        r#"
[[stage]]
name = "a"
module = "testkit.wasm"
args = ["echo"]
for_each = "b"

[[stage]]
name = "b"
module = "testkit.wasm"
args = ["echo"]
for_each = "a"
"#,
    );
    let (run, _) = s.run(&job, &[]);
    assert_eq!(run.status.code(), Some(2));
    let err = common::stderr(&run);
    assert!(err.contains("loop.toml:"), "{err}");
    assert!(err.contains("cycle"), "{err}");
}

#[test]
fn an_interrupted_pipeline_resumed_runs_only_the_missing_tasks() {
    use std::time::{Duration, Instant};
    let s = Scratch::new();
    let job = staged_job(
        &s,
        "rescue",
        r#"
[[stage]]
name = "slow"
module = "testkit.wasm"
args = ["spin", "250"]
[stage.sweep]
i = { from = 0, to = 8 }

[[stage]]
name = "copy"
module = "testkit.wasm"
args = ["echo"]
for_each = "slow"

[[stage]]
name = "all"
module = "testkit.wasm"
args = ["echo"]
gather = "copy"
"#,
    );
    let out = s.path().join("out");
    let child = s
        .run_cmd(&job, &out)
        .args(["--workers", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let t0 = Instant::now();
    while !out.join("stages/copy/tasks/0").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no result within a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
    let first = child.wait_with_output().expect("wait");
    assert_eq!(first.status.code(), Some(130), "{}", common::stderr(&first));
    let v: Value = serde_json::from_slice(&first.stdout).expect("json");
    let done = v["tasks"]["succeeded"].as_u64().expect("succeeded");
    assert!((2..17).contains(&done), "{v:#}");
    // A directory that is not there is refused, saying so.
    let missing = s
        .cmd()
        .arg("run")
        .arg(&job)
        .args(["--resume", "nowhere"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
    assert!(common::stderr(&missing).contains("no such results directory"));
    // Resumed: only what is missing runs, and the pipeline completes.
    let again = s
        .cmd()
        .arg("run")
        .arg(&job)
        .arg("--resume")
        .arg(&out)
        .args(["--json", "--workers", "2"])
        .output()
        .expect("resume");
    assert!(again.status.success(), "{}", common::stderr(&again));
    let v: Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(v["tasks"]["succeeded"], 17, "{v:#}");
    assert_eq!(v["tasks"]["kept"], done, "{v:#}");
    let ran: u64 = v["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .map(|p| p["tasks"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(ran, 17 - done, "only the missing tasks ran: {v:#}");
    // The gather task saw every copy's output, kept or new.
    let all = std::fs::read_to_string(out.join("stages/all/tasks/0/stdout")).expect("all");
    assert_eq!(all.lines().count(), 8, "{all}");
    // tasks.jsonl lists every result, the kept ones too.
    assert_eq!(lines_of(&out, "slow").len(), 8);
}
