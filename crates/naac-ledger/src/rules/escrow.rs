//! The rules of a job's escrow: opening it, settling a provider's result from it (at the
//! auction's price) and refunding what is left.

use super::asks::{AskContext, check_asks};
use super::plan::{Change, Draft, Plan, Sigs};
use super::{EscrowSlot, EscrowState, Ledger, LedgerError, blake, short};
use crate::entry::{Account, AccountKey, Entry, Kind};
use crate::request::{SignedOrder, SignedRecord};
use naac_market::{SignedAsk, verify_ed25519};
use naac_types::{Credits, JobId, Price, ResultRecord};

impl Ledger {
    /// Opens the escrow of `job`, funded by `payer`'s wallet.
    // The request's fields, as `plan` destructures them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_open_escrow(
        &self,
        d: &Draft,
        job: JobId,
        payer: AccountKey,
        amount: Credits,
        (max_price, fuel_limit): (Price, u64),
        expires_ms: u64,
        claim_window_ms: u64,
    ) -> Result<Plan, LedgerError> {
        if d.signer != payer {
            return Err(d.not_payer(payer));
        }
        if let Some(slot) = self.escrows.get(&job) {
            let conflict = LedgerError::EscrowExists(job);
            return Plan::again(&slot.open_msg, slot.open_seq, &d.seen.msg, conflict);
        }
        if amount.0 == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        let payer_balance = self.debited(&payer, amount.0, Some(job))?;
        let slot = EscrowSlot {
            state: EscrowState {
                payer,
                opened: amount,
                left: amount,
                paid: Credits::ZERO,
                max_price,
                fuel_limit,
                expires_ms,
                closed: false,
                settled: 0,
                claim_window_ms,
                closing: false,
            },
            open_seq: d.seen.seq,
            open_msg: d.seen.msg,
            close_seq: None,
            closing_seq: None,
        };
        Plan::append(
            Entry {
                job: Some(job),
                ..d.entry(
                    Kind::Escrow,
                    Account::User(payer),
                    Account::Escrow(job),
                    amount.0,
                    format!("job {}, at most {max_price} per giga-fuel", job.short()),
                )
            },
            Change::Open {
                payer,
                payer_balance,
                job,
                slot,
            },
        )
    }

    /// Adds `amount` from the payer's wallet to the open escrow of `job`; `nonce` is its
    /// idempotency key.
    pub(super) fn plan_top_up(
        &self,
        d: &Draft,
        job: JobId,
        amount: Credits,
        nonce: u64,
        expires_ms: Option<u64>,
    ) -> Result<Plan, LedgerError> {
        let slot = self
            .escrows
            .get(&job)
            .ok_or(LedgerError::NoSuchEscrow(job))?;
        let esc = &slot.state;
        if d.signer != esc.payer {
            return Err(d.not_payer(esc.payer));
        }
        if let Some(before) = self.top_ups.get(&(job, nonce)) {
            let conflict = LedgerError::TopUpNonceReused { job, nonce };
            return Plan::again(&before.msg, before.seq, &d.seen.msg, conflict);
        }
        if esc.closed {
            return Err(LedgerError::EscrowClosed(job));
        }
        if esc.closing {
            return Err(LedgerError::EscrowClosing(job));
        }
        if amount.0 == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        let payer = esc.payer;
        let payer_balance = self.debited(&payer, amount.0, Some(job))?;
        let escrow = EscrowState {
            opened: esc
                .opened
                .checked_add(amount)
                .ok_or(LedgerError::Overflow)?,
            left: esc.left.checked_add(amount).ok_or(LedgerError::Overflow)?,
            expires_ms: esc.expires_ms.max(expires_ms.unwrap_or(0)),
            ..esc.clone()
        };
        Plan::append(
            Entry {
                job: Some(job),
                ..d.entry(
                    Kind::Escrow,
                    Account::User(payer),
                    Account::Escrow(job),
                    amount.0,
                    format!("job {} top-up {nonce}", job.short()),
                )
            },
            Change::TopUp {
                payer,
                payer_balance,
                job,
                escrow,
                nonce,
                seen: d.seen,
            },
        )
    }

    /// Pays `provider` from the escrow of `job` for one signed result record, at the price
    /// the auction's asks justify.
    // The request's fields, as `plan` destructures them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_settle(
        &self,
        d: &Draft,
        job: JobId,
        provider: AccountKey,
        record: SignedRecord,
        price: Price,
        (winner, second): (SignedAsk, Option<SignedAsk>),
        fuel: Option<u64>,
    ) -> Result<Plan, LedgerError> {
        let slot = self
            .escrows
            .get(&job)
            .ok_or(LedgerError::NoSuchEscrow(job))?;
        let esc = &slot.state;
        if d.signer != esc.payer {
            return Err(d.not_payer(esc.payer));
        }
        let parsed = parse_record(&record, job)?;
        let record_hash = blake(&record.bytes);
        if let Some(seq) = self.settled.get(&record_hash) {
            return Ok(Plan::Duplicate(*seq));
        }
        if esc.closed {
            return Err(LedgerError::EscrowClosed(job));
        }
        if d.sigs == Sigs::Check && !verify_ed25519(&provider.0, &record.bytes, &record.sig) {
            return Err(LedgerError::BadRecord(format!(
                "record is not signed by the provider {}",
                short(&provider)
            )));
        }
        check_asks(
            job,
            &provider,
            price,
            esc.max_price,
            &winner,
            second.as_ref(),
            &AskContext {
                check: (d.sigs == Sigs::Check).then_some(&self.asks_checked),
                now_ms: d.now_ms,
                standing: &|k| self.has_standing(k),
            },
        )?;
        if parsed.fuel_used > esc.fuel_limit {
            return Err(LedgerError::BadRecord(format!(
                "record claims {} fuel, above the job's limit of {}",
                parsed.fuel_used, esc.fuel_limit
            )));
        }
        // The payer may pay for less fuel than claimed (the honest copies' figure), never more.
        let fuel = match fuel {
            None => parsed.fuel_used,
            Some(f) if f <= parsed.fuel_used => f,
            Some(f) => {
                return Err(LedgerError::BadRecord(format!(
                    "settles {f} fuel, more than the record's {}",
                    parsed.fuel_used
                )));
            }
        };
        let need = price.cost(fuel);
        let left = esc
            .left
            .checked_sub(need)
            .ok_or(LedgerError::EscrowExhausted {
                need,
                left: esc.left,
            })?;
        let escrow = EscrowState {
            left,
            paid: esc.paid.checked_add(need).ok_or(LedgerError::Overflow)?,
            settled: esc.settled.checked_add(1).ok_or(LedgerError::Overflow)?,
            ..esc.clone()
        };
        let provider_balance = self.credited(&provider, need.0)?;
        Plan::append(
            Entry {
                job: Some(job),
                task: Some(parsed.task),
                record: Some(record_hash),
                ..d.entry(
                    Kind::Settle,
                    Account::Escrow(job),
                    Account::User(provider),
                    need.0,
                    if fuel == parsed.fuel_used {
                        format!(
                            "job {} task {} attempt {}: {fuel} fuel at {price} per giga-fuel",
                            job.short(),
                            parsed.task,
                            parsed.attempt,
                        )
                    } else {
                        format!(
                            "job {} task {} attempt {}: {fuel} fuel (claimed {}) at {price} per giga-fuel",
                            job.short(),
                            parsed.task,
                            parsed.attempt,
                            parsed.fuel_used
                        )
                    },
                )
            },
            Change::Settle {
                job,
                escrow,
                provider,
                provider_balance,
                record: record_hash,
                run: (parsed.task, parsed.attempt),
            },
        )
    }

    /// Closes the escrow of `job` and returns what is left to its payer.
    pub(super) fn plan_refund(&self, d: &Draft, job: JobId) -> Result<Plan, LedgerError> {
        let slot = self
            .escrows
            .get(&job)
            .ok_or(LedgerError::NoSuchEscrow(job))?;
        let esc = &slot.state;
        let by_payer = d.signer == esc.payer;
        let expired_by_bank = d.signer == self.bank && d.now_ms >= esc.expires_ms;
        if !(by_payer || expired_by_bank) {
            return Err(d.not_payer(esc.payer));
        }
        // With a claim window the payer's refund closes the escrow first: providers may
        // claim what they delivered and were not paid for until the window ends, and then
        // the bank refunds the rest (one signed request makes at most one entry).
        if by_payer && let Some(seq) = slot.closing_seq {
            return Ok(Plan::Duplicate(seq));
        }
        if let Some(seq) = slot.close_seq {
            return Ok(Plan::Duplicate(seq));
        }
        let payer = esc.payer;
        if by_payer && esc.claim_window_ms > 0 && d.now_ms < esc.expires_ms {
            let until = esc
                .expires_ms
                .min(d.now_ms.saturating_add(esc.claim_window_ms));
            let escrow = EscrowState {
                closing: true,
                expires_ms: until,
                ..esc.clone()
            };
            return Plan::append(
                Entry {
                    job: Some(job),
                    ..d.entry(
                        Kind::Close,
                        Account::Escrow(job),
                        Account::User(payer),
                        0,
                        format!(
                            "job {} closing: {} left returns at {until} ms, after claims",
                            job.short(),
                            esc.left
                        ),
                    )
                },
                Change::Close {
                    job,
                    escrow,
                    was_expiring_ms: esc.expires_ms,
                },
            );
        }
        let payer_balance = self.credited(&payer, esc.left.0)?;
        let escrow = EscrowState {
            left: Credits::ZERO,
            closed: true,
            ..esc.clone()
        };
        let why = if by_payer { "refund" } else { "expired" };
        Plan::append(
            Entry {
                job: Some(job),
                ..d.entry(
                    Kind::Refund,
                    Account::Escrow(job),
                    Account::User(payer),
                    esc.left.0,
                    format!("job {} {why}", job.short()),
                )
            },
            Change::Refund {
                job,
                escrow,
                payer,
                payer_balance,
            },
        )
    }
}

impl Ledger {
    /// Pays the provider who signs the claim from the escrow of `job`, for a result the
    /// payer's order gave it and the payer neither paid nor rejected.
    pub(super) fn plan_claim(
        &self,
        d: &Draft,
        job: JobId,
        order: &SignedOrder,
        record: SignedRecord,
        (index, proof): (u32, &[crate::entry::Hash]),
    ) -> Result<Plan, LedgerError> {
        let slot = self
            .escrows
            .get(&job)
            .ok_or(LedgerError::NoSuchEscrow(job))?;
        let esc = &slot.state;
        let parsed = parse_record(&record, job)?;
        let record_hash = blake(&record.bytes);
        if let Some(seq) = self.settled.get(&record_hash) {
            return Ok(Plan::Duplicate(*seq));
        }
        let run = (job, parsed.task, parsed.attempt);
        if let Some(seq) = self.runs_paid.get(&run) {
            return Err(LedgerError::RunPaid {
                task: parsed.task,
                attempt: parsed.attempt,
                seq: *seq,
            });
        }
        if let Some(seq) = self.rejected.get(&run) {
            return Err(LedgerError::Rejected {
                job,
                task: parsed.task,
                attempt: parsed.attempt,
                seq: *seq,
            });
        }
        if esc.closed {
            return Err(LedgerError::EscrowClosed(job));
        }
        let opens_ms = esc.claims_open_ms().ok_or(LedgerError::NoClaims(job))?;
        if d.now_ms < opens_ms {
            return Err(LedgerError::ClaimsNotOpen { job, opens_ms });
        }
        let bad = |why: String| Err(LedgerError::BadOrder(why));
        let Some(o) = order.order() else {
            return bad(format!(
                "{} bytes are not a signed order",
                order.bytes.len()
            ));
        };
        if o.bank != self.bank {
            return bad(format!("order is for bank {}", short(&o.bank)));
        }
        if o.job != job {
            return bad(format!("order is for job {}", o.job.short()));
        }
        if o.provider != d.signer {
            return bad(format!(
                "order is for provider {}, not {}",
                short(&o.provider),
                short(&d.signer)
            ));
        }
        if d.sigs == Sigs::Check && !order.signed_by(&esc.payer) {
            return bad(format!(
                "order is not signed by the escrow's payer {}",
                short(&esc.payer)
            ));
        }
        if o.price > esc.max_price {
            return bad(format!(
                "order pays {} per giga-fuel, above the escrow's {}",
                o.price, esc.max_price
            ));
        }
        if !o.covers(parsed.task, parsed.attempt, index, proof) {
            return bad(format!(
                "task {} attempt {} is not run {index} of the order",
                parsed.task, parsed.attempt
            ));
        }
        if d.sigs == Sigs::Check && !verify_ed25519(&d.signer.0, &record.bytes, &record.sig) {
            return Err(LedgerError::BadRecord(format!(
                "record is not signed by the claiming provider {}",
                short(&d.signer)
            )));
        }
        if parsed.fuel_used > esc.fuel_limit {
            return Err(LedgerError::BadRecord(format!(
                "record claims {} fuel, above the job's limit of {}",
                parsed.fuel_used, esc.fuel_limit
            )));
        }
        let need = o.price.cost(parsed.fuel_used);
        let left = esc
            .left
            .checked_sub(need)
            .ok_or(LedgerError::EscrowExhausted {
                need,
                left: esc.left,
            })?;
        let escrow = EscrowState {
            left,
            paid: esc.paid.checked_add(need).ok_or(LedgerError::Overflow)?,
            settled: esc.settled.checked_add(1).ok_or(LedgerError::Overflow)?,
            ..esc.clone()
        };
        let provider = d.signer;
        let provider_balance = self.credited(&provider, need.0)?;
        Plan::append(
            Entry {
                job: Some(job),
                task: Some(parsed.task),
                record: Some(record_hash),
                ..d.entry(
                    Kind::Claim,
                    Account::Escrow(job),
                    Account::User(provider),
                    need.0,
                    format!(
                        "job {} task {} attempt {}: claimed {} fuel at {} per giga-fuel",
                        job.short(),
                        parsed.task,
                        parsed.attempt,
                        parsed.fuel_used,
                        o.price
                    ),
                )
            },
            Change::Settle {
                job,
                escrow,
                provider,
                provider_balance,
                record: record_hash,
                run: (parsed.task, parsed.attempt),
            },
        )
    }

    /// Records that the payer of `job` will not pay for run `(task, attempt)`.
    pub(super) fn plan_reject(
        &self,
        d: &Draft,
        job: JobId,
        (task, attempt): (u32, u32),
    ) -> Result<Plan, LedgerError> {
        let slot = self
            .escrows
            .get(&job)
            .ok_or(LedgerError::NoSuchEscrow(job))?;
        let esc = &slot.state;
        if d.signer != esc.payer {
            return Err(d.not_payer(esc.payer));
        }
        if let Some(seq) = self.rejected.get(&(job, task, attempt)) {
            return Ok(Plan::Duplicate(*seq));
        }
        if let Some(seq) = self.runs_paid.get(&(job, task, attempt)) {
            return Err(LedgerError::RunPaid {
                task,
                attempt,
                seq: *seq,
            });
        }
        if esc.closed {
            return Err(LedgerError::EscrowClosed(job));
        }
        Plan::append(
            Entry {
                job: Some(job),
                task: Some(task),
                ..d.entry(
                    Kind::Reject,
                    Account::Escrow(job),
                    Account::User(esc.payer),
                    0,
                    format!(
                        "job {} task {task} attempt {attempt} rejected by its payer",
                        job.short()
                    ),
                )
            },
            Change::Reject {
                job,
                run: (task, attempt),
            },
        )
    }
}

/// Reads a settled record and checks it is for `job`.
fn parse_record(record: &SignedRecord, job: JobId) -> Result<ResultRecord, LedgerError> {
    let parsed = ResultRecord::from_signing_bytes(&record.bytes).ok_or_else(|| {
        LedgerError::BadRecord(format!(
            "{} bytes are not a signed result record",
            record.bytes.len()
        ))
    })?;
    if parsed.job != job {
        return Err(LedgerError::BadRecord(format!(
            "record is for job {}, not job {}",
            parsed.job.short(),
            job.short()
        )));
    }
    Ok(parsed)
}
