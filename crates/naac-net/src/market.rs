//! The market overlay: gossipsub (offers are published on topics) and Kademlia (providers
//! announce provider records keyed by commodity class; requesters find them in O(log N) hops).
//!
//! This module builds both behaviours and handles their events for the [`EventLoop`]; the
//! commands that drive them arrive through [`crate::Client`].

use crate::{Event, EventLoop};
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{self, GetClosestPeersOk, GetProvidersOk, Mode, QueryId, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol, gossipsub, identify};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The Kademlia protocol name: a private DHT, apart from the public IPFS one.
pub const KAD_PROTOCOL: &str = "/naac/kad/1.0.0";
/// Largest gossip payload: the 64 KiB wire limit less room for the signed envelope (author
/// key, signature, sequence number, topic name up to [`MAX_TOPIC_BYTES`]).
pub const MAX_GOSSIP_BYTES: usize = MAX_GOSSIP_FRAME - 1024;
/// Largest gossip frame on the wire, both ways (gossipsub's `max_transmit_size`). Gossipsub
/// checks only the payload against it when publishing; a frame over it would fail to encode.
const MAX_GOSSIP_FRAME: usize = 64 * 1024;
/// Longest topic name.
pub const MAX_TOPIC_BYTES: usize = 256;
/// Longest provider key.
pub const MAX_KEY_BYTES: usize = 1024;

/// Topics this node may subscribe to, and that a peer may be subscribed to as far as we track.
const MAX_TOPICS: usize = 64;
/// Gossip messages held in the event backlog while the owner is slow; more are dropped.
pub(crate) const MAX_GOSSIP_BACKLOG: usize = 256;
/// Lookups (`get_providers`, address resolution) running at once.
const MAX_LOOKUPS: usize = 64;
/// Providers collected per lookup.
const MAX_PROVIDERS: usize = 64;
/// Peers and addresses per peer kept in the address book.
const MAX_BOOK_PEERS: usize = 4096;
const MAX_ADDRS_PER_PEER: usize = 8;
/// Kademlia message limit (records we carry are small: keys and peer addresses).
const KAD_MAX_PACKET: usize = 16 * 1024;
/// Provider records expire after this unless their provider re-announces them, which kad
/// does every [`PROVIDER_REPUBLISH`].
const PROVIDER_TTL: Duration = Duration::from_secs(60 * 60);
const PROVIDER_REPUBLISH: Duration = Duration::from_secs(20 * 60);
/// An iterative kad query gives up after this.
const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) type Gossipsub = gossipsub::Behaviour<
    gossipsub::IdentityTransform,
    gossipsub::MaxCountSubscriptionFilter<gossipsub::AllowAllSubscriptionFilter>,
>;
pub(crate) type Kademlia = kad::Behaviour<MemoryStore>;
/// Providers found for a key, each with the addresses known for it.
pub type Providers = Vec<(PeerId, Vec<Multiaddr>)>;

/// Why a gossip message was not published.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// No connected peer has subscribed to the topic yet. Usually harmless: nobody is there
    /// to hear it (try again once peers subscribe).
    #[error("no peer is subscribed to topic {0} yet")]
    NoPeers(String),
    #[error("message of {size} bytes is over the {MAX_GOSSIP_BYTES}-byte gossip limit")]
    TooLarge { size: usize },
    #[error("invalid topic: {0}")]
    BadTopic(String),
    #[error("publish failed: {0}")]
    Failed(String),
    #[error("the network event loop has stopped")]
    Stopped,
}

pub(crate) fn gossipsub(key: &libp2p::identity::Keypair) -> anyhow::Result<Gossipsub> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(MAX_GOSSIP_FRAME)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(500))
        // Small networks: keep whatever peers there are. A node below `mesh_n_low` grafts
        // every subscribed neighbour it hears of, so with 2 no chain of single links forms.
        .mesh_n_low(2)
        .mesh_n(4)
        .mesh_n_high(8)
        .mesh_outbound_min(1)
        .gossip_lazy(4)
        .flood_publish(true)
        .connection_handler_queue_len(256)
        .max_publish_messages(256)
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
    let filter = gossipsub::MaxCountSubscriptionFilter {
        filter: gossipsub::AllowAllSubscriptionFilter {},
        max_subscribed_topics: MAX_TOPICS,
        max_subscriptions_per_request: MAX_TOPICS,
    };
    gossipsub::Behaviour::new_with_subscription_filter(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        config,
        filter,
    )
    .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))
}

pub(crate) fn kademlia(peer_id: PeerId) -> Kademlia {
    let mut config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    config
        .set_query_timeout(KAD_QUERY_TIMEOUT)
        .set_max_packet_size(KAD_MAX_PACKET)
        .set_provider_record_ttl(Some(PROVIDER_TTL))
        .set_provider_publication_interval(Some(PROVIDER_REPUBLISH));
    let store = MemoryStore::with_config(
        peer_id,
        MemoryStoreConfig {
            max_records: 256,
            max_value_bytes: 4 * 1024,
            max_provided_keys: 1024,
            max_providers_per_key: 20,
        },
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, config);
    // Serve records even without a confirmed external address (loopback and LAN pools).
    kad.set_mode(Some(Mode::Server));
    kad
}

/// Addresses heard for peers (identify, dialed connections, kad), bounded.
#[derive(Default)]
pub(crate) struct AddressBook {
    map: HashMap<PeerId, Vec<Multiaddr>>,
}

impl AddressBook {
    pub(crate) fn add(&mut self, peer: PeerId, addr: Multiaddr) {
        let addr = strip_p2p(addr);
        if !self.map.contains_key(&peer) && self.map.len() >= MAX_BOOK_PEERS {
            // Forget someone; addresses are hints, and kad keeps its own table.
            if let Some(victim) = self.map.keys().next().copied() {
                self.map.remove(&victim);
            }
        }
        let addrs = self.map.entry(peer).or_default();
        if addrs.contains(&addr) {
            return;
        }
        if addrs.len() >= MAX_ADDRS_PER_PEER {
            addrs.remove(0);
        }
        addrs.push(addr);
    }

    fn get(&self, peer: &PeerId) -> &[Multiaddr] {
        self.map.get(peer).map(Vec::as_slice).unwrap_or_default()
    }
}

/// A lookup waiting for its kad query.
pub(crate) enum Lookup {
    Providers {
        found: Vec<PeerId>,
        reply: oneshot::Sender<anyhow::Result<Providers>>,
        deadline: Instant,
        /// When the last new provider was found.
        last_new: Option<Instant>,
    },
    Peer {
        peer: PeerId,
        found: Vec<Multiaddr>,
        reply: oneshot::Sender<anyhow::Result<Vec<Multiaddr>>>,
        deadline: Instant,
    },
}

/// A provider lookup that found someone answers once no new provider has come for this
/// long, rather than waiting out its deadline for peers that will never answer (a dead peer
/// in the routing table can hold a Kademlia query open for its whole timeout).
pub const PROVIDERS_SETTLE: Duration = Duration::from_millis(500);

impl Lookup {
    /// When it ends: its deadline, or sooner once its answers settled.
    fn deadline(&self) -> Instant {
        match self {
            Lookup::Providers {
                deadline,
                last_new: Some(t),
                ..
            } => (*deadline).min(*t + PROVIDERS_SETTLE),
            Lookup::Providers { deadline, .. } | Lookup::Peer { deadline, .. } => *deadline,
        }
    }
}

pub(crate) enum MarketCommand {
    Subscribe(String, oneshot::Sender<anyhow::Result<()>>),
    Unsubscribe(String),
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), PublishError>>,
    },
    StartProviding(Vec<u8>, oneshot::Sender<anyhow::Result<()>>),
    StopProviding(Vec<u8>),
    GetProviders {
        key: Vec<u8>,
        timeout: Duration,
        reply: oneshot::Sender<anyhow::Result<Providers>>,
    },
    FindPeer {
        peer: PeerId,
        timeout: Duration,
        reply: oneshot::Sender<anyhow::Result<Vec<Multiaddr>>>,
    },
    Bootstrap,
}

impl EventLoop {
    pub(crate) fn on_market_command(&mut self, c: MarketCommand) {
        let me = *self.swarm.local_peer_id();
        let b = self.swarm.behaviour_mut();
        match c {
            MarketCommand::Subscribe(topic, reply) => {
                let t = gossipsub::IdentTopic::new(topic.clone());
                let r = if b.gossipsub.topics().count() >= MAX_TOPICS
                    && !b.gossipsub.topics().any(|h| *h == t.hash())
                {
                    Err(anyhow::anyhow!(
                        "already subscribed to {MAX_TOPICS} topics, the most allowed"
                    ))
                } else {
                    b.gossipsub
                        .subscribe(&t)
                        .map(|_| ())
                        .map_err(|e| anyhow::anyhow!("subscribe to {topic}: {e:?}"))
                };
                let _ = reply.send(r);
            }
            MarketCommand::Unsubscribe(topic) => {
                b.gossipsub.unsubscribe(&gossipsub::IdentTopic::new(topic));
            }
            MarketCommand::Publish { topic, data, reply } => {
                let size = data.len();
                let r = match b
                    .gossipsub
                    .publish(gossipsub::IdentTopic::new(topic.clone()), data)
                {
                    Ok(_) | Err(gossipsub::PublishError::Duplicate) => Ok(()),
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                        Err(PublishError::NoPeers(topic))
                    }
                    Err(gossipsub::PublishError::MessageTooLarge) => {
                        Err(PublishError::TooLarge { size })
                    }
                    Err(e) => Err(PublishError::Failed(format!("{e:?}").to_lowercase())),
                };
                let _ = reply.send(r);
            }
            MarketCommand::StartProviding(key, reply) => {
                let r = b
                    .kad
                    .start_providing(kad::RecordKey::new(&key))
                    .map(|_| ())
                    .map_err(|e| anyhow::anyhow!("store the provider record: {e}"));
                let _ = reply.send(r);
            }
            MarketCommand::StopProviding(key) => {
                b.kad.stop_providing(&kad::RecordKey::new(&key));
            }
            MarketCommand::GetProviders {
                key,
                timeout,
                reply,
            } => {
                if self.lookups.len() >= MAX_LOOKUPS {
                    let _ = reply.send(Err(anyhow::anyhow!(
                        "{MAX_LOOKUPS} lookups are already running"
                    )));
                    return;
                }
                let deadline = Instant::now() + timeout;
                let known: usize = b.kad.kbuckets().map(|k| k.num_entries()).sum();
                if known == 0 {
                    // Nobody to ask yet (the joined peers are still connecting): the
                    // lookup starts with the first peer in the routing table.
                    if self.waiting.len() >= MAX_LOOKUPS {
                        let _ = reply.send(Err(anyhow::anyhow!(
                            "{MAX_LOOKUPS} lookups are already waiting"
                        )));
                    } else {
                        self.waiting.push((key, reply, deadline));
                    }
                    return;
                }
                self.look_up_providers(key, reply, deadline);
            }
            MarketCommand::FindPeer {
                peer,
                timeout,
                reply,
            } => {
                if peer == me {
                    let _ = reply.send(Ok(Vec::new()));
                    return;
                }
                if self.lookups.len() >= MAX_LOOKUPS {
                    let _ = reply.send(Err(anyhow::anyhow!(
                        "{MAX_LOOKUPS} lookups are already running"
                    )));
                    return;
                }
                let id = b.kad.get_closest_peers(peer);
                self.lookups.insert(
                    id,
                    Lookup::Peer {
                        peer,
                        found: Vec::new(),
                        reply,
                        deadline: Instant::now() + timeout,
                    },
                );
            }
            MarketCommand::Bootstrap => {
                if b.kad.bootstrap().is_err() {
                    tracing::debug!("kad bootstrap: no known peers yet");
                }
            }
        }
    }

    /// Ends lookups whose deadline has passed, answering with what they found so far (a
    /// lookup still waiting for a first peer found nothing).
    pub(crate) fn expire_lookups(&mut self) {
        let now = Instant::now();
        let (over, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, _, deadline)| *deadline <= now);
        self.waiting = wait;
        for (_, reply, _) in over {
            let _ = reply.send(Ok(Vec::new()));
        }
        let expired: Vec<QueryId> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.deadline() <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
            self.finish_lookup(id);
        }
    }

    fn finish_lookup(&mut self, id: QueryId) {
        let Some(lookup) = self.lookups.remove(&id) else {
            return;
        };
        match lookup {
            Lookup::Providers { found, reply, .. } => {
                let with_addrs = found
                    .into_iter()
                    .map(|p| (p, self.addresses_of(&p, Vec::new())))
                    .collect();
                let _ = reply.send(Ok(with_addrs));
            }
            Lookup::Peer {
                peer, found, reply, ..
            } => {
                let addrs = self.addresses_of(&peer, found);
                let _ = reply.send(Ok(addrs));
            }
        }
    }

    /// Every address known for `peer` (address book, kad routing table, `extra`), each ending
    /// in `/p2p/<peer>` so it can be dialed as is.
    fn addresses_of(&mut self, peer: &PeerId, extra: Vec<Multiaddr>) -> Vec<Multiaddr> {
        let mut all: Vec<Multiaddr> = Vec::new();
        let mut push = |a: Multiaddr| {
            let a = strip_p2p(a);
            if !all.contains(&a) && all.len() < MAX_ADDRS_PER_PEER * 2 {
                all.push(a);
            }
        };
        for a in self.book.get(peer) {
            push(a.clone());
        }
        if let Some(bucket) = self.swarm.behaviour_mut().kad.kbucket(*peer) {
            for e in bucket.iter() {
                if e.node.key.preimage() == peer {
                    for a in e.node.value.iter() {
                        push(a.clone());
                    }
                }
            }
        }
        for a in extra {
            push(a);
        }
        // Nothing this node may dial (a provider behind NAT, known by its LAN addresses):
        // try it through each relay this node joined, where it may hold a reservation.
        let circuit = |a: &Multiaddr| a.iter().any(|p| p == Protocol::P2pCircuit);
        if !all.iter().any(|a| circuit(a) || self.guard.allows(a)) {
            for relay in &self.relays_joined {
                if let Some(at) = self
                    .join
                    .iter()
                    .find(|j| crate::reach::peer_of(j) == Some(*relay))
                {
                    all.push(at.clone().with(Protocol::P2pCircuit));
                }
            }
        }
        all.into_iter()
            .filter_map(|a| a.with_p2p(*peer).ok())
            .collect()
    }

    pub(crate) fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        let speaks_kad = info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL);
        for addr in info.listen_addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
            let addr = strip_p2p(addr);
            if speaks_kad {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
            self.book.add(peer, addr);
        }
    }

    pub(crate) fn on_dialed(&mut self, peer: PeerId, addr: Multiaddr) {
        let addr = strip_p2p(addr);
        // The DHT is never walked through relays: a peer behind one is no DHT server.
        if !addr.iter().any(|p| p == Protocol::P2pCircuit) {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
        }
        self.book.add(peer, addr);
    }

    pub(crate) fn on_gossipsub(&mut self, ev: gossipsub::Event) {
        match ev {
            gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            } => {
                self.emit(Event::Gossip {
                    source: message.source,
                    propagated_by: propagation_source,
                    topic: message.topic.into_string(),
                    data: message.data,
                });
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                tracing::trace!("gossip: {peer_id} subscribed to {topic}");
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::debug!("gossip: {peer_id} is slow: {failed_messages:?}");
            }
            _ => {}
        }
    }

    pub(crate) fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => self.on_query(id, result, step.last),
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer,
                addresses,
                ..
            } => {
                for a in addresses.iter() {
                    self.book.add(peer, a.clone());
                }
                if is_new_peer {
                    self.on_new_kad_peer();
                }
            }
            _ => {}
        }
    }

    /// The first peer in an empty routing table: announce what we provide now rather than
    /// at the next republication (a node may `start_providing` before it knows anyone).
    fn on_new_kad_peer(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let known: usize = kad.kbuckets().map(|b| b.num_entries()).sum();
        if known == 1 {
            self.announce_again();
            for (key, reply, deadline) in std::mem::take(&mut self.waiting) {
                self.look_up_providers(key, reply, deadline);
            }
        }
    }

    /// Starts a Kademlia lookup of `key`'s providers, answered at its end or `deadline`.
    fn look_up_providers(
        &mut self,
        key: Vec<u8>,
        reply: oneshot::Sender<anyhow::Result<Providers>>,
        deadline: Instant,
    ) {
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(kad::RecordKey::new(&key));
        self.lookups.insert(
            id,
            Lookup::Providers {
                found: Vec::new(),
                reply,
                deadline,
                last_new: None,
            },
        );
    }

    /// Announces every provider record again now: the first peer arrived, or this node's
    /// external addresses changed (a relay reservation holds), which the records carry.
    pub(crate) fn announce_again(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let keys: Vec<kad::RecordKey> = kad.store_mut().provided().map(|r| r.key.clone()).collect();
        for key in keys {
            if let Err(e) = kad.start_providing(key) {
                tracing::debug!("kad: re-announce failed: {e}");
            }
        }
    }

    fn on_query(&mut self, id: QueryId, result: QueryResult, last: bool) {
        let me = *self.swarm.local_peer_id();
        match result {
            QueryResult::GetProviders(r) => {
                if let Some(Lookup::Providers {
                    found, last_new, ..
                }) = self.lookups.get_mut(&id)
                {
                    if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = r {
                        for p in providers {
                            if p != me && !found.contains(&p) && found.len() < MAX_PROVIDERS {
                                found.push(p);
                                *last_new = Some(Instant::now());
                            }
                        }
                    } else if let Err(e) = r {
                        tracing::debug!("kad: provider lookup: {e}");
                    }
                }
            }
            QueryResult::GetClosestPeers(r) => {
                let peers = match r {
                    Ok(GetClosestPeersOk { peers, .. }) => peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                if let Some(Lookup::Peer { peer, found, .. }) = self.lookups.get_mut(&id) {
                    for info in peers.into_iter().filter(|i| i.peer_id == *peer) {
                        found.extend(info.addrs.into_iter().take(MAX_ADDRS_PER_PEER));
                    }
                }
            }
            QueryResult::StartProviding(r) | QueryResult::RepublishProvider(r) => match r {
                Ok(ok) => tracing::debug!("kad: announced provider record {:?}", ok.key),
                Err(e) => tracing::debug!("kad: provider announcement: {e}"),
            },
            QueryResult::Bootstrap(Err(e)) => tracing::debug!("kad bootstrap: {e}"),
            _ => {}
        }
        if last {
            self.finish_lookup(id);
        }
    }
}

/// Which kind of network an address is on, as far as dialling it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Reachable from anywhere: dial it whoever named it.
    Global,
    /// This machine (127.0.0.0/8, ::1, `localhost`).
    Loopback,
    /// One private range (10/8, 172.16/12, 192.168/16, 100.64/10, 198.18/15, fc00::/7).
    Private(u8),
    /// Never dialled on a stranger's word: link-local, unspecified, multicast, reserved and
    /// documentation ranges, `.local` names, and anything without an IP or DNS host.
    Never,
}

fn scope(addr: &Multiaddr) -> Scope {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => scope4(ip),
        Some(Protocol::Ip6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => scope4(v4),
            None if ip.is_loopback() => Scope::Loopback,
            None if ip.is_unspecified() || ip.is_multicast() => Scope::Never,
            // fe80::/10 link-local; 2001:db8::/32 documentation.
            None if ip.segments()[0] & 0xffc0 == 0xfe80
                || ip.segments()[..2] == [0x2001, 0xdb8] =>
            {
                Scope::Never
            }
            None if ip.segments()[0] & 0xfe00 == 0xfc00 => Scope::Private(6),
            None => Scope::Global,
        },
        Some(
            Protocol::Dns(name)
            | Protocol::Dns4(name)
            | Protocol::Dns6(name)
            | Protocol::Dnsaddr(name),
        ) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                Scope::Loopback
            } else if name.ends_with(".local") || !name.contains('.') {
                Scope::Never
            } else {
                Scope::Global
            }
        }
        _ => Scope::Never,
    }
}

/// Whether `addr` is a public Internet address (not through a relay): the only kind that
/// makes a node reachable from anywhere.
pub(crate) fn is_global(addr: &Multiaddr) -> bool {
    scope(addr) == Scope::Global && !addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// IPv4 ranges taken as the Internet (`NAAC_GLOBAL_RANGES`, comma-separated CIDRs), for a
/// lab whose "Internet" is a private or benchmark range, such as `scripts/nat-lab.sh`'s.
fn lab_global(ip: std::net::Ipv4Addr) -> bool {
    static RANGES: std::sync::OnceLock<Vec<(u32, u32)>> = std::sync::OnceLock::new();
    let ranges = RANGES.get_or_init(|| {
        std::env::var("NAAC_GLOBAL_RANGES")
            .unwrap_or_default()
            .split(',')
            .filter_map(|r| {
                let (net, bits) = r.trim().split_once('/')?;
                let net: std::net::Ipv4Addr = net.parse().ok()?;
                let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                Some((u32::from(net) & mask, mask))
            })
            .collect()
    });
    ranges
        .iter()
        .any(|(net, mask)| u32::from(ip) & mask == *net)
}

fn scope4(ip: std::net::Ipv4Addr) -> Scope {
    let [a, b, ..] = ip.octets();
    if lab_global(ip) {
        Scope::Global
    } else if ip.is_loopback() {
        Scope::Loopback
    } else if a == 10 {
        Scope::Private(10)
    } else if a == 172 && b & 0xf0 == 16 {
        Scope::Private(172)
    } else if a == 192 && b == 168 {
        Scope::Private(192)
    } else if a == 100 && b & 0xc0 == 64 {
        Scope::Private(100)
    } else if a == 198 && b & 0xfe == 18 {
        Scope::Private(198)
    } else if a == 0 || a >= 224 || ip.is_link_local() || ip.is_broadcast() || ip.is_documentation()
    {
        Scope::Never
    } else {
        Scope::Global
    }
}

/// Whether to dial `addr`, learned from the wide-area market (a gossiped offer, a DHT
/// record): a global address always; a loopback or private one only when one of `home`
/// (the addresses this node was told to listen on or join, [`crate::Client::home`]) is on
/// the same kind of network — so a stranger cannot make a node on the internet dial into
/// its own machine or LAN, while a pool on one machine or one LAN (and every test on
/// 127.0.0.1) works as before. Link-local, multicast, unspecified and reserved addresses
/// are never dialled on a stranger's word. Hosts on the LAN are found by mDNS instead.
pub fn dialable_from_wan(addr: &Multiaddr, home: &[Multiaddr]) -> bool {
    match scope(addr) {
        Scope::Global => true,
        Scope::Never => false,
        s => home.iter().any(|h| scope(h) == s),
    }
}

/// Drops a trailing `/p2p/<id>`.
fn strip_p2p(mut addr: Multiaddr) -> Multiaddr {
    if let Some(Protocol::P2p(_)) = addr.iter().last() {
        addr.pop();
    }
    addr
}

/// Checks a topic name before it goes to the event loop.
pub(crate) fn check_topic(topic: &str) -> Result<(), PublishError> {
    if topic.is_empty() {
        return Err(PublishError::BadTopic("empty topic name".into()));
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(PublishError::BadTopic(format!(
            "topic name is over {MAX_TOPIC_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks a provider key before it goes to the event loop.
pub(crate) fn check_key(key: &[u8]) -> anyhow::Result<()> {
    anyhow::ensure!(!key.is_empty(), "empty provider key");
    anyhow::ensure!(
        key.len() <= MAX_KEY_BYTES,
        "provider key of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
        key.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn only_global_addresses_are_dialled_on_a_strangers_word() {
        let wan = [a("/ip4/0.0.0.0/tcp/0"), a("/ip4/203.0.113.9/tcp/4001")];
        for ok in [
            "/ip4/8.8.4.4/tcp/1",
            "/ip6/2a00:1450::1/tcp/1",
            "/dns4/example.org/tcp/1",
        ] {
            assert!(dialable_from_wan(&a(ok), &wan), "{ok}");
        }
        for no in [
            "/ip4/127.0.0.1/tcp/22",
            "/ip4/10.1.2.3/tcp/1",
            "/ip4/172.20.0.1/tcp/1",
            "/ip4/192.168.1.1/tcp/80",
            "/ip4/169.254.169.254/tcp/80",
            "/ip4/0.0.0.0/tcp/1",
            "/ip4/224.0.0.1/tcp/1",
            "/ip6/::1/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/::ffff:127.0.0.1/tcp/1",
            "/dns4/localhost/tcp/1",
            "/dns4/printer.local/tcp/1",
        ] {
            assert!(!dialable_from_wan(&a(no), &wan), "{no}");
        }
        // A node that listens on or joined through loopback (one machine, the tests) or a
        // private range (one LAN) dials that kind of address too, and no other.
        let local = [a("/ip4/127.0.0.1/tcp/0"), a("/ip4/192.168.1.5/tcp/4001")];
        assert!(dialable_from_wan(&a("/ip4/127.0.0.1/tcp/9"), &local));
        assert!(dialable_from_wan(&a("/ip4/192.168.7.1/tcp/9"), &local));
        assert!(!dialable_from_wan(&a("/ip4/10.0.0.1/tcp/9"), &local));
        assert!(!dialable_from_wan(&a("/ip4/169.254.0.1/tcp/9"), &local));
    }
}
