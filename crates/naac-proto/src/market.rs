//! Wire counterparts of the market's sealed asks (`naac-market`), as a provider's [`Bid`]
//! carries them: same serde shape, no signing layout and no checks here (`naac-bank`
//! converts them to the market's types, which know both).
//!
//! [`Bid`]: crate::Bid

use naac_types::{JobId, Price};
use serde::{Deserialize, Serialize};

/// One provider's price for one job, valid until `expires_ms` (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub job: JobId,
    /// The provider's ed25519 public key.
    pub provider: [u8; 32],
    pub price: Price,
    pub expires_ms: u64,
}

/// An ask with its provider's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAsk {
    pub ask: Ask,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}
