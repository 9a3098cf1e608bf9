//! The market, sans-IO: signed offers kept as soft state, owners' prices, and reverse
//! Vickrey auctions over sealed, signed asks.
//!
//! - [`offer`]: a provider's signed [`Offer`] (capacity, asking price, where to dial it),
//!   published under its commodity class ([`dht_key`], [`topic`]) and kept by others in a
//!   bounded [`OfferBook`] until it expires or is replaced by a higher sequence number.
//! - [`pricing`]: what an owner asks ([`ask_price`]: its minimum times the current window's
//!   multiplier) and whether it bids at all ([`will_bid`]).
//! - [`auction`]: the reverse Vickrey auction ([`vickrey`], [`clear_for`]): the best bid wins
//!   and is paid the next ask, so asking one's true cost is the best strategy.
//! - [`Ask`]/[`SignedAsk`]: one provider's sealed price for one job.
//!
//! No IO, no async, no clocks: the caller passes the time in as Unix milliseconds. Prices are
//! integer micro-credits per giga-fuel ([`Price`](naac_types::Price)).

mod ask;
pub mod auction;
pub mod offer;
pub mod pricing;

pub use ask::{Ask, ProviderKey, SignedAsk, verify_ed25519};
pub use auction::{Bid, Clearing, clear_for, rank, vickrey};
pub use offer::{
    Inserted, MAX_ADDR_LEN, MAX_ADDRS, MAX_CLASS_LEN, MAX_OFFER_BYTES, MAX_OFFER_TTL_MS,
    OFFER_WIRE_VERSION, Offer, OfferBook, OfferError, SignedOffer, commodity_class, dht_key, topic,
};
pub use pricing::{ask_price, owner_ask, will_bid};
