//! A look at the pool from here: find the hosts (those this node is told about or meets on
//! the LAN, plus the providers the market knows: their gossiped offers and the DHT's
//! provider records), greet each and collect what it says about itself (`Welcome` with its
//! status), its asking price and the round-trip time to it. Used by `naac pool` and `naac
//! run --explain`; [`discover`] and the offer listener [`Market`] are shared with `naac run`
//! and `naac market`.

use naac_market::{OfferBook, SignedOffer};
use naac_net::{Client, Event, Keypair, Multiaddr, PeerId};
use naac_proto::{Hello, Request, RequestBody, Response, ResponseBody, UserAttestation, Welcome};
use naac_types::Price;
use std::collections::HashMap;
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
                    // Only addresses fit to dial on a stranger's word (see Market).
                    let addrs: Vec<Multiaddr> = addrs
                        .into_iter()
                        .filter(|a| naac_net::dialable_from_wan(a, client.home()))
                        .collect();
                    if !addrs.is_empty()
                        && let Err(e) = client.dial_peer(peer, addrs).await
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

/// What the market says, as heard on its gossip topic: a bounded book of live offers, and
/// the providers dialled because of them. One listener for `naac run`, `naac pool` and
/// `naac market`.
///
/// Offer keys are free, so an offer counts only when it travels under its own provider's
/// gossip signature (the gossip author is the provider: one author, one offer), and the
/// book charges each offer to the neighbour that forwarded it and to its address's network,
/// neither of which may fill more than a share of it ([`OfferBook::insert_from`]). An offer's
/// address is dialled only when it is global or on a network this node is on itself
/// ([`naac_net::dialable_from_wan`]).
pub struct Market {
    book: OfferBook,
    /// Providers dialled because of an offer, and when (Unix ms).
    dialled: HashMap<PeerId, u64>,
    max: usize,
    /// This node's own addresses (listen and join): which private networks it may dial.
    home: Vec<Multiaddr>,
    /// Offers dropped because their gossip author was not their provider.
    pub not_own: u64,
}

/// A provider dialled from an offer is not dialled again for this long; after it, it may
/// be, and it may be forgotten to make room (so a flood of offers from fresh keys cannot
/// fill the set for good and keep a real provider from being dialled).
pub const REDIAL_MS: u64 = 30_000;

impl Market {
    /// Keeps at most `max` offers and dials at most `max` providers; `home` is this node's
    /// own addresses ([`Client::home`]).
    pub fn new(max: usize, home: &[Multiaddr]) -> Self {
        Self {
            book: OfferBook::new(max),
            dialled: HashMap::new(),
            max,
            home: home.to_vec(),
            not_own: 0,
        }
    }

    /// Takes what arrived on `topic`, written by gossip author `source` and forwarded by
    /// `via`. When it is a fresh offer (signed, live, newer than the one kept) published by
    /// its own provider, not dialled lately, at an address fit to dial, and `want` says so,
    /// returns where to dial it (its `Hello` follows on connection).
    pub fn heard(
        &mut self,
        topic: &str,
        data: &[u8],
        source: Option<PeerId>,
        via: PeerId,
        want: impl FnOnce(&PeerId, &naac_market::Offer) -> bool,
    ) -> Option<(PeerId, Vec<Multiaddr>)> {
        let offer = offer_of(topic, data)?;
        if source.is_none() || naac_net::peer_of_ed25519(&offer.offer.provider) != source {
            // Someone else's offer for a key of its own making: keys are free, authors
            // cost a signature on the author's own gossip, so one author, one offer.
            self.not_own += 1;
            tracing::debug!(
                "dropped an offer not published by its provider ({} so far)",
                self.not_own
            );
            return None;
        }
        let now = unix_ms();
        self.book.expire(now);
        let o = offer.offer.clone();
        let contact = offer_contact(&offer, &self.home);
        match self.book.insert_from(offer, now, &via.to_bytes()) {
            Ok(naac_market::Inserted::Stale) => return None,
            Err(e) => {
                tracing::debug!("offer dropped: {e}");
                return None;
            }
            Ok(_) => {}
        }
        let (peer, addr) = contact?;
        if self
            .dialled
            .get(&peer)
            .is_some_and(|at| now.saturating_sub(*at) < REDIAL_MS)
            || !want(&peer, &o)
        {
            return None;
        }
        if self.dialled.len() >= self.max && !self.dialled.contains_key(&peer) {
            // Full: forget the dials old enough to be tried again; still full, the oldest.
            self.dialled
                .retain(|_, at| now.saturating_sub(*at) < REDIAL_MS);
            if self.dialled.len() >= self.max
                && let Some(oldest) = self
                    .dialled
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(p, _)| *p)
            {
                self.dialled.remove(&oldest);
            }
        }
        self.dialled.insert(peer, now);
        Some((peer, addr))
    }

    /// The live offers of this node's commodity class.
    pub fn live(&self) -> Vec<&SignedOffer> {
        self.book.live(naac_market::commodity_class(), unix_ms())
    }

    /// Each live offer's asking price, by provider.
    pub fn asks(&self) -> HashMap<PeerId, Price> {
        self.live()
            .into_iter()
            .filter_map(|o| Some((naac_net::peer_of_ed25519(&o.offer.provider)?, o.offer.price)))
            .collect()
    }
}

/// Dials a provider the market named at any of its dialable addresses (one of them may be
/// through a relay), in the background.
pub fn dial(client: &Client, peer: PeerId, addrs: Vec<Multiaddr>) {
    tracing::debug!("dialling {peer}, found on the market at {addrs:?}");
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(e) = client.dial_peer(peer, addrs).await {
            tracing::debug!("dial {peer}: {e:#}");
        }
    });
}

/// Listens for offers for `wait` (answering requests with a refusal: this node only looks)
/// and returns what the market said.
pub async fn listen(client: &Client, events: &mut mpsc::Receiver<Event>, wait: Duration) -> Market {
    let mut market = Market::new(MAX_DIALS, client.home());
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            ev = events.recv() => match ev {
                Some(Event::Gossip { topic, data, source, propagated_by }) => {
                    market.heard(&topic, &data, source, propagated_by, |_, _| false);
                }
                Some(Event::Request { channel, .. }) => {
                    let body = ResponseBody::Refused("this node is only looking".into());
                    client.respond(channel, Response::new(body)).await;
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    market
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

/// The provider an offer names and the first of its addresses fit to dial from a node
/// whose own addresses are `home` ([`naac_net::dialable_from_wan`]).
pub fn offer_contact(o: &SignedOffer, home: &[Multiaddr]) -> Option<(PeerId, Vec<Multiaddr>)> {
    let peer = naac_net::peer_of_ed25519(&o.offer.provider)?;
    let addrs: Vec<Multiaddr> = o
        .offer
        .addrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .filter(|a| naac_net::dialable_from_wan(a, home))
        .collect();
    (!addrs.is_empty()).then_some((peer, addrs))
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
        pass: None,
    }
}

/// One host as seen from here.
#[derive(Clone, Debug)]
pub struct Seen {
    pub peer: PeerId,
    pub welcome: Welcome,
    pub rtt: Option<Duration>,
    /// How it is reached from here: directly, or only through a relay.
    pub path: Option<naac_net::Path>,
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
    pass: Option<naac_proto::Pass>,
    wait: Duration,
) -> Vec<Seen> {
    let deadline = tokio::time::Instant::now() + wait;
    let (tx, mut rx) = mpsc::channel::<(PeerId, Welcome)>(256);
    let mut seen: HashMap<PeerId, Welcome> = HashMap::new();
    let mut market = Market::new(MAX_DIALS, client.home());
    let hello = Hello {
        pass,
        ..hello(client, user_key)
    };
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
                Some(Event::Gossip { topic, data, source, propagated_by }) => {
                    // A provider the market knows: dial it (its Hello follows on connection).
                    if let Some((peer, addr)) = market.heard(
                        &topic,
                        &data,
                        source,
                        propagated_by,
                        |peer, _| !seen.contains_key(peer),
                    ) {
                        dial(client, peer, addr);
                    }
                }
                Some(Event::Request { peer, request, channel, .. }) => {
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
    let paths: HashMap<PeerId, naac_net::Path> = client.paths().await.into_iter().collect();
    let asks = market.asks();
    let mut out: Vec<Seen> = seen
        .into_iter()
        .map(|(peer, welcome)| Seen {
            peer,
            rtt: rtts.get(&peer).copied(),
            path: paths.get(&peer).copied(),
            ask: asks.get(&peer).copied(),
            welcome,
        })
        .collect();
    out.sort_by_key(|s| s.peer.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use naac_market::Offer;

    /// A signed offer from `key`, reachable at `addr`.
    fn offer_of_key(key: &Keypair, now: u64, addr: &str) -> Vec<u8> {
        let peer = key.public().to_peer_id();
        let offer = Offer {
            provider: naac_net::ed25519_of_keypair(key).expect("ed25519"),
            class: naac_market::commodity_class().to_string(),
            cores: 1,
            memory: 1 << 30,
            score_milli: 1000,
            slots: 1,
            free_slots: 1,
            price: Price(1),
            max_task_memory: 0,
            accepting: true,
            addrs: vec![format!("{addr}/p2p/{peer}")],
            seq: 1,
            issued_ms: now,
            expires_ms: now + 30_000,
        };
        let sig = naac_net::sign(key, &offer.signing_bytes());
        SignedOffer { offer, sig }.to_bytes().expect("encodes")
    }

    /// A signed offer from a fresh key, reachable at a loopback address.
    fn offer(now: u64) -> (PeerId, Vec<u8>) {
        let key = Keypair::generate_ed25519();
        let data = offer_of_key(&key, now, "/ip4/127.0.0.1/tcp/4001");
        (key.public().to_peer_id(), data)
    }

    fn loopback() -> Vec<Multiaddr> {
        vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")]
    }

    #[test]
    fn a_flood_of_offers_from_fresh_keys_cannot_keep_a_real_provider_from_being_dialled() {
        let topic = naac_market::topic(naac_market::commodity_class());
        let mut m = Market::new(64, &loopback());
        let now = unix_ms();
        let mut dialled = 0;
        for _ in 0..200 {
            let (peer, data) = offer(now);
            // Each fresh key also authors its own gossip, through many neighbours.
            let via = PeerId::random();
            dialled += usize::from(
                m.heard(&topic, &data, Some(peer), via, |_, _| true)
                    .is_some(),
            );
        }
        assert_eq!(dialled, 200, "each fresh provider is dialled once");
        let (real, data) = offer(now);
        let contact = m.heard(&topic, &data, Some(real), PeerId::random(), |_, _| true);
        assert_eq!(
            contact.map(|(p, _)| p),
            Some(real),
            "the real provider is dialled"
        );
        assert!(m.dialled.len() <= 64, "the dialled set stays bounded");
        // The same offer again soon after: not dialled twice.
        assert!(
            m.heard(&topic, &data, Some(real), PeerId::random(), |_, _| true)
                .is_none()
        );
    }

    #[test]
    fn offers_count_only_under_their_own_providers_gossip_signature() {
        let topic = naac_market::topic(naac_market::commodity_class());
        let mut m = Market::new(4096, &loopback());
        let now = unix_ms();
        let author = PeerId::random();
        for _ in 0..5_000 {
            let (_, data) = offer(now);
            assert!(
                m.heard(&topic, &data, Some(author), author, |_, _| true)
                    .is_none()
            );
        }
        assert_eq!(m.not_own, 5_000);
        assert!(m.live().is_empty(), "the book holds none of them");
        let (real, data) = offer(now);
        assert_eq!(
            m.heard(&topic, &data, Some(real), author, |_, _| true)
                .map(|(p, _)| p),
            Some(real)
        );
    }

    #[test]
    fn private_addresses_heard_from_the_market_are_dialled_only_on_a_network_of_ours() {
        let topic = naac_market::topic(naac_market::commodity_class());
        let now = unix_ms();
        let wan: Vec<Multiaddr> = vec!["/ip4/0.0.0.0/tcp/0".parse().expect("multiaddr")];
        for (addr, home, dialled) in [
            ("/ip4/127.0.0.1/tcp/22", &wan, false),
            ("/ip4/192.168.0.1/tcp/80", &wan, false),
            ("/ip4/169.254.169.254/tcp/80", &loopback(), false),
            ("/ip4/127.0.0.1/tcp/4001", &loopback(), true),
            ("/ip4/8.8.8.8/tcp/4001", &wan, true),
        ] {
            let mut m = Market::new(16, home);
            let key = Keypair::generate_ed25519();
            let peer = key.public().to_peer_id();
            let data = offer_of_key(&key, now, addr);
            let contact = m.heard(&topic, &data, Some(peer), peer, |_, _| true);
            assert_eq!(contact.is_some(), dialled, "{addr} from {home:?}");
        }
    }
}
