//! End-to-end tests of the economy over real `naac` processes on 127.0.0.1: a bank node,
//! providers with different asks, jobs that pay verified results at the auction's price and
//! refund the rest, a job refused for its balance before anything runs, a bank killed with
//! SIGKILL in the middle of a stream of settlements, and a tampered ledger row caught by
//! `naac wallet verify`.

mod common;

use common::{Scratch, free_port, naac, spawn_node, stderr};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A node with its own data dir and the address it listens on.
struct Node {
    child: Child,
    addr: String,
}

impl Node {
    fn start(home: &Path, args: &[&str]) -> Node {
        std::fs::create_dir_all(home).expect("home");
        if !home.join("policy.toml").exists() {
            std::fs::write(home.join("policy.toml"), "idle_only = false\n").expect("policy");
        }
        let mut c = naac();
        c.env("NAAC_HOME", home).arg("node").args(args);
        let (child, addr) = spawn_node(c);
        Node { child, addr }
    }

    /// A bank node whose faucet grants `grant` credits to each new account.
    fn bank(s: &Scratch, name: &str, port: u16, grant: &str) -> Node {
        Node::start(
            &s.path().join(name),
            &[
                "--bank",
                "--no-mdns",
                "--faucet",
                grant,
                "--faucet-rate",
                "10000/h",
                "--listen",
                &format!("/ip4/127.0.0.1/tcp/{port}"),
            ],
        )
    }

    fn provider(s: &Scratch, name: &str, price: &str) -> Node {
        Node::start(
            &s.path().join(name),
            &[
                "--provide",
                "--no-mdns",
                "--slots",
                "1",
                "--price",
                price,
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ],
        )
    }

    /// A provider paid at `bank`: it checks each job's escrow there before it runs work.
    fn provider_paid_at(s: &Scratch, name: &str, price: &str, bank: &Node) -> Node {
        Node::start(
            &s.path().join(name),
            &[
                "--provide",
                "--no-mdns",
                "--slots",
                "1",
                "--price",
                price,
                "--paid-at",
                &bank.addr,
                "--min-claim-window",
                "1s",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ],
        )
    }

    fn peer_id(&self) -> String {
        self.addr.rsplit('/').next().expect("peer id").to_string()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `naac wallet ARGS --json` with the scratch's data dir.
fn wallet(s: &Scratch, args: &[&str]) -> (std::process::Output, Value) {
    let out = s
        .cmd()
        .arg("wallet")
        .args(args)
        .arg("--json")
        .output()
        .expect("naac wallet");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

/// Credits as µcredits from their exact decimal text ("1,200.5").
/// Waits until the escrow's rest is back with its payer: the claim window the summary
/// names is over (at once when it names none).
fn wait_returned(summary: &Value) {
    let Some(at) = summary["cost"]["returns_at_ms"].as_u64() else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    std::thread::sleep(Duration::from_millis(at.saturating_sub(now) + 300));
}

fn micros(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not an amount: {v}"));
    let s = s.replace(',', "");
    let (w, f) = s.split_once('.').unwrap_or((&s, ""));
    let mut frac = f.to_string();
    while frac.len() < 6 {
        frac.push('0');
    }
    w.parse::<u64>().expect("whole") * 1_000_000 + frac.parse::<u64>().expect("fraction")
}

/// µcredits for `fuel` at `price_micros` per giga-fuel, rounded up (as the bank computes).
fn cost(price_micros: u64, fuel: u64) -> u64 {
    (price_micros as u128 * fuel as u128).div_ceil(1_000_000_000) as u64
}

fn tasks_of(out_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(out_dir.join("tasks.jsonl"))
        .expect("tasks.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("task line"))
        .collect()
}

#[test]
fn a_job_across_three_providers_pays_each_exactly_and_refunds_the_rest() {
    let s = Scratch::new();
    let bank = Node::bank(&s, "bank", free_port(), "1000");
    // Each checks the job's escrow at the bank before it runs work.
    let cheap = Node::provider_paid_at(&s, "cheap", "0.1", &bank);
    let mid = Node::provider_paid_at(&s, "mid", "0.2", &bank);
    let dear = Node::provider_paid_at(&s, "dear", "0.3", &bank);
    // The operator vouches for the three, so their asks may set each other's prices.
    for node in [&cheap, &mid, &dear] {
        let out = naac()
            .env("NAAC_HOME", s.path().join("bank"))
            .args(["bank", "register", &node.peer_id(), "--bank", &bank.addr])
            .output()
            .expect("naac bank register");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("registered provider"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // All three up and accepting before the job starts (on a loaded machine a provider's
    // first device probe can take seconds, and 24 short tasks would not wait for it).
    wait_accepting(&s, &[&cheap, &mid, &dear]);
    // No speculative copies: a provider still compiling the module on a loaded machine
    // would lose its first runs to copies elsewhere, and the cheapest one none at all (CI
    // saw the cheap provider's two runs both taken over).
    let job = s.job(
        "paid",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"200000\"]\nstraggler_factor = 0\n[sweep]\nseed = { from = 0, to = 24 }\n[limits]\nfuel = 2_000_000_000\n[budget]\nmax_price = 0.5\n",
    );
    let out_dir = s.path().join("out-paid");
    let (out, summary) = s.run_to(
        &job,
        &out_dir,
        &[
            "--no-mdns",
            "--bank",
            &bank.addr,
            "--claim-window",
            "2s",
            "--join",
            &cheap.addr,
            "--join",
            &mid.addr,
            "--join",
            &dear.addr,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cost_v = &summary["cost"];
    assert!(cost_v.is_object(), "{summary:#}");
    // Escrow = max_price × fuel limit × tasks.
    assert_eq!(micros(&cost_v["escrow"]), 24 * cost(500_000, 2_000_000_000));
    // The second-price rule: each provider is paid the next ask above its own, the dearest
    // the job's max_price.
    let price_of = |peer: &str| -> u64 {
        if peer == cheap.peer_id() {
            200_000
        } else if peer == mid.peer_id() {
            300_000
        } else if peer == dear.peer_id() {
            500_000
        } else {
            panic!("unknown provider {peer}")
        }
    };
    let mut expected: std::collections::HashMap<String, u64> = Default::default();
    for t in tasks_of(&out_dir) {
        let p = t["provider"].as_str().expect("provider").to_string();
        let fuel = t["fuel"].as_u64().expect("fuel");
        // Every task line names the price it was paid at.
        assert_eq!(micros(&t["price"]), price_of(&p), "{t}");
        *expected.entry(p.clone()).or_default() += cost(price_of(&p), fuel);
    }
    let total: u64 = expected.values().sum();
    assert_eq!(micros(&cost_v["paid"]), total, "{summary:#}");
    assert_eq!(cost_v["settlements"], 24);
    assert_eq!(
        micros(&cost_v["paid"]) + micros(&cost_v["refunded"]),
        micros(&cost_v["escrow"])
    );
    for p in summary["providers"].as_array().expect("providers") {
        let peer = p["peer_id"].as_str().expect("peer");
        assert_eq!(
            micros(&p["earned"]),
            expected.get(peer).copied().unwrap_or(0),
            "{p:#}"
        );
    }
    // The bank agrees, provider by provider and for the payer.
    for node in [&cheap, &mid, &dear] {
        let (o, v) = wallet(
            &s,
            &[
                "balance",
                "--bank",
                &bank.addr,
                "--account",
                &node.peer_id(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        // Providers never signed anything: no grant, only what they earned.
        assert_eq!(
            v["micro_credits"].as_u64().expect("balance"),
            expected.get(&node.peer_id()).copied().unwrap_or(0)
        );
    }
    // The rest of the escrow returns once the providers' claim window is over.
    wait_returned(&summary);
    let (o, v) = wallet(&s, &["balance", "--bank", &bank.addr]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        v["micro_credits"].as_u64().expect("balance"),
        1_000_000_000 - total
    );
    let (o, v) = wallet(&s, &["verify", "--bank", &bank.addr]);
    assert!(o.status.success(), "{}{v:#}", stderr(&o));
    assert_eq!(v["ok"], true);
    // The cheapest provider was preferred.
    let cheap_tasks = summary["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|p| p["peer_id"] == cheap.peer_id())
        .map(|p| p["tasks"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    assert!(cheap_tasks > 0, "{summary:#}");
}

/// Waits until every one of `nodes` says it accepts work (a minute at most).
fn wait_accepting(s: &Scratch, nodes: &[&Node]) {
    let t = std::time::Instant::now();
    loop {
        let mut c = s.cmd();
        c.args(["pool", "--json", "--no-mdns", "--wait", "1s"]);
        for n in nodes {
            c.args(["--join", &n.addr]);
        }
        let out = c.output().expect("naac pool");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if v["totals"]["accepting"] == nodes.len() {
            return;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "the providers did not all come up: {v:#}"
        );
    }
}

/// A provider that returns the right output but claims the task's whole fuel limit is caught
/// by the copies that agree with it (fuel is deterministic for a fresh run) and is never paid
/// above the honest fuel.
#[test]
fn an_overbilling_provider_is_caught_and_paid_only_the_honest_fuel() {
    let s = Scratch::new();
    let bank = Node::bank(&s, "bank", free_port(), "1000");
    let provider = |name: &str, price: &str, extra: &[&str]| {
        let mut args = vec![
            "--provide",
            "--no-mdns",
            "--slots",
            "1",
            "--price",
            price,
            "--owner",
            name,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ];
        args.extend_from_slice(extra);
        Node::start(&s.path().join(name), &args)
    };
    // Three honest providers, so replicas = 3 still find room once the cheat is dropped.
    let honest = [
        provider("a", "0.1", &[]),
        provider("b", "0.1", &[]),
        provider("d", "0.1", &[]),
    ];
    // The cheapest ask, so the auction always gives it work (it is paid the next ask up).
    let cheat = provider("c", "0.05", &["--faulty", "fuel:1.0"]);
    // All four accepting first: on a loaded machine the cheat could come up after the
    // honest three took every copy of the 6 tasks.
    wait_accepting(&s, &[&honest[0], &honest[1], &honest[2], &cheat]);
    let job = s.job(
        "billed",
        "pi/pi.wasm",
        // No speculation: a cheat slowed by a loaded machine's compile would otherwise see its
        // copies run elsewhere first and never report at all.
        "args = [\"{seed}\", \"100000\"]\nstraggler_factor = 0\n[sweep]\nseed = { from = 0, to = 6 }\n[limits]\nfuel = 2_000_000_000\n[budget]\nmax_price = 0.5\n[verify]\nreplicas = 3\nquorum = 3\n",
    );
    let out_dir = s.path().join("out-billed");
    let mut args = vec!["--no-mdns", "--bank", bank.addr.as_str()];
    for n in honest.iter().chain([&cheat]) {
        args.extend(["--join", n.addr.as_str()]);
    }
    let (out, summary) = s.run_to(&job, &out_dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let providers = summary["providers"].as_array().expect("providers");
    let of = |n: &Node| {
        providers
            .iter()
            .find(|p| p["peer_id"] == n.peer_id())
            .cloned()
            .unwrap_or_default()
    };
    let c = of(&cheat);
    // Its copies agreed on the output, but its fuel claims were lies: caught, then dropped.
    assert!(c["rejected"].as_u64().unwrap_or(0) >= 1, "{summary:#}");
    assert_eq!(c["verified"].as_u64().unwrap_or(0), 0, "{c:#}");
    // What a provider earned per copy it delivered.
    let per_copy = |p: &Value| {
        let copies = p["arrived"]["direct"].as_u64().unwrap_or(0)
            + p["arrived"]["relayed"].as_u64().unwrap_or(0);
        micros(&p["earned"]) as f64 / copies.max(1) as f64
    };
    let most = honest
        .iter()
        .map(|n| {
            // One that got no work (three honest hosts share 21 copies) is not listed.
            let p = of(n);
            assert_eq!(p["rejected"].as_u64().unwrap_or(0), 0, "{p:#}");
            if p.is_null() { 0.0 } else { per_copy(&p) }
        })
        .fold(0.0, f64::max);
    assert!(most > 0.0);
    // Paid no more per copy than an honest provider: the honest fuel at the same price. (Its
    // low ask may win it more copies than any honest host, so its total can be higher.)
    if !c.is_null() && c["earned"].is_string() {
        assert!(per_copy(&c) <= most * 1.001, "{summary:#}");
    }
    // No lie reached the results: every written copy's fuel is an honest one.
    for t in tasks_of(&out_dir) {
        assert!(t["fuel"].as_u64().expect("fuel") < 2_000_000_000, "{t}");
    }
}

#[test]
fn a_job_the_user_cannot_pay_for_is_refused_before_anything_runs() {
    let s = Scratch::new();
    // A bank without a faucet mints nothing on its own: a new user has nothing until the
    // operator grants it credits.
    let bank = Node::start(
        &s.path().join("bank"),
        &[
            "--bank",
            "--no-mdns",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{}", free_port()),
        ],
    );
    let (_, v) = wallet(&s, &["balance", "--bank", &bank.addr]);
    assert_eq!(v["micro_credits"], 0);
    let user = s
        .cmd()
        .args(["key", "show", "--user"])
        .output()
        .expect("key show");
    let user = String::from_utf8(user.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let grant = |amount: &str| {
        naac()
            .env("NAAC_HOME", s.path().join("bank"))
            .args(["bank", "grant", &user, amount, "--bank", &bank.addr])
            .output()
            .expect("naac bank grant")
    };
    let out = grant("0.5");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("granted 0.5 credits"));
    // Once per account: the same grant changes nothing, another is refused.
    assert!(grant("0.5").status.success());
    let again = grant("5");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("once per account"),
        "{}",
        stderr(&again)
    );
    // Only the bank's key grants: another data dir's "bank key" is not it.
    let forged = s
        .cmd()
        .args(["bank", "grant", &user, "1000", "--bank", &bank.addr])
        .output()
        .expect("naac bank grant");
    assert_eq!(forged.status.code(), Some(1), "{}", stderr(&forged));
    let p = Node::provider(&s, "p", "0.1");
    let job = s.job(
        "dear",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"1000\"]\n[sweep]\nseed = { from = 0, to = 4 }\n[limits]\nfuel = 1_000_000_000\n",
    );
    let out_dir = s.path().join("out-dear");
    let (out, _) = s.run_to(
        &job,
        &out_dir,
        &["--no-mdns", "--bank", &bank.addr, "--join", &p.addr],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("a task of this job may cost up to 1 credits; balance 0.5"),
        "{err}"
    );
    assert!(!out_dir.join("tasks.jsonl").exists(), "nothing ran");
    // Nothing was taken.
    let (_, v) = wallet(&s, &["balance", "--bank", &bank.addr]);
    assert_eq!(v["micro_credits"], 500_000);
}

#[test]
fn the_embedded_pool_pays_through_its_own_bank_and_a_tampered_row_is_caught() {
    let s = Scratch::new();
    let job = s.job(
        "local",
        "pi/pi.wasm",
        // No speculation: a cheat slowed by a loaded machine's compile would otherwise see its
        // copies run elsewhere first and never report at all.
        "args = [\"{seed}\", \"100000\"]\nstraggler_factor = 0\n[sweep]\nseed = { from = 0, to = 6 }\n[limits]\nfuel = 1_000_000_000\n",
    );
    let (out, summary) = s.run(&job, &["--workers", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = &summary["cost"];
    assert!(micros(&c["paid"]) > 0, "{summary:#}");
    // The pool's own bank vouches for its workers: once it has (a bank round trip after
    // each bids), each is paid the other's ask (0.1), not the job's max_price (1).
    let out_dir = summary["out_dir"].as_str().expect("out_dir");
    let prices: Vec<u64> = tasks_of(Path::new(out_dir))
        .iter()
        .map(|t| micros(&t["price"]))
        .collect();
    assert!(prices.contains(&100_000), "{prices:?}");
    assert!(
        prices.iter().all(|p| *p == 100_000 || *p == 1_000_000),
        "{prices:?}"
    );
    assert_eq!(
        micros(&c["paid"]) + micros(&c["refunded"]),
        micros(&c["escrow"])
    );
    let (o, v) = wallet(&s, &["verify"]);
    assert!(o.status.success(), "{}{v:#}", stderr(&o));
    let (_, b) = wallet(&s, &["balance"]);
    assert_eq!(
        b["micro_credits"].as_u64().expect("balance"),
        1_000_000 * 1_000_000 - micros(&c["paid"])
    );
    let (_, h) = wallet(&s, &["history", "--limit", "100"]);
    let kinds: Vec<&str> = h
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert!(
        kinds.contains(&"grant") && kinds.contains(&"escrow") && kinds.contains(&"refund"),
        "{kinds:?}"
    );

    // One changed amount in the database: the chain no longer holds.
    let db = s.home().join("bank").join("ledger.db");
    let conn = rusqlite::Connection::open(&db).expect("open ledger");
    conn.execute("UPDATE entries SET amount = amount + 1 WHERE seq = 3", [])
        .expect("tamper");
    drop(conn);
    let (o, v) = wallet(&s, &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}{v:#}", stderr(&o));
    assert_eq!(v["ok"], false);
    let why = v["error"].as_str().expect("error");
    assert!(why.contains("entry"), "{why}");
}

#[test]
fn a_bank_killed_mid_stream_restarts_and_its_ledger_verifies() {
    let s = Scratch::new();
    let port = free_port();
    let mut bank = Node::bank(&s, "bank", port, "1000");
    let a = Node::provider(&s, "a", "0.1");
    let b = Node::provider(&s, "b", "0.2");
    // Many short tasks: a steady stream of settlements.
    let job = s.job(
        "stream",
        "testkit/testkit.wasm",
        "args = [\"sleep\", \"30\"]\n[sweep]\ni = { from = 0, to = 150 }\n[limits]\nfuel = 1_000_000_000\n",
    );
    let out_dir = s.path().join("out-stream");
    let run = s
        .run_cmd(&job, &out_dir)
        .args([
            "--no-mdns",
            "--bank",
            &bank.addr,
            "--join",
            &a.addr,
            "--join",
            &b.addr,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    // Kill the bank once some results are in, then bring it back on the same port and ledger.
    let t = Instant::now();
    while !out_dir.join("tasks.jsonl").exists()
        || std::fs::read_to_string(out_dir.join("tasks.jsonl"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
            < 20
    {
        assert!(t.elapsed() < Duration::from_secs(60), "no results");
        std::thread::sleep(Duration::from_millis(50));
    }
    bank.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let bank = Node::bank(&s, "bank", port, "1000");
    let out = run.wait_with_output().expect("run output");
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    let c = &summary["cost"];
    assert_eq!(c["settlements"], 150, "{summary:#}");
    assert_eq!(c["refused"], 0, "{summary:#}");
    let (o, v) = wallet(&s, &["verify", "--bank", &bank.addr]);
    assert!(o.status.success(), "{}{v:#}", stderr(&o));
    // The sums match: what the payer lost is what the providers gained.
    let (_, payer) = wallet(&s, &["balance", "--bank", &bank.addr]);
    let paid = micros(&c["paid"]);
    assert_eq!(
        payer["micro_credits"].as_u64().expect("balance"),
        1_000_000_000 - paid
    );
    let mut earned = 0;
    for n in [&a, &b] {
        let (_, v) = wallet(
            &s,
            &["balance", "--bank", &bank.addr, "--account", &n.peer_id()],
        );
        earned += v["micro_credits"].as_u64().expect("balance");
    }
    assert_eq!(earned, paid);
}

#[test]
fn a_requester_killed_mid_job_gets_its_escrow_back_when_run_again() {
    let s = Scratch::new();
    let bank = Node::bank(&s, "bank", free_port(), "1000");
    let p = Node::provider(&s, "p", "0.1");
    let job = s.job(
        "again",
        "testkit/testkit.wasm",
        "args = [\"sleep\", \"200\"]\n[sweep]\ni = { from = 0, to = 40 }\n[limits]\nfuel = 1_000_000_000\n",
    );
    let out_dir = s.path().join("out-again");
    let mut first = s
        .run_cmd(&job, &out_dir)
        .args(["--no-mdns", "--bank", &bank.addr, "--join", &p.addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let t = Instant::now();
    while !out_dir.join("escrow.json").exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "no escrow");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = first.kill();
    let _ = first.wait();
    let note: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("escrow.json")).expect("note"))
            .expect("json");
    assert_eq!(note["open"], true);
    // The escrow is still held by the bank.
    let (_, before) = wallet(&s, &["balance", "--bank", &bank.addr]);
    assert_eq!(before["micro_credits"], 1_000_000_000 - 40_000_000);
    // Run again into the same directory: the old escrow comes back first.
    let (out, summary) = s.run_to(
        &job,
        &out_dir,
        &["--no-mdns", "--bank", &bank.addr, "--join", &p.addr],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("left in the escrow of an interrupted run"),
        "{}",
        stderr(&out)
    );
    let paid = micros(&summary["cost"]["paid"]);
    let (_, after) = wallet(&s, &["balance", "--bank", &bank.addr]);
    let (_, earned) = wallet(
        &s,
        &["balance", "--bank", &bank.addr, "--account", &p.peer_id()],
    );
    // Whatever the first run paid before it died went to the provider; nothing is lost.
    let provider_gain = earned["micro_credits"].as_u64().expect("balance");
    assert!(provider_gain >= paid);
    assert_eq!(
        after["micro_credits"].as_u64().expect("balance") + provider_gain,
        1_000_000_000
    );
    let (o, v) = wallet(&s, &["verify", "--bank", &bank.addr]);
    assert!(o.status.success(), "{v:#}");
}

#[test]
fn an_owner_who_set_a_price_does_not_work_for_free() {
    let s = Scratch::new();
    let home = s.path().join("priced");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join("policy.toml"),
        "idle_only = false\nmin_price = 1\n",
    )
    .expect("policy");
    let p = Node::provider(&s, "priced", "0.1");
    let job = s.job(
        "free",
        "testkit/testkit.wasm",
        "args = [\"noop\"]\n[limits]\nfuel = 1_000_000_000\n",
    );
    // No bank: an unpaid run. The host declines, and the error says why.
    let (out, _) = s.run(
        &job,
        &["--no-mdns", "--join", &p.addr, "--provider-wait", "3s"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("works only for pay"), "{err}");
    // Paying through a bank, at a max_price it accepts, the same host runs it.
    let bank = Node::bank(&s, "bank", free_port(), "1000");
    let (out, summary) = s.run(
        &job,
        &["--no-mdns", "--join", &p.addr, "--bank", &bank.addr],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Its ask is its owner's min_price (1 credit), a lone bidder is paid the job's
    // max_price (1 by default).
    assert_eq!(summary["providers"][0]["ask"], "1");
}

/// A new user's play credits on the embedded pool cover one 10,000-task job's worst case
/// and no more; the escrow holds only the work in flight and is topped up as results are
/// paid, so job after job runs.
#[test]
fn a_new_user_runs_three_10k_task_jobs_back_to_back_on_the_embedded_pool() {
    let s = Scratch::new();
    let job = s.job(
        "many",
        "testkit/testkit.wasm",
        "args = [\"noop\"]\n[sweep]\ni = { from = 0, to = 10000 }\n",
    );
    let mut spent = 0;
    for run in 0..3 {
        let (out, summary) = s.run_to(
            &job,
            &s.path().join(format!("out-{run}")),
            &["--workers", "2"],
        );
        assert!(out.status.success(), "run {run}: {}", stderr(&out));
        assert_eq!(summary["tasks"]["succeeded"], 10_000, "{summary:#}");
        let c = &summary["cost"];
        assert_eq!(c["settlements"], 10_000, "{c:#}");
        assert_eq!(
            micros(&c["paid"]) + micros(&c["refunded"]),
            micros(&c["escrow"]),
            "{c:#}"
        );
        spent += micros(&c["paid"]);
    }
    let (_, b) = wallet(&s, &["balance"]);
    assert_eq!(
        b["micro_credits"].as_u64().expect("balance"),
        1_000_000 * 1_000_000 - spent
    );
    let (o, v) = wallet(&s, &["verify"]);
    assert!(o.status.success(), "{}{v:#}", stderr(&o));
}

/// A user whose balance covers one task's worst case: the escrow holds that one copy, the
/// job pauses once it is paid and says why, and goes on when a friend sends credits
/// (`naac wallet send`). No provider ever holds work the escrow does not cover.
#[test]
fn a_job_pauses_when_the_balance_runs_short_and_goes_on_when_topped_up() {
    let s = Scratch::new();
    let bank = Node::start(
        &s.path().join("bank"),
        &[
            "--bank",
            "--no-mdns",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{}", free_port()),
        ],
    );
    let grant = |to: &str, amount: &str| {
        let out = naac()
            .env("NAAC_HOME", s.path().join("bank"))
            .args(["bank", "grant", to, amount, "--bank", &bank.addr])
            .output()
            .expect("naac bank grant");
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let user = common::user_id(&s.home());
    let friend_home = s.path().join("friend");
    let friend = common::user_id(&friend_home);
    // A task may cost up to 1 credit (max_price 1 × 1 giga-fuel); the user has 1.5.
    grant(&user, "1.5");
    grant(&friend, "100");
    let p = Node::provider_paid_at(&s, "p", "0.1", &bank);
    let job = s.job(
        "short",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"1000\"]\n[sweep]\nseed = { from = 0, to = 4 }\n[limits]\nfuel = 1_000_000_000\n",
    );
    let out_dir = s.path().join("out-short");
    let mut run = s
        .run_cmd(&job, &out_dir)
        .args(["--no-mdns", "--bank", &bank.addr, "--join", &p.addr])
        .args(["--claim-window", "2s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err = run.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let t = Instant::now();
    let mut seen = Vec::new();
    let paused = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("paused: balance") => break line,
            Ok(line) => seen.push(line),
            Err(_) => assert!(
                t.elapsed() < Duration::from_secs(60),
                "never paused: {}",
                seen.join("\n")
            ),
        }
    };
    assert!(
        paused.contains("next batch needs 1; top up or lower max_price"),
        "{paused}"
    );
    // A friend tops the user up; the job goes on by itself.
    let out = naac()
        .env("NAAC_HOME", &friend_home)
        .args(["wallet", "send", &user, "5", "--bank", &bank.addr])
        .output()
        .expect("naac wallet send");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sent 5 credits"));
    let status = run.wait().expect("run");
    let _ = reader.join();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut run.stdout.take().expect("stdout"), &mut stdout)
        .expect("stdout");
    assert!(status.success(), "{}", seen.join("\n"));
    let summary: Value = serde_json::from_str(&stdout).expect("summary");
    assert_eq!(summary["tasks"]["succeeded"], 4, "{summary:#}");
    let c = &summary["cost"];
    assert_eq!(c["settlements"], 4, "{c:#}");
    assert_eq!(
        micros(&c["paid"]) + micros(&c["refunded"]),
        micros(&c["escrow"]),
        "{c:#}"
    );
    let (o, v) = wallet(&s, &["verify", "--bank", &bank.addr]);
    assert!(o.status.success(), "{v:#}");
}

#[test]
fn a_ledger_rolled_back_to_an_earlier_checkpoint_is_caught() {
    let s = Scratch::new();
    let job = s.job(
        "twice",
        "testkit/testkit.wasm",
        "args = [\"noop\"]\n[sweep]\ni = { from = 0, to = 4 }\n[limits]\nfuel = 1_000_000_000\n",
    );
    for _ in 0..2 {
        let (out, _) = s.run(&job, &["--workers", "1"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (o, v) = wallet(&s, &["verify"]);
    assert!(o.status.success(), "{}{v:#}", stderr(&o));
    // Roll the books back to the checkpoint before the last one: a consistent, signed, but
    // shorter ledger, as a bank hiding its latest entries would serve.
    let db = s.home().join("bank").join("ledger.db");
    let conn = rusqlite::Connection::open(&db).expect("open ledger");
    let size: i64 = conn
        .query_row(
            "SELECT max(size) FROM checkpoints WHERE size < (SELECT max(size) FROM checkpoints)",
            [],
            |r| r.get(0),
        )
        .expect("an earlier checkpoint");
    conn.execute("DELETE FROM checkpoints WHERE size > ?1", [size])
        .expect("drop checkpoints");
    conn.execute("DELETE FROM entries WHERE seq >= ?1", [size])
        .expect("drop entries");
    drop(conn);
    let (o, v) = wallet(&s, &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}{v:#}", stderr(&o));
    let why = v["error"].as_str().expect("error");
    assert!(why.contains("shrank"), "{why}");
}

#[test]
fn the_market_shows_offers_from_providers_it_was_not_told_about() {
    let s = Scratch::new();
    let a = Node::provider(&s, "a", "0.1");
    // b knows only a; the market viewer knows only a too.
    let b = Node::start(
        &s.path().join("b"),
        &[
            "--provide",
            "--no-mdns",
            "--slots",
            "2",
            "--price",
            "0.3",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--join",
            &a.addr,
        ],
    );
    let out = s
        .cmd()
        .args([
            "market",
            "--json",
            "--no-mdns",
            "--wait",
            "5s",
            "--join",
            &a.addr,
        ])
        .output()
        .expect("naac market");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let offers = v.as_array().expect("offers");
    let find = |peer: &str| offers.iter().find(|o| o["peer_id"] == peer);
    let oa = find(&a.peer_id()).unwrap_or_else(|| panic!("a missing: {v:#}"));
    let ob = find(&b.peer_id()).unwrap_or_else(|| panic!("b missing: {v:#}"));
    assert_eq!(oa["price"], "0.1");
    assert_eq!(ob["price"], "0.3");
    assert_eq!(ob["slots"], 2);
    assert_eq!(ob["accepting"], true);

    // A job joined to a alone finds b through the market too, and uses it.
    let bank = Node::bank(&s, "bank", free_port(), "1000");
    let job = s.job(
        "found",
        "testkit/testkit.wasm",
        // Real CPU work, about 11 s on a's one slot alone (a guest's clock is virtual, so a
        // `sleep` would take no time): time for b to be heard even on a loaded machine.
        "args = [\"sha256\", \"{i}\", \"500000\"]\n[sweep]\ni = { from = 0, to = 40 }\n[limits]\nfuel = 5_000_000_000\n",
    );
    let (out, summary) = s.run(
        &job,
        &["--no-mdns", "--join", &a.addr, "--bank", &bank.addr],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let used: Vec<&str> = summary["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .filter_map(|p| p["peer_id"].as_str())
        .collect();
    assert!(used.contains(&b.peer_id().as_str()), "{summary:#}");
}

/// A requester that takes its results and pays nothing, then closes its escrow (the hidden
/// `--testing-unpaid`): its provider, paid at the bank, claims every result from the escrow
/// within the claim window, at the price the payer's orders name. The payer gets back only
/// the rest, once the window is over.
#[test]
fn a_requester_that_refunds_after_receiving_results_still_pays_its_provider() {
    let s = Scratch::new();
    let bank = Node::bank(&s, "bank", free_port(), "1000");
    let p = Node::provider_paid_at(&s, "p", "0.1", &bank);
    let job = s.job(
        "stiff",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"200000\"]\n[sweep]\nseed = { from = 0, to = 6 }\n[limits]\nfuel = 2_000_000_000\n[budget]\nmax_price = 0.5\n",
    );
    let out_dir = s.path().join("out-stiff");
    let (out, summary) = s.run_to(
        &job,
        &out_dir,
        &[
            "--no-mdns",
            "--bank",
            &bank.addr,
            "--join",
            &p.addr,
            "--claim-window",
            "8s",
            "--testing-unpaid",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary["tasks"]["succeeded"], 6, "{summary:#}");
    assert_eq!(summary["cost"]["settlements"], 0, "{summary:#}");
    assert!(summary["cost"]["returns_at_ms"].is_u64(), "{summary:#}");
    // The lone bidder's orders name the job's max_price.
    let owed: u64 = tasks_of(&out_dir)
        .iter()
        .map(|t| cost(500_000, t["fuel"].as_u64().expect("fuel")))
        .sum();
    assert!(owed > 0);
    // Its claims are its first signed requests: the faucet's grant comes with them.
    let grant = 1_000 * 1_000_000;
    let t = Instant::now();
    loop {
        let (_, v) = wallet(
            &s,
            &["balance", "--bank", &bank.addr, "--account", &p.peer_id()],
        );
        let b = v["micro_credits"].as_u64().unwrap_or(0);
        if b == grant + owed {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the provider holds {b} µcredits; it is owed {owed} (and the grant)"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // After the window the rest returns: the payer paid exactly what its orders promised.
    wait_returned(&summary);
    let (_, v) = wallet(&s, &["balance", "--bank", &bank.addr]);
    assert_eq!(v["micro_credits"].as_u64().expect("balance"), grant - owed);
    let (_, h) = wallet(
        &s,
        &[
            "history",
            "--bank",
            &bank.addr,
            "--account",
            &p.peer_id(),
            "--limit",
            "100",
        ],
    );
    let claims = h
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "claim")
        .count();
    assert_eq!(claims, 6, "{h:#}");
    let (o, v) = wallet(&s, &["verify", "--bank", &bank.addr]);
    assert!(o.status.success(), "{v:#}");
}

/// A user's spend token lets another user's runs pay from the first user's wallet, and its
/// cap holds when two jobs race for it: the bank orders their escrows, and the one that
/// would go over is refused before anything runs.
#[test]
fn a_spend_tokens_cap_holds_when_two_jobs_race() {
    let s = Scratch::new();
    let bank = Node::start(
        &s.path().join("bank"),
        &[
            "--bank",
            "--no-mdns",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{}", free_port()),
        ],
    );
    let alice_home = s.path().join("alice");
    let (alice, bob) = (common::user_id(&alice_home), common::user_id(&s.home()));
    let out = naac()
        .env("NAAC_HOME", s.path().join("bank"))
        .args(["bank", "grant", &alice, "100", "--bank", &bank.addr])
        .output()
        .expect("grant");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = naac()
        .env("NAAC_HOME", &alice_home)
        .args(["token", "mint", "spend", "--to", &bob, "--credits", "6"])
        .output()
        .expect("mint");
    assert!(out.status.success(), "{}", stderr(&out));
    let token = s.path().join("spend.token");
    std::fs::write(&token, &out.stdout).expect("token");
    let p = Node::provider_paid_at(&s, "p", "0.1", &bank);
    wait_accepting(&s, &[&p]);
    // Each job escrows 4 credits up front (4 tasks, 1 credit each at most): one fits in 6,
    // two do not.
    let spawn = |name: &str| {
        let job = s.job(
            name,
            "pi/pi.wasm",
            "args = [\"{seed}\", \"1000\"]\n[sweep]\nseed = { from = 0, to = 4 }\n[limits]\nfuel = 1_000_000_000\n",
        );
        s.run_cmd(&job, &s.path().join(format!("out-{name}")))
            .args(["--no-mdns", "--bank", &bank.addr, "--claim-window", "2s"])
            .args(["--join", &p.addr, "--spend-token"])
            .arg(&token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run")
    };
    let (a, b) = (spawn("race-a"), spawn("race-b"));
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    let ok: Vec<_> = [&a, &b]
        .into_iter()
        .filter(|o| o.status.success())
        .collect();
    assert_eq!(ok.len(), 1, "a: {}\nb: {}", stderr(&a), stderr(&b));
    let refused = if a.status.success() { &b } else { &a };
    assert!(
        stderr(refused).contains("spend token") && stderr(refused).contains("spent("),
        "{}",
        stderr(refused)
    );
    let summary: Value = serde_json::from_slice(&ok[0].stdout).expect("summary");
    assert_eq!(summary["tasks"]["succeeded"], 4, "{summary:#}");
    // Alice paid; bob's own wallet was never touched.
    let balance = |account: &str| {
        let (o, v) = wallet(&s, &["balance", "--bank", &bank.addr, "--account", account]);
        assert!(o.status.success(), "{}", stderr(&o));
        v["micro_credits"].as_u64().expect("balance")
    };
    assert_eq!(balance(&bob), 0);
    let paid = micros(&summary["cost"]["paid"]);
    assert!(paid > 0, "{summary:#}");
    assert!(balance(&alice) <= 100_000_000 - paid, "alice paid for it");
    assert!(balance(&alice) >= 94_000_000, "at most the cap left alice");
    // A stranger with no credits revokes spend tokens of her own: the bank keeps none.
    let eve_home = s.path().join("eve");
    let eve = common::user_id(&eve_home);
    let own = naac()
        .env("NAAC_HOME", &eve_home)
        .args(["token", "mint", "spend", "--to", &eve, "--credits", "1"])
        .output()
        .expect("mint");
    let own = String::from_utf8(own.stdout).expect("utf-8");
    let out = naac()
        .env("NAAC_HOME", &eve_home)
        .args(["token", "revoke", own.trim(), "--linger", "0s", "--no-mdns"])
        .args(["--join", &bank.addr])
        .output()
        .expect("revoke");
    assert!(out.status.success(), "{}", stderr(&out));
    // Alice revokes the grant; the bank hears it and refuses the token within seconds.
    let out = naac()
        .env("NAAC_HOME", &alice_home)
        .args(["token", "revoke"])
        .arg(&token)
        .args(["--block", "0", "--no-mdns", "--join", &bank.addr])
        .output()
        .expect("revoke");
    assert!(out.status.success(), "{}", stderr(&out));
    let t = Instant::now();
    loop {
        let late = spawn("late").wait_with_output().expect("late");
        if stderr(&late).contains("the token was revoked") {
            assert!(!late.status.success());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still taken: {}",
            stderr(&late)
        );
        std::fs::remove_dir_all(s.path().join("out-late")).ok();
    }
    let kept = std::fs::read_to_string(s.path().join("bank/revoked.jsonl")).expect("kept");
    assert_eq!(
        kept.lines().count(),
        1,
        "a stranger's revocation was kept: {kept}"
    );
}
