//! Delegated audits: the owner of stored data hands another node the right to audit and
//! repair it. `naac store delegate` writes a bundle: the signed manifest, where each shard
//! lives, and the shard's unused whole-shard challenges, each with the owner's signature of
//! its `Prove` (hosts answer a whole-shard proof only to the owner's signature). The owner's
//! catalog marks those challenges handed over, so the two never ask the same one. `naac store
//! adopt` enters the bundle into another data dir's catalog, whose node then audits the data
//! (chunk reads need no right at all) and repairs it onto new hosts (an upload needs only the
//! signed manifest). What a delegate cannot do: pay hosts, or remove the data.

use super::Catalog;
use naac_net::Keypair;
use naac_store::{SignedManifest, StoreId};
use naac_types::{hex, unhex};
use rusqlite::params;
use serde::{Deserialize, Serialize};

/// The bundle's format version.
pub const BUNDLE_VERSION: u16 = 1;

/// What `naac store delegate` writes (bytes as hex).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bundle {
    pub v: u16,
    /// `naac://<id>`.
    pub id: String,
    pub signed: String,
    pub name: String,
    pub days: u32,
    pub created_ms: u64,
    pub shards: Vec<BundleShard>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BundleShard {
    pub shard: u16,
    pub host: String,
    pub addrs: Vec<String>,
    pub challenges: Vec<Challenge>,
}

/// One whole-shard challenge: the key, the answer a host holding every byte gives, and the
/// owner's signature of the `Prove` that asks it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Challenge {
    pub key: String,
    pub answer: String,
    pub sig: String,
}

/// The owner's side: a bundle for `id`, handing over every unused challenge.
pub fn export(catalog: &Catalog, user: &Keypair, id: &StoreId) -> anyhow::Result<Bundle> {
    let (row, signed) = catalog
        .get(id)?
        .ok_or_else(|| anyhow::anyhow!("naac://{id} is not in this data dir's store catalog"))?;
    anyhow::ensure!(!row.removed, "naac://{id} was removed");
    let man = SignedManifest::open(&signed, id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let owner = naac_net::ed25519_of_keypair(user)
        .ok_or_else(|| anyhow::anyhow!("the user key is not ed25519"))?;
    anyhow::ensure!(
        man.owner == owner,
        "naac://{id} is not this user's: only its owner can delegate its audits"
    );
    let mut shards = Vec::new();
    for r in catalog.shards(id)? {
        let challenges = catalog
            .hand_over_challenges(id, r.shard)?
            .into_iter()
            .map(|(key, answer)| {
                let msg = naac_proto::store::prove_signing_bytes(id, r.shard, &key);
                Challenge {
                    key: hex(&key),
                    answer: hex(&answer),
                    sig: hex(&naac_net::sign(user, &msg)),
                }
            })
            .collect();
        shards.push(BundleShard {
            shard: r.shard,
            host: r.host,
            addrs: r.addrs,
            challenges,
        });
    }
    Ok(Bundle {
        v: BUNDLE_VERSION,
        id: format!("naac://{id}"),
        signed: hex(&signed),
        name: row.name,
        days: row.days,
        created_ms: row.created_ms,
        shards,
    })
}

/// The delegate's side: enters `b` into this catalog (checked: the manifest hashes to the
/// id and is signed by its owner; each signature is the owner's). Returns the id.
pub fn adopt(catalog: &Catalog, b: &Bundle) -> anyhow::Result<StoreId> {
    anyhow::ensure!(
        b.v == BUNDLE_VERSION,
        "bundle version {} is not {BUNDLE_VERSION}: made by another naac",
        b.v
    );
    let (id, _) = super::parse_url(&b.id)?;
    let signed =
        naac_types::unhex_vec(&b.signed).ok_or_else(|| anyhow::anyhow!("signed: not hex"))?;
    let man = SignedManifest::open(&signed, &id).map_err(|e| anyhow::anyhow!("{e}"))?;
    catalog.add(&id, &man, &signed, b.days)?;
    let now = crate::survey::unix_ms();
    for s in &b.shards {
        anyhow::ensure!(
            s.shard < man.geometry.n,
            "shard {} of a {}-shard manifest",
            s.shard,
            man.geometry.n
        );
        let mut pairs = Vec::new();
        for c in &s.challenges {
            let (Some(key), Some(answer), Some(sig)) = (
                unhex::<32>(&c.key),
                unhex::<32>(&c.answer),
                naac_types::unhex_vec(&c.sig),
            ) else {
                anyhow::bail!("shard {}: a challenge is not hex", s.shard);
            };
            let msg = naac_proto::store::prove_signing_bytes(&id, s.shard, &key);
            anyhow::ensure!(
                naac_types::sig::verify(&man.owner, &msg, &sig),
                "shard {}: a challenge is not signed by the data's owner",
                s.shard
            );
            pairs.push((key, answer, Some(sig)));
        }
        catalog.place(
            &id,
            s.shard,
            &s.host,
            &s.addrs,
            naac_types::Price(0),
            now,
            now,
        )?;
        catalog.keep_challenges(&id, s.shard, &pairs)?;
    }
    Ok(id)
}

impl Catalog {
    /// Takes every unused challenge of a shard, marking them handed over.
    fn hand_over_challenges(
        &self,
        id: &StoreId,
        shard: u16,
    ) -> anyhow::Result<Vec<([u8; 32], [u8; 32])>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT key, answer FROM challenges WHERE manifest = ?1 AND shard = ?2 AND used = 0
             ORDER BY idx",
        )?;
        let rows = st.query_map(params![id.to_hex(), shard], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (k, a) = row?;
            if let (Ok(k), Ok(a)) = (<[u8; 32]>::try_from(k), <[u8; 32]>::try_from(a)) {
                out.push((k, a));
            }
        }
        db.execute(
            "UPDATE challenges SET used = 2 WHERE manifest = ?1 AND shard = ?2 AND used = 0",
            params![id.to_hex(), shard],
        )?;
        Ok(out)
    }
}
