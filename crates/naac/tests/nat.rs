//! Internet reach with real NAT: two home LANs behind nftables NAT and a public relay, in
//! network namespaces the test builds itself (`scripts/nat-lab.sh`, addresses in
//! 198.18.0.0/15 only), with real `naac` processes in them. A provider at home A joins the
//! relay; a requester at home B, told only the provider's address through the relay, runs a
//! job on it. Needs root, `ip` and `nft` (`.ci/run` installs them); anywhere else each test
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
            .env("NAAC_HOME", home)
            .env_remove("RUST_LOG");
        c
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

/// A relay on the public host, a provider at home A joined to it, and a job run from home B
/// through the provider's relayed address. Returns the run and the provider's peer id.
fn job_across_nats(lab: &mut Lab, s: &Scratch) -> (Output, serde_json::Value, String) {
    let relay = lab.node(
        "pub",
        &s.path().join("relay"),
        &[
            "--relay",
            "--no-mdns",
            "--listen",
            "/ip4/198.18.0.10/tcp/4001",
        ],
        |_| true,
    );
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
    let job = s.job(
        "nat",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"3000000\"]\n[sweep]\nseed = { from = 0, to = 8 }\n",
    );
    let out = lab
        .naac("hB", &s.path().join("requester"))
        .env("RUST_LOG", "naac_net=info")
        .arg("run")
        .arg(&job)
        .args([
            "--json",
            "--no-mdns",
            "--no-pay",
            "--join",
            &circuit,
            "--out",
        ])
        .arg(s.path().join("out"))
        .output()
        .expect("naac run");
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, summary, peer)
}

#[test]
fn across_two_cone_nats_a_job_runs_over_a_hole_punched_connection() {
    let Some(mut lab) = Lab::up("a", "cone") else {
        return;
    };
    let s = Scratch::new();
    let (out, summary, peer) = job_across_nats(&mut lab, &s);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary["tasks"]["succeeded"], 8, "{summary:#}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("direct connection to {peer} (hole punched)")),
        "{err}"
    );
}

#[test]
fn behind_a_symmetric_nat_a_job_still_completes_through_the_relay() {
    let Some(mut lab) = Lab::up("b", "symmetric") else {
        return;
    };
    let s = Scratch::new();
    let (out, summary, peer) = job_across_nats(&mut lab, &s);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary["tasks"]["succeeded"], 8, "{summary:#}");
    // A random port per connection on one side: no hole to punch.
    let err = stderr(&out);
    assert!(
        !err.contains(&format!("direct connection to {peer}")),
        "{err}"
    );
}
