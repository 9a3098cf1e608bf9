//! A guard on every TCP dial, whoever asks for it (the task protocol, Kademlia's own walks,
//! identify's address cache, hole punching): an address learned from the wide-area market
//! or the DHT is dialled only when [`dialable_from_wan`] allows it, or when mDNS found a
//! peer at its IP on this LAN, or the node's owner named it ([`crate::Client::dial`]). So a peer cannot make this node dial into its own machine
//! or LAN by naming such addresses, whichever behaviour would have dialled them.

use crate::market::dialable_from_wan;
use libp2p::Multiaddr;
use libp2p::core::transport::{DialOpts, ListenerId, Transport, TransportError, TransportEvent};
use std::collections::HashSet;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// LAN addresses remembered from mDNS, at most.
const MAX_LAN_IPS: usize = 4096;

/// What may be dialled: the node's own networks (its listen and join addresses) and the
/// IPs mDNS found peers at.
#[derive(Clone)]
pub(crate) struct DialGuard {
    home: Arc<[Multiaddr]>,
    lan: Arc<Mutex<HashSet<IpAddr>>>,
}

impl DialGuard {
    pub(crate) fn new(home: Arc<[Multiaddr]>) -> Self {
        Self {
            home,
            lan: Arc::default(),
        }
    }

    pub(crate) fn allows(&self, addr: &Multiaddr) -> bool {
        dialable_from_wan(addr, &self.home)
            || crate::ip_of(addr).is_some_and(|ip| {
                self.lan
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&ip)
            })
    }

    /// mDNS found a peer at `addr` (its IP is on this LAN), or the node's owner named the
    /// address (a bank, a peer to dial): its IP may be dialled.
    pub(crate) fn allow(&self, addr: &Multiaddr) {
        let Some(ip) = crate::ip_of(addr) else {
            return;
        };
        let mut lan = self.lan.lock().unwrap_or_else(|e| e.into_inner());
        if lan.len() >= MAX_LAN_IPS && !lan.contains(&ip) {
            lan.clear();
        }
        lan.insert(ip);
    }
}

/// `inner` with its dials checked by a [`DialGuard`].
pub(crate) struct Guarded<T> {
    pub(crate) inner: T,
    pub(crate) guard: DialGuard,
}

impl<T: Transport + Unpin> Transport for Guarded<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        if !self.guard.allows(&addr) {
            tracing::debug!("not dialling {addr}: not on a network of this node's");
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        self.inner.dial(addr, opts)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn a_node_on_the_internet_dials_a_lan_address_only_where_mdns_found_a_peer() {
        let guard = DialGuard::new(Arc::from(vec![
            a("/ip4/0.0.0.0/tcp/0"),
            a("/ip4/8.8.4.4/tcp/4001"),
        ]));
        assert!(guard.allows(&a("/ip4/1.2.3.4/tcp/4001")));
        for no in ["/ip4/192.168.1.7/tcp/22", "/ip4/127.0.0.1/tcp/4002"] {
            assert!(!guard.allows(&a(no)), "{no}");
        }
        guard.allow(&a(
            "/ip4/192.168.1.7/tcp/4001/p2p/12D3KooWQWULj7mPE7hDGz3FN3aRJuM8dsq6LCFoNnTi632i7U7v",
        ));
        assert!(guard.allows(&a("/ip4/192.168.1.7/tcp/4001")));
        assert!(!guard.allows(&a("/ip4/192.168.1.8/tcp/4001")));
    }
}
