//! Peers that try to make a node hold more than its limits allow: a small message declaring
//! a huge frame, many connections from one peer or from many, and a flood of requests. Each
//! is bounded, and an honest peer is still answered. Real swarms on 127.0.0.1.

use naac_net::limits::{MAX_CONNECTIONS_PER_PEER, MAX_REQUESTS_PER_PEER};
use naac_net::{Client, Event, Keypair, Multiaddr, testing};
use naac_proto::{Request, RequestBody, Response, ResponseBody};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

fn loopback() -> naac_net::Config {
    naac_net::Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
        mdns: false,
        ..naac_net::Config::default()
    }
}

/// A node and the address to reach it (ending in its peer id).
async fn node(config: naac_net::Config) -> (Client, Receiver<Event>, Multiaddr) {
    let (client, mut events) = naac_net::start(Keypair::generate_ed25519(), config)
        .await
        .expect("the node's network");
    let addr = loop {
        if let Some(Event::Listening(a)) = events.recv().await {
            break a;
        }
    };
    let addr = addr.with_p2p(client.peer_id()).expect("a plain address");
    (client, events, addr)
}

fn hello() -> Request {
    Request::new(RequestBody::Hello(Default::default()))
}

/// An honest peer's `Hello` is answered while the node answers every request `Ack`.
async fn honest_is_answered(client: &Client, events: &mut Receiver<Event>, addr: &Multiaddr) {
    let (honest, mut honest_events) = naac_net::start(
        Keypair::generate_ed25519(),
        naac_net::Config {
            join: vec![addr.clone()],
            ..loopback()
        },
    )
    .await
    .expect("the honest peer's network");
    let peer = loop {
        if let Some(Event::Connected(p, _)) = honest_events.recv().await {
            break p;
        }
    };
    let asked = tokio::spawn(async move { honest.request(peer, hello()).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !asked.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the honest peer is answered within 30 s"
        );
        let ev = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
        if let Ok(Some(Event::Request { channel, .. })) = ev {
            client
                .respond(channel, Response::new(ResponseBody::Ack))
                .await;
        }
    }
    let r = asked.await.expect("the honest request's task");
    assert!(
        matches!(
            r,
            Ok(Response {
                body: ResponseBody::Ack,
                ..
            })
        ),
        "the honest peer's Hello is answered: {r:?}"
    );
}

/// A `Hello` whose frame declares 100 MiB is cut off from its first bytes: the node does not
/// wait for the rest (nor make room for it) while the peer keeps trickling it in, and goes on
/// answering others.
#[tokio::test]
async fn a_hello_declaring_100_mib_is_cut_off_at_its_head() {
    let (client, mut events, addr) = node(loopback()).await;
    let mut frame = (100u32 << 20).to_be_bytes().to_vec();
    frame = cbor4ii::serde::to_vec(frame, &hello()).expect("encode");
    let cut = testing::trickle_request(addr.clone(), frame, Duration::from_secs(15))
        .await
        .expect("the trickling peer");
    assert!(
        cut.is_some(),
        "the node cuts the stream off instead of taking 100 MiB for a Hello"
    );
    honest_is_answered(&client, &mut events, &addr).await;

    // A frame of a kind that may be large is taken as it comes (and the node stays up).
    let report = Request::new(RequestBody::Report(naac_proto::Report {
        job: naac_types::JobId::derive(&naac_types::ContentId::of(b"limits"), b"1"),
        results: Vec::new(),
        held: Vec::new(),
        seen_seq: 0,
        returned: Vec::new(),
    }));
    let mut frame = (100u32 << 20).to_be_bytes().to_vec();
    frame = cbor4ii::serde::to_vec(frame, &report).expect("encode");
    let cut = testing::trickle_request(addr.clone(), frame, Duration::from_secs(2))
        .await
        .expect("the trickling peer");
    assert_eq!(cut, None, "a Report may be large: {cut:?}");
}

/// One peer dialing ten times holds at most its share of connections; ten fresh peers hold
/// at most the node's inbound limit.
#[tokio::test]
async fn connections_are_bounded_per_peer_and_in_all() {
    let (client, mut events, addr) = node(loopback()).await;
    let held = testing::open_connections(addr.clone(), 10, false, Duration::from_secs(3))
        .await
        .expect("dial");
    assert!(
        held <= MAX_CONNECTIONS_PER_PEER as usize && held > 0,
        "one peer holds {held} connections"
    );
    honest_is_answered(&client, &mut events, &addr).await;

    let (_small, _small_events, small_addr) = node(naac_net::Config {
        max_incoming: 3,
        ..loopback()
    })
    .await;
    let held = testing::open_connections(small_addr, 10, true, Duration::from_secs(3))
        .await
        .expect("dial");
    assert!(held <= 3 && held > 0, "ten peers hold {held} connections");
}

/// A peer that sends 300 requests over three connections while the node's owner is busy gets
/// its share waiting and the rest refused at once; an honest peer is still answered.
#[tokio::test]
async fn a_peer_gets_only_its_share_of_unanswered_requests() {
    let (client, mut events, addr) = node(loopback()).await;
    let sent = 300;
    let answers = testing::flood_requests(
        addr.clone(),
        3,
        (0..sent).map(|_| hello()).collect(),
        Duration::from_secs(5),
    )
    .await
    .expect("flood");
    let refused = answers
        .iter()
        .filter(|r| matches!(&r.body, ResponseBody::Refused(why) if why.contains("waiting for an answer")))
        .count();
    assert_eq!(
        refused,
        answers.len(),
        "nothing but refusals came while the owner was busy"
    );
    assert_eq!(
        refused,
        sent - MAX_REQUESTS_PER_PEER as usize,
        "all but the peer's share are refused at once"
    );
    honest_is_answered(&client, &mut events, &addr).await;
}
