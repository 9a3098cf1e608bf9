//! Who may read a private manifest on a storage host: a reader showing a data token
//! (`naac-token`) rooted in the manifest's owner, not revoked, held by the reader — its
//! holder is the reader's own peer key (the connection proves it) or the user whose signed
//! attestation of that peer key comes with it, so a token shown to one host is of no use to
//! that host — and whose checks allow reading this id: its listing, or files with bytes in
//! every stripe a read covers.
//!
//! A path limit is enforced per stripe: a shard's bytes mix the files of their stripe, so a
//! reader allowed one file may read the stripes holding its bytes, and with them the bytes of
//! the files sharing those stripes (at most a stripe, `k` pieces, on either side). The owner's
//! own node serves exactly a file's bytes (`/v1/store` on its API).
//!
//! Bounds: manifests are decoded once and kept while small ([`MAX_CACHED`] of at most
//! [`MAX_CACHED_BYTES`] each); a pass's signatures are checked once per [`VERIFIED_FOR`]
//! for the same peer ([`MAX_VERIFIED`] kept; revocations are looked up on every use); a
//! read's files are checked at most [`MAX_PATH_CHECKS`] times; the revoked set holds at
//! most [`crate::revoked::MAX_REVOKED`] ids.

use naac_net::PeerId;
use naac_proto::store::DataPass;
use naac_store::disk::Disk;
use naac_store::{Manifest, SignedManifest, StoreId};
use naac_token::{DataOp, DataRequest, Key, Token, Verifier};
use naac_types::ContentId;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Decoded manifests kept.
pub const MAX_CACHED: usize = 64;
/// Largest signed manifest kept decoded.
pub const MAX_CACHED_BYTES: usize = 1 << 20;
/// Most distinct files a path-limited token is checked against for one read.
pub const MAX_PATH_CHECKS: usize = 256;

/// How long a verified pass is believed for the same peer (revocations are checked on every
/// use regardless).
pub const VERIFIED_FOR: Duration = Duration::from_secs(10);
/// Passes kept verified (then the set starts again).
pub const MAX_VERIFIED: usize = 1024;

/// A storage host's gate for private manifests.
#[derive(Default)]
pub struct Access {
    cache: Mutex<HashMap<StoreId, Arc<Manifest>>>,
    /// Revoked ids, and the order they came in (the oldest go first when it is full).
    revoked: Mutex<RevokedIds>,
    /// Passes verified lately, by what was shown, who showed it and the owner checked to.
    verified: Mutex<HashMap<PassKey, Verified>>,
}

/// Revoked ids, and the order they came in.
type RevokedIds = (HashSet<Vec<u8>>, std::collections::VecDeque<Vec<u8>>);

/// A pass as shown: the BLAKE3 of its token and attestation, the peer, the owner.
type PassKey = (ContentId, PeerId, Key);

/// A pass verified from scratch.
struct Verified {
    token: Arc<Token>,
    by: Option<Key>,
    ids: Vec<Vec<u8>>,
    at: Instant,
}

fn pass_key(pass: &DataPass, peer: &PeerId, owner: &Key) -> PassKey {
    let mut h = blake3::Hasher::new();
    h.update(pass.token.as_bytes());
    if let Some(a) = &pass.user {
        h.update(&[0]);
        h.update(a.user.as_bytes());
        h.update(&[0]);
        h.update(&a.signature);
    }
    (ContentId(*h.finalize().as_bytes()), *peer, *owner)
}

impl Access {
    /// `m`'s manifest as the host keeps it on `disk` (blocking), decoded once.
    pub fn manifest(&self, m: &StoreId, disk: &Disk) -> Result<Arc<Manifest>, String> {
        if let Some(man) = self.lock_cache().get(m) {
            return Ok(man.clone());
        }
        let signed = disk
            .manifest(m)
            .ok_or_else(|| format!("this host holds no manifest {}", m.short()))?;
        let man = Arc::new(SignedManifest::open(&signed, m).map_err(|e| e.to_string())?);
        if signed.len() <= MAX_CACHED_BYTES {
            let mut c = self.lock_cache();
            if c.len() >= MAX_CACHED {
                // Any one out: a scan of manifests costs a decode each, no more.
                if let Some(k) = c.keys().next().copied() {
                    c.remove(&k);
                }
            }
            c.insert(*m, man.clone());
        }
        Ok(man)
    }

    /// Drops `m`'s decoded manifest (its shards are gone).
    pub fn forget(&self, m: &StoreId) {
        self.lock_cache().remove(m);
    }

    /// Refuses tokens with any of these revocation ids from now on.
    pub fn revoke(&self, ids: impl IntoIterator<Item = Vec<u8>>) {
        let mut r = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if r.0.contains(&id) {
                continue;
            }
            // Full: the oldest goes (a new revocation is never the one dropped).
            while r.0.len() >= crate::revoked::MAX_REVOKED {
                let Some(old) = r.1.pop_front() else { break };
                r.0.remove(&old);
            }
            r.0.insert(id.clone());
            r.1.push_back(id);
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<StoreId, Arc<Manifest>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pass's token, checked to the manifest's owner and not revoked, and the key that
    /// shows it: its holder when that is `peer` or the user the pass attests `peer` works for.
    fn token(
        &self,
        man: &Manifest,
        m: &StoreId,
        peer: &PeerId,
        pass: Option<&DataPass>,
    ) -> Result<(Arc<Token>, Option<Key>), String> {
        let Some(pass) = pass else {
            return Err(format!(
                "naac://{m} is private: reading it needs a data token from its owner (naac store get --token FILE)"
            ));
        };
        let key = pass_key(pass, peer, &man.owner);
        let known = {
            let v = self.lock_verified();
            v.get(&key)
                .filter(|k| k.at.elapsed() < VERIFIED_FOR)
                .map(|k| (k.token.clone(), k.by, k.ids.clone()))
        };
        let (t, by, ids) = match known {
            Some(k) => k,
            None => {
                let (t, by) = self.verify(man, m, peer, pass)?;
                let ids = t.revocation_ids();
                let t = Arc::new(t);
                let mut v = self.lock_verified();
                if v.len() >= MAX_VERIFIED {
                    v.clear();
                }
                v.insert(
                    key,
                    Verified {
                        token: t.clone(),
                        by,
                        ids: ids.clone(),
                        at: Instant::now(),
                    },
                );
                (t, by, ids)
            }
        };
        let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        if ids.iter().any(|id| revoked.0.contains(id)) {
            return Err(format!(
                "the data token for naac://{} is revoked",
                m.short()
            ));
        }
        Ok((t, by))
    }

    /// Checks a pass from scratch: every signature to the owner, the holder, and which key
    /// shows it.
    fn verify(
        &self,
        man: &Manifest,
        m: &StoreId,
        peer: &PeerId,
        pass: &DataPass,
    ) -> Result<(Token, Option<Key>), String> {
        let t = Verifier::trusting(&[man.owner])
            .and_then(|v| v.verify(&pass.token))
            .map_err(|e| {
                if naac_token::inspect(&pass.token).is_ok_and(|t| *t.root() != man.owner) {
                    format!(
                        "naac://{m} is private, and the data token shown is not from its owner (ask them for one: naac token mint data --to YOU)"
                    )
                } else {
                    format!("the data token for naac://{}: {e}", m.short())
                }
            })?;
        let Some(holder) = t.holder().copied() else {
            // A bearer token shown to a host would be the host's to use.
            return Err(format!(
                "the data token for naac://{} names no holder; storage hosts take only bound ones (naac token mint data --to USER)",
                m.short()
            ));
        };
        let own = naac_net::ed25519_of(peer);
        let attested = pass.user.as_ref().and_then(|a| {
            let user: PeerId = a.user.parse().ok()?;
            let bytes = naac_proto::UserAttestation::signing_bytes(&peer.to_bytes());
            naac_net::verify(&user, &bytes, &a.signature).then(|| naac_net::ed25519_of(&user))?
        });
        let by = [own, attested].into_iter().flatten().find(|k| *k == holder);
        Ok((t, by))
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<PassKey, Verified>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `peer` may read `man`'s listing (the signed manifest).
    pub fn listing(
        &self,
        man: &Manifest,
        m: &StoreId,
        peer: &PeerId,
        pass: Option<&DataPass>,
        now: SystemTime,
    ) -> Result<(), String> {
        if !man.private {
            return Ok(());
        }
        let (t, by) = self.token(man, m, peer, pass)?;
        let hex = m.to_hex();
        t.authorize_data(&DataRequest {
            by: by.as_ref(),
            op: DataOp::Read,
            manifest: &hex,
            path: None,
            now,
        })
        .map_err(|e| {
            format!(
                "the data token does not let you read naac://{}: {e}",
                m.short()
            )
        })
    }

    /// Whether `peer` may read bytes `start..start + len` of a shard of `man`.
    #[allow(clippy::too_many_arguments)]
    pub fn read(
        &self,
        man: &Manifest,
        m: &StoreId,
        peer: &PeerId,
        pass: Option<&DataPass>,
        start: u64,
        len: u64,
        now: SystemTime,
    ) -> Result<(), String> {
        if !man.private {
            return Ok(());
        }
        let (t, by) = self.token(man, m, peer, pass)?;
        let hex = m.to_hex();
        let allows = |path: &str| {
            t.authorize_data(&DataRequest {
                by: by.as_ref(),
                op: DataOp::Read,
                manifest: &hex,
                path: Some(path),
                now,
            })
        };
        let stripes = man.files_by_stripe(start, len);
        let refuse = |e: naac_token::TokenError| {
            format!(
                "the data token does not let you read these bytes of naac://{}: {e}",
                m.short()
            )
        };
        if !t.mentions("path") {
            // No check looks at the path: one run answers for every file.
            let first = stripes
                .iter()
                .flatten()
                .next()
                .map_or("", |f| f.path.as_str());
            return allows(first).map_err(refuse);
        }
        let mut verdicts: HashMap<&str, bool> = HashMap::new();
        let mut last_err = None;
        for files in &stripes {
            if files.is_empty() {
                continue;
            }
            let mut ok = false;
            for f in files {
                let p = f.path.as_str();
                let v = match verdicts.get(p) {
                    Some(v) => *v,
                    None => {
                        if verdicts.len() >= MAX_PATH_CHECKS {
                            return Err(format!(
                                "this read of naac://{} spans more than {MAX_PATH_CHECKS} files for a path-limited token: read fewer bytes at once",
                                m.short()
                            ));
                        }
                        let r = allows(p);
                        let ok = r.is_ok();
                        if let Err(e) = r {
                            last_err = Some(e);
                        }
                        verdicts.insert(p, ok);
                        ok
                    }
                };
                if v {
                    ok = true;
                    break;
                }
            }
            if !ok {
                return Err(match last_err {
                    Some(e) => refuse(e),
                    None => "the data token allows none of these bytes".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use naac_net::Keypair;
    use naac_store::layout::Geometry;
    use naac_store::manifest::{FileEntry, MANIFEST_VERSION};
    use naac_token::{Kind, Limits};
    use naac_types::ContentId;

    fn key(k: &Keypair) -> Key {
        naac_net::ed25519_of_keypair(k).unwrap()
    }

    /// Alice's private tree: `a` in stripe 0, `sub/b` in stripes 1 and 2 (2-of-4, 1 KiB
    /// pieces: 2 KiB of data per stripe, 1 KiB of each shard).
    fn manifest(owner: &Keypair, private: bool) -> Manifest {
        let f = |path: &str, offset, len| FileEntry {
            path: path.into(),
            offset,
            len,
            hash: ContentId::of(path.as_bytes()),
        };
        Manifest {
            v: MANIFEST_VERSION,
            owner: key(owner),
            created_ms: 1,
            name: "data".into(),
            single: false,
            files: vec![f("a", 0, 2048), f("sub/b", 2048, 4000)],
            empty_dirs: Vec::new(),
            geometry: Geometry {
                k: 2,
                n: 4,
                piece: 1024,
                data_len: 6048,
            },
            shards: vec![ContentId::of(b"s"); 4],
            private,
        }
    }

    fn attest(user: &Keypair, peer: &PeerId) -> naac_proto::UserAttestation {
        naac_proto::UserAttestation {
            user: user.public().to_peer_id().to_string(),
            signature: naac_net::sign(
                user,
                &naac_proto::UserAttestation::signing_bytes(&peer.to_bytes()),
            ),
        }
    }

    #[test]
    fn only_a_holder_of_the_owners_token_reads_private_data_and_only_what_it_allows() {
        let (alice, bob, eve) = (
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
        );
        let (bob_session, eve_session) = (
            Keypair::generate_ed25519().public().to_peer_id(),
            Keypair::generate_ed25519().public().to_peer_id(),
        );
        let man = manifest(&alice, true);
        let m = ContentId::of(b"the manifest");
        let other = ContentId::of(b"another manifest");
        let access = Access::default();
        let now = SystemTime::now();
        let root = crate::store::token_root(&alice).unwrap();
        let for_bob = |limits: &Limits| root.mint(Kind::Data, Some(&key(&bob)), limits).unwrap();
        let pass = |token: String, user: Option<&Keypair>, peer: &PeerId| DataPass {
            token,
            user: user.map(|u| attest(u, peer)),
        };
        let read = |p: Option<&DataPass>, peer: &PeerId, id: &StoreId, start, len| {
            access.read(&man, id, peer, p, start, len, now)
        };
        let whole = for_bob(&Limits {
            manifests: vec![m.to_hex()],
            ..Limits::default()
        });
        // No pass at all.
        let e = read(None, &bob_session, &m, 0, 1024).unwrap_err();
        assert!(e.contains("is private"), "{e}");
        // Bob, attested by his key: the listing and every byte.
        let bobs = pass(whole.clone(), Some(&bob), &bob_session);
        read(Some(&bobs), &bob_session, &m, 0, 3072).unwrap();
        access
            .listing(&man, &m, &bob_session, Some(&bobs), now)
            .unwrap();
        // The same token for another id.
        let e = read(Some(&bobs), &bob_session, &other, 0, 1024).unwrap_err();
        assert!(e.contains("manifest("), "{e}");
        // Eve with bob's token: her own attestation, bob's replayed for his session, none.
        for p in [
            pass(whole.clone(), Some(&eve), &eve_session),
            pass(whole.clone(), Some(&bob), &bob_session),
            pass(whole.clone(), None, &eve_session),
        ] {
            let e = read(Some(&p), &eve_session, &m, 0, 1024).unwrap_err();
            assert!(e.contains("held by another key"), "{e}");
        }
        // Bob hands it to a provider: the provider's own peer key holds it, no attestation.
        let provider = Keypair::generate_ed25519();
        let handed =
            crate::store::hand_to(&bobs, &bob, &provider.public().to_peer_id(), &m).unwrap();
        let p = pass(handed.clone(), None, &provider.public().to_peer_id());
        read(Some(&p), &provider.public().to_peer_id(), &m, 0, 1024).unwrap();
        // ...which bob's session cannot use any more.
        let p = pass(handed, Some(&bob), &bob_session);
        assert!(read(Some(&p), &bob_session, &m, 0, 1024).is_err());
        // A token rooted elsewhere, or a bearer token.
        let eves = crate::store::token_root(&eve)
            .unwrap()
            .mint(Kind::Data, Some(&key(&bob)), &Limits::default())
            .unwrap();
        let e = read(
            Some(&pass(eves, Some(&bob), &bob_session)),
            &bob_session,
            &m,
            0,
            1,
        )
        .unwrap_err();
        assert!(e.contains("not from its owner"), "{e}");
        let bearer = root.mint(Kind::Data, None, &Limits::default()).unwrap();
        let e = read(
            Some(&pass(bearer, None, &bob_session)),
            &bob_session,
            &m,
            0,
            1,
        )
        .unwrap_err();
        assert!(e.contains("names no holder"), "{e}");
        // A pool token of alice's is no data token.
        let pool = root
            .mint(Kind::Pool, Some(&key(&bob)), &Limits::default())
            .unwrap();
        let e = read(
            Some(&pass(pool, Some(&bob), &bob_session)),
            &bob_session,
            &m,
            0,
            1,
        )
        .unwrap_err();
        assert!(e.contains("not one for stored data"), "{e}");
        // A path limit: stripes 1 and 2 hold only sub/b; stripe 0 only a.
        let sub = pass(
            for_bob(&Limits {
                path_prefix: Some("sub/".into()),
                ..Limits::default()
            }),
            Some(&bob),
            &bob_session,
        );
        read(Some(&sub), &bob_session, &m, 1024, 2048).unwrap();
        access
            .listing(&man, &m, &bob_session, Some(&sub), now)
            .unwrap();
        let e = read(Some(&sub), &bob_session, &m, 0, 1024).unwrap_err();
        assert!(e.contains("path("), "{e}");
        assert!(read(Some(&sub), &bob_session, &m, 512, 1024).is_err());
        // Revoked: refused from then on.
        let t = Verifier::trusting(&[key(&alice)])
            .unwrap()
            .verify(&whole)
            .unwrap();
        access.revoke(t.revocation_ids().into_iter().take(1));
        let e = read(Some(&bobs), &bob_session, &m, 0, 1024).unwrap_err();
        assert!(e.contains("revoked"), "{e}");
        // A handed-on token lapses on its own.
        let t = Verifier::trusting(&[key(&alice)])
            .unwrap()
            .verify(
                &crate::store::hand_to(&bobs, &bob, &provider.public().to_peer_id(), &m).unwrap(),
            )
            .unwrap();
        assert!(t.expires_through(t.blocks().len() - 1).is_some());
        // A revocation set filled by a flood still takes a new revocation (the oldest go).
        let fresh = for_bob(&Limits::default());
        let p = pass(fresh.clone(), Some(&bob), &bob_session);
        read(Some(&p), &bob_session, &m, 0, 1024).unwrap();
        access.revoke((0..crate::revoked::MAX_REVOKED as u64).map(|i| i.to_le_bytes().to_vec()));
        let t = Verifier::trusting(&[key(&alice)])
            .unwrap()
            .verify(&fresh)
            .unwrap();
        access.revoke(t.revocation_ids().into_iter().take(1));
        let e = read(Some(&p), &bob_session, &m, 0, 1024).unwrap_err();
        assert!(e.contains("revoked"), "{e}");
        // Public data needs nothing.
        let public = manifest(&alice, false);
        access
            .read(&public, &m, &eve_session, None, 0, 3072, now)
            .unwrap();
        access
            .listing(&public, &m, &eve_session, None, now)
            .unwrap();
    }
}
