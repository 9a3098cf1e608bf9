//! The auction's asks at settlement: the reverse Vickrey rule a paid price must follow,
//! and a memo of ask signatures already verified.

use super::{LedgerError, short};
use crate::entry::{AccountKey, Hash};
use naac_market::SignedAsk;
use naac_types::{JobId, Price, hex};

/// A bounded memo of signed asks whose signatures verified (BLAKE3 of the signed bytes and
/// the signature). Not state: two ledgers with different memos are equal.
#[derive(Clone, Debug, Default)]
pub(super) struct AskCache(std::cell::RefCell<std::collections::HashSet<Hash>>);

/// Most asks remembered; the memo is cleared when full.
const ASK_CACHE: usize = 65_536;

impl PartialEq for AskCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for AskCache {}

impl AskCache {
    /// Whether the ask's signature is its provider's, checking each distinct ask once.
    pub(super) fn verified(&self, a: &SignedAsk) -> bool {
        let mut h = blake3::Hasher::new();
        h.update(&a.ask.signing_bytes());
        h.update(&a.sig);
        let id = *h.finalize().as_bytes();
        if self.0.borrow().contains(&id) {
            return true;
        }
        if !a.verify() {
            return false;
        }
        let mut set = self.0.borrow_mut();
        if set.len() >= ASK_CACHE {
            set.clear();
        }
        set.insert(id);
        true
    }
}

/// Entries from this time on (Unix milliseconds, 2026-12-07 00:00 UTC) follow the rules
/// that came with hostile peers: a second ask only from a provider with standing, and no
/// ask cited long after it expired. Earlier entries replay under the rules they were made
/// under.
pub const HOSTILE_RULES_SINCE_MS: u64 = 1_796_601_600_000;

/// How long after its expiry an ask may still be cited at settlement: results are paid
/// after the work, and the work was awarded while the ask was valid.
pub const ASK_GRACE_MS: u64 = 24 * 3600 * 1000;

/// What a settlement's asks are checked against besides themselves.
pub(super) struct AskContext<'a> {
    /// `None`: signatures are trusted (the bank's own reload).
    pub(super) check: Option<&'a AskCache>,
    /// The entry's time.
    pub(super) now_ms: u64,
    /// Whether a key has standing at the bank.
    pub(super) standing: &'a dyn Fn(&AccountKey) -> bool,
}

/// The reverse Vickrey rule at settlement: the winner's own ask is at most the price, and
/// the price is the second-lowest ask (another provider's, one with standing: the operator
/// vouched for it) or, for a lone bidder, the escrow's max price. Neither ask may have
/// expired more than [`ASK_GRACE_MS`] before the settlement.
pub(super) fn check_asks(
    job: JobId,
    provider: &AccountKey,
    price: Price,
    max_price: Price,
    winner: &SignedAsk,
    second: Option<&SignedAsk>,
    cx: &AskContext<'_>,
) -> Result<(), LedgerError> {
    let check = cx.check;
    let hostile_rules = cx.now_ms >= HOSTILE_RULES_SINCE_MS;
    let bad = |s: String| Err(LedgerError::BadAsk(s));
    let stale =
        |expires_ms: u64| hostile_rules && expires_ms.saturating_add(ASK_GRACE_MS) < cx.now_ms;
    let w = &winner.ask;
    if stale(w.expires_ms) {
        return bad(format!(
            "winner's ask expired at {} ms, more than a day before this settlement",
            w.expires_ms
        ));
    }
    if check.is_some_and(|c| !c.verified(winner)) {
        return bad("winner's ask is not signed by its provider".into());
    }
    if w.job != job {
        return bad(format!(
            "winner's ask is for job {}, not job {}",
            w.job.short(),
            job.short()
        ));
    }
    if w.provider != provider.0 {
        return bad(format!(
            "winner's ask is from provider {}, not the paid provider {}",
            hex(&w.provider[..8]),
            short(provider)
        ));
    }
    if price < w.price {
        return bad(format!(
            "price {price} is below the winner's ask {}",
            w.price
        ));
    }
    if price > max_price {
        return bad(format!(
            "price {price} is above the escrow's max price {max_price}"
        ));
    }
    match second {
        Some(second) => {
            let s = &second.ask;
            if check.is_some_and(|c| !c.verified(second)) {
                return bad("second ask is not signed by its provider".into());
            }
            if s.job != job {
                return bad(format!(
                    "second ask is for job {}, not job {}",
                    s.job.short(),
                    job.short()
                ));
            }
            if s.provider == w.provider {
                return bad(
                    "second ask is from the winner itself; it must be another provider's".into(),
                );
            }
            if hostile_rules && !(cx.standing)(&AccountKey(s.provider)) {
                return bad(format!(
                    "second ask is from provider {}, which has no standing at this bank (its operator has not registered it); without a second ask from a registered provider the price is the escrow's max price",
                    hex(&s.provider[..8])
                ));
            }
            if stale(s.expires_ms) {
                return bad(format!(
                    "second ask expired at {} ms, more than a day before this settlement",
                    s.expires_ms
                ));
            }
            if s.price < w.price {
                return bad(format!(
                    "second ask {} is below the winner's ask {}",
                    s.price, w.price
                ));
            }
            if price != s.price {
                return bad(format!("price {price} is not the second ask's {}", s.price));
            }
        }
        None => {
            if price != max_price {
                return bad(format!(
                    "a lone bidder is paid the escrow's max price {max_price}, not {price}"
                ));
            }
        }
    }
    Ok(())
}
