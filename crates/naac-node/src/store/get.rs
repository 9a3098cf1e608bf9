//! Reading stored data back: find who holds a manifest (the DHT and any hosts the caller
//! knows), take the manifest from whichever host hands over one that hashes to the id, and
//! read stripes from any `k` shards — the data shards first, so with their hosts up nothing
//! is decoded — moving to another shard when a host is offline, has lost its shard or sends
//! a byte that does not prove. Each file is checked against its BLAKE3 before it is kept.

use super::client::{self, HostError};
use anyhow::Context as _;
use naac_net::{Client, Multiaddr, PeerId};
use naac_store::erasure::Coder;
use naac_store::{Manifest, StoreId};
use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bytes of data read per window (per-window memory is about this).
const WINDOW_BYTES: u64 = 64 << 20;

/// How long one slice read may take before its host counts as late.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A manifest and who holds its shards.
pub struct Opened {
    pub id: StoreId,
    pub manifest: Manifest,
    pub signed: Vec<u8>,
    /// Hosts holding each shard, shard `i` at `i`.
    pub holders: Vec<Vec<PeerId>>,
    /// Hosts that did not answer, and why.
    pub failures: Vec<(PeerId, String)>,
    /// What this reader shows hosts of private data ([`super::data_pass`]).
    pub pass: Option<naac_proto::store::DataPass>,
}

/// Finds `id`'s hosts and its manifest, showing hosts `pass` ([`super::data_pass`]) if the
/// data is private.
pub async fn open(
    client: &Client,
    id: &StoreId,
    hints: Vec<(PeerId, Vec<Multiaddr>)>,
    within: Duration,
    pass: Option<naac_proto::store::DataPass>,
) -> anyhow::Result<Opened> {
    // The hosts the caller knows first: when they hold enough, the DHT is not asked.
    if !hints.is_empty()
        && let Ok(o) = open_from(client, id, hints.clone(), pass.clone()).await
        && o.readable()
    {
        return Ok(o);
    }
    let mut hosts = hints;
    if let Ok(found) = client.get_providers(super::dht_key(id), within).await {
        for (p, a) in found {
            if !hosts.iter().any(|h| h.0 == p) {
                hosts.push((p, a));
            }
        }
    }
    anyhow::ensure!(
        !hosts.is_empty(),
        "no host holding naac://{id} was found (are its hosts up, and is this node joined to their pool with --join?)"
    );
    open_from(client, id, hosts, pass).await
}

impl Opened {
    /// Whether at least `k` distinct shards have a holder.
    pub fn readable(&self) -> bool {
        self.holders.iter().filter(|h| !h.is_empty()).count()
            >= usize::from(self.manifest.geometry.k)
    }

    /// The hosts holding a shard, as a [`naac_proto::BlobSource`] names them (peer id bytes,
    /// at most [`naac_proto::MAX_SOURCE_HOSTS`]).
    pub fn source_hosts(&self) -> Vec<naac_proto::ByteBuf> {
        source_hosts(&self.hosts())
    }

    /// Every host holding a shard, each once.
    pub fn hosts(&self) -> Vec<PeerId> {
        let mut all: Vec<PeerId> = Vec::new();
        for p in self.holders.iter().flatten() {
            if !all.contains(p) {
                all.push(*p);
            }
        }
        all
    }
}

/// `hosts` as a [`naac_proto::BlobSource`] names them.
pub fn source_hosts(hosts: &[PeerId]) -> Vec<naac_proto::ByteBuf> {
    hosts
        .iter()
        .take(naac_proto::MAX_SOURCE_HOSTS)
        .map(|p| naac_proto::ByteBuf::from(p.to_bytes()))
        .collect()
}

/// Asks `hosts` which shards of `id` they hold and takes the manifest from one of them.
async fn open_from(
    client: &Client,
    id: &StoreId,
    hosts: Vec<(PeerId, Vec<Multiaddr>)>,
    pass: Option<naac_proto::store::DataPass>,
) -> anyhow::Result<Opened> {
    let asks = hosts.into_iter().map(|(peer, addrs)| async move {
        if !addrs.is_empty() {
            let _ = client.dial_peer(peer, addrs).await;
        }
        (peer, client::holds(client, peer, id).await)
    });
    let answers = futures::future::join_all(asks).await;
    let mut failures = Vec::new();
    let mut holding = Vec::new();
    for (peer, r) in answers {
        match r {
            Ok(h) if !h.is_empty() => holding.push((peer, h)),
            Ok(_) => failures.push((peer, "holds none of its shards".into())),
            Err(e) => failures.push((peer, e.to_string())),
        }
    }
    let mut found = None;
    for (peer, _) in &holding {
        match client::manifest(client, *peer, id, pass.as_ref()).await {
            Ok(m) => {
                found = Some(m);
                break;
            }
            Err(e) => failures.push((*peer, format!("manifest: {e}"))),
        }
    }
    let Some((manifest, signed)) = found else {
        anyhow::bail!(
            "no host handed over the manifest of naac://{id}:{}",
            failures
                .iter()
                .map(|(p, w)| format!("\n  {p}: {w}"))
                .collect::<String>()
        );
    };
    let mut holders = vec![Vec::new(); usize::from(manifest.geometry.n)];
    for (peer, shards) in holding {
        for s in shards {
            if let Some(h) = holders.get_mut(usize::from(s)) {
                h.push(peer);
            }
        }
    }
    Ok(Opened {
        id: *id,
        manifest,
        signed,
        holders,
        failures,
        pass,
    })
}

/// A reader over an opened manifest that remembers which hosts failed it.
pub struct Reader<'a> {
    client: &'a Client,
    opened: &'a Opened,
    coder: Coder,
    /// (shard, host) pairs that failed a read: never asked again by this reader.
    bad: HashSet<(u16, PeerId)>,
    /// What went wrong with each host, for the caller (and audits).
    pub failures: Vec<(u16, PeerId, HostError)>,
    /// Bytes fetched from hosts (including pieces read to decode).
    pub fetched: u64,
}

impl<'a> Reader<'a> {
    pub fn new(client: &'a Client, opened: &'a Opened) -> anyhow::Result<Self> {
        Ok(Self {
            client,
            opened,
            coder: Coder::new(opened.manifest.geometry).map_err(|e| anyhow::anyhow!("{e}"))?,
            bad: HashSet::new(),
            failures: Vec::new(),
            fetched: 0,
        })
    }

    /// The hosts that failed this reader, with their audit verdicts.
    pub fn failed(&self) -> Failures {
        self.failures
            .iter()
            .map(|(s, p, e)| (*s, *p, e.verdict()))
            .collect()
    }

    /// The first healthy holder of `shard`, if any.
    fn source(&self, shard: u16) -> Option<PeerId> {
        self.opened.holders[usize::from(shard)]
            .iter()
            .find(|p| !self.bad.contains(&(shard, **p)))
            .copied()
    }

    /// The data bytes of `stripes`, from any `k` shards.
    pub async fn stripes(&mut self, stripes: std::ops::Range<u64>) -> anyhow::Result<Vec<u8>> {
        let g = self.opened.manifest.geometry;
        let (off, len) = g.shard_span(&stripes);
        let mut pieces: Vec<Option<Vec<u8>>> = vec![None; usize::from(g.n)];
        let mut tried: HashSet<u16> = HashSet::new();
        loop {
            let have = pieces.iter().filter(|p| p.is_some()).count();
            if have >= usize::from(g.k) {
                break;
            }
            // Data shards first, then recovery shards, each from a holder not yet failed.
            let want: Vec<(u16, PeerId)> = (0..g.n)
                .filter(|s| pieces[usize::from(*s)].is_none())
                .filter_map(|s| self.source(s).map(|p| (s, p)))
                .take(usize::from(g.k) - have)
                .collect();
            if want.is_empty() {
                anyhow::bail!(
                    "only {have} of the {} shards needed could be read (naac://{}):{}",
                    g.k,
                    self.opened.id,
                    self.failures
                        .iter()
                        .map(|(s, p, e)| format!("\n  shard {s} on {p}: {e}"))
                        .collect::<String>()
                );
            }
            let reads = want.iter().map(|&(shard, peer)| {
                let (client, id, man) = (self.client, &self.opened.id, &self.opened.manifest);
                let tok = self.opened.pass.as_ref();
                async move {
                    let r = client::read(client, peer, id, man, shard, off, len, READ_TIMEOUT, tok)
                        .await;
                    (shard, peer, r)
                }
            });
            for (shard, peer, r) in futures::future::join_all(reads).await {
                tried.insert(shard);
                match r {
                    Ok(bytes) => {
                        self.fetched += bytes.len() as u64;
                        pieces[usize::from(shard)] = Some(bytes);
                    }
                    Err(e) => {
                        tracing::warn!("shard {shard} on {peer}: {e}");
                        self.bad.insert((shard, peer));
                        self.failures.push((shard, peer, e));
                    }
                }
            }
        }
        let p = g.piece as usize;
        let mut out =
            Vec::with_capacity((stripes.end - stripes.start) as usize * g.stripe_bytes() as usize);
        for i in 0..(stripes.end - stripes.start) as usize {
            let slices: Vec<Option<&[u8]>> = pieces
                .iter()
                .map(|x| x.as_deref().map(|b| &b[i * p..(i + 1) * p]))
                .collect();
            out.extend(
                self.coder
                    .decode(&slices)
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
        }
        Ok(out)
    }

    /// Data bytes `start..start + len`.
    pub async fn range(&mut self, start: u64, len: u64) -> anyhow::Result<Vec<u8>> {
        let g = self.opened.manifest.geometry;
        let mut out = Vec::with_capacity(len as usize);
        let all = g.stripes_of(start, len);
        let per = (WINDOW_BYTES / g.stripe_bytes()).max(1);
        let mut s = all.start;
        while s < all.end {
            let e = (s + per).min(all.end);
            let data = self.stripes(s..e).await?;
            let base = s * g.stripe_bytes();
            let from = start.max(base) - base;
            let to = (start + len).min(e * g.stripe_bytes()) - base;
            out.extend_from_slice(&data[from as usize..to as usize]);
            s = e;
        }
        Ok(out)
    }
}

/// Hosts that failed a read: shard, host and what it means for their audit record.
pub type Failures = Vec<(u16, PeerId, naac_store::audit::Verdict)>;

/// One file of an opened manifest, checked against its hash.
pub async fn read_file(client: &Client, opened: &Opened, path: &str) -> anyhow::Result<Vec<u8>> {
    Ok(read_file_noting(client, opened, path).await?.0)
}

/// [`read_file`], with the hosts that failed on the way.
pub async fn read_file_noting(
    client: &Client,
    opened: &Opened,
    path: &str,
) -> anyhow::Result<(Vec<u8>, Failures)> {
    let f = opened
        .manifest
        .file(path)
        .with_context(|| format!("naac://{} has no file {path:?}", opened.id))?;
    let mut r = Reader::new(client, opened)?;
    let bytes = r.range(f.offset, f.len).await?;
    anyhow::ensure!(
        naac_types::ContentId::of(&bytes) == f.hash,
        "{path} of naac://{} does not match its hash",
        opened.id
    );
    Ok((bytes, r.failed()))
}

/// The owner learns from its own reads: a host that sent a byte that does not prove, or no
/// longer holds its shard, fails an audit on the spot (`catalog`: this data dir's, which
/// knows only what it put).
pub fn note_failures(catalog: &super::Catalog, id: &StoreId, failures: &Failures) {
    use naac_store::audit::Verdict;
    let now = crate::survey::unix_ms();
    for (shard, host, v) in failures {
        if matches!(v, Verdict::Corrupt | Verdict::Lost)
            && let Err(e) = catalog.record(id, *shard, &host.to_string(), *v, now, now)
        {
            tracing::warn!("store catalog: {e:#}");
        }
    }
}

/// Writes the whole tree to `out` (a new path): assembled beside it and renamed into place
/// once every file matches its hash. `progress` gets the data bytes done so far. Returns the
/// bytes and the hosts that failed on the way.
pub async fn get_to(
    client: &Client,
    opened: &Opened,
    out: &Path,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<(u64, Failures)> {
    anyhow::ensure!(
        !out.exists(),
        "{} already exists; name a new path with -o",
        out.display()
    );
    let m = &opened.manifest;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".naac-get-")
        .tempdir_in(parent)
        .with_context(|| format!("make a staging dir in {}", parent.display()))?;
    let root: PathBuf = staging.path().join("t");
    let path_of = |rel: &str| -> PathBuf {
        if m.single {
            root.clone()
        } else {
            root.join(rel)
        }
    };
    if !m.single {
        std::fs::create_dir_all(&root)?;
        for d in &m.empty_dirs {
            std::fs::create_dir_all(root.join(d))?;
        }
    }
    let mut handles = Vec::with_capacity(m.files.len());
    for f in &m.files {
        let p = path_of(&f.path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        handles.push((
            std::io::BufWriter::new(
                std::fs::File::create(&p).with_context(|| format!("create {}", p.display()))?,
            ),
            blake3::Hasher::new(),
        ));
    }
    let g = m.geometry;
    let mut reader = Reader::new(client, opened)?;
    let per = (WINDOW_BYTES / g.stripe_bytes()).max(1);
    let total = g.stripes_of(0, g.data_len);
    let mut s = total.start;
    let mut next_file = 0usize;
    while s < total.end {
        let e = (s + per).min(total.end);
        let data = reader.stripes(s..e).await?;
        let (w0, w1) = (s * g.stripe_bytes(), (e * g.stripe_bytes()).min(g.data_len));
        let mut i = next_file;
        while i < m.files.len() && m.files[i].offset < w1 {
            let f = &m.files[i];
            let (a, b) = (f.offset.max(w0), (f.offset + f.len).min(w1));
            if a < b {
                let bytes = &data[(a - w0) as usize..(b - w0) as usize];
                handles[i].0.write_all(bytes)?;
                handles[i].1.update(bytes);
            }
            if f.offset + f.len <= w1 {
                next_file = i + 1;
            }
            i += 1;
        }
        progress(w1);
        s = e;
    }
    for (f, (mut w, h)) in m.files.iter().zip(handles) {
        w.flush()?;
        w.get_ref().sync_all()?;
        anyhow::ensure!(
            naac_types::ContentId(*h.finalize().as_bytes()) == f.hash,
            "{} does not match its hash in the manifest",
            f.path
        );
    }
    std::fs::rename(&root, out).with_context(|| format!("move the result to {}", out.display()))?;
    Ok((g.data_len, reader.failed()))
}
