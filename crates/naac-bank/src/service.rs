//! The bank service: a pool's accounts, escrows and payments over the ledger rules
//! (`naac-ledger`), durable in SQLite or PostgreSQL, reached by peers over `/naac/task/1`
//! ([`BankRequest`]).
//!
//! One thread owns the ledger and its store. Requests arrive on a bounded channel; the
//! thread takes whatever is waiting (up to [`MAX_BATCH`] requests), applies them in order to
//! the in-memory [`Ledger`], appends the new entries and a freshly signed checkpoint in one
//! durable transaction, and only then answers — so an acknowledged payment survives a crash
//! (`kill -9`) and a request whose answer was lost can be sent again without paying twice
//! (every request is idempotent: settlements by result record hash, escrows by job,
//! refunds by escrow, transfers by nonce, grants by account). If the store fails, nothing
//! of the batch is acknowledged and the ledger is reloaded from the store.
//!
//! The bank mints only by grants: the operator's (signed with the bank's key), or its
//! faucet's when it runs one ([`Faucet`]: a grant for a key's first valid request — one that
//! decodes, is for this bank and is signed by its authorizer — at a stated hourly rate). A
//! refused, undecodable or foreign request and a balance query mint nothing and add no
//! entry. Escrows past their expiry are refunded by the bank itself.

use crate::faucet::{Bucket, Faucet};
use crate::handle::BankHandle;
use crate::store::{self, Store};
use crate::wire::{FromWire, ToWire};
use anyhow::Context as _;
use naac_ledger::{Account, AccountKey, Applied, Entry, Ledger, Request, SignedRequest, TreeHead};
use naac_proto::{BankInfo, BankRequest, BankResponse, MAX_BANK_BATCH, MAX_BANK_ENTRIES, Receipt};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Most requests applied in one durable transaction.
pub const MAX_BATCH: usize = 4096;
/// Requests waiting for the bank thread.
pub(crate) const QUEUE: usize = 4096;

/// Callers that may wait on a blocking thread for room in a full queue at once; the rest
/// wait for their turn without holding a thread.
pub(crate) const WAITING_SENDERS: usize = 16;

/// How a bank is set up.
#[derive(Clone, Debug)]
pub struct BankConfig {
    /// `sqlite:PATH`, a path, or a PostgreSQL connection string.
    pub store: String,
    /// What new accounts get on their own (default: nothing).
    pub faucet: Faucet,
}

pub(crate) type Reply = oneshot::Sender<Result<BankResponse, String>>;

/// Signs with the bank's key.
pub type Signer = std::sync::Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Opens the store, replays every entry into the rules (so a corrupt or tampered ledger
/// stops the bank with the first bad entry named) and starts the bank thread.
pub fn start(config: BankConfig, key: AccountKey, sign: Signer) -> anyhow::Result<BankHandle> {
    let url = config.store;
    let open = move || store::open(&url).with_context(|| format!("open the bank's ledger {url}"));
    start_on(open, config.faucet, key, sign)
}

/// [`start`] on the store `open` gives (called on the bank's thread).
fn start_on(
    open: impl FnOnce() -> anyhow::Result<Box<dyn Store>> + Send + 'static,
    faucet: Faucet,
    key: AccountKey,
    sign: Signer,
) -> anyhow::Result<BankHandle> {
    let (tx, rx) = std_mpsc::sync_channel(QUEUE);
    let (ready_tx, ready_rx) = std_mpsc::sync_channel::<anyhow::Result<()>>(1);
    let receipts = sign.clone();
    let handle = BankHandle::new(tx, key).with_signer(receipts);
    let revoked = handle.revoked.clone();
    // The store is opened, loaded and used only on the bank's own thread: database clients
    // may block (the PostgreSQL client runs its own little runtime), which must never
    // happen on the async runtime's threads.
    std::thread::Builder::new()
        .name("naac-bank".into())
        .spawn(move || {
            let store = match open() {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut bank = Bank {
                ledger: Ledger::new(key),
                store,
                revoked,
                sign,
                faucet,
                bucket: Bucket::new(faucet.per_hour),
                key,
                stale: false,
                snapshot_at: 0,
            };
            if let Err(e) = bank.reload().context("load the bank's ledger") {
                let _ = ready_tx.send(Err(e));
                return;
            }
            tracing::info!(
                "bank {} up: {} entries, {} credits issued, ledger {}",
                naac_types::hex(&key.0[..8]),
                bank.ledger.len(),
                bank.ledger.issued(),
                bank.store.describe()
            );
            let _ = ready_tx.send(Ok(()));
            bank.run(rx)
        })
        .context("start the bank thread")?;
    ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the bank thread stopped while loading its ledger"))??;
    Ok(handle)
}

struct Bank {
    ledger: Ledger,
    store: Box<dyn Store>,
    revoked: crate::revoked::Revoked,
    sign: Signer,
    faucet: Faucet,
    bucket: Bucket,
    key: AccountKey,
    /// A write failed and the ledger could not be read back: the rules in memory may hold
    /// entries the store does not, so nothing is answered from them until a reload works.
    stale: bool,
    /// Entries the latest stored snapshot covers.
    snapshot_at: u64,
}

/// Entries appended between snapshots of the ledger's state, at least (and at least an
/// eighth of the ledger, so a large one is not rewritten every few entries): a restart
/// replays at most this many. The bank also takes one when it stops.
const SNAPSHOT_EVERY: u64 = 1024;

/// What one request in a batch waits for.
enum Pending {
    Done(Result<BankResponse, String>),
    Balance(Account),
    Submitted(Vec<Result<Answer, String>>),
}

enum Answer {
    New(Receipt),
    Duplicate(u64),
}

impl Bank {
    fn reload(&mut self) -> anyhow::Result<()> {
        let len = self.store.len()?;
        let mut ledger = self
            .load_snapshot(len)
            .unwrap_or_else(|| Ledger::new(self.key));
        self.snapshot_at = ledger.len();
        let mut from = ledger.len();
        while from < len {
            let page = self.store.read(from, 10_000)?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                // The chain and the signed checkpoints vouch for our own rows; `naac wallet
                // verify` checks every signature.
                ledger
                    .replay_trusted(e)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("ledger {}", self.store.describe()))?;
            }
            from += page.len() as u64;
        }
        if let Some(cp) = self.store.latest_checkpoint()? {
            let ok = cp.size <= ledger.len()
                && ledger.tree().root_at(cp.size) == Some(cp.root)
                && cp.signature_ok();
            anyhow::ensure!(
                ok,
                "ledger {}: the stored checkpoint of {} entries does not match the entries",
                self.store.describe(),
                cp.size
            );
        }
        self.ledger = ledger;
        Ok(())
    }

    /// The ledger as the stored snapshot holds it, if there is one and it is believed: the
    /// bank signed it, and the stored chain's entry at its end is its head (anything else
    /// is said, and the whole ledger is replayed).
    fn load_snapshot(&mut self, len: u64) -> Option<Ledger> {
        let snap = match self.store.latest_snapshot() {
            Ok(snap) => snap?,
            Err(e) => {
                tracing::warn!("bank: cannot read the ledger's snapshot ({e}); replaying it all");
                return None;
            }
        };
        match self.check_snapshot(&snap, len) {
            Ok(ledger) => Some(ledger),
            Err(why) => {
                tracing::warn!(
                    "bank: the snapshot of the ledger's first {} entries is not believed: {why}; replaying it all",
                    snap.size
                );
                None
            }
        }
    }

    fn check_snapshot(&mut self, snap: &store::Snapshot, len: u64) -> Result<Ledger, String> {
        let signed = store::Snapshot::signing_bytes(snap.size, &snap.head, &snap.bytes);
        if !naac_types::sig::verify(&self.key.0, &signed, &snap.sig) {
            return Err("it is not signed by this bank".into());
        }
        if snap.size > len {
            return Err(format!("the ledger holds only {len} entries"));
        }
        if let Some(last) = snap.size.checked_sub(1) {
            let entry = self.store.read(last, 1).map_err(|e| e.to_string())?;
            if entry.first().map(Entry::hash) != Some(snap.head) {
                return Err(format!("entry {last} is not the one it ends with"));
            }
        }
        let ledger = Ledger::from_snapshot(self.key, &snap.bytes).map_err(|e| e.to_string())?;
        if ledger.len() != snap.size || ledger.head() != snap.head {
            return Err("the state in it is not of its size and head".into());
        }
        Ok(ledger)
    }

    /// Stores a snapshot of the ledger as it is now, when enough was appended since the
    /// last (any at all when `stopping`).
    fn snapshot_if_due(&mut self, stopping: bool) {
        let len = self.ledger.len();
        let since = len.saturating_sub(self.snapshot_at);
        let due = if stopping {
            since > 0
        } else {
            since >= SNAPSHOT_EVERY.max(len / 8)
        };
        if !due || self.stale {
            return;
        }
        let bytes = self.ledger.snapshot();
        let head = self.ledger.head();
        let sig = (self.sign)(&store::Snapshot::signing_bytes(len, &head, &bytes));
        let snap = store::Snapshot {
            size: len,
            head,
            sig,
            bytes,
        };
        match self.store.put_snapshot(&snap) {
            Ok(()) => self.snapshot_at = len,
            Err(e) => tracing::warn!("bank: could not store a snapshot of the ledger: {e}"),
        }
    }

    /// Replays what another process appended after our last entry, up to `n` entries.
    fn catch_up(&mut self, n: u64) -> anyhow::Result<()> {
        while self.ledger.len() < n {
            let page = self.store.read(self.ledger.len(), 10_000)?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                self.ledger
                    .replay_trusted(e)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        Ok(())
    }

    fn run(mut self, rx: std_mpsc::Receiver<(BankRequest, Reply)>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(r) => Some(r),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = Vec::new();
            if let Some(r) = first {
                batch.push(r);
                let mut requests = batch_weight(&batch[0].0);
                while requests < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => {
                            requests += batch_weight(&r.0);
                            batch.push(r);
                        }
                        Err(_) => break,
                    }
                }
            }
            self.process(batch);
            self.snapshot_if_due(false);
        }
        self.snapshot_if_due(true);
        tracing::info!("bank stopped");
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Applies a batch, commits it, answers it.
    fn process(&mut self, batch: Vec<(BankRequest, Reply)>) {
        if self.stale {
            match self.reload() {
                Ok(()) => self.stale = false,
                Err(e) => {
                    let why = format!("the bank cannot read its ledger now: {e:#}");
                    for (_, reply) in batch {
                        let _ = reply.send(Err(why.clone()));
                    }
                    return;
                }
            }
        }
        // Another bank process may share this ledger (two `naac run`s on one data dir, or a
        // bank restarted beside an old one): catch up with what it appended first, and if
        // it appends between our read and our write, the store refuses our batch (the seqs
        // overlap) and we apply it again on top of its entries.
        let mut attempt = 0;
        let pending = loop {
            attempt += 1;
            match self.store.len() {
                Ok(n) if n > self.ledger.len() => {
                    if let Err(e) = self.catch_up(n) {
                        tracing::warn!("bank: catching up with the ledger: {e:#}; reloading it");
                        if let Err(e) = self.reload() {
                            tracing::error!("bank: reloading the ledger failed: {e:#}");
                        }
                    }
                }
                Ok(n) if n < self.ledger.len() => {
                    if let Err(e) = self.reload() {
                        tracing::error!("bank: reloading the ledger failed: {e:#}");
                    }
                }
                _ => {}
            }
            match self.apply_batch(&batch) {
                Ok(p) => break p,
                Err(e) => {
                    tracing::warn!("bank: ledger write failed: {e}");
                    if let Err(re) = self.reload() {
                        // Applying the batch again on top of entries the store may not have
                        // would answer from them: refuse it now; the next batch reloads.
                        tracing::error!("bank: reloading the ledger failed: {re:#}");
                        self.stale = true;
                        for (_, reply) in batch {
                            let _ =
                                reply.send(Err(format!("the bank could not store the entry: {e}")));
                        }
                        return;
                    }
                    if attempt >= 3 {
                        for (_, reply) in batch {
                            let _ =
                                reply.send(Err(format!("the bank could not store the entry: {e}")));
                        }
                        return;
                    }
                }
            }
        };
        let batch = batch.into_iter().map(|(_, reply)| reply);
        let pending: Vec<(Pending, Reply)> = pending.into_iter().zip(batch).collect();
        for (p, reply) in pending {
            let answer = match p {
                Pending::Done(r) => r,
                Pending::Balance(a) => Ok(BankResponse::Balance {
                    balance: self.ledger.balance(&a),
                    checkpoint: self.store.latest_checkpoint().ok().flatten().into_wire(),
                }),
                Pending::Submitted(results) => {
                    let out = results
                        .into_iter()
                        .map(|r| match r {
                            Ok(Answer::New(r)) => Ok(r),
                            Ok(Answer::Duplicate(seq)) => match self.store.read(seq, 1) {
                                Ok(v) if !v.is_empty() => Ok(Receipt {
                                    seq,
                                    hash: v[0].hash(),
                                    amount: v[0].amount,
                                    duplicate: true,
                                    sig: Vec::new(),
                                }),
                                _ => Err(format!("entry {seq} could not be read back")),
                            },
                            Err(e) => Err(e),
                        })
                        .collect();
                    Ok(BankResponse::Submitted(out))
                }
            };
            let _ = reply.send(answer);
        }
    }

    /// Applies a batch to the ledger and stores the new entries with a signed checkpoint in
    /// one durable transaction. On a store error nothing of it is kept on disk, and the
    /// caller reloads the in-memory ledger.
    fn apply_batch(
        &mut self,
        batch: &[(BankRequest, Reply)],
    ) -> Result<Vec<Pending>, store::StoreError> {
        let now = Self::now_ms();
        let mut new_entries: Vec<Entry> = Vec::new();
        // The bank's own duties first: refund expired escrows.
        for job in self.ledger.expired_escrows(now) {
            let req = self.signed(&Request::Refund { job });
            match self.ledger.apply(&req, now) {
                Ok(Applied::New(e)) => {
                    tracing::info!(
                        "escrow of job {} expired: refunded {}",
                        job.short(),
                        e.amount
                    );
                    new_entries.push(e);
                }
                Ok(Applied::Duplicate { .. }) => {}
                Err(e) => tracing::warn!("refund of expired escrow {}: {e}", job.short()),
            }
        }
        let mut pending = Vec::with_capacity(batch.len());
        for (req, _) in batch {
            pending.push(self.handle(req.clone(), now, &mut new_entries));
        }
        if !new_entries.is_empty() {
            let mut cp = self.ledger.checkpoint(now);
            cp.sig = (self.sign)(&cp.signing_bytes());
            self.store.append_with_checkpoint(&new_entries, &cp)?;
        }
        Ok(pending)
    }

    fn signed(&self, req: &Request) -> SignedRequest {
        SignedRequest::new(self.key, &self.key, req, |m| (self.sign)(m))
    }

    /// The faucet's grant to the author of `r`, when the bank runs a faucet, `r` is a valid
    /// request (it decodes, is for this bank and is signed by its authorizer), its author
    /// has had no grant, and the faucet's rate allows one. Anything else mints nothing.
    fn faucet_grant(&mut self, r: &SignedRequest, now: u64, new: &mut Vec<Entry>) {
        let who = r.authorizer;
        if !self.faucet.is_on() || who == self.key || self.ledger.is_granted(&who) {
            return;
        }
        match Request::from_msg(&r.msg) {
            Ok((bank, _)) if bank == self.key => {}
            _ => return,
        }
        if !r.signature_ok() {
            return;
        }
        if !self.bucket.take(now) {
            tracing::debug!("faucet: the hourly limit is reached; no grant");
            return;
        }
        let req = self.signed(&Request::Grant {
            to: who,
            amount: self.faucet.amount,
        });
        match self.ledger.apply(&req, now) {
            Ok(Applied::New(e)) => new.push(e),
            Ok(Applied::Duplicate { .. }) => {}
            Err(e) => tracing::warn!("grant: {e}"),
        }
    }

    fn handle(&mut self, req: BankRequest, now: u64, new: &mut Vec<Entry>) -> Pending {
        match req {
            BankRequest::Info => Pending::Done(Ok(BankResponse::Info(BankInfo {
                bank: self.key.into_wire(),
                grant: self.faucet.amount,
                entries: self.ledger.len(),
                checkpoint: self.store.latest_checkpoint().ok().flatten().into_wire(),
            }))),
            // Read-only: grants go only to keys that sign a request.
            BankRequest::Balance { account } => {
                Pending::Balance(Account::User(AccountKey::from_wire(account)))
            }
            BankRequest::Escrow { job, provider } => Pending::Done(Ok(BankResponse::Escrow(
                self.ledger.escrow(&job).map(|e| naac_proto::EscrowView {
                    payer: e.payer.into_wire(),
                    controller: e.controller.map(|c| c.into_wire()),
                    left: e.left,
                    max_price: e.max_price,
                    fuel_limit: e.fuel_limit,
                    closed: e.closed,
                    expires_ms: e.expires_ms,
                    claim_window_ms: e.claim_window_ms,
                    closing: e.closing,
                    reserved_for: match provider {
                        Some(p) if !e.closed => {
                            self.ledger.reserved_for(&job, &AccountKey::from_wire(p))
                        }
                        _ => naac_types::Credits::ZERO,
                    },
                }),
            ))),
            BankRequest::Standing { accounts } => {
                if accounts.len() > naac_proto::MAX_STANDING_QUERY {
                    return Pending::Done(Err(format!(
                        "{} keys in one standing query; at most {}",
                        accounts.len(),
                        naac_proto::MAX_STANDING_QUERY
                    )));
                }
                Pending::Done(Ok(BankResponse::Standing(
                    accounts
                        .into_iter()
                        .map(|a| self.ledger.has_standing(&AccountKey::from_wire(a)))
                        .collect(),
                )))
            }
            BankRequest::Unresolved {
                job,
                provider,
                runs,
            } => {
                let provider = AccountKey::from_wire(provider);
                if runs.len() > naac_proto::MAX_STANDING_QUERY {
                    return Pending::Done(Err(format!(
                        "{} runs in one query; at most {}",
                        runs.len(),
                        naac_proto::MAX_STANDING_QUERY
                    )));
                }
                Pending::Done(Ok(BankResponse::Unresolved(
                    runs.into_iter()
                        .map(|run| {
                            self.ledger.run_paid_by(&job, run, &provider).is_none()
                                && self.ledger.rejected_by(&job, run, &provider).is_none()
                        })
                        .collect(),
                )))
            }
            BankRequest::Submit(reqs) => {
                if reqs.len() > MAX_BANK_BATCH {
                    return Pending::Done(Err(format!(
                        "{} requests in one submission; at most {MAX_BANK_BATCH}",
                        reqs.len()
                    )));
                }
                let mut out = Vec::with_capacity(reqs.len());
                for r in Vec::<SignedRequest>::from_wire(reqs) {
                    if let Some(why) = crate::revoked::refused(&self.revoked, &r) {
                        out.push(Err(why));
                        continue;
                    }
                    self.faucet_grant(&r, now, new);
                    out.push(match self.ledger.apply(&r, now) {
                        Ok(Applied::New(e)) => {
                            let r = Receipt {
                                seq: e.seq,
                                hash: e.hash(),
                                amount: e.amount,
                                duplicate: false,
                                sig: Vec::new(),
                            };
                            new.push(e);
                            Ok(Answer::New(r))
                        }
                        Ok(Applied::Duplicate { seq }) => Ok(Answer::Duplicate(seq)),
                        Err(e) => Err(e.to_string()),
                    });
                }
                Pending::Submitted(out)
            }
            BankRequest::History {
                account,
                before,
                limit,
            } => {
                // Entries of this batch are not stored yet: answer from the store as of
                // the last commit.
                Pending::Done(
                    self.store
                        .history(
                            &Account::from_wire(account),
                            before,
                            limit.min(MAX_BANK_ENTRIES) as usize,
                        )
                        .map(|v| BankResponse::Entries(v.into_wire()))
                        .map_err(|e| e.to_string()),
                )
            }
            BankRequest::Entries { from, limit } => Pending::Done(
                self.store
                    .read(from, limit.min(MAX_BANK_ENTRIES) as usize)
                    .map(|v| BankResponse::Entries(v.into_wire()))
                    .map_err(|e| e.to_string()),
            ),
            BankRequest::Checkpoint { size } => Pending::Done(
                match size {
                    None => self.store.latest_checkpoint(),
                    Some(s) => self.store.checkpoint(s),
                }
                .map(|c| BankResponse::Checkpoint(c.into_wire()))
                .map_err(|e| e.to_string()),
            ),
            BankRequest::Proof { seq } => Pending::Done(self.proof(seq)),
            BankRequest::Consistency { old, new: size } => Pending::Done(
                self.ledger
                    .tree()
                    .consistency_proof(old, size)
                    .map(BankResponse::Consistency)
                    .ok_or_else(|| format!("no consistency proof from {old} to {size} entries")),
            ),
        }
    }

    fn proof(&mut self, seq: u64) -> Result<BankResponse, String> {
        let cp: TreeHead = self
            .store
            .latest_checkpoint()
            .map_err(|e| e.to_string())?
            .ok_or("the ledger has no checkpoint yet")?;
        if seq >= cp.size {
            return Err(format!(
                "entry {seq} is not covered by the latest checkpoint ({} entries)",
                cp.size
            ));
        }
        let entry = self
            .store
            .read(seq, 1)
            .map_err(|e| e.to_string())?
            .pop()
            .ok_or_else(|| format!("no entry {seq}"))?;
        let proof = self
            .ledger
            .tree()
            .prove(seq, cp.size)
            .ok_or_else(|| format!("no proof for entry {seq}"))?;
        Ok(BankResponse::Proof(Box::new(naac_proto::EntryProof {
            entry: entry.into_wire(),
            proof: proof.into_wire(),
            checkpoint: cp.into_wire(),
        })))
    }
}

fn batch_weight(r: &BankRequest) -> usize {
    match r {
        BankRequest::Submit(v) => v.len().max(1),
        _ => 1,
    }
}

/// Starts a bank that signs with `keypair` (an ed25519 key; its public key is the bank's
/// account key).
pub fn start_with_keypair(
    config: BankConfig,
    keypair: naac_net::Keypair,
) -> anyhow::Result<BankHandle> {
    let key = AccountKey(
        naac_net::ed25519_of_keypair(&keypair).context("the bank's key must be an ed25519 key")?,
    );
    let sign: Signer = std::sync::Arc::new(move |m| naac_net::sign(&keypair, m));
    start(config, key, sign)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use naac_ledger::{Entry, Request, SignedRequest};
    use naac_types::Credits;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A SQLite store that fails every call while `down` (a database server restarting).
    struct Flaky {
        inner: Box<dyn Store>,
        down: Arc<AtomicBool>,
        /// While set, a durable write waits (a database that hangs).
        hold: Arc<AtomicBool>,
    }

    impl Flaky {
        fn check(&self) -> Result<(), store::StoreError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(store::StoreError::Url {
                    url: "flaky".into(),
                    why: "the server is restarting".into(),
                });
            }
            Ok(())
        }
    }

    impl Store for Flaky {
        fn append(&mut self, entries: &[Entry]) -> Result<(), store::StoreError> {
            self.check()?;
            self.inner.append(entries)
        }
        fn append_with_checkpoint(
            &mut self,
            entries: &[Entry],
            cp: &TreeHead,
        ) -> Result<(), store::StoreError> {
            while self.hold.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            self.check()?;
            self.inner.append_with_checkpoint(entries, cp)
        }
        fn len(&mut self) -> Result<u64, store::StoreError> {
            self.check()?;
            self.inner.len()
        }
        fn read(&mut self, from: u64, limit: usize) -> Result<Vec<Entry>, store::StoreError> {
            self.check()?;
            self.inner.read(from, limit)
        }
        fn history(
            &mut self,
            account: &naac_ledger::Account,
            before: Option<u64>,
            limit: usize,
        ) -> Result<Vec<Entry>, store::StoreError> {
            self.check()?;
            self.inner.history(account, before, limit)
        }
        fn put_checkpoint(&mut self, cp: &TreeHead) -> Result<(), store::StoreError> {
            self.check()?;
            self.inner.put_checkpoint(cp)
        }
        fn latest_checkpoint(&mut self) -> Result<Option<TreeHead>, store::StoreError> {
            self.check()?;
            self.inner.latest_checkpoint()
        }
        fn checkpoint(&mut self, size: u64) -> Result<Option<TreeHead>, store::StoreError> {
            self.check()?;
            self.inner.checkpoint(size)
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    fn ed25519() -> (naac_net::Keypair, AccountKey) {
        let kp = naac_net::Keypair::generate_ed25519();
        let key = AccountKey(naac_net::ed25519_of_keypair(&kp).unwrap());
        (kp, key)
    }

    #[test]
    fn a_store_that_fails_and_cannot_be_read_back_answers_nothing_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let down = Arc::new(AtomicBool::new(false));
        let (bank_kp, bank_key) = ed25519();
        let d = down.clone();
        let open = move || -> anyhow::Result<Box<dyn Store>> {
            Ok(Box::new(Flaky {
                inner: Box::new(store::SqliteStore::open(&path)?),
                down: d,
                hold: Arc::new(AtomicBool::new(false)),
            }))
        };
        let sign: Signer = std::sync::Arc::new(move |m| naac_net::sign(&bank_kp, m));
        let faucet = Faucet {
            amount: Credits(100_000_000),
            per_hour: None,
        };
        let bank = start_on(open, faucet, bank_key, sign).unwrap();
        let (alice_kp, alice) = ed25519();
        let (_, bob) = ed25519();
        let transfer = |nonce: u64| {
            let req = Request::Transfer {
                from: alice,
                to: bob,
                amount: Credits(10_000_000),
                nonce,
            };
            BankRequest::Submit(vec![
                SignedRequest::new(alice, &bank_key, &req, |m| naac_net::sign(&alice_kp, m))
                    .into_wire(),
            ])
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let balance = |who: AccountKey| {
            rt.block_on(bank.call(BankRequest::Balance {
                account: who.into_wire(),
            }))
            .map(|r| match r {
                BankResponse::Balance { balance, .. } => balance,
                other => panic!("not a balance: {other:?}"),
            })
        };
        let submitted = |req: BankRequest| match rt.block_on(bank.call(req)) {
            Ok(BankResponse::Submitted(v)) => v.into_iter().all(|r| r.is_ok()),
            Ok(other) => panic!("not submitted: {other:?}"),
            Err(_) => false,
        };
        // Alice gets her grant and pays Bob 10.
        assert!(submitted(transfer(1)));
        assert_eq!(balance(alice), Ok(Credits(90_000_000)));
        // The database goes away: the next payment fails, and nothing is answered from
        // memory that the store may not hold.
        down.store(true, Ordering::Relaxed);
        assert!(!submitted(transfer(2)));
        let while_down = balance(alice);
        assert!(while_down.is_err(), "answered from memory: {while_down:?}");
        // Back: the failed payment was never made; sent again, it is.
        down.store(false, Ordering::Relaxed);
        assert_eq!(balance(alice), Ok(Credits(90_000_000)));
        assert!(submitted(transfer(2)));
        assert_eq!(balance(alice), Ok(Credits(80_000_000)));
        // (Bob signed nothing, so he has no grant.)
        assert_eq!(balance(bob), Ok(Credits(20_000_000)));
    }

    /// A snapshot of the ledger is believed only when the bank signed it, it ends on the
    /// stored chain and its state is of that size and head; else the whole ledger is
    /// replayed, and either way the state is the ledger's own.
    #[test]
    fn a_snapshot_is_believed_only_when_the_bank_signed_it_and_the_chain_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let (bank_kp, bank_key) = ed25519();
        let bank_kp2 = bank_kp.clone();
        let sign: Signer = Arc::new(move |m| naac_net::sign(&bank_kp2, m));
        let faucet = Faucet {
            amount: Credits(100_000_000),
            per_hour: None,
        };
        let new_bank = || Bank {
            ledger: Ledger::new(bank_key),
            store: Box::new(store::SqliteStore::open(&path).unwrap()),
            revoked: Default::default(),
            sign: sign.clone(),
            faucet,
            bucket: Bucket::new(None),
            key: bank_key,
            stale: false,
            snapshot_at: 0,
        };
        let (alice_kp, alice) = ed25519();
        let (_, bob) = ed25519();
        let pay = |bank: &mut Bank, nonce: u64| {
            let req = Request::Transfer {
                from: alice,
                to: bob,
                amount: Credits(1_000_000),
                nonce,
            };
            let wire = SignedRequest::new(alice, &bank_key, &req, |m| naac_net::sign(&alice_kp, m))
                .into_wire();
            let (tx, _rx) = oneshot::channel();
            bank.process(vec![(BankRequest::Submit(vec![wire]), tx)]);
        };
        let mut bank = new_bank();
        bank.reload().unwrap();
        for nonce in 1..=3 {
            pay(&mut bank, nonce);
        }
        let early = bank.ledger.clone();
        for nonce in 4..=6 {
            pay(&mut bank, nonce);
        }
        bank.snapshot_if_due(true);
        let at = bank.ledger.len();
        assert_eq!(bank.snapshot_at, at);
        for nonce in 7..=8 {
            pay(&mut bank, nonce);
        }
        let honest = bank.ledger.clone();
        let len = honest.len();
        assert!(early.len() < at && at < len, "the payments made entries");

        // The bank's own snapshot is used, and the entries after it replayed.
        let mut fresh = new_bank();
        assert!(fresh.load_snapshot(len).is_some());
        fresh.reload().unwrap();
        assert_eq!(fresh.ledger, honest);
        assert_eq!(fresh.snapshot_at, at);

        let snap = fresh.store.latest_snapshot().unwrap().unwrap();
        let forge = |size: u64, head: naac_ledger::Hash, bytes: Vec<u8>, kp: &naac_net::Keypair| {
            let sig = naac_net::sign(kp, &store::Snapshot::signing_bytes(size, &head, &bytes));
            store::Snapshot {
                size,
                head,
                sig,
                bytes,
            }
        };
        let (stranger, _) = ed25519();
        let forgeries = [
            // Another key's signature over another state.
            forge(at, snap.head, early.snapshot(), &stranger),
            // The bank's signature, but a head that is not the chain's.
            forge(at, [7; 32], snap.bytes.clone(), &bank_kp),
            // The bank's signature over an older state passed off as this size.
            forge(at, snap.head, early.snapshot(), &bank_kp),
            // Past the end of the ledger.
            forge(len + 5, snap.head, snap.bytes.clone(), &bank_kp),
            // Garbled.
            forge(
                at,
                snap.head,
                snap.bytes[..snap.bytes.len() / 2].to_vec(),
                &bank_kp,
            ),
        ];
        for (i, f) in forgeries.iter().enumerate() {
            let mut fresh = new_bank();
            fresh.store.put_snapshot(f).unwrap();
            assert!(fresh.load_snapshot(len).is_none(), "forgery {i} believed");
            fresh.reload().unwrap();
            assert_eq!(fresh.ledger, honest, "forgery {i} changed the state");
        }
    }

    /// A bank on a fresh SQLite ledger, with `faucet`; also gives a runtime to call it.
    fn bank_with(faucet: Faucet) -> (tempfile::TempDir, BankHandle, AccountKey) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let (bank_kp, bank_key) = ed25519();
        let open = move || -> anyhow::Result<Box<dyn Store>> {
            Ok(Box::new(store::SqliteStore::open(&path)?))
        };
        let sign: Signer = std::sync::Arc::new(move |m| naac_net::sign(&bank_kp, m));
        (
            dir,
            start_on(open, faucet, bank_key, sign).unwrap(),
            bank_key,
        )
    }

    fn entries(rt: &tokio::runtime::Runtime, bank: &BankHandle) -> u64 {
        match rt.block_on(bank.call(BankRequest::Info)) {
            Ok(BankResponse::Info(i)) => i.entries,
            other => panic!("not info: {other:?}"),
        }
    }

    #[test]
    fn fresh_keys_with_garbage_mint_nothing_and_add_no_entries() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let open_faucet = Faucet {
            amount: Credits(100_000_000),
            per_hour: None,
        };
        for faucet in [Faucet::NONE, open_faucet] {
            let (_dir, bank, _) = bank_with(faucet);
            let (_, other_bank) = ed25519();
            for i in 0..1_000u64 {
                let (kp, key) = ed25519();
                // Garbage, validly signed by a fresh key.
                let garbage = format!("not a request {i}").into_bytes();
                let sig = naac_net::sign(&kp, &garbage);
                let junk = SignedRequest {
                    authorizer: key,
                    msg: garbage,
                    sig,
                };
                // A valid request, but for another bank.
                let req = Request::Transfer {
                    from: key,
                    to: other_bank,
                    amount: Credits(1),
                    nonce: i,
                };
                let foreign =
                    SignedRequest::new(key, &other_bank, &req, |m| naac_net::sign(&kp, m));
                // A valid request for this bank under someone else's key (a forgery).
                let forged = SignedRequest {
                    authorizer: other_bank,
                    ..foreign.clone()
                };
                let answers = rt.block_on(
                    bank.call(BankRequest::Submit(vec![junk, foreign, forged].into_wire())),
                );
                match answers {
                    Ok(BankResponse::Submitted(v)) => {
                        assert!(v.iter().all(|r| r.is_err()), "refused: {v:?}")
                    }
                    other => panic!("not submitted: {other:?}"),
                }
                let balance = rt.block_on(bank.call(BankRequest::Balance {
                    account: key.into_wire(),
                }));
                assert!(
                    matches!(
                        balance,
                        Ok(BankResponse::Balance {
                            balance: Credits::ZERO,
                            ..
                        })
                    ),
                    "{balance:?}"
                );
            }
            assert_eq!(
                entries(&rt, &bank),
                0,
                "the ledger did not grow ({faucet:?})"
            );
        }
    }

    #[test]
    fn a_faucet_grants_valid_requests_at_its_stated_rate_only() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let faucet = Faucet {
            amount: Credits(100_000_000),
            per_hour: Some(5),
        };
        let (_dir, bank, bank_key) = bank_with(faucet);
        let (_, shop) = ed25519();
        let mut paid = 0;
        for _ in 0..20 {
            let (kp, key) = ed25519();
            let req = Request::Transfer {
                from: key,
                to: shop,
                amount: Credits(1_000_000),
                nonce: 1,
            };
            let signed = SignedRequest::new(key, &bank_key, &req, |m| naac_net::sign(&kp, m));
            match rt.block_on(bank.call(BankRequest::Submit(vec![signed].into_wire()))) {
                Ok(BankResponse::Submitted(v)) => paid += v.iter().filter(|r| r.is_ok()).count(),
                other => panic!("not submitted: {other:?}"),
            }
        }
        assert_eq!(paid, 5, "only the first 5 new accounts were granted");
        assert_eq!(entries(&rt, &bank), 10, "5 grants and 5 transfers");
    }

    #[test]
    fn garbage_is_answered_before_the_queue_even_while_the_books_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let hold = Arc::new(AtomicBool::new(false));
        let (bank_kp, bank_key) = ed25519();
        let h = hold.clone();
        let open = move || -> anyhow::Result<Box<dyn Store>> {
            Ok(Box::new(Flaky {
                inner: Box::new(store::SqliteStore::open(&path)?),
                down: Arc::new(AtomicBool::new(false)),
                hold: h,
            }))
        };
        let signer = bank_kp.clone();
        let sign: Signer = std::sync::Arc::new(move |m| naac_net::sign(&signer, m));
        let bank = start_on(open, Faucet::NONE, bank_key, sign).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        // The database hangs on the next write: a valid grant occupies the bank's thread.
        hold.store(true, Ordering::Relaxed);
        let (kp, key) = ed25519();
        let grant = SignedRequest::new(
            bank_key,
            &bank_key,
            &Request::Grant {
                to: key,
                amount: Credits(1),
            },
            |m| naac_net::sign(&bank_kp, m),
        );
        let stuck = {
            let bank = bank.clone();
            rt.spawn(async move {
                bank.call(BankRequest::Submit(vec![grant].into_wire()))
                    .await
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (_, other_bank) = ed25519();
        let req = Request::Transfer {
            from: key,
            to: other_bank,
            amount: Credits(1),
            nonce: 1,
        };
        let foreign = SignedRequest::new(key, &other_bank, &req, |m| naac_net::sign(&kp, m));
        let unsigned = SignedRequest {
            sig: vec![0; 64],
            ..SignedRequest::new(key, &bank_key, &req, |m| naac_net::sign(&kp, m))
        };
        let garbage = SignedRequest {
            authorizer: key,
            msg: b"garbage".to_vec(),
            sig: naac_net::sign(&kp, b"garbage"),
        };
        // Answered at once although the bank's thread is stuck (a hang detector, not a
        // speed target: queued, these would wait for the database).
        let answers = rt
            .block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(20),
                    bank.call(BankRequest::Submit(
                        vec![foreign, unsigned, garbage].into_wire(),
                    )),
                )
                .await
            })
            .expect("garbage waited behind the books");
        let Ok(BankResponse::Submitted(v)) = answers else {
            panic!("not answered: {answers:?}")
        };
        let why: Vec<String> = v.into_iter().map(|a| a.expect_err("refused")).collect();
        assert!(why[0].contains("is addressed to bank"), "{why:?}");
        assert_eq!(why[1], "request signature is not the authorizer's");
        assert!(!why[2].is_empty());
        hold.store(false, Ordering::Relaxed);
        let granted = rt.block_on(stuck).unwrap();
        assert!(
            matches!(granted, Ok(BankResponse::Submitted(ref v)) if v[0].is_ok()),
            "{granted:?}"
        );
    }
}
