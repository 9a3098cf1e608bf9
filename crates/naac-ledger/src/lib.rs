//! The bank's books: a double-entry, hash-chained, signed ledger with RFC 6962 Merkle
//! checkpoints, its sans-IO rules, and its SQLite and PostgreSQL stores.

mod checkpoint;
mod entry;
mod request;
pub mod store;

pub use checkpoint::Checkpoint;
pub use entry::{Account, AccountKey, Entry, Hash, Kind, MAX_AUTH, MAX_MEMO, unhex};
pub use request::{DecodeError, Request, SignedRecord, SignedRequest};
