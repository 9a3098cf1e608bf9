//! A look at the pool from here: find the hosts (those this node is told about or meets on
//! the LAN, plus the providers the market knows: their gossiped offers and the DHT's
//! provider records), greet each and collect what it says about itself (`Welcome` with its
//! status), its asking price and the round-trip time to it. Used by `naac pool` and `naac
//! run --explain`; [`discover`] is shared with `naac run` and `naac market`.

use naac_market::{OfferBook, SignedOffer};
use naac_net::{Client, Event, Keypair, Multiaddr, PeerId};
use naac_proto::{Hello, Request, RequestBody, Response, ResponseBody, UserAttestation, Welcome};
use naac_types::Price;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;

/// Most providers a survey dials from what the market says.
const MAX_DIALS: usize = 4096;

/// Finds providers nobody told us about: subscribes to the market's offers (they arrive as
/// [`Event::Gossip`]) and, after `delay` (for the first connections to fill the routing
/// table), looks the commodity class up in the DHT for at most `within` and dials each
/// provider found (a `Connected` event follows). Returns once subscribed; an error means
/// the offers will not be heard (the lookup runs anyway).
pub async fn discover(client: &Client, delay: Duration, within: Duration) -> anyhow::Result<()> {
    let class = naac_market::commodity_class();
    let subscribed = client.subscribe(&naac_market::topic(class)).await;
    let client = client.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        client.bootstrap().await;
        match client
            .get_providers(naac_market::dht_key(class), within)
            .await
        {
            Ok(found) => {
                tracing::debug!("the DHT names {} providers of {class}", found.len());
                for (peer, addrs) in found {
                    if let Some(a) = addrs.into_iter().next()
                        && let Err(e) = client.dial(a).await
                    {
                        tracing::debug!("dial {peer}: {e:#}");
                    }
                }
            }
            Err(e) => tracing::debug!("market lookup: {e:#}"),
        }
    });
    subscribed
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("subscribe to the market's offers: {e:#}"))
}

/// A gossiped market offer, if `data` on `topic` is a valid one.
pub fn offer_of(topic: &str, data: &[u8]) -> Option<SignedOffer> {
    if topic != naac_market::topic(naac_market::commodity_class()) {
        return None;
    }
    SignedOffer::from_bytes(data)
        .map_err(|e| tracing::debug!("dropped a malformed offer: {e}"))
        .ok()
}

/// The provider an offer names and the first address it can be dialled at.
pub fn offer_contact(o: &SignedOffer) -> Option<(PeerId, Multiaddr)> {
    let peer = naac_net::peer_of_ed25519(&o.offer.provider)?;
    let addr = o.offer.addrs.iter().find_map(|a| a.parse().ok())?;
    Some((peer, addr))
}

/// Milliseconds since the Unix epoch (offers' clock).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

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
    /// Its asking price per giga-fuel, from its market offer if one was heard.
    pub ask: Option<Price>,
}

/// Greets every peer that connects within `wait` (and answers within it), dialling the
/// providers the market names (offers and the DHT), and returns the providers among them,
/// sorted by peer id. Peers that are not providers are left out.
pub async fn survey(
    client: &Client,
    events: &mut mpsc::Receiver<Event>,
    user_key: Option<&Keypair>,
    wait: Duration,
) -> Vec<Seen> {
    let deadline = tokio::time::Instant::now() + wait;
    let (tx, mut rx) = mpsc::channel::<(PeerId, Welcome)>(256);
    let mut seen: HashMap<PeerId, Welcome> = HashMap::new();
    let mut offers = OfferBook::new(MAX_DIALS);
    let mut dialled: HashSet<PeerId> = HashSet::new();
    let hello = hello(client, user_key);
    if let Err(e) = discover(client, Duration::from_millis(300), wait / 2).await {
        tracing::warn!("{e:#}");
    }
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
                Some(Event::Gossip { topic, data, .. }) => {
                    // A provider the market knows: dial it (its Hello follows on connection).
                    let Some(o) = offer_of(&topic, &data) else { continue };
                    let contact = offer_contact(&o);
                    // Only offers the book takes (signed, live, newer) lead to a dial.
                    let fresh = matches!(
                        offers.insert(o, unix_ms()),
                        Ok(naac_market::Inserted::New | naac_market::Inserted::Renewed)
                    );
                    if fresh
                        && let Some((peer, addr)) = contact
                        && dialled.len() < MAX_DIALS
                        && !seen.contains_key(&peer)
                        && dialled.insert(peer)
                    {
                        let client = client.clone();
                        tokio::spawn(async move {
                            if let Err(e) = client.dial(addr).await {
                                tracing::debug!("dial {peer}: {e:#}");
                            }
                        });
                    }
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
    let asks: HashMap<PeerId, Price> = offers
        .live(naac_market::commodity_class(), unix_ms())
        .into_iter()
        .filter_map(|o| Some((naac_net::peer_of_ed25519(&o.offer.provider)?, o.offer.price)))
        .collect();
    let mut out: Vec<Seen> = seen
        .into_iter()
        .map(|(peer, welcome)| Seen {
            peer,
            rtt: rtts.get(&peer).copied(),
            ask: asks.get(&peer).copied(),
            welcome,
        })
        .collect();
    out.sort_by_key(|s| s.peer.to_string());
    out
}
