//! Bounds on what remote peers may hold of this node: connections (libp2p's
//! connection-limits behaviour), request streams per connection, and requests taken in but not
//! yet answered, per peer and in all.
//!
//! A request over a peer's share is answered `Refused` at once instead of queued; so is one
//! that finds the event backlog full. Either way the sender learns why at once, and what it
//! holds of this node stays bounded whatever it sends; other peers are served as before.

use libp2p::PeerId;
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::request_response::InboundRequestId;
use std::collections::HashMap;

/// Connections one peer may hold with this node, either direction (two nodes that dial each
/// other at once hold two).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Inbound connections still in their handshake.
pub const MAX_PENDING_INCOMING: u32 = 128;
/// Inbound connections established, by default (see [`crate::Config::max_incoming`]).
pub const MAX_INCOMING: u32 = 1024;
/// Request streams one connection may have open at once (either direction); more are reset.
pub const MAX_STREAMS_PER_CONNECTION: usize = 128;
/// Requests from one peer taken in and not yet answered; beyond this they are refused.
pub const MAX_REQUESTS_PER_PEER: u32 = 128;

/// The connection-limits behaviour with naac's bounds.
pub(crate) fn connections(max_incoming: u32) -> connection_limits::Behaviour {
    connection_limits::Behaviour::new(
        ConnectionLimits::default()
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_established_incoming(Some(max_incoming)),
    )
}

/// Inbound requests handed to the owner and not yet answered (answered, refused, timed out or
/// lost with their connection), by peer.
pub(crate) struct Unanswered<K = InboundRequestId> {
    by_request: HashMap<K, PeerId>,
    by_peer: HashMap<PeerId, u32>,
}

impl<K> Default for Unanswered<K> {
    fn default() -> Self {
        Self {
            by_request: HashMap::new(),
            by_peer: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq> Unanswered<K> {
    /// Counts a new request from `peer`, unless the peer already has its share waiting.
    pub(crate) fn admit(&mut self, peer: PeerId, request: K) -> bool {
        let n = self.by_peer.entry(peer).or_default();
        if *n >= MAX_REQUESTS_PER_PEER {
            return false;
        }
        *n += 1;
        self.by_request.insert(request, peer);
        true
    }

    /// Whether a request from `peer` waits for its answer.
    pub(crate) fn holds(&self, peer: &PeerId) -> bool {
        self.by_peer.contains_key(peer)
    }

    /// The request was answered or failed; unknown requests (refused ones) are ignored.
    pub(crate) fn done(&mut self, request: K) {
        let Some(peer) = self.by_request.remove(&request) else {
            return;
        };
        if let Some(n) = self.by_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.by_peer.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_share_and_others_theirs() {
        let mut u = Unanswered::<u32>::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let share = MAX_REQUESTS_PER_PEER;
        for id in 0..share {
            assert!(u.admit(a, id));
        }
        assert!(!u.admit(a, share), "over its share");
        assert!(u.admit(b, share + 1), "another peer has its own");
        u.done(share);
        assert!(!u.admit(a, share), "a refused request frees nothing");
        u.done(0);
        assert!(u.admit(a, share), "an answered one frees its place");
        for id in 0..share + 2 {
            u.done(id);
        }
        assert!(u.by_peer.is_empty() && u.by_request.is_empty());
    }
}
