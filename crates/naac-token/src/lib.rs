//! naac's tokens: biscuits rooted in a naac ed25519 key (a node's, a user's or a bank's),
//! with one vocabulary of facts and checks that every verifier shares.
//!
//! A token's authority block is signed by its root key and says what kind of token it is
//! and, if it is bound, who holds it. Anyone holding a token can attenuate it offline
//! ([`attenuate`]) by appending a block of checks; nobody can remove one. Its holder can
//! hand it on ([`delegate`]): a block signed by the holder's own key names the next holder
//! (and may add checks). A verifier trusts a set of roots ([`Verifier::trusting`]), checks
//! every signature, finds the holder, states the facts of the request and runs every
//! block's checks under explicit limits ([`LIMITS`]).
//!
//! ## Facts of the authority block
//!
//! | fact | meaning |
//! | --- | --- |
//! | `kind($k)` | `"api"` (a node's HTTP API; tokens without a kind are API tokens too), `"pool"` (running work on providers), `"spend"` (opening escrows from an account), `"data"` (stored data) |
//! | `root($key)` | the root key (32 bytes), so a reader can check the token without knowing it ([`inspect`]) |
//! | `node($id)` | an API token: the node that minted it |
//!
//! Facts in later blocks are not trusted by the verifier (biscuit scopes them to their
//! block).
//!
//! ## Holders
//!
//! A token is *bound* when its authority block's context is `holder=HEX` (an ed25519 key,
//! 32 bytes in hex): only the user with that key may present it. Its holder hands it on with
//! a block signed by the holder's own key (a biscuit third-party block) whose context names
//! the next holder ([`delegate`]). A block naming a holder that is neither the authority
//! block nor signed by the holder of its time makes the token invalid. An unbound token is a
//! bearer token: whoever shows it holds it, until a block names a holder.
//!
//! ## Facts a verifier states
//!
//! | fact | stated by | meaning |
//! | --- | --- | --- |
//! | `time($t)` | every verifier | now |
//! | `operation($op)` | every verifier | API: `"read"`, `"submit"`, `"cancel"`, `"admin"`; pool: `"run"`; spend: `"escrow"`; data: `"read"`, `"write"` |
//! | `job_name($n)` | API (submit, cancel), pool | the job the request is for |
//! | `host($id)` | pool | the provider's peer id |
//! | `slots($n)` | pool | the tasks this grant would run at once on the provider, this one included |
//! | `minute_of_day($m)` | pool | the provider's local time (its owner's time zone), 0–1439 |
//! | `job($id)` | spend | the job whose escrow is opened or topped up (hex) |
//! | `amount($c)` | spend | µcredits that job's escrow will have taken in, this request included |
//! | `spent($c)` | spend | µcredits every escrow of the grant will have taken in, this request included |
//! | `manifest($id)` | data | the stored data's id (64 lowercase hex) |
//! | `path($p)` | data | the file read or written, inside the stored tree |
//! | `listing(true)` | data | the request reads the tree's listing (its manifest), not a file |
//!
//! ## Limits, as checks
//!
//! | limit ([`Limits`]) | check |
//! | --- | --- |
//! | scope `read` | `check if operation("read")` |
//! | scope `submit` | `check if operation($op), $op == "read" \|\| $op == "submit" \|\| $op == "cancel"` |
//! | expiry | `check if time($t), $t <= EXPIRY` |
//! | job name prefix `P` | `check if operation("read") or job_name($n), $n.starts_with("P")` |
//! | slots `N` | `check if slots($n), $n <= N` |
//! | hours `A`–`B` (minutes of the day) | `check if minute_of_day($m), $m >= A, $m < B` (`\|\|` when it wraps midnight) |
//! | hosts | `check if host($h), {"12D3…", …}.contains($h)` |
//! | credits in all `N` | `check if spent($c), $c <= N` |
//! | credits per job `N` | `check if amount($c), $c <= N` |
//! | stored-data ids | `check if manifest($m), {"ab12…", …}.contains($m)` |
//! | path prefix `P` | `check if listing(true) or path($p), $p.starts_with("P")` |
//!
//! A data token's `read` scope is the API's (`check if operation("read")`): it refuses
//! writes.
//!
//! A check over a fact its verifier does not state fails, so a limit never widens a token
//! used somewhere it does not apply (a pool token's `slots` check refuses it at an API).
//!
//! ## Shape
//!
//! Before any Datalog runs, a verifier reads each block's structure and refuses what naac's
//! tokens never hold: rules, `trusting` scopes, facts outside the authority block (at most
//! 8 there), more than 16 checks in a block, a check of more than 2 queries, a query on
//! more than one predicate (a join), or long expressions. biscuit checks its run limits
//! only between rule iterations, so a single join over many facts could otherwise run
//! unbounded; with this shape every check is linear in the few facts a verifier states. A
//! block cannot state `time(…)` for its own expiry check either.
//!
//! ## Sizes
//!
//! Tokens of up to [`GUARANTEED_BLOCKS`] blocks and [`GUARANTEED_BYTES`] bytes are always
//! checked within [`LIMITS`] (a property test holds the crate to it); verifiers refuse more
//! than [`MAX_BLOCKS`] blocks or [`MAX_TOKEN_LEN`] bytes before parsing further.

mod limits;
mod verify;
mod words;

#[cfg(test)]
mod tests;

pub use limits::{Hours, Limits, attenuate, delegate};
pub use verify::{
    DataOp, DataRequest, PoolRequest, Root, SpendRequest, Token, Verifier, inspect, revocation_ids,
};
pub use words::describe;

use std::time::Duration;

/// The Datalog run limits every verification uses, set explicitly so that a valid token
/// is never refused by a default tuned for a faster machine: a token's checks are a few
/// lines; a token that needs more is hostile.
pub const LIMITS: biscuit_auth::AuthorizerLimits = biscuit_auth::AuthorizerLimits {
    max_facts: 1_000,
    max_iterations: 100,
    max_time: Duration::from_millis(50),
};

/// The longest token accepted (bytes of base64): a hostile client cannot make a verifier
/// parse megabytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Most blocks in a token (its authority block and attenuations).
pub const MAX_BLOCKS: usize = 32;

/// Tokens this size or smaller are never refused by [`LIMITS`].
pub const GUARANTEED_BLOCKS: usize = 5;
pub const GUARANTEED_BYTES: usize = 2 * 1024;

/// An ed25519 public key: a token's root, a holder.
pub type Key = [u8; 32];

/// What a token is for (its authority block's `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A node's HTTP API.
    Api,
    /// Running work on providers that trust the root.
    Pool,
    /// Opening escrows from the root's account.
    Spend,
    /// Reading or writing stored data.
    Data,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Pool => "pool",
            Kind::Spend => "spend",
            Kind::Data => "data",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [Kind::Api, Kind::Pool, Kind::Spend, Kind::Data]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// What a token may be limited to on a node's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Look only: every `GET`.
    Read,
    /// Read, submit jobs and cancel them.
    Submit,
    /// Everything, the node's policy included.
    Admin,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "submit" => Ok(Scope::Submit),
            "admin" => Ok(Scope::Admin),
            _ => Err(format!("unknown scope {s:?}: use read, submit or admin")),
        }
    }
}

/// What an API request does, as the verifier states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Read,
    Submit,
    Cancel,
    Admin,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Submit => "submit",
            Operation::Cancel => "cancel",
            Operation::Admin => "admin",
        }
    }
}

/// How a token falls short.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token, not rooted in a trusted key, tampered with, or too big.
    #[error("{0}")]
    Invalid(String),
    /// A valid token whose checks refuse this request (which check, in its own words).
    #[error("{0}")]
    Denied(String),
}

/// The hint a token carries to its root (biscuit's root key id): the first four bytes of
/// the root key, so a verifier that trusts many roots checks one signature, not each.
fn hint(key: &Key) -> u32 {
    u32::from_le_bytes([key[0], key[1], key[2], key[3]])
}

/// The context of a block that names `key` as the holder.
fn holder_context(key: &Key) -> String {
    format!("holder={}", hex(key))
}

/// The holder a block's context names, if it names one; `Err` if it says `holder=` and no key.
fn holder_in(context: Option<&str>) -> Result<Option<Key>, TokenError> {
    let Some(h) = context.and_then(|c| c.strip_prefix("holder=")) else {
        return Ok(None);
    };
    key_of_hex(h).map(Some).ok_or_else(|| {
        TokenError::Invalid(format!("a block names a holder {h:?} that is not a key"))
    })
}

/// A key written as 64 hex digits.
fn key_of_hex(h: &str) -> Option<Key> {
    if h.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
