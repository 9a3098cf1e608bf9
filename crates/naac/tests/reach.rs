//! Reaching hosts behind NAT, on 127.0.0.1: a provider keeps a reservation on the relay it
//! joined, a requester that knows only the provider's `/p2p-circuit` address through that
//! relay runs a job on it, and the relayed connection is upgraded to a direct one by hole
//! punching (on one machine the direct path always exists). The network-namespace tests
//! with real NAT are still to come.

mod common;

use common::{Scratch, address_from, naac, spawn_lines, stderr};
use std::process::Child;
use std::sync::mpsc;

/// A `naac node`, killed when dropped, with its stdout lines.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Node {
    fn start(home: &std::path::Path, args: &[&str]) -> Node {
        let mut c = naac();
        c.env("NAAC_HOME", home).arg("node").args(args);
        let (child, lines) = spawn_lines(c);
        Node { child, lines }
    }

    fn address(&self, pick: impl Fn(&str) -> bool) -> String {
        address_from(&self.lines, pick)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_requester_reaches_a_provider_through_its_relay_and_then_directly() {
    let s = Scratch::new();
    let relay = Node::start(
        &s.path().join("relay"),
        &["--relay", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"],
    );
    let relay_addr = relay.address(|_| true);
    let provider = Node::start(
        &s.path().join("provider"),
        &[
            "--provide",
            "--ephemeral",
            "--slots",
            "2",
            "--no-mdns",
            "--join",
            &relay_addr,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    );
    // Its reservation gives it an address through the relay.
    let circuit = provider.address(|a| a.contains("/p2p-circuit/"));
    assert!(circuit.starts_with(&relay_addr), "{circuit}");
    let peer = circuit.rsplit('/').next().expect("peer id").to_string();
    let job = s.job(
        "relayed",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"100000\"]\n[sweep]\nseed = { from = 0, to = 8 }\n",
    );
    // The requester is told only the relayed address.
    let (out, summary) = {
        let mut c = s.run_cmd(&job, &s.path().join("out"));
        c.env("RUST_LOG", "naac_net=info")
            .args(["--no-mdns", "--no-pay", "--join", &circuit]);
        let out = c.output().expect("run naac");
        let summary: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out, summary)
    };
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary["tasks"]["succeeded"], 8, "{summary:#}");
    let providers = summary["providers"].as_array().expect("providers");
    assert!(
        providers.iter().all(|p| p["peer_id"] == peer.as_str()),
        "{summary:#}"
    );
    // Hole punching upgraded the relayed connection to a direct one.
    let err = stderr(&out);
    assert!(
        err.contains(&format!("direct connection to {peer} (hole punched)")),
        "{err}"
    );
    // `naac pool` says how each host is reached.
    let out = naac()
        .env("NAAC_HOME", s.home())
        .args(["pool", "--json", "--no-mdns", "--join", &circuit])
        .output()
        .expect("naac pool");
    assert!(out.status.success(), "{}", stderr(&out));
    let pool: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pool json");
    let hosts = pool["hosts"].as_array().expect("hosts");
    let host = hosts
        .iter()
        .find(|h| h["peer_id"] == peer.as_str())
        .unwrap_or_else(|| panic!("the provider is in the pool: {pool:#}"));
    let how = host["connection"].as_str().expect("connection");
    assert!(how == "direct" || how == "relayed", "{how}");
}
