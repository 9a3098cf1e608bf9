//! Why a request is refused: [`LedgerError`], one variant per rule a request can break.

use super::short;
use crate::entry::AccountKey;
use crate::request::DecodeError;
use naac_types::{Credits, JobId};

/// Who needs the money, for [`LedgerError::InsufficientBalance`].
fn needs(job: &Option<JobId>) -> String {
    match job {
        Some(j) => format!("job {} needs up to", j.short()),
        None => "transfer needs".into(),
    }
}

/// Why a request was refused. Every variant is a refusal of that request: nothing changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LedgerError {
    /// The signature is not the authorizer's over the message.
    #[error("request signature is not the authorizer's")]
    BadSignature,
    /// The message could not be read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message names another bank.
    #[error("request is addressed to bank {}, not this one", short(.0))]
    WrongBank(AccountKey),
    /// Only the bank may grant.
    #[error("grant is not signed by the bank")]
    NotBank,
    /// The account already received its grant (with another request).
    #[error("account {} already received its grant", short(.0))]
    AlreadyGranted(AccountKey),
    /// The provider was already registered (with another request).
    #[error("provider {} is already registered", short(.0))]
    AlreadyRegistered(AccountKey),
    /// The sender already used this transfer nonce for another transfer.
    #[error(
        "transfer nonce {nonce} of account {} was already used for another transfer",
        short(.from)
    )]
    NonceReused { from: AccountKey, nonce: u64 },
    /// The payer already used this top-up nonce for another top-up of the job's escrow.
    #[error("top-up nonce {nonce} of job {} was already used for another top-up", .job.short())]
    TopUpNonceReused { job: JobId, nonce: u64 },
    /// A transfer or escrow of nothing.
    #[error("amount must be more than zero")]
    ZeroAmount,
    /// A transfer to the account it comes from.
    #[error("cannot transfer from an account to itself")]
    SelfTransfer,
    /// The payer's balance does not cover the amount (`job` names the escrow being opened).
    #[error("{} {need} credits; balance {balance}", needs(.job))]
    InsufficientBalance {
        need: Credits,
        balance: Credits,
        job: Option<JobId>,
    },
    /// A spend token that does not verify against the payer's key, or whose checks refuse
    /// the request (its caps, its holder, its expiry).
    #[error("spend token: {0}")]
    Token(String),
    /// The request is signed by someone other than the account it spends from.
    #[error("request is signed by {}, not by the payer {}", short(.signer), short(.payer))]
    NotPayer {
        signer: AccountKey,
        payer: AccountKey,
    },
    /// An escrow for this job was already opened (with another request).
    #[error("job {} already has an escrow", .0.short())]
    EscrowExists(JobId),
    /// No escrow was opened for this job.
    #[error("job {} has no escrow", .0.short())]
    NoSuchEscrow(JobId),
    /// The job's escrow was refunded and closed.
    #[error("escrow of job {} is closed", .0.short())]
    EscrowClosed(JobId),
    /// The payment is more than the escrow has left.
    #[error("settlement needs {need} credits; escrow has {left} left")]
    EscrowExhausted { need: Credits, left: Credits },
    /// The settled result record is malformed, for another job or not the provider's.
    #[error("bad result record: {0}")]
    BadRecord(String),
    /// An ask of the settlement is forged, for another job or does not justify the price.
    #[error("bad ask: {0}")]
    BadAsk(String),
    /// The job's escrow is closing: its payer closed it, nothing more may be put in.
    #[error("escrow of job {} is closing; it takes no top-ups", .0.short())]
    EscrowClosing(JobId),
    /// A claim on an escrow opened without a claim window.
    #[error("escrow of job {} takes no claims (it was opened with no claim window)", .0.short())]
    NoClaims(JobId),
    /// A claim before the escrow's claims open.
    #[error(
        "claims on job {} open when its payer closes the escrow, or at {opens_ms} ms (its last claim window); until then the payer settles",
        .job.short()
    )]
    ClaimsNotOpen { job: JobId, opens_ms: u64 },
    /// A claim for a run the payer rejected.
    #[error("the payer of job {} rejected task {task} attempt {attempt} (entry {seq})", .job.short())]
    Rejected {
        job: JobId,
        task: u32,
        attempt: u32,
        seq: u64,
    },
    /// A claim or rejection of a run already paid (under any record).
    #[error("task {task} attempt {attempt} was already paid (entry {seq})")]
    RunPaid { task: u32, attempt: u32, seq: u64 },
    /// The order a claim carries is malformed, not the payer's, or does not cover it.
    #[error("bad order: {0}")]
    BadOrder(String),
    /// This storage period was already paid to this provider (by another request).
    #[error("storage period {period} of job {} was already paid to {} (entry {seq})", .job.short(), short(.provider))]
    StorePeriodPaid {
        job: JobId,
        provider: AccountKey,
        period: u32,
        seq: u64,
    },
    /// A balance or the issuance would pass `u64::MAX` µcredits.
    #[error("amount would overflow the books")]
    Overflow,
}
