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
//!
//! This file holds the [`Ledger`]'s state, [`Ledger::apply`] and the read-only queries;
//! `plan` the checks every request gets, the dispatch and the commit; `wallet` and
//! `escrow` and `storage` each request kind's rules; `asks` the auction check at settlement; `replay`
//! the replay of stored entries; `error` why a request is refused.

mod asks;
mod error;
mod escrow;
pub use escrow::MAX_SPEND_ESCROW_MS;
mod plan;
mod replay;
mod snapshot;
mod storage;
mod wallet;

pub use asks::{ASK_GRACE_MS, HOSTILE_RULES_SINCE_MS};
pub use error::LedgerError;
pub use plan::precheck;
pub use replay::{ReplayError, ReplayFault};
pub use snapshot::{SNAPSHOT_VERSION, SnapshotError};

use crate::entry::{Account, AccountKey, Entry, Hash};
use crate::merkle::MerkleTree;
use crate::request::SignedRequest;
use crate::tree_head::TreeHead;
use asks::AskCache;
use naac_types::{Credits, JobId, Price, hex};
use plan::{Plan, Seen, Sigs};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// First 16 hex characters of a key, for messages.
fn short(k: &AccountKey) -> String {
    hex(&k.0[..8])
}

/// BLAKE3 of some bytes (a request message, a record).
fn blake(b: &[u8]) -> Hash {
    *blake3::hash(b).as_bytes()
}

/// One run of one provider: job, task, attempt, provider.
type Run = (JobId, u32, u32, AccountKey);

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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EscrowState {
    /// Who funded it; the only one who may settle from it (unless `controller`).
    pub payer: AccountKey,
    /// Opened with a spend token: its holder, who signs for the escrow instead of the payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<AccountKey>,
    /// Opened with a spend token: its grant (the revocation id of its authority block), whose
    /// running total its top-ups count toward.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub grant: Option<Vec<u8>>,
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
    /// Number of result records paid from it (settled or claimed).
    pub settled: u32,
    /// How long providers may claim delivered results before what is left returns (0: no
    /// claims).
    pub claim_window_ms: u64,
    /// Its payer closed it: no more top-ups; what is left returns at `expires_ms`.
    pub closing: bool,
    /// Held for providers' committed orders (part of `left`): only paying a provider, or
    /// rejecting one of its runs, frees its share.
    pub reserved: Credits,
}

/// `Option<Vec<u8>>` as a byte string.
mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(serde_bytes::Bytes::new(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<serde_bytes::ByteBuf>::deserialize(d)?.map(|b| b.into_vec()))
    }
}

impl EscrowState {
    /// Who signs for the escrow: its controller, else its payer.
    pub fn signer(&self) -> AccountKey {
        self.controller.unwrap_or(self.payer)
    }

    /// When providers may start claiming (Unix milliseconds): at once when closing, else the
    /// escrow's last claim window before it expires. `None`: it takes no claims.
    pub fn claims_open_ms(&self) -> Option<u64> {
        if self.claim_window_ms == 0 {
            return None;
        }
        if self.closing {
            return Some(0);
        }
        Some(self.expires_ms.saturating_sub(self.claim_window_ms))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct EscrowSlot {
    state: EscrowState,
    /// Entry that opened it and the hash of its request (to tell a retry from a clash).
    open_seq: u64,
    open_msg: Hash,
    /// Entry that closed it.
    close_seq: Option<u64>,
    /// Entry in which its payer started closing it (an escrow with a claim window).
    closing_seq: Option<u64>,
}

/// The ledger's state and rules; no IO. Feed it requests ([`Ledger::apply`]) or stored
/// entries ([`Ledger::replay`]); persist the entries it returns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    bank: AccountKey,
    /// User balances in µcredits (the mint is `issued`, escrows are in `escrows`).
    users: BTreeMap<AccountKey, u64>,
    issued: u64,
    escrows: BTreeMap<JobId, EscrowSlot>,
    /// Open escrows by expiry, for [`Ledger::expired_escrows`].
    open_by_expiry: BTreeSet<(u64, JobId)>,
    /// Settled (or claimed) record hash → the entry that paid it.
    settled: HashMap<Hash, u64>,
    /// Runs (job, task, attempt, provider) paid, settled or claimed → the entry that paid
    /// the first.
    runs_paid: HashMap<Run, u64>,
    /// Runs their payer rejected → the reject entry.
    rejected: HashMap<Run, u64>,
    /// What each provider's committed orders hold in each escrow (µcredits).
    reservations: HashMap<(JobId, AccountKey), u64>,
    /// Committed orders, by the hash of their signed bytes → the commit entry.
    commits: HashMap<Hash, u64>,
    transfers: HashMap<(AccountKey, u64), Seen>,
    /// Top-ups by job and nonce.
    top_ups: HashMap<(JobId, u64), Seen>,
    /// Storage periods paid, by job, host and period.
    store_paid: HashMap<(JobId, AccountKey, u32), Seen>,
    grants: HashMap<AccountKey, Seen>,
    /// µcredits escrowed with each spend grant so far (its caps count these), by grant id.
    #[serde(default)]
    spent: BTreeMap<Vec<u8>, u64>,
    /// Provider keys the operator vouched for (standing), with their entry.
    registered: HashMap<AccountKey, Seen>,
    head: Hash,
    /// `time_ms` of the last entry (0 when empty): entry times never go back.
    last_time: u64,
    /// In a snapshot: its leaves, as bytes (the rest is made again from them).
    #[serde(with = "snapshot::leaves")]
    tree: MerkleTree,
    /// Asks whose signature already checked out: one job's settlements repeat the same few
    /// asks thousands of times.
    #[serde(skip)]
    asks_checked: AskCache,
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
            runs_paid: HashMap::new(),
            rejected: HashMap::new(),
            reservations: HashMap::new(),
            commits: HashMap::new(),
            transfers: HashMap::new(),
            top_ups: HashMap::new(),
            store_paid: HashMap::new(),
            registered: HashMap::new(),
            grants: HashMap::new(),
            spent: BTreeMap::new(),
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

    /// Whether the operator registered `key` as a provider: its asks may set another
    /// provider's price at settlement.
    pub fn has_standing(&self, key: &AccountKey) -> bool {
        self.registered.contains_key(key)
    }

    /// Whether the result record with this hash (BLAKE3 of its signed bytes) was paid.
    pub fn is_settled(&self, record_hash: &Hash) -> bool {
        self.settled.contains_key(record_hash)
    }

    /// The seq of the entry in which the payer of `job` rejected `provider`'s run (`task`,
    /// `attempt`).
    pub fn rejected_by(
        &self,
        job: &JobId,
        (task, attempt): (u32, u32),
        provider: &AccountKey,
    ) -> Option<u64> {
        self.rejected
            .get(&(*job, task, attempt, *provider))
            .copied()
    }

    /// The seq of the first entry that paid `provider` for run (`task`, `attempt`) of `job`.
    pub fn run_paid_by(
        &self,
        job: &JobId,
        (task, attempt): (u32, u32),
        provider: &AccountKey,
    ) -> Option<u64> {
        self.runs_paid
            .get(&(*job, task, attempt, *provider))
            .copied()
    }

    /// What `provider`'s committed orders still hold in the escrow of `job`.
    pub fn reserved_for(&self, job: &JobId, provider: &AccountKey) -> Credits {
        Credits(
            self.reservations
                .get(&(*job, *provider))
                .copied()
                .unwrap_or(0),
        )
    }

    /// The seq of the entry that committed the order with these signed bytes' hash.
    pub fn committed_by(&self, order_hash: &Hash) -> Option<u64> {
        self.commits.get(order_hash).copied()
    }

    /// The seq of the entry that paid `provider` for storage period `period` of `job`.
    pub fn store_paid_by(&self, job: &JobId, provider: &AccountKey, period: u32) -> Option<u64> {
        self.store_paid
            .get(&(*job, *provider, period))
            .map(|s| s.seq)
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
    /// [`TreeHead::signing_bytes`] with the bank's key.
    pub fn checkpoint(&self, now_ms: u64) -> TreeHead {
        TreeHead {
            size: self.len(),
            root: self.root(),
            head: self.head,
            time_ms: now_ms,
            bank: self.bank,
            sig: Vec::new(),
        }
    }

    /// A user's balance in µcredits (zero for unknown ones).
    fn user(&self, k: &AccountKey) -> u64 {
        self.users.get(k).copied().unwrap_or(0)
    }
}
