//! The bank: where the ledger's rules (`naac-ledger`) meet storage and the network.
//!
//! - [`store`]: the ledger's durable stores behind one [`Store`](store::Store) trait —
//!   SQLite (WAL, `synchronous=FULL`) and PostgreSQL (`synchronous_commit=on`), one schema.
//! - the bank service ([`start`], [`BankHandle`]): one thread owns the rules and the store
//!   and commits each batch of requests, with a signed checkpoint, before answering it.
//! - [`faucet`]: what a bank grants new accounts on its own (nothing by default), and the
//!   rate limit of a faucet.
//! - [`start_reader`]: a read-only bank over a ledger store, for wallets.
//! - `revoked.rs`: spend tokens revoked at this bank ([`BankHandle::revoke`]), refused
//!   before the ledger sees their requests.
//! - [`BankConn`]: the one bank client, to a bank in this process or a bank node; [`stats`]
//!   counts its calls and their time, for the node's metrics.
//! - [`wire`]: conversions between the ledger's and the market's values and their
//!   `naac-proto` wire counterparts (the only crate that knows both).

mod client;
pub mod faucet;
mod handle;
mod reader;
mod revoked;
mod service;
pub mod stats;
pub mod store;
pub mod wire;

pub use client::BankConn;
pub use faucet::Faucet;
pub use handle::BankHandle;
pub use reader::start_reader;
pub use revoked::MAX_REVOKED;
pub use service::{BankConfig, MAX_BATCH, Signer, start, start_with_keypair};
pub use wire::{FromWire, ToWire};
