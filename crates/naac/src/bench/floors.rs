//! The transport's own figures, measured in the same run as naac's: a bare request-response
//! round trip and a bulk transfer between two libp2p nodes on 127.0.0.1, over naac's
//! transport and codec (`naac-net`) with none of naac's logic. They are the floors the
//! round-trip and gather figures stand beside: what naac adds is the difference. The server
//! runs in a process of its own, as a provider does.

use anyhow::Context as _;
use naac_net::{Client, Event, Keypair, Multiaddr, PeerId};
use naac_proto::{Request, RequestBody, Response, ResponseBody};
use naac_types::ContentId;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

/// A client node connected to a server node in a process of its own (as a provider is),
/// which answers every request with a blob of the asked size.
struct Pair {
    client: Client,
    server: PeerId,
    _process: tokio::process::Child,
}

async fn node() -> anyhow::Result<(Client, Receiver<Event>)> {
    naac_net::start(
        Keypair::generate_ed25519(),
        naac_net::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>().expect("valid")],
            mdns: false,
            ..naac_net::Config::default()
        },
    )
    .await
}

/// `naac bench --floor-server BYTES`: a bare node that prints its peer id and address on
/// stdout, then answers every request with BYTES bytes until its stdin closes.
pub(super) async fn serve(bytes: usize) -> anyhow::Result<()> {
    let (server, mut events) = node().await?;
    let addr = loop {
        match events.recv().await {
            Some(Event::Listening(_)) => {
                if let Some(a) = server.listen_addrs().await.into_iter().next() {
                    break a;
                }
            }
            Some(_) => {}
            None => anyhow::bail!("network stopped"),
        }
    };
    println!("{} {addr}", server.peer_id());
    let blob = vec![7u8; bytes];
    let serving = async {
        while let Some(ev) = events.recv().await {
            if let Event::Request { channel, .. } = ev {
                let body = ResponseBody::Blob(blob.clone());
                server.respond(channel, Response::new(body)).await;
            }
        }
    };
    let stdin_closed = async {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    };
    tokio::select! {
        () = serving => {}
        () = stdin_closed => {}
    }
    Ok(())
}

async fn pair(blob: usize) -> anyhow::Result<Pair> {
    let exe = std::env::current_exe().context("find the naac binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args(["bench", "--floor-server", &blob.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start the floor server")?;
    let stdout = child.stdout.take().context("floor server stdout")?;
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(stdout), &mut line)
        .await
        .context("read the floor server's address")?;
    let (id, addr) = line
        .trim()
        .split_once(' ')
        .context("the floor server printed no address")?;
    let server: PeerId = id.parse().context("floor server peer id")?;
    let addr: Multiaddr = addr.parse().context("floor server address")?;
    let (client, mut events) = node().await?;
    client.dial(addr).await?;
    loop {
        match events.recv().await {
            Some(Event::Connected(p, _)) if p == server => break,
            Some(_) => {}
            None => anyhow::bail!("network stopped"),
        }
    }
    // The client's events are not needed; keep draining them so its queue never fills.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    Ok(Pair {
        client,
        server,
        _process: child,
    })
}

fn fetch() -> Request {
    Request::new(RequestBody::Fetch {
        id: ContentId::of(b"floor"),
    })
}

/// `rounds` request-response round trips, one at a time (after 20 unmeasured ones).
pub(super) async fn round_trips(rounds: u32) -> anyhow::Result<Vec<Duration>> {
    let p = pair(0).await?;
    let mut samples = Vec::with_capacity(rounds as usize);
    for i in 0..rounds + 20 {
        let t0 = Instant::now();
        p.client
            .request(p.server, fetch())
            .await
            .map_err(|e| anyhow::anyhow!("bare round trip: {e}"))?;
        if i >= 20 {
            samples.push(t0.elapsed());
        }
    }
    Ok(samples)
}

/// MiB/s of `blobs` responses of `size` bytes each, `parallel` in flight at once.
pub(super) async fn bulk(blobs: usize, size: usize, parallel: usize) -> anyhow::Result<f64> {
    let p = pair(size).await?;
    // One unmeasured exchange: connection and buffers warm.
    p.client
        .request(p.server, fetch())
        .await
        .map_err(|e| anyhow::anyhow!("bulk transfer: {e}"))?;
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(blobs);
    for _ in 0..blobs {
        let (c, server, sem) = (p.client.clone(), p.server, sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            match c.request(server, fetch()).await {
                Ok(Response {
                    body: ResponseBody::Blob(b),
                    ..
                }) => Ok(b.len()),
                Ok(_) => Err(anyhow::anyhow!("bulk transfer: not a blob")),
                Err(e) => Err(anyhow::anyhow!("bulk transfer: {e}")),
            }
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await??;
    }
    anyhow::ensure!(bytes == blobs * size, "bulk transfer: short");
    Ok(bytes as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64())
}
