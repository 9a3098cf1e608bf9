//! The faucet: what a bank gives new accounts on its own. By default nothing — keys are
//! free, so a bank that granted every new key would let anyone mint without bound; credits
//! then come from the operator (`naac bank grant`) or from payments. A bank may run a faucet
//! that grants `amount` to a key with its first valid request, at most `per_hour` grants an
//! hour in all (a token bucket, full at start), which bounds the money it mints. No IO; time
//! is passed in.

use naac_types::Credits;

/// A bank's faucet settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faucet {
    /// Credits per new account; zero: no faucet.
    pub amount: Credits,
    /// Most grants an hour, all accounts together (`None`: no limit, for a bank that only
    /// this machine's user reaches).
    pub per_hour: Option<u32>,
}

impl Faucet {
    /// No faucet: the bank grants nothing on its own.
    pub const NONE: Faucet = Faucet {
        amount: Credits::ZERO,
        per_hour: None,
    };

    pub fn is_on(&self) -> bool {
        self.amount != Credits::ZERO
    }
}

const HOUR_MS: u64 = 3_600_000;

/// The faucet's rate limit: a token bucket counted exactly, in grant-milliseconds (a grant
/// costs an hour's worth; every elapsed millisecond adds `per_hour`).
#[derive(Debug)]
pub struct Bucket {
    per_hour: Option<u32>,
    units: u64,
    at_ms: Option<u64>,
}

impl Bucket {
    pub fn new(per_hour: Option<u32>) -> Self {
        Self {
            per_hour,
            units: u64::from(per_hour.unwrap_or(0)) * HOUR_MS,
            at_ms: None,
        }
    }

    /// Takes one grant at `now_ms`, if the rate allows one.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let Some(n) = self.per_hour else {
            return true;
        };
        let cap = u64::from(n) * HOUR_MS;
        let elapsed = self.at_ms.map_or(0, |at| now_ms.saturating_sub(at));
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(u64::from(n)))
            .min(cap);
        self.at_ms = Some(self.at_ms.map_or(now_ms, |at| at.max(now_ms)));
        if self.units < HOUR_MS {
            return false;
        }
        self.units -= HOUR_MS;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_stated_rate_is_granted() {
        let mut b = Bucket::new(Some(10));
        let t0 = 1_000_000;
        let granted = (0..1_000).filter(|_| b.take(t0)).count();
        assert_eq!(granted, 10, "a full bucket, then nothing");
        // Six minutes later: one more (10 an hour).
        assert!(!b.take(t0 + 5 * 60_000));
        assert!(b.take(t0 + 6 * 60_000));
        assert!(!b.take(t0 + 6 * 60_000));
        // A day later the bucket is full again, not fuller.
        let later = t0 + 24 * HOUR_MS;
        assert_eq!((0..100).filter(|_| b.take(later)).count(), 10);
    }

    #[test]
    fn no_limit_and_no_faucet() {
        let mut b = Bucket::new(None);
        assert!((0..10_000).all(|_| b.take(0)));
        assert!(!Faucet::NONE.is_on());
        assert!(!Faucet::default().is_on());
    }
}
