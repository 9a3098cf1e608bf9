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
