//! Planning a request: the checks every request gets, the dispatch to its kind's rules, the
//! planned state change, and committing it. Nothing is changed until every check passed.

use super::{EscrowSlot, EscrowState, Ledger, LedgerError, blake};
use crate::entry::{Account, AccountKey, Entry, Hash, Kind, MAX_AUTH, MAX_MEMO};
use crate::merkle::leaf_hash;
use crate::request::{DecodeError, Request, SignedRequest};
use naac_types::{Credits, JobId};

/// A request applied once: the entry and the hash of its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Seen {
    pub(super) seq: u64,
    pub(super) msg: Hash,
}

/// How thoroughly `plan` checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sigs {
    Check,
    Trust,
}

/// The state change an accepted request makes, with every new value already computed.
pub(super) enum Change {
    Grant {
        to: AccountKey,
        balance: u64,
        issued: u64,
        seen: Seen,
    },
    Transfer {
        from: AccountKey,
        from_balance: u64,
        to: AccountKey,
        to_balance: u64,
        nonce: u64,
        seen: Seen,
    },
    Register {
        provider: AccountKey,
        seen: Seen,
    },
    Open {
        payer: AccountKey,
        payer_balance: u64,
        job: JobId,
        slot: EscrowSlot,
        /// A spend grant's new running total.
        spent: Option<(Vec<u8>, u64)>,
    },
    TopUp {
        payer: AccountKey,
        payer_balance: u64,
        job: JobId,
        escrow: EscrowState,
        nonce: u64,
        seen: Seen,
        /// A spend grant's new running total.
        spent: Option<(Vec<u8>, u64)>,
    },
    Settle {
        job: JobId,
        escrow: EscrowState,
        provider: AccountKey,
        provider_balance: u64,
        record: Hash,
        /// (task, attempt) of the record.
        run: (u32, u32),
        /// What the provider's reservation freed.
        released: u64,
    },
    Refund {
        job: JobId,
        escrow: EscrowState,
        payer: AccountKey,
        payer_balance: u64,
    },
    Close {
        job: JobId,
        escrow: EscrowState,
        /// Its expiry before closing (the index of open escrows by expiry moves).
        was_expiring_ms: u64,
        payer: AccountKey,
        payer_balance: u64,
    },
    Reject {
        job: JobId,
        run: super::Run,
        escrow: EscrowState,
        released: u64,
    },
    Commit {
        job: JobId,
        escrow: EscrowState,
        provider: AccountKey,
        /// The provider's reservation after it.
        held: u64,
        order: Hash,
    },
    StorePay {
        job: JobId,
        escrow: EscrowState,
        provider: AccountKey,
        provider_balance: u64,
        period: u32,
        seen: Seen,
    },
}

/// What `plan` decided for a request that passed every check.
// Made once per request and consumed at once: boxing the change would only allocate.
#[allow(clippy::large_enum_variant)]
pub(super) enum Plan {
    Duplicate(u64),
    Append(Box<Entry>, Change),
}

impl Plan {
    /// An idempotency key met before (entry `seq`, authorized by message `before`): the same
    /// signed message again is a duplicate of that entry; another message under the same key
    /// is refused with `conflict`.
    pub(super) fn again(
        before: &Hash,
        seq: u64,
        msg: &Hash,
        conflict: LedgerError,
    ) -> Result<Plan, LedgerError> {
        if before == msg {
            Ok(Plan::Duplicate(seq))
        } else {
            Err(conflict)
        }
    }

    /// The request passed: append `entry`, making `change`.
    pub(super) fn append(entry: Entry, change: Change) -> Result<Plan, LedgerError> {
        Ok(Plan::Append(Box::new(entry), change))
    }
}

/// A request being planned: what every kind's rules need besides the request's own fields.
pub(super) struct Draft<'a> {
    req: &'a SignedRequest,
    /// Who signed it (its authorizer).
    pub(super) signer: AccountKey,
    /// The time of the entry it makes.
    pub(super) now_ms: u64,
    /// How thoroughly to check.
    pub(super) sigs: Sigs,
    /// The seq of the entry it makes and the hash of its message (an idempotency key's
    /// value).
    pub(super) seen: Seen,
    /// The prev of the entry it makes (the ledger's head).
    prev: Hash,
}

impl Draft<'_> {
    /// The entry the request makes, with no job, task or record (the caller sets those).
    pub(super) fn entry(
        &self,
        kind: Kind,
        debit: Account,
        credit: Account,
        amount: u64,
        memo: String,
    ) -> Entry {
        Entry {
            seq: self.seen.seq,
            prev: self.prev,
            time_ms: self.now_ms,
            kind,
            debit,
            credit,
            amount: Credits(amount),
            job: None,
            task: None,
            record: None,
            memo: clip(memo),
            authorizer: self.signer,
            auth: self.req.msg.clone(),
            sig: self.req.sig.clone(),
        }
    }

    /// The request is signed by someone other than `payer`, who must sign it.
    pub(super) fn not_payer(&self, payer: AccountKey) -> LedgerError {
        LedgerError::NotPayer {
            signer: self.signer,
            payer,
        }
    }
}

impl Ledger {
    /// A user's balance after receiving `amount`.
    pub(super) fn credited(&self, k: &AccountKey, amount: u64) -> Result<u64, LedgerError> {
        self.user(k)
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)
    }

    /// A user's balance after paying `amount`.
    pub(super) fn debited(
        &self,
        k: &AccountKey,
        amount: u64,
        job: Option<JobId>,
    ) -> Result<u64, LedgerError> {
        let balance = self.user(k);
        balance
            .checked_sub(amount)
            .ok_or(LedgerError::InsufficientBalance {
                need: Credits(amount),
                balance: Credits(balance),
                job,
            })
    }

    /// Every check of a request; the entry and the state change it makes, or why not.
    pub(super) fn plan(
        &self,
        req: &SignedRequest,
        now_ms: u64,
        sigs: Sigs,
    ) -> Result<Plan, LedgerError> {
        if req.msg.len() > MAX_AUTH {
            return Err(DecodeError::TooLarge(req.msg.len()).into());
        }
        if sigs == Sigs::Check && !req.signature_ok() {
            return Err(LedgerError::BadSignature);
        }
        let (bank, request) = Request::from_msg(&req.msg)?;
        if bank != self.bank {
            return Err(LedgerError::WrongBank(bank));
        }
        let d = Draft {
            req,
            signer: req.authorizer,
            now_ms,
            sigs,
            seen: Seen {
                seq: self.len(),
                msg: blake(&req.msg),
            },
            prev: self.head,
        };
        match request {
            Request::Grant { to, amount } => self.plan_grant(&d, to, amount),
            Request::Transfer {
                from,
                to,
                amount,
                nonce,
            } => self.plan_transfer(&d, from, to, amount, nonce),
            Request::OpenEscrow {
                job,
                payer,
                amount,
                max_price,
                fuel_limit,
                expires_ms,
                claim_window_ms,
                spend,
            } => self.plan_open_escrow(
                &d,
                job,
                payer,
                amount,
                (max_price, fuel_limit),
                (expires_ms, claim_window_ms),
                spend.as_deref(),
            ),
            Request::TopUp {
                job,
                amount,
                nonce,
                expires_ms,
                spend,
            } => self.plan_top_up(&d, job, amount, (nonce, expires_ms), spend.as_deref()),
            Request::Settle {
                job,
                provider,
                record,
                price,
                winner,
                second,
                fuel,
            } => self.plan_settle(&d, job, provider, record, price, (winner, second), fuel),
            Request::Refund { job } => self.plan_refund(&d, job),
            Request::Claim {
                job,
                order,
                record,
                index,
                proof,
            } => self.plan_claim(&d, job, &order, record, (index, &proof)),
            Request::Reject {
                job,
                order,
                task,
                attempt,
                index,
                proof,
            } => self.plan_reject(&d, job, &order, (task, attempt), (index, &proof)),
            Request::Commit { job, order } => self.plan_commit(&d, job, &order),
            Request::Register { provider } => self.plan_register(&d, provider),
            Request::StorePay {
                job,
                provider,
                period,
                amount,
            } => self.plan_store_pay(&d, job, provider, period, amount),
        }
    }

    /// Applies a planned change and appends its entry. Nothing here can fail.
    pub(super) fn commit(&mut self, entry: &Entry, change: Change) {
        match change {
            Change::Grant {
                to,
                balance,
                issued,
                seen,
            } => {
                self.users.insert(to, balance);
                self.issued = issued;
                self.grants.insert(to, seen);
            }
            Change::Transfer {
                from,
                from_balance,
                to,
                to_balance,
                nonce,
                seen,
            } => {
                self.users.insert(from, from_balance);
                self.users.insert(to, to_balance);
                self.transfers.insert((from, nonce), seen);
            }
            Change::Register { provider, seen } => {
                self.registered.insert(provider, seen);
            }
            Change::Open {
                payer,
                payer_balance,
                job,
                slot,
                spent,
            } => {
                if let Some((grant, total)) = spent {
                    self.spent.insert(grant, total);
                }
                self.users.insert(payer, payer_balance);
                self.open_by_expiry.insert((slot.state.expires_ms, job));
                self.escrows.insert(job, slot);
            }
            Change::StorePay {
                job,
                escrow,
                provider,
                provider_balance,
                period,
                seen,
            } => {
                self.users.insert(provider, provider_balance);
                if let Some(slot) = self.escrows.get_mut(&job) {
                    slot.state = escrow;
                }
                self.store_paid.insert((job, provider, period), seen);
            }
            Change::TopUp {
                payer,
                payer_balance,
                job,
                escrow,
                nonce,
                seen,
                spent,
            } => {
                if let Some((grant, total)) = spent {
                    self.spent.insert(grant, total);
                }
                self.users.insert(payer, payer_balance);
                if let Some(slot) = self.escrows.get_mut(&job) {
                    if slot.state.expires_ms != escrow.expires_ms {
                        self.open_by_expiry.remove(&(slot.state.expires_ms, job));
                        self.open_by_expiry.insert((escrow.expires_ms, job));
                    }
                    slot.state = escrow;
                }
                self.top_ups.insert((job, nonce), seen);
            }
            Change::Settle {
                job,
                escrow,
                provider,
                provider_balance,
                record,
                run,
                released,
            } => {
                self.users.insert(provider, provider_balance);
                if let Some(slot) = self.escrows.get_mut(&job) {
                    slot.state = escrow;
                }
                self.settled.insert(record, entry.seq);
                self.runs_paid
                    .entry((job, run.0, run.1, provider))
                    .or_insert(entry.seq);
                self.unreserve(job, provider, released);
            }
            Change::Refund {
                job,
                escrow,
                payer,
                payer_balance,
            } => {
                self.users.insert(payer, payer_balance);
                self.open_by_expiry.remove(&(escrow.expires_ms, job));
                if let Some(slot) = self.escrows.get_mut(&job) {
                    slot.state = escrow;
                    slot.close_seq = Some(entry.seq);
                }
            }
            Change::Close {
                job,
                escrow,
                was_expiring_ms,
                payer,
                payer_balance,
            } => {
                self.users.insert(payer, payer_balance);
                self.open_by_expiry.remove(&(was_expiring_ms, job));
                self.open_by_expiry.insert((escrow.expires_ms, job));
                if let Some(slot) = self.escrows.get_mut(&job) {
                    slot.state = escrow;
                    slot.closing_seq = Some(entry.seq);
                }
            }
            Change::Reject {
                job,
                run,
                escrow,
                released,
            } => {
                self.rejected.insert(run, entry.seq);
                if let Some(slot) = self.escrows.get_mut(&job) {
                    slot.state = escrow;
                }
                self.unreserve(job, run.3, released);
            }
            Change::Commit {
                job,
                escrow,
                provider,
                held,
                order,
            } => {
                self.reservations.insert((job, provider), held);
                if let Some(slot) = self.escrows.get_mut(&job) {
                    slot.state = escrow;
                }
                self.commits.insert(order, entry.seq);
            }
        }
        let bytes = entry.to_bytes();
        self.last_time = entry.time_ms;
        self.head = blake(&bytes);
        self.tree.push(leaf_hash(&bytes));
    }
}

impl Ledger {
    /// Takes `amount` off `provider`'s reservation in the escrow of `job`.
    fn unreserve(&mut self, job: JobId, provider: AccountKey, amount: u64) {
        if amount == 0 {
            return;
        }
        if let Some(held) = self.reservations.get_mut(&(job, provider)) {
            *held = held.saturating_sub(amount);
            if *held == 0 {
                self.reservations.remove(&(job, provider));
            }
        }
    }
}

/// Cuts a memo to [`MAX_MEMO`] bytes at a character boundary.
fn clip(mut memo: String) -> String {
    if memo.len() > MAX_MEMO {
        let mut end = MAX_MEMO;
        while !memo.is_char_boundary(end) {
            end -= 1;
        }
        memo.truncate(end);
    }
    memo
}

/// The checks every request gets before its rules, in the same order and with the same
/// errors: its size, its author's signature, that it decodes, that it is for `bank`. A bank
/// runs them before queueing a request, so garbage never reaches its books' thread.
pub fn precheck(req: &SignedRequest, bank: &AccountKey) -> Result<(), LedgerError> {
    if req.msg.len() > MAX_AUTH {
        return Err(DecodeError::TooLarge(req.msg.len()).into());
    }
    if !req.signature_ok() {
        return Err(LedgerError::BadSignature);
    }
    let (named, _) = Request::from_msg(&req.msg)?;
    if named != *bank {
        return Err(LedgerError::WrongBank(named));
    }
    Ok(())
}
