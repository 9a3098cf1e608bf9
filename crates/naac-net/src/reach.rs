//! Reaching nodes behind NAT: a node may serve as a circuit relay (libp2p relay v2) and an
//! AutoNAT server; every node can dial through a relay, keeps a reservation on the relays it
//! joined when asked to (so peers reach it at a `/p2p-circuit` address), upgrades relayed
//! connections to direct ones by hole punching (DCUtR), and learns which of its addresses
//! are reachable from outside (AutoNAT v2).

use super::{EventLoop, Protocol};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, identify, relay};
use std::time::Duration;

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

/// Open connections per peer: (direct, relayed).
#[derive(Default)]
pub(crate) struct Paths(std::collections::HashMap<PeerId, (u32, u32)>);

impl Paths {
    pub(crate) fn opened(&mut self, peer: PeerId, relayed: bool) {
        let c = self.0.entry(peer).or_default();
        if relayed {
            c.1 += 1;
        } else {
            c.0 += 1;
        }
    }

    pub(crate) fn closed(&mut self, peer: PeerId, relayed: bool) {
        if let Some(c) = self.0.get_mut(&peer) {
            if relayed {
                c.1 = c.1.saturating_sub(1);
            } else {
                c.0 = c.0.saturating_sub(1);
            }
            if *c == (0, 0) {
                self.0.remove(&peer);
            }
        }
    }

    pub(crate) fn paths(&self) -> Vec<(PeerId, Path)> {
        self.0
            .iter()
            .map(|(p, (direct, _))| {
                (
                    *p,
                    if *direct > 0 {
                        Path::Direct
                    } else {
                        Path::Relayed
                    },
                )
            })
            .collect()
    }
}

/// `addr` with its trailing `/p2p/<id>`, if it has one.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(p)) => Some(p),
        _ => None,
    }
}

/// The first wait before a lost joined peer is dialled again, and the longest.
const REJOIN_FIRST: Duration = Duration::from_secs(1);
const REJOIN_MAX: Duration = Duration::from_secs(30);

impl EventLoop {
    /// The last connection to `peer` closed: a peer this node joined (a relay, a bootstrap
    /// node) is dialled again until it answers, and its reservation asked for again then.
    pub(crate) fn lost_joined(&mut self, peer: PeerId) {
        self.reserved.remove(&peer);
        if self.join.iter().any(|a| peer_of(a) == Some(peer)) {
            tracing::info!("lost joined peer {peer}: dialling it again");
            self.rejoin.insert(
                peer,
                (std::time::Instant::now() + REJOIN_FIRST, REJOIN_FIRST),
            );
        }
    }

    /// Dials the lost joined peers whose time has come, each waiting twice as long next.
    pub(crate) fn rejoin_due(&mut self) {
        let now = std::time::Instant::now();
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

    /// A peer said what it speaks: when it is a relay this node joined and this node keeps
    /// reservations, listen through it (once per relay).
    pub(crate) fn reserve_if_relay(&mut self, peer: PeerId, info: &identify::Info) {
        if !self.reserve || self.reserved.contains(&peer) {
            return;
        }
        if !info.protocols.iter().any(|p| p.as_ref() == HOP_PROTOCOL) {
            tracing::debug!("{peer} is no relay: {:?}", info.protocols);
            return;
        }
        let Some(addr) = self.join.iter().find(|a| peer_of(a) == Some(peer)).cloned() else {
            return;
        };
        let circuit = addr.with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(_) => {
                self.reserved.insert(peer);
                tracing::debug!("asking relay {peer} for a reservation");
            }
            Err(e) => tracing::warn!("cannot listen through relay {circuit}: {e}"),
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
                    tracing::info!("reachable through relay {relay_peer_id}");
                }
            }
            other => tracing::debug!("relay client: {other:?}"),
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
            }
            Err(e) => tracing::info!(
                "no direct connection to {} ({e}); staying relayed",
                ev.remote_peer_id
            ),
        }
    }

    pub(crate) fn on_autonat(&mut self, ev: autonat::v2::client::Event) {
        match ev.result {
            Ok(()) => {
                if self.reachable.insert(ev.tested_addr.clone()) {
                    tracing::info!("reachable at {}", ev.tested_addr);
                }
            }
            Err(e) => tracing::debug!("{} is not reachable from outside: {e:?}", ev.tested_addr),
        }
    }
}
