//! Testing aids: misbehaving peers. Not for production use.

use futures::{AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, noise, tcp, yamux};
use naac_proto::TASK_PROTOCOL;
use std::io;
use std::time::Duration;

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
