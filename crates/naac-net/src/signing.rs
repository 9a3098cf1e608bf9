//! Signatures with a node's identity key, checked against a peer id alone.
//!
//! naac identities are ed25519 keys, whose libp2p peer ids embed the public key (an
//! "identity" multihash), so a signature from any peer can be checked without asking it
//! for its key.

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};

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

/// Whether `sig` is `peer`'s signature over `msg`.
pub fn verify(peer: &PeerId, msg: &[u8], sig: &[u8]) -> bool {
    public_key_of(peer).is_some_and(|k| k.verify(msg, sig))
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
    }
}
