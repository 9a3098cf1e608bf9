//! Internet reach with real NAT: two home LANs behind nftables NAT and a public relay, in
//! network namespaces the test builds itself (`scripts/nat-lab.sh`, addresses in
//! 198.18.0.0/15 only), with real `naac` processes in them. A provider at home A joins the
//! relay; a requester at home B, told only the relay's address, finds the provider and runs
//! a job on it. Needs root, `ip` and `nft` (`.ci/run` installs them); anywhere else each test
//! says why and does nothing.

mod common;

use common::{Scratch, address_from, spawn_lines, stderr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nat-lab.sh")
}

/// Why the lab cannot be built here, if it cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root (network namespaces)".into());
    }
    for tool in [["ip", "-V"], ["nft", "--version"]] {
        if Command::new(tool[0]).arg(tool[1]).output().is_err() {
            return Some(format!(
                "needs `{}` (scripts/nat-lab.sh install puts it in)",
                tool[0]
            ));
        }
    }
    None
}

/// The namespaces of one test and the processes in them; all gone when dropped.
struct Lab {
    prefix: String,
    children: Vec<Child>,
}

impl Lab {
    /// Builds the lab, router B doing `b_nat` ("cone" or "symmetric"); `None` (having said
    /// why) where it cannot be built.
    fn up(tag: &str, b_nat: &str) -> Option<Lab> {
        if let Some(why) = unavailable() {
            eprintln!("skipped: the NAT lab {why}");
            return None;
        }
        let prefix = format!("n{}{tag}", std::process::id() % 1000);
        let lab = Lab {
            prefix,
            children: Vec::new(),
        };
        let out = Command::new(lab_script())
            .args(["up", &lab.prefix, b_nat])
            .output()
            .expect("run nat-lab.sh");
        assert!(out.status.success(), "nat-lab up: {}", stderr(&out));
        Some(lab)
    }

    /// `naac ARGS` in namespace `ns` with data dir `home`.
    fn naac(&self, ns: &str, home: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{ns}", self.prefix)])
            .arg(env!("CARGO_BIN_EXE_naac"))
            .env("NO_COLOR", "1")
            .env("NAAC_CLAIM_WINDOW", "0s")
            // The lab's "Internet" is a benchmark range: taken as public addresses here.
            .env("NAAC_GLOBAL_RANGES", "198.18.0.0/16")
            .env("NAAC_HOME", home)
            .env_remove("RUST_LOG");
        c
    }

    /// Starts the relay on the public host, with `extra` flags; its address.
    fn relay(&mut self, s: &Scratch, extra: &[&str]) -> String {
        let mut args = vec![
            "--relay",
            "--no-mdns",
            "--listen",
            "/ip4/198.18.0.10/tcp/4001",
        ];
        args.extend_from_slice(extra);
        self.node("pub", &s.path().join("relay"), &args, |_| true)
    }

    /// Starts `naac node ARGS` in `ns` and returns the first address it prints that `pick`
    /// accepts.
    fn node(
        &mut self,
        ns: &str,
        home: &Path,
        args: &[&str],
        pick: impl Fn(&str) -> bool,
    ) -> String {
        let mut c = self.naac(ns, home);
        c.arg("node").args(args);
        let (child, lines) = spawn_lines(c);
        self.children.push(child);
        address_from(&lines, pick)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(lab_script())
            .args(["down", &self.prefix])
            .output();
    }
}

/// A relay on the public host (with `relay_flags`), a provider at home A joined to it, and
/// a job (`job`: its sweep and arguments) run from home B joined to the relay alone.
/// Returns the run, the provider's peer id and the relay's address.
fn job_across_nats(
    lab: &mut Lab,
    s: &Scratch,
    relay_flags: &[&str],
    job: &str,
) -> (Output, serde_json::Value, String, String) {
    let relay = lab.relay(s, relay_flags);
    let circuit = lab.node(
        "hA",
        &s.path().join("provider"),
        &[
            "--provide",
            "--ephemeral",
            "--slots",
            "2",
            "--no-mdns",
            "--join",
            &relay,
            "--listen",
            "/ip4/0.0.0.0/tcp/4002",
        ],
        |a| a.contains("/p2p-circuit/"),
    );
    let peer = circuit.rsplit('/').next().expect("peer id").to_string();
    let job = s.job("nat", "testkit/testkit.wasm", job);
    let out = lab
        .naac("hB", &s.path().join("requester"))
        .env("RUST_LOG", "naac_net=debug")
        .arg("run")
        .arg(&job)
        .args(["--json", "--no-mdns", "--no-pay", "--join", &relay, "--out"])
        .arg(s.path().join("out"))
        .output()
        .expect("naac run");
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, summary, peer, relay)
}

/// Eight tasks of a few hundred milliseconds of CPU each.
const SMALL_JOB: &str =
    "args = [\"sha256\", \"{i}\", \"300000\"]\n[sweep]\ni = { from = 0, to = 8 }\n";

/// How many of `peer`'s results arrived each way, per the summary: (direct, relayed).
fn arrived(summary: &serde_json::Value, peer: &str) -> (u64, u64) {
    let p = summary["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peer_id"] == peer))
        .unwrap_or_else(|| panic!("{peer} not among the providers: {summary:#}"));
    let n = |k: &str| p["arrived"][k].as_u64().expect("count");
    (n("direct"), n("relayed"))
}

#[test]
fn across_two_cone_nats_a_job_runs_over_a_hole_punched_connection() {
    let Some(mut lab) = Lab::up("a", "cone") else {
        return;
    };
    let s = Scratch::new();
    // Long enough (about 4 s on 2 slots) that results outlast the hole punch even on a
    // loaded machine.
    let job = "args = [\"sha256\", \"{i}\", \"1000000\"]\n[sweep]\ni = { from = 0, to = 8 }\n";
    let (out, summary, peer, _) = job_across_nats(&mut lab, &s, &[], job);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary["tasks"]["succeeded"], 8, "{summary:#}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("direct connection to {peer} (hole punched)")),
        "{err}"
    );
    // Results move to the direct connection once it exists. (A report cut off with the
    // relayed connection is sent again: a result may arrive twice.)
    let (direct, relayed) = arrived(&summary, &peer);
    assert!(direct + relayed >= 8, "{summary:#}");
    assert!(direct > 0, "{summary:#}\n{err}");
    // The provider names its LAN and loopback addresses too (in identify, to the relay);
    // no part of the requester ever dials them.
    assert!(!err.contains("Network is unreachable"), "{err}");
    assert!(!err.contains("Connection refused"), "{err}");
}

/// A provider with a public address keeps no reservation once AutoNAT confirms the address
/// (it serves the DHT instead), and a requester behind NAT reaches it directly, with no
/// hole to punch.
#[test]
fn a_provider_with_a_public_address_needs_no_relay() {
    let Some(mut lab) = Lab::up("e", "cone") else {
        return;
    };
    let s = Scratch::new();
    let relay = lab.relay(&s, &[]);
    let log = s.path().join("public.log");
    let mut c = lab.naac("pub", &s.path().join("public"));
    c.env("RUST_LOG", "naac_net=info,naac_node=info")
        .args([
            "node",
            "--provide",
            "--ephemeral",
            "--slots",
            "2",
            "--no-mdns",
        ])
        .args(["--join", &relay, "--listen", "/ip4/198.18.0.10/tcp/4003"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    lab.children.push(c.spawn().expect("naac node"));
    let t = std::time::Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("giving up the reservation on relay") {
            break text;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "no public address confirmed: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        text.contains("reachable at /ip4/198.18.0.10/tcp/4003 (public)"),
        "{text}"
    );
    let peer = text
        .split("provider ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the provider's id in its log")
        .to_string();
    let job = s.job("public", "testkit/testkit.wasm", SMALL_JOB);
    let out = lab
        .naac("hB", &s.path().join("requester"))
        .env("RUST_LOG", "naac_net=info")
        .args(["run", "--json", "--no-mdns", "--no-pay", "--join", &relay])
        .arg(&job)
        .arg("--out")
        .arg(s.path().join("out"))
        .output()
        .expect("naac run");
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(arrived(&summary, &peer), (8, 0), "{summary:#}");
    assert!(!stderr(&out).contains("hole punched"), "{}", stderr(&out));
}

#[test]
fn behind_a_symmetric_nat_a_job_still_completes_through_the_relay() {
    let Some(mut lab) = Lab::up("b", "symmetric") else {
        return;
    };
    let s = Scratch::new();
    let (out, summary, peer, _) = job_across_nats(&mut lab, &s, &[], SMALL_JOB);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary["tasks"]["succeeded"], 8, "{summary:#}");
    // A random port per connection on one side: no hole to punch.
    let err = stderr(&out);
    assert!(
        !err.contains(&format!("direct connection to {peer}")),
        "{err}"
    );
    assert_eq!(arrived(&summary, &peer), (0, 8), "{summary:#}");
}

/// A relay that carries 1 MiB per connection, a symmetric NAT (so no direct connection),
/// and results of 3 MB: the job fails at once, and says it was the relay's limit, rather
/// than losing its connection (and its tasks) again and again.
#[test]
fn a_result_over_the_relays_limit_fails_the_job_with_the_reason() {
    let Some(mut lab) = Lab::up("d", "symmetric") else {
        return;
    };
    let s = Scratch::new();
    let job = "args = [\"bytes\", \"3000000\"]\n[sweep]\ni = { from = 0, to = 2 }\n";
    let (out, summary, peer, relay) =
        job_across_nats(&mut lab, &s, &["--relay-circuit-bytes", "1MiB"], job);
    assert!(!out.status.success(), "{summary:#}");
    let failures = summary["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 2, "{summary:#}");
    for f in failures {
        let m = f["message"].as_str().expect("message");
        assert!(
            m.contains("more than the relay between this provider and the requester carries (1 MiB per connection)"),
            "{m}"
        );
    }
    // `--explain` says so before anything runs.
    let out = lab
        .naac("hB", &s.path().join("looker"))
        .args(["run", "--explain", "--json", "--no-mdns", "--join", &relay])
        .arg(s.path().join("nat.toml"))
        .output()
        .expect("naac run --explain");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("explain json");
    let host = v["per_host"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["peer_id"] == peer.as_str()))
        .unwrap_or_else(|| panic!("{peer} not in view: {v:#}"));
    assert_eq!(host["connection"], "relayed", "{v:#}");
    assert_eq!(host["relay_limit_bytes"], 1 << 20, "{v:#}");
}

#[test]
fn a_home_cut_off_mid_job_loses_its_tasks_to_another_and_rejoins_when_back() {
    let Some(mut lab) = Lab::up("c", "cone") else {
        return;
    };
    let s = Scratch::new();
    let relay = lab.relay(&s, &[]);
    let provider = |home: &str| {
        vec![
            "--provide".to_string(),
            "--ephemeral".into(),
            "--slots".into(),
            "2".into(),
            "--no-mdns".into(),
            "--join".into(),
            relay.clone(),
            "--listen".into(),
            "/ip4/0.0.0.0/tcp/4002".into(),
            format!("--owner={home}"),
        ]
    };
    // Home A's provider: its stdout kept, to see it come back.
    let mut c = lab.naac("hA", &s.path().join("a"));
    c.arg("node").args(provider("a"));
    let (child, a_lines) = spawn_lines(c);
    lab.children.push(child);
    let a = address_from(&a_lines, |x| x.contains("/p2p-circuit/"));
    let b = lab.node(
        "hB",
        &s.path().join("b"),
        &provider("b").iter().map(String::as_str).collect::<Vec<_>>(),
        |x| x.contains("/p2p-circuit/"),
    );
    let a_peer = a.rsplit('/').next().expect("peer").to_string();
    let b_peer = b.rsplit('/').next().expect("peer").to_string();
    // 12 tasks of about a second of CPU each on 4 slots (pi runs at native speed since NaNs
    // are canonical only where observed), without speculation, so home A's runs cut off in
    // flight end only as lost; the requester is on the public
    // host, joined to the relay alone.
    let job = s.job(
        "cut",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"300000000\"]\nstraggler_factor = 0\n[sweep]\nseed = { from = 0, to = 12 }\n[limits]\nfuel = 1_000_000_000_000\n",
    );
    let mut run = lab
        .naac("pub", &s.path().join("requester"))
        .arg("run")
        .arg(&job)
        .args(["--json", "--no-mdns", "--no-pay", "--join", &relay, "--out"])
        .arg(s.path().join("out"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("naac run");
    // Once both homes are at work, home A's router loses its Internet link.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let cut = Command::new(lab_script())
        .args(["link", &lab.prefix, "rA", "down"])
        .output()
        .expect("nat-lab link");
    assert!(cut.status.success(), "{}", stderr(&cut));
    let out = wait_output(&mut run, std::time::Duration::from_secs(120));
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["tasks"]["succeeded"], 12, "{summary:#}");
    let did = |peer: &str| {
        summary["providers"]
            .as_array()
            .expect("providers")
            .iter()
            .find(|p| p["peer_id"] == peer)
            .map_or(0, |p| p["tasks"].as_u64().unwrap_or(0))
    };
    assert!(did(&b_peer) > 0, "{summary:#}");
    assert_eq!(did(&a_peer) + did(&b_peer), 12, "{summary:#}");
    // Home A's runs in flight at the cut were lost, and run again on home B.
    let lost = summary["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|p| p["peer_id"] == a_peer.as_str())
        .map_or(0, |p| p["lost"].as_u64().unwrap_or(0));
    assert!(lost > 0, "{summary:#}");
    // The link is back: home A is in the pool again, through its relay (its connection to
    // the relay survives a short cut, or it dials the relay again and gets a new
    // reservation).
    let up = Command::new(lab_script())
        .args(["link", &lab.prefix, "rA", "up"])
        .output()
        .expect("nat-lab link");
    assert!(up.status.success(), "{}", stderr(&up));
    let t = std::time::Instant::now();
    loop {
        let pool = lab
            .naac("pub", &s.path().join("looker"))
            .args([
                "pool",
                "--json",
                "--no-mdns",
                "--wait",
                "2s",
                "--join",
                &relay,
            ])
            .output()
            .expect("naac pool");
        let v: serde_json::Value =
            serde_json::from_slice(&pool.stdout).unwrap_or(serde_json::Value::Null);
        let back = v["hosts"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["peer_id"] == a_peer.as_str()));
        if back {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "home A never came back: {}",
            stderr(&pool)
        );
    }
    drop(a_lines);
}

/// Waits for `child` to exit (killing it after `limit`) and collects its output.
fn wait_output(child: &mut Child, limit: std::time::Duration) -> Output {
    let t = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut stdout = Vec::new();
    let mut err = Vec::new();
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut err);
    }
    Output {
        status: child.wait().expect("status"),
        stdout,
        stderr: err,
    }
}
