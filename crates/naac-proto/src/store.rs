//! The storage exchanges of `/naac/task/1` ([`crate::RequestBody::Store`]): a data owner
//! offers a host a shard, uploads it in order and seals it with the signed manifest that
//! names it; anyone holding a manifest's id reads verified slices (bao proofs against the
//! shard's root) and the manifest itself — of a private manifest, only a reader showing a
//! data token from its owner; the owner audits with reads of random chunks and
//! removes with its signature.
//!
//! | request | response |
//! | --- | --- |
//! | `Info` | `Info` |
//! | `Offer` | `Accepted` or `Refused` (quota, free disk, policy, price) |
//! | `Put` | `Ack` or `Refused` |
//! | `Seal` | `Stored` or `Refused` (root, length, manifest) |
//! | `Read` | `Slice`, `NotFound` or `Refused` (a private manifest: no token, or one that does not allow it) |
//! | `Prove` | `Proof` or `NotFound` (the owner's whole-shard audit) |
//! | `Manifest` | `Manifest`, `NotFound` or `Refused` (as `Read`) |
//! | `Holds` | `Holds` |
//! | `Remove` | `Removed` or `Refused` |

use crate::ledger::AccountKey;
use naac_types::{ContentId, JobId, Price};
use serde::{Deserialize, Serialize};

/// Most bytes one `Put` carries.
pub const MAX_PUT_BYTES: u64 = 1 << 20;
/// Most bytes one `Read` asks for (its proof adds about 6%).
pub const MAX_READ_BYTES: u64 = 1 << 20;
/// The largest `Store` frame either way: a signed manifest (8 MiB) or a slice with its
/// proof, with room for framing.
pub const MAX_STORE_FRAME: u64 = (8 << 20) + (256 << 10);

/// How a host's refusal starts when its owner paused it: a miss, not a loss.
pub const PAUSED: &str = "paused by its owner";

/// What the owner of a manifest signs to remove it from a host.
pub fn remove_signing_bytes(manifest: &ContentId, at_ms: u64) -> Vec<u8> {
    let mut b = b"naac store remove v1\0".to_vec();
    b.extend_from_slice(&manifest.0);
    b.extend_from_slice(&at_ms.to_le_bytes());
    b
}

/// What the owner of a manifest signs to have a host hash a whole shard (only the owner may
/// make a host spend a pass over its disk).
pub fn prove_signing_bytes(manifest: &ContentId, shard: u16, key: &[u8; 32]) -> Vec<u8> {
    let mut b = b"naac store prove v1\0".to_vec();
    b.extend_from_slice(&manifest.0);
    b.extend_from_slice(&shard.to_le_bytes());
    b.extend_from_slice(key);
    b
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoreRequest {
    /// What the host offers.
    Info,
    /// Will you hold shard `shard` of `manifest` (`len` bytes hashing to `root`) for `days`,
    /// paid `price` per GiB-day from `escrow` (none: unpaid)?
    Offer {
        manifest: ContentId,
        shard: u16,
        root: ContentId,
        len: u64,
        days: u32,
        #[serde(default)]
        price: Price,
        #[serde(default)]
        escrow: Option<StoreEscrow>,
    },
    /// The next bytes of an accepted shard, in order.
    Put {
        manifest: ContentId,
        shard: u16,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The upload is whole: the signed manifest (which must hash to `manifest` and name the
    /// shard's root and length).
    Seal {
        manifest: ContentId,
        shard: u16,
        #[serde(with = "serde_bytes")]
        signed: Vec<u8>,
    },
    /// Bytes `start..start + len` of a shard, with their proof. A private manifest's
    /// bytes need `pass`: a data token rooted in its owner and held by the reader.
    Read {
        manifest: ContentId,
        shard: u16,
        start: u64,
        len: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pass: Option<DataPass>,
    },
    /// The keyed BLAKE3 of the whole shard under `key` (a whole-shard audit), asked by the
    /// manifest's owner, who signs [`prove_signing_bytes`].
    Prove {
        manifest: ContentId,
        shard: u16,
        #[serde(with = "serde_bytes")]
        key: [u8; 32],
        #[serde(with = "serde_bytes")]
        sig: Vec<u8>,
    },
    /// The signed manifest (a private one's needs `pass`, as `Read`).
    Manifest {
        manifest: ContentId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pass: Option<DataPass>,
    },
    /// Which shards of `manifest` the host holds.
    Holds { manifest: ContentId },
    /// Drop every shard of `manifest` stored before `at_ms`, signed by the manifest's owner
    /// over [`remove_signing_bytes`].
    Remove {
        manifest: ContentId,
        at_ms: u64,
        #[serde(with = "serde_bytes")]
        sig: Vec<u8>,
    },
}

/// A data token shown to read private data (`naac-token`, kind `data`): it must be bound,
/// and its holder is either the reader's own peer key (a provider handed the token for a
/// task) or the user `user` attests the reader works for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataPass {
    /// The token, base64 (at most 16 KiB).
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<crate::UserAttestation>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoreResponse {
    Info(StoreInfo),
    Accepted,
    Stored,
    /// A bao slice: the bytes asked for and the tree nodes that prove them.
    Slice(#[serde(with = "serde_bytes")] Vec<u8>),
    Manifest(#[serde(with = "serde_bytes")] Vec<u8>),
    Holds(Vec<u16>),
    Removed {
        freed: u64,
    },
    /// The answer to a `Prove`.
    Proof(#[serde(with = "serde_bytes")] [u8; 32]),
}

/// Where a data owner escrowed a manifest's storage: the bank and the escrow's job id. The
/// owner pays each host from it once per audit period its shards passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreEscrow {
    pub bank: AccountKey,
    pub job: JobId,
}

/// A storage host's offer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Bytes it would take now (quota and free disk above the owner's floor).
    pub free: u64,
    /// Bytes of shards it holds.
    pub used: u64,
    /// Shards it holds.
    pub shards: u64,
    /// Its ask per GiB-day (credits).
    pub price: Price,
    /// Who runs it, when its operator says so (shards of one manifest go to distinct owners).
    pub owner: Option<String>,
    /// Why it takes no new shards now, if it does not.
    pub refusing: Option<String>,
    /// The bank it is paid at, if it is (`naac node --paid-at`): with a price above zero it
    /// takes only shards escrowed there.
    #[serde(default)]
    pub paid_at: Option<AccountKey>,
}
