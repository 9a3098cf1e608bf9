//! The market, sans-IO: signed offers kept as soft state, owners' prices, and reverse
//! Vickrey auctions over sealed, signed asks.

mod ask;

pub use ask::{Ask, ProviderKey, SignedAsk, verify_ed25519};
