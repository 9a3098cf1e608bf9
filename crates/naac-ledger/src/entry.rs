//! Ledger entries: accounts, the fixed byte layout that is hashed and chained, and the
//! authorization each entry carries.
//!
//! Every entry moves `amount` from its `debit` account to its `credit` account (double
//! entry: the two sides are one row, so they cannot disagree). It names why (`kind`, job,
//! task, result record hash, memo) and carries the exact request bytes its authorizer
//! signed with the signature, so anyone holding the entries can check who allowed each
//! movement without trusting the bank. Entries are chained: `prev` is the hash of the entry
//! before, and [`Entry::hash`] covers every field, so changing any stored column of any row
//! changes every later hash and the Merkle root the bank signed.

use naac_types::{Credits, JobId, unhex};
use serde::{Deserialize, Serialize};
use std::fmt;

/// BLAKE3 output.
pub type Hash = [u8; 32];

const ENTRY_DOMAIN: &str = "naac ledger entry v1";
/// Longest memo, in bytes.
pub const MAX_MEMO: usize = 200;
/// Longest authorization message, in bytes (a settlement with its record and two asks is
/// well under 1 KiB).
pub const MAX_AUTH: usize = 4096;

/// An ed25519 public key: a person's or a node's account (the key its peer id embeds).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountKey(pub [u8; 32]);

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountKey({})", naac_types::hex(&self.0[..8]))
    }
}

/// Where credits sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Account {
    /// The bank's issuance: grants are debited here. Its "balance" is minus what was issued.
    Mint,
    /// A person's or a provider's wallet.
    User(AccountKey),
    /// The escrow of one job.
    Escrow(JobId),
}

impl Account {
    /// Text form used in SQL columns and logs: `mint`, `user:<64 hex>`, `escrow:<32 hex>`.
    pub fn to_text(&self) -> String {
        match self {
            Account::Mint => "mint".into(),
            Account::User(k) => format!("user:{}", naac_types::hex(&k.0)),
            Account::Escrow(j) => format!("escrow:{}", naac_types::hex(&j.0)),
        }
    }

    /// Parses [`Account::to_text`].
    pub fn from_text(s: &str) -> Option<Account> {
        if s == "mint" {
            return Some(Account::Mint);
        }
        if let Some(h) = s.strip_prefix("user:") {
            return unhex::<32>(h).map(|k| Account::User(AccountKey(k)));
        }
        if let Some(h) = s.strip_prefix("escrow:") {
            return unhex::<16>(h).map(|j| Account::Escrow(JobId(j)));
        }
        None
    }

    fn write(&self, b: &mut Vec<u8>) {
        match self {
            Account::Mint => b.push(0),
            Account::User(k) => {
                b.push(1);
                b.extend_from_slice(&k.0);
            }
            Account::Escrow(j) => {
                b.push(2);
                b.extend_from_slice(&j.0);
            }
        }
    }
}

/// Why credits moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Mint → a new account (the bank's configured grant).
    Grant,
    /// Account → account.
    Transfer,
    /// Payer → a job's escrow.
    Escrow,
    /// Escrow → provider, for one verified result.
    Settle,
    /// Escrow → payer: what is left when the job ends, is cancelled or the escrow expires.
    Refund,
    /// Nothing moves (mint → provider, 0): the operator vouches for a provider key, which
    /// gives it standing — its asks may set another provider's price.
    Register,
    /// Escrow → provider, for a delivered result the payer did not pay: the provider's claim
    /// with the payer's signed order.
    Claim,
    /// Nothing moves (escrow → payer, 0): the payer refuses to pay for one result record.
    Reject,
    /// Escrow → payer, what no provider's reservation holds: the payer closes an escrow
    /// with a claim window; the reserved rest returns when the window ends.
    Close,
    /// Nothing moves (escrow → provider, 0): the payer reserves an order's worst case in
    /// the escrow for its provider.
    Commit,
    /// Escrow → storage host, for one period in which its shards passed their audits.
    Storage,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Grant => 1,
            Kind::Transfer => 2,
            Kind::Escrow => 3,
            Kind::Settle => 4,
            Kind::Refund => 5,
            Kind::Register => 6,
            Kind::Claim => 7,
            Kind::Reject => 8,
            Kind::Close => 9,
            Kind::Commit => 10,
            Kind::Storage => 11,
        }
    }

    pub fn from_code(c: u8) -> Option<Kind> {
        Some(match c {
            1 => Kind::Grant,
            2 => Kind::Transfer,
            3 => Kind::Escrow,
            4 => Kind::Settle,
            5 => Kind::Refund,
            6 => Kind::Register,
            7 => Kind::Claim,
            8 => Kind::Reject,
            9 => Kind::Close,
            10 => Kind::Commit,
            11 => Kind::Storage,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Grant => "grant",
            Kind::Transfer => "transfer",
            Kind::Escrow => "escrow",
            Kind::Settle => "settle",
            Kind::Refund => "refund",
            Kind::Register => "register",
            Kind::Claim => "claim",
            Kind::Reject => "reject",
            Kind::Close => "close",
            Kind::Commit => "commit",
            Kind::Storage => "storage",
        }
    }
}

/// One appended movement of credits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the ledger, from 0.
    pub seq: u64,
    /// Hash of entry `seq - 1`; all zeros for the first.
    pub prev: Hash,
    /// The bank's clock when it appended the entry (Unix milliseconds).
    pub time_ms: u64,
    pub kind: Kind,
    /// Credits leave this account...
    pub debit: Account,
    /// ...and arrive here.
    pub credit: Account,
    pub amount: Credits,
    /// The job (escrow, settle, refund).
    pub job: Option<JobId>,
    /// The task (settle).
    pub task: Option<u32>,
    /// The result record's hash (settle): the idempotency key of a payment.
    pub record: Option<Hash>,
    /// Free text, at most [`MAX_MEMO`] bytes.
    pub memo: String,
    /// Who authorized it: the payer, or the bank for grants and expiry refunds.
    pub authorizer: AccountKey,
    /// The exact request bytes the authorizer signed (at most [`MAX_AUTH`]).
    #[serde(with = "serde_bytes")]
    pub auth: Vec<u8>,
    /// The authorizer's ed25519 signature over `auth`.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl Entry {
    /// The fixed byte layout that is hashed and is the Merkle leaf: every field, lengths
    /// prefixed, integers little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256 + self.auth.len() + self.memo.len());
        b.extend_from_slice(ENTRY_DOMAIN.as_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.prev);
        b.extend_from_slice(&self.time_ms.to_le_bytes());
        b.push(self.kind.code());
        self.debit.write(&mut b);
        self.credit.write(&mut b);
        b.extend_from_slice(&self.amount.0.to_le_bytes());
        match &self.job {
            None => b.push(0),
            Some(j) => {
                b.push(1);
                b.extend_from_slice(&j.0);
            }
        }
        match self.task {
            None => b.push(0),
            Some(t) => {
                b.push(1);
                b.extend_from_slice(&t.to_le_bytes());
            }
        }
        match &self.record {
            None => b.push(0),
            Some(r) => {
                b.push(1);
                b.extend_from_slice(r);
            }
        }
        b.extend_from_slice(&(self.memo.len() as u32).to_le_bytes());
        b.extend_from_slice(self.memo.as_bytes());
        b.extend_from_slice(&self.authorizer.0);
        b.extend_from_slice(&(self.auth.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.auth);
        b.extend_from_slice(&(self.sig.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.sig);
        b
    }

    /// BLAKE3 of [`Entry::to_bytes`]: what the next entry's `prev` names.
    pub fn hash(&self) -> Hash {
        *blake3::hash(&self.to_bytes()).as_bytes()
    }
}
