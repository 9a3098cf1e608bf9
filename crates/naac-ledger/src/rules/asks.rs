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

/// The reverse Vickrey rule at settlement: the winner's own ask is at most the price, and
/// the price is the second-lowest ask (another provider's) or, for a lone bidder, the
/// escrow's max price.
pub(super) fn check_asks(
    job: JobId,
    provider: &AccountKey,
    price: Price,
    max_price: Price,
    winner: &SignedAsk,
    second: Option<&SignedAsk>,
    // `None`: signatures are trusted (the bank's own reload).
    check: Option<&AskCache>,
) -> Result<(), LedgerError> {
    let bad = |s: String| Err(LedgerError::BadAsk(s));
    let w = &winner.ask;
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
