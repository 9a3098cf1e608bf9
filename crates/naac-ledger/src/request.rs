//! Requests to the bank, as their authorizer signs them.
//!
//! The signed message is a domain string, the bank's key (so a request cannot be replayed
//! at another bank) and the request in CBOR. The bank stores the exact bytes and the
//! signature in the entry it appends ([`Entry::auth`](crate::Entry::auth)), so every entry
//! can be checked later against its authorizer's key alone.

use crate::entry::{AccountKey, Hash, MAX_AUTH};
use crate::merkle::{MerkleTree, leaf_hash, verify_inclusion};
use naac_market::SignedAsk;
use naac_types::{Credits, JobId, Price};
use serde::{Deserialize, Serialize};

const REQUEST_DOMAIN: &[u8] = b"naac bank request v1\0";
const ORDER_DOMAIN: &[u8] = b"naac work order v1\0";
/// Longest Merkle proof a claim may carry (a tree of up to 2^32 tasks).
pub const MAX_ORDER_PROOF: usize = 32;

/// A provider's signed result record: [`naac_types::ResultRecord::signing_bytes`] and the
/// provider's signature over them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// What an authorizer asks the bank to do.
// A settlement carries two asks and a record: the large variant is the common one, and
// requests are handled one at a time, so boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Mint → `to`; authorized by the bank itself, once per account.
    Grant { to: AccountKey, amount: Credits },
    /// `from` → `to`; authorized by `from`. `nonce` makes each transfer distinct (a replay
    /// of the same signed transfer is a duplicate).
    Transfer {
        from: AccountKey,
        to: AccountKey,
        amount: Credits,
        nonce: u64,
    },
    /// `payer` → escrow of `job`; authorized by `payer`. At most `max_price` per giga-fuel
    /// will be paid from it, for at most `fuel_limit` fuel per result (the job's per-task
    /// limit: a provider cannot be paid for more than a task may burn); after `expires_ms`
    /// the bank refunds what is left.
    OpenEscrow {
        job: JobId,
        payer: AccountKey,
        amount: Credits,
        max_price: Price,
        fuel_limit: u64,
        expires_ms: u64,
        /// How long providers may claim delivered results once the payer closes the escrow
        /// (and in the escrow's last such stretch before it expires); what is left returns
        /// to the payer only after it. 0: no claims, a refund is immediate.
        #[serde(default, skip_serializing_if = "is_zero")]
        claim_window_ms: u64,
        /// A spend token rooted in `payer`'s key (`naac token mint spend`): the request is
        /// then authorized by the token's holder, who controls the escrow (signs its
        /// settlements, orders, top-ups and refund) while `payer`'s wallet funds it, within
        /// the token's caps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spend: Option<String>,
    },
    /// `payer` → the open escrow of `job`, `amount` more; authorized by the escrow's payer.
    /// A job escrows the work in flight and tops it up as results are paid (a rolling
    /// escrow), instead of its worst case up front. `nonce` makes each top-up distinct (a
    /// replay of the same signed top-up is a duplicate). `expires_ms`, when later than the
    /// escrow's, moves its expiry out: a job still paying in keeps its escrow.
    TopUp {
        job: JobId,
        amount: Credits,
        nonce: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_ms: Option<u64>,
        /// For an escrow opened with a spend token: a token of the same grant, whose caps the
        /// top-up must stay within.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spend: Option<String>,
    },
    /// Escrow of `job` → `provider`, `price × fuel` (the record's claim, or less); authorized by the escrow's
    /// payer. `winner` is the provider's own signed ask for the job; `second` the
    /// second-lowest ask (another provider's), which set `price`; with no `second` the price
    /// is the escrow's `max_price` (a lone bidder).
    Settle {
        job: JobId,
        provider: AccountKey,
        record: SignedRecord,
        price: Price,
        winner: SignedAsk,
        second: Option<SignedAsk>,
        /// Fuel to pay for, when less than the record claims: the lowest claim among the
        /// fresh copies that agreed (fuel is deterministic, so a higher claim is a lie).
        /// `None`: the record's claim.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fuel: Option<u64>,
    },
    /// The bank's operator vouches for `provider`: from then on its signed asks may be the
    /// second price at settlement (keys are free, so an ask from a key nobody vouches for
    /// could be the requester's own invention). Authorized by the bank, once per key.
    Register { provider: AccountKey },
    /// Escrow of `job` → its payer, everything left; closes the escrow. Authorized by the
    /// payer, or by the bank once the escrow has expired. An escrow with a claim window is
    /// not refunded at once by its payer: the payer's refund starts its closing, and the
    /// bank refunds it when the window ends (the payer's refund again is a duplicate).
    Refund { job: JobId },
    /// Escrow of `job` → the provider who signs this, for a result it delivered and was not
    /// paid for: `record` (signed by the provider) is one of the runs the payer's `order`
    /// gave it (`proof` shows the record's task and attempt is leaf `index` of the order's
    /// task tree). Accepted only while the escrow is closing or in its last claim window;
    /// paid at the order's price for the record's fuel, unless the payer rejected the
    /// record first.
    Claim {
        job: JobId,
        order: SignedOrder,
        record: SignedRecord,
        index: u32,
        proof: Vec<Hash>,
    },
    /// The payer of `job`'s escrow refuses to pay for run (`task`, `attempt`), leaf `index`
    /// of its committed `order` (`proof`): its result was wrong, late, or never arrived.
    /// Moves nothing; the run's share of the order's reservation is freed, and a claim for
    /// that run is refused after it. Public: the ledger shows who rejected what.
    Reject {
        job: JobId,
        order: SignedOrder,
        task: u32,
        attempt: u32,
        index: u32,
        proof: Vec<Hash>,
    },
    /// The payer of `job`'s escrow (one with a claim window) commits to `order`: the worst
    /// case of each of its runs (`max_price × fuel_limit`) is reserved for its provider,
    /// and only paying that provider, or rejecting one of its runs, frees it. Moves nothing.
    /// A provider runs an order's work only once it sees the reservation, so a payer cannot
    /// empty the escrow (by a refund, or by paying keys of its own) below what it owes.
    Commit { job: JobId, order: SignedOrder },
    /// Escrow of `job` → `provider`, `amount`, for one storage period (`period`, counted
    /// from 0) in which the provider's shards of the data the escrow pays for passed their
    /// audits; authorized by the escrow's payer, at most once per provider and period. A
    /// period whose audits failed is not paid; the payer's refund returns the rest.
    StorePay {
        job: JobId,
        provider: AccountKey,
        period: u32,
        amount: Credits,
    },
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// What a payer promises a provider with one assignment: it pays `price` per giga-fuel for
/// each run in the tree `tasks_root` (of `tasks` leaves, [`order_leaf`]) from the escrow of
/// `job` at `bank`. The provider keeps it, and claims with it what the payer did not pay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub bank: AccountKey,
    pub job: JobId,
    pub provider: AccountKey,
    pub price: Price,
    #[serde(with = "serde_bytes")]
    pub tasks_root: Hash,
    pub tasks: u32,
}

/// An [`Order`] as its payer signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOrder {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// The leaf of one run (task, attempt) in an order's task tree.
pub fn order_leaf(task: u32, attempt: u32) -> Hash {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&task.to_le_bytes());
    b[4..].copy_from_slice(&attempt.to_le_bytes());
    leaf_hash(&b)
}

/// The task tree of these runs, in order.
pub fn order_tree(runs: &[(u32, u32)]) -> MerkleTree {
    let mut t = MerkleTree::new();
    for (task, attempt) in runs {
        t.push(order_leaf(*task, *attempt));
    }
    t
}

impl Order {
    /// The order for these runs (in the assignment's order).
    pub fn new(
        bank: AccountKey,
        job: JobId,
        provider: AccountKey,
        price: Price,
        runs: &[(u32, u32)],
    ) -> Order {
        Order {
            bank,
            job,
            provider,
            price,
            tasks_root: order_tree(runs).root(),
            tasks: runs.len() as u32,
        }
    }

    /// The bytes the payer signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut b = ORDER_DOMAIN.to_vec();
        // Writing CBOR to a Vec cannot fail.
        let body = cbor4ii::serde::to_vec(Vec::new(), self).unwrap_or_default();
        b.extend_from_slice(&body);
        b
    }

    /// Signs it with `sign` (the payer's ed25519 key).
    pub fn sign(&self, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> SignedOrder {
        let bytes = self.signing_bytes();
        let sig = sign(&bytes);
        SignedOrder { bytes, sig }
    }

    /// Whether run (`task`, `attempt`) is leaf `index` of the task tree, by `proof`.
    pub fn covers(&self, task: u32, attempt: u32, index: u32, proof: &[Hash]) -> bool {
        proof.len() <= MAX_ORDER_PROOF
            && index < self.tasks
            && verify_inclusion(
                &order_leaf(task, attempt),
                u64::from(index),
                u64::from(self.tasks),
                proof,
                &self.tasks_root,
            )
    }
}

impl SignedOrder {
    /// The order, if the bytes are one.
    pub fn order(&self) -> Option<Order> {
        if self.bytes.len() > MAX_AUTH {
            return None;
        }
        let body = self.bytes.strip_prefix(ORDER_DOMAIN)?;
        cbor4ii::serde::from_slice(body).ok()
    }

    /// Whether `payer` signed it.
    pub fn signed_by(&self, payer: &AccountKey) -> bool {
        naac_types::sig::verify(&payer.0, &self.bytes, &self.sig)
    }
}

/// The signed envelope: the bank it is meant for and the request.
#[derive(Serialize, Deserialize)]
struct Envelope {
    bank: AccountKey,
    request: Request,
}

/// Why a request's bytes could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("request is {0} bytes; at most {MAX_AUTH} allowed")]
    TooLarge(usize),
    #[error("request does not start with the bank request domain")]
    Domain,
    #[error("request is not valid CBOR: {0}")]
    Cbor(String),
}

impl Request {
    /// The exact bytes an authorizer signs for `bank`.
    pub fn to_msg(&self, bank: &AccountKey) -> Vec<u8> {
        let env = Envelope {
            bank: *bank,
            request: self.clone(),
        };
        let mut b = REQUEST_DOMAIN.to_vec();
        // Writing CBOR to a Vec cannot fail.
        let body = cbor4ii::serde::to_vec(Vec::new(), &env).unwrap_or_default();
        b.extend_from_slice(&body);
        b
    }

    /// Reads [`Request::to_msg`]: the bank it names and the request.
    pub fn from_msg(msg: &[u8]) -> Result<(AccountKey, Request), DecodeError> {
        if msg.len() > MAX_AUTH {
            return Err(DecodeError::TooLarge(msg.len()));
        }
        let body = msg
            .strip_prefix(REQUEST_DOMAIN)
            .ok_or(DecodeError::Domain)?;
        let env: Envelope =
            cbor4ii::serde::from_slice(body).map_err(|e| DecodeError::Cbor(e.to_string()))?;
        Ok((env.bank, env.request))
    }
}

/// A request with its authorizer's key and signature, as sent to the bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    pub authorizer: AccountKey,
    /// [`Request::to_msg`].
    #[serde(with = "serde_bytes")]
    pub msg: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl SignedRequest {
    /// Signs `request` for `bank` with `sign` (the authorizer's ed25519 key).
    pub fn new(
        authorizer: AccountKey,
        bank: &AccountKey,
        request: &Request,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Self {
        let msg = request.to_msg(bank);
        let sig = sign(&msg);
        Self {
            authorizer,
            msg,
            sig,
        }
    }

    /// Whether the signature is the authorizer's over `msg`.
    pub fn signature_ok(&self) -> bool {
        naac_types::sig::verify(&self.authorizer.0, &self.msg, &self.sig)
    }
}
