//! Signatures with a node's identity key, checked against a peer id alone.
//!
//! naac identities are ed25519 keys, whose libp2p peer ids embed the public key (an
//! "identity" multihash), so a signature from any peer can be checked without asking it
//! for its key. The check itself is [`naac_types::sig`]'s, with the key found here.

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};
use naac_types::sig::VerifyingKey;

/// Multihash code of the identity hash: the digest is the key itself.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// Signs `msg` with the node's key.
pub fn sign(key: &Keypair, msg: &[u8]) -> Vec<u8> {
    // Only RSA signing can fail, and naac keys are ed25519.
    key.sign(msg).unwrap_or_default()
}

/// The public key a peer id embeds, if it embeds one (ed25519 ids do).
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != IDENTITY_MULTIHASH {
        return None;
    }
    PublicKey::try_decode_protobuf(mh.digest()).ok()
}

/// Whether `sig` is `peer`'s signature over `msg` ([`naac_types::sig::verify`] with the key
/// the peer id embeds).
pub fn verify(peer: &PeerId, msg: &[u8], sig: &[u8]) -> bool {
    ed25519_of(peer).is_some_and(|k| naac_types::sig::verify(&k, msg, sig))
}

/// Peers' public keys, decoded once each (decoding an ed25519 key decompresses a curve
/// point, which costs about as much as checking a signature). Bounded: cleared when full.
#[derive(Default)]
pub struct PeerKeys {
    keys: std::collections::HashMap<PeerId, Option<VerifyingKey>>,
}

/// Peers whose keys are kept decoded.
const MAX_PEER_KEYS: usize = 4096;

impl PeerKeys {
    /// Whether `sig` is `peer`'s signature over `msg`.
    pub fn verify(&mut self, peer: &PeerId, msg: &[u8], sig: &[u8]) -> bool {
        self.key(peer).is_some_and(|k| k.verify(msg, sig))
    }

    fn key(&mut self, peer: &PeerId) -> Option<VerifyingKey> {
        if self.keys.len() >= MAX_PEER_KEYS && !self.keys.contains_key(peer) {
            self.keys.clear();
        }
        *self
            .keys
            .entry(*peer)
            .or_insert_with(|| VerifyingKey::from_bytes(&ed25519_of(peer)?))
    }

    /// Checks many `(peer, message, signature)` at once ([`naac_types::sig::verify_many`]:
    /// one batch verification, and each on its own only if the batch fails).
    pub fn verify_many(&mut self, items: &[(PeerId, &[u8], &[u8])]) -> Vec<bool> {
        let keyed: Vec<(Option<VerifyingKey>, &[u8], &[u8])> = items
            .iter()
            .map(|(peer, msg, sig)| (self.key(peer), *msg, *sig))
            .collect();
        naac_types::sig::verify_many(&keyed)
    }
}

/// The raw ed25519 public key a peer id embeds (a ledger account), if it embeds one.
pub fn ed25519_of(peer: &PeerId) -> Option<[u8; 32]> {
    public_key_of(peer)?
        .try_into_ed25519()
        .ok()
        .map(|k| k.to_bytes())
}

/// The raw ed25519 public key of a keypair (a ledger account), if it is an ed25519 pair.
pub fn ed25519_of_keypair(key: &Keypair) -> Option<[u8; 32]> {
    key.public().try_into_ed25519().ok().map(|k| k.to_bytes())
}

/// The peer id of a raw ed25519 public key.
pub fn peer_of_ed25519(key: &[u8; 32]) -> Option<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(PublicKey::from(pk).to_peer_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_against_the_peer_id_only() {
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        let sig = sign(&a, b"record");
        let pa = a.public().to_peer_id();
        let pb = b.public().to_peer_id();
        assert!(verify(&pa, b"record", &sig));
        assert!(!verify(&pa, b"recorc", &sig));
        assert!(!verify(&pb, b"record", &sig));
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert!(!verify(&pa, b"record", &bad));
        assert!(!verify(&pa, b"record", &[]));
        let mut keys = PeerKeys::default();
        assert!(keys.verify(&pa, b"record", &sig));
        assert!(keys.verify(&pa, b"record", &sig), "cached");
        assert!(!keys.verify(&pb, b"record", &sig));
        let sig_b = sign(&b, b"other");
        let ok = keys.verify_many(&[(pa, b"record", &sig), (pb, b"other", &sig_b)]);
        assert_eq!(ok, vec![true, true]);
        let ok = keys.verify_many(&[
            (pa, b"record", &sig),
            (pb, b"forged", &sig_b),
            (pb, b"other", &sig_b),
        ]);
        assert_eq!(ok, vec![true, false, true]);
        assert_eq!(keys.verify_many(&[(pa, b"record", &[1, 2])]), vec![false]);
    }
}
