//! A look at the pool from here: greet every host this node can reach and collect what each
//! says about itself (`Welcome` with its status), plus the round-trip time to it. Used by
//! `naac pool` and `naac run --explain`.

use naac_net::{Client, Event, Keypair, PeerId};
use naac_proto::{Hello, Request, RequestBody, Response, ResponseBody, UserAttestation, Welcome};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// A `Hello` for `client`'s peer, attested by the user's key when there is one.
pub fn hello(client: &Client, user_key: Option<&Keypair>) -> Hello {
    Hello {
        user: user_key.map(|k| UserAttestation {
            user: naac_net::peer_id_of(k).to_string(),
            signature: naac_net::sign(
                k,
                &UserAttestation::signing_bytes(&client.peer_id().to_bytes()),
            ),
        }),
        solicit: None,
    }
}

/// One host as seen from here.
#[derive(Clone, Debug)]
pub struct Seen {
    pub peer: PeerId,
    pub welcome: Welcome,
    pub rtt: Option<Duration>,
}

/// Greets every peer that connects within `wait` (and answers within it) and returns the
/// providers among them, sorted by peer id. Peers that are not providers are left out.
pub async fn survey(
    client: &Client,
    events: &mut mpsc::Receiver<Event>,
    user_key: Option<&Keypair>,
    wait: Duration,
) -> Vec<Seen> {
    let deadline = tokio::time::Instant::now() + wait;
    let (tx, mut rx) = mpsc::channel::<(PeerId, Welcome)>(256);
    let mut seen: HashMap<PeerId, Welcome> = HashMap::new();
    let hello = hello(client, user_key);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            ev = events.recv() => match ev {
                Some(Event::Connected(peer, _)) => {
                    let (client, tx, hello) = (client.clone(), tx.clone(), hello.clone());
                    tokio::spawn(async move {
                        if let Ok(Response { body: ResponseBody::Welcome(w), .. }) =
                            client.request(peer, Request::new(RequestBody::Hello(hello))).await
                        {
                            let _ = tx.send((peer, *w)).await;
                        }
                    });
                }
                Some(Event::Request { peer, request, channel }) => {
                    // Status pushes from hosts we greeted: keep the newest.
                    let body = match request.body {
                        RequestBody::Status(st) => {
                            if let Some(w) = seen.get_mut(&peer)
                                && st.seq > w.status.seq
                            {
                                w.status = *st;
                            }
                            ResponseBody::Ack
                        }
                        _ => ResponseBody::Refused("this node is only looking".into()),
                    };
                    client.respond(channel, Response::new(body)).await;
                }
                Some(_) => {}
                None => break,
            },
            Some((peer, w)) = rx.recv() => { seen.insert(peer, w); }
        }
    }
    let rtts: HashMap<PeerId, Duration> = client.rtts().await.into_iter().collect();
    let mut out: Vec<Seen> = seen
        .into_iter()
        .map(|(peer, welcome)| Seen {
            peer,
            rtt: rtts.get(&peer).copied(),
            welcome,
        })
        .collect();
    out.sort_by_key(|s| s.peer.to_string());
    out
}
