//! End-to-end tests over real `naac` processes on 127.0.0.1: real libp2p between processes,
//! real wasmtime in each provider, real files on disk.

mod common;

use common::{Provider, Scratch, stderr};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn pi_example_runs_on_the_embedded_pool() {
    let s = Scratch::new();
    let job = s.job(
        "pi",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"{samples}\"]\n[sweep]\nseed = { from = 0, to = 8 }\nsamples = [200000]\n[reduce]\nargs = [\"reduce\"]\n",
    );
    let (out, v) = s.run(&job, &["--workers", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["name"], "pi");
    assert_eq!(v["tasks"]["total"], 8);
    assert_eq!(v["tasks"]["succeeded"], 8);
    assert_eq!(v["tasks"]["failed"], 0);
    assert!(v["fuel_total"].as_u64().expect("fuel") > 0);
    assert!(v["wall_seconds"].as_f64().expect("wall") > 0.0);
    assert_eq!(v["job_id"].as_str().expect("id").len(), 32);
    let providers = v["providers"].as_array().expect("providers");
    let total: u64 = providers
        .iter()
        .map(|p| p["tasks"].as_u64().expect("n"))
        .sum();
    assert_eq!(total, 8);
    let stdout = v["reduce_stdout"].as_str().expect("reduce stdout");
    assert!(stdout.starts_with("pi = 3.1"), "{stdout}");

    // Results on disk, every task's stdout matching the same kernel run natively.
    let dir = s.path().join("out-pi");
    for seed in 0..8u64 {
        let got =
            std::fs::read_to_string(dir.join(format!("tasks/{seed}/stdout"))).expect("stdout");
        let hits = naac_guest::kernels::pi_hits(seed, 200_000);
        assert_eq!(got.trim(), format!("{hits} 200000"), "task {seed}");
        assert!(dir.join(format!("tasks/{seed}/stderr")).is_file());
    }
    assert!(
        std::fs::read_to_string(dir.join("reduce/stdout"))
            .expect("reduce")
            .starts_with("pi = ")
    );
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(on_disk["tasks"], v["tasks"]);
}

#[test]
fn human_output_prints_the_reduce_result() {
    let s = Scratch::new();
    let job = s.job(
        "primes",
        "primes/primes.wasm",
        "args = [\"{start}\", \"{width}\"]\n[sweep]\nstart = { from = 0, to = 1000000, step = 100000 }\nwidth = [100000]\n[reduce]\nargs = [\"reduce\"]\n",
    );
    let out = s
        .cmd()
        .arg("run")
        .arg(&job)
        .args(["--workers", "2", "--out", "res"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "primes below 1000000: 78498"
    );
    assert!(
        stderr(&out).contains("10/10 tasks succeeded"),
        "{}",
        stderr(&out)
    );
    assert!(s.path().join("res/summary.json").is_file());
}

#[test]
fn mandelbrot_reduce_writes_a_png() {
    let s = Scratch::new();
    let job = s.job(
        "mandel",
        "mandelbrot/mandelbrot.wasm",
        "args = [\"{tx}\", \"{ty}\", \"4\", \"256\", \"64\"]\n[sweep]\nty = { from = 0, to = 4 }\ntx = { from = 0, to = 4 }\n[reduce]\nargs = [\"reduce\", \"4\", \"256\"]\n",
    );
    let (out, v) = s.run(&job, &["--workers", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 16);
    let png = std::fs::read(s.path().join("out-mandel/reduce/out/mandelbrot.png")).expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(s.path().join("out-mandel/tasks/5/out/tile.raw").is_file());
}

#[test]
fn bad_job_files_exit_2_with_clear_errors() {
    let s = Scratch::new();
    let cases: &[(&str, &str, &str)] = &[
        ("malformed", "args = [\n", "line"),
        ("unknown", "modle = 1\n", "did you mean \"module\"?"),
        ("empty", "[sweep]\nseed = []\n", "sweep.seed"),
        ("badlimit", "[limits]\nmemory = \"lots\"\n", "limits.memory"),
    ];
    for (name, body, needle) in cases {
        let job = s.job(name, "pi/pi.wasm", body);
        let (out, _) = s.run(&job, &["--workers", "1"]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(needle), "{name}: {err}");
        assert!(
            err.contains(&format!("{name}.toml")),
            "{name}: names the file: {err}"
        );
    }
    // Missing module, a file that is not wasm, and wasm that does not validate.
    std::fs::write(s.path().join("notwasm.wasm"), b"hello").expect("write");
    std::fs::write(s.path().join("broken.wasm"), b"\0asm\x01\0\0\0\x01\x02").expect("write");
    for (module, needle) in [
        ("missing.wasm", "cannot be read"),
        ("notwasm.wasm", "not a WebAssembly module"),
        ("broken.wasm", "not a valid WebAssembly module"),
    ] {
        let p = s.path().join("m.toml");
        std::fs::write(&p, format!("module = \"{module}\"\n")).expect("write");
        let (out, _) = s.run(&p, &["--workers", "1"]);
        assert_eq!(out.status.code(), Some(2), "{module}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{module}: {}", stderr(&out));
    }
}

/// Every kind of misbehaving guest, one job each, all on the same provider process, which must
/// survive them all and then run a normal job.
#[test]
fn misbehaving_guests_get_their_outcome_and_the_provider_survives() {
    let s = Scratch::new();
    let mut p = Provider::start(&s, 2);
    let cases: &[(&str, &str, &str, &str)] = &[
        ("trap", "[\"trap\"]", "", "trap"),
        ("exit", "[\"exit\", \"3\"]", "", "exit"),
        ("fuel", "[\"loop\"]", "fuel = 100_000_000\n", "out_of_fuel"),
        (
            "timeout",
            "[\"loop\"]",
            "fuel = 1_000_000_000_000\ntimeout = \"1s\"\n",
            "timeout",
        ),
        ("memory", "[\"alloc\"]", "memory = \"32MiB\"\n", "memory"),
        ("flood", "[\"bytes\", \"1073741824\"]", "", "trap"),
        ("passwd", "[\"readfile\", \"/etc/passwd\"]", "", "exit"),
        (
            "escape",
            "[\"readfile\", \"/in/../../etc/passwd\"]",
            "",
            "exit",
        ),
    ];
    for (name, args, limits, kind) in cases {
        let job = s.job(
            name,
            "testkit/testkit.wasm",
            &format!("args = {args}\nretries = 0\n[limits]\n{limits}"),
        );
        let (out, v) = s.run(&job, &["--join", &p.addr, "--no-mdns"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert_eq!(v["tasks"]["failed"], 1, "{name}");
        assert_eq!(v["failures"][0]["kind"], *kind, "{name}: {v}");
        assert!(
            !v["failures"][0]["message"]
                .as_str()
                .unwrap_or("")
                .is_empty(),
            "{name}"
        );
        let so =
            std::fs::read(s.path().join(format!("out-{name}/tasks/0/stdout"))).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&so).contains("root:"), "{name}");
        assert!(p.alive(), "provider died after {name}");
    }
    let job = s.job(
        "fine",
        "testkit/testkit.wasm",
        "args = [\"print\", \"still here\"]\n",
    );
    let (out, v) = s.run(&job, &["--join", &p.addr, "--no-mdns"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 1);
    assert_eq!(
        std::fs::read_to_string(s.path().join("out-fine/tasks/0/stdout")).expect("stdout"),
        "still here\n"
    );
}

#[test]
fn garbage_on_the_task_protocol_drops_the_stream_not_the_node() {
    let s = Scratch::new();
    let mut p = Provider::start(&s, 1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for garbage in [vec![0xff; 64], b"\xa1\x61v\x01".to_vec(), vec![]] {
        let answered = rt
            .block_on(naac_net::testing::send_raw_request(
                p.addr.parse().expect("multiaddr"),
                garbage,
            ))
            .expect("send garbage");
        assert!(!answered, "garbage must not get an answer");
        assert!(p.alive(), "provider died on garbage");
    }
    let job = s.job(
        "after",
        "testkit/testkit.wasm",
        "args = [\"print\", \"ok\"]\n",
    );
    let (out, _) = s.run(&job, &["--join", &p.addr, "--no-mdns"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_provider_killed_mid_job_does_not_lose_results() {
    let s = Scratch::new();
    let mut a = Provider::start(&s, 1);
    let b = Provider::start(&s, 1);
    // 12 tasks of ~0.3 s each: both providers are busy when one is killed.
    let samples = 3_000_000u64;
    let job = s.job(
        "kill",
        "testkit/testkit.wasm",
        &format!("args = [\"pi\", \"{{seed}}\", \"{samples}\"]\n[sweep]\nseed = {{ from = 0, to = 12 }}\n"),
    );
    let out_dir = s.path().join("out-kill");
    let child = s
        .cmd()
        .arg("run")
        .arg(&job)
        .args([
            "--json",
            "--no-mdns",
            "--join",
            &a.addr,
            "--join",
            &b.addr,
            "--out",
        ])
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    // Kill provider a once the job has produced its first result.
    let t0 = Instant::now();
    while !out_dir.join("tasks/0").exists() && !out_dir.join("tasks/1").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no result within a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.child.kill().expect("SIGKILL provider a");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["tasks"]["succeeded"], 12);
    for seed in 0..12u64 {
        let got =
            std::fs::read_to_string(out_dir.join(format!("tasks/{seed}/stdout"))).expect("stdout");
        assert_eq!(
            got.trim(),
            naac_guest::kernels::pi_hits(seed, samples).to_string(),
            "task {seed}"
        );
    }
    drop(b);
}

#[test]
fn same_task_same_bytes_across_runs_and_providers() {
    let s = Scratch::new();
    let job = s.job(
        "det",
        "testkit/testkit.wasm",
        "args = [\"random\", \"{n}\"]\n[sweep]\nn = [1, 2, 3, 4]\n",
    );
    let (o1, _) = s.run_to(&job, &s.path().join("a"), &["--workers", "2"]);
    assert!(o1.status.success(), "{}", stderr(&o1));
    let (o2, _) = s.run_to(&job, &s.path().join("b"), &["--workers", "1"]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    for i in 0..4 {
        let a = std::fs::read(s.path().join(format!("a/tasks/{i}/stdout"))).expect("a");
        let b = std::fs::read(s.path().join(format!("b/tasks/{i}/stdout"))).expect("b");
        assert!(!a.is_empty());
        assert_eq!(a, b, "task {i}");
    }
}

#[test]
fn ctrl_c_stops_cleanly_and_keeps_results() {
    let s = Scratch::new();
    let job = s.job(
        "long",
        "testkit/testkit.wasm",
        "args = [\"spin\", \"{ms}\"]\n[sweep]\nn = { from = 0, to = 40 }\nms = [300]\n",
    );
    let out_dir = s.path().join("out-long");
    let child = s
        .cmd()
        .arg("run")
        .arg(&job)
        .args(["--json", "--workers", "2", "--out"])
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let t0 = Instant::now();
    while !out_dir.join("tasks/0").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no result within a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["interrupted"], true);
    let done = v["tasks"]["succeeded"].as_u64().expect("n");
    assert!((1..40).contains(&done), "{v}");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary["interrupted"], true);
}

#[test]
fn key_show_prints_a_stable_peer_id() {
    let s = Scratch::new();
    let a = s.cmd().args(["key", "show"]).output().expect("key show");
    assert!(a.status.success(), "{}", stderr(&a));
    let id = String::from_utf8_lossy(&a.stdout).trim().to_string();
    assert!(id.starts_with("12D3KooW"), "{id}");
    let b = s
        .cmd()
        .args(["key", "show", "--json"])
        .output()
        .expect("key show");
    let v: Value = serde_json::from_slice(&b.stdout).expect("json");
    assert_eq!(v["peer_id"], id.as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.home().join("identity.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// `naac sim`: one scenario and seed, one trace; a broken expectation exits 1 and prints the
/// command that replays it, which stops at that event; a bad scenario exits 2 naming its
/// field.
#[test]
fn sim_runs_a_scenario_reproducibly_and_replays_what_it_breaks() {
    let s = Scratch::new();
    let small = common::examples().join("../sim/small.toml");
    let sim = |args: &[&str]| {
        s.cmd()
            .arg("sim")
            .arg(&small)
            .args(args)
            .output()
            .expect("naac sim")
    };
    let runs: Vec<Value> = (0..2)
        .map(|_| {
            let o = sim(&["--seed", "3", "--hours", "0.5", "--json"]);
            assert!(o.status.success(), "{}", stderr(&o));
            serde_json::from_slice(&o.stdout).expect("json")
        })
        .collect();
    assert_eq!(runs[0]["trace"], runs[1]["trace"]);
    assert!(
        runs[0]["events"].as_u64().expect("events") > 1000,
        "{}",
        runs[0]
    );
    assert_eq!(runs[0]["violations"], serde_json::json!([]));
    // Colluders get wrong answers past replicas: a scenario that expects none breaks.
    let collude = std::fs::read_to_string(common::examples().join("../sim/collude.toml"))
        .expect("collude.toml")
        .replace("wrong_below", "no_wrong = [\"replicas2\"]\n# wrong_below");
    let file = s.path().join("strict.toml");
    std::fs::write(&file, collude).expect("write");
    let o = s
        .cmd()
        .args(["sim", "--seed", "1", "--json"])
        .arg(&file)
        .output()
        .expect("naac sim");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    let first = &v["violations"][0];
    assert!(
        first["what"]
            .as_str()
            .expect("what")
            .contains("replicas2 accepted a wrong result"),
        "{first}"
    );
    let event = first["event"].as_u64().expect("event");
    let replay = first["replay"].as_str().expect("replay");
    assert!(
        replay.ends_with(&format!("--seed 1 --stop-at {event}")),
        "{replay}"
    );
    let o = s
        .cmd()
        .args(["sim", "--seed", "1", "--stop-at", &event.to_string()])
        .arg(&file)
        .output()
        .expect("replay");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("#{event} at ")), "{text}");
    assert!(text.contains("replicas2 accepted a wrong result"), "{text}");
    // A bad scenario names the field.
    std::fs::write(&file, "name = \"x\"\n[pool]\nslots = [4, 1]\n").expect("write");
    let o = s.cmd().arg("sim").arg(&file).output().expect("naac sim");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pool.slots"), "{}", stderr(&o));
}
