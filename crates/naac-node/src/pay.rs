//! The requester's side of the economy: the escrow a job opens before it runs, the reverse
//! Vickrey auction that prices each batch, the settlements that pay verified results, and the
//! refund when the job ends.
//!
//! A job with a bank opens an escrow of `max_price × fuel limit × expected copies` first, so
//! a user who cannot pay is refused before anything runs. Providers answer the requester's
//! `Hello` with a sealed, signed ask; each batch of tasks goes to the best-ranked provider
//! with room and is priced by [`naac_market::clear_for`]: the next ask up among the other
//! bidders, or the job's `max_price` when there is none. Each result the verification
//! accepts is paid at its batch's price for the fuel it used; the bank checks the provider's
//! signed record and both asks, so the requester cannot underpay. Settlements are batched
//! and idempotent (by result record hash), so they are simply sent again after an error.
//! The bank is reached through `naac-bank`'s client, [`BankConn`] (re-exported here).

pub use naac_bank::BankConn;
use naac_bank::FromWire as _;
use naac_ledger::{AccountKey, Request, SignedRecord, SignedRequest};
use naac_net::{Keypair, PeerId};
use naac_proto::{MAX_BANK_BATCH, SignedAsk};
use naac_types::{Credits, Job, JobId, Price};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How an escrow is opened and how long it lives before the bank refunds it by itself.
pub const ESCROW_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Settlements waiting to be sent.
const SETTLE_QUEUE: usize = 65_536;

/// Paid copies the escrow must cover, at most: one per task, or `max_replicas` per task
/// when copies are compared (a disagreement adds copies up to it), plus one more per task
/// when spot checks may pick it. An upper bound, so a job never runs out of escrow; what
/// is not used is refunded.
pub fn expected_copies(job: &Job, tasks: u64) -> u64 {
    let v = &job.verify;
    let per_task = if v.compares() {
        v.max_replicas.max(v.replicas).max(1)
    } else {
        1
    };
    let base = tasks.saturating_mul(u64::from(per_task));
    let spot = if v.spot_check > 0.0 { tasks } else { 0 };
    base.saturating_add(spot)
}

/// The escrow a job needs: `max_price × fuel limit × expected copies`.
pub fn escrow_for(job: &Job, tasks: u64) -> Credits {
    let per_copy = job.budget.max_price.cost(job.limits.fuel);
    Credits(per_copy.0.saturating_mul(expected_copies(job, tasks)))
}

/// Why a job cannot be paid for.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("a task of this job may cost up to {need} credits; balance {balance}")]
    Insufficient { need: Credits, balance: Credits },
    #[error("job could cost up to {need} credits; its budget.max_cost is {max}")]
    OverBudget { need: Credits, max: Credits },
    #[error("bank: {0}")]
    Bank(String),
}

/// The escrow of one job, opened.
#[derive(Clone)]
pub struct Escrow {
    pub bank: BankConn,
    pub bank_key: AccountKey,
    pub job: JobId,
    /// Who signs for it: the user (with a spend token, its holder).
    pub payer: AccountKey,
    /// Whose wallet funds it: the payer, or a spend token's root.
    pub funder: AccountKey,
    /// The spend token it was opened with, shown again with each top-up.
    pub spend: Option<String>,
    pub amount: Credits,
    pub max_price: Price,
    pub balance_before: Credits,
    /// How long providers may claim unpaid results once it is closed (0: no claims; the
    /// refund is immediate).
    pub claim_window_ms: u64,
}

/// Opens the job's escrow with `amount`; nothing runs if this fails.
pub async fn open_escrow(
    bank: BankConn,
    user: &Keypair,
    job: JobId,
    amount: Credits,
    (max_price, fuel_limit): (Price, u64),
    (claim_window, spend): (Duration, Option<&str>),
) -> Result<Escrow, PayError> {
    let claim_window_ms = claim_window.as_millis() as u64;
    let payer = AccountKey(
        naac_net::ed25519_of_keypair(user)
            .ok_or(PayError::Bank("the user key is not ed25519".into()))?,
    );
    // With a spend token, its root's wallet funds the escrow.
    let funder = match spend {
        Some(t) => AccountKey(
            *naac_token::inspect(t)
                .map_err(|e| PayError::Bank(format!("the spend token: {e}")))?
                .root(),
        ),
        None => payer,
    };
    let bank_key = bank.key().await.map_err(PayError::Bank)?;
    // The escrow request itself is the balance check.
    let expires_ms = lifetime_end(spend);
    let req = Request::OpenEscrow {
        job,
        payer: funder,
        amount,
        max_price,
        fuel_limit,
        expires_ms,
        claim_window_ms,
        spend: spend.map(str::to_string),
    };
    let signed = SignedRequest::new(payer, &bank_key, &req, |m| naac_net::sign(user, m));
    let mut answers = bank.submit(vec![signed]).await.map_err(PayError::Bank)?;
    match answers.pop() {
        Some(Ok(_)) => {
            let after = bank.balance(funder).await.map_err(PayError::Bank)?;
            Ok(Escrow {
                bank,
                bank_key,
                job,
                payer,
                funder,
                spend: spend.map(str::to_string),
                amount,
                max_price,
                balance_before: Credits(after.0.saturating_add(amount.0)),
                claim_window_ms,
            })
        }
        Some(Err(e)) if e.contains("balance") => Err(PayError::Insufficient {
            need: amount,
            balance: bank.balance(funder).await.map_err(PayError::Bank)?,
        }),
        Some(Err(e)) => Err(PayError::Bank(e)),
        None => Err(PayError::Bank("no answer to the escrow request".into())),
    }
}

/// When an escrow opened now should expire: [`ESCROW_LIFETIME`] ahead, and no later than the
/// spend token it is opened with (the bank refuses escrows that outlive their token).
fn lifetime_end(spend: Option<&str>) -> u64 {
    let end = now_ms() + ESCROW_LIFETIME.as_millis() as u64;
    spend
        .and_then(|t| naac_token::inspect(t).ok())
        .and_then(|t| t.expires_through(t.revocation_ids().len().saturating_sub(1)))
        .and_then(|e| e.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(end, |d| end.min(d.as_millis() as u64))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What has been paid so far, per provider.
#[derive(Clone, Debug, Default)]
pub struct Paid {
    pub total: Credits,
    pub by_provider: HashMap<PeerId, Credits>,
    pub settlements: u64,
    /// Settlements the bank refused (with the last reason).
    pub refused: u64,
    pub last_refusal: Option<String>,
    /// Settlements the bank has not confirmed (it could not be reached).
    pub unconfirmed: u64,
}

/// The price of one run, fixed when its batch was auctioned; the asks as they came in.
#[derive(Clone, Debug)]
pub struct Terms {
    pub price: Price,
    pub winner: SignedAsk,
    pub second: Option<SignedAsk>,
}

/// Where a job's settlements are logged before they are sent: `DIR/payments-<job>.jsonl`,
/// one signed request per line. A run that dies with settlements unsent leaves them here;
/// the next run into `DIR` sends them again (the bank ignores what it already has) before it
/// refunds the escrow.
pub fn payment_log(out_dir: &Path, job: &JobId) -> PathBuf {
    out_dir.join(format!("payments-{}.jsonl", job.to_hex()))
}

fn log_line(r: &SignedRequest) -> String {
    format!(
        "{{\"authorizer\":\"{}\",\"msg\":\"{}\",\"sig\":\"{}\"}}\n",
        naac_types::hex(&r.authorizer.0),
        naac_types::hex(&r.msg),
        naac_types::hex(&r.sig)
    )
}

/// Reads a payment log back (lines that do not parse are skipped).
pub fn read_payment_log(path: &Path) -> Vec<SignedRequest> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let authorizer = naac_ledger::unhex::<32>(v["authorizer"].as_str()?)?;
            Some(SignedRequest {
                authorizer: AccountKey(authorizer),
                msg: naac_types::unhex_vec(v["msg"].as_str()?)?,
                sig: naac_types::unhex_vec(v["sig"].as_str()?)?,
            })
        })
        .collect()
}

/// Sends a payment log's settlements again; `Err` if the bank could not be reached (the
/// escrow must then stay open).
pub async fn resend_log(bank: &BankConn, path: &Path) -> Result<usize, String> {
    let reqs = read_payment_log(path);
    for chunk in reqs.chunks(MAX_BANK_BATCH) {
        bank.submit(chunk.to_vec()).await?;
    }
    Ok(reqs.len())
}

/// Sends settlements to the bank in batches, in the background.
pub struct Payer {
    escrow: Arc<Escrow>,
    user: Keypair,
    tx: Option<mpsc::Sender<(PeerId, SignedRequest)>>,
    task: Option<tokio::task::JoinHandle<()>>,
    log: Option<(std::io::BufWriter<std::fs::File>, std::path::PathBuf)>,
    queued: u64,
    failed: Option<String>,
    pub paid: Arc<Mutex<Paid>>,
    /// The orders given to providers (each with its runs and its task tree), and where each
    /// run is in them; the runs settled or rejected. A run that comes back unstarted or is
    /// lost is rejected at once (freeing its reservation); at the end every ordered run not
    /// settled is, before the escrow closes, so no provider can claim a result this run
    /// refused or never got.
    orders: Vec<Arc<PlacedOrder>>,
    ordered: HashMap<(u32, u32), (usize, u32)>,
    settled: HashSet<(u32, u32)>,
    /// Rejections of runs that came back, sent with the next commit (in one batch, before
    /// it, so the reservation they free is there for it) or at the end.
    pending: Vec<SignedRequest>,
    /// Testing aid: settle nothing and reject nothing.
    stiff: bool,
}

/// An order as placed: the payer's signature, its runs and their tree.
struct PlacedOrder {
    signed: naac_ledger::SignedOrder,
    tree: naac_ledger::MerkleTree,
    runs: Vec<(u32, u32)>,
}

/// What closing a job's escrow did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Refunded now.
    Refunded(Credits),
    /// Closing: `now` returned, and what its providers' reservations still hold, `later`,
    /// returns at `at_ms` (Unix milliseconds) less what they claim in the window.
    Returns {
        now: Credits,
        later: Credits,
        at_ms: u64,
    },
}

impl Payer {
    /// `log`: the payment log every settlement is appended to, and synced to disk, before it
    /// is sent. A log that cannot be opened is an error: nothing may be paid that a restart
    /// would forget.
    pub fn new(escrow: Escrow, user: Keypair, log: Option<&Path>) -> Result<Self, String> {
        let escrow = Arc::new(escrow);
        let paid = Arc::new(Mutex::new(Paid::default()));
        let (tx, rx) = mpsc::channel(SETTLE_QUEUE);
        let log = match log {
            None => None,
            Some(p) => Some((
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("cannot open the payment log {}: {e}", p.display()))?,
                p.to_path_buf(),
            )),
        };
        let sync = match &log {
            Some((f, p)) => Some(
                f.try_clone()
                    .map_err(|e| format!("payment log {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let task = tokio::spawn(settle_loop(escrow.bank.clone(), rx, paid.clone(), sync));
        Ok(Self {
            escrow,
            user,
            tx: Some(tx),
            task: Some(task),
            log: log.map(|(f, p)| (std::io::BufWriter::new(f), p)),
            queued: 0,
            failed: None,
            paid,
            orders: Vec::new(),
            ordered: HashMap::new(),
            settled: HashSet::new(),
            pending: Vec::new(),
            stiff: false,
        })
    }

    /// Why the payment log could not be written, if it could not: the run must stop, since
    /// nothing more can be paid safely.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn escrow(&self) -> &Escrow {
        &self.escrow
    }

    /// Tops the escrow up by up to `due.want`, in whole copies of `per_copy` that the payer's
    /// balance covers, or by exactly `due.want` when it is a resend. The future owns what it
    /// needs.
    pub fn top_up(
        &self,
        per_copy: Credits,
        due: crate::requester::budget::Due,
    ) -> impl std::future::Future<Output = crate::requester::budget::TopUpOutcome> + Send + 'static
    {
        use crate::requester::budget::{TopUpOutcome, fundable};
        let escrow = self.escrow.clone();
        let user = self.user.clone();
        async move {
            let amount = if due.exact {
                due.want
            } else {
                let balance = match escrow.bank.balance(escrow.funder).await {
                    Ok(b) => b,
                    Err(why) => return TopUpOutcome::Failed { sent: None, why },
                };
                match fundable(per_copy, due.want, balance) {
                    Some(a) => a,
                    None => return TopUpOutcome::Short { balance },
                }
            };
            match top_up(&escrow, &user, amount, due.nonce).await {
                Ok(()) => TopUpOutcome::Done(amount),
                Err(why) => TopUpOutcome::Failed {
                    sent: Some(amount),
                    why,
                },
            }
        }
    }

    /// What the bank has paid from the escrow so far, and how many settlements it has not
    /// answered yet (each may still pay up to a copy's worst case).
    pub fn accounts(&self) -> (Credits, u64) {
        let p = self.paid.lock().unwrap_or_else(|e| e.into_inner());
        let answered = p.settlements + p.refused;
        (p.total, self.queued.saturating_sub(answered))
    }

    /// Testing aid: from now on this payer pays nothing and rejects nothing (a requester
    /// that takes results and closes its escrow), so its providers must claim.
    pub fn stiff(&mut self) {
        tracing::warn!("testing aid: this run pays no provider");
        self.stiff = true;
    }

    /// The payer's signed order for `runs` (in the assignment's order) to `provider` at
    /// `price`, for an escrow that takes claims, with the requests that commit it at the
    /// bank (to be answered before the assignment goes out; the commit is the last, after
    /// rejections of runs that came back); `None` otherwise.
    pub fn order(
        &mut self,
        provider: &PeerId,
        price: Price,
        runs: &[(u32, u32)],
    ) -> Option<(naac_proto::WireOrder, Vec<SignedRequest>)> {
        if self.escrow.claim_window_ms == 0 {
            return None;
        }
        let key = AccountKey(naac_net::ed25519_of(provider)?);
        let order =
            naac_ledger::Order::new(self.escrow.bank_key, self.escrow.job, key, price, runs)
                .sign(|m| naac_net::sign(&self.user, m));
        let commit = self.signed(&Request::Commit {
            job: self.escrow.job,
            order: order.clone(),
        });
        let at = self.orders.len();
        for (i, run) in runs.iter().enumerate() {
            self.ordered.insert(*run, (at, i as u32));
        }
        let wire = naac_proto::WireOrder {
            bytes: order.bytes.clone(),
            sig: order.sig.clone(),
        };
        self.orders.push(Arc::new(PlacedOrder {
            signed: order,
            tree: naac_ledger::order_tree(runs),
            runs: runs.to_vec(),
        }));
        let mut batch = std::mem::take(&mut self.pending);
        if batch.len() >= MAX_BANK_BATCH {
            // Far more came back than one batch holds: the oldest wait for the end.
            let rest = batch.split_off(MAX_BANK_BATCH - 1);
            self.pending = rest;
        }
        batch.push(commit);
        Some((wire, batch))
    }

    /// A request signed by the payer for this escrow's bank.
    fn signed(&self, req: &Request) -> SignedRequest {
        SignedRequest::new(self.escrow.payer, &self.escrow.bank_key, req, |m| {
            naac_net::sign(&self.user, m)
        })
    }

    /// Rejections of those of `runs` that were ordered and are not settled (each once).
    fn rejections(&mut self, runs: impl IntoIterator<Item = (u32, u32)>) -> Vec<SignedRequest> {
        let mut out = Vec::new();
        for run in runs {
            if self.settled.contains(&run) {
                continue;
            }
            let Some((at, index)) = self.ordered.remove(&run) else {
                continue;
            };
            let o = self.orders[at].clone();
            let Some(proof) = o
                .tree
                .inclusion_proof(u64::from(index), o.runs.len() as u64)
            else {
                continue;
            };
            out.push(self.signed(&Request::Reject {
                job: self.escrow.job,
                order: o.signed.clone(),
                task: run.0,
                attempt: run.1,
                index,
                proof,
            }));
        }
        out
    }

    /// Runs handed back unstarted, or whose assignment failed: rejected at the bank with
    /// the next commit, so their reservation is free for the runs that replace them. (Even
    /// the testing aid's payer does this: no provider ran them.)
    pub fn release(&mut self, runs: impl IntoIterator<Item = (u32, u32)>) {
        if self.escrow.claim_window_ms == 0 {
            return;
        }
        let rejects = self.rejections(runs);
        self.pending.extend(rejects);
    }

    /// Pays `provider` for one accepted result: for `fuel` when less than the record claims
    /// (the honest copies' figure), else for the record's claim.
    pub fn settle(
        &mut self,
        provider: PeerId,
        record: SignedRecord,
        terms: &Terms,
        fuel: Option<u64>,
    ) {
        let Some(key) = naac_net::ed25519_of(&provider) else {
            return;
        };
        if self.stiff {
            return;
        }
        if let Some(r) = naac_types::ResultRecord::from_signing_bytes(&record.bytes) {
            self.settled.insert((r.task, r.attempt));
        }
        let req = Request::Settle {
            job: self.escrow.job,
            provider: AccountKey(key),
            record,
            price: terms.price,
            winner: naac_market::SignedAsk::from_wire(terms.winner.clone()),
            second: terms.second.clone().map(naac_market::SignedAsk::from_wire),
            fuel,
        };
        let signed = SignedRequest::new(self.escrow.payer, &self.escrow.bank_key, &req, |m| {
            naac_net::sign(&self.user, m)
        });
        if self.failed.is_some() {
            return;
        }
        if let Some((log, path)) = &mut self.log {
            use std::io::Write;
            if let Err(e) = log
                .write_all(log_line(&signed).as_bytes())
                .and_then(|()| log.flush())
            {
                // Not logged, not sent: a payment a restart could not resend is not made.
                self.failed = Some(format!(
                    "the payment log {} cannot be written: {e}",
                    path.display()
                ));
                return;
            }
        }
        self.queued += 1;
        if let Some(tx) = &self.tx
            && tx.try_send((provider, signed)).is_err()
        {
            tracing::warn!("settlement queue full: a payment to {provider} waits in the log");
        }
    }

    /// Waits until the bank has answered every settlement (up to `wait`), then refunds what
    /// is left of the escrow and returns the refund. If some settlement is unconfirmed the
    /// escrow stays open (refunding now would leave verified work unpaid): `Err` says so,
    /// and the next run into the same directory sends the logged settlements again first.
    pub async fn finish(mut self, wait: Duration) -> Result<Closed, String> {
        self.tx = None;
        if let Some(task) = self.task.take()
            && tokio::time::timeout(wait, task).await.is_err()
        {
            tracing::warn!("some settlements were still unsent after {wait:?}");
        }
        let unconfirmed = {
            let p = self.paid.lock().unwrap_or_else(|e| e.into_inner());
            self.queued
                .saturating_sub(p.settlements + p.refused)
                .max(p.unconfirmed)
        };
        if unconfirmed > 0 {
            return Err(format!(
                "{unconfirmed} payments are not confirmed by the bank, so the escrow stays open; run the job again into the same directory to send them and get the rest back"
            ));
        }
        if self.escrow.claim_window_ms == 0 {
            return refund(&self.escrow, &self.user).await.map(Closed::Refunded);
        }
        // Every run given out and not paid is rejected before the escrow closes: its
        // result was wrong, late, or never came.
        let mut unpaid: Vec<(u32, u32)> = if self.stiff {
            Vec::new()
        } else {
            self.ordered.keys().copied().collect()
        };
        unpaid.sort_unstable();
        let mut rejects = std::mem::take(&mut self.pending);
        rejects.extend(self.rejections(unpaid));
        for chunk in rejects.chunks(MAX_BANK_BATCH) {
            let answers = self.escrow.bank.submit(chunk.to_vec()).await?;
            for a in answers {
                if let Err(e) = a {
                    // Paid after all (a settlement raced it): nothing to reject.
                    tracing::debug!("reject: {e}");
                }
            }
        }
        if !rejects.is_empty() {
            tracing::info!("rejected {} runs that were not paid", rejects.len());
        }
        let now = refund(&self.escrow, &self.user).await?;
        match self.escrow.bank.escrow(self.escrow.job).await? {
            Some(v) if v.closing && !v.closed => Ok(Closed::Returns {
                now,
                later: v.left,
                at_ms: v.expires_ms,
            }),
            Some(v) if v.closed => Ok(Closed::Refunded(now)),
            _ => Err("the bank does not show the closed escrow".into()),
        }
    }
}
/// The escrow a job asks to open with: its first
/// [`WINDOW`](crate::requester::budget::WINDOW) copies at their worst case
/// (`max_price × fuel limit`), fewer if the job has fewer. The job's worst case over every
/// copy must still fit its `max_cost`. Later copies are paid for by top-ups as results come.
pub fn first_deposit(job: &Job, tasks: u64) -> Result<Credits, PayError> {
    let worst = escrow_for(job, tasks);
    if let Some(max) = job.budget.max_cost
        && worst > max
    {
        return Err(PayError::OverBudget { need: worst, max });
    }
    let per_copy = job.budget.max_price.cost(job.limits.fuel);
    let window = Credits(per_copy.0.saturating_mul(crate::requester::budget::WINDOW));
    Ok(worst.min(window))
}

/// Adds `amount` to the escrow (`nonce` makes it one top-up, however often it is sent).
pub async fn top_up(
    escrow: &Escrow,
    user: &Keypair,
    amount: Credits,
    nonce: u64,
) -> Result<(), String> {
    let req = Request::TopUp {
        job: escrow.job,
        amount,
        nonce,
        // A job still paying in keeps its escrow as long again.
        expires_ms: Some(lifetime_end(escrow.spend.as_deref())),
        spend: escrow.spend.clone(),
    };
    let signed = SignedRequest::new(escrow.payer, &escrow.bank_key, &req, |m| {
        naac_net::sign(user, m)
    });
    match escrow.bank.submit(vec![signed]).await?.pop() {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e),
        None => Err("no answer to the top-up".into()),
    }
}

/// Sends an order's commit (after the rejections batched with it) and waits for the bank's
/// answer to it; a bank that cannot be reached is tried again for a few seconds (a commit is
/// idempotent), a refusal is not.
pub async fn commit(bank: &BankConn, batch: Vec<SignedRequest>) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..5 {
        match bank.submit(batch.clone()).await {
            Ok(mut v) => {
                return match v.pop() {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(e),
                    None => Err("no answer".into()),
                };
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    Err(last)
}

/// Refunds what is left of an escrow to its payer (idempotent).
pub async fn refund(escrow: &Escrow, user: &Keypair) -> Result<Credits, String> {
    let req = Request::Refund { job: escrow.job };
    let signed = SignedRequest::new(escrow.payer, &escrow.bank_key, &req, |m| {
        naac_net::sign(user, m)
    });
    let mut last = String::new();
    for attempt in 0..5 {
        match escrow.bank.submit(vec![signed.clone()]).await {
            Ok(mut v) => match v.pop() {
                Some(Ok(r)) => return Ok(r.amount),
                Some(Err(e)) => return Err(e),
                None => last = "no answer".into(),
            },
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    Err(last)
}

async fn settle_loop(
    bank: BankConn,
    mut rx: mpsc::Receiver<(PeerId, SignedRequest)>,
    paid: Arc<Mutex<Paid>>,
    log: Option<std::fs::File>,
) {
    let log = log.map(Arc::new);
    let mut batch: Vec<(PeerId, SignedRequest)> = Vec::new();
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(s) => batch.push(s),
                None => return,
            }
        }
        // Gather what else is waiting, briefly, so a stream of results is paid in batches.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        while batch.len() < MAX_BANK_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let reqs: Vec<SignedRequest> = batch.iter().map(|(_, r)| r.clone()).collect();
        // The log holds the batch on disk before the bank hears of it.
        if let Some(log) = &log {
            let log = log.clone();
            let synced = tokio::task::spawn_blocking(move || log.sync_data()).await;
            if !matches!(synced, Ok(Ok(()))) {
                tracing::error!(
                    "the payment log could not be synced: {} settlements not sent",
                    reqs.len()
                );
                let mut p = paid.lock().unwrap_or_else(|e| e.into_inner());
                p.unconfirmed += reqs.len() as u64;
                p.last_refusal = Some("the payment log could not be synced".into());
                batch.clear();
                continue;
            }
        }
        let mut tries = 0;
        loop {
            match bank.submit(reqs.clone()).await {
                Ok(answers) => {
                    let mut p = paid.lock().unwrap_or_else(|e| e.into_inner());
                    for ((provider, _), a) in batch.iter().zip(answers) {
                        match a {
                            // A duplicate is this run's own settlement whose first answer
                            // was lost: it was paid.
                            Ok(r) => {
                                p.total = Credits(p.total.0.saturating_add(r.amount.0));
                                let e = p.by_provider.entry(*provider).or_default();
                                *e = Credits(e.0.saturating_add(r.amount.0));
                                p.settlements += 1;
                            }
                            Err(e) => {
                                tracing::warn!("the bank refused a payment to {provider}: {e}");
                                p.refused += 1;
                                p.last_refusal = Some(e);
                            }
                        }
                    }
                    break;
                }
                Err(e) => {
                    // Never given up while the run lasts: a settlement not answered holds
                    // its copy's worst case in the escrow's count, and the next run into the
                    // directory resends the log if this one ends first.
                    tries += 1;
                    if tries == 20 {
                        tracing::error!(
                            "the bank has not answered {} settlements for a while: {e}; still trying",
                            reqs.len()
                        );
                        paid.lock().unwrap_or_else(|e| e.into_inner()).last_refusal = Some(e);
                    } else {
                        tracing::warn!("bank unreachable ({e}); retrying the settlements");
                    }
                    tokio::time::sleep(Duration::from_millis(250 * tries.min(20))).await;
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escrow(dir: &Path) -> (Escrow, Keypair) {
        let bank_kp = Keypair::generate_ed25519();
        let bank_key = AccountKey(naac_net::ed25519_of_keypair(&bank_kp).expect("ed25519"));
        let handle = naac_bank::start_with_keypair(
            naac_bank::BankConfig {
                store: format!("sqlite:{}", dir.join("ledger.db").display()),
                faucet: naac_bank::Faucet::NONE,
            },
            bank_kp,
        )
        .expect("bank");
        let user = Keypair::generate_ed25519();
        let payer = AccountKey(naac_net::ed25519_of_keypair(&user).expect("ed25519"));
        let escrow = Escrow {
            bank: BankConn::Local(handle),
            bank_key,
            job: JobId::derive(&naac_types::ContentId::of(b"log"), b"1"),
            payer,
            funder: payer,
            spend: None,
            amount: Credits::ZERO,
            max_price: Price(1),
            balance_before: Credits::ZERO,
            claim_window_ms: 0,
        };
        (escrow, user)
    }

    fn terms(provider: &Keypair, job: JobId) -> Terms {
        let ask = naac_market::Ask {
            job,
            provider: naac_net::ed25519_of_keypair(provider).expect("ed25519"),
            price: Price(1),
            expires_ms: u64::MAX,
        };
        let sig = naac_net::sign(provider, &ask.signing_bytes());
        let naac_proto::Bid::Ask(winner) =
            naac_bank::wire::ask_bid(naac_market::SignedAsk { ask, sig })
        else {
            unreachable!("an ask")
        };
        Terms {
            price: Price(1),
            winner,
            second: None,
        }
    }

    #[tokio::test]
    async fn a_payment_log_that_cannot_be_opened_stops_the_payer_before_anything() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (escrow, user) = escrow(dir.path());
        let missing = dir.path().join("no-such-dir").join("payments.jsonl");
        let e = Payer::new(escrow, user, Some(&missing))
            .err()
            .expect("refused");
        assert!(e.starts_with("cannot open the payment log"), "{e}");
    }

    #[tokio::test]
    async fn a_settlement_that_cannot_be_logged_is_not_sent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (escrow, user) = escrow(dir.path());
        let job = escrow.job;
        // Every write to /dev/full fails as a full disk would.
        let mut payer = Payer::new(escrow, user, Some(Path::new("/dev/full"))).expect("payer");
        let provider = Keypair::generate_ed25519();
        let record = SignedRecord {
            bytes: b"record".to_vec(),
            sig: vec![0; 64],
        };
        payer.settle(
            provider.public().to_peer_id(),
            record,
            &terms(&provider, job),
            None,
        );
        let why = payer.failed().expect("the run must stop").to_string();
        assert!(why.contains("/dev/full cannot be written"), "{why}");
        assert_eq!(payer.queued, 0, "nothing was sent");
    }
}
