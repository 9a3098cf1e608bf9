//! The ledger's rules, sans IO: who may move which credits, checked against the state the
//! entries so far have built.
//!
//! [`Ledger::apply`] takes a signed request, checks it and appends the entry it makes;
//! [`Ledger::replay`] takes a stored entry and checks that its request, applied to the
//! state before it, makes exactly that entry. Both run the same checks ([`Ledger`]'s private
//! `plan`), so what the bank accepted and what a verifier accepts cannot drift apart. A
//! refused request changes nothing; every state change happens after every check passed and
//! needs no arithmetic that could fail.
//!
//! Money is conserved by construction: every entry moves an amount from one account to
//! another, and the mint's side is counted as [`Ledger::issued`], so the balances of all
//! users and escrows always add up to what was issued.

use crate::checkpoint::Checkpoint;
use crate::entry::{Account, AccountKey, Entry, Hash, Kind, MAX_AUTH, MAX_MEMO};
use crate::merkle::{MerkleTree, leaf_hash};
use crate::request::{DecodeError, Request, SignedRecord, SignedRequest};
use naac_market::{SignedAsk, verify_ed25519};
use naac_types::{Credits, JobId, Price, ResultRecord, hex};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// First 16 hex characters of a key, for messages.
fn short(k: &AccountKey) -> String {
    hex(&k.0[..8])
}

/// Who needs the money, for [`LedgerError::InsufficientBalance`].
fn needs(job: &Option<JobId>) -> String {
    match job {
        Some(j) => format!("job {} needs up to", j.short()),
        None => "transfer needs".into(),
    }
}

/// BLAKE3 of some bytes (a request message, a record).
fn blake(b: &[u8]) -> Hash {
    *blake3::hash(b).as_bytes()
}

/// Why a request was refused. Every variant is a refusal of that request: nothing changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LedgerError {
    /// The signature is not the authorizer's over the message.
    #[error("request signature is not the authorizer's")]
    BadSignature,
    /// The message could not be read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message names another bank.
    #[error("request is addressed to bank {}, not this one", short(.0))]
    WrongBank(AccountKey),
    /// Only the bank may grant.
    #[error("grant is not signed by the bank")]
    NotBank,
    /// The account already received its grant (with another request).
    #[error("account {} already received its grant", short(.0))]
    AlreadyGranted(AccountKey),
    /// The sender already used this transfer nonce for another transfer.
    #[error(
        "transfer nonce {nonce} of account {} was already used for another transfer",
        short(.from)
    )]
    NonceReused { from: AccountKey, nonce: u64 },
    /// A transfer or escrow of nothing.
    #[error("amount must be more than zero")]
    ZeroAmount,
    /// A transfer to the account it comes from.
    #[error("cannot transfer from an account to itself")]
    SelfTransfer,
    /// The payer's balance does not cover the amount (`job` names the escrow being opened).
    #[error("{} {need} credits; balance {balance}", needs(.job))]
    InsufficientBalance {
        need: Credits,
        balance: Credits,
        job: Option<JobId>,
    },
    /// The request is signed by someone other than the account it spends from.
    #[error("request is signed by {}, not by the payer {}", short(.signer), short(.payer))]
    NotPayer {
        signer: AccountKey,
        payer: AccountKey,
    },
    /// An escrow for this job was already opened (with another request).
    #[error("job {} already has an escrow", .0.short())]
    EscrowExists(JobId),
    /// No escrow was opened for this job.
    #[error("job {} has no escrow", .0.short())]
    NoSuchEscrow(JobId),
    /// The job's escrow was refunded and closed.
    #[error("escrow of job {} is closed", .0.short())]
    EscrowClosed(JobId),
    /// The payment is more than the escrow has left.
    #[error("settlement needs {need} credits; escrow has {left} left")]
    EscrowExhausted { need: Credits, left: Credits },
    /// The settled result record is malformed, for another job or not the provider's.
    #[error("bad result record: {0}")]
    BadRecord(String),
    /// An ask of the settlement is forged, for another job or does not justify the price.
    #[error("bad ask: {0}")]
    BadAsk(String),
    /// A balance or the issuance would pass `u64::MAX` µcredits.
    #[error("amount would overflow the books")]
    Overflow,
}

/// What [`Ledger::apply`] did with a request.
// One per request and consumed at once: not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The request passed; this entry was appended.
    New(Entry),
    /// The request was already applied, by the entry at `seq`; nothing changed.
    Duplicate { seq: u64 },
}

/// The escrow of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscrowState {
    /// Who funded it; the only one who may settle from it.
    pub payer: AccountKey,
    /// What was put in.
    pub opened: Credits,
    /// What is still in it.
    pub left: Credits,
    /// What was paid to providers from it.
    pub paid: Credits,
    /// The most that may be paid per giga-fuel.
    pub max_price: Price,
    /// The most fuel one paid result may claim (the job's per-task limit).
    pub fuel_limit: u64,
    /// After this (Unix milliseconds) the bank may refund it.
    pub expires_ms: u64,
    /// Refunded; nothing more moves in or out.
    pub closed: bool,
    /// Number of result records paid from it.
    pub settled: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct EscrowSlot {
    state: EscrowState,
    /// Entry that opened it and the hash of its request (to tell a retry from a clash).
    open_seq: u64,
    open_msg: Hash,
    /// Entry that closed it.
    close_seq: Option<u64>,
}

/// A request applied once: the entry and the hash of its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    seq: u64,
    msg: Hash,
}

/// How thoroughly `plan` checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sigs {
    Check,
    Trust,
}

/// The state change an accepted request makes, with every new value already computed.
enum Change {
    Grant {
        to: AccountKey,
        balance: u64,
        issued: u64,
        seen: Seen,
    },
    Transfer {
        from: AccountKey,
        from_balance: u64,
        to: AccountKey,
        to_balance: u64,
        nonce: u64,
        seen: Seen,
    },
    Open {
        payer: AccountKey,
        payer_balance: u64,
        job: JobId,
        slot: EscrowSlot,
    },
    Settle {
        job: JobId,
        escrow: EscrowState,
        provider: AccountKey,
        provider_balance: u64,
        record: Hash,
    },
    Refund {
        job: JobId,
        escrow: EscrowState,
        payer: AccountKey,
        payer_balance: u64,
    },
}

enum Plan {
    Duplicate(u64),
    Append(Box<Entry>, Change),
}

impl Plan {
    /// An idempotency key met before (entry `seq`, authorized by message `before`): the same
    /// signed message again is a duplicate of that entry; another message under the same key
    /// is refused with `conflict`.
    fn again(
        before: &Hash,
        seq: u64,
        msg: &Hash,
        conflict: LedgerError,
    ) -> Result<Plan, LedgerError> {
        if before == msg {
            Ok(Plan::Duplicate(seq))
        } else {
            Err(conflict)
        }
    }
}

/// The ledger's state and rules; no IO. Feed it requests ([`Ledger::apply`]) or stored
/// entries ([`Ledger::replay`]); persist the entries it returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    bank: AccountKey,
    /// User balances in µcredits (the mint is `issued`, escrows are in `escrows`).
    users: BTreeMap<AccountKey, u64>,
    issued: u64,
    escrows: BTreeMap<JobId, EscrowSlot>,
    /// Open escrows by expiry, for [`Ledger::expired_escrows`].
    open_by_expiry: BTreeSet<(u64, JobId)>,
    /// Settled record hash → the settle entry.
    settled: HashMap<Hash, u64>,
    transfers: HashMap<(AccountKey, u64), Seen>,
    grants: HashMap<AccountKey, Seen>,
    head: Hash,
    /// `time_ms` of the last entry (0 when empty): entry times never go back.
    last_time: u64,
    tree: MerkleTree,
    /// Asks whose signature already checked out: one job's settlements repeat the same few
    /// asks thousands of times.
    asks_checked: AskCache,
}

/// A bounded memo of signed asks whose signatures verified (BLAKE3 of the signed bytes and
/// the signature). Not state: two ledgers with different memos are equal.
#[derive(Clone, Debug, Default)]
struct AskCache(std::cell::RefCell<std::collections::HashSet<Hash>>);

/// Most asks remembered; the memo is cleared when full.
const ASK_CACHE: usize = 65_536;

impl PartialEq for AskCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for AskCache {}

impl AskCache {
    /// Whether the ask's signature is its provider's, checking each distinct ask once.
    fn verified(&self, a: &SignedAsk) -> bool {
        let mut h = blake3::Hasher::new();
        h.update(&a.ask.signing_bytes());
        h.update(&a.sig);
        let id = *h.finalize().as_bytes();
        if self.0.borrow().contains(&id) {
            return true;
        }
        if !a.verify() {
            return false;
        }
        let mut set = self.0.borrow_mut();
        if set.len() >= ASK_CACHE {
            set.clear();
        }
        set.insert(id);
        true
    }
}

impl Ledger {
    /// An empty ledger of the bank with key `bank`.
    pub fn new(bank: AccountKey) -> Self {
        Self {
            bank,
            users: BTreeMap::new(),
            issued: 0,
            escrows: BTreeMap::new(),
            open_by_expiry: BTreeSet::new(),
            settled: HashMap::new(),
            transfers: HashMap::new(),
            grants: HashMap::new(),
            head: [0; 32],
            last_time: 0,
            tree: MerkleTree::new(),
            asks_checked: AskCache::default(),
        }
    }

    /// The bank's key.
    pub fn bank(&self) -> AccountKey {
        self.bank
    }

    /// Checks a signed request against the rules and, if it passes, appends the entry it
    /// makes (seq = [`len`](Ledger::len), prev = [`head`](Ledger::head), time_ms = `now_ms`)
    /// to the in-memory state and returns it. A request already applied returns
    /// [`Applied::Duplicate`] and changes nothing; a refused one changes nothing either.
    ///
    /// Entry times never go back: a `now_ms` before the last entry's time (a clock stepped
    /// back) counts as that time, for the entry and for the expiry rule alike.
    pub fn apply(&mut self, req: &SignedRequest, now_ms: u64) -> Result<Applied, LedgerError> {
        let now_ms = now_ms.max(self.last_time);
        match self.plan(req, now_ms, Sigs::Check)? {
            Plan::Duplicate(seq) => Ok(Applied::Duplicate { seq }),
            Plan::Append(entry, change) => {
                self.commit(&entry, change);
                Ok(Applied::New(*entry))
            }
        }
    }

    /// Rebuilds state from a stored entry (loading, `wallet verify`): checks its seq, its
    /// prev, that its time is not before the previous entry's, the authorizer's signature
    /// over `auth`, and that `auth` is a request for this bank that, applied to the current
    /// state at the entry's `time_ms`, makes exactly this entry. The error names the seq and
    /// why.
    pub fn replay(&mut self, entry: &Entry) -> Result<(), ReplayError> {
        self.replay_with(entry, Sigs::Check)
    }

    /// [`Ledger::replay`] without the ed25519 checks (the request's, the record's and the
    /// asks'): for the bank reloading its own store, whose rows the hash chain and its signed
    /// checkpoints already vouch for. Everything else is checked.
    pub fn replay_trusted(&mut self, entry: &Entry) -> Result<(), ReplayError> {
        self.replay_with(entry, Sigs::Trust)
    }

    fn replay_with(&mut self, entry: &Entry, sigs: Sigs) -> Result<(), ReplayError> {
        let seq = self.len();
        let fail = |fault| Err(ReplayError { seq, fault });
        if entry.seq != seq {
            return Err(ReplayError {
                seq: entry.seq,
                fault: ReplayFault::OutOfOrder { expected: seq },
            });
        }
        if entry.prev != self.head {
            return fail(match seq.checked_sub(1) {
                None => ReplayFault::FirstPrevNotZero,
                Some(before) => ReplayFault::ChainBroken(before),
            });
        }
        if entry.time_ms < self.last_time {
            return fail(ReplayFault::TimeWentBack {
                time_ms: entry.time_ms,
                previous_ms: self.last_time,
            });
        }
        let req = SignedRequest {
            authorizer: entry.authorizer,
            msg: entry.auth.clone(),
            sig: entry.sig.clone(),
        };
        let (made, change) = match self.plan(&req, entry.time_ms, sigs) {
            Err(e) => return fail(ReplayFault::Refused(e)),
            Ok(Plan::Duplicate(original)) => return fail(ReplayFault::Duplicate(original)),
            Ok(Plan::Append(made, change)) => (made, change),
        };
        let mismatch = [
            ("kind", made.kind == entry.kind),
            ("debit account", made.debit == entry.debit),
            ("credit account", made.credit == entry.credit),
            ("amount", made.amount == entry.amount),
            ("job", made.job == entry.job),
            ("task", made.task == entry.task),
            ("record", made.record == entry.record),
            ("memo", made.memo == entry.memo),
        ]
        .into_iter()
        .find(|(_, same)| !same);
        if let Some((field, _)) = mismatch {
            return fail(ReplayFault::Mismatch(field));
        }
        // Every other field was copied from the entry itself.
        debug_assert_eq!(*made, *entry);
        self.commit(entry, change);
        Ok(())
    }

    /// Balance of an account: a user's wallet, what is left in a job's escrow (zero for
    /// unknown ones). The mint has no balance here; see [`Ledger::issued`].
    pub fn balance(&self, account: &Account) -> Credits {
        Credits(match account {
            Account::Mint => 0,
            Account::User(k) => self.user(k),
            Account::Escrow(j) => self.escrows.get(j).map_or(0, |s| s.state.left.0),
        })
    }

    /// Credits granted so far: what the mint put into circulation.
    pub fn issued(&self) -> Credits {
        Credits(self.issued)
    }

    /// Every user wallet and escrow the ledger knows, in [`Account`] order (users, then
    /// escrows), with its balance; zero balances included, the mint left out.
    pub fn accounts(&self) -> impl Iterator<Item = (Account, Credits)> + '_ {
        let users = self
            .users
            .iter()
            .map(|(k, b)| (Account::User(*k), Credits(*b)));
        let escrows = self
            .escrows
            .iter()
            .map(|(j, s)| (Account::Escrow(*j), s.state.left));
        users.chain(escrows)
    }

    /// Whether the balances of all users and escrows add up to what was issued (always true
    /// of a ledger built by these rules).
    pub fn conserved(&self) -> bool {
        self.held() == u128::from(self.issued)
    }

    /// Sum of all user and escrow balances, in µcredits.
    pub fn held(&self) -> u128 {
        self.accounts().map(|(_, c)| u128::from(c.0)).sum()
    }

    /// The escrow of `job`, if one was opened.
    pub fn escrow(&self, job: &JobId) -> Option<&EscrowState> {
        self.escrows.get(job).map(|s| &s.state)
    }

    /// Escrows still open whose expiry has come (`now_ms >= expires_ms`): the bank may refund
    /// them now. Ordered by expiry.
    pub fn expired_escrows(&self, now_ms: u64) -> Vec<JobId> {
        self.open_by_expiry
            .range(..=(now_ms, JobId([0xff; 16])))
            .map(|(_, j)| *j)
            .collect()
    }

    /// Whether `key` received its grant.
    pub fn is_granted(&self, key: &AccountKey) -> bool {
        self.grants.contains_key(key)
    }

    /// Whether the result record with this hash (BLAKE3 of its signed bytes) was paid.
    pub fn is_settled(&self, record_hash: &Hash) -> bool {
        self.settled.contains_key(record_hash)
    }

    /// The seq of the entry that paid the record with this hash.
    pub fn settled_by(&self, record_hash: &Hash) -> Option<u64> {
        self.settled.get(record_hash).copied()
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hash of the last entry; zeros when empty.
    pub fn head(&self) -> Hash {
        self.head
    }

    /// `time_ms` of the last entry (0 when empty); the next entry's is at least this.
    pub fn last_time_ms(&self) -> u64 {
        self.last_time
    }

    /// Merkle root over all entries.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The Merkle tree of the entries (for proofs and past roots).
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// An unsigned checkpoint of the current state (`sig` empty): the caller signs
    /// [`Checkpoint::signing_bytes`] with the bank's key.
    pub fn checkpoint(&self, now_ms: u64) -> Checkpoint {
        Checkpoint {
            size: self.len(),
            root: self.root(),
            head: self.head,
            time_ms: now_ms,
            bank: self.bank,
            sig: Vec::new(),
        }
    }

    fn user(&self, k: &AccountKey) -> u64 {
        self.users.get(k).copied().unwrap_or(0)
    }

    /// A user's balance after receiving `amount`.
    fn credited(&self, k: &AccountKey, amount: u64) -> Result<u64, LedgerError> {
        self.user(k)
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)
    }

    /// A user's balance after paying `amount`.
    fn debited(&self, k: &AccountKey, amount: u64, job: Option<JobId>) -> Result<u64, LedgerError> {
        let balance = self.user(k);
        balance
            .checked_sub(amount)
            .ok_or(LedgerError::InsufficientBalance {
                need: Credits(amount),
                balance: Credits(balance),
                job,
            })
    }

    /// Every check of a request; the entry and the state change it makes, or why not.
    fn plan(&self, req: &SignedRequest, now_ms: u64, sigs: Sigs) -> Result<Plan, LedgerError> {
        if req.msg.len() > MAX_AUTH {
            return Err(DecodeError::TooLarge(req.msg.len()).into());
        }
        if sigs == Sigs::Check && !req.signature_ok() {
            return Err(LedgerError::BadSignature);
        }
        let (bank, request) = Request::from_msg(&req.msg)?;
        if bank != self.bank {
            return Err(LedgerError::WrongBank(bank));
        }
        let signer = req.authorizer;
        let seen = Seen {
            seq: self.len(),
            msg: blake(&req.msg),
        };
        let entry = |kind, debit, credit, amount, memo: String| Entry {
            seq: self.len(),
            prev: self.head,
            time_ms: now_ms,
            kind,
            debit,
            credit,
            amount: Credits(amount),
            job: None,
            task: None,
            record: None,
            memo: clip(memo),
            authorizer: signer,
            auth: req.msg.clone(),
            sig: req.sig.clone(),
        };
        let not_payer = |payer| LedgerError::NotPayer { signer, payer };
        let append = |e: Entry, c| Ok(Plan::Append(Box::new(e), c));

        match request {
            Request::Grant { to, amount } => {
                if signer != self.bank {
                    return Err(LedgerError::NotBank);
                }
                if let Some(before) = self.grants.get(&to) {
                    let conflict = LedgerError::AlreadyGranted(to);
                    return Plan::again(&before.msg, before.seq, &seen.msg, conflict);
                }
                if amount.0 == 0 {
                    return Err(LedgerError::ZeroAmount);
                }
                let issued = self
                    .issued
                    .checked_add(amount.0)
                    .ok_or(LedgerError::Overflow)?;
                let balance = self.credited(&to, amount.0)?;
                append(
                    entry(
                        Kind::Grant,
                        Account::Mint,
                        Account::User(to),
                        amount.0,
                        "grant".into(),
                    ),
                    Change::Grant {
                        to,
                        balance,
                        issued,
                        seen,
                    },
                )
            }

            Request::Transfer {
                from,
                to,
                amount,
                nonce,
            } => {
                if signer != from {
                    return Err(not_payer(from));
                }
                if let Some(before) = self.transfers.get(&(from, nonce)) {
                    let conflict = LedgerError::NonceReused { from, nonce };
                    return Plan::again(&before.msg, before.seq, &seen.msg, conflict);
                }
                if from == to {
                    return Err(LedgerError::SelfTransfer);
                }
                if amount.0 == 0 {
                    return Err(LedgerError::ZeroAmount);
                }
                let from_balance = self.debited(&from, amount.0, None)?;
                let to_balance = self.credited(&to, amount.0)?;
                append(
                    entry(
                        Kind::Transfer,
                        Account::User(from),
                        Account::User(to),
                        amount.0,
                        format!("transfer {nonce}"),
                    ),
                    Change::Transfer {
                        from,
                        from_balance,
                        to,
                        to_balance,
                        nonce,
                        seen,
                    },
                )
            }

            Request::OpenEscrow {
                job,
                payer,
                amount,
                max_price,
                fuel_limit,
                expires_ms,
            } => {
                if signer != payer {
                    return Err(not_payer(payer));
                }
                if let Some(slot) = self.escrows.get(&job) {
                    let conflict = LedgerError::EscrowExists(job);
                    return Plan::again(&slot.open_msg, slot.open_seq, &seen.msg, conflict);
                }
                if amount.0 == 0 {
                    return Err(LedgerError::ZeroAmount);
                }
                let payer_balance = self.debited(&payer, amount.0, Some(job))?;
                let slot = EscrowSlot {
                    state: EscrowState {
                        payer,
                        opened: amount,
                        left: amount,
                        paid: Credits::ZERO,
                        max_price,
                        fuel_limit,
                        expires_ms,
                        closed: false,
                        settled: 0,
                    },
                    open_seq: seen.seq,
                    open_msg: seen.msg,
                    close_seq: None,
                };
                append(
                    Entry {
                        job: Some(job),
                        ..entry(
                            Kind::Escrow,
                            Account::User(payer),
                            Account::Escrow(job),
                            amount.0,
                            format!("job {}, at most {max_price} per giga-fuel", job.short()),
                        )
                    },
                    Change::Open {
                        payer,
                        payer_balance,
                        job,
                        slot,
                    },
                )
            }

            Request::Settle {
                job,
                provider,
                record,
                price,
                winner,
                second,
            } => {
                let slot = self
                    .escrows
                    .get(&job)
                    .ok_or(LedgerError::NoSuchEscrow(job))?;
                let esc = &slot.state;
                if signer != esc.payer {
                    return Err(not_payer(esc.payer));
                }
                let parsed = parse_record(&record, job)?;
                let record_hash = blake(&record.bytes);
                if let Some(seq) = self.settled.get(&record_hash) {
                    return Ok(Plan::Duplicate(*seq));
                }
                if esc.closed {
                    return Err(LedgerError::EscrowClosed(job));
                }
                if sigs == Sigs::Check && !verify_ed25519(&provider.0, &record.bytes, &record.sig) {
                    return Err(LedgerError::BadRecord(format!(
                        "record is not signed by the provider {}",
                        short(&provider)
                    )));
                }
                check_asks(
                    job,
                    &provider,
                    price,
                    esc.max_price,
                    &winner,
                    second.as_ref(),
                    (sigs == Sigs::Check).then_some(&self.asks_checked),
                )?;
                if parsed.fuel_used > esc.fuel_limit {
                    return Err(LedgerError::BadRecord(format!(
                        "record claims {} fuel, above the job's limit of {}",
                        parsed.fuel_used, esc.fuel_limit
                    )));
                }
                let need = price.cost(parsed.fuel_used);
                let left = esc
                    .left
                    .checked_sub(need)
                    .ok_or(LedgerError::EscrowExhausted {
                        need,
                        left: esc.left,
                    })?;
                let escrow = EscrowState {
                    left,
                    paid: esc.paid.checked_add(need).ok_or(LedgerError::Overflow)?,
                    settled: esc.settled.checked_add(1).ok_or(LedgerError::Overflow)?,
                    ..esc.clone()
                };
                let provider_balance = self.credited(&provider, need.0)?;
                append(
                    Entry {
                        job: Some(job),
                        task: Some(parsed.task),
                        record: Some(record_hash),
                        ..entry(
                            Kind::Settle,
                            Account::Escrow(job),
                            Account::User(provider),
                            need.0,
                            format!(
                                "job {} task {} attempt {}: {} fuel at {price} per giga-fuel",
                                job.short(),
                                parsed.task,
                                parsed.attempt,
                                parsed.fuel_used
                            ),
                        )
                    },
                    Change::Settle {
                        job,
                        escrow,
                        provider,
                        provider_balance,
                        record: record_hash,
                    },
                )
            }

            Request::Refund { job } => {
                let slot = self
                    .escrows
                    .get(&job)
                    .ok_or(LedgerError::NoSuchEscrow(job))?;
                let esc = &slot.state;
                let by_payer = signer == esc.payer;
                let expired_by_bank = signer == self.bank && now_ms >= esc.expires_ms;
                if !(by_payer || expired_by_bank) {
                    return Err(not_payer(esc.payer));
                }
                if let Some(seq) = slot.close_seq {
                    return Ok(Plan::Duplicate(seq));
                }
                let payer = esc.payer;
                let payer_balance = self.credited(&payer, esc.left.0)?;
                let escrow = EscrowState {
                    left: Credits::ZERO,
                    closed: true,
                    ..esc.clone()
                };
                let why = if by_payer { "refund" } else { "expired" };
                append(
                    Entry {
                        job: Some(job),
                        ..entry(
                            Kind::Refund,
                            Account::Escrow(job),
                            Account::User(payer),
                            esc.left.0,
                            format!("job {} {why}", job.short()),
                        )
                    },
                    Change::Refund {
                        job,
                        escrow,
                        payer,
                        payer_balance,
                    },
                )
            }
        }
    }

    /// Applies a planned change and appends its entry. Nothing here can fail.
    fn commit(&mut self, entry: &Entry, change: Change) {
        match change {
            Change::Grant {
                to,
                balance,
                issued,
                seen,
            } => {
                self.users.insert(to, balance);
                self.issued = issued;
                self.grants.insert(to, seen);
            }
            Change::Transfer {
                from,
                from_balance,
                to,
                to_balance,
                nonce,
                seen,
            } => {
                self.users.insert(from, from_balance);
                self.users.insert(to, to_balance);
                self.transfers.insert((from, nonce), seen);
            }
            Change::Open {
                payer,
                payer_balance,
                job,
                slot,
            } => {
                self.users.insert(payer, payer_balance);
                self.open_by_expiry.insert((slot.state.expires_ms, job));
                self.escrows.insert(job, slot);
            }
            Change::Settle {
                job,
                escrow,
                provider,
                provider_balance,
                record,
            } => {
                self.users.insert(provider, provider_balance);
                if let Some(slot) = self.escrows.get_mut(&job) {
                    slot.state = escrow;
                }
                self.settled.insert(record, entry.seq);
            }
            Change::Refund {
                job,
                escrow,
                payer,
                payer_balance,
            } => {
                self.users.insert(payer, payer_balance);
                self.open_by_expiry.remove(&(escrow.expires_ms, job));
                if let Some(slot) = self.escrows.get_mut(&job) {
                    slot.state = escrow;
                    slot.close_seq = Some(entry.seq);
                }
            }
        }
        let bytes = entry.to_bytes();
        self.last_time = entry.time_ms;
        self.head = blake(&bytes);
        self.tree.push(leaf_hash(&bytes));
    }
}

/// Cuts a memo to [`MAX_MEMO`] bytes at a character boundary.
fn clip(mut memo: String) -> String {
    if memo.len() > MAX_MEMO {
        let mut end = MAX_MEMO;
        while !memo.is_char_boundary(end) {
            end -= 1;
        }
        memo.truncate(end);
    }
    memo
}

/// Reads a settled record and checks it is for `job`.
fn parse_record(record: &SignedRecord, job: JobId) -> Result<ResultRecord, LedgerError> {
    let parsed = ResultRecord::from_signing_bytes(&record.bytes).ok_or_else(|| {
        LedgerError::BadRecord(format!(
            "{} bytes are not a signed result record",
            record.bytes.len()
        ))
    })?;
    if parsed.job != job {
        return Err(LedgerError::BadRecord(format!(
            "record is for job {}, not job {}",
            parsed.job.short(),
            job.short()
        )));
    }
    Ok(parsed)
}

/// The reverse Vickrey rule at settlement: the winner's own ask is at most the price, and
/// the price is the second-lowest ask (another provider's) or, for a lone bidder, the
/// escrow's max price.
fn check_asks(
    job: JobId,
    provider: &AccountKey,
    price: Price,
    max_price: Price,
    winner: &SignedAsk,
    second: Option<&SignedAsk>,
    // `None`: signatures are trusted (the bank's own reload).
    check: Option<&AskCache>,
) -> Result<(), LedgerError> {
    let bad = |s: String| Err(LedgerError::BadAsk(s));
    let w = &winner.ask;
    if check.is_some_and(|c| !c.verified(winner)) {
        return bad("winner's ask is not signed by its provider".into());
    }
    if w.job != job {
        return bad(format!(
            "winner's ask is for job {}, not job {}",
            w.job.short(),
            job.short()
        ));
    }
    if w.provider != provider.0 {
        return bad(format!(
            "winner's ask is from provider {}, not the paid provider {}",
            hex(&w.provider[..8]),
            short(provider)
        ));
    }
    if price < w.price {
        return bad(format!(
            "price {price} is below the winner's ask {}",
            w.price
        ));
    }
    if price > max_price {
        return bad(format!(
            "price {price} is above the escrow's max price {max_price}"
        ));
    }
    match second {
        Some(second) => {
            let s = &second.ask;
            if check.is_some_and(|c| !c.verified(second)) {
                return bad("second ask is not signed by its provider".into());
            }
            if s.job != job {
                return bad(format!(
                    "second ask is for job {}, not job {}",
                    s.job.short(),
                    job.short()
                ));
            }
            if s.provider == w.provider {
                return bad(
                    "second ask is from the winner itself; it must be another provider's".into(),
                );
            }
            if s.price < w.price {
                return bad(format!(
                    "second ask {} is below the winner's ask {}",
                    s.price, w.price
                ));
            }
            if price != s.price {
                return bad(format!("price {price} is not the second ask's {}", s.price));
            }
        }
        None => {
            if price != max_price {
                return bad(format!(
                    "a lone bidder is paid the escrow's max price {max_price}, not {price}"
                ));
            }
        }
    }
    Ok(())
}

/// Why a stored entry does not replay.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("entry {seq}: {fault}")]
pub struct ReplayError {
    /// The entry's seq.
    pub seq: u64,
    pub fault: ReplayFault,
}

/// What is wrong with a replayed entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayFault {
    /// Entries must come in seq order from 0.
    #[error("out of order: expected entry {expected}")]
    OutOfOrder { expected: u64 },
    /// The first entry's prev must be zeros.
    #[error("hash chain broken: prev of the first entry is not zero")]
    FirstPrevNotZero,
    /// prev is not the hash of the entry before (its seq).
    #[error("hash chain broken: prev does not match entry {0}")]
    ChainBroken(u64),
    /// Its time is before the previous entry's.
    #[error("time goes back: {time_ms} ms is before the previous entry's {previous_ms} ms")]
    TimeWentBack { time_ms: u64, previous_ms: u64 },
    /// Its request is refused by the rules.
    #[error("{0}")]
    Refused(LedgerError),
    /// Its request was already applied by an earlier entry (its seq).
    #[error("repeats the request of entry {0}")]
    Duplicate(u64),
    /// Its request makes a different entry: this field differs.
    #[error("{0} does not match what its request makes")]
    Mismatch(&'static str),
}
