//! Where each byte of the data stream lives: stripes of `k` pieces, shard `i` is piece `i` of
//! every stripe in turn.

use serde::{Deserialize, Serialize};

/// Smallest and largest piece (one shard's share of one stripe). Pieces are whole bao chunks
/// (1 KiB), so a stripe's piece is a run of whole chunks of its shard.
pub const MIN_PIECE: u32 = 1 << 10;
pub const MAX_PIECE: u32 = 1 << 20;

/// The erasure parameters of one manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    /// Any `k` shards rebuild the data.
    pub k: u16,
    /// Shards made.
    pub n: u16,
    /// Bytes of one shard per stripe.
    pub piece: u32,
    /// Bytes of data (the files, one after another).
    pub data_len: u64,
}

/// Why a geometry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("k must be at least 1 and below n (k = {k}, n = {n})")]
    Counts { k: u16, n: u16 },
    #[error("n = {n} is above the most shards a manifest may have ({max})")]
    TooMany { n: u16, max: u16 },
    #[error("piece size {0} is not a multiple of 1 KiB between 1 KiB and 1 MiB")]
    Piece(u32),
    #[error("{k}-of-{n} is not a code reed-solomon-simd supports")]
    Unsupported { k: u16, n: u16 },
}

impl Geometry {
    /// The geometry for `data_len` bytes at `k`-of-`n`: pieces as large as the data needs,
    /// up to 1 MiB, so small data is not padded to a large stripe.
    pub fn new(k: u16, n: u16, data_len: u64) -> Result<Self, GeometryError> {
        let per_shard = data_len.div_ceil(u64::from(k.max(1)));
        let piece = per_shard
            .div_ceil(u64::from(MIN_PIECE))
            .saturating_mul(u64::from(MIN_PIECE))
            .clamp(u64::from(MIN_PIECE), u64::from(MAX_PIECE)) as u32;
        let g = Self {
            k,
            n,
            piece,
            data_len,
        };
        g.check()?;
        Ok(g)
    }

    /// Whether this geometry is one naac reads and writes.
    pub fn check(&self) -> Result<(), GeometryError> {
        if self.k == 0 || self.k >= self.n {
            return Err(GeometryError::Counts {
                k: self.k,
                n: self.n,
            });
        }
        if self.n > crate::MAX_SHARDS {
            return Err(GeometryError::TooMany {
                n: self.n,
                max: crate::MAX_SHARDS,
            });
        }
        if self.piece < MIN_PIECE || self.piece > MAX_PIECE || !self.piece.is_multiple_of(MIN_PIECE)
        {
            return Err(GeometryError::Piece(self.piece));
        }
        if !reed_solomon_simd::ReedSolomonEncoder::supports(
            usize::from(self.k),
            usize::from(self.n - self.k),
        ) {
            return Err(GeometryError::Unsupported {
                k: self.k,
                n: self.n,
            });
        }
        Ok(())
    }

    /// Data bytes in one stripe.
    pub fn stripe_bytes(&self) -> u64 {
        u64::from(self.k) * u64::from(self.piece)
    }

    /// Stripes in all (at least one, so empty data still has shards to hold and audit).
    pub fn stripes(&self) -> u64 {
        self.data_len.div_ceil(self.stripe_bytes()).max(1)
    }

    /// Bytes of each shard.
    pub fn shard_len(&self) -> u64 {
        self.stripes() * u64::from(self.piece)
    }

    /// Bytes stored in all shards together.
    pub fn stored_bytes(&self) -> u64 {
        self.shard_len() * u64::from(self.n)
    }

    /// The stripes that hold the data bytes `start..start + len`.
    pub fn stripes_of(&self, start: u64, len: u64) -> std::ops::Range<u64> {
        if len == 0 {
            return 0..0;
        }
        let first = start / self.stripe_bytes();
        let last = (start + len - 1) / self.stripe_bytes();
        first..last + 1
    }

    /// Where data byte `pos` is: (stripe, shard, offset in that shard).
    pub fn locate(&self, pos: u64) -> (u64, u16, u64) {
        let stripe = pos / self.stripe_bytes();
        let within = pos % self.stripe_bytes();
        let shard = (within / u64::from(self.piece)) as u16;
        let offset = stripe * u64::from(self.piece) + within % u64::from(self.piece);
        (stripe, shard, offset)
    }

    /// The bytes of every shard that stripes `stripes` take: `(offset, len)` in the shard.
    pub fn shard_span(&self, stripes: &std::ops::Range<u64>) -> (u64, u64) {
        let piece = u64::from(self.piece);
        (stripes.start * piece, (stripes.end - stripes.start) * piece)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn small_data_gets_small_pieces() {
        let g = Geometry::new(4, 8, 100).unwrap();
        assert_eq!(g.piece, 1024);
        assert_eq!(g.stripes(), 1);
        assert_eq!(g.shard_len(), 1024);
        let g = Geometry::new(4, 8, 100 << 20).unwrap();
        assert_eq!(g.piece, 1 << 20);
        assert_eq!(g.stripes(), 25);
        assert_eq!(g.stored_bytes(), 200 << 20);
        let g = Geometry::new(4, 8, 0).unwrap();
        assert_eq!(g.stripes(), 1);
    }

    #[test]
    fn bad_counts_are_refused() {
        assert!(Geometry::new(0, 8, 1).is_err());
        assert!(Geometry::new(8, 8, 1).is_err());
        assert!(Geometry::new(9, 8, 1).is_err());
        assert!(Geometry::new(4, 300, 1).is_err());
        let mut g = Geometry::new(4, 8, 1).unwrap();
        g.piece = 1000;
        assert!(g.check().is_err());
    }

    #[test]
    fn locate_walks_pieces_then_stripes() {
        let g = Geometry {
            k: 2,
            n: 3,
            piece: 1024,
            data_len: 5000,
        };
        assert_eq!(g.locate(0), (0, 0, 0));
        assert_eq!(g.locate(1023), (0, 0, 1023));
        assert_eq!(g.locate(1024), (0, 1, 0));
        assert_eq!(g.locate(2048), (1, 0, 1024));
        assert_eq!(g.locate(4100), (2, 0, 2052));
        assert_eq!(g.stripes_of(1000, 2000), 0..2);
        assert_eq!(g.stripes_of(0, 0), 0..0);
        assert_eq!(g.shard_span(&(1..3)), (1024, 2048));
    }
}
