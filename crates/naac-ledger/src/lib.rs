//! The bank's books: a double-entry, hash-chained, signed ledger with RFC 6962 Merkle
//! checkpoints and its sans-IO rules. Storing the entries (SQLite, PostgreSQL) is
//! `naac-bank`'s.

mod entry;
pub mod merkle;
mod request;
mod rules;
mod tree_head;
mod verify;

pub use entry::{Account, AccountKey, Entry, Hash, Kind, MAX_AUTH, MAX_MEMO};
pub use merkle::{InclusionProof, MerkleTree};
pub use naac_types::unhex;
pub use request::{
    DecodeError, MAX_ORDER_PROOF, Order, Request, SignedOrder, SignedRecord, SignedRequest,
    order_leaf, order_tree,
};
pub use rules::{
    ASK_GRACE_MS, Applied, EscrowState, HOSTILE_RULES_SINCE_MS, Ledger, LedgerError,
    MAX_SPEND_ESCROW_MS, ReplayError, ReplayFault, SNAPSHOT_VERSION, SnapshotError, precheck,
};
pub use tree_head::TreeHead;
pub use verify::{Report, VerifyError, verify_entries};
