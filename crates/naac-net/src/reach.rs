//! Reaching nodes behind NAT: a node may serve as a circuit relay (libp2p relay v2) and an
//! AutoNAT server; every node can dial through a relay, keeps a reservation on the relays it
//! joined when asked to (so peers reach it at a `/p2p-circuit` address), upgrades relayed
//! connections to direct ones by hole punching (DCUtR), and learns which of its addresses
//! are reachable from outside (AutoNAT v2).

use super::{EventLoop, Protocol};
use crate::market::is_global;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, autonat, dcutr, identify, relay};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The relay protocol a peer lists in identify when it serves reservations.
const HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

/// What a relay carries, sized so it serves signalling and small jobs, not bulk data.
#[derive(Clone, Debug)]
pub struct RelayLimits {
    /// Peers holding a reservation at once.
    pub max_reservations: usize,
    /// Relayed connections at once, and per peer.
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    /// How long one relayed connection may last, and how many bytes it may carry (each way).
    pub circuit_duration: Duration,
    pub circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_reservations: 128,
            max_circuits: 32,
            max_circuits_per_peer: 4,
            circuit_duration: Duration::from_secs(10 * 60),
            circuit_bytes: 16 << 20,
        }
    }
}

/// The relay server's behaviour under `limits`.
pub(crate) fn relay_server(peer: PeerId, limits: &RelayLimits) -> relay::Behaviour {
    let config = relay::Config {
        max_reservations: limits.max_reservations,
        max_circuits: limits.max_circuits,
        max_circuits_per_peer: limits.max_circuits_per_peer,
        max_circuit_duration: limits.circuit_duration,
        max_circuit_bytes: limits.circuit_bytes,
        ..relay::Config::default()
    };
    relay::Behaviour::new(peer, config)
}

/// A hole-punching behaviour.
pub(crate) fn dcutr(peer: PeerId) -> dcutr::Behaviour {
    dcutr::Behaviour::new(peer)
}

/// The AutoNAT v2 client (every node) and server (relays only).
pub(crate) fn autonat_client() -> autonat::v2::client::Behaviour {
    autonat::v2::client::Behaviour::default()
}

pub(crate) fn autonat_server() -> autonat::v2::server::Behaviour {
    autonat::v2::server::Behaviour::default()
}

/// How a peer is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// At least one direct connection.
    Direct,
    /// Only through a relay.
    Relayed,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Relayed => "relayed",
        }
    }
}

/// One open connection: its peer, whether it goes through a relay, and which (when its
/// address says).
struct Conn {
    peer: PeerId,
    relayed: bool,
    relay: Option<PeerId>,
}

/// Open connections, and what each relay lets one relayed connection carry, as it said when
/// the circuit opened.
#[derive(Default)]
pub(crate) struct Paths {
    conns: HashMap<ConnectionId, Conn>,
    /// Bytes one relayed connection may carry each way: by relay for circuits this node
    /// opened, by the peer at the other end for circuits opened to it.
    limit_by_relay: HashMap<PeerId, u64>,
    limit_by_peer: HashMap<PeerId, u64>,
}

/// Relays and peers whose circuit limits are remembered, at most.
const MAX_LIMITS: usize = 1024;

impl Paths {
    /// A connection opened at `addr` (the remote address when dialled, the local one when
    /// accepted: either names the relay of a relayed connection).
    pub(crate) fn opened(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        relayed: bool,
        addr: &Multiaddr,
    ) {
        let relay = if relayed { relay_in(addr) } else { None };
        self.conns.insert(
            id,
            Conn {
                peer,
                relayed,
                relay,
            },
        );
    }

    pub(crate) fn closed(&mut self, id: ConnectionId) {
        self.conns.remove(&id);
    }

    /// How many relayed connections are open.
    pub(crate) fn relayed_count(&self) -> usize {
        self.conns.values().filter(|c| c.relayed).count()
    }

    /// The connection goes through a relay.
    pub(crate) fn is_relayed(&self, id: ConnectionId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.relayed)
    }

    fn of(&self, peer: PeerId) -> impl Iterator<Item = (&ConnectionId, &Conn)> + '_ {
        self.conns.iter().filter(move |(_, c)| c.peer == peer)
    }

    pub(crate) fn has_direct(&self, peer: PeerId) -> bool {
        self.of(peer).any(|(_, c)| !c.relayed)
    }

    pub(crate) fn relayed_of(&self, peer: PeerId) -> Vec<ConnectionId> {
        self.of(peer)
            .filter(|(_, c)| c.relayed)
            .map(|(id, _)| *id)
            .collect()
    }

    pub(crate) fn paths(&self) -> Vec<(PeerId, Path)> {
        let mut by_peer: HashMap<PeerId, Path> = HashMap::new();
        for c in self.conns.values() {
            let path = if c.relayed {
                Path::Relayed
            } else {
                Path::Direct
            };
            let e = by_peer.entry(c.peer).or_insert(path);
            if path == Path::Direct {
                *e = Path::Direct;
            }
        }
        by_peer.into_iter().collect()
    }

    fn remember(map: &mut HashMap<PeerId, u64>, key: PeerId, bytes: u64) {
        if map.len() >= MAX_LIMITS && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, bytes);
    }

    pub(crate) fn circuit_from_relay(&mut self, relay: PeerId, bytes: Option<u64>) {
        if let Some(b) = bytes {
            Self::remember(&mut self.limit_by_relay, relay, b);
        }
    }

    pub(crate) fn circuit_from_peer(&mut self, peer: PeerId, bytes: Option<u64>) {
        if let Some(b) = bytes {
            Self::remember(&mut self.limit_by_peer, peer, b);
        }
    }

    /// The most bytes a message to `peer` can take when it is reached only through relays
    /// (the largest limit among its relayed connections); `None` when a direct connection
    /// exists, or no relay said.
    pub(crate) fn relay_limit(&self, peer: PeerId) -> Option<u64> {
        if self.has_direct(peer) {
            return None;
        }
        self.of(peer)
            .filter(|(_, c)| c.relayed)
            .filter_map(|(_, c)| {
                c.relay
                    .and_then(|r| self.limit_by_relay.get(&r))
                    .or_else(|| self.limit_by_peer.get(&peer))
                    .copied()
            })
            .max()
    }
}

/// The relay a connection's address goes through (`/…/p2p/RELAY/p2p-circuit/…`), if any.
pub(crate) fn relay_in(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => last = Some(id),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

/// `addr` with its trailing `/p2p/<id>`, if it has one.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(p)) => Some(p),
        _ => None,
    }
}

/// A relayed connection to a peer reached directly closes at the latest this long after
/// the hole was punched, even with requests on it.
const RETIRE_WITHIN: Duration = Duration::from_secs(30);

/// The first wait before a lost joined peer is dialled again, and the longest.
const REJOIN_FIRST: Duration = Duration::from_secs(1);
const REJOIN_MAX: Duration = Duration::from_secs(30);

impl EventLoop {
    /// The last connection to `peer` closed: a peer this node joined (a relay, a bootstrap
    /// node) is dialled again until it answers, and its reservation asked for again then.
    pub(crate) fn lost_joined(&mut self, peer: PeerId) {
        self.reserved.remove(&peer);
        if self.relays_joined.remove(&peer) {
            self.update_kad_mode();
        }
        if self.join.iter().any(|a| peer_of(a) == Some(peer)) {
            tracing::info!("lost joined peer {peer}: dialling it again");
            self.rejoin
                .insert(peer, (Instant::now() + REJOIN_FIRST, REJOIN_FIRST));
        }
    }

    /// Dials the lost joined peers whose time has come, each waiting twice as long next.
    pub(crate) fn rejoin_due(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .rejoin
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            let Some(addr) = self.join.iter().find(|a| peer_of(a) == Some(peer)).cloned() else {
                self.rejoin.remove(&peer);
                continue;
            };
            if let Some((at, wait)) = self.rejoin.get_mut(&peer) {
                *wait = (*wait * 2).min(REJOIN_MAX);
                *at = now + *wait;
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!("dial {addr} again: {e}");
            }
        }
    }

    /// A relay serves reservations only at addresses it knows to be reachable: its
    /// operator put it on a reachable address (`--listen`), so each address it listens on
    /// (not a relayed one) is taken as its external address.
    pub(crate) fn relay_listening(&mut self, addr: &Multiaddr) {
        if self.relaying && !addr.iter().any(|p| p == Protocol::P2pCircuit) {
            self.swarm.add_external_address(addr.clone());
        }
    }

    /// A peer said what it speaks: when it is a relay this node joined, this node is on
    /// the Internet (a DHT client until a public address of its own is confirmed), and when
    /// it keeps reservations and has no public address, it listens through the relay (once
    /// per relay).
    pub(crate) fn reserve_if_relay(&mut self, peer: PeerId, info: &identify::Info) {
        if !info.protocols.iter().any(|p| p.as_ref() == HOP_PROTOCOL) {
            return;
        }
        let Some(addr) = self.join.iter().find(|a| peer_of(a) == Some(peer)).cloned() else {
            return;
        };
        if self.relays_joined.insert(peer) {
            self.update_kad_mode();
        }
        if !self.reserve || self.public.is_some() || self.reserved.contains_key(&peer) {
            return;
        }
        let circuit = addr.with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                self.reserved.insert(peer, id);
                tracing::debug!("asking relay {peer} for a reservation");
            }
            Err(e) => tracing::warn!("cannot listen through relay {circuit}: {e}"),
        }
    }

    /// Kademlia serves the DHT (server mode) only where others can reach it: on a relay, at
    /// a confirmed public address, or in a pool that joined no relay (one machine, one
    /// LAN). A node that joined a relay and has no public address of its own is a client:
    /// nobody routes DHT queries through relays to it.
    pub(crate) fn update_kad_mode(&mut self) {
        let server = self.relaying || self.public.is_some() || self.relays_joined.is_empty();
        if server != self.kad_server {
            self.kad_server = server;
            let mode = if server {
                libp2p::kad::Mode::Server
            } else {
                libp2p::kad::Mode::Client
            };
            tracing::debug!("kad: {mode:?} mode");
            self.swarm.behaviour_mut().kad.set_mode(Some(mode));
        }
    }

    pub(crate) fn on_relay_client(&mut self, ev: relay::client::Event) {
        match ev {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                if !renewal {
                    tracing::info!(
                        "reachable through relay {relay_peer_id} (no public address confirmed)"
                    );
                }
            }
            relay::client::Event::OutboundCircuitEstablished {
                relay_peer_id,
                limit,
            } => {
                tracing::debug!("circuit through {relay_peer_id}, limit {limit:?}");
                self.paths
                    .circuit_from_relay(relay_peer_id, limit.and_then(|l| l.data_in_bytes()));
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, limit } => {
                tracing::debug!("circuit from {src_peer_id}, limit {limit:?}");
                self.paths
                    .circuit_from_peer(src_peer_id, limit.and_then(|l| l.data_in_bytes()));
            }
        }
    }

    pub(crate) fn on_relay_server(&mut self, ev: relay::Event) {
        tracing::debug!("relay: {ev:?}");
    }

    pub(crate) fn on_dcutr(&mut self, ev: dcutr::Event) {
        match ev.result {
            Ok(_) => {
                tracing::info!("direct connection to {} (hole punched)", ev.remote_peer_id);
                self.direct.insert(ev.remote_peer_id);
                self.prefer_direct(ev.remote_peer_id);
            }
            Err(e) => tracing::info!(
                "no direct connection to {} ({e}); staying relayed",
                ev.remote_peer_id
            ),
        }
    }

    /// A peer reached both directly (hole punched, found on the LAN, dialled at a public
    /// address) and through a relay: its relayed connections are to close.
    pub(crate) fn prefer_direct(&mut self, peer: PeerId) {
        if self.paths.has_direct(peer) && !self.paths.relayed_of(peer).is_empty() {
            self.retire
                .entry(peer)
                .or_insert(Instant::now() + RETIRE_WITHIN);
        }
    }

    /// Closes the relayed connections to peers now reached directly, each once nothing is
    /// asked of it or by it (so no request is cut off), or at the latest [`RETIRE_WITHIN`]
    /// after the hole was punched: new requests then take the direct path, and the relay
    /// carries no bulk data.
    pub(crate) fn retire_relayed(&mut self) {
        let now = Instant::now();
        let peers: Vec<(PeerId, Instant)> = self.retire.iter().map(|(p, t)| (*p, *t)).collect();
        for (peer, deadline) in peers {
            if !self.paths.has_direct(peer) {
                // The direct connection went away again: the relay is all there is.
                self.retire.remove(&peer);
                continue;
            }
            let busy =
                self.pending.values().any(|p| p.peer == peer) || self.unanswered.holds(&peer);
            if busy && now < deadline {
                continue;
            }
            self.retire.remove(&peer);
            for id in self.paths.relayed_of(peer) {
                tracing::debug!("closing the relayed connection to {peer}: direct now");
                self.swarm.close_connection(id);
            }
        }
    }

    /// AutoNAT tested one of this node's addresses. A public one confirmed makes this node
    /// reachable from anywhere: its relay reservations are given up and it serves the DHT.
    /// A loopback or private address confirmed says nothing about the Internet.
    pub(crate) fn on_autonat(&mut self, ev: autonat::v2::client::Event) {
        let addr = ev.tested_addr;
        match ev.result {
            Ok(()) => {
                if !self.reachable.insert(addr.clone()) {
                    return;
                }
                if !is_global(&addr) || self.public.is_some() {
                    tracing::info!("reachable at {addr}");
                    return;
                }
                tracing::info!("reachable at {addr} (public): no relay needed");
                self.public = Some(addr);
                for (relay, id) in std::mem::take(&mut self.reserved) {
                    tracing::info!("giving up the reservation on relay {relay}");
                    self.swarm.remove_listener(id);
                }
                self.update_kad_mode();
            }
            Err(e) => {
                if is_global(&addr) && self.public.is_none() && !self.behind_nat {
                    self.behind_nat = true;
                    tracing::info!(
                        "behind NAT: {addr} is not reachable from outside; reachable through relays {:?}",
                        self.reserved.keys().collect::<Vec<_>>()
                    );
                } else {
                    tracing::debug!("{addr} is not reachable from outside: {e:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn a_peer_reached_only_through_a_relay_is_bound_by_its_limit() {
        let (peer, relay) = (PeerId::random(), PeerId::random());
        let circuit = a(&format!(
            "/ip4/198.18.0.10/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}"
        ));
        assert_eq!(relay_in(&circuit), Some(relay));
        assert_eq!(relay_in(&a("/ip4/198.18.0.10/tcp/4001")), None);
        let mut paths = Paths::default();
        let (c1, c2) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        paths.opened(c1, peer, true, &circuit);
        assert_eq!(paths.relay_limit(peer), None, "the relay set no limit yet");
        paths.circuit_from_relay(relay, Some(1 << 20));
        assert_eq!(paths.relay_limit(peer), Some(1 << 20));
        assert_eq!(paths.paths(), vec![(peer, Path::Relayed)]);
        // Hole punched: no limit while the direct connection lasts, and the relayed one is
        // the one to retire.
        paths.opened(c2, peer, false, &a("/ip4/198.18.0.2/tcp/4002"));
        assert_eq!(paths.relay_limit(peer), None);
        assert_eq!(paths.paths(), vec![(peer, Path::Direct)]);
        assert_eq!(paths.relayed_of(peer), vec![c1]);
        assert!(paths.is_relayed(c1) && !paths.is_relayed(c2));
        paths.closed(c2);
        assert_eq!(paths.relay_limit(peer), Some(1 << 20));
        // A circuit opened to this node: the limit is known by the peer at the other end.
        let other = PeerId::random();
        paths.opened(
            ConnectionId::new_unchecked(3),
            other,
            true,
            &a(&format!(
                "/ip4/198.18.0.10/tcp/4001/p2p/{relay}/p2p-circuit"
            )),
        );
        paths.circuit_from_peer(other, Some(2 << 20));
        assert_eq!(
            paths.relay_limit(other),
            Some(1 << 20),
            "the relay's word first"
        );
    }
}
