//! Audits and repair, run by the data owner's long-running node over its catalog. Each due
//! shard's host is asked for a random chunk range with its proof ([`naac_store::audit`]
//! picks the range and the next time); what came back is recorded as passed, late, offline,
//! lost or corrupt against the shard and the host. When fewer than `repair_at` shards of a
//! manifest are healthy, exactly `k` healthy ones are read and every unhealthy shard is
//! rebuilt, checked against the manifest's root and uploaded to a new host.

use super::Catalog;
use super::client::{self, HostError};
use super::get::{Opened, Reader};
use naac_net::{Client, Keypair, Multiaddr, PeerId};
use naac_store::audit::{self, ShardState, Verdict};
use naac_store::placement::{self, Held};
use naac_store::repair::{self, Plan};
use naac_store::{SignedManifest, StoreId};
use naac_types::Credits;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::Duration;

/// How long a host has to answer an audit before it counts as late.
pub const AUDIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most shards audited in one round.
const ROUND: usize = 256;

/// Audit settings.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Each shard is audited this often on average.
    pub every_ms: u64,
    /// Repair below this many healthy shards (`None`: `k + 2`).
    pub repair_at: Option<u16>,
}

/// What one round did.
#[derive(Clone, Debug, Default)]
pub struct Round {
    pub audited: usize,
    pub passed: usize,
    /// Shards rebuilt onto new hosts.
    pub rebuilt: usize,
    /// Storage payments the bank took.
    pub payments: usize,
}

fn parse_addrs(a: &[String]) -> Vec<Multiaddr> {
    a.iter().filter_map(|s| s.parse().ok()).collect()
}

/// Audits every due shard of the catalog's manifests and repairs those that need it.
pub async fn round(
    client: &Client,
    home: &crate::Home,
    user: &Keypair,
    cfg: &AuditConfig,
    seed: &mut u64,
) -> anyhow::Result<Round> {
    let catalog = Catalog::open(&home.store_db())?;
    let now = crate::survey::unix_ms();
    let due = catalog.due(now, cfg.every_ms, ROUND)?;
    let mut out = Round::default();
    let mut manifests: BTreeSet<StoreId> = BTreeSet::new();
    let mut owed: BTreeMap<(StoreId, String), Credits> = BTreeMap::new();
    let mut by_manifest: BTreeMap<StoreId, Vec<super::catalog::ShardRow>> = BTreeMap::new();
    for row in due {
        by_manifest.entry(row.manifest).or_default().push(row);
    }
    for (id, rows) in by_manifest {
        let Some((_, signed)) = catalog.get(&id)? else {
            continue;
        };
        let man = SignedManifest::open(&signed, &id).map_err(|e| anyhow::anyhow!("{e}"))?;
        let pay_end = catalog.pay_row(&id)?.map(|p| p.end_ms);
        // Private data: its owner reads chunks with a token of its own; a node auditing for
        // the owner (an adopted bundle) may not read them and relies on the owner's signed
        // whole-shard challenges alone.
        let own = naac_net::ed25519_of_keypair(user) == Some(man.owner);
        let pass = if man.private && own {
            Some(super::data_pass(client, user, &id, None)?)
        } else {
            None
        };
        let read_chunks = !man.private || own;
        let pass = &pass;
        let checks = rows.iter().map(|row| {
            let mut s = *seed ^ u64::from(row.shard).wrapping_mul(0x9E37_79B9);
            let (start, len) = audit::challenge(man.geometry.shard_len(), &mut s);
            let man = &man;
            let catalog = &catalog;
            async move {
                let verdict = match row.host.parse::<PeerId>() {
                    Err(_) => Verdict::Lost,
                    Ok(peer) => {
                        let addrs = parse_addrs(&row.addrs);
                        if !addrs.is_empty() {
                            let _ = client.dial_peer(peer, addrs).await;
                        }
                        let chunk = if read_chunks {
                            client::read(
                                client,
                                peer,
                                &id,
                                man,
                                row.shard,
                                start,
                                len,
                                AUDIT_TIMEOUT,
                                pass.as_ref(),
                            )
                            .await
                            .map(drop)
                        } else {
                            Ok(())
                        };
                        match chunk {
                            Ok(_) => prove(client, catalog, user, peer, &id, row.shard).await,
                            Err(e) => {
                                tracing::info!(
                                    "audit of shard {} of {} on {}: {e}",
                                    row.shard,
                                    id.short(),
                                    row.host
                                );
                                e.verdict()
                            }
                        }
                    }
                };
                (row, verdict)
            }
        });
        for (row, v) in futures::future::join_all(checks).await {
            let next = audit::next_audit(now, cfg.every_ms, seed);
            catalog.record(&id, row.shard, &row.host, v, now, next)?;
            out.audited += 1;
            out.passed += usize::from(v == Verdict::Passed);
            if let Some(end) = pay_end {
                let passed = v == Verdict::Passed;
                let c =
                    catalog.accrue(&id, row.shard, passed, now, end, man.geometry.shard_len())?;
                let e = owed.entry((id, row.host.clone())).or_insert(Credits::ZERO);
                *e = Credits(e.0.saturating_add(c.0));
            }
        }
        manifests.insert(id);
        audit::next_random(seed);
    }
    super::pay::queue(&catalog, user, owed)?;
    match super::pay::flush(client, &catalog, user).await {
        Ok(n) => out.payments += n,
        Err(e) => tracing::warn!("storage payments: {e:#}"),
    }
    for id in &manifests {
        match repair_one(client, home, user, &catalog, id, cfg).await {
            Ok(n) => out.rebuilt += n,
            Err(e) => tracing::warn!("repair of naac://{id}: {e:#}"),
        }
    }
    Ok(out)
}

/// A whole-shard audit with the shard's next unused challenge (passed when none is left).
async fn prove(
    client: &Client,
    catalog: &Catalog,
    user: &Keypair,
    peer: PeerId,
    id: &StoreId,
    shard: u16,
) -> Verdict {
    let Ok(Some((key, answer, signed))) = catalog.take_challenge(id, shard) else {
        return Verdict::Passed;
    };
    // The owner signs its own; a delegate presents the owner's, handed over with the key.
    let sig = signed.unwrap_or_else(|| {
        naac_net::sign(
            user,
            &naac_proto::store::prove_signing_bytes(id, shard, &key),
        )
    });
    let req = naac_proto::store::StoreRequest::Prove {
        manifest: *id,
        shard,
        key,
        sig,
    };
    // A pass over the whole shard: give the host time to read it (at 50 MiB/s at least).
    match client::call(client, peer, req, AUDIT_TIMEOUT * 6).await {
        Ok(naac_proto::store::StoreResponse::Proof(h)) if h == answer => Verdict::Passed,
        // Paused by its owner, the host answered the cheap chunk audit and leaves the pass
        // over its disk for later: the challenge waits for the next audit.
        Err(HostError::Paused(_)) => {
            let _ = catalog.release_challenge(id, shard, &key);
            Verdict::Passed
        }
        Ok(_) => {
            tracing::info!(
                "whole-shard audit of shard {shard} of {} on {peer}: wrong answer",
                id.short()
            );
            Verdict::Corrupt
        }
        Err(e) => {
            tracing::info!(
                "whole-shard audit of shard {shard} of {} on {peer}: {e}",
                id.short()
            );
            e.verdict()
        }
    }
}

/// Each shard's state from the catalog (a shard placed nowhere is offline).
pub fn states(catalog: &Catalog, id: &StoreId, n: u16) -> anyhow::Result<Vec<ShardState>> {
    let mut st = vec![ShardState::Offline; usize::from(n)];
    for row in catalog.shards(id)? {
        if let Some(s) = st.get_mut(usize::from(row.shard)) {
            *s = audit::state(row.last, row.misses);
        }
    }
    Ok(st)
}

/// Repairs `id` if its audits call for it; returns the shards rebuilt.
pub async fn repair_one(
    client: &Client,
    home: &crate::Home,
    user: &Keypair,
    catalog: &Catalog,
    id: &StoreId,
    cfg: &AuditConfig,
) -> anyhow::Result<usize> {
    let Some((row, signed)) = catalog.get(id)? else {
        return Ok(0);
    };
    let man = SignedManifest::open(&signed, id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let g = man.geometry;
    // A rebuilt shard is kept for what is left of the term.
    let end_ms = row.created_ms + u64::from(row.days) * naac_store::DAY_MS;
    let days_left = end_ms
        .saturating_sub(crate::survey::unix_ms())
        .div_ceil(naac_store::DAY_MS)
        .max(1) as u32;
    let st = states(catalog, id, g.n)?;
    let at = cfg
        .repair_at
        .unwrap_or_else(|| repair::default_repair_at(&g));
    let (read, rebuild) = match repair::plan(&g, &st, at) {
        Plan::Healthy { .. } => return Ok(0),
        Plan::Stuck { healthy } => {
            anyhow::bail!(
                "only {healthy} of {} shards are healthy; waiting for hosts",
                g.k
            )
        }
        Plan::Repair { read, rebuild } => (read, rebuild),
    };
    let rows = catalog.shards(id)?;
    let host_of = |s: u16| rows.iter().find(|r| r.shard == s);
    // A reader that knows only the `k` shards chosen: it cannot read more.
    let mut holders = vec![Vec::new(); usize::from(g.n)];
    for &s in &read {
        if let Some(peer) = host_of(s).and_then(|r| r.host.parse::<PeerId>().ok()) {
            holders[usize::from(s)].push(peer);
        }
    }
    let opened = Opened {
        id: *id,
        manifest: man.clone(),
        signed: signed.clone(),
        holders,
        failures: Vec::new(),
        pass: if man.private {
            Some(super::data_pass(client, user, id, None)?)
        } else {
            None
        },
    };
    std::fs::create_dir_all(home.store_outgoing())?;
    let scratch = tempfile::tempdir_in(home.store_outgoing())?;
    let paths: Vec<std::path::PathBuf> = rebuild
        .iter()
        .map(|s| scratch.path().join(format!("{s}.shard")))
        .collect();
    let mut files = paths
        .iter()
        .map(|p| std::fs::File::create(p).map(std::io::BufWriter::new))
        .collect::<Result<Vec<_>, _>>()?;
    let mut reader = Reader::new(client, &opened)?;
    let mut coder = naac_store::erasure::Coder::new(g).map_err(|e| anyhow::anyhow!("{e}"))?;
    let per = ((64u64 << 20) / g.stripe_bytes()).max(1);
    let mut s = 0;
    while s < g.stripes() {
        let e = (s + per).min(g.stripes());
        let data = reader.stripes(s..e).await?;
        for stripe in data.chunks(g.stripe_bytes() as usize) {
            let recovery = coder.encode(stripe).map_err(|e| anyhow::anyhow!("{e}"))?;
            for (f, &shard) in files.iter_mut().zip(&rebuild) {
                let i = usize::from(shard);
                let piece = if i < usize::from(g.k) {
                    &stripe[i * g.piece as usize..(i + 1) * g.piece as usize]
                } else {
                    recovery[i - usize::from(g.k)].as_slice()
                };
                f.write_all(piece)?;
            }
        }
        s = e;
    }
    for f in &mut files {
        f.flush()?;
    }
    drop(files);
    let challenges = {
        let paths = paths.clone();
        tokio::task::spawn_blocking(move || super::make_challenges(&paths)).await??
    };
    // Where the rebuilt shards go: hosts that hold nothing of this manifest.
    let found = client::find_hosts(client, Duration::from_secs(5), 1024).await;
    let addrs: BTreeMap<PeerId, Vec<String>> = found
        .iter()
        .map(|(p, a)| (*p, a.iter().map(ToString::to_string).collect()))
        .collect();
    let surveyed = client::survey(client, found).await;
    let healthy_hosts: Vec<Held<PeerId>> = rows
        .iter()
        .filter(|r| st[usize::from(r.shard)] == ShardState::Healthy)
        .filter_map(|r| {
            Some(Held {
                shard: r.shard,
                host: r.host.parse().ok()?,
                owner: None,
                net: None,
            })
        })
        .collect();
    let unhealthy: Vec<PeerId> = rows
        .iter()
        .filter(|r| st[usize::from(r.shard)] != ShardState::Healthy)
        .filter_map(|r| r.host.parse().ok())
        .collect();
    let pay = catalog.pay_row(id)?;
    let terms = super::put::PayTerms {
        bank: pay.as_ref().map(|p| p.bank_key),
        max_price: pay.as_ref().and_then(|p| p.max_price),
    };
    let mut hosts = super::put::hosts(catalog, surveyed, g.shard_len(), &terms)?;
    hosts.candidates.retain(|c| !unhealthy.contains(&c.host));
    let escrow = pay.as_ref().map(|p| naac_proto::store::StoreEscrow {
        bank: naac_proto::AccountKey(p.bank_key.0),
        job: p.job,
    });
    let plan = placement::place(&rebuild, g.shard_len(), &hosts.candidates, &healthy_hosts);
    let now = crate::survey::unix_ms();
    let mut done = 0;
    let mut replaced = Vec::new();
    let mut seed = now;
    for (shard, peer) in plan.assigned {
        let idx = rebuild.iter().position(|s| *s == shard).unwrap_or(0);
        let root = man.shards[usize::from(shard)];
        let price = hosts.prices.get(&peer).copied().unwrap_or_default();
        let terms = client::Terms {
            days: days_left,
            price,
            escrow: escrow.filter(|_| price.0 > 0),
        };
        match client::upload(client, peer, *id, shard, root, &paths[idx], &terms, &signed).await {
            Ok(()) => {
                let a = addrs.get(&peer).cloned().unwrap_or_default();
                let next = audit::next_audit(now, cfg.every_ms, &mut seed);
                if let Some(old) = host_of(shard).and_then(|r| r.host.parse::<PeerId>().ok()) {
                    replaced.push(old);
                }
                catalog.place(id, shard, &peer.to_string(), &a, price, now, next)?;
                // Only the owner can sign whole-shard proofs: a delegate's rebuilt shards get
                // chunk audits alone.
                let mine = naac_net::ed25519_of_keypair(user) == Some(man.owner);
                let fresh: &[super::Challenge] = if mine { &challenges[idx] } else { &[] };
                catalog.set_challenges(id, shard, fresh)?;
                done += 1;
            }
            Err(HostError::Corrupt(e)) | Err(HostError::Refused(e)) => {
                tracing::warn!("rebuilt shard {shard} refused by {peer}: {e}");
            }
            Err(e) => tracing::warn!("rebuilt shard {shard} to {peer}: {e}"),
        }
    }
    let what = format!(
        "repair: read shards {read:?}, rebuilt {done} of {:?}{}",
        rebuild,
        if plan.unplaced.is_empty() {
            String::new()
        } else {
            format!(", no host for {:?}", plan.unplaced)
        }
    );
    tracing::info!("naac://{id}: {what}");
    catalog.note(id, now, &what)?;
    // The hosts whose shards moved are asked to drop what is left of them.
    super::remove_from(client, user, id, replaced.into_iter()).await;
    Ok(done)
}
