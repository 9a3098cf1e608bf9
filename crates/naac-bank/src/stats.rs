//! This process's calls to banks (through [`BankConn`](crate::BankConn)), for the node's
//! metrics: per kind of request, how many were answered, how many failed, and the time
//! they took in all. Counters only (relaxed atomics): reading them never slows a call.

use naac_proto::BankRequest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The kinds of bank request, as the metrics name them.
pub const KINDS: [&str; 11] = [
    "info",
    "balance",
    "submit",
    "history",
    "entries",
    "proof",
    "consistency",
    "checkpoint",
    "escrow",
    "standing",
    "unresolved",
];

struct Op {
    ok: AtomicU64,
    failed: AtomicU64,
    micros: AtomicU64,
}

static OPS: [Op; KINDS.len()] = [const {
    Op {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        micros: AtomicU64::new(0),
    }
}; KINDS.len()];

/// Which of [`KINDS`] `req` is.
pub fn kind_of(req: &BankRequest) -> usize {
    match req {
        BankRequest::Info => 0,
        BankRequest::Balance { .. } => 1,
        BankRequest::Submit(_) => 2,
        BankRequest::History { .. } => 3,
        BankRequest::Entries { .. } => 4,
        BankRequest::Proof { .. } => 5,
        BankRequest::Consistency { .. } => 6,
        BankRequest::Checkpoint { .. } => 7,
        BankRequest::Escrow { .. } => 8,
        BankRequest::Standing { .. } => 9,
        BankRequest::Unresolved { .. } => 10,
    }
}

pub(crate) fn record(kind: usize, took: Duration, ok: bool) {
    let Some(op) = OPS.get(kind) else { return };
    let counter = if ok { &op.ok } else { &op.failed };
    counter.fetch_add(1, Ordering::Relaxed);
    op.micros.fetch_add(
        u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// One kind of request so far: its name, answered, failed, and seconds spent in all.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTotals {
    pub kind: &'static str,
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
}

/// Every kind of request this process made so far.
pub fn totals() -> Vec<OpTotals> {
    KINDS
        .iter()
        .zip(OPS.iter())
        .map(|(kind, op)| OpTotals {
            kind,
            ok: op.ok.load(Ordering::Relaxed),
            failed: op.failed.load(Ordering::Relaxed),
            seconds: op.micros.load(Ordering::Relaxed) as f64 / 1e6,
        })
        .collect()
}
