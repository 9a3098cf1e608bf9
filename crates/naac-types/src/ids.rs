//! Identifiers: [`ContentId`] (a blob named by its BLAKE3 hash), [`JobId`] (one submitted
//! job), lowercase [`hex`] and [`unhex`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// A BLAKE3 hash naming a blob (module, input, output) by its content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentId(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl ContentId {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        unhex::<32>(s).map(Self)
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// First 12 hex characters, for logs and messages.
    pub fn short(&self) -> String {
        hex(&self.0[..6])
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.short())
    }
}

/// Identifies one submitted job; random per submission.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub [u8; 16]);

impl JobId {
    /// Derives a fresh id from the job's content and something unique to this submission
    /// (time, process id), so two submissions of the same file get different ids.
    pub fn derive(content: &ContentId, unique: &[u8]) -> Self {
        let mut h = blake3::Hasher::new_derive_key("naac job id v1");
        h.update(&content.0);
        h.update(unique);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Self(id)
    }

    /// Lowercase hex, 32 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// First 8 hex characters, used in default output directory names.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.short())
    }
}

/// Hex (either case) to exactly `N` bytes; `None` for any other length or a non-hex digit.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Hex (either case) of any even length to bytes; `None` for an odd length or a non-hex
/// digit.
pub fn unhex_vec(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").expect("writing to a String cannot fail");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_id_hex_is_blake3() {
        let id = ContentId::of(b"abc");
        assert_eq!(
            id.to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(id.short().len(), 12);
    }

    #[test]
    fn job_ids_differ_per_submission() {
        let c = ContentId::of(b"job");
        assert_ne!(JobId::derive(&c, b"1"), JobId::derive(&c, b"2"));
        assert_eq!(JobId::derive(&c, b"1"), JobId::derive(&c, b"1"));
    }
}
