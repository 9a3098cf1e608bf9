//! Sealed, signed asks: what a provider will take per giga-fuel for one job's work.

/// Whether `sig` is the signature of the ed25519 key `key` over `msg` (strict checking):
/// [`naac_types::sig::verify`], under the name the market's callers know.
pub use naac_types::sig::verify as verify_ed25519;
use naac_types::{JobId, Price};
use serde::{Deserialize, Serialize};

const ASK_DOMAIN: &str = "naac ask v1";

/// A provider's ed25519 public key (the key its libp2p peer id embeds).
pub type ProviderKey = [u8; 32];

/// One provider's price for one job, valid until `expires_ms` (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub job: JobId,
    pub provider: ProviderKey,
    pub price: Price,
    pub expires_ms: u64,
}

impl Ask {
    /// The exact bytes the provider signs: a fixed layout, no serde.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(ASK_DOMAIN.len() + 16 + 32 + 16);
        b.extend_from_slice(ASK_DOMAIN.as_bytes());
        b.extend_from_slice(&self.job.0);
        b.extend_from_slice(&self.provider);
        b.extend_from_slice(&self.price.0.to_le_bytes());
        b.extend_from_slice(&self.expires_ms.to_le_bytes());
        b
    }
}

/// An ask with its provider's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAsk {
    pub ask: Ask,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl SignedAsk {
    /// Whether the signature is the named provider's over this ask.
    pub fn verify(&self) -> bool {
        verify_ed25519(&self.ask.provider, &self.ask.signing_bytes(), &self.sig)
    }
}
