//! Reed-Solomon over stripes (`reed-solomon-simd`): a stripe's `k` data pieces make `n - k`
//! recovery pieces, and any `k` of the `n` rebuild the rest.

use crate::layout::Geometry;
use naac_types::ContentId;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use std::io::{self, Read, Write};

/// Why a stripe could not be coded.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("only {have} of the {k} pieces a stripe needs are here")]
    TooFew { have: usize, k: u16 },
    #[error("a piece is {got} bytes, not the stripe's {want}")]
    PieceLen { got: usize, want: u32 },
    #[error("reed-solomon: {0}")]
    Rs(#[from] reed_solomon_simd::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Encodes and decodes the stripes of one geometry, reusing its working memory.
pub struct Coder {
    g: Geometry,
    enc: ReedSolomonEncoder,
    dec: ReedSolomonDecoder,
}

impl Coder {
    pub fn new(g: Geometry) -> Result<Self, CodeError> {
        let (k, m, p) = (usize::from(g.k), usize::from(g.n - g.k), g.piece as usize);
        Ok(Self {
            g,
            enc: ReedSolomonEncoder::new(k, m, p)?,
            dec: ReedSolomonDecoder::new(k, m, p)?,
        })
    }

    pub fn geometry(&self) -> &Geometry {
        &self.g
    }

    /// The `n - k` recovery pieces of a stripe whose `k * piece` data bytes are `data`.
    pub fn encode(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, CodeError> {
        let p = self.g.piece as usize;
        if data.len() != p * usize::from(self.g.k) {
            return Err(CodeError::PieceLen {
                got: data.len(),
                want: self.g.piece,
            });
        }
        for piece in data.chunks(p) {
            self.enc.add_original_shard(piece)?;
        }
        let out = self.enc.encode()?;
        Ok(out.recovery_iter().map(<[u8]>::to_vec).collect())
    }

    /// Every piece of a stripe (`n` of them, `None` where missing) from any `k` that are
    /// here; pieces beyond the first `k` present are not read.
    pub fn rebuild(&mut self, pieces: &[Option<&[u8]>]) -> Result<Vec<Vec<u8>>, CodeError> {
        let data = self.decode(pieces)?;
        let recovery = if pieces[usize::from(self.g.k)..].iter().all(Option::is_some) {
            pieces[usize::from(self.g.k)..]
                .iter()
                .map(|p| p.unwrap_or_default().to_vec())
                .collect()
        } else {
            self.encode(&data)?
        };
        let mut all: Vec<Vec<u8>> = data
            .chunks(self.g.piece as usize)
            .map(<[u8]>::to_vec)
            .collect();
        all.extend(recovery);
        Ok(all)
    }

    /// The `k * piece` data bytes of a stripe from any `k` of its pieces (`n` entries,
    /// `None` where missing). With the `k` data pieces here, nothing is decoded.
    pub fn decode(&mut self, pieces: &[Option<&[u8]>]) -> Result<Vec<u8>, CodeError> {
        let (k, p) = (usize::from(self.g.k), self.g.piece as usize);
        let have = pieces.iter().filter(|x| x.is_some()).count();
        if have < k || pieces.len() != usize::from(self.g.n) {
            return Err(CodeError::TooFew { have, k: self.g.k });
        }
        for piece in pieces.iter().flatten() {
            if piece.len() != p {
                return Err(CodeError::PieceLen {
                    got: piece.len(),
                    want: self.g.piece,
                });
            }
        }
        let mut data = vec![0u8; k * p];
        if pieces[..k].iter().all(Option::is_some) {
            for (i, piece) in pieces[..k].iter().flatten().enumerate() {
                data[i * p..(i + 1) * p].copy_from_slice(piece);
            }
            return Ok(data);
        }
        // Exactly k pieces: the data pieces here, then recovery pieces for the rest.
        let mut used = 0;
        for (i, piece) in pieces[..k].iter().enumerate() {
            if let Some(piece) = piece {
                self.dec.add_original_shard(i, piece)?;
                data[i * p..(i + 1) * p].copy_from_slice(piece);
                used += 1;
            }
        }
        for (j, piece) in pieces[k..].iter().enumerate() {
            if used == k {
                break;
            }
            if let Some(piece) = piece {
                self.dec.add_recovery_shard(j, piece)?;
                used += 1;
            }
        }
        let out = self.dec.decode()?;
        for (i, piece) in out.restored_original_iter() {
            data[i * p..(i + 1) * p].copy_from_slice(piece);
        }
        Ok(data)
    }
}

/// Encodes the data stream `input` (`g.data_len` bytes) into `g.n` shards written to
/// `shards`, and returns each shard's BLAKE3 root. The last stripe is padded with zeros.
pub fn encode_stream<W: Write>(
    g: &Geometry,
    mut input: impl Read,
    shards: &mut [W],
) -> Result<Vec<ContentId>, CodeError> {
    let mut coder = Coder::new(*g)?;
    let p = g.piece as usize;
    let mut hashers: Vec<blake3::Hasher> = (0..g.n).map(|_| blake3::Hasher::new()).collect();
    let mut stripe = vec![0u8; g.stripe_bytes() as usize];
    let mut left = g.data_len;
    for _ in 0..g.stripes() {
        let take = left.min(g.stripe_bytes()) as usize;
        input.read_exact(&mut stripe[..take])?;
        stripe[take..].fill(0);
        left -= take as u64;
        let recovery = coder.encode(&stripe)?;
        let pieces = stripe.chunks(p).chain(recovery.iter().map(Vec::as_slice));
        for ((piece, out), h) in pieces.zip(shards.iter_mut()).zip(&mut hashers) {
            out.write_all(piece)?;
            h.update(piece);
        }
    }
    Ok(hashers
        .into_iter()
        .map(|h| ContentId(*h.finalize().as_bytes()))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn any_k_pieces_rebuild_the_stripe() {
        let g = Geometry::new(4, 8, 4096 * 4).unwrap();
        let mut coder = Coder::new(g).unwrap();
        let d = data(g.stripe_bytes() as usize);
        let rec = coder.encode(&d).unwrap();
        let all: Vec<&[u8]> = d
            .chunks(g.piece as usize)
            .chain(rec.iter().map(Vec::as_slice))
            .collect();
        // Every choice of 4 of 8.
        for mask in 0u32..256 {
            let pieces: Vec<Option<&[u8]>> = (0..8)
                .map(|i| (mask >> i & 1 == 1).then_some(all[i]))
                .collect();
            let have = mask.count_ones();
            match coder.decode(&pieces) {
                Ok(out) => {
                    assert!(have >= 4);
                    assert_eq!(out, d, "mask {mask:08b}");
                }
                Err(_) => assert!(have < 4),
            }
            if have >= 4 {
                let rebuilt = coder.rebuild(&pieces).unwrap();
                for (i, piece) in rebuilt.iter().enumerate() {
                    assert_eq!(piece.as_slice(), all[i]);
                }
            }
        }
    }

    #[test]
    fn stream_encoding_pads_and_hashes_each_shard() {
        let g = Geometry::new(2, 3, 5000).unwrap();
        let d = data(5000);
        let mut shards = vec![Vec::new(); 3];
        let roots = encode_stream(&g, &d[..], &mut shards).unwrap();
        for (s, r) in shards.iter().zip(&roots) {
            assert_eq!(s.len() as u64, g.shard_len());
            assert_eq!(ContentId::of(s), *r);
        }
        // Shards 0..k hold the data itself, piece by piece.
        let (stripe, shard, off) = g.locate(4000);
        assert_eq!(stripe, g.stripes() - 1);
        assert_eq!(shards[usize::from(shard)][off as usize], d[4000]);
        // A short input is an error, not a silent zero fill.
        assert!(encode_stream(&g, &d[..100], &mut vec![Vec::new(); 3]).is_err());
    }
}
