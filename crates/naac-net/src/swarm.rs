//! The swarm: its behaviours (limits, identify, ping, mDNS, the task protocol, the market's
//! gossip and DHT, and reaching peers behind NAT) and how it is built from the [`Config`].

use crate::guard::{DialGuard, Guarded};
use crate::{Config, codec, limits, market, reach};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, behaviour::toggle::Toggle};
use libp2p::{StreamProtocol, Swarm, identify, identity::Keypair, mdns, noise, ping, tcp, yamux};
use naac_proto::TASK_PROTOCOL;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: libp2p::connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) task: request_response::Behaviour<codec::TaskCodec>,
    pub(crate) gossipsub: market::Gossipsub,
    pub(crate) kad: market::Kademlia,
    pub(crate) relay_client: libp2p::relay::client::Behaviour,
    pub(crate) relay: Toggle<libp2p::relay::Behaviour>,
    pub(crate) dcutr: libp2p::dcutr::Behaviour,
    pub(crate) autonat: libp2p::autonat::v2::client::Behaviour,
    pub(crate) autonat_server: Toggle<libp2p::autonat::v2::server::Behaviour>,
}

pub(crate) fn build_swarm(
    keypair: Keypair,
    config: &Config,
    guard: DialGuard,
) -> anyhow::Result<Swarm<Behaviour>> {
    let mdns_on = config.mdns;
    let request_timeout = config.request_timeout;
    let max_incoming = config.max_incoming;
    let relay = config.relay.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(
            |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                use libp2p::core::{Transport, muxing::StreamMuxerBox, upgrade::Version};
                let tcp = tcp::tokio::Transport::new(tcp::Config::new().nodelay(true));
                Ok(Guarded { inner: tcp, guard }
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .map(|(p, c), _| (p, StreamMuxerBox::new(c))))
            },
        )?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            let codec = codec::TaskCodec;
            Ok(Behaviour {
                limits: limits::connections(max_incoming),
                identify: identify::Behaviour::new(
                    identify::Config::new("/naac/id/1".into(), key.public())
                        .with_agent_version(format!("naac/{}", env!("CARGO_PKG_VERSION")))
                        // Peers hear of new addresses (a relayed one once a reservation
                        // holds) at once, not at the next connection.
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::new(ping::Config::new()),
                mdns: Toggle::from(mdns),
                task: request_response::Behaviour::with_codec(
                    codec,
                    [(StreamProtocol::new(TASK_PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(request_timeout)
                        .with_max_concurrent_streams(limits::MAX_STREAMS_PER_CONNECTION),
                ),
                gossipsub: market::gossipsub(key)?,
                kad: market::kademlia(peer_id),
                relay_client,
                relay: Toggle::from(relay.as_ref().map(|l| reach::relay_server(peer_id, l))),
                dcutr: reach::dcutr(peer_id),
                autonat: reach::autonat_client(),
                autonat_server: Toggle::from(relay.as_ref().map(|_| reach::autonat_server())),
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    Ok(swarm)
}
