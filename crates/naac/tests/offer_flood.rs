//! A flood of market offers: one gossip peer publishes 5,000 validly signed offers for fresh
//! keys, each naming an address that accepts connections and never answers. A requester
//! listening to the market must not be led to dial them, and a real provider that appears
//! afterwards must still be found and used.

mod common;

use common::{Provider, Scratch, stderr};
use naac_net::{Event, Keypair, Multiaddr};
use naac_proto::{Response, ResponseBody};
use naac_types::Price;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const FAKES: usize = 5_000;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .expect("clock after 1970")
}

/// A signed offer for a fresh key that says it is reachable at `at` and lives 9 minutes.
fn fake_offer(at: &str) -> Vec<u8> {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let now = unix_ms();
    let offer = naac_market::Offer {
        provider: naac_net::ed25519_of_keypair(&key).expect("ed25519"),
        class: naac_market::commodity_class().to_string(),
        cores: 64,
        memory: 1 << 40,
        score_milli: 100_000,
        slots: 64,
        free_slots: 64,
        price: Price(0),
        max_task_memory: 1 << 34,
        accepting: true,
        addrs: vec![format!("{at}/p2p/{peer}")],
        seq: 1,
        issued_ms: now,
        expires_ms: now + 9 * 60 * 1000,
    };
    let sig = naac_net::sign(&key, &offer.signing_bytes());
    naac_market::SignedOffer { offer, sig }
        .to_bytes()
        .expect("a valid offer")
}

/// A gossip node on 127.0.0.1 in this process, subscribed to the market topic; it refuses
/// every request (it runs nothing). Returns its client and its address.
async fn gossip_node(join: Option<Multiaddr>) -> (naac_net::Client, Multiaddr) {
    let (client, mut events) = naac_net::start(
        Keypair::generate_ed25519(),
        naac_net::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
            join: join.into_iter().collect(),
            mdns: false,
            ..naac_net::Config::default()
        },
    )
    .await
    .expect("a gossip node");
    let addr = loop {
        if let Some(Event::Listening(a)) = events.recv().await {
            break a.with_p2p(client.peer_id()).expect("a p2p address");
        }
    };
    client
        .subscribe(&naac_market::topic(naac_market::commodity_class()))
        .await
        .expect("subscribe");
    let c = client.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let Event::Request { channel, .. } = ev {
                let body = ResponseBody::Refused("this node runs nothing".into());
                c.respond(channel, Response::new(body)).await;
            }
        }
    });
    (client, addr)
}

/// Accepts connections on 127.0.0.1 and holds them without a word; counts them.
fn silent_listener() -> (String, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("local addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            n.fetch_add(1, Ordering::Relaxed);
            held.push(s);
        }
    });
    (format!("/ip4/127.0.0.1/tcp/{port}"), accepted)
}

#[test]
fn a_flood_of_offers_for_fresh_keys_does_not_hide_a_real_provider() {
    let s = Scratch::new();
    let job = s.job(
        "flood",
        "testkit/testkit.wasm",
        "args = [\"sleep\", \"20\"]\n[sweep]\ni = { from = 0, to = 8 }\n",
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_hub, hub_addr) = rt.block_on(gossip_node(None));
    let (silent, dialled) = silent_listener();

    // The requester knows only the hub: every provider it uses, it found on the market.
    let out_dir = s.path().join("out");
    let mut run = s
        .run_cmd(&job, &out_dir)
        .args(["--no-mdns", "--join", &hub_addr.to_string()])
        .args(["--provider-wait", "120s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start naac run");

    let (adversary, _) = rt.block_on(gossip_node(Some(hub_addr.clone())));
    let topic = naac_market::topic(naac_market::commodity_class());
    let fakes: Vec<Vec<u8>> = (0..FAKES).map(|_| fake_offer(&silent)).collect();
    rt.block_on(async {
        // Let the meshes form (the requester's subscription must reach the hub).
        tokio::time::sleep(Duration::from_secs(3)).await;
        for chunk in fakes.chunks(100) {
            for f in chunk {
                adversary
                    .publish(&topic, f.clone())
                    .await
                    .expect("the adversary publishes");
            }
            // Paced so the hub's queues carry every one.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    });

    // A real provider appears, known to nobody but the hub.
    let appeared = Instant::now();
    let provider = Provider::start_with(&s, 2, &["--join", &hub_addr.to_string()]);
    let deadline = appeared + Duration::from_secs(30);
    while run.try_wait().expect("try_wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let finished = run.try_wait().expect("try_wait").is_some();
    if !finished {
        let _ = run.kill();
    }
    let out = run.wait_with_output().expect("the run's output");
    let took = appeared.elapsed();
    let fakes_dialled = dialled.load(Ordering::Relaxed);
    eprintln!("the run ended {took:?} after the provider appeared; {fakes_dialled} fake dials");
    assert!(
        finished,
        "the run did not end within 30 s of the real provider appearing: {}",
        stderr(&out)
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    let used: Vec<&str> = summary["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .filter_map(|p| p["peer_id"].as_str())
        .collect();
    assert_eq!(used, vec![provider.peer_id().as_str()], "{summary:#}");
    // Offers must travel under their own provider's gossip signature: none of the fakes did,
    // so none was dialled.
    assert!(
        fakes_dialled < 16,
        "the requester dialled {fakes_dialled} of {FAKES} fake offers"
    );
}
