//! What an owner asks: the policy's minimum price times the current window's multiplier,
//! and whether that ask is worth sending to a requester.

use naac_types::Price;
use naac_types::host::HostLimits;

/// The price a provider asks now: `min_price` scaled by the current window's `multiplier`
/// (at least 1; anything else, NaN included, leaves the minimum unchanged), rounded up so
/// the owner never gets less than the minimum.
pub fn ask_price(min_price: Price, multiplier: f64) -> Price {
    min_price.scaled(multiplier)
}

/// The ask for a host's current limits: the policy's `min_price` (whole credits per
/// giga-fuel) times the window's `price_multiplier`.
pub fn owner_ask(limits: &HostLimits) -> Price {
    ask_price(Price::whole(limits.min_price), limits.price_multiplier)
}

/// Whether a provider asking `ask` takes part in an auction capped at `max_price`.
pub fn will_bid(ask: Price, max_price: Price) -> bool {
    ask <= max_price
}
