//! The node's ed25519 identity, kept in the data dir.

use anyhow::Context as _;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use std::io::Write;
use std::path::Path;

/// Loads the key at `path`, or makes a new one there (mode 0600) on first start.
pub fn load_or_create_identity(path: &Path) -> anyhow::Result<Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).with_context(|| {
            format!(
                "identity key {} is corrupt; move it away to make a new one",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().context("encode identity key")?;
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("create a temporary file in {}", dir.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o600))
                    .context("restrict identity key permissions")?;
            }
            tmp.write_all(&bytes).context("write identity key")?;
            tmp.as_file().sync_all().context("sync identity key")?;
            // Never replace a key another process made meanwhile: two first runs that race
            // (two `naac run`s started at once in a new data dir) both end up with the
            // winner's.
            match tmp.persist_noclobber(path) {
                Ok(_) => {}
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                    return load_or_create_identity(path);
                }
                Err(e) => {
                    return Err(e.error)
                        .with_context(|| format!("save identity key {}", path.display()));
                }
            }
            tracing::info!(
                "created identity {} in {}",
                key.public().to_peer_id(),
                path.display()
            );
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("read identity key {}", path.display())),
    }
}

pub fn peer_id_of(key: &Keypair) -> PeerId {
    key.public().to_peer_id()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_that_race_share_one_identity() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("identity.key");
            let ids: Vec<PeerId> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| peer_id_of(&load_or_create_identity(&path).unwrap())))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
            assert_eq!(peer_id_of(&load_or_create_identity(&path).unwrap()), ids[0]);
        }
    }
}
