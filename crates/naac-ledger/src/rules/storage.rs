//! The rule of storage payments: an escrow opened for stored data pays each host once per
//! period its shards passed their audits.

use super::error::LedgerError;
use super::plan::{Change, Draft, Plan};
use super::{EscrowState, Ledger, short};
use crate::entry::{Account, AccountKey, Entry, Kind};
use naac_types::{Credits, JobId};

impl Ledger {
    /// Pays `provider` `amount` from the escrow of `job` for storage period `period`.
    pub(super) fn plan_store_pay(
        &self,
        d: &Draft,
        job: JobId,
        provider: AccountKey,
        period: u32,
        amount: Credits,
    ) -> Result<Plan, LedgerError> {
        let slot = self.paying_escrow(d, job)?;
        let esc = &slot.state;
        if let Some(before) = self.store_paid.get(&(job, provider, period)) {
            let conflict = LedgerError::StorePeriodPaid {
                job,
                provider,
                period,
                seq: before.seq,
            };
            return Plan::again(&before.msg, before.seq, &d.seen.msg, conflict);
        }
        if esc.closed {
            return Err(LedgerError::EscrowClosed(job));
        }
        if amount.0 == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        if provider == esc.payer {
            return Err(LedgerError::SelfTransfer);
        }
        // Committed orders' reservations (none for a storage escrow) stay untouched.
        let free = esc.left.0 - esc.reserved.0;
        if amount.0 > free {
            return Err(LedgerError::EscrowExhausted {
                need: amount,
                left: Credits(free),
            });
        }
        let escrow = EscrowState {
            left: Credits(esc.left.0 - amount.0),
            paid: esc.paid.checked_add(amount).ok_or(LedgerError::Overflow)?,
            ..esc.clone()
        };
        let provider_balance = self.credited(&provider, amount.0)?;
        Plan::append(
            Entry {
                job: Some(job),
                task: Some(period),
                ..d.entry(
                    Kind::Storage,
                    Account::Escrow(job),
                    Account::User(provider),
                    amount.0,
                    format!(
                        "storage {} period {period} to {}",
                        job.short(),
                        short(&provider)
                    ),
                )
            },
            Change::StorePay {
                job,
                escrow,
                provider,
                provider_balance,
                period,
                seen: d.seen,
            },
        )
    }
}
