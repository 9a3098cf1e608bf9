//! Checking ed25519 signatures: the one place naac does it. The market's asks and offers,
//! the ledger's requests and checkpoints and the network's peer-signed records (through
//! `naac-net`, which finds the key inside a peer id first) all call in here.
//!
//! Checks are strict (`verify_strict`: no small-order keys or commitments, canonical
//! scalars). [`verify_many`] checks a batch at once and falls back to one check each when
//! the batch fails, so its answers are the same as checking one by one.

/// A decoded ed25519 public key. Decoding decompresses a curve point, which costs about as
/// much as checking a signature: keep it when one key checks many signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// The key of these 32 bytes, if they are a valid point.
    pub fn from_bytes(key: &[u8; 32]) -> Option<VerifyingKey> {
        ed25519_dalek::VerifyingKey::from_bytes(key)
            .ok()
            .map(VerifyingKey)
    }

    /// Whether `sig` is this key's signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.0.verify_strict(msg, &sig).is_ok()
    }
}

/// Whether `sig` is the signature of the ed25519 key `key` over `msg`.
pub fn verify(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
    VerifyingKey::from_bytes(key).is_some_and(|k| k.verify(msg, sig))
}

/// Checks many `(key, message, signature)` at once: one batch verification (about twice as
/// fast per signature as one by one); if the batch fails, each is checked on its own to
/// find the bad ones. A `None` key (one that could not be decoded) never verifies.
pub fn verify_many(items: &[(Option<VerifyingKey>, &[u8], &[u8])]) -> Vec<bool> {
    if items.len() >= 2 {
        let mut keys = Vec::with_capacity(items.len());
        let mut sigs = Vec::with_capacity(items.len());
        for (key, _, sig) in items {
            match (key, ed25519_dalek::Signature::from_slice(sig).ok()) {
                (Some(k), Some(s)) => {
                    keys.push(k.0);
                    sigs.push(s);
                }
                _ => break,
            }
        }
        if keys.len() == items.len() {
            let msgs: Vec<&[u8]> = items.iter().map(|(_, m, _)| *m).collect();
            if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
                return vec![true; items.len()];
            }
        }
    }
    items
        .iter()
        .map(|(key, msg, sig)| key.is_some_and(|k| k.verify(msg, sig)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn one_by_one_and_in_batches() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let (ka, kb) = (a.verifying_key().to_bytes(), b.verifying_key().to_bytes());
        let sig = a.sign(b"record").to_bytes().to_vec();
        assert!(verify(&ka, b"record", &sig));
        assert!(!verify(&ka, b"recorc", &sig));
        assert!(!verify(&kb, b"record", &sig));
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert!(!verify(&ka, b"record", &bad));
        assert!(!verify(&ka, b"record", &[]));
        let (va, vb) = (VerifyingKey::from_bytes(&ka), VerifyingKey::from_bytes(&kb));
        let sig_b = b.sign(b"other").to_bytes().to_vec();
        let ok = verify_many(&[(va, b"record", &sig), (vb, b"other", &sig_b)]);
        assert_eq!(ok, vec![true, true]);
        let ok = verify_many(&[
            (va, b"record", &sig),
            (vb, b"forged", &sig_b),
            (vb, b"other", &sig_b),
            (None, b"record", &sig),
        ]);
        assert_eq!(ok, vec![true, false, true, false]);
        assert_eq!(verify_many(&[(va, b"record", &[1, 2])]), vec![false]);
    }
}
