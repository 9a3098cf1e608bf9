//! `naac store put`: a file or directory laid out as one stream, hashed file by file,
//! erasure-coded into shard files under the data dir, described by a manifest the user's key
//! signs, and uploaded to distinct hosts. It succeeds only when at least `happy` hosts hold a
//! shard, and otherwise says which hosts refused and why; it never waits longer than its
//! deadline.

use super::Catalog;
use super::client::{self, HostError};
use anyhow::Context as _;
use naac_net::{Client, Keypair, PeerId};
use naac_store::manifest::MANIFEST_VERSION;
use naac_store::placement::{self, Candidate};
use naac_store::{FileEntry, Geometry, Manifest, SignedManifest, StoreId};
use naac_types::{ContentId, Price};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A put's settings.
#[derive(Clone, Debug)]
pub struct PutOptions {
    pub k: u16,
    pub n: u16,
    /// Least number of distinct hosts that must hold a shard.
    pub happy: u16,
    /// Days the hosts are asked to keep it.
    pub days: u32,
    /// The whole put gives up after this.
    pub timeout: Duration,
    /// How long to look for hosts.
    pub discover: Duration,
    /// The most paid per GiB-day (`None`: any ask).
    pub max_price: Option<Price>,
    /// Hosts serve it only to readers with a data token from the owner.
    pub private: bool,
}

/// The default `happy` for `k`-of-`n`: halfway from `k` to `n`, so a fresh upload survives
/// as many losses as it has spare shards beyond it.
pub fn default_happy(k: u16, n: u16) -> u16 {
    k + (n - k).div_ceil(2)
}

/// A file tree to put.
pub struct Tree {
    pub name: String,
    pub single: bool,
    /// Relative path, file on disk, length.
    pub files: Vec<(String, PathBuf, u64)>,
    pub empty_dirs: Vec<String>,
}

/// Walks `path`: a file, or a directory's files in path order. Symlinks and special files
/// are refused by name rather than followed.
pub fn walk(path: &Path) -> anyhow::Result<Tree> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("read {}", path.display()))?;
    let name = path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "data".into());
    if meta.is_file() {
        return Ok(Tree {
            files: vec![(name.clone(), path.to_path_buf(), meta.len())],
            name,
            single: true,
            empty_dirs: Vec::new(),
        });
    }
    anyhow::ensure!(
        meta.is_dir(),
        "{} is neither a file nor a directory",
        path.display()
    );
    let mut tree = Tree {
        name,
        single: false,
        files: Vec::new(),
        empty_dirs: Vec::new(),
    };
    walk_dir(path, "", &mut tree)?;
    tree.files.sort_by(|a, b| a.0.cmp(&b.0));
    tree.empty_dirs.sort();
    let entries = tree.files.len() + tree.empty_dirs.len();
    anyhow::ensure!(
        entries <= naac_store::manifest::MAX_FILES,
        "{} holds {entries} files and directories; a manifest lists at most {}",
        path.display(),
        naac_store::manifest::MAX_FILES
    );
    Ok(tree)
}

fn walk_dir(dir: &Path, rel: &str, tree: &mut Tree) -> anyhow::Result<()> {
    let mut empty = true;
    for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let e = e.with_context(|| format!("read {}", dir.display()))?;
        empty = false;
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("{}: file name {n:?} is not UTF-8", dir.display()))?;
        let path = e.path();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        naac_store::manifest::check_path(&r)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk_dir(&path, &r, tree)?;
        } else if ft.is_file() {
            let len = e.metadata()?.len();
            tree.files.push((r, path, len));
        } else {
            anyhow::bail!(
                "{} is a symlink or special file; only regular files and directories are stored",
                path.display()
            );
        }
    }
    if empty && !rel.is_empty() {
        tree.empty_dirs.push(rel.to_string());
    }
    Ok(())
}

/// A file of the tree: relative path, file on disk, length.
type TreeFile = (String, PathBuf, u64);

/// Reads the tree's files one after another, hashing each.
struct Files<'a> {
    files: std::slice::Iter<'a, TreeFile>,
    /// The file being read, the bytes left of it and its hash so far.
    current: Option<(File, u64, blake3::Hasher, &'a TreeFile)>,
    offset: u64,
    entries: Vec<FileEntry>,
}

impl Read for Files<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() {
                let Some(f) = self.files.next() else {
                    return Ok(0);
                };
                let file = File::open(&f.1)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.1.display())))?;
                self.current = Some((file, f.2, blake3::Hasher::new(), f));
            }
            let Some((file, left, hasher, f)) = self.current.as_mut() else {
                continue;
            };
            if *left == 0 {
                // The file must end where it was measured.
                let mut probe = [0u8; 1];
                if file.read(&mut probe)? != 0 {
                    return Err(io::Error::other(format!(
                        "{} grew while it was being stored",
                        f.1.display()
                    )));
                }
                self.entries.push(FileEntry {
                    path: f.0.clone(),
                    offset: self.offset - f.2,
                    len: f.2,
                    hash: ContentId(*hasher.finalize().as_bytes()),
                });
                self.current = None;
                continue;
            }
            let want = buf.len().min(*left as usize);
            let got = file.read(&mut buf[..want])?;
            if got == 0 {
                return Err(io::Error::other(format!(
                    "{} shrank while it was being stored",
                    f.1.display()
                )));
            }
            hasher.update(&buf[..got]);
            *left -= got as u64;
            self.offset += got as u64;
            return Ok(got);
        }
    }
}

/// The tree erasure-coded into `dir`: its geometry, file entries, shard roots and files.
pub struct Encoded {
    pub geometry: Geometry,
    pub files: Vec<FileEntry>,
    pub roots: Vec<ContentId>,
    pub shard_files: Vec<PathBuf>,
}

/// Encodes `tree` at `k`-of-`n` into shard files in `dir` (blocking).
pub fn encode(tree: &Tree, k: u16, n: u16, dir: &Path) -> anyhow::Result<Encoded> {
    let data_len: u64 = tree.files.iter().map(|f| f.2).sum();
    let geometry = Geometry::new(k, n, data_len).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shard_files: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("{i}.shard"))).collect();
    let mut outs = shard_files
        .iter()
        .map(|p| {
            File::create(p)
                .map(io::BufWriter::new)
                .with_context(|| format!("create {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut files = Files {
        files: tree.files.iter(),
        current: None,
        offset: 0,
        entries: Vec::new(),
    };
    let roots = naac_store::erasure::encode_stream(&geometry, &mut files, &mut outs)
        .map_err(|e| anyhow::anyhow!("encode: {e}"))?;
    // Files of zero bytes at the end are never read from: finish them.
    io::copy(&mut files, &mut io::sink())?;
    for mut o in outs {
        io::Write::flush(&mut o)?;
    }
    Ok(Encoded {
        geometry,
        files: files.entries,
        roots,
        shard_files,
    })
}

/// Why a put failed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error(
        "only {placed} hosts took a shard, {happy} must (\"happy\"); {}",
        list(*placed, hosts)
    )]
    Unhappy {
        placed: usize,
        happy: u16,
        hosts: Vec<(String, String)>,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn list(placed: usize, hosts: &[(String, String)]) -> String {
    if hosts.is_empty() && placed > 0 {
        return "no other storage host was found: start more with `naac node --store`".into();
    }
    if hosts.is_empty() {
        return "no storage host was found: start hosts with `naac node --store` and reach them with --join".into();
    }
    let mut s = String::from("hosts:");
    for (h, why) in hosts {
        s.push_str(&format!("\n  {h}: {why}"));
    }
    s
}

/// A successful put.
pub struct Put {
    pub id: StoreId,
    pub manifest: Manifest,
    pub placed: Vec<(u16, PeerId)>,
    /// Hosts that refused or failed, and why.
    pub refused: Vec<(PeerId, String)>,
}

/// Which hosts a put or a repair may use, as its payment allows.
#[derive(Clone, Copy, Debug, Default)]
pub struct PayTerms {
    /// The bank paying (`None`: unpaid, so only hosts that ask nothing).
    pub bank: Option<naac_ledger::AccountKey>,
    /// The most paid per GiB-day.
    pub max_price: Option<Price>,
}

/// Hosts surveyed, sorted.
pub struct Hosts {
    /// Those that may take a shard.
    pub candidates: Vec<Candidate<PeerId>>,
    /// Their asks per GiB-day.
    pub prices: HashMap<PeerId, Price>,
    /// The others, with why not.
    pub refused: Vec<(PeerId, String)>,
}

/// Sorts surveyed hosts into those that may take a shard of `shard_len` bytes on `terms` and
/// those that may not (with why: refusing, full, asking too much, paid at another bank,
/// being vetted again after a failed audit, unreachable).
pub fn hosts(
    catalog: &Catalog,
    surveyed: Vec<(PeerId, Result<naac_proto::store::StoreInfo, HostError>)>,
    shard_len: u64,
    terms: &PayTerms,
) -> anyhow::Result<Hosts> {
    let mut out = Hosts {
        candidates: Vec::new(),
        prices: HashMap::new(),
        refused: Vec::new(),
    };
    for (peer, info) in surveyed {
        let i = match info {
            Ok(i) => i,
            Err(e) => {
                out.refused.push((peer, e.to_string()));
                continue;
            }
        };
        let size = naac_types::units::format_size;
        let why = if let Some(r) = i.refusing {
            Some(r)
        } else if i.free < shard_len {
            Some(format!(
                "has {} free, a shard is {}",
                size(i.free),
                size(shard_len)
            ))
        } else if i.price.0 > 0 && terms.bank.is_none() {
            Some(format!(
                "asks {} credits per GiB-day: pay with --bank ADDR",
                i.price
            ))
        } else if let Some(max) = terms.max_price.filter(|m| i.price > *m) {
            Some(format!(
                "asks {} credits per GiB-day, above --max-price {max}",
                i.price
            ))
        } else if let (Some(at), Some(ours)) = (i.paid_at, terms.bank)
            && i.price.0 > 0
            && at.0 != ours.0
        {
            Some("is paid at another bank".into())
        } else if !catalog.trust(&peer.to_string())?.may_hold() {
            Some("is being vetted again after a failed audit".into())
        } else {
            None
        };
        if let Some(why) = why {
            out.refused.push((peer, why));
            continue;
        }
        out.prices.insert(peer, i.price);
        out.candidates.push(Candidate {
            host: peer,
            owner: i.owner,
            net: None,
            free: i.free,
            score: catalog.trust(&peer.to_string())?.score(),
        });
    }
    Ok(out)
}

/// Puts `path` into the store through `client`, signing with `user`; with `pay` (a bank and
/// its address), escrows the storage's term there and pays hosts per passed audit.
pub async fn put(
    client: &Client,
    home: &crate::Home,
    user: &Keypair,
    path: &Path,
    opts: &PutOptions,
    pay: Option<(&crate::pay::BankConn, &str)>,
) -> Result<Put, PutError> {
    let started = Instant::now();
    let tree = walk(path)?;
    std::fs::create_dir_all(home.store_outgoing())
        .with_context(|| format!("create {}", home.store_outgoing().display()))?;
    let scratch = tempfile::tempdir_in(home.store_outgoing())
        .with_context(|| format!("make a scratch dir in {}", home.store_outgoing().display()))?;
    let dir = scratch.path().to_path_buf();
    let (k, n) = (opts.k, opts.n);
    // Look for hosts while the data is encoded.
    let find = client::find_hosts(client, opts.discover, 1024);
    let enc = tokio::task::spawn_blocking(move || {
        let tree = tree;
        let e = encode(&tree, k, n, &dir)?;
        anyhow::Ok((e, tree))
    });
    let (found, enc) = tokio::join!(find, enc);
    let addrs: std::collections::HashMap<PeerId, Vec<String>> = found
        .iter()
        .map(|(p, a)| (*p, a.iter().map(ToString::to_string).collect()))
        .collect();
    let (enc, tree) = enc.map_err(|e| anyhow::anyhow!("encode: {e}"))??;
    // The whole-shard challenges (16 keyed passes over every shard) are made while the
    // shards go out, rather than before.
    let challenges = {
        let files = enc.shard_files.clone();
        tokio::task::spawn_blocking(move || super::make_challenges(&files))
    };
    let owner = naac_net::ed25519_of_keypair(user).context("the user key is not ed25519")?;
    let manifest = Manifest {
        v: MANIFEST_VERSION,
        owner,
        created_ms: crate::survey::unix_ms(),
        name: tree.name.clone(),
        single: tree.single,
        files: enc.files,
        empty_dirs: tree.empty_dirs,
        geometry: enc.geometry,
        shards: enc.roots.clone(),
        private: opts.private,
    };
    manifest.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let signed = SignedManifest::new(&manifest, |b| naac_net::sign(user, b)).to_bytes();
    let id = SignedManifest::id_of(&signed);
    let catalog = Catalog::open(&home.store_db())?;
    // Ask every host found for its offer.
    let surveyed = client::survey(client, found).await;
    let shard_len = enc.geometry.shard_len();
    let terms = PayTerms {
        bank: match pay {
            Some((b, _)) => Some(b.key().await.map_err(|e| anyhow::anyhow!("{e}"))?),
            None => None,
        },
        max_price: opts.max_price,
    };
    let Hosts {
        candidates,
        prices,
        mut refused,
    } = hosts(&catalog, surveyed, shard_len, &terms)?;
    let shards: Vec<u16> = (0..n).collect();
    let mut todo = placement::place(&shards, shard_len, &candidates, &[]).assigned;
    let price_of = |p: &PeerId| prices.get(p).copied().unwrap_or_default();
    let end_ms = crate::survey::unix_ms() + u64::from(opts.days) * naac_store::DAY_MS;
    // Escrow the term of the hosts chosen, and half again for repairs onto other hosts.
    let mut escrow = None;
    if let (Some((bank, addr)), Some(bank_key)) = (pay, terms.bank) {
        let term = u64::from(opts.days) * naac_store::DAY_MS;
        let need: u64 = todo
            .iter()
            .map(|(_, p)| naac_store::storage_cost(price_of(p), shard_len, term).0)
            .sum();
        if need > 0 {
            let amount = naac_types::Credits(need + need / 2);
            let (_, job) = super::pay::open_escrow(bank, user, &id, amount, end_ms).await?;
            escrow = Some(naac_proto::store::StoreEscrow {
                bank: naac_proto::AccountKey(bank_key.0),
                job,
            });
            catalog.set_pay(
                &id,
                &super::pay::PayRow {
                    bank: addr.to_string(),
                    bank_key,
                    job,
                    escrowed: amount,
                    end_ms,
                    max_price: opts.max_price,
                },
            )?;
        }
    }
    let mut placed: Vec<(u16, PeerId)> = Vec::new();
    let deadline = started + opts.timeout;
    // Upload; a shard a host fails goes to the next free host, once.
    for round in 0..2 {
        let uploads = todo.iter().map(|&(shard, peer)| {
            let path = enc.shard_files[usize::from(shard)].clone();
            let root = enc.roots[usize::from(shard)];
            let signed = &signed;
            let terms = client::Terms {
                days: opts.days,
                price: price_of(&peer),
                escrow,
            };
            async move {
                let left = deadline.saturating_duration_since(Instant::now());
                let r = tokio::time::timeout(
                    left,
                    client::upload(client, peer, id, shard, root, &path, &terms, signed),
                )
                .await
                .unwrap_or(Err(HostError::Late(opts.timeout)));
                (shard, peer, r)
            }
        });
        let mut failed = Vec::new();
        for (shard, peer, r) in futures::future::join_all(uploads).await {
            match r {
                Ok(()) => placed.push((shard, peer)),
                Err(e) => {
                    refused.push((peer, e.to_string()));
                    failed.push(shard);
                }
            }
        }
        if failed.is_empty() || round == 1 || Instant::now() >= deadline {
            break;
        }
        let bad: Vec<PeerId> = refused.iter().map(|r| r.0).collect();
        let held: Vec<placement::Held<PeerId>> = placed
            .iter()
            .map(|&(shard, host)| placement::Held {
                shard,
                host,
                owner: candidates
                    .iter()
                    .find(|c| c.host == host)
                    .and_then(|c| c.owner.clone()),
                net: None,
            })
            .collect();
        let rest: Vec<Candidate<PeerId>> = candidates
            .iter()
            .filter(|c| !bad.contains(&c.host))
            .cloned()
            .collect();
        todo = placement::place(&failed, shard_len, &rest, &held).assigned;
    }
    if placed.len() < usize::from(opts.happy) {
        // Take back what went out: an unhappy upload is not kept half-way.
        super::remove_from(client, user, &id, placed.iter().map(|p| p.1)).await;
        if let (Some((bank, _)), Some(p)) = (pay, catalog.pay_row(&id)?) {
            if let Err(e) = super::pay::refund(bank, user, &p).await {
                tracing::warn!("refund the storage escrow of {}: {e:#}", id.short());
            }
            catalog.mark_removed(&id)?;
        }
        return Err(PutError::Unhappy {
            placed: placed.len(),
            happy: opts.happy,
            hosts: refused
                .iter()
                .map(|(p, why)| (p.to_string(), why.clone()))
                .collect(),
        });
    }
    catalog.add(&id, &manifest, &signed, opts.days)?;
    let challenges = challenges
        .await
        .map_err(|e| anyhow::anyhow!("challenges: {e}"))??;
    for (shard, c) in challenges.iter().enumerate() {
        catalog.set_challenges(&id, shard as u16, c)?;
    }
    let now = crate::survey::unix_ms();
    let mut seed = now ^ u64::from_le_bytes(id.0[..8].try_into().unwrap_or_default());
    for &(shard, peer) in &placed {
        let next = naac_store::audit::next_audit(now, super::AUDIT_EVERY_MS, &mut seed);
        let a = addrs.get(&peer).cloned().unwrap_or_default();
        catalog.place(
            &id,
            shard,
            &peer.to_string(),
            &a,
            price_of(&peer),
            now,
            next,
        )?;
    }
    Ok(Put {
        id,
        manifest,
        placed,
        refused,
    })
}
