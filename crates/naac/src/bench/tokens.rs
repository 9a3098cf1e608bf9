//! The token figures: what a provider spends on a pool token per request (signature checks
//! of every block, then the checks run with the request's facts), and a token's size per
//! block.

use super::{Bench, Figure};
use anyhow::Context as _;
use naac_token::{Kind, Limits, PoolRequest, Root};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime};

impl Bench {
    pub(super) async fn tokens(&self) -> anyhow::Result<Vec<Figure>> {
        let (alice, bob, carol) = (
            Root::from_ed25519(&[1; 32])?,
            Root::from_ed25519(&[2; 32])?,
            Root::from_ed25519(&[3; 32])?,
        );
        let minted = alice.mint(
            Kind::Pool,
            Some(&bob.public()),
            &Limits {
                slots: Some(4),
                expires: Some(SystemTime::now() + Duration::from_secs(86_400)),
                job_name_prefix: Some("render-".into()),
                ..Limits::default()
            },
        )?;
        let handed = naac_token::delegate(
            &minted,
            &bob,
            &carol.public(),
            &Limits {
                hours: Some("00:00-24:00".parse().map_err(anyhow::Error::msg)?),
                ..Limits::default()
            },
        )?;
        // Three more plain blocks: five in all, the size every verifier must accept.
        let mut token = handed.clone();
        for n in [3, 2, 1] {
            token = naac_token::attenuate(
                &token,
                &Limits {
                    slots: Some(n),
                    ..Limits::default()
                },
            )?;
        }
        let v = alice.verifier();
        let key = carol.public();
        let rounds = if self.quick { 500 } else { 5_000 };
        let req = PoolRequest {
            host: "12D3KooWHost",
            user: Some(&key),
            job_name: "render-frames",
            slots: 1,
            minute_of_day: 600,
            now: SystemTime::now(),
        };
        let (mut fresh, mut known) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
        for _ in 0..rounds {
            let t0 = Instant::now();
            let t = v.verify(&token)?;
            let t1 = Instant::now();
            t.authorize_pool(&req)?;
            let t2 = Instant::now();
            fresh.push(t2 - t0);
            known.push(t2 - t1);
        }
        let pct = |times: &mut Vec<Duration>| {
            times.sort();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
            (at(0.5), at(0.99))
        };
        let (p50, p99) = pct(&mut fresh);
        let (k50, k99) = pct(&mut known);
        let (authority, delegation) = (minted.len(), handed.len() - minted.len());
        let plain = (token.len() - handed.len()) / 3;
        let (spread, nodes) = self.revocation_spread().await?;
        let data = data_check(rounds)?;
        Ok(vec![
            Figure {
                name: "revocation heard by every node",
                value: format!("{:.2} s", spread.as_secs_f64()),
                target: "<= 10 s",
                baseline: format!("{nodes} nodes, loopback"),
                ratio: None,
                raw: json!({"seconds": spread.as_secs_f64(), "nodes": nodes}),
            },
            Figure {
                name: "pool token check per request (p50 / p99)",
                value: format!("{k50:.0} / {k99:.0} µs"),
                target: "p99 <= 100 µs",
                baseline: format!("{} bytes", token.len()),
                ratio: None,
                raw: json!({"p50_us": k50, "p99_us": k99, "rounds": rounds}),
            },
            Figure {
                name: "  verified from scratch, 5 blocks",
                value: format!("{p50:.0} / {p99:.0} µs"),
                target: "once per token",
                baseline: format!("{} bytes", token.len()),
                ratio: None,
                raw: json!({"p50_us": p50, "p99_us": p99, "rounds": rounds, "bytes": token.len(), "blocks": 5}),
            },
            Figure {
                name: "data token check per 1 MiB read, host (p50 / p99)",
                value: format!("{:.0} / {:.0} µs", data.whole.0, data.whole.1),
                target: "p99 <= 100 µs",
                baseline: format!("{} B, 3 blocks, signatures once per 10 s", data.bytes),
                ratio: None,
                raw: json!({"p50_us": data.whole.0, "p99_us": data.whole.1, "bytes": data.bytes}),
            },
            Figure {
                name: "  with a path limit (a stripe of 8 files)",
                value: format!("{:.0} / {:.0} µs", data.path.0, data.path.1),
                target: "(checks each file once)",
                baseline: String::new(),
                ratio: None,
                raw: json!({"p50_us": data.path.0, "p99_us": data.path.1}),
            },
            Figure {
                name: "token bytes: minted / handed on / narrowed",
                value: format!("{authority} / +{delegation} / +{plain}"),
                target: "(base64)",
                baseline: String::new(),
                ratio: None,
                raw: json!({"authority": authority, "delegation_block": delegation, "attenuation_block": plain}),
            },
        ])
    }

    /// Ten providers that trust one user's tokens in a line, each joined to the one before
    /// (gossip's worst case: nine hops); a revocation published at the last: how long until
    /// every one has it.
    async fn revocation_spread(&self) -> anyhow::Result<(Duration, usize)> {
        let nodes = if self.quick { 4 } else { 10 };
        let owner = naac_net::Keypair::generate_ed25519();
        let owner_id = naac_net::peer_id_of(&owner);
        let (root, _) = crate::daemon::root_of(&owner)?;
        let token = root.mint(Kind::Pool, None, &Limits::default())?;
        let policy = format!("idle_only = false\ntrust_tokens_from = [\"{owner_id}\"]\n");
        struct Killed(Vec<std::process::Child>);
        impl Drop for Killed {
            fn drop(&mut self) {
                for c in &mut self.0 {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        let mut hosts = Killed(Vec::new());
        let mut addrs: Vec<String> = Vec::new();
        let mut homes = Vec::new();
        for i in 0..nodes {
            let home = self.dir.join(format!("revoke-{i}"));
            let (child, addr) =
                super::store::spawn_host(&home, addrs.last().map(String::as_str), &policy, &[])?;
            hosts.0.push(child);
            addrs.push(addr);
            homes.push(home);
        }
        let far: naac_net::Multiaddr = addrs.last().context("no node")?.parse()?;
        let (client, _events) = crate::reach::looking_node(&[far], false).await?;
        client.subscribe(naac_proto::REVOCATION_TOPIC).await?;
        // Gossip meshes form on their heartbeat (1 s).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = naac_node::revoked::revocation(&token, 0, &owner).map_err(anyhow::Error::msg)?;
        let data = serde_json::to_vec(&r)?;
        let t0 = Instant::now();
        let heard = |h: &std::path::Path| {
            std::fs::read_to_string(h.join("revoked.jsonl")).is_ok_and(|t| !t.trim().is_empty())
        };
        while client
            .publish(naac_proto::REVOCATION_TOPIC, data.clone())
            .await
            .is_err()
        {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "no node on the topic"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loop {
            if homes.iter().all(|h| heard(h)) {
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "{} of {nodes} nodes heard the revocation in 30 s",
                homes.iter().filter(|h| heard(h)).count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok((t0.elapsed(), nodes))
    }
}

/// A storage host's check of a data token per `Read`, p50 and p99 in µs: for a token of a
/// whole id, and for one limited to a path prefix.
struct DataCheck {
    whole: (f64, f64),
    path: (f64, f64),
    bytes: usize,
}

/// Alice's private tree of 64 files of 256 KiB (2-of-4, 1 MiB pieces, so a 1 MiB read of a
/// shard covers one stripe of 2 MiB: 8 files); bob's token handed on to his session's
/// provider: what a host does for each 1 MiB read the provider sends.
fn data_check(rounds: usize) -> anyhow::Result<DataCheck> {
    use naac_node::store::access::Access;
    use naac_store::layout::Geometry;
    use naac_store::manifest::{FileEntry, MANIFEST_VERSION, Manifest};
    let alice = naac_net::Keypair::generate_ed25519();
    let bob = naac_net::Keypair::generate_ed25519();
    let provider = naac_net::Keypair::generate_ed25519().public().to_peer_id();
    let key = |k: &naac_net::Keypair| naac_net::ed25519_of_keypair(k).context("ed25519");
    let piece = 256 << 10;
    let files: Vec<FileEntry> = (0..64u64)
        .map(|i| FileEntry {
            path: format!("{}/part-{i:02}.bin", if i % 2 == 0 { "a" } else { "b" }),
            offset: i * piece,
            len: piece,
            hash: naac_types::ContentId::of(&i.to_le_bytes()),
        })
        .collect();
    let mut files = files;
    files.sort_by(|x, y| x.path.cmp(&y.path));
    // Offsets follow path order.
    for (i, f) in files.iter_mut().enumerate() {
        f.offset = i as u64 * piece;
    }
    let man = Manifest {
        v: MANIFEST_VERSION,
        owner: key(&alice)?,
        created_ms: 0,
        name: "tree".into(),
        single: false,
        files,
        empty_dirs: Vec::new(),
        geometry: Geometry {
            k: 2,
            n: 4,
            piece: 1 << 20,
            data_len: 64 * piece,
        },
        shards: vec![naac_types::ContentId::of(b"s"); 4],
        private: true,
    };
    let m = naac_types::ContentId::of(b"the tree");
    let root = naac_node::store::token_root(&alice)?;
    let pass = |limits: &Limits| -> anyhow::Result<naac_proto::store::DataPass> {
        let t = root.mint(Kind::Data, Some(&key(&bob)?), limits)?;
        let p = naac_proto::store::DataPass {
            token: t,
            user: None,
        };
        let handed = naac_node::store::hand_to(&p, &bob, &provider, &m)?;
        Ok(naac_proto::store::DataPass {
            token: handed,
            user: None,
        })
    };
    let whole = pass(&Limits {
        manifests: vec![m.to_hex()],
        ..Limits::default()
    })?;
    let under_b = pass(&Limits {
        path_prefix: Some("b/".into()),
        ..Limits::default()
    })?;
    let access = Access::default();
    let time = |p: &naac_proto::store::DataPass, start: u64| -> anyhow::Result<(f64, f64)> {
        let mut t = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t0 = Instant::now();
            access
                .read(
                    &man,
                    &m,
                    &provider,
                    Some(p),
                    start,
                    1 << 20,
                    SystemTime::now(),
                )
                .map_err(anyhow::Error::msg)?;
            t.push(t0.elapsed());
        }
        t.sort();
        let at = |q: f64| t[((t.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        Ok((at(0.5), at(0.99)))
    };
    // Shard bytes 4..5 MiB are stripe 4 (data 8..10 MiB): eight of b's files (the second
    // half of the tree), each checked against the prefix.
    Ok(DataCheck {
        whole: time(&whole, 0)?,
        path: time(&under_b, 4 << 20)?,
        bytes: whole.token.len(),
    })
}
