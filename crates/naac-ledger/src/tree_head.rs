//! The bank's signed tree head (`TreeHead`, the ledger's checkpoint): how many entries the
//! ledger had, the RFC 6962 Merkle root over them and the last entry's hash, signed with
//! the bank's key. (Not a guest's checkpoint: that is saved task state.)

use crate::entry::{AccountKey, Hash};
use serde::{Deserialize, Serialize};

const CHECKPOINT_DOMAIN: &str = "naac ledger checkpoint v1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// Entries covered: seqs `0..size`.
    pub size: u64,
    /// Merkle root over the first `size` entries (leaves are [`crate::Entry::to_bytes`]).
    pub root: Hash,
    /// Hash of entry `size - 1` (zeros when empty).
    pub head: Hash,
    /// The bank's clock when it signed (Unix milliseconds).
    pub time_ms: u64,
    pub bank: AccountKey,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl TreeHead {
    /// The exact bytes the bank signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 64 + 8 + 32);
        b.extend_from_slice(CHECKPOINT_DOMAIN.as_bytes());
        b.extend_from_slice(&self.size.to_le_bytes());
        b.extend_from_slice(&self.root);
        b.extend_from_slice(&self.head);
        b.extend_from_slice(&self.time_ms.to_le_bytes());
        b.extend_from_slice(&self.bank.0);
        b
    }

    /// Whether `sig` is the named bank's signature.
    pub fn signature_ok(&self) -> bool {
        naac_types::sig::verify(&self.bank.0, &self.signing_bytes(), &self.sig)
    }
}
