//! Whole-ledger verification (`naac wallet verify`): replay every entry from the first with
//! every check, then hold the result against the bank's signed checkpoint.

use crate::entry::{Account, AccountKey, Entry, Hash};
use crate::rules::{Ledger, ReplayError};
use crate::tree_head::TreeHead;
use naac_types::{Credits, hex};

/// What a verified ledger holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Number of entries.
    pub entries: u64,
    /// Credits the mint issued.
    pub issued: Credits,
    /// Every user wallet and escrow with its balance, in [`Account`] order.
    pub accounts: Vec<(Account, Credits)>,
    /// Size of the checkpoint checked, if one was given.
    pub checkpoint_size: Option<u64>,
    /// Merkle root over all entries.
    pub root: Hash,
    /// Hash of the last entry (zeros when empty).
    pub head: Hash,
}

impl Report {
    /// The verified balance of an account (zero for accounts the ledger never saw; the
    /// mint's is zero, see `issued`).
    pub fn balance(&self, account: &Account) -> Credits {
        self.accounts
            .binary_search_by(|(a, _)| a.cmp(account))
            .map_or(Credits::ZERO, |i| self.accounts[i].1)
    }

    /// Checks a balance someone claims (the bank, a wallet) against the verified one.
    pub fn check_balance(&self, account: &Account, claimed: Credits) -> Result<(), VerifyError> {
        let actual = self.balance(account);
        if actual == claimed {
            Ok(())
        } else {
            Err(VerifyError::BalanceMismatch {
                account: *account,
                claimed,
                actual,
            })
        }
    }
}

/// Why a ledger does not verify; names the first thing wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// An entry does not replay ("entry 5: hash chain broken: prev does not match entry 4").
    #[error(transparent)]
    Entry(#[from] ReplayError),
    /// The balances do not add up to what was issued.
    #[error("balances add up to {held} credits but {issued} were issued")]
    Unbalanced { held: Credits, issued: Credits },
    /// The checkpoint is signed by someone else or not at all.
    #[error("checkpoint signature is not the bank's")]
    CheckpointSignature,
    /// The checkpoint names another bank.
    #[error("checkpoint is from bank {}, not {}", hex(&.checkpoint.0[..8]), hex(&.bank.0[..8]))]
    CheckpointBank {
        checkpoint: AccountKey,
        bank: AccountKey,
    },
    /// The checkpoint covers entries that are not there.
    #[error("checkpoint covers {size} entries; only {len} present")]
    CheckpointTooLarge { size: u64, len: u64 },
    /// The checkpoint's root is not the root of its first `size` entries.
    #[error("checkpoint root does not match the entries")]
    CheckpointRoot,
    /// The checkpoint's head is not the hash of entry `size - 1`.
    #[error("checkpoint head does not match the entries")]
    CheckpointHead,
    /// A claimed balance differs from the verified one.
    #[error("{} has {actual} credits, not the claimed {claimed}", .account.to_text())]
    BalanceMismatch {
        account: Account,
        claimed: Credits,
        actual: Credits,
    },
}

/// Replays `entries` (in seq order, from 0) into a fresh [`Ledger`] of `bank` with every
/// check (chain, signatures, rules), checks that the balances add up to what was issued and,
/// if `checkpoint` is given, that it is the bank's signature over the root and head of the
/// first `checkpoint.size` entries.
pub fn verify_entries(
    bank: AccountKey,
    entries: impl IntoIterator<Item = Entry>,
    checkpoint: Option<&TreeHead>,
) -> Result<Report, VerifyError> {
    let mut ledger = Ledger::new(bank);
    // Hash of entry `checkpoint.size - 1`, remembered as it goes by.
    let mut head_at_checkpoint = [0u8; 32];
    let want = checkpoint.and_then(|c| c.size.checked_sub(1));
    for entry in entries {
        ledger.replay(&entry)?;
        if Some(entry.seq) == want {
            head_at_checkpoint = ledger.head();
        }
    }
    let held = ledger.held();
    if held != u128::from(ledger.issued().0) {
        return Err(VerifyError::Unbalanced {
            held: Credits(u64::try_from(held).unwrap_or(u64::MAX)),
            issued: ledger.issued(),
        });
    }
    if let Some(c) = checkpoint {
        check_checkpoint(&ledger, c, &head_at_checkpoint)?;
    }
    Ok(Report {
        entries: ledger.len(),
        issued: ledger.issued(),
        accounts: ledger.accounts().collect(),
        checkpoint_size: checkpoint.map(|c| c.size),
        root: ledger.root(),
        head: ledger.head(),
    })
}

/// Checks a signed checkpoint against a replayed ledger; `head` is the hash of entry
/// `c.size - 1` (zeros for size 0).
fn check_checkpoint(ledger: &Ledger, c: &TreeHead, head: &Hash) -> Result<(), VerifyError> {
    if c.bank != ledger.bank() {
        return Err(VerifyError::CheckpointBank {
            checkpoint: c.bank,
            bank: ledger.bank(),
        });
    }
    if !c.signature_ok() {
        return Err(VerifyError::CheckpointSignature);
    }
    if c.size > ledger.len() {
        return Err(VerifyError::CheckpointTooLarge {
            size: c.size,
            len: ledger.len(),
        });
    }
    if ledger.tree().root_at(c.size) != Some(c.root) {
        return Err(VerifyError::CheckpointRoot);
    }
    if c.head != *head {
        return Err(VerifyError::CheckpointHead);
    }
    Ok(())
}
