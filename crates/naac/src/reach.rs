//! How the commands that only look at the pool (`naac pool`, `naac market`, `naac run
//! --explain`) reach it: a throwaway node with a fresh identity on any port, joined through
//! `--join` hosts and, unless `--no-mdns`, the hosts on the LAN.

use naac_net::{Client, Event, Multiaddr};
use tokio::sync::mpsc;

/// `--join` and `--no-mdns`.
#[derive(clap::Args)]
pub struct Reach {
    /// Reach the pool through this host (repeatable), e.g. /ip4/192.168.1.5/tcp/4001/p2p/12D3K...
    #[arg(long, value_name = "MULTIADDR")]
    pub join: Vec<Multiaddr>,
    /// Do not discover hosts on the local network (mDNS)
    #[arg(long)]
    pub no_mdns: bool,
}

impl Reach {
    /// Starts the looking node.
    pub async fn start(&self) -> anyhow::Result<(Client, mpsc::Receiver<Event>)> {
        looking_node(&self.join, !self.no_mdns).await
    }
}

/// Starts a throwaway node that joins `join` (and the LAN's hosts if `mdns`).
pub async fn looking_node(
    join: &[Multiaddr],
    mdns: bool,
) -> anyhow::Result<(Client, mpsc::Receiver<Event>)> {
    naac_net::start(
        naac_net::Keypair::generate_ed25519(),
        naac_net::Config {
            listen: vec!["/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr")],
            join: join.to_vec(),
            mdns,
            ..naac_net::Config::default()
        },
    )
    .await
}
