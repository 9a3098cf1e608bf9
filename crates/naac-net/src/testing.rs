//! Testing aids: misbehaving peers. Not for production use.

use futures::{AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use naac_proto::{Request, Response, TASK_PROTOCOL};
use std::io;
use std::time::{Duration, Instant};

/// A codec that writes whatever bytes it is given and reads responses raw.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("raw peer takes no requests"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut v = Vec::new();
        futures::AsyncReadExt::read_to_end(&mut futures::AsyncReadExt::take(io, 1 << 20), &mut v)
            .await?;
        if v.is_empty() {
            // The peer closed the stream without answering.
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        Ok(v)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// Connects to `addr` (which must end in `/p2p/<peer id>`) and sends `bytes` as a request on
/// the task protocol. Returns `Ok(true)` if the peer answered at all, `Ok(false)` if it
/// dropped the stream (what a healthy node does with garbage).
pub async fn send_raw_request(addr: Multiaddr, bytes: Vec<u8>) -> anyhow::Result<bool> {
    let peer = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("address {addr} has no /p2p/ part"))?;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::new(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(
                    StreamProtocol::new(TASK_PROTOCOL),
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            )
        })?
        .build();
    swarm.dial(addr)?;
    let target: PeerId = peer;
    let _ = swarm.behaviour_mut().send_request(&target, bytes);
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message { .. }) => return true,
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                    return false;
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer and no failure within 20 s"))?;
    Ok(outcome)
}

/// The peer id at the end of `addr`.
fn target_of(addr: &Multiaddr) -> anyhow::Result<PeerId> {
    addr.iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("address {addr} has no /p2p/ part"))
}

/// A swarm speaking the task protocol with the real codec, without naac's limits: as many
/// streams as it likes, connections kept a minute when idle.
fn bare_swarm(
    key: Keypair,
) -> anyhow::Result<Swarm<request_response::Behaviour<crate::codec::TaskCodec>>> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::new(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                crate::codec::TaskCodec,
                [(StreamProtocol::new(TASK_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(120))
                    .with_max_concurrent_streams(100_000),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// Dials the node at `addr` `n` times at once (one identity, or a fresh one per dial) and
/// returns how many of the connections are still open after `hold`.
pub async fn open_connections(
    addr: Multiaddr,
    n: usize,
    fresh_identities: bool,
    hold: Duration,
) -> anyhow::Result<usize> {
    let target = target_of(&addr)?;
    let key = Keypair::generate_ed25519();
    let mut swarms = Vec::new();
    for _ in 0..if fresh_identities { n } else { 1 } {
        swarms.push(bare_swarm(if fresh_identities {
            Keypair::generate_ed25519()
        } else {
            key.clone()
        })?);
    }
    let per_swarm = if fresh_identities { 1 } else { n };
    for swarm in &mut swarms {
        for _ in 0..per_swarm {
            swarm.dial(
                DialOpts::peer_id(target)
                    .addresses(vec![addr.clone()])
                    .condition(PeerCondition::Always)
                    .build(),
            )?;
        }
    }
    let deadline = Instant::now() + hold;
    let counts = swarms.into_iter().map(|mut swarm| async move {
        let mut open = 0usize;
        while let Ok(ev) = tokio::time::timeout_at(deadline.into(), swarm.select_next_some()).await
        {
            match ev {
                SwarmEvent::ConnectionEstablished { .. } => open += 1,
                SwarmEvent::ConnectionClosed { .. } => open -= 1,
                _ => {}
            }
        }
        open
    });
    Ok(futures::future::join_all(counts).await.into_iter().sum())
}

/// Sends `requests` from one identity over `connections` connections at once (this side
/// sets no limit on its streams) and returns the responses that came within `within`, in the
/// order they came; the rest are still unanswered then.
pub async fn flood_requests(
    addr: Multiaddr,
    connections: usize,
    requests: Vec<Request>,
    within: Duration,
) -> anyhow::Result<Vec<Response>> {
    let target = target_of(&addr)?;
    let mut swarm = bare_swarm(Keypair::generate_ed25519())?;
    for _ in 0..connections {
        swarm.dial(
            DialOpts::peer_id(target)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::Always)
                .build(),
        )?;
    }
    let deadline = Instant::now() + within;
    let mut open = 0;
    while open < connections {
        match tokio::time::timeout_at(deadline.into(), swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionEstablished { .. }) => open += 1,
            Ok(SwarmEvent::OutgoingConnectionError { error, .. }) => {
                anyhow::bail!("dial {addr}: {error}")
            }
            Ok(_) => {}
            Err(_) => anyhow::bail!("only {open} of {connections} connections opened"),
        }
    }
    for r in requests {
        swarm.behaviour_mut().send_request(&target, r);
    }
    let mut answers = Vec::new();
    while let Ok(ev) = tokio::time::timeout_at(deadline.into(), swarm.select_next_some()).await {
        if let SwarmEvent::Behaviour(request_response::Event::Message {
            message: request_response::Message::Response { response, .. },
            ..
        }) = ev
        {
            answers.push(response);
        }
    }
    Ok(answers)
}

/// A codec that writes the bytes it is given and then keeps sending zeros (1 KiB every 50 ms),
/// never finishing its request: how a peer declaring a huge frame would trickle it in.
#[derive(Clone, Default)]
struct TrickleCodec;

impl request_response::Codec for TrickleCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("trickling peer takes no requests"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("trickling peer reads no responses"))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.flush().await?;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            io.write_all(&[0; 1024]).await?;
            io.flush().await?;
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// Sends `bytes` as the start of a request to the node at `addr` and keeps the frame coming
/// (see [`TrickleCodec`]) for up to `patience`. Returns the error that ended the stream when
/// the node cut it off, or `None` if the node was still taking bytes when patience ran out.
pub async fn trickle_request(
    addr: Multiaddr,
    bytes: Vec<u8>,
    patience: Duration,
) -> anyhow::Result<Option<String>> {
    let target = target_of(&addr)?;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::new(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                TrickleCodec,
                [(
                    StreamProtocol::new(TASK_PROTOCOL),
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(patience),
            )
        })?
        .build();
    swarm.dial(addr)?;
    let _ = swarm.behaviour_mut().send_request(&target, bytes);
    loop {
        if let SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) =
            swarm.select_next_some().await
        {
            return Ok(match error {
                request_response::OutboundFailure::Timeout => None,
                other => Some(other.to_string()),
            });
        }
    }
}
