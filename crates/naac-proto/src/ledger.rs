//! Wire counterparts of the bank's ledger values (`naac-ledger`), as [`BankRequest`] and
//! [`BankResponse`] carry them: plain data with the same serde shape as the ledger's own
//! types, so the bytes on the wire are the ledger's CBOR. No rules, hashing or signature
//! checks here; `naac-bank` converts to and from the ledger's types at the edge.
//!
//! [`BankRequest`]: crate::BankRequest
//! [`BankResponse`]: crate::BankResponse

use naac_types::{Credits, JobId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// BLAKE3 output.
pub type Hash = [u8; 32];

/// An account's ed25519 public key.
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
    Mint,
    User(AccountKey),
    Escrow(JobId),
}

/// Why credits moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Grant,
    Transfer,
    Escrow,
    Settle,
    Refund,
    Register,
    Claim,
    Reject,
    Close,
    Commit,
    Storage,
}

/// One ledger entry, every field as stored and hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub prev: Hash,
    pub time_ms: u64,
    pub kind: Kind,
    pub debit: Account,
    pub credit: Account,
    pub amount: Credits,
    pub job: Option<JobId>,
    pub task: Option<u32>,
    pub record: Option<Hash>,
    pub memo: String,
    pub authorizer: AccountKey,
    #[serde(with = "serde_bytes")]
    pub auth: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// The bank's signed tree head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
    pub head: Hash,
    pub time_ms: u64,
    pub bank: AccountKey,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// An RFC 6962 inclusion proof of one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub seq: u64,
    pub size: u64,
    pub leaf: Hash,
    pub path: Vec<Hash>,
}

/// A request to the bank with its authorizer's key and signature over `msg`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    pub authorizer: AccountKey,
    #[serde(with = "serde_bytes")]
    pub msg: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}
