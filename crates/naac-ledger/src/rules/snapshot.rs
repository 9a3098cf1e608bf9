//! The ledger's state as bytes, so a bank starts from its latest snapshot and replays only
//! the entries after it instead of its whole history (about 10 µs an entry). No IO, and no
//! trust: a snapshot is only as good as whoever stored it, so the bank signs the
//! snapshot's hash with its key and checks that signature, and that the snapshot's head is
//! the stored chain's, before it believes one (see `naac-bank`'s service).

use super::Ledger;
use crate::entry::{AccountKey, Hash};

/// The snapshot format; a snapshot of another version is not read (the bank replays).
pub const SNAPSHOT_VERSION: u16 = 1;

/// Why a snapshot is not a ledger.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot format {found} is not {SNAPSHOT_VERSION}")]
    Version { found: u16 },
    #[error("malformed snapshot: {0}")]
    Malformed(String),
    #[error("the snapshot is of bank {found}, not {expected}")]
    Bank { found: String, expected: String },
}

impl Ledger {
    /// The whole state as bytes ([`Ledger::from_snapshot`] reads them back): the format
    /// version (2 bytes, little-endian), then the state in CBOR.
    pub fn snapshot(&self) -> Vec<u8> {
        cbor4ii::serde::to_vec(SNAPSHOT_VERSION.to_le_bytes().to_vec(), self)
            .expect("a ledger always encodes")
    }

    /// The ledger of bank `bank` a snapshot holds, equal to the one that made it.
    pub fn from_snapshot(bank: AccountKey, bytes: &[u8]) -> Result<Ledger, SnapshotError> {
        let (v, body) = bytes
            .split_first_chunk::<2>()
            .ok_or_else(|| SnapshotError::Malformed("empty".into()))?;
        let found = u16::from_le_bytes(*v);
        if found != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version { found });
        }
        let ledger: Ledger = cbor4ii::serde::from_slice(body)
            .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if ledger.bank != bank {
            return Err(SnapshotError::Bank {
                found: naac_types::hex(&ledger.bank.0),
                expected: naac_types::hex(&bank.0),
            });
        }
        Ok(ledger)
    }
}

/// The Merkle tree in a snapshot: its leaves as one byte string (32 bytes each); the
/// inner nodes are made again on load.
pub(super) mod leaves {
    use super::Hash;
    use crate::merkle::MerkleTree;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tree: &MerkleTree, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(tree.len() as usize * 32);
        for i in 0..tree.len() {
            bytes.extend_from_slice(&tree.leaf(i).unwrap_or_default());
        }
        serde_bytes::serialize(&bytes, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MerkleTree, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        if !bytes.len().is_multiple_of(32) {
            return Err(serde::de::Error::custom(
                "the tree's leaves are not 32-byte hashes",
            ));
        }
        let mut tree = MerkleTree::new();
        for leaf in bytes.chunks_exact(32) {
            let mut h: Hash = [0; 32];
            h.copy_from_slice(leaf);
            tree.push(h);
        }
        Ok(tree)
    }
}
