//! The market overlay on real swarms over 127.0.0.1: Kademlia provider records found across a
//! line of five nodes, gossip flooding down the same line, and the gossip size limit.
//! Timings are printed (`--nocapture`), never asserted.

use naac_net::{Client, Config, Event, Keypair, Multiaddr, PeerId, PublishError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Generous hard deadline for anything to happen.
const DEADLINE: Duration = Duration::from_secs(20);

/// A gossip message a node received, and when.
struct Heard {
    at: Instant,
    source: Option<PeerId>,
    propagated_by: PeerId,
    topic: String,
    data: Vec<u8>,
}

struct Node {
    client: Client,
    gossip: mpsc::Receiver<Heard>,
    /// Peers it got connected to.
    connected: mpsc::Receiver<PeerId>,
}

/// Starts a node on 127.0.0.1 that dials `join`, and waits until it listens.
async fn node(join: Option<Multiaddr>) -> (Node, Multiaddr) {
    let config = Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        join: join.into_iter().collect(),
        mdns: false,
        ..Config::default()
    };
    let (client, mut events) = naac_net::start(Keypair::generate_ed25519(), config)
        .await
        .expect("start");
    let (gossip_tx, gossip) = mpsc::channel(256);
    let (conn_tx, connected) = mpsc::channel(64);
    let (listening_tx, listening) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut listening_tx = Some(listening_tx);
        while let Some(ev) = events.recv().await {
            match ev {
                Event::Listening(_) => {
                    if let Some(tx) = listening_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Gossip {
                    source,
                    propagated_by,
                    topic,
                    data,
                } => {
                    let heard = Heard {
                        at: Instant::now(),
                        source,
                        propagated_by,
                        topic,
                        data,
                    };
                    let _ = gossip_tx.send(heard).await;
                }
                Event::Connected(peer, _) => {
                    let _ = conn_tx.try_send(peer);
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(DEADLINE, listening)
        .await
        .expect("listening in time")
        .expect("listening");
    let addr = client.listen_addrs().await.remove(0);
    (
        Node {
            client,
            gossip,
            connected,
        },
        addr,
    )
}

/// n1–n2–n3–n4–n5: each node dials only the one before it; returns once every link is up.
async fn line() -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut prev: Option<Multiaddr> = None;
    for _ in 0..5 {
        let (n, addr) = node(prev.take()).await;
        nodes.push(n);
        prev = Some(addr);
    }
    for i in 1..nodes.len() {
        let want = nodes[i - 1].client.peer_id();
        tokio::time::timeout(DEADLINE, async {
            while let Some(p) = nodes[i].connected.recv().await {
                if p == want {
                    return;
                }
            }
        })
        .await
        .expect("neighbours connect");
    }
    nodes
}

/// Kademlia's automatic bootstrap connects nodes beyond their neighbours; once its lookups
/// have settled, hang those shortcuts up so that gossip has to walk the line (gossipsub dials
/// nobody, so it stays a line).
async fn keep_only_the_line(nodes: &[Node]) {
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.client.peer_id()).collect();
    let started = Instant::now();
    let mut quiet_rounds = 0;
    while quiet_rounds < 4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut extra = 0;
        for (i, n) in nodes.iter().enumerate() {
            for (p, _) in n.client.rtts().await {
                let j = ids.iter().position(|id| *id == p);
                if j.is_none_or(|j| j.abs_diff(i) != 1) {
                    extra += 1;
                    n.client.disconnect(p).await;
                }
            }
        }
        quiet_rounds = if extra == 0 { quiet_rounds + 1 } else { 0 };
        assert!(started.elapsed() < DEADLINE, "shortcuts keep coming back");
    }
}

const WASM_CLASS: &[u8] = b"/naac/market/v1/wasm32-wasip1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_records_are_found_across_a_line_of_five() {
    let mut nodes = line().await;
    keep_only_the_line(&nodes).await;
    let n1 = nodes[0].client.peer_id();
    let n1_id = n1.to_string();

    let started = Instant::now();
    nodes[0]
        .client
        .start_providing(WASM_CLASS.to_vec())
        .await
        .expect("start providing");
    let mut attempts = 0;
    let addrs = loop {
        attempts += 1;
        assert!(
            started.elapsed() < DEADLINE,
            "n5 found no provider within {DEADLINE:?} ({attempts} lookups)"
        );
        let found = nodes[4]
            .client
            .get_providers(WASM_CLASS.to_vec(), Duration::from_secs(5))
            .await
            .expect("lookup");
        if let Some((_, addrs)) = found.iter().find(|(p, a)| *p == n1 && !a.is_empty()) {
            break addrs.clone();
        }
        println!("kad: lookup {attempts} found {found:?}; bootstrapping and trying again");
        for n in &nodes {
            n.client.bootstrap().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "kad: n5 found n1 as a provider after {:?} ({attempts} lookups) at {addrs:?}",
        started.elapsed()
    );
    assert!(addrs.iter().all(|a| a.to_string().ends_with(&n1_id)));

    // The address is good: with the line restored, n5 dials n1 on it.
    keep_only_the_line(&nodes).await;
    while nodes[4].connected.try_recv().is_ok() {}
    nodes[4]
        .client
        .dial(addrs[0].clone())
        .await
        .expect("dial n1");
    tokio::time::timeout(DEADLINE, async {
        while let Some(p) = nodes[4].connected.recv().await {
            if p == n1 {
                return;
            }
        }
    })
    .await
    .expect("n5 connects to n1");

    // n5 finds n1's address by its id alone.
    keep_only_the_line(&nodes).await;
    let started = Instant::now();
    let found = nodes[4]
        .client
        .find_peer(n1, Duration::from_secs(10))
        .await
        .expect("find n1");
    println!(
        "kad: n5 looked n1 up by id in {:?}: {found:?}",
        started.elapsed()
    );
    assert!(!found.is_empty());
    assert!(found.iter().all(|a| a.to_string().ends_with(&n1_id)));

    // A key nobody provides: an empty answer, not an error.
    let none = nodes[4]
        .client
        .get_providers(b"/naac/market/v1/nothing".to_vec(), Duration::from_secs(5))
        .await
        .expect("lookup");
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_floods_a_line_of_five() {
    const TOPIC: &str = "/naac/market/v1/offers";
    let mut nodes = line().await;
    for n in &nodes {
        n.client.subscribe(TOPIC).await.expect("subscribe");
    }
    keep_only_the_line(&nodes).await;
    let n1 = nodes[0].client.peer_id();
    let payload: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();

    // Subscriptions spread and meshes form over a few heartbeats; until a message arrives,
    // publish again (each publish is a new message: a fresh sequence number).
    let started = Instant::now();
    let mut published = 0;
    let (sent_at, got) = loop {
        assert!(
            started.elapsed() < DEADLINE,
            "n5 got nothing within {DEADLINE:?}"
        );
        let at = Instant::now();
        match nodes[0].client.publish(TOPIC, payload.clone()).await {
            Ok(()) => published += 1,
            Err(PublishError::NoPeers(_)) => {}
            Err(e) => panic!("publish: {e}"),
        }
        if let Ok(m) =
            tokio::time::timeout(Duration::from_millis(500), nodes[4].gossip.recv()).await
        {
            break (at, m.expect("n5's events"));
        }
    };
    let Heard {
        at: arrived,
        source,
        propagated_by,
        topic,
        data,
    } = got;
    assert_eq!(source, Some(n1));
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.client.peer_id()).collect();
    let name = |p: &PeerId| match ids.iter().position(|i| i == p) {
        Some(i) => format!("n{}", i + 1),
        None => p.to_string(),
    };
    for (i, n) in nodes.iter().enumerate() {
        let peers: Vec<String> = n.client.rtts().await.iter().map(|(p, _)| name(p)).collect();
        println!("topology: n{} is connected to {peers:?}", i + 1);
    }
    assert_eq!(name(&propagated_by), "n4", "the message walked the line");
    assert_eq!(topic, TOPIC);
    assert_eq!(data, payload);
    println!(
        "gossip: mesh ready and message through after {:?} ({published} publishes)",
        started.elapsed()
    );
    println!(
        "gossip: first delivery n1 -> n5 took {:?} from its publish",
        arrived - sent_at
    );

    // With the mesh up, time a few more messages down the line.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while nodes[4].gossip.try_recv().is_ok() {}
    let mut times = Vec::new();
    for i in 0..10u8 {
        let msg = vec![i; 1024];
        let at = Instant::now();
        nodes[0]
            .client
            .publish(TOPIC, msg.clone())
            .await
            .expect("publish");
        let m = tokio::time::timeout(DEADLINE, async {
            loop {
                let m = nodes[4].gossip.recv().await.expect("n5's events");
                if m.data == msg {
                    return m;
                }
            }
        })
        .await
        .expect("n5 receives");
        assert_eq!(m.source, Some(n1));
        times.push(m.at - at);
    }
    times.sort();
    println!(
        "gossip: n1 -> n5 over 4 hops, 10 messages of 1 KiB: min {:?}, median {:?}, max {:?}",
        times[0], times[5], times[9]
    );
    // The largest message allowed.
    let big: Vec<u8> = (0..naac_net::MAX_GOSSIP_BYTES)
        .map(|i| (i % 241) as u8)
        .collect();
    let at = Instant::now();
    nodes[0]
        .client
        .publish(TOPIC, big.clone())
        .await
        .expect("publish");
    let arrived = tokio::time::timeout(DEADLINE, async {
        loop {
            let m = nodes[4].gossip.recv().await.expect("n5's events");
            if m.data == big {
                return m.at;
            }
        }
    })
    .await
    .expect("n5 receives the largest message");
    println!(
        "gossip: n1 -> n5 over 4 hops, one message of {} bytes: {:?}",
        big.len(),
        arrived - at
    );
    // Every node in between got it too.
    for n in &mut nodes[1..4] {
        assert!(n.gossip.try_recv().is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_gossip_is_refused() {
    let (a, addr) = node(None).await;
    let (mut b, _) = node(Some(addr)).await;
    // The longest topic name and the largest payload still fit the wire limit.
    let topic = format!(
        "/naac/market/v1/{}",
        "x".repeat(naac_net::MAX_TOPIC_BYTES - 16)
    );
    b.client.subscribe(&topic).await.expect("subscribe");

    let too_big = vec![0u8; naac_net::MAX_GOSSIP_BYTES + 1];
    let err = a
        .client
        .publish(&topic, too_big)
        .await
        .expect_err("over the limit");
    assert!(
        matches!(err, PublishError::TooLarge { .. }),
        "unexpected: {err}"
    );

    let largest: Vec<u8> = (0..naac_net::MAX_GOSSIP_BYTES)
        .map(|i| (i % 253) as u8)
        .collect();
    let started = Instant::now();
    let got = loop {
        assert!(started.elapsed() < DEADLINE, "b got nothing");
        match a.client.publish(&topic, largest.clone()).await {
            Ok(()) | Err(PublishError::NoPeers(_)) => {}
            Err(e) => panic!("publish: {e}"),
        }
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), b.gossip.recv()).await
        {
            break m;
        }
    };
    assert_eq!(got.source, Some(a.client.peer_id()));
    assert_eq!(got.data, largest);

    // Bad topics and keys are refused before reaching the network.
    assert!(a.client.publish("", vec![1]).await.is_err());
    assert!(a.client.subscribe(&"x".repeat(1000)).await.is_err());
    assert!(a.client.start_providing(Vec::new()).await.is_err());
    assert!(
        a.client
            .get_providers(vec![0; naac_net::MAX_KEY_BYTES + 1], Duration::from_secs(1))
            .await
            .is_err()
    );
}
