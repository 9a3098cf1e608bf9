//! The billing unit: credits, and prices in credits per giga-fuel.
//!
//! Fuel is wasmtime's count of executed WebAssembly instructions (roughly), so a price per
//! giga-fuel means the same on every host whatever its CPU: a faster host earns more per
//! second, not more per unit of work. Amounts are integers of micro-credits (one credit is
//! 1,000,000 µc) and prices integers of micro-credits per giga-fuel; there are no floats
//! anywhere in the books. Text forms are decimal credits with up to six places ("12.5").

use serde::{Deserialize, Serialize};
use std::fmt;

/// Micro-credits in one credit.
pub const MICROS: u64 = 1_000_000;
/// Fuel in one giga-fuel, the unit prices are quoted per.
pub const GIGA: u64 = 1_000_000_000;

/// An amount of money, in micro-credits.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Credits(pub u64);

/// A price, in micro-credits per giga-fuel.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Price(pub u64);

impl Credits {
    pub const ZERO: Credits = Credits(0);

    /// Whole credits.
    pub fn whole(n: u64) -> Self {
        Credits(n.saturating_mul(MICROS))
    }

    pub fn checked_add(self, o: Credits) -> Option<Credits> {
        self.0.checked_add(o.0).map(Credits)
    }

    pub fn checked_sub(self, o: Credits) -> Option<Credits> {
        self.0.checked_sub(o.0).map(Credits)
    }

    pub fn saturating_sub(self, o: Credits) -> Credits {
        Credits(self.0.saturating_sub(o.0))
    }

    /// Parses decimal credits: "12", "12.5", "0.000001", "1_000".
    pub fn parse(s: &str) -> Result<Credits, String> {
        parse_micros(s).map(Credits)
    }
}

impl Price {
    /// Whole credits per giga-fuel.
    pub fn whole(n: u64) -> Self {
        Price(n.saturating_mul(MICROS))
    }

    /// Parses decimal credits per giga-fuel: "2", "0.25".
    pub fn parse(s: &str) -> Result<Price, String> {
        parse_micros(s).map(Price)
    }

    /// What `fuel` costs at this price, rounded up to the next micro-credit (a provider is
    /// never paid less than its price); saturates instead of overflowing.
    pub fn cost(self, fuel: u64) -> Credits {
        let v = (self.0 as u128 * fuel as u128).div_ceil(GIGA as u128);
        Credits(u64::try_from(v).unwrap_or(u64::MAX))
    }

    /// This price times a multiplier (an owner's window), rounded up.
    pub fn scaled(self, m: f64) -> Price {
        if !(m.is_finite() && m >= 1.0) {
            return self;
        }
        let v = (self.0 as f64 * m).ceil();
        Price(if v >= u64::MAX as f64 {
            u64::MAX
        } else {
            v as u64
        })
    }
}

fn parse_micros(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let t = t
        .strip_suffix("credits")
        .or_else(|| t.strip_suffix("credit"))
        .unwrap_or(&t)
        .trim();
    let bad = || format!("\"{s}\" is not an amount of credits; write e.g. \"12\" or \"0.5\"");
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > 6 {
        return Err(format!(
            "\"{s}\" has more than 6 decimal places; the smallest amount is 0.000001 credits"
        ));
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse()
            .map_err(|_| format!("\"{s}\" is too large an amount"))?
    };
    let mut micros = 0u64;
    for c in frac.chars().chain(std::iter::repeat('0')).take(6) {
        micros = micros * 10 + (c as u64 - '0' as u64);
    }
    whole
        .checked_mul(MICROS)
        .and_then(|w| w.checked_add(micros))
        .ok_or_else(|| format!("\"{s}\" is too large an amount"))
}

fn fmt_micros(v: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let whole = v / MICROS;
    let frac = v % MICROS;
    // Thousands separators on the whole part: "1,200".
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac == 0 {
        write!(f, "{grouped}")
    } else {
        let s = format!("{frac:06}");
        write!(f, "{grouped}.{}", s.trim_end_matches('0'))
    }
}

impl fmt::Display for Credits {
    /// "1,200.5" (credits).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_micros(self.0, f)
    }
}

impl fmt::Display for Price {
    /// "2.5" (credits per giga-fuel).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_micros(self.0, f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_show() {
        assert_eq!(Credits::parse("12").unwrap(), Credits(12_000_000));
        assert_eq!(Credits::parse("0.5").unwrap(), Credits(500_000));
        assert_eq!(Credits::parse(".000001").unwrap(), Credits(1));
        assert_eq!(
            Credits::parse("1_000 credits").unwrap(),
            Credits::whole(1000)
        );
        assert!(
            Credits::parse("1.0000001")
                .unwrap_err()
                .contains("6 decimal")
        );
        assert!(Credits::parse("-1").is_err());
        assert!(Credits::parse("").is_err());
        assert!(Credits::parse("abc").is_err());
        assert!(Credits::parse("99999999999999999999").is_err());
        assert_eq!(Credits(1_200_500_000).to_string(), "1,200.5");
        assert_eq!(Credits(1).to_string(), "0.000001");
        assert_eq!(Credits::whole(300).to_string(), "300");
        assert_eq!(Price::parse("2.25").unwrap().to_string(), "2.25");
    }

    #[test]
    fn cost_rounds_up_and_saturates() {
        assert_eq!(Price::whole(1).cost(GIGA), Credits::whole(1));
        assert_eq!(Price::whole(2).cost(GIGA / 2), Credits::whole(1));
        assert_eq!(Price(1).cost(1), Credits(1));
        assert_eq!(Price(0).cost(u64::MAX), Credits(0));
        assert_eq!(Price(u64::MAX).cost(u64::MAX), Credits(u64::MAX));
        assert_eq!(Price::whole(2).scaled(1.5), Price::whole(3));
        assert_eq!(Price::whole(2).scaled(0.5), Price::whole(2));
    }
}
