//! Verified slices of a shard (bao over BLAKE3): a host keeps an outboard tree beside each
//! shard and answers a read of `start..start + len` with the chunks and the tree nodes that
//! prove them against the shard's root; the reader checks every 1 KiB chunk before it
//! uses a byte.

use naac_types::ContentId;
use std::io::{self, Read, Seek, Write};

/// bao's chunk size: the unit of verification and of audit challenges.
pub const CHUNK: u64 = 1024;

/// Why a slice was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("slice does not prove its bytes against the shard's root: {0}")]
    Invalid(io::Error),
    #[error("slice proves {got} bytes, {want} were asked for")]
    Short { got: u64, want: u64 },
}

/// Writes the outboard tree of `data` (read to its end) to `outboard` and returns the
/// root, which is the BLAKE3 hash of the data.
pub fn outboard<R: Read, O: Read + Write + Seek>(
    mut data: R,
    outboard: O,
) -> io::Result<ContentId> {
    let mut enc = bao::encode::Encoder::new_outboard(outboard);
    io::copy(&mut data, &mut enc)?;
    let root = enc.finalize()?;
    Ok(ContentId(*root.as_bytes()))
}

/// The slice of `start..start + len` of a shard (`data` with its `outboard`): the chunks
/// that cover it and the tree nodes that prove them.
pub fn extract<D: Read + Seek, O: Read + Seek>(
    data: D,
    outboard: O,
    start: u64,
    len: u64,
) -> io::Result<Vec<u8>> {
    let mut ex = bao::encode::SliceExtractor::new_outboard(data, outboard, start, len);
    let mut out = Vec::with_capacity(len as usize + len as usize / 16 + 1024);
    ex.read_to_end(&mut out)?;
    Ok(out)
}

/// Checks `slice` against the shard `root` and returns the bytes `start..start + len`
/// (fewer only where the shard, of `shard_len` bytes, ends first).
pub fn check(
    slice: &[u8],
    root: &ContentId,
    start: u64,
    len: u64,
    shard_len: u64,
) -> Result<Vec<u8>, SliceError> {
    // bao authenticates the length header only when a slice reaches the shard's end; the
    // manifest states the length, so hold the header to it here.
    if slice.len() < 8 || slice[..8] != shard_len.to_le_bytes() {
        return Err(SliceError::Invalid(io::Error::new(
            io::ErrorKind::InvalidData,
            "slice states another shard length than the manifest",
        )));
    }
    let hash = bao::Hash::from(root.0);
    let mut dec = bao::decode::SliceDecoder::new(slice, &hash, start, len);
    let mut out = Vec::with_capacity(len as usize);
    dec.read_to_end(&mut out).map_err(SliceError::Invalid)?;
    let want = len.min(shard_len.saturating_sub(start));
    if out.len() as u64 != want {
        return Err(SliceError::Short {
            got: out.len() as u64,
            want,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn slices_prove_their_bytes_and_nothing_else() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut ob = Cursor::new(Vec::new());
        let root = outboard(&data[..], &mut ob).unwrap();
        assert_eq!(root, ContentId::of(&data));
        let ob = ob.into_inner();
        let len = data.len() as u64;
        for (start, n) in [(0, 1024), (5000, 3000), (99_000, 4096), (0, len)] {
            let s = extract(Cursor::new(&data), Cursor::new(&ob), start, n).unwrap();
            let got = check(&s, &root, start, n, len).unwrap();
            let end = (start + n).min(len) as usize;
            assert_eq!(got, &data[start as usize..end]);
            // One flipped byte anywhere in the slice is caught.
            for at in [0, s.len() / 2, s.len() - 1] {
                let mut bad = s.clone();
                bad[at] ^= 1;
                assert!(check(&bad, &root, start, n, len).is_err(), "{start} {at}");
            }
            // So is a slice cut short, or checked against another range.
            assert!(check(&s[..s.len() - 1], &root, start, n, len).is_err());
        }
        let s = extract(Cursor::new(&data), Cursor::new(&ob), 0, 1024).unwrap();
        assert!(check(&s, &root, 50_000, 1024, len).is_err());
        assert!(check(&s, &ContentId::of(b"x"), 0, 1024, len).is_err());
    }
}
