//! End-to-end tests of owners' control over real `naac` processes on 127.0.0.1: usage
//! policies (deny/allow lists, time windows, task limits), pause and resume with identical
//! output, grace expiry handing work back, `naac run --explain`, `naac pool` and the
//! `naac policy` commands.

mod common;

use common::{Scratch, naac, spawn_node, stderr};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A provider with its own data dir (own identity and policy file).
struct Host {
    child: Child,
    addr: String,
    home: PathBuf,
}

impl Host {
    fn start(s: &Scratch, name: &str, slots: u32, policy: &str) -> Host {
        Host::start_with(s, name, slots, policy, &[])
    }

    /// A host started with `extra` node arguments (e.g. `--join` another host).
    fn start_with(s: &Scratch, name: &str, slots: u32, policy: &str, extra: &[&str]) -> Host {
        let home = s.path().join(format!("host-{name}"));
        std::fs::create_dir_all(&home).expect("home");
        std::fs::write(home.join("policy.toml"), policy).expect("policy");
        let mut c = naac();
        c.env("NAAC_HOME", &home)
            .args(["node", "--provide", "--no-mdns"])
            .args(["--slots", &slots.to_string()])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(extra);
        let (child, addr) = spawn_node(c);
        Host { child, addr, home }
    }

    fn peer_id(&self) -> String {
        self.addr.rsplit('/').next().expect("peer id").to_string()
    }

    /// Runs `naac ARGS` with this host's data dir.
    fn naac(&self, args: &[&str]) -> std::process::Output {
        naac()
            .env("NAAC_HOME", &self.home)
            .args(args)
            .output()
            .expect("run naac")
    }

    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("provider stat");
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hosts that take work at any time (the defaults wait for the owner to be away).
const OPEN: &str = "idle_only = false\n";

fn joins(hosts: &[&Host]) -> Vec<String> {
    let mut v = vec!["--no-mdns".to_string()];
    for h in hosts {
        v.push("--join".into());
        v.push(h.addr.clone());
    }
    v
}

fn user_id(s: &Scratch) -> String {
    let out = s
        .cmd()
        .args(["key", "show", "--user"])
        .output()
        .expect("key show");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `naac pool --json` through `hosts`.
fn pool(s: &Scratch, hosts: &[&Host]) -> Value {
    let mut c = s.cmd();
    c.args(["pool", "--json", "--wait", "1500ms"]);
    c.args(joins(hosts));
    let out = c.output().expect("naac pool");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("pool json")
}

fn host_in<'a>(pool: &'a Value, peer: &str) -> &'a Value {
    pool["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["peer_id"] == peer)
        .unwrap_or_else(|| panic!("{peer} not in {pool:#}"))
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn deny_and_allow_lists_name_users() {
    let s = Scratch::new();
    let me = user_id(&s);
    let other = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";
    let denies = Host::start(&s, "deny", 1, &format!("{OPEN}deny = [\"{me}\"]\n"));
    let allows_other = Host::start(&s, "other", 1, &format!("{OPEN}allow = [\"{other}\"]\n"));
    let allows_me = Host::start(&s, "me", 1, &format!("{OPEN}allow = [\"{me}\"]\n"));
    let job = s.job(
        "lists",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[sweep]\ni = { from = 0, to = 12 }\n",
    );
    // Only the host that allows us may run it.
    let args = joins(&[&denies, &allows_other]);
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.push("--no-wait");
    let (out, _) = s.run(&job, &a);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("you are on its deny list"), "{err}");
    assert!(err.contains("you are not on its allow list"), "{err}");
    let args = joins(&[&denies, &allows_other, &allows_me]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, v) = s.run(&job, &a);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 12);
    let providers: Vec<&str> = v["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .map(|p| p["peer_id"].as_str().expect("peer id"))
        .collect();
    assert_eq!(providers, vec![allows_me.peer_id().as_str()], "{v:#}");
}

#[test]
fn a_host_whose_policy_forbids_work_gets_none_and_explain_says_why() {
    let s = Scratch::new();
    let me = user_id(&s);
    let closed = Host::start(
        &s,
        "closed",
        1,
        &format!(
            "{OPEN}[[windows]]\ndays = \"daily\"\nfrom = \"00:00\"\nto = \"24:00\"\naction = \"deny\"\n"
        ),
    );
    let small = Host::start(
        &s,
        "small",
        1,
        &format!("{OPEN}max_task_memory = \"64MiB\"\n"),
    );
    let denies = Host::start(&s, "deny", 1, &format!("{OPEN}deny = [\"{me}\"]\n"));
    let open = Host::start(&s, "open", 2, OPEN);
    let job = s.job(
        "windows",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[limits]\nmemory = \"256MiB\"\n[sweep]\ni = { from = 0, to = 40 }\n",
    );
    let all = [&closed, &small, &denies, &open];
    let args = joins(&all);
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    // --explain: per constraint, how many hosts it rules out.
    let mut c = s.cmd();
    c.arg("run").arg(&job).arg("--explain").args(&a);
    let out = c.output().expect("explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("1 of 4 hosts can run it now"), "{text}");
    assert!(text.contains("1 host: you are on its deny list"), "{text}");
    assert!(
        text.contains("1 host: task memory 256 MiB > its limit 64 MiB"),
        "{text}"
    );
    assert!(text.contains("1 host: in a no-work window"), "{text}");
    // The job runs on the open host only.
    a.push("--no-wait");
    let (out, v) = s.run(&job, &a);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 40);
    for p in v["providers"].as_array().expect("providers") {
        assert_eq!(p["peer_id"], open.peer_id(), "{v:#}");
    }
}

#[test]
fn pause_and_resume_give_identical_output() {
    let s = Scratch::new();
    let host = Host::start(&s, "p", 1, OPEN);
    // About 3 s of CPU in one task.
    let job = s.job(
        "pause",
        "testkit/testkit.wasm",
        "args = [\"spin\", \"3000\"]\n",
    );
    let out_dir = s.path().join("out-pause");
    let mut run = s
        .run_cmd(&job, &out_dir)
        .args(joins(&[&host]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    // Wait for the task to be burning CPU on the provider.
    let t0 = host.cpu_ticks();
    wait_until("the task to start", Duration::from_secs(20), || {
        host.cpu_ticks() > t0 + 30
    });
    let out = host.naac(&["pause"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A guest stops within a second of a pause; under a loaded machine (CI runs tests
    // side by side) give it a little more before measuring.
    std::thread::sleep(Duration::from_millis(1500));
    let a = host.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = host.cpu_ticks() - a;
    // Paused: well under a fifth of a core over 2 s (200 ticks = a full core).
    assert!(used < 40, "paused provider used {used} ticks in 2 s");
    assert!(
        run.try_wait().expect("try_wait").is_none(),
        "job cannot finish while paused"
    );
    let out = host.naac(&["resume"]);
    assert!(out.status.success());
    let out = run.wait_with_output().expect("run output");
    assert!(out.status.success(), "{}", stderr(&out));
    let got = std::fs::read_to_string(out_dir.join("tasks/0/stdout")).expect("stdout");
    // The same task run without a pause, on the embedded pool.
    let plain = s.path().join("out-plain");
    let (o2, _) = s.run_to(&job, &plain, &[]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    let want = std::fs::read_to_string(plain.join("tasks/0/stdout")).expect("stdout");
    assert_eq!(got, want);
    assert!(!got.trim().is_empty());
}

#[test]
fn a_task_paused_past_its_grace_goes_elsewhere() {
    let s = Scratch::new();
    let policy = format!("{OPEN}pause_grace = \"1s\"\n");
    let hosts = [
        Host::start(&s, "a", 1, &policy),
        Host::start(&s, "b", 1, &policy),
    ];
    let job = s.job(
        "grace",
        "testkit/testkit.wasm",
        "args = [\"spin\", \"2500\"]\n",
    );
    let out_dir = s.path().join("out-grace");
    let run = s
        .run_cmd(&job, &out_dir)
        .args(joins(&[&hosts[0], &hosts[1]]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    // Pause whichever host got the task.
    let t0 = [hosts[0].cpu_ticks(), hosts[1].cpu_ticks()];
    let mut busy = None;
    wait_until("the task to start", Duration::from_secs(20), || {
        busy = (0..2).find(|i| hosts[*i].cpu_ticks() > t0[*i] + 30);
        busy.is_some()
    });
    let busy = busy.expect("busy host");
    assert!(hosts[busy].naac(&["pause"]).status.success());
    let out = run.wait_with_output().expect("run output");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(v["tasks"]["succeeded"], 1, "{v:#}");
    assert_eq!(
        v["tasks"]["retried"], 0,
        "a handed-back task is not a failure: {v:#}"
    );
    let lines = std::fs::read_to_string(out_dir.join("tasks.jsonl")).expect("tasks.jsonl");
    let rec: Value = serde_json::from_str(lines.lines().next().expect("a line")).expect("json");
    assert_eq!(rec["provider"], hosts[1 - busy].peer_id(), "{lines}");
    let got = std::fs::read_to_string(out_dir.join("tasks/0/stdout")).expect("stdout");
    assert!(!got.trim().is_empty());
}

#[test]
fn a_job_waits_for_a_paused_host_then_runs() {
    let s = Scratch::new();
    let host = Host::start(&s, "w", 1, OPEN);
    assert!(host.naac(&["pause"]).status.success());
    let job = s.job(
        "wait",
        "testkit/testkit.wasm",
        "args = [\"print\", \"hi\"]\n",
    );
    let args = joins(&[&host]);
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.push("--no-wait");
    let (out, _) = s.run(&job, &a);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("1 host: paused by its owner"),
        "{}",
        stderr(&out)
    );
    a.pop();
    let out_dir = s.path().join("out-wait2");
    let run = s
        .run_cmd(&job, &out_dir)
        .args(&a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    std::thread::sleep(Duration::from_secs(2));
    assert!(host.naac(&["resume"]).status.success());
    let out = run.wait_with_output().expect("run output");
    assert!(out.status.success(), "{}", stderr(&out));
    let got = std::fs::read_to_string(out_dir.join("tasks/0/stdout")).expect("stdout");
    assert_eq!(got.trim(), "hi");
}

#[test]
fn pool_shows_resources_policy_state_and_totals_and_policy_reloads() {
    let s = Scratch::new();
    let a = Host::start(&s, "a", 2, &format!("{OPEN}max_cpu_percent = 50\n"));
    let b = Host::start(&s, "b", 1, OPEN);
    // The compute score is measured in the background at start.
    let mut v = Value::Null;
    wait_until("compute scores", Duration::from_secs(30), || {
        v = pool(&s, &[&a, &b]);
        v["hosts"].as_array().is_some_and(|h| {
            h.len() == 2
                && h.iter()
                    .all(|h| h["resources"]["cpu"]["score"].as_f64() > Some(0.0))
        })
    });
    let ha = host_in(&v, &a.peer_id());
    assert_eq!(ha["state"]["accepting"], true, "{ha:#}");
    assert_eq!(ha["slots"], 2);
    assert_eq!(ha["limits"]["max_cpu_percent"], 50);
    let r = &ha["resources"];
    assert!(r["cpu"]["cores"].as_u64() > Some(0));
    assert!(r["memory"]["total"].as_u64() > Some(0));
    assert!(r["disk"]["free"].as_u64() > Some(0));
    // This machine has no GPU and no battery: reported absent, not an error.
    assert_eq!(r["gpus"], serde_json::json!([]));
    assert!(r["power"]["battery_percent"].is_null());
    assert!(ha["latency_ms"].as_f64().is_some(), "{ha:#}");
    let t = &v["totals"];
    assert_eq!(t["hosts"], 2);
    assert_eq!(t["slots"], 3);
    let cores = r["cpu"]["cores"].as_u64().expect("cores");
    assert_eq!(t["cores"].as_u64(), Some(2 * cores));
    // Hot reload: the owner now wants work only when away for an hour.
    let out = b.naac(&["policy", "set", "idle_only", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = b.naac(&["policy", "set", "idle_after", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("b to pause", Duration::from_secs(10), || {
        let v = pool(&s, &[&b]);
        let hb = host_in(&v, &b.peer_id());
        hb["state"]["accepting"] == false
            && hb["state"]["paused"]
                .as_str()
                .is_some_and(|p| p.contains("owner"))
    });
    // Text output names the state.
    let mut c = s.cmd();
    c.args(["pool", "--wait", "1500ms"]).args(joins(&[&a, &b]));
    let out = c.output().expect("pool");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("accepting"), "{text}");
    assert!(text.contains("paused: owner"), "{text}");
    assert!(text.contains("pool: 2 hosts (1 accepting)"), "{text}");
}

#[test]
fn pool_finds_the_hosts_the_market_knows_with_their_asks_and_reputation() {
    let s = Scratch::new();
    let a = Host::start(&s, "a", 1, OPEN);
    // b knows only a, and `naac pool` is told only of a.
    let b = Host::start_with(&s, "b", 1, OPEN, &["--join", &a.addr, "--price", "0.25"]);
    let mut v = Value::Null;
    wait_until("b through a", Duration::from_secs(30), || {
        v = pool(&s, &[&a]);
        v["hosts"].as_array().is_some_and(|h| h.len() == 2)
    });
    // Asks come from the market offers (the default price, and b's own).
    wait_until("both asks", Duration::from_secs(30), || {
        v = pool(&s, &[&a]);
        v["hosts"]
            .as_array()
            .is_some_and(|h| h.len() == 2 && h.iter().all(|h| h["ask"].is_string()))
    });
    let hb = host_in(&v, &b.peer_id());
    assert_eq!(host_in(&v, &a.peer_id())["ask"], "0.1", "{v:#}");
    assert_eq!(hb["ask"], "0.25", "{hb:#}");
    assert!(hb["reputation"].is_null(), "nothing on record yet: {hb:#}");
    // A job whose copies are compared gives both a record here.
    let job = s.job(
        "twice",
        "testkit/testkit.wasm",
        "args = [\"pi\", \"{i}\", \"20000\"]\n[sweep]\ni = { from = 0, to = 4 }\n[verify]\nreplicas = 2\n",
    );
    let (out, _) = s.run(&job, &["--no-pay", "--no-mdns", "--join", &a.addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = pool(&s, &[&a]);
    for peer in [a.peer_id(), b.peer_id()] {
        let r = &host_in(&v, &peer)["reputation"];
        assert_eq!(r["verified"], 4, "{peer}: {v:#}");
        assert_eq!(r["rejected"], 0, "{peer}: {v:#}");
    }
    // The text output: b's ask shows once its offer arrives (a provider sends one about a
    // second after a peer connects).
    let mut text = String::new();
    wait_until(
        "b's ask in the text output",
        Duration::from_secs(30),
        || {
            let mut c = s.cmd();
            c.args(["pool"]).args(joins(&[&a]));
            text = String::from_utf8_lossy(&c.output().expect("pool").stdout).to_string();
            text.contains("asks 0.25 credits per giga-fuel")
        },
    );
    assert!(
        text.contains("reputation    0.83 (4 verified, 0 rejected, 0 lost)"),
        "{text}"
    );
}

#[test]
fn a_host_whose_disk_is_nearly_full_takes_no_work() {
    let s = Scratch::new();
    // No disk here has a petabyte free: the floor is always under water.
    let full = Host::start(
        &s,
        "full",
        1,
        &format!("{OPEN}min_free_disk = \"1000TiB\"\n"),
    );
    let ok = Host::start(&s, "ok", 1, OPEN);
    wait_until("the full host to pause", Duration::from_secs(20), || {
        let v = pool(&s, &[&full]);
        v["hosts"].as_array().is_some_and(|h| {
            h.iter().any(|h| {
                h["state"]["paused"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("disk nearly full ("))
            })
        })
    });
    let job = s.job(
        "roomy",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[sweep]\ni = { from = 0, to = 20 }\n",
    );
    let (out, v) = s.run(
        &job,
        &[
            "--no-pay",
            "--no-mdns",
            "--join",
            &full.addr,
            "--join",
            &ok.addr,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let used: Vec<&str> = v["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .filter(|p| p["tasks"].as_u64() > Some(0))
        .filter_map(|p| p["peer_id"].as_str())
        .collect();
    assert_eq!(used, [ok.peer_id().as_str()], "{v:#}");
    // `naac policy check` on that host says so too.
    let out = full.naac(&["policy", "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("disk nearly full"), "{text}");
}

#[test]
fn policy_commands_validate_and_keep_comments() {
    let s = Scratch::new();
    let home = s.home();
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("policy.toml"), "# my rules\nidle_only = false\n").expect("write");
    let out = s
        .cmd()
        .args(["policy", "set", "max_cpu_percent", "50"])
        .output()
        .expect("set");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(home.join("policy.toml")).expect("read");
    assert!(
        text.contains("# my rules") && text.contains("max_cpu_percent = 50"),
        "{text}"
    );
    let out = s
        .cmd()
        .args(["policy", "set", "max_cpu_percnt", "50"])
        .output()
        .expect("set");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("max_cpu_percent"),
        "did you mean: {}",
        stderr(&out)
    );
    let out = s
        .cmd()
        .args(["policy", "set", "max_cpu_percent", "500"])
        .output()
        .expect("set");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = s
        .cmd()
        .args(["policy", "show", "--json"])
        .output()
        .expect("show");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["max_cpu_percent"], 50);
    assert_eq!(v["idle_only"], false);
    let bad = s.path().join("bad.toml");
    std::fs::write(&bad, "idle_only = false\nwindows = [{ days = \"mon\", from = \"25:00\", to = \"26:00\", action = \"deny\" }]\n").expect("write");
    let out = s
        .cmd()
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("line 2") && err.contains("windows[0].from"),
        "{err}"
    );
    let out = s.cmd().args(["policy", "check"]).output().expect("check");
    assert!(out.status.success(), "{}", stderr(&out));
    // An invalid policy keeps a node from starting, with the reason.
    std::fs::copy(&bad, home.join("policy.toml")).expect("copy");
    let out = s
        .cmd()
        .args([
            "node",
            "--provide",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .stdout(Stdio::null())
        .output()
        .expect("node");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("windows[0].from"), "{}", stderr(&out));
}
