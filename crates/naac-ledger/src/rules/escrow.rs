//! The rules of a job's escrow: opening it, settling a provider's result from it (at the
//! auction's price) and refunding what is left.

use super::asks::{AskContext, check_asks};
use super::plan::{Change, Draft, Plan, Sigs};
use super::{EscrowSlot, EscrowState, Ledger, LedgerError, blake, short};
use crate::entry::{Account, AccountKey, Entry, Kind};
use crate::request::{Order, SignedOrder, SignedRecord};
use naac_market::{SignedAsk, verify_ed25519};
use naac_types::{Credits, JobId, Price, ResultRecord};

/// How far ahead an escrow opened with a spend token may expire: the requester's rolling
/// escrow asks for a week, and a day more allows for clocks.
pub const MAX_SPEND_ESCROW_MS: u64 = 8 * 24 * 3600 * 1000;

impl Ledger {
    /// The escrow of `job`.
    fn escrow_slot(&self, job: JobId) -> Result<&EscrowSlot, LedgerError> {
        self.escrows.get(&job).ok_or(LedgerError::NoSuchEscrow(job))
    }

    /// The escrow of `job`, for a request its payer must have signed.
    pub(super) fn paying_escrow(&self, d: &Draft, job: JobId) -> Result<&EscrowSlot, LedgerError> {
        let slot = self.escrow_slot(job)?;
        if d.signer != slot.state.signer() {
            return Err(d.not_payer(slot.state.signer()));
        }
        Ok(slot)
    }

    /// A spend token's checks for escrowing `amount` more for `job` (whose escrow holds
    /// `before` so far) from `payer`'s wallet, signed by `d.signer`: the token's grant and
    /// that grant's new running total. `grant`, when given, must be the token's.
    fn spend_check(
        &self,
        d: &Draft,
        (token, payer, job): (&str, AccountKey, JobId),
        (before, amount): (u64, u64),
        grant: Option<&[u8]>,
    ) -> Result<(Vec<u8>, u64), LedgerError> {
        let err = |e: naac_token::TokenError| LedgerError::Token(e.to_string());
        let t = naac_token::Verifier::trusting(&[payer.0])
            .and_then(|v| v.verify(token))
            .map_err(err)?;
        let id = t.revocation_ids().into_iter().next().unwrap_or_default();
        if grant.is_some_and(|g| g != id.as_slice()) {
            return Err(LedgerError::Token(
                "the token is not of the grant the escrow was opened with".into(),
            ));
        }
        let spent = self
            .spent
            .get(&id)
            .copied()
            .unwrap_or(0)
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)?;
        let job_hex: String = job.0.iter().map(|b| format!("{b:02x}")).collect();
        t.authorize_spend(&naac_token::SpendRequest {
            user: &d.signer.0,
            job: &job_hex,
            amount: before.checked_add(amount).ok_or(LedgerError::Overflow)?,
            spent,
            now: std::time::UNIX_EPOCH + std::time::Duration::from_millis(d.now_ms),
        })
        .map_err(err)?;
        Ok((id, spent))
    }

    /// The latest expiry an escrow opened or topped up with `token` may have at `now_ms`: the
    /// token's own expiry, and at most [`MAX_SPEND_ESCROW_MS`] ahead (its controller must not
    /// lock the payer's credits away for longer).
    fn spend_expiry(token: &str, payer: AccountKey, now_ms: u64) -> u64 {
        let cap = now_ms.saturating_add(MAX_SPEND_ESCROW_MS);
        naac_token::Verifier::trusting(&[payer.0])
            .and_then(|v| v.verify(token))
            .ok()
            .and_then(|t| t.expires_through(t.revocation_ids().len().saturating_sub(1)))
            .and_then(|e| e.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(cap, |d| cap.min(d.as_millis() as u64))
    }

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
        (expires_ms, claim_window_ms): (u64, u64),
        spend: Option<&str>,
    ) -> Result<Plan, LedgerError> {
        if spend.is_none() && d.signer != payer {
            return Err(d.not_payer(payer));
        }
        if let Some(slot) = self.escrows.get(&job) {
            let conflict = LedgerError::EscrowExists(job);
            return Plan::again(&slot.open_msg, slot.open_seq, &d.seen.msg, conflict);
        }
        if amount.0 == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        let spent = match spend {
            Some(t) => {
                let latest = Self::spend_expiry(t, payer, d.now_ms);
                if expires_ms > latest {
                    return Err(LedgerError::Token(format!(
                        "an escrow opened with a spend token expires by {latest} (the token's expiry, and at most 8 days ahead); this one asks for {expires_ms}"
                    )));
                }
                Some(self.spend_check(d, (t, payer, job), (0, amount.0), None)?)
            }
            None => None,
        };
        let payer_balance = self.debited(&payer, amount.0, Some(job))?;
        let slot = EscrowSlot {
            state: EscrowState {
                payer,
                controller: spend.map(|_| d.signer).filter(|s| *s != payer),
                grant: spent.as_ref().map(|(g, _)| g.clone()),
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
                reserved: Credits::ZERO,
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
                spent,
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
        (nonce, expires_ms): (u64, Option<u64>),
        spend: Option<&str>,
    ) -> Result<Plan, LedgerError> {
        let slot = self.paying_escrow(d, job)?;
        let esc = &slot.state;
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
        let spent = match (&esc.grant, spend) {
            (Some(g), Some(t)) => {
                Some(self.spend_check(d, (t, payer, job), (esc.opened.0, amount.0), Some(g))?)
            }
            (Some(_), None) => {
                return Err(LedgerError::Token(
                    "an escrow opened with a spend token is topped up with one".into(),
                ));
            }
            (None, _) => None,
        };
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
                spent,
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
        let slot = self.paying_escrow(d, job)?;
        let esc = &slot.state;
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
        within_fuel_limit(&parsed, esc)?;
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
        let run = (job, parsed.task, parsed.attempt, provider);
        if esc.claim_window_ms > 0
            && let Some(seq) = self.runs_paid.get(&run)
        {
            // Once per run and provider, whichever record (a claim may have paid it).
            return Err(LedgerError::RunPaid {
                task: parsed.task,
                attempt: parsed.attempt,
                seq: *seq,
            });
        }
        let need = price.cost(fuel);
        let (escrow, released) = self.pay_from(esc, &run, need)?;
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
                released,
            },
        )
    }

    /// Closes the escrow of `job` and returns what is left to its payer.
    pub(super) fn plan_refund(&self, d: &Draft, job: JobId) -> Result<Plan, LedgerError> {
        let slot = self.escrow_slot(job)?;
        let esc = &slot.state;
        let by_payer = d.signer == esc.signer();
        let expired_by_bank = d.signer == self.bank && d.now_ms >= esc.expires_ms;
        if !(by_payer || expired_by_bank) {
            return Err(d.not_payer(esc.signer()));
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
        // With reservations left, the payer's refund returns what they do not hold and
        // closes the escrow: its providers may claim until the window ends. With none, it
        // is an ordinary refund.
        if by_payer && esc.reserved.0 > 0 && d.now_ms < esc.expires_ms {
            let until = esc
                .expires_ms
                .min(d.now_ms.saturating_add(esc.claim_window_ms));
            let free = esc.left.0 - esc.reserved.0;
            let payer_balance = self.credited(&payer, free)?;
            let escrow = EscrowState {
                closing: true,
                expires_ms: until,
                left: esc.reserved,
                ..esc.clone()
            };
            return Plan::append(
                Entry {
                    job: Some(job),
                    ..d.entry(
                        Kind::Close,
                        Account::Escrow(job),
                        Account::User(payer),
                        free,
                        format!(
                            "job {} closing: {} reserved for providers' claims until {until} ms",
                            job.short(),
                            esc.reserved
                        ),
                    )
                },
                Change::Close {
                    job,
                    escrow,
                    was_expiring_ms: esc.expires_ms,
                    payer,
                    payer_balance,
                },
            );
        }
        let payer_balance = self.credited(&payer, esc.left.0)?;
        let escrow = EscrowState {
            left: Credits::ZERO,
            reserved: Credits::ZERO,
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
    /// Pays `need` from `esc` for run `run` of its provider: from what the provider's
    /// committed orders reserve (the run's worst case is freed, unless its rejection freed
    /// it already) or from what no reservation holds, never from another provider's share.
    /// The escrow after it, and how much of the provider's reservation was freed.
    pub(super) fn pay_from(
        &self,
        esc: &EscrowState,
        run: &super::Run,
        need: Credits,
    ) -> Result<(EscrowState, u64), LedgerError> {
        let (job, _, _, provider) = run;
        let held = self
            .reservations
            .get(&(*job, *provider))
            .copied()
            .unwrap_or(0);
        let worst = esc.max_price.cost(esc.fuel_limit).0;
        let released = if self.rejected.contains_key(run) {
            0
        } else {
            held.min(worst)
        };
        let reserved = esc.reserved.0 - released;
        let free = esc.left.0 - reserved;
        if need.0 > free {
            return Err(LedgerError::EscrowExhausted {
                need,
                left: Credits(free),
            });
        }
        let escrow = EscrowState {
            left: Credits(esc.left.0 - need.0),
            reserved: Credits(reserved),
            paid: esc.paid.checked_add(need).ok_or(LedgerError::Overflow)?,
            settled: esc.settled.checked_add(1).ok_or(LedgerError::Overflow)?,
            ..esc.clone()
        };
        Ok((escrow, released))
    }

    /// Reads an order a request carries and checks it is for this bank and `job`, signed by
    /// the escrow's payer, within its price. Returns it with the hash of its signed bytes.
    fn read_order(
        &self,
        d: &Draft,
        esc: &EscrowState,
        job: JobId,
        order: &SignedOrder,
    ) -> Result<(Order, crate::entry::Hash), LedgerError> {
        let bad = |why: String| LedgerError::BadOrder(why);
        let o = order.order().ok_or_else(|| {
            bad(format!(
                "{} bytes are not a signed order",
                order.bytes.len()
            ))
        })?;
        if o.bank != self.bank {
            return Err(bad(format!("order is for bank {}", short(&o.bank))));
        }
        if o.job != job {
            return Err(bad(format!("order is for job {}", o.job.short())));
        }
        if d.sigs == Sigs::Check && !order.signed_by(&esc.signer()) {
            return Err(bad(format!(
                "order is not signed by the escrow's payer {}",
                short(&esc.signer())
            )));
        }
        if o.price > esc.max_price {
            return Err(bad(format!(
                "order pays {} per giga-fuel, above the escrow's {}",
                o.price, esc.max_price
            )));
        }
        Ok((o, blake(&order.bytes)))
    }

    /// Reserves the worst case of an order's runs for its provider in the escrow of `job`.
    pub(super) fn plan_commit(
        &self,
        d: &Draft,
        job: JobId,
        order: &SignedOrder,
    ) -> Result<Plan, LedgerError> {
        let slot = self.paying_escrow(d, job)?;
        let esc = &slot.state;
        let (o, hash) = self.read_order(d, esc, job, order)?;
        if let Some(seq) = self.commits.get(&hash) {
            return Ok(Plan::Duplicate(*seq));
        }
        if esc.closed {
            return Err(LedgerError::EscrowClosed(job));
        }
        if esc.closing {
            return Err(LedgerError::EscrowClosing(job));
        }
        if esc.claim_window_ms == 0 {
            return Err(LedgerError::NoClaims(job));
        }
        let worst = esc.max_price.cost(esc.fuel_limit);
        let amount = worst
            .0
            .checked_mul(u64::from(o.tasks))
            .ok_or(LedgerError::Overflow)?;
        let free = esc.left.0 - esc.reserved.0;
        if amount > free {
            return Err(LedgerError::EscrowExhausted {
                need: Credits(amount),
                left: Credits(free),
            });
        }
        let held = self
            .reservations
            .get(&(job, o.provider))
            .copied()
            .unwrap_or(0)
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)?;
        let escrow = EscrowState {
            reserved: Credits(esc.reserved.0 + amount),
            ..esc.clone()
        };
        Plan::append(
            Entry {
                job: Some(job),
                ..d.entry(
                    Kind::Commit,
                    Account::Escrow(job),
                    Account::User(o.provider),
                    0,
                    format!(
                        "job {}: {} runs at {} per giga-fuel, {} reserved",
                        job.short(),
                        o.tasks,
                        o.price,
                        Credits(amount)
                    ),
                )
            },
            Change::Commit {
                job,
                escrow,
                provider: o.provider,
                held,
                order: hash,
            },
        )
    }

    /// Pays the provider who signs the claim from the escrow of `job`, for a result the
    /// payer's committed order gave it and the payer neither paid nor rejected.
    pub(super) fn plan_claim(
        &self,
        d: &Draft,
        job: JobId,
        order: &SignedOrder,
        record: SignedRecord,
        (index, proof): (u32, &[crate::entry::Hash]),
    ) -> Result<Plan, LedgerError> {
        let slot = self.escrow_slot(job)?;
        let esc = &slot.state;
        let parsed = parse_record(&record, job)?;
        let record_hash = blake(&record.bytes);
        if let Some(seq) = self.settled.get(&record_hash) {
            return Ok(Plan::Duplicate(*seq));
        }
        let run = (job, parsed.task, parsed.attempt, d.signer);
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
        let (o, hash) = self.read_order(d, esc, job, order)?;
        let bad = |why: String| Err(LedgerError::BadOrder(why));
        if o.provider != d.signer {
            return bad(format!(
                "order is for provider {}, not {}",
                short(&o.provider),
                short(&d.signer)
            ));
        }
        if !self.commits.contains_key(&hash) {
            return bad("order was never committed at the bank".into());
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
        within_fuel_limit(&parsed, esc)?;
        let need = o.price.cost(parsed.fuel_used);
        let (escrow, released) = self.pay_from(esc, &run, need)?;
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
                released,
            },
        )
    }

    /// Records that the payer of `job` will not pay for run `(task, attempt)` of a committed
    /// order, and frees the run's share of its provider's reservation.
    pub(super) fn plan_reject(
        &self,
        d: &Draft,
        job: JobId,
        order: &SignedOrder,
        (task, attempt): (u32, u32),
        (index, proof): (u32, &[crate::entry::Hash]),
    ) -> Result<Plan, LedgerError> {
        let slot = self.paying_escrow(d, job)?;
        let esc = &slot.state;
        let (o, hash) = self.read_order(d, esc, job, order)?;
        let run = (job, task, attempt, o.provider);
        if let Some(seq) = self.rejected.get(&run) {
            return Ok(Plan::Duplicate(*seq));
        }
        if let Some(seq) = self.runs_paid.get(&run) {
            return Err(LedgerError::RunPaid {
                task,
                attempt,
                seq: *seq,
            });
        }
        if esc.closed {
            return Err(LedgerError::EscrowClosed(job));
        }
        if !self.commits.contains_key(&hash) {
            return Err(LedgerError::BadOrder(
                "order was never committed at the bank".into(),
            ));
        }
        if !o.covers(task, attempt, index, proof) {
            return Err(LedgerError::BadOrder(format!(
                "task {task} attempt {attempt} is not run {index} of the order"
            )));
        }
        let held = self
            .reservations
            .get(&(job, o.provider))
            .copied()
            .unwrap_or(0);
        let released = held.min(esc.max_price.cost(esc.fuel_limit).0);
        let escrow = EscrowState {
            reserved: Credits(esc.reserved.0 - released),
            ..esc.clone()
        };
        Plan::append(
            Entry {
                job: Some(job),
                task: Some(task),
                ..d.entry(
                    Kind::Reject,
                    Account::Escrow(job),
                    Account::User(o.provider),
                    0,
                    format!(
                        "job {} task {task} attempt {attempt} rejected by its payer",
                        job.short()
                    ),
                )
            },
            Change::Reject {
                job,
                run,
                escrow,
                released,
            },
        )
    }
}

/// A paid result may not claim more fuel than the job's per-task limit.
fn within_fuel_limit(parsed: &ResultRecord, esc: &EscrowState) -> Result<(), LedgerError> {
    if parsed.fuel_used > esc.fuel_limit {
        return Err(LedgerError::BadRecord(format!(
            "record claims {} fuel, above the job's limit of {}",
            parsed.fuel_used, esc.fuel_limit
        )));
    }
    Ok(())
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
