//! naac's peer-to-peer layer over libp2p: TCP + Noise + Yamux, identify, ping, mDNS discovery,
//! the `/naac/task/1` request-response protocol, and the market overlay: gossipsub topics for
//! offers and a private Kademlia DHT (`/naac/kad/1.0.0`) where providers announce provider
//! records keyed by commodity class. Only this crate knows libp2p.
//!
//! Shape (as in rust-libp2p's file-sharing example): [`start`] builds the `Swarm` and spawns an
//! [`EventLoop`] task that owns it; callers hold a cloneable [`Client`] that sends commands over
//! a bounded channel (with a oneshot for the reply), and read [`Event`]s from a bounded
//! channel. Malformed or oversized frames fail that one stream; the node stays up. What one
//! peer may hold of the node (connections, streams, unanswered requests) is bounded
//! ([`limits`]).

mod codec;
mod guard;
mod identity;
pub mod limits;
mod market;
mod reach;
mod signing;
mod swarm;
mod task;
#[doc(hidden)]
pub mod testing;

pub use identity::{load_or_create_identity, peer_id_of};
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

/// Where the answer to a peer's request goes ([`Client::respond`]).
pub type Reply = ResponseChannel<naac_proto::Response>;
pub use market::{
    KAD_PROTOCOL, MAX_GOSSIP_BYTES, MAX_KEY_BYTES, MAX_TOPIC_BYTES, Providers, PublishError,
    dialable_from_wan,
};
pub use reach::{Path, RelayLimits};
pub use signing::{
    PeerKeys, ed25519_of, ed25519_of_keypair, peer_of_ed25519, public_key_of, sign, verify,
};

use futures::StreamExt;
use libp2p::kad::QueryId;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Swarm, identify, mdns, ping};
use naac_proto::{Request, Response, TASK_PROTOCOL};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm::{Behaviour, BehaviourEvent, build_swarm};
use tokio::sync::{mpsc, oneshot};

/// Capacity of the command and event channels.
const CHANNEL_CAPACITY: usize = 1024;
/// Events held back while the owner is slow; beyond this, requests are refused and other
/// droppable events dropped.
const MAX_BACKLOG: usize = 8192;

/// Network settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/0`.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub join: Vec<Multiaddr>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// Close connections idle for this long.
    pub idle_timeout: Duration,
    /// Most inbound connections established at once (see [`limits`] for the other bounds).
    pub max_incoming: u32,
    /// Serve as a circuit relay and AutoNAT server with these limits (`None`: do not).
    pub relay: Option<RelayLimits>,
    /// Keep a reservation on each relay in `join`, so peers reach this node through it.
    pub reserve: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr")],
            join: Vec::new(),
            mdns: true,
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(300),
            max_incoming: limits::MAX_INCOMING,
            relay: None,
            reserve: false,
        }
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("peer {0} is not connected and could not be dialed")]
    DialFailure(PeerId),
    #[error("request to {0} timed out")]
    Timeout(PeerId),
    #[error("connection to {0} closed")]
    ConnectionClosed(PeerId),
    #[error("peer {0} does not speak {TASK_PROTOCOL}")]
    Unsupported(PeerId),
    #[error("request to {peer} failed: {message}")]
    Io { peer: PeerId, message: String },
    #[error("the network event loop has stopped")]
    Stopped,
}

/// Things the network tells its owner.
#[derive(Debug)]
pub enum Event {
    /// Now listening on this address.
    Listening(Multiaddr),
    /// First connection to a peer opened; the peer's IP address as seen from here (`None`
    /// through a relay).
    Connected(PeerId, Option<std::net::IpAddr>),
    /// Last connection to a peer closed.
    Disconnected(PeerId),
    /// A peer sent a request; answer it with [`Client::respond`]. `relayed`: it came over
    /// a connection through a relay.
    Request {
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
        relayed: bool,
    },
    /// A peer sent a malformed or oversized frame, which was dropped.
    BadFrame { peer: PeerId, error: String },
    /// A gossip message arrived on a topic we subscribed to. Dropped (and counted) rather
    /// than queued without bound when the owner is slow.
    Gossip {
        /// The author, whose signature gossipsub checked.
        source: Option<PeerId>,
        /// The neighbour that forwarded it to us.
        propagated_by: PeerId,
        topic: String,
        data: Vec<u8>,
    },
}

enum Command {
    Dial(Multiaddr, oneshot::Sender<anyhow::Result<()>>),
    DialPeer(PeerId, Vec<Multiaddr>, oneshot::Sender<anyhow::Result<()>>),
    Request {
        peer: PeerId,
        request: Box<Request>,
        reply: oneshot::Sender<Result<Response, RequestError>>,
    },
    Respond(ResponseChannel<Response>, Response),
    Listeners(oneshot::Sender<Vec<Multiaddr>>),
    Disconnect(PeerId),
    Rtts(oneshot::Sender<Vec<(PeerId, Duration)>>),
    Paths(oneshot::Sender<Vec<(PeerId, Path)>>),
    RelayLimit(PeerId, oneshot::Sender<Option<u64>>),
    Market(market::MarketCommand),
}

/// Cloneable handle to the network.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    /// The addresses this node was told to listen on and to join (its own networks).
    home: Arc<[Multiaddr]>,
    /// Relayed connections open now (kept by the event loop), so the common question
    /// "is this peer reached only through a relay" needs no trip to the event loop.
    relayed: Arc<std::sync::atomic::AtomicUsize>,
}

impl Client {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses this node was configured to listen on and to join: the networks it
    /// is on by its owner's word (see [`dialable_from_wan`]).
    pub fn home(&self) -> &[Multiaddr] {
        &self.home
    }

    /// Dials `addr`, an address this node's owner named (a bank, a peer to join): it may be
    /// dialled from now on whatever network it is on. Returns once the dial has started
    /// (not when it connects).
    pub async fn dial(&self, addr: Multiaddr) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Dial(addr, tx)).await?;
        rx.await.map_err(|_| RequestError::Stopped)?
    }

    /// Dials `peer` at any of `addrs` (tried until one answers): a peer heard of on the
    /// market, reachable perhaps only through a relay.
    pub async fn dial_peer(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::DialPeer(peer, addrs, tx)).await?;
        rx.await.map_err(|_| RequestError::Stopped)?
    }

    /// Sends a request and waits for the response.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Request {
            peer,
            request: Box::new(request),
            reply: tx,
        })
        .await
        .map_err(|_| RequestError::Stopped)?;
        rx.await.map_err(|_| RequestError::Stopped)?
    }

    /// Answers an inbound request.
    pub async fn respond(&self, channel: ResponseChannel<Response>, response: Response) {
        let _ = self.send(Command::Respond(channel, response)).await;
    }

    /// The addresses we listen on, with our peer id appended (ready to share).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Listeners(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Closes every connection to `peer`.
    pub async fn disconnect(&self, peer: PeerId) {
        let _ = self.send(Command::Disconnect(peer)).await;
    }

    /// The latest ping round-trip time to each connected peer (pinged on connect, then
    /// every 15 s).
    pub async fn rtts(&self) -> Vec<(PeerId, Duration)> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Rtts(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// How each connected peer is reached: directly, or only through a relay.
    pub async fn paths(&self) -> Vec<(PeerId, Path)> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Paths(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The most bytes one message to `peer` can carry when the peer is reached only through
    /// relays (the relay's per-connection limit); `None` with a direct connection, or when
    /// no relay set a limit.
    pub async fn relay_limit(&self, peer: PeerId) -> Option<u64> {
        if self.relayed.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.send(Command::RelayLimit(peer, tx)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Subscribes to a gossip topic; its messages arrive as [`Event::Gossip`].
    pub async fn subscribe(&self, topic: &str) -> anyhow::Result<()> {
        market::check_topic(topic)?;
        let (tx, rx) = oneshot::channel();
        self.market(market::MarketCommand::Subscribe(topic.to_string(), tx))
            .await?;
        rx.await.map_err(|_| RequestError::Stopped)?
    }

    /// Leaves a gossip topic.
    pub async fn unsubscribe(&self, topic: &str) {
        let _ = self
            .market(market::MarketCommand::Unsubscribe(topic.to_string()))
            .await;
    }

    /// Publishes `data` (signed by this node) on a gossip topic; subscribing is not needed.
    /// Publishing the same message twice is not an error. [`PublishError::NoPeers`] means no
    /// connected peer listens on the topic yet, which callers may ignore.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), PublishError> {
        market::check_topic(topic)?;
        if data.len() > MAX_GOSSIP_BYTES {
            return Err(PublishError::TooLarge { size: data.len() });
        }
        let (tx, rx) = oneshot::channel();
        self.market(market::MarketCommand::Publish {
            topic: topic.to_string(),
            data,
            reply: tx,
        })
        .await
        .map_err(|_| PublishError::Stopped)?;
        rx.await.map_err(|_| PublishError::Stopped)?
    }

    /// Announces this node as a provider of `key` in the DHT. Kademlia re-announces the record
    /// every 20 minutes (records expire after an hour), and the node announces again when its
    /// routing table gets its first peer.
    pub async fn start_providing(&self, key: Vec<u8>) -> anyhow::Result<()> {
        market::check_key(&key)?;
        let (tx, rx) = oneshot::channel();
        self.market(market::MarketCommand::StartProviding(key, tx))
            .await?;
        rx.await.map_err(|_| RequestError::Stopped)?
    }

    /// Stops announcing `key` (records already stored elsewhere expire on their own).
    pub async fn stop_providing(&self, key: Vec<u8>) {
        let _ = self.market(market::MarketCommand::StopProviding(key)).await;
    }

    /// Finds the providers of `key` with a Kademlia lookup, collecting them until the lookup
    /// ends or `timeout` passes, with the addresses known for each (every one ending in
    /// `/p2p/<peer>`, ready for [`Client::dial`]). A provider whose addresses nobody told us
    /// is looked up by its id in the DHT, within the same deadline; its list may still come
    /// back empty. This node is never among the results.
    pub async fn get_providers(
        &self,
        key: Vec<u8>,
        timeout: Duration,
    ) -> anyhow::Result<Providers> {
        market::check_key(&key)?;
        let deadline = Instant::now() + timeout;
        let (tx, rx) = oneshot::channel();
        self.market(market::MarketCommand::GetProviders {
            key,
            timeout,
            reply: tx,
        })
        .await?;
        let mut providers = rx.await.map_err(|_| RequestError::Stopped)??;
        let unknown = providers.iter().filter(|(_, a)| a.is_empty()).count();
        let left = deadline.saturating_duration_since(Instant::now());
        if unknown > 0 && !left.is_zero() {
            let lookups = providers.iter_mut().filter(|(_, a)| a.is_empty()).map(
                |(peer, addrs)| async move {
                    if let Ok(found) = self.find_peer(*peer, left).await {
                        *addrs = found;
                    }
                },
            );
            futures::future::join_all(lookups).await;
        }
        Ok(providers)
    }

    /// Looks a peer's addresses up: a Kademlia lookup of its id (which finds the peer itself
    /// if it is reachable), plus whatever identify and the routing table told us. Each address
    /// ends in `/p2p/<peer>`; the list is empty if nobody knows the peer within `timeout`.
    pub async fn find_peer(
        &self,
        peer: PeerId,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Multiaddr>> {
        let (tx, rx) = oneshot::channel();
        self.market(market::MarketCommand::FindPeer {
            peer,
            timeout,
            reply: tx,
        })
        .await?;
        rx.await.map_err(|_| RequestError::Stopped)?
    }

    /// Starts a Kademlia bootstrap (a lookup of our own id, which fills the routing table).
    /// Does nothing while no peer is known.
    pub async fn bootstrap(&self) {
        let _ = self.market(market::MarketCommand::Bootstrap).await;
    }

    async fn market(&self, c: market::MarketCommand) -> anyhow::Result<()> {
        self.send(Command::Market(c)).await
    }

    async fn send(&self, c: Command) -> anyhow::Result<()> {
        self.tx
            .send(c)
            .await
            .map_err(|_| anyhow::anyhow!("the network event loop has stopped"))
    }
}

/// Builds the swarm, starts listening and dialing, and spawns the event loop on the current
/// tokio runtime. The loop stops when every [`Client`] is dropped.
pub async fn start(
    keypair: Keypair,
    config: Config,
) -> anyhow::Result<(Client, mpsc::Receiver<Event>)> {
    let peer_id = keypair.public().to_peer_id();
    let home: Arc<[Multiaddr]> = config.listen.iter().chain(&config.join).cloned().collect();
    let guard = guard::DialGuard::new(home.clone());
    let mut swarm = build_swarm(keypair, &config, guard.clone())?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| anyhow::anyhow!("listen on {addr}: {e}"))?;
    }
    for addr in &config.join {
        swarm
            .dial(addr.clone())
            .map_err(|e| anyhow::anyhow!("dial {addr}: {e}"))?;
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (ev_tx, ev_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let relayed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let event_loop = EventLoop {
        swarm,
        commands: cmd_rx,
        events: ev_tx,
        pending: HashMap::new(),
        listeners: Vec::new(),
        backlog: std::collections::VecDeque::new(),
        unanswered: limits::Unanswered::default(),
        rtts: HashMap::new(),
        paths: reach::Paths::default(),
        relayed: relayed.clone(),
        retire: HashMap::new(),
        backlog_gossip: 0,
        dropped_gossip: 0,
        lookups: HashMap::new(),
        waiting: Vec::new(),
        book: market::AddressBook::default(),
        join: config.join.clone(),
        guard,
        reserve: config.reserve,
        relaying: config.relay.is_some(),
        reserved: HashMap::new(),
        relays_joined: Default::default(),
        public: None,
        behind_nat: false,
        kad_server: true,
        rejoin: HashMap::new(),
        direct: Default::default(),
        reachable: Default::default(),
    };
    tokio::spawn(event_loop.run());
    Ok((
        Client {
            tx: cmd_tx,
            peer_id,
            home,
            relayed,
        },
        ev_rx,
    ))
}

/// Owns the swarm; see the crate docs.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Requests sent and waiting for their answer.
    pending: HashMap<OutboundRequestId, task::Pending>,
    listeners: Vec<Multiaddr>,
    /// Events the owner has not taken yet. The swarm never waits on its owner (the owner may be
    /// waiting on us to accept a command), so events queue here, bounded.
    backlog: std::collections::VecDeque<Event>,
    /// Requests handed on and not yet answered, by peer.
    unanswered: limits::Unanswered,
    /// Latest ping round trip per connected peer.
    rtts: HashMap<PeerId, Duration>,
    /// Open connections, direct and relayed.
    paths: reach::Paths,
    /// Relayed connections open now, shared with every [`Client`].
    relayed: Arc<std::sync::atomic::AtomicUsize>,
    /// Peers reached directly whose relayed connections are to close: by when at the latest.
    retire: HashMap<PeerId, Instant>,
    /// Gossip messages in `backlog`, and how many were dropped because it was full.
    backlog_gossip: usize,
    dropped_gossip: u64,
    /// Kademlia lookups waiting for their query, by query; provider lookups waiting for a
    /// first peer to ask (key, answer, deadline).
    lookups: HashMap<QueryId, market::Lookup>,
    waiting: Vec<(
        Vec<u8>,
        oneshot::Sender<anyhow::Result<market::Providers>>,
        Instant,
    )>,
    /// Addresses heard for peers.
    book: market::AddressBook,
    /// The peers this node joined, and whether it keeps reservations on the relays among
    /// them; the relays it asked.
    join: Vec<Multiaddr>,
    reserve: bool,
    /// What this node may dial (its networks, and LAN peers mDNS found).
    guard: guard::DialGuard,
    /// This node serves as a relay.
    relaying: bool,
    reserved: HashMap<PeerId, libp2p::core::transport::ListenerId>,
    /// Joined peers that are relays; this node's first confirmed public address; whether it
    /// said it is behind NAT; whether its Kademlia serves the DHT.
    relays_joined: std::collections::HashSet<PeerId>,
    public: Option<Multiaddr>,
    behind_nat: bool,
    kad_server: bool,
    /// Joined peers lost, to dial again: when next, and the wait after that.
    rejoin: HashMap<PeerId, (Instant, Duration)>,
    /// Peers reached directly after hole punching; addresses confirmed reachable.
    direct: std::collections::HashSet<PeerId>,
    reachable: std::collections::HashSet<Multiaddr>,
}

impl EventLoop {
    async fn run(mut self) {
        let events = self.events.clone();
        // Lookup deadlines are checked on this tick (only while lookups run).
        let mut lookup_tick = tokio::time::interval(Duration::from_millis(100));
        lookup_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Joined peers that were lost are dialled again on this tick (only while some are).
        let mut rejoin_tick = tokio::time::interval(Duration::from_millis(500));
        rejoin_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Relayed connections to peers now reached directly are closed on this tick.
        let mut retire_tick = tokio::time::interval(Duration::from_millis(100));
        retire_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                permit = events.reserve(), if !self.backlog.is_empty() => match permit {
                    Ok(p) => {
                        let e = self.backlog.pop_front().expect("backlog is not empty");
                        if matches!(e, Event::Gossip { .. }) {
                            self.backlog_gossip -= 1;
                        }
                        p.send(e);
                    }
                    Err(_) => {
                        self.backlog.clear();
                        self.backlog_gossip = 0;
                    }
                },
                _ = lookup_tick.tick(), if !self.lookups.is_empty() || !self.waiting.is_empty() => {
                    self.expire_lookups()
                }
                _ = rejoin_tick.tick(), if !self.rejoin.is_empty() => self.rejoin_due(),
                _ = retire_tick.tick(), if !self.retire.is_empty() => self.retire_relayed(),
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Dial(addr, reply) => {
                self.guard.allow(&addr);
                let r = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| anyhow::anyhow!("dial {addr}: {e}"));
                let _ = reply.send(r);
            }
            Command::DialPeer(peer, addrs, reply) => {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .build();
                let r = self
                    .swarm
                    .dial(opts)
                    .map_err(|e| anyhow::anyhow!("dial {peer}: {e}"));
                let _ = reply.send(r);
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                self.send_request(peer, *request, reply);
            }
            Command::Respond(channel, response) => {
                // Fails only when the peer went away meanwhile; nothing to do then.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .task
                    .send_response(channel, response);
            }
            Command::Listeners(reply) => {
                let me = *self.swarm.local_peer_id();
                let addrs = self
                    .listeners
                    .iter()
                    .map(|a| a.clone().with_p2p(me).unwrap_or_else(|a| a))
                    .collect();
                let _ = reply.send(addrs);
            }
            Command::Disconnect(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Paths(reply) => {
                let _ = reply.send(self.paths.paths());
            }
            Command::RelayLimit(peer, reply) => {
                let _ = reply.send(self.paths.relay_limit(peer));
            }
            Command::Rtts(reply) => {
                let _ = reply.send(self.rtts.iter().map(|(p, d)| (*p, *d)).collect());
            }
            Command::Market(c) => self.on_market_command(c),
        }
    }

    fn emit(&mut self, e: Event) {
        if !self.backlog.is_empty() {
            self.push_backlog(e);
            return;
        }
        match self.events.try_send(e) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(e)) => self.push_backlog(e),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn push_backlog(&mut self, e: Event) {
        // Connection events are never dropped (there is one per connection); a dropped
        // request just fails at its sender.
        let gossip = matches!(e, Event::Gossip { .. });
        if gossip && self.backlog_gossip >= market::MAX_GOSSIP_BACKLOG {
            self.dropped_gossip += 1;
            tracing::debug!(
                "the node is not keeping up with gossip; dropped a message ({} so far)",
                self.dropped_gossip
            );
            return;
        }
        let droppable = gossip || matches!(e, Event::Request { .. } | Event::BadFrame { .. });
        if droppable && self.backlog.len() >= MAX_BACKLOG {
            tracing::warn!("the node is not keeping up with the network; dropped an event");
            if let Event::Request { channel, .. } = e {
                self.refuse(channel, "the node is busy; try again later");
            }
            return;
        }
        if gossip {
            self.backlog_gossip += 1;
        }
        self.backlog.push_back(e);
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::debug!("listening on {address}");
                self.listeners.push(address.clone());
                self.relay_listening(&address);
                self.emit(Event::Listening(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listeners.retain(|a| *a != address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => {
                let at = match &endpoint {
                    libp2p::core::ConnectedPoint::Dialer { address, .. } => address,
                    libp2p::core::ConnectedPoint::Listener { local_addr, .. } => local_addr,
                };
                self.paths
                    .opened(connection_id, peer_id, endpoint.is_relayed(), at);
                self.relayed.store(
                    self.paths.relayed_count(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                self.prefer_direct(peer_id);
                self.rejoin.remove(&peer_id);
                if endpoint.is_dialer() {
                    self.on_dialed(peer_id, endpoint.get_remote_address().clone());
                }
                if num_established.get() == 1 {
                    // A relayed connection's address is the relay's: it says nothing of
                    // where the peer is, so every host behind one relay would look alike.
                    let ip = (!endpoint.is_relayed())
                        .then(|| ip_of(endpoint.get_remote_address()))
                        .flatten();
                    self.emit(Event::Connected(peer_id, ip));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.paths.closed(connection_id);
                self.relayed.store(
                    self.paths.relayed_count(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                if num_established == 0 {
                    self.rtts.remove(&peer_id);
                    self.lost_joined(peer_id);
                    self.emit(Event::Disconnected(peer_id));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) if self.swarm.is_connected(&peer) => {
                self.rtts.insert(peer, rtt);
            }
            SwarmEvent::NewExternalAddrCandidate { address } => {
                tracing::debug!("external address candidate {address}");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::debug!("external address {address}");
                self.announce_again();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!("could not connect to {peer_id:?}: {error}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.guard.allow(&addr);
                    if !self.swarm.is_connected(&peer) {
                        tracing::debug!("mdns: found {peer} at {addr}");
                        let _ = self.swarm.dial(addr.with_p2p(peer).unwrap_or_else(|a| a));
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Task(ev)) => self.on_task(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                self.reserve_if_relay(peer_id, &info);
                self.on_identified(peer_id, info)
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(ev)) => self.on_relay_client(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(ev)) => self.on_relay_server(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(ev)) => self.on_dcutr(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(ev)) => self.on_autonat(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(ev)) => self.on_gossipsub(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            _ => {}
        }
    }
}

/// The IP address at the start of a multiaddr, if it starts with one.
fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    use libp2p::multiaddr::Protocol;
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}
