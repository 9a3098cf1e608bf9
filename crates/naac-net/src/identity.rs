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
            // Never replace a key another process made meanwhile.
            tmp.persist_noclobber(path)
                .map_err(|e| e.error)
                .with_context(|| format!("save identity key {}", path.display()))?;
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
