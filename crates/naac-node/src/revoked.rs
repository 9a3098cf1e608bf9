//! The revoked tokens a node knows of: revocation ids of token blocks (biscuit's, one per
//! block), each kept until the tokens made with it expire anyway, at most [`MAX_REVOKED`],
//! and saved in the data dir (`revoked.jsonl`) so a restart forgets none. A revocation
//! arrives on [`naac_proto::REVOCATION_TOPIC`] and is believed only when its signer may
//! revoke that block of that token ([`accept`]).

use naac_net::PeerId;
use naac_proto::Revocation;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Most revocations kept. Past it, the ones that expire first go (those that never expire
/// last, oldest first), and a warning says so.
pub const MAX_REVOKED: usize = 65_536;

/// Largest revocation message read (a 16 KiB token and its signature, as JSON).
pub const MAX_REVOCATION_BYTES: usize = 20 * 1024;

#[derive(Serialize, Deserialize)]
struct Line {
    /// The revocation id, hex.
    id: String,
    /// Unix seconds after which it no longer matters (`None`: never).
    until: Option<u64>,
}

/// Most revocations one grant's holders (not its root) may have kept here, so a holder
/// cannot fill the set by narrowing its token again and again and revoking each new block.
pub const MAX_PER_GRANT: u32 = 64;

/// A revocation that checked out ([`accept`]).
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The revoked block's id.
    pub id: Vec<u8>,
    /// When every token made with it expires anyway.
    pub until: Option<SystemTime>,
    /// The token's grant (its authority block's id).
    pub grant: Vec<u8>,
    /// Signed by the token's root (else by a holder).
    pub by_root: bool,
    /// The ids of the revoked block and of the blocks before it: when one of them is revoked
    /// already, so is this.
    pub ids: Vec<Vec<u8>>,
}

/// The set.
#[derive(Default)]
pub struct Revoked {
    map: HashMap<Vec<u8>, (Option<u64>, u64)>,
    /// Holders' revocations kept per grant since this node started.
    per_grant: HashMap<Vec<u8>, u32>,
    /// Inserted so far (orders entries that never expire, oldest first).
    seq: u64,
    path: Option<PathBuf>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Revoked {
    /// The set saved at `path` (empty when there is none), without what has expired.
    pub fn load(path: &Path) -> Revoked {
        let mut r = Revoked {
            path: Some(path.to_path_buf()),
            ..Revoked::default()
        };
        let now = unix(SystemTime::now());
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let Ok(l) = serde_json::from_str::<Line>(line) else {
                    continue;
                };
                if l.until.is_some_and(|u| u < now) {
                    continue;
                }
                if let Some(id) = unhex(&l.id) {
                    r.put(id, l.until);
                }
            }
            // Rewritten without the expired and the duplicates.
            let mut out = String::new();
            for (id, (until, _)) in &r.map {
                let l = Line {
                    id: hex(id),
                    until: *until,
                };
                out.push_str(&serde_json::to_string(&l).unwrap_or_default());
                out.push('\n');
            }
            if let Err(e) = std::fs::write(path, out) {
                tracing::warn!("revoked tokens: rewrite {}: {e}", path.display());
            }
        }
        r
    }

    /// Whether any of `ids` (a token's blocks) is revoked.
    pub fn any(&self, ids: &[Vec<u8>]) -> bool {
        ids.iter().any(|id| self.map.contains_key(id))
    }

    /// Every revoked id kept.
    pub fn ids(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.map.keys()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Keeps a checked revocation; `false` when its token was revoked already (by this
    /// block or an earlier one) or its grant's holders used up [`MAX_PER_GRANT`].
    pub fn keep(&mut self, a: &Accepted) -> bool {
        if self.any(&a.ids) {
            return false;
        }
        if !a.by_root {
            let n = self.per_grant.entry(a.grant.clone()).or_default();
            if *n >= MAX_PER_GRANT {
                tracing::warn!(
                    "a grant's holders sent more than {MAX_PER_GRANT} revocations; more are ignored"
                );
                return false;
            }
            *n += 1;
            if self.per_grant.len() > MAX_REVOKED {
                self.per_grant.clear();
            }
        }
        self.insert(a.id.clone(), a.until)
    }

    /// Adds `id`, kept until `until`; `false` when it was known already.
    pub fn insert(&mut self, id: Vec<u8>, until: Option<SystemTime>) -> bool {
        if self.map.contains_key(&id) {
            return false;
        }
        let until = until.map(unix);
        if let Some(path) = &self.path {
            let line = Line {
                id: hex(&id),
                until,
            };
            let r = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| {
                    writeln!(f, "{}", serde_json::to_string(&line).unwrap_or_default())
                });
            if let Err(e) = r {
                tracing::warn!("revoked tokens: save to {}: {e}", path.display());
            }
        }
        self.put(id, until);
        true
    }

    fn put(&mut self, id: Vec<u8>, until: Option<u64>) {
        if self.map.len() >= MAX_REVOKED {
            let now = unix(SystemTime::now());
            self.map.retain(|_, (u, _)| u.is_none_or(|u| u >= now));
        }
        if self.map.len() >= MAX_REVOKED {
            // The one that expires first goes; of those that never expire, the oldest.
            let victim = self
                .map
                .iter()
                .min_by_key(|(_, (u, seq))| (u.unwrap_or(u64::MAX), *seq))
                .map(|(k, _)| k.clone());
            if let Some(v) = victim {
                tracing::warn!(
                    "revoked tokens: {MAX_REVOKED} kept; the first to expire is dropped"
                );
                self.map.remove(&v);
            }
        }
        self.seq += 1;
        self.map.insert(id, (until, self.seq));
    }
}

/// The revocation `r` checked: its token verifies against the root it names, its signer may
/// revoke that block, and the signature holds. What to keep, or `Err(why)`.
/// `trusted`, when given, limits the roots whose tokens this node cares about (a provider
/// keeps only revocations of tokens it could accept).
pub fn accept(r: &Revocation, trusted: Option<&naac_token::Verifier>) -> Result<Accepted, String> {
    if r.v != 1 {
        return Err(format!("revocation version {} is not supported", r.v));
    }
    let token = match trusted {
        Some(v) => v.verify(&r.token),
        None => naac_token::inspect(&r.token),
    }
    .map_err(|e| format!("the revoked token: {e}"))?;
    let by: PeerId =
        r.by.parse()
            .map_err(|_| "the revoker is not a user id".to_string())?;
    let key = naac_net::ed25519_of(&by).ok_or("the revoker's id has no ed25519 key")?;
    let block = r.block as usize;
    token.may_revoke(block, &key).map_err(|e| e.to_string())?;
    let id = token
        .revocation_ids()
        .get(block)
        .cloned()
        .ok_or("no such block")?;
    if !naac_net::verify(&by, &Revocation::signing_bytes(&id), &r.sig) {
        return Err("the revocation's signature does not hold".into());
    }
    let mut ids = token.revocation_ids();
    ids.truncate(block + 1);
    Ok(Accepted {
        id,
        until: token.expires_through(block),
        grant: ids.first().cloned().unwrap_or_default(),
        by_root: *token.root() == key,
        ids,
    })
}

/// A revocation of block `block` of `token`, signed by `user`.
pub fn revocation(
    token: &str,
    block: usize,
    user: &naac_net::Keypair,
) -> Result<Revocation, String> {
    let t = naac_token::inspect(token).map_err(|e| e.to_string())?;
    let by = naac_net::peer_id_of(user);
    let key = naac_net::ed25519_of(&by).ok_or("the user key is not ed25519")?;
    t.may_revoke(block, &key).map_err(|e| e.to_string())?;
    let id = t
        .revocation_ids()
        .get(block)
        .cloned()
        .ok_or("no such block")?;
    Ok(Revocation {
        v: 1,
        token: token.trim().to_string(),
        block: block as u32,
        by: by.to_string(),
        sig: naac_net::sign(user, &Revocation::signing_bytes(&id)),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use naac_token::{Kind, Limits, Root};

    fn user() -> (naac_net::Keypair, Root) {
        let k = naac_net::Keypair::generate_ed25519();
        let secret: [u8; 32] = k
            .clone()
            .try_into_ed25519()
            .unwrap()
            .secret()
            .as_ref()
            .try_into()
            .unwrap();
        (k, Root::from_ed25519(&secret).unwrap())
    }

    #[test]
    fn only_a_signer_in_the_chain_revokes_and_the_set_survives_a_restart() {
        let (alice_k, alice) = user();
        let (bob_k, bob) = user();
        let (eve_k, _) = user();
        let token = alice
            .mint(Kind::Pool, Some(&bob.public()), &Limits::default())
            .unwrap();
        let token = naac_token::attenuate(
            &token,
            &Limits {
                slots: Some(1),
                ..Limits::default()
            },
        )
        .unwrap();
        // Eve cannot make one; nor forge bob's.
        assert!(revocation(&token, 1, &eve_k).is_err());
        let mut forged = revocation(&token, 1, &bob_k).unwrap();
        forged.sig[0] ^= 1;
        assert!(accept(&forged, None).is_err());
        let mut retarget = revocation(&token, 1, &bob_k).unwrap();
        retarget.block = 0;
        assert!(
            accept(&retarget, None).is_err(),
            "bob may not revoke the grant"
        );
        // Bob revokes his narrowed token; alice the grant.
        let a = accept(&revocation(&token, 1, &bob_k).unwrap(), None).unwrap();
        let (id, until) = (a.id.clone(), a.until);
        assert_eq!(until, None);
        assert!(!a.by_root);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.jsonl");
        let mut set = Revoked::load(&path);
        assert!(set.insert(id.clone(), until));
        assert!(!set.insert(id.clone(), until), "known already");
        let t = alice.verifier().verify(&token).unwrap();
        assert!(set.any(&t.revocation_ids()));
        let root = accept(&revocation(&token, 0, &alice_k).unwrap(), None).unwrap();
        assert!(root.by_root);
        assert!(
            set.keep(&root),
            "the root's revocation of the whole grant is kept"
        );
        assert!(!set.keep(&root), "and only once");
        // An expired one is dropped at load.
        set.insert(vec![1, 2, 3], Some(UNIX_EPOCH));
        let again = Revoked::load(&path);
        assert_eq!(again.len(), 2);
        assert!(again.any(&[id]));
        // A node that trusts another root ignores it.
        let (_, carol) = user();
        assert!(
            accept(
                &revocation(&token, 1, &bob_k).unwrap(),
                Some(&carol.verifier())
            )
            .is_err()
        );
    }

    #[test]
    fn a_holder_cannot_flood_the_set_with_its_own_revocations() {
        let (_, alice) = user();
        let (bob_k, bob) = user();
        let token = alice
            .mint(Kind::Pool, Some(&bob.public()), &Limits::default())
            .unwrap();
        let mut set = Revoked::default();
        let mut kept = 0;
        for n in 0..MAX_PER_GRANT + 10 {
            // Each time a new narrowing of the same token, and its new block revoked.
            let narrowed = naac_token::attenuate(
                &token,
                &Limits {
                    slots: Some(n + 1),
                    ..Limits::default()
                },
            )
            .unwrap();
            let a = accept(&revocation(&narrowed, 1, &bob_k).unwrap(), None).unwrap();
            kept += usize::from(set.keep(&a));
        }
        assert_eq!(kept, MAX_PER_GRANT as usize);
    }

    #[test]
    fn the_set_is_bounded_and_drops_the_first_to_expire() {
        let mut set = Revoked::default();
        let far = SystemTime::now() + std::time::Duration::from_secs(86_400);
        set.insert(
            vec![0],
            Some(SystemTime::now() + std::time::Duration::from_secs(60)),
        );
        for i in 1..MAX_REVOKED as u32 + 5 {
            set.insert(i.to_le_bytes().to_vec(), Some(far));
        }
        assert_eq!(set.len(), MAX_REVOKED);
        assert!(!set.any(&[vec![0]]), "the first to expire went first");
    }
}
