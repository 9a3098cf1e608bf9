//! The hostile-peer figures, each beside the same measurement with no attacker: a one-slot
//! provider's memory while a raw requester queues tasks with distinct 16 MiB inputs (against
//! the idle provider's); how long a requester takes to find a real provider after 5,000
//! fake offers for fresh keys (against no flood); and the bank's durable settlements per
//! second while 1,000 garbage signed requests a second arrive (against none).

use super::{Bench, Figure, TESTKIT, economy};
use anyhow::Context as _;
use naac_net::{Event, Keypair, Multiaddr, PeerId};
use naac_proto::{Assign, Request, RequestBody, Response, ResponseBody, TaskSpec};
use naac_types::{ContentId, JobId, Limits, Price};
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const INPUT_BYTES: usize = 16 << 20;
/// Fake offers in the flood.
const FAKES: usize = 5_000;
/// Garbage requests a second while the bank settles.
const GARBAGE_PER_S: u32 = 1_000;

impl Bench {
    pub(super) async fn hostile(&self) -> anyhow::Result<Vec<Figure>> {
        let tasks = if self.quick { 24 } else { 96 };
        let mut figs = vec![input_flood(tasks).await?];
        figs.push(offer_flood().await?);
        let n = if self.quick { 4_000 } else { 20_000 };
        let disk = tempfile::tempdir_in(std::env::temp_dir()).context("a scratch dir on disk")?;
        let store = |name: &str| format!("sqlite:{}", disk.path().join(name).display());
        let (honest, _) = economy::settle_rate(store("honest.db"), n, 0).await?;
        let (hostile, _) = economy::settle_rate(store("hostile.db"), n, GARBAGE_PER_S).await?;
        figs.push(Figure {
            name: "settlements/s under 1,000 garbage/s",
            value: format!("{hostile:.0}/s (none: {honest:.0}/s)"),
            target: "near the honest rate",
            baseline: "the same with no garbage".into(),
            ratio: Some(hostile / honest),
            raw: json!({"rate": hostile, "honest_rate": honest, "n": n, "garbage_per_s": GARBAGE_PER_S}),
        });
        Ok(figs)
    }
}

/// The input of task `i`: 16 MiB made from its index, so nobody need hold them all.
fn input(i: u32) -> Vec<u8> {
    let mut out = vec![0u8; INPUT_BYTES];
    blake3::Hasher::new_derive_key("naac hostile bench input")
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A throwaway one-slot provider on 127.0.0.1, killed on drop.
struct Provider(Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn provider(home: &std::path::Path) -> anyhow::Result<(Provider, Multiaddr)> {
    let exe = std::env::current_exe().context("find the naac binary")?;
    let mut child = Command::new(exe)
        .env("NAAC_HOME", home)
        .args([
            "node",
            "--provide",
            "--no-mdns",
            "--ephemeral",
            "--slots",
            "1",
        ])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start a provider")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("provider stdout")?).read_line(&mut line)?;
    let node = Provider(child);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected provider output {line:?}"))?
        .parse()
        .context("the provider's address")?;
    Ok((node, addr))
}

/// A raw peer on 127.0.0.1 that joins `join` (when given); returns once it listens and, with
/// a `join`, once it is connected (the peer it reached).
async fn raw_peer(
    key: Keypair,
    join: Option<Multiaddr>,
) -> anyhow::Result<(
    naac_net::Client,
    tokio::sync::mpsc::Receiver<Event>,
    Multiaddr,
    Option<PeerId>,
)> {
    let joining = join.is_some();
    let (client, mut events) = naac_net::start(
        key,
        naac_net::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            join: join.into_iter().collect(),
            mdns: false,
            ..naac_net::Config::default()
        },
    )
    .await?;
    let (mut addr, mut peer) = (None, None);
    while addr.is_none() || (joining && peer.is_none()) {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(Event::Listening(a))) => addr = Some(a),
            Ok(Some(Event::Connected(p, _))) => peer = Some(p),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => anyhow::bail!("a raw peer did not come up"),
        }
    }
    let addr = addr
        .expect("listening")
        .with_p2p(client.peer_id())
        .map_err(|a| anyhow::anyhow!("cannot add the peer id to {a}"))?;
    Ok((client, events, addr, peer))
}

/// Provider memory: idle, then peak while a raw requester queues `tasks` tasks with distinct
/// 16 MiB inputs in one `Assign` and serves the fetches until every task reported.
async fn input_flood(tasks: u32) -> anyhow::Result<Figure> {
    let home = tempfile::tempdir().context("a provider home")?;
    let (node, addr) = provider(home.path())?;
    let pid = node.0.id();
    let (client, mut events, _, peer) = raw_peer(Keypair::generate_ed25519(), Some(addr)).await?;
    let peer = peer.context("connected")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid);
    let module = ContentId::of(TESTKIT);
    let ids: HashMap<ContentId, u32> = tokio::task::spawn_blocking(move || {
        (0..tasks).map(|i| (ContentId::of(&input(i)), i)).collect()
    })
    .await?;
    let by_index: HashMap<u32, ContentId> = ids.iter().map(|(id, i)| (*i, *id)).collect();
    let assign = Assign {
        job: JobId::derive(&ContentId::of(b"hostile bench"), b"1"),
        seq: 1,
        module,
        argv0: "flood".into(),
        limits: Limits::default(),
        checkpoint_interval_ms: None,
        order: None,
        sources: Vec::new(),
        hold_over: None,
        holders: Vec::new(),
        inline: Vec::new(),
        reply_with_results: false,
        tasks: (0..tasks)
            .map(|i| TaskSpec {
                index: i,
                attempt: 0,
                args: vec!["readin".into(), "data".into()],
                stdin: None,
                inputs: vec![("data".into(), by_index[&i])],
                seed: ContentId::of(&i.to_le_bytes()),
                resume: None,
                env: Vec::new(),
            })
            .collect(),
    };
    let (peak, done) = (
        Arc::new(AtomicU64::new(idle)),
        Arc::new(AtomicBool::new(false)),
    );
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let c = client.clone();
    tokio::spawn(async move {
        c.request(peer, Request::new(RequestBody::Assign(assign)))
            .await
    });
    let t = Instant::now();
    let mut reported = 0u32;
    while reported < tasks {
        let ev = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .context("the flooded provider stopped answering")?
            .context("network stopped")?;
        let Event::Request {
            request, channel, ..
        } = ev
        else {
            continue;
        };
        let body = match request.body {
            RequestBody::Fetch { id } if id == module => ResponseBody::Blob(TESTKIT.to_vec()),
            RequestBody::Fetch { id } => match ids.get(&id) {
                Some(&i) => {
                    ResponseBody::Blob(tokio::task::spawn_blocking(move || input(i)).await?)
                }
                None => ResponseBody::NotFound,
            },
            RequestBody::Report(r) => {
                reported += r.results.len() as u32;
                ResponseBody::Ack
            }
            _ => ResponseBody::Ack,
        };
        client.respond(channel, Response::new(body)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (peak, idle) = (peak.load(Ordering::Relaxed) >> 10, idle >> 10);
    let sent = (tasks as usize * INPUT_BYTES) >> 20;
    Ok(Figure {
        name: "provider RSS, input flood",
        value: format!("{peak} MiB, {sent} MiB sent (idle: {idle} MiB)"),
        target: "< 400 MiB",
        baseline: "the idle provider".into(),
        ratio: Some(peak as f64 / idle.max(1) as f64),
        raw: json!({"peak_mib": peak, "idle_mib": idle, "queued_mib": sent, "tasks": tasks, "secs": secs}),
    })
}

fn unix_ms() -> u64 {
    naac_node::survey::unix_ms()
}

/// A signed offer from `key`, reachable at `addr`, living `ttl_ms`.
fn offer(key: &Keypair, addr: &str, seq: u64, ttl_ms: u64) -> anyhow::Result<Vec<u8>> {
    let now = unix_ms();
    let o = naac_market::Offer {
        provider: naac_net::ed25519_of_keypair(key).context("ed25519")?,
        class: naac_market::commodity_class().to_string(),
        cores: 2,
        memory: 1 << 30,
        score_milli: 1_000,
        slots: 2,
        free_slots: 2,
        price: Price(0),
        max_task_memory: 1 << 30,
        accepting: true,
        addrs: vec![addr.to_string()],
        seq,
        issued_ms: now,
        expires_ms: now + ttl_ms,
    };
    let sig = naac_net::sign(key, &o.signing_bytes());
    naac_market::SignedOffer { offer: o, sig }
        .to_bytes()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Time until a requester's market names a provider that appeared after `fakes` fake
/// offers for fresh keys were published (paced, so the gossip queues carry them).
async fn discovery(fakes: usize) -> anyhow::Result<Duration> {
    let topic = naac_market::topic(naac_market::commodity_class());
    let (hub, _hub_events, hub_addr, _) = raw_peer(Keypair::generate_ed25519(), None).await?;
    hub.subscribe(&topic).await?;
    let (req, mut req_events, _, _) =
        raw_peer(Keypair::generate_ed25519(), Some(hub_addr.clone())).await?;
    req.subscribe(&topic).await?;
    let real_key = Keypair::generate_ed25519();
    let real = real_key.public().to_peer_id();
    let (found_tx, found) = tokio::sync::oneshot::channel::<Instant>();
    let listener = {
        let req = req.clone();
        tokio::spawn(async move {
            let mut market = naac_node::survey::Market::new(4096, req.home());
            let mut found_tx = Some(found_tx);
            while let Some(ev) = req_events.recv().await {
                if let Event::Gossip {
                    topic,
                    data,
                    source,
                    propagated_by,
                } = ev
                    && let Some((peer, addr)) =
                        market.heard(&topic, &data, source, propagated_by, |_, _| true)
                {
                    if peer == real
                        && let Some(t) = found_tx.take()
                    {
                        let _ = t.send(Instant::now());
                    }
                    naac_node::survey::dial(&req, peer, addr);
                }
            }
        })
    };
    if fakes > 0 {
        let (adv, _adv_events, _, _) =
            raw_peer(Keypair::generate_ed25519(), Some(hub_addr.clone())).await?;
        adv.subscribe(&topic).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let made = tokio::task::spawn_blocking(move || {
            (0..fakes)
                .map(|_| {
                    let k = Keypair::generate_ed25519();
                    let at = format!("/ip4/127.0.0.1/tcp/9/p2p/{}", k.public().to_peer_id());
                    offer(&k, &at, 1, 9 * 60 * 1000)
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await??;
        for chunk in made.chunks(100) {
            for f in chunk {
                let _ = adv.publish(&topic, f.clone()).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The real provider appears: it joins the hub and publishes its offer until heard.
    let appeared = Instant::now();
    let (prov, _prov_events, prov_addr, _) = raw_peer(real_key.clone(), Some(hub_addr)).await?;
    prov.subscribe(&topic).await?;
    let publisher = tokio::spawn(async move {
        for seq in 1.. {
            if let Ok(o) = offer(&real_key, &prov_addr.to_string(), seq, 30_000) {
                let _ = prov.publish(&topic, o).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let at = tokio::time::timeout(Duration::from_secs(60), found).await;
    publisher.abort();
    listener.abort();
    let at = at
        .context("the real provider was not found within 60 s")?
        .context("the listener stopped")?;
    Ok(at - appeared)
}

async fn offer_flood() -> anyhow::Result<Figure> {
    let honest = discovery(0).await?;
    let flooded = discovery(FAKES).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(Figure {
        name: "discovery after 5,000 fake offers",
        value: format!("{:.0} ms (none: {:.0} ms)", ms(flooded), ms(honest)),
        target: "< 30 s",
        baseline: "the same with no flood".into(),
        ratio: Some(ms(flooded) / ms(honest).max(1.0)),
        raw: json!({"ms": ms(flooded), "honest_ms": ms(honest), "fakes": FAKES}),
    })
}
