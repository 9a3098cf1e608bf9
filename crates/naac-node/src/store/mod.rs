//! Storage across untrusted hosts, the node's side: a host's shards ([`host`]), requests to
//! hosts ([`client`]), putting data ([`put`]), reading it back ([`get`]), the user's record of
//! what it stored ([`catalog`]) and the audits and repairs a long-running node does for its
//! user ([`audit`]). The rules — layout, erasure code, proofs, placement, repair planning —
//! are `naac-store`'s, which does no network IO.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod client;
pub mod delegate;
pub mod get;
pub mod host;
pub mod pay;
pub mod put;

pub use catalog::Catalog;

use naac_net::{Client, Keypair, PeerId};
use naac_store::StoreId;

/// The DHT key every storage host announces itself under.
pub const HOSTS_KEY: &[u8] = b"/naac/store/v1/hosts";

/// The DHT key hosts of a manifest's shards announce.
pub fn dht_key(m: &StoreId) -> Vec<u8> {
    let mut k = b"/naac/store/v1/m/".to_vec();
    k.extend_from_slice(&m.0);
    k
}

/// How often each shard is audited, on average, unless the node is told otherwise: once a
/// day (Filecoin proves every sector daily).
pub const AUDIT_EVERY_MS: u64 = 86_400_000;

/// A whole-shard challenge: the key, and the answer an honest host gives.
pub type Challenge = ([u8; 32], [u8; 32]);

/// Whole-shard challenges for the shard files at `paths` (blocking; shards hashed on up to
/// two threads): random keys from the OS and the keyed hash of each shard under each.
pub fn make_challenges(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<Vec<Challenge>>> {
    use std::io::Read as _;
    let mut rng = std::fs::File::open("/dev/urandom")?;
    let keys: Vec<Vec<[u8; 32]>> = paths
        .iter()
        .map(|_| {
            (0..naac_store::audit::WHOLE_CHALLENGES)
                .map(|_| {
                    let mut k = [0u8; 32];
                    rng.read_exact(&mut k).map(|()| k)
                })
                .collect::<std::io::Result<Vec<_>>>()
        })
        .collect::<std::io::Result<_>>()?;
    let work: Vec<(&std::path::PathBuf, &Vec<[u8; 32]>)> = paths.iter().zip(&keys).collect();
    let half = work.len().div_ceil(2).max(1);
    let answers: Vec<std::io::Result<Vec<[u8; 32]>>> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks(half)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(p, k)| {
                            let f = std::io::BufReader::new(std::fs::File::open(p)?);
                            naac_store::audit::keyed_answers(f, k)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    anyhow::ensure!(answers.len() == paths.len(), "a challenge thread failed");
    keys.into_iter()
        .zip(answers)
        .map(|(k, a)| Ok(k.into_iter().zip(a?).collect()))
        .collect()
}

/// How long a data token a user mints for its own reads lasts.
pub const OWN_TOKEN_LIFE: std::time::Duration = std::time::Duration::from_secs(86_400);

/// `key` as a token root (an ed25519 key's secret).
pub fn token_root(key: &Keypair) -> anyhow::Result<naac_token::Root> {
    let ed = key
        .clone()
        .try_into_ed25519()
        .map_err(|_| anyhow::anyhow!("the key is not an ed25519 key"))?;
    let secret: [u8; 32] = ed
        .secret()
        .as_ref()
        .try_into()
        .map_err(|_| anyhow::anyhow!("an ed25519 secret key is 32 bytes"))?;
    Ok(naac_token::Root::from_ed25519(&secret)?)
}

/// What a reader working for `user` shows storage hosts to read `id` if it is private: the
/// data token `given` (held by `user`), or else one `user` mints itself, limited to `id`
/// for a day (of use when `user` stored it); with `user`'s attestation that `client` works
/// for it.
pub fn data_pass(
    client: &Client,
    user: &Keypair,
    id: &StoreId,
    given: Option<&str>,
) -> anyhow::Result<naac_proto::store::DataPass> {
    let token = match given {
        // Hosts take only bound tokens: a bearer one is bound to the user first.
        Some(t) if naac_token::inspect(t)?.holder().is_none() => {
            let root = token_root(user)?;
            naac_token::delegate(t, &root, &root.public(), &naac_token::Limits::default())?
        }
        Some(t) => t.trim().to_string(),
        None => {
            let root = token_root(user)?;
            root.mint(
                naac_token::Kind::Data,
                Some(&root.public()),
                &naac_token::Limits {
                    scope: Some(naac_token::Scope::Read),
                    expires: Some(std::time::SystemTime::now() + OWN_TOKEN_LIFE),
                    manifests: vec![id.to_hex()],
                    ..naac_token::Limits::default()
                },
            )?
        }
    };
    let signature = naac_net::sign(
        user,
        &naac_proto::UserAttestation::signing_bytes(&client.peer_id().to_bytes()),
    );
    Ok(naac_proto::store::DataPass {
        token,
        user: Some(naac_proto::UserAttestation {
            user: user.public().to_peer_id().to_string(),
            signature,
        }),
    })
}

/// How a reader working for a user reads private data: the user's key (its own data needs
/// no more) and data tokens others gave it (`--data-token`).
#[derive(Clone, Debug)]
pub struct DataAccess {
    pub user: Keypair,
    pub tokens: Vec<String>,
}

impl DataAccess {
    /// Opens `id` ([`get::open`]) with a pass the user mints itself, then, if that does not
    /// open it, with each given token in turn; returns the opened manifest (its `pass` is the
    /// one that worked).
    pub async fn open(
        &self,
        client: &Client,
        id: &StoreId,
        hints: Vec<(PeerId, Vec<naac_net::Multiaddr>)>,
        within: std::time::Duration,
    ) -> anyhow::Result<get::Opened> {
        let own = data_pass(client, &self.user, id, None)?;
        let mut last = match get::open(client, id, hints.clone(), within, Some(own)).await {
            Ok(o) => return Ok(o),
            Err(e) => e,
        };
        for t in &self.tokens {
            let pass = data_pass(client, &self.user, id, Some(t))?;
            match get::open(client, id, hints.clone(), within, Some(pass)).await {
                Ok(o) => return Ok(o),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// [`get::open`] as `access` may (`None`: public data only).
pub async fn open_as(
    client: &Client,
    id: &StoreId,
    hints: Vec<(PeerId, Vec<naac_net::Multiaddr>)>,
    within: std::time::Duration,
    access: Option<&DataAccess>,
) -> anyhow::Result<get::Opened> {
    match access {
        Some(a) => a.open(client, id, hints, within).await,
        None => get::open(client, id, hints, within, None).await,
    }
}

/// How long a token handed on to a provider lasts (the requester hands it on again before).
pub const HAND_ON_LIFE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// `pass`'s token handed on by `user` (its holder) to the provider `to`, limited to `id`
/// and to [`HAND_ON_LIFE`]: what a task's `BlobSource` carries so the provider reads `id`'s
/// files itself.
pub fn hand_to(
    pass: &naac_proto::store::DataPass,
    user: &Keypair,
    to: &PeerId,
    id: &StoreId,
) -> anyhow::Result<String> {
    let to = naac_net::ed25519_of(to)
        .ok_or_else(|| anyhow::anyhow!("provider {to} has no ed25519 key"))?;
    let limits = naac_token::Limits {
        manifests: vec![id.to_hex()],
        expires: Some(std::time::SystemTime::now() + HAND_ON_LIFE),
        ..naac_token::Limits::default()
    };
    Ok(naac_token::delegate(
        &pass.token,
        &token_root(user)?,
        &to,
        &limits,
    )?)
}

/// `naac://<64 hex>[/path]` or bare hex: the id and the path inside, if any.
pub fn parse_url(s: &str) -> anyhow::Result<(StoreId, Option<String>)> {
    let rest = s.strip_prefix("naac://").unwrap_or(s);
    let (hex, path) = match rest.split_once('/') {
        Some((h, p)) if !p.is_empty() => (h, Some(p.to_string())),
        Some((h, _)) => (h, None),
        None => (rest, None),
    };
    let id = StoreId::from_hex(hex).ok_or_else(|| {
        anyhow::anyhow!("{s:?} is not a store id: expected naac:// and 64 hex digits")
    })?;
    Ok((id, path))
}

/// Asks `hosts` to drop every shard of `id` (signed by `user`, the manifest's owner); returns
/// the bytes they freed. Hosts that do not answer keep theirs until they expire.
pub async fn remove_from(
    client: &Client,
    user: &Keypair,
    id: &StoreId,
    hosts: impl Iterator<Item = PeerId>,
) -> u64 {
    let at_ms = crate::survey::unix_ms();
    let sig = naac_net::sign(user, &naac_proto::store::remove_signing_bytes(id, at_ms));
    let mut seen = std::collections::HashSet::new();
    let asks = hosts.filter(|h| seen.insert(*h)).map(|peer| {
        let req = naac_proto::store::StoreRequest::Remove {
            manifest: *id,
            at_ms,
            sig: sig.clone(),
        };
        async move { client::call(client, peer, req, client::REQUEST_TIMEOUT).await }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(naac_proto::store::StoreResponse::Removed { freed }) => freed,
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_paths() {
        let hex = "ab".repeat(32);
        let (id, p) = parse_url(&format!("naac://{hex}")).unwrap();
        assert_eq!(id.to_hex(), hex);
        assert_eq!(p, None);
        let (_, p) = parse_url(&format!("naac://{hex}/dir/part-1.bin")).unwrap();
        assert_eq!(p.as_deref(), Some("dir/part-1.bin"));
        assert!(parse_url("naac://xyz").is_err());
        assert!(parse_url(&format!("naac://{}", "g".repeat(64))).is_err());
    }
}
