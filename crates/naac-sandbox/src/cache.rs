//! The on-disk compiled-module cache. Keys cover the module hash, wasmtime's version and the
//! engine settings, so an artifact is only ever loaded by an engine that could have made it.
//! Artifacts are made on this machine only: never load one that came from a peer.

use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::{Engine, Module};

/// Feeds `Hash` output into BLAKE3 (std's hashers are not stable across versions).
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let b = self.0.finalize();
        u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub(crate) fn engine_key(engine: &Engine) -> [u8; 32] {
    let mut h = Blake3Hasher(blake3::Hasher::new_derive_key("naac engine key v1"));
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    *h.0.finalize().as_bytes()
}

fn file_name(key: &[u8; 32]) -> String {
    let mut s: String = key.iter().map(|b| format!("{b:02x}")).collect();
    s.push_str(".cwasm");
    s
}

pub(crate) fn load(engine: &Engine, dir: Option<&Path>, key: &[u8; 32]) -> Option<Module> {
    let path = dir?.join(file_name(key));
    if !path.is_file() {
        return None;
    }
    // SAFETY: the file was written by `store` below, on this machine, by an engine with the
    // same settings and version (both are in the key); wasmtime also checks the artifact's
    // header against the engine. Artifacts from peers are never written here.
    #[allow(unsafe_code)]
    let loaded = unsafe { Module::deserialize_file(engine, &path) };
    match loaded {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(
                "discarding unusable cached module {}: {e:#}",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

pub(crate) fn store(module: &Module, dir: &Path, key: &[u8; 32]) -> anyhow::Result<()> {
    let bytes = module
        .serialize()
        .map_err(|e| crate::wasm_err(e, "serialize module"))?;
    let path = dir.join(file_name(key));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.persist(&path)?;
    Ok(())
}
