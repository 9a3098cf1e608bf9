//! naac's storage across untrusted hosts, without IO of its own beyond the files a host keeps
//! its shards in ([`disk`]).
//!
//! A directory (or one file) is laid out as one byte stream, the files one after another in
//! path order ([`manifest::FileEntry`] gives each one's offset, length and BLAKE3). The
//! stream is cut into stripes of `k` pieces, and each stripe is erasure-coded
//! ([`erasure`], Reed-Solomon from `reed-solomon-simd`) into `n` pieces, of which any `k`
//! rebuild it; shard `i` is piece `i` of every stripe, one after another, and goes to one
//! host. The code is systematic: shards `0..k` hold the data itself, so a read with those
//! hosts up decodes nothing. Each shard is named by its BLAKE3 root, which bao's verified
//! streaming ([`verify`]) turns into a proof for any slice of it, so every byte fetched from
//! a host is checked in 1 KiB chunks before use and an audit is a slice of random chunks.
//!
//! The [`manifest::Manifest`] (file tree, geometry, shard roots, the uploader's key) is signed
//! by its uploader; the BLAKE3 hash of its signed bytes is the data's id (`naac://<id>`).
//!
//! Placement ([`placement`]), repair planning ([`repair`]) and audit bookkeeping
//! ([`audit`]) are sans-IO: facts and `now` in, decisions out.

pub mod audit;
pub mod disk;
pub mod erasure;
pub mod layout;
pub mod manifest;
pub mod placement;
pub mod repair;
pub mod verify;

pub use layout::Geometry;
pub use manifest::{FileEntry, Manifest, ManifestError, SignedManifest, StoreId};

/// The escrow id of a manifest's storage: derived from the manifest id, so anyone holding
/// the id can look the escrow up.
pub fn escrow_job(manifest: &StoreId) -> naac_types::JobId {
    let h = blake3::Hasher::new_derive_key("naac store escrow v1")
        .update(&manifest.0)
        .finalize();
    let mut j = [0u8; 16];
    j.copy_from_slice(&h.as_bytes()[..16]);
    naac_types::JobId(j)
}

/// Milliseconds in a day: storage is priced per GiB-day.
pub const DAY_MS: u64 = 86_400_000;

/// What keeping `bytes` for `ms` costs at `price` per GiB-day, rounded up to a µcredit.
pub fn storage_cost(price: naac_types::Price, bytes: u64, ms: u64) -> naac_types::Credits {
    let v = (u128::from(price.0) * u128::from(bytes) * u128::from(ms))
        .div_ceil(u128::from(1u64 << 30) * u128::from(DAY_MS));
    naac_types::Credits(u64::try_from(v).unwrap_or(u64::MAX))
}

/// Shards needed to rebuild data, by default: 4-of-8 suits a pool of a handful of hosts
/// (Tahoe-LAFS's 3-of-10 needs ten) at 2x overhead and survives any 4 hosts leaving.
pub const DEFAULT_K: u16 = 4;
/// Shards made, by default.
pub const DEFAULT_N: u16 = 8;
/// Most shards a manifest may have (one host each).
pub const MAX_SHARDS: u16 = 256;
/// The most bytes one read or audit slice covers (its proof adds about 6%).
pub const MAX_SLICE: u64 = 1 << 20;
