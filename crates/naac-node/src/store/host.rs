//! A storage host (`naac node --store`): takes shards within its owner's storage quota and
//! free-disk floor, keeps them on disk ([`naac_store::disk`]), serves verified slices and
//! manifests to anyone holding an id, and announces each manifest it holds in the DHT.
//!
//! Bounds: at most [`MAX_UPLOADS`] uploads open at once ([`MAX_UPLOADS_PER_PEER`] per peer),
//! each reserving its bytes against the quota when offered and dropped after
//! [`UPLOAD_IDLE`] without a write; disk work runs on the blocking pool, [`MAX_DISK_OPS`] at
//! a time, so a flood of reads cannot hold the runtime.

use naac_net::{Client, PeerId};
use naac_proto::ResponseBody;
use naac_proto::store::{
    MAX_PUT_BYTES, MAX_READ_BYTES, StoreEscrow, StoreInfo, StoreRequest, StoreResponse,
};
use naac_store::disk::{Disk, DiskError, ShardMeta, manifest_names};
use naac_store::{MAX_SHARDS, StoreId};
use naac_types::{ContentId, Price};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Uploads open at once, and per peer.
pub const MAX_UPLOADS: usize = 64;
pub const MAX_UPLOADS_PER_PEER: usize = 16;
/// An upload with no write for this long is dropped (its reservation freed).
pub const UPLOAD_IDLE: Duration = Duration::from_secs(120);
/// Disk operations at once.
pub const MAX_DISK_OPS: usize = 8;
/// Longest a host agrees to keep a shard.
pub const MAX_DAYS: u32 = 3650;
/// A host keeps a shard this long after its agreed term, then drops it.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(86_400);
/// How often a host looks for shards whose term is over.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Data-token revocations one owner may have a host keep.
pub const MAX_REVOCATIONS_PER_OWNER: u32 = 1024;
/// Largest shard a host takes (a 64 GiB shard is 256 GiB at 4-of-8... ample).
pub const MAX_SHARD_BYTES: u64 = 64 << 30;

/// What bounds the host's room, as the owner's policy and the last measurement say.
#[derive(Clone, Debug)]
pub struct Room {
    /// The owner's `storage_quota` (tasks' scratch, the module cache and shards together).
    pub quota: u64,
    /// Bytes used by everything but shards (tasks' scratch, module cache).
    pub other_used: u64,
    /// Free space on the store's disk (`None`: unknown).
    pub disk_free: Option<u64>,
    /// The owner's `min_free_disk`.
    pub min_free_disk: u64,
    /// The owner's `min_store_price`: the host asks at least this.
    pub min_price: Price,
    /// The owner's `store_when_paused`.
    pub serve_when_paused: bool,
}

impl Default for Room {
    fn default() -> Self {
        Self {
            quota: naac_types::policy::DEFAULT_STORAGE_QUOTA,
            other_used: 0,
            disk_free: None,
            min_free_disk: naac_types::policy::DEFAULT_MIN_FREE_DISK,
            min_price: Price(0),
            serve_when_paused: true,
        }
    }
}

struct Upload {
    peer: PeerId,
    root: ContentId,
    len: u64,
    days: u32,
    price: Price,
    escrow: Option<StoreEscrow>,
    last: Instant,
}

struct Inner {
    uploads: HashMap<(StoreId, u16), Upload>,
    /// Bytes of sealed shards and their trees.
    held: u64,
    /// Sealed shards.
    shards: u64,
    room: Room,
    /// The owners of private manifests held.
    owners: std::collections::HashSet<[u8; 32]>,
    /// Data-token revocations kept per owner since the host started.
    revocations_by: HashMap<[u8; 32], u32>,
}

/// Testing aid: how a host misbehaves on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFault {
    /// Answers every read with random bytes.
    Garbage,
}

/// The host's side of the store.
pub struct StoreHost {
    disk: Disk,
    inner: Mutex<Inner>,
    ops: tokio::sync::Semaphore,
    owner: Option<String>,
    price: Price,
    /// The bank this host is paid at: with a price above zero it takes only shards
    /// escrowed there.
    paid_at: Option<(crate::pay::BankConn, naac_ledger::AccountKey)>,
    fault: Option<StoreFault>,
    /// Paused while its owner has the machine (the node's task gate).
    gate: Mutex<Option<naac_sandbox::Gate>>,
    /// Who may read private manifests.
    access: Arc<super::access::Access>,
}

impl StoreHost {
    /// Opens the shard dir `dir` (dropping unfinished uploads).
    pub fn open(
        dir: &Path,
        owner: Option<String>,
        price: Price,
        paid_at: Option<(crate::pay::BankConn, naac_ledger::AccountKey)>,
        fault: Option<StoreFault>,
    ) -> anyhow::Result<Arc<Self>> {
        let disk = Disk::open(dir).map_err(|e| anyhow::anyhow!("open the shard store: {e}"))?;
        let held = disk.used();
        let list = disk.list();
        let shards = list.len() as u64;
        let owners = list
            .iter()
            .filter(|(_, _, meta)| meta.private)
            .map(|(_, _, meta)| meta.owner)
            .collect();
        Ok(Arc::new(Self {
            disk,
            inner: Mutex::new(Inner {
                uploads: HashMap::new(),
                held,
                shards,
                room: Room::default(),
                owners,
                revocations_by: HashMap::new(),
            }),
            ops: tokio::sync::Semaphore::new(MAX_DISK_OPS),
            owner,
            price,
            paid_at,
            fault,
            gate: Mutex::new(None),
            access: Arc::default(),
        }))
    }

    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Refuses data tokens with any of these revocation ids from now on.
    pub fn revoke(&self, ids: impl IntoIterator<Item = Vec<u8>>) {
        self.access.revoke(ids);
    }

    /// Whether this host keeps a revocation of `owner`'s data tokens: it holds private data
    /// of theirs, and has kept fewer than [`MAX_REVOCATIONS_PER_OWNER`] of theirs (so one
    /// owner cannot push everyone else's revocations out).
    pub fn keeps_revocation_of(&self, owner: &[u8; 32]) -> bool {
        let mut inner = self.lock();
        if !inner.owners.contains(owner) {
            return false;
        }
        let n = inner.revocations_by.entry(*owner).or_default();
        if *n >= MAX_REVOCATIONS_PER_OWNER {
            return false;
        }
        *n += 1;
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes the shards take (counted against the owner's quota with the rest).
    pub fn held(&self) -> u64 {
        self.lock().held
    }

    /// The owner's limits as last measured.
    pub fn set_room(&self, room: Room) {
        self.lock().room = room;
    }

    /// Follows the node's pause: while paused, no new shards, and reads only as the owner's
    /// `store_when_paused` says.
    pub fn set_gate(&self, gate: naac_sandbox::Gate) {
        *self.gate.lock().unwrap_or_else(|e| e.into_inner()) = Some(gate);
    }

    fn paused(&self) -> bool {
        self.gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(naac_sandbox::Gate::is_paused)
    }

    /// What the host offers now.
    pub fn info(&self) -> StoreInfo {
        let ask = self.ask();
        let paused = self.paused();
        let inner = self.lock();
        let (free, mut refusing) = Self::free(&inner);
        if paused && !inner.room.serve_when_paused {
            refusing.get_or_insert_with(|| naac_proto::store::PAUSED.to_string());
        }
        StoreInfo {
            free,
            used: inner.held,
            shards: inner.shards,
            price: ask,
            owner: self.owner.clone(),
            refusing,
            paid_at: self
                .paid_at
                .as_ref()
                .map(|(_, k)| naac_proto::AccountKey(k.0)),
        }
    }

    /// What the host asks per GiB-day: its `--store-price`, at least the owner's floor.
    fn ask(&self) -> Price {
        self.price.max(self.lock().room.min_price)
    }

    /// Bytes it would take now, and why none if so.
    fn free(inner: &Inner) -> (u64, Option<String>) {
        let reserved: u64 = inner.uploads.values().map(|u| u.len).sum();
        let r = &inner.room;
        let used = r.other_used + inner.held + reserved;
        let by_quota = r.quota.saturating_sub(used);
        let by_disk = r.disk_free.map_or(u64::MAX, |f| {
            f.saturating_sub(reserved).saturating_sub(r.min_free_disk)
        });
        let why = if by_quota == 0 {
            Some(format!(
                "storage quota full ({} of {} used)",
                naac_types::units::format_size(used),
                naac_types::units::format_size(r.quota)
            ))
        } else if by_disk == 0 {
            Some(format!(
                "disk below the owner's min_free_disk ({} free, floor {})",
                naac_types::units::format_size(r.disk_free.unwrap_or(0)),
                naac_types::units::format_size(r.min_free_disk)
            ))
        } else {
            None
        };
        (by_quota.min(by_disk), why)
    }

    /// Serves one storage request from `peer`.
    pub async fn handle(
        self: &Arc<Self>,
        client: &Client,
        peer: PeerId,
        req: StoreRequest,
    ) -> ResponseBody {
        if self.paused()
            && let Some(why) = self.while_paused(&req)
        {
            return refused(format!("{}: {why}", naac_proto::store::PAUSED));
        }
        match req {
            StoreRequest::Info => ResponseBody::Store(StoreResponse::Info(self.info())),
            StoreRequest::Offer {
                manifest,
                shard,
                root,
                len,
                days,
                price,
                escrow,
            } => {
                let terms = Terms {
                    days,
                    price,
                    escrow,
                };
                self.offer(peer, manifest, shard, root, len, terms).await
            }
            StoreRequest::Put {
                manifest,
                shard,
                offset,
                data,
            } => self.put(peer, manifest, shard, offset, data).await,
            StoreRequest::Seal {
                manifest,
                shard,
                signed,
            } => self.seal(client, peer, manifest, shard, signed).await,
            StoreRequest::Read {
                manifest,
                shard,
                start,
                len,
                pass,
            } => {
                if len == 0 || len > MAX_READ_BYTES {
                    return refused(format!("a read takes 1 to {MAX_READ_BYTES} bytes"));
                }
                if self.fault == Some(StoreFault::Garbage) {
                    let junk: Vec<u8> = (0..len + 64)
                        .map(|i| (i as u8).wrapping_mul(37) ^ 0x5a)
                        .collect();
                    return ResponseBody::Store(StoreResponse::Slice(junk));
                }
                let access = self.access.clone();
                let now = std::time::SystemTime::now();
                match self
                    .blocking(move |d| {
                        let Some(meta) = d.meta(&manifest, shard) else {
                            return Err(DiskError::NotFound {
                                manifest: manifest.short(),
                                shard,
                            });
                        };
                        if meta.private {
                            let gate = access.manifest(&manifest, d).and_then(|man| {
                                let p = pass.as_ref();
                                access.read(&man, &manifest, &peer, p, start, len, now)
                            });
                            if let Err(why) = gate {
                                return Ok(Err(why));
                            }
                        }
                        d.slice(&manifest, shard, start, len).map(Ok)
                    })
                    .await
                {
                    Ok(Ok(s)) => ResponseBody::Store(StoreResponse::Slice(s)),
                    Ok(Err(why)) => refused(why),
                    Err(DiskError::NotFound { .. }) => ResponseBody::NotFound,
                    Err(e) => refused(e.to_string()),
                }
            }
            StoreRequest::Prove {
                manifest,
                shard,
                key,
                sig,
            } => {
                let Some(meta) = self.disk.meta(&manifest, shard) else {
                    return ResponseBody::NotFound;
                };
                let msg = naac_proto::store::prove_signing_bytes(&manifest, shard, &key);
                if !naac_types::sig::verify(&meta.owner, &msg, &sig) {
                    return refused(
                        "only the manifest's owner may ask for a whole-shard proof".into(),
                    );
                }
                if self.fault == Some(StoreFault::Garbage) {
                    return ResponseBody::Store(StoreResponse::Proof([0x5a; 32]));
                }
                match self
                    .blocking(move |d| d.keyed_hash(&manifest, shard, &key))
                    .await
                {
                    Ok(h) => ResponseBody::Store(StoreResponse::Proof(h)),
                    Err(DiskError::NotFound { .. }) => ResponseBody::NotFound,
                    Err(e) => refused(e.to_string()),
                }
            }
            StoreRequest::Manifest { manifest, pass } => {
                let access = self.access.clone();
                let now = std::time::SystemTime::now();
                let got = self
                    .blocking(move |d| {
                        let Some(bytes) = d.manifest(&manifest) else {
                            return Ok(None);
                        };
                        let gate = access.manifest(&manifest, d).and_then(|man| {
                            access.listing(&man, &manifest, &peer, pass.as_ref(), now)
                        });
                        Ok(Some(gate.map(|()| bytes)))
                    })
                    .await;
                match got {
                    Ok(Some(Ok(b))) => ResponseBody::Store(StoreResponse::Manifest(b)),
                    Ok(Some(Err(why))) => refused(why),
                    _ => ResponseBody::NotFound,
                }
            }
            StoreRequest::Holds { manifest } => {
                let held = self
                    .blocking(move |d| {
                        Ok((0..MAX_SHARDS)
                            .filter(|&s| d.shard_path(&manifest, s).exists())
                            .collect::<Vec<u16>>())
                    })
                    .await
                    .unwrap_or_default();
                ResponseBody::Store(StoreResponse::Holds(held))
            }
            StoreRequest::Remove {
                manifest,
                at_ms,
                sig,
            } => self.remove(client, manifest, at_ms, sig).await,
        }
    }

    /// Why a request waits while the owner has the machine (the node is paused), if it
    /// does: whole-shard proofs always (a pass over the disk is not cheap); everything else
    /// — uploads, reads, chunk audits — only when the owner's `store_when_paused` is false.
    /// (Storage is bounded by the quota and the free-disk floor, not by the owner's
    /// presence, so by default a host takes and serves shards while paused.)
    fn while_paused(&self, req: &StoreRequest) -> Option<&'static str> {
        match req {
            StoreRequest::Prove { .. } => Some("the whole-shard proof waits"),
            StoreRequest::Info | StoreRequest::Remove { .. } => None,
            _ if !self.lock().room.serve_when_paused => {
                Some("its owner lets it serve no storage while paused")
            }
            _ => None,
        }
    }

    async fn offer(
        &self,
        peer: PeerId,
        m: StoreId,
        shard: u16,
        root: ContentId,
        len: u64,
        Terms {
            days,
            price,
            escrow,
        }: Terms,
    ) -> ResponseBody {
        let ask = self.ask();
        if price < ask {
            return refused(format!(
                "this host asks {ask} credits per GiB-day; the offer pays {price}"
            ));
        }
        if let Some((_, bank)) = &self.paid_at
            && ask.0 > 0
        {
            let want = StoreEscrow {
                bank: naac_proto::AccountKey(bank.0),
                job: naac_store::escrow_job(&m),
            };
            if escrow != Some(want) {
                return refused(format!(
                    "this host is paid at bank {}: escrow the storage there (naac store put --bank ADDR)",
                    naac_types::hex(&bank.0[..8])
                ));
            }
        }
        if shard >= MAX_SHARDS || len == 0 || len > MAX_SHARD_BYTES || days == 0 || days > MAX_DAYS
        {
            return refused(format!(
                "an offer names a shard below {MAX_SHARDS}, 1 byte to 64 GiB, 1 to {MAX_DAYS} days"
            ));
        }
        if self
            .disk
            .meta(&m, shard)
            .is_some_and(|meta| meta.root == root)
        {
            return ResponseBody::Store(StoreResponse::Stored);
        }
        let now = Instant::now();
        let mut inner = self.lock();
        inner
            .uploads
            .retain(|_, u| now.duration_since(u.last) < UPLOAD_IDLE);
        inner.uploads.remove(&(m, shard));
        if inner.uploads.len() >= MAX_UPLOADS
            || inner.uploads.values().filter(|u| u.peer == peer).count() >= MAX_UPLOADS_PER_PEER
        {
            return refused("too many uploads open on this host; try again later".into());
        }
        let (free, why) = Self::free(&inner);
        if free < len {
            return refused(why.unwrap_or_else(|| {
                format!(
                    "no room: {} free, the shard is {}",
                    naac_types::units::format_size(free),
                    naac_types::units::format_size(len)
                )
            }));
        }
        if let Err(e) = self.disk.begin(&m, shard) {
            return refused(e.to_string());
        }
        inner.uploads.insert(
            (m, shard),
            Upload {
                peer,
                root,
                len,
                days,
                price,
                escrow,
                last: now,
            },
        );
        ResponseBody::Store(StoreResponse::Accepted)
    }

    async fn put(
        &self,
        peer: PeerId,
        m: StoreId,
        shard: u16,
        offset: u64,
        data: Vec<u8>,
    ) -> ResponseBody {
        {
            let mut inner = self.lock();
            let Some(u) = inner
                .uploads
                .get_mut(&(m, shard))
                .filter(|u| u.peer == peer)
            else {
                return refused(format!("no upload of shard {shard} is open for this peer"));
            };
            if data.len() as u64 > MAX_PUT_BYTES || offset + data.len() as u64 > u.len {
                return refused(format!(
                    "a write past the {} bytes offered (or over {MAX_PUT_BYTES} in one go)",
                    u.len
                ));
            }
            u.last = Instant::now();
        }
        match self
            .blocking(move |d| d.append(&m, shard, offset, &data))
            .await
        {
            Ok(_) => ResponseBody::Ack,
            Err(e) => refused(e.to_string()),
        }
    }

    async fn seal(
        &self,
        client: &Client,
        peer: PeerId,
        m: StoreId,
        shard: u16,
        signed: Vec<u8>,
    ) -> ResponseBody {
        let (root, len, days, price, escrow) = {
            let inner = self.lock();
            match inner.uploads.get(&(m, shard)).filter(|u| u.peer == peer) {
                Some(u) => (u.root, u.len, u.days, u.price, u.escrow),
                None => return refused(format!("no upload of shard {shard} is open")),
            }
        };
        let (owner, private) = match manifest_names(&signed, &m, shard, &root, len) {
            Ok(man) => (man.owner, man.private),
            Err(e) => return refused(e),
        };
        if let (Some(e), Some((bank, _))) = (escrow, &self.paid_at)
            && self.ask().0 > 0
        {
            let need = naac_store::storage_cost(price, len, u64::from(days) * naac_store::DAY_MS);
            if let Err(why) = escrow_covers(bank, e, &owner, need).await {
                self.disk.abort(&m, shard);
                self.lock().uploads.remove(&(m, shard));
                return refused(why);
            }
        }
        let now = crate::survey::unix_ms();
        let meta = ShardMeta {
            root,
            len,
            owner,
            stored_ms: now,
            until_ms: now + u64::from(days) * 86_400_000,
            private,
        };
        let sealed = self
            .blocking(move |d| d.seal(&m, shard, &signed, &meta))
            .await;
        {
            let mut inner = self.lock();
            inner.uploads.remove(&(m, shard));
            if sealed.is_ok() && private {
                inner.owners.insert(owner);
            }
            if sealed.is_ok() {
                // The shard and its outboard tree (about 1/16 of it).
                inner.held += len + len / 16;
                inner.shards += 1;
            }
        }
        match sealed {
            Ok(()) => {
                if let Err(e) = client.start_providing(super::dht_key(&m)).await {
                    tracing::warn!("announce {}: {e:#}", m.short());
                }
                tracing::info!("stored shard {shard} of {} ({len} bytes)", m.short());
                ResponseBody::Store(StoreResponse::Stored)
            }
            Err(e) => {
                self.disk.abort(&m, shard);
                refused(e.to_string())
            }
        }
    }

    async fn remove(&self, client: &Client, m: StoreId, at_ms: u64, sig: Vec<u8>) -> ResponseBody {
        let Some(meta) = (0..MAX_SHARDS).find_map(|s| self.disk.meta(&m, s)) else {
            return ResponseBody::Store(StoreResponse::Removed { freed: 0 });
        };
        let msg = naac_proto::store::remove_signing_bytes(&m, at_ms);
        if !naac_types::sig::verify(&meta.owner, &msg, &sig) {
            return refused("only the manifest's owner may remove it".into());
        }
        if at_ms < meta.stored_ms {
            return refused("this removal was signed before the shards were stored".into());
        }
        match self.drop_manifest(client, m).await {
            Ok(freed) => ResponseBody::Store(StoreResponse::Removed { freed }),
            Err(e) => refused(e.to_string()),
        }
    }

    /// Deletes every shard of `m` held here, stops announcing it; returns the bytes freed.
    async fn drop_manifest(&self, client: &Client, m: StoreId) -> Result<u64, DiskError> {
        let (freed, shards) = self
            .blocking(move |d| Ok((d.remove(&m)?, d.list().len() as u64)))
            .await?;
        {
            let mut inner = self.lock();
            inner.held = inner.held.saturating_sub(freed);
            inner.shards = shards;
        }
        self.access.forget(&m);
        client.stop_providing(super::dht_key(&m)).await;
        Ok(freed)
    }

    /// Drops what no one pays for any more: manifests whose every shard's term ended more
    /// than [`EXPIRY_GRACE`] ago. Returns how many.
    pub async fn sweep(&self, client: &Client) -> usize {
        let now = crate::survey::unix_ms();
        let expired = self
            .blocking(move |d| Ok(d.expired(now, EXPIRY_GRACE.as_millis() as u64)))
            .await
            .unwrap_or_default();
        let n = expired.len();
        for m in expired {
            match self.drop_manifest(client, m).await {
                Ok(freed) => tracing::info!("dropped {} after its term ({freed} bytes)", m.short()),
                Err(e) => tracing::warn!("drop {} after its term: {e}", m.short()),
            }
        }
        n
    }

    /// Announces every manifest held (at start).
    pub async fn announce(&self, client: &Client) {
        let mut seen = std::collections::BTreeSet::new();
        for (m, _, _) in self.disk.list() {
            if seen.insert(m)
                && let Err(e) = client.start_providing(super::dht_key(&m)).await
            {
                tracing::warn!("announce {}: {e:#}", m.short());
            }
        }
        if let Err(e) = client.start_providing(super::HOSTS_KEY.to_vec()).await {
            tracing::warn!("announce this storage host: {e:#}");
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Disk) -> Result<T, DiskError> + Send + 'static,
    ) -> Result<T, DiskError> {
        let _permit = self.ops.acquire().await;
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || f(&disk))
            .await
            .unwrap_or_else(|e| {
                Err(DiskError::Io {
                    path: self.disk.dir().to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }
}

/// What an offer agrees to: how long, at what price, paid from which escrow.
struct Terms {
    days: u32,
    price: Price,
    escrow: Option<StoreEscrow>,
}

/// Whether the escrow the data's owner named is there, funded by the owner, open, and holds
/// at least `need` (this shard's whole term): the host's check before it keeps a shard.
async fn escrow_covers(
    bank: &crate::pay::BankConn,
    e: StoreEscrow,
    owner: &[u8; 32],
    need: naac_types::Credits,
) -> Result<(), String> {
    let view = bank
        .escrow(e.job)
        .await
        .map_err(|err| format!("cannot check the storage escrow at the bank: {err}"))?
        .ok_or_else(|| format!("no storage escrow {} at the bank", e.job.short()))?;
    if view.payer.0 != *owner {
        return Err("the storage escrow is not funded by the data's owner".into());
    }
    if view.closed {
        return Err("the storage escrow is closed".into());
    }
    if view.left < need {
        return Err(format!(
            "the storage escrow holds {} credits; this shard's term needs {need}",
            view.left
        ));
    }
    Ok(())
}

fn refused(why: String) -> ResponseBody {
    ResponseBody::Refused(why)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pay::BankConn;
    use naac_ledger::{AccountKey, Request, SignedRequest};
    use naac_net::Keypair;
    use naac_types::Credits;

    fn key(k: &Keypair) -> AccountKey {
        AccountKey(naac_net::ed25519_of_keypair(k).unwrap())
    }

    async fn open(bank: &BankConn, bank_key: AccountKey, by: &Keypair, m: &StoreId, c: u64) {
        let req = Request::OpenEscrow {
            job: naac_store::escrow_job(m),
            payer: key(by),
            amount: Credits::whole(c),
            max_price: Price(0),
            fuel_limit: 0,
            expires_ms: u64::MAX / 2,
            claim_window_ms: 0,
            spend: None,
        };
        let s = SignedRequest::new(key(by), &bank_key, &req, |b| naac_net::sign(by, b));
        bank.submit(vec![s]).await.unwrap().pop().unwrap().unwrap();
    }

    /// A data owner who names an escrow that is not there, is someone else's, is closed or
    /// is too small gets no shard kept.
    #[tokio::test]
    async fn a_shard_is_kept_only_on_an_escrow_of_its_owner_that_covers_its_term() {
        let dir = tempfile::tempdir().unwrap();
        let bank_kp = Keypair::generate_ed25519();
        let bank_key = key(&bank_kp);
        let handle = naac_bank::start_with_keypair(
            naac_bank::BankConfig {
                store: format!("sqlite:{}", dir.path().join("ledger.db").display()),
                faucet: naac_bank::Faucet::NONE,
            },
            bank_kp.clone(),
        )
        .unwrap();
        let bank = BankConn::Local(handle);
        let (owner, other) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        for k in [&owner, &other] {
            crate::bank::grant(&bank, &bank_kp, key(k), Credits::whole(100))
                .await
                .unwrap();
        }
        let m = StoreId::of(b"manifest");
        let e = StoreEscrow {
            bank: naac_proto::AccountKey(bank_key.0),
            job: naac_store::escrow_job(&m),
        };
        let need = Credits::whole(5);
        let owner_key = key(&owner).0;
        // None yet.
        let why = escrow_covers(&bank, e, &owner_key, need).await.unwrap_err();
        assert!(why.contains("no storage escrow"), "{why}");
        // Someone else's.
        open(&bank, bank_key, &other, &m, 10).await;
        let why = escrow_covers(&bank, e, &owner_key, need).await.unwrap_err();
        assert!(why.contains("not funded by the data's owner"), "{why}");
        // The owner's, too small, then big enough, then closed.
        let m2 = StoreId::of(b"manifest 2");
        let e2 = StoreEscrow {
            job: naac_store::escrow_job(&m2),
            ..e
        };
        open(&bank, bank_key, &owner, &m2, 4).await;
        let why = escrow_covers(&bank, e2, &owner_key, need)
            .await
            .unwrap_err();
        assert!(why.contains("holds 4"), "{why}");
        escrow_covers(&bank, e2, &owner_key, Credits::whole(4))
            .await
            .unwrap();
        let refund = Request::Refund { job: e2.job };
        let s = SignedRequest::new(key(&owner), &bank_key, &refund, |b| {
            naac_net::sign(&owner, b)
        });
        bank.submit(vec![s]).await.unwrap().pop().unwrap().unwrap();
        let why = escrow_covers(&bank, e2, &owner_key, Credits::ZERO)
            .await
            .unwrap_err();
        assert!(why.contains("closed"), "{why}");
    }
}
