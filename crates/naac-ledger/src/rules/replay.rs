//! Replay: rebuilding the state from stored entries, checking that each entry is exactly
//! what its signed request makes, and [`ReplayError`], why an entry does not replay.

use super::plan::{Plan, Sigs};
use super::{Ledger, LedgerError};
use crate::entry::Entry;
use crate::request::SignedRequest;

impl Ledger {
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
