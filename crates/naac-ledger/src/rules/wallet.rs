//! The rules of the wallet requests: grants (the bank mints into an account, once each),
//! transfers between users, and registrations (the bank vouches for a provider key).

use super::plan::{Change, Draft, Plan};
use super::{Ledger, LedgerError};
use crate::entry::{Account, AccountKey, Kind};
use naac_types::Credits;

impl Ledger {
    /// A grant: the bank mints `amount` into `to`'s wallet, once per account.
    pub(super) fn plan_grant(
        &self,
        d: &Draft,
        to: AccountKey,
        amount: Credits,
    ) -> Result<Plan, LedgerError> {
        if d.signer != self.bank {
            return Err(LedgerError::NotBank);
        }
        if let Some(before) = self.grants.get(&to) {
            let conflict = LedgerError::AlreadyGranted(to);
            return Plan::again(&before.msg, before.seq, &d.seen.msg, conflict);
        }
        if amount.0 == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        let issued = self
            .issued
            .checked_add(amount.0)
            .ok_or(LedgerError::Overflow)?;
        let balance = self.credited(&to, amount.0)?;
        Plan::append(
            d.entry(
                Kind::Grant,
                Account::Mint,
                Account::User(to),
                amount.0,
                "grant".into(),
            ),
            Change::Grant {
                to,
                balance,
                issued,
                seen: d.seen,
            },
        )
    }

    /// A registration: the bank vouches for `provider`, once per key; nothing moves.
    pub(super) fn plan_register(
        &self,
        d: &Draft,
        provider: AccountKey,
    ) -> Result<Plan, LedgerError> {
        if d.signer != self.bank {
            return Err(LedgerError::NotBank);
        }
        if let Some(before) = self.registered.get(&provider) {
            let conflict = LedgerError::AlreadyRegistered(provider);
            return Plan::again(&before.msg, before.seq, &d.seen.msg, conflict);
        }
        Plan::append(
            d.entry(
                Kind::Register,
                Account::Mint,
                Account::User(provider),
                0,
                "registered provider".into(),
            ),
            Change::Register {
                provider,
                seen: d.seen,
            },
        )
    }

    /// A transfer of `amount` from `from`'s wallet to `to`'s, signed by `from`; `nonce` is
    /// its idempotency key.
    pub(super) fn plan_transfer(
        &self,
        d: &Draft,
        from: AccountKey,
        to: AccountKey,
        amount: Credits,
        nonce: u64,
    ) -> Result<Plan, LedgerError> {
        if d.signer != from {
            return Err(d.not_payer(from));
        }
        if let Some(before) = self.transfers.get(&(from, nonce)) {
            let conflict = LedgerError::NonceReused { from, nonce };
            return Plan::again(&before.msg, before.seq, &d.seen.msg, conflict);
        }
        if from == to {
            return Err(LedgerError::SelfTransfer);
        }
        if amount.0 == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        let from_balance = self.debited(&from, amount.0, None)?;
        let to_balance = self.credited(&to, amount.0)?;
        Plan::append(
            d.entry(
                Kind::Transfer,
                Account::User(from),
                Account::User(to),
                amount.0,
                format!("transfer {nonce}"),
            ),
            Change::Transfer {
                from,
                from_balance,
                to,
                to_balance,
                nonce,
                seen: d.seen,
            },
        )
    }
}
