//! The naac daemon as a library: the provider (runs tasks for requesters that reach it), the
//! requester (turns a job into tasks, drives the sans-IO scheduler over the network, writes
//! results), and the data-dir layout they share. The binary only parses arguments and calls in
//! here, so tests can start nodes in-process with temp dirs and ephemeral ports.

pub mod bank;
pub mod device;
pub mod escrow;
pub mod explain;
pub mod home;
pub mod jobs;
pub mod logind;
pub mod output;
pub mod owner;
pub mod pay;
pub mod provider;
pub mod reputation;
pub mod requester;
pub mod revoked;
pub mod store;
pub mod survey;

pub use home::Home;
