//! The on-disk compiled-module cache. Keys cover the module hash, wasmtime's version and the
//! engine settings, so an artifact is only ever loaded by an engine that could have made it.
//! Artifacts are made on this machine only: never load one that came from a peer.
//!
//! Each artifact is a file `KEY.cwasm`: a header (magic, the body's length, the body's BLAKE3
//! hash) and the serialized module. It is written to a temporary file, synced, renamed into
//! place and the directory synced, so a crash leaves the old state or the new one. A load
//! reads the whole file and checks the header before wasmtime sees a byte; a short, torn or
//! tampered file is deleted (the module is compiled again) and never mapped, and wasmtime
//! deserializes from the checked bytes in memory, not from the file, so nothing can change
//! them in between.
//!
//! The directory holds at most its quota: after each store the least recently used artifacts
//! (by modification time, which a load refreshes) go until the rest fit, and an artifact
//! larger than the whole quota is not kept at all. Several naac processes on one machine may
//! share the directory; each evicts by the same rule.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};
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

pub(crate) fn engine_key(engine: &Engine, nans: crate::NanMode) -> [u8; 32] {
    let mut h = Blake3Hasher(blake3::Hasher::new_derive_key("naac engine key v1"));
    engine.precompile_compatibility_hash().hash(&mut h);
    // The module rewrite is part of what was compiled.
    h.0.update(format!("{nans:?} nan rewrite v{}", crate::nan::VERSION).as_bytes());
    h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    *h.0.finalize().as_bytes()
}

/// First bytes of every artifact file (the format's version is in it).
const MAGIC: &[u8; 8] = b"naacmc02";

/// Header: magic, body length (u64 LE), BLAKE3 of the body.
const HEADER: usize = 8 + 8 + 32;

/// Extension of artifact files; anything else in the directory is a temporary file.
const EXT: &str = "cwasm";

/// A temporary file older than this is left over from a crash and removed.
const STALE_TEMP: Duration = Duration::from_secs(600);

fn file_name(key: &[u8; 32]) -> String {
    let mut s: String = key.iter().map(|b| format!("{b:02x}")).collect();
    s.push('.');
    s.push_str(EXT);
    s
}

/// The body of an artifact file, if its header holds for it.
fn checked_body(bytes: &[u8]) -> Result<&[u8], &'static str> {
    if bytes.len() < HEADER {
        return Err("shorter than its header");
    }
    let (head, body) = bytes.split_at(HEADER);
    if &head[..8] != MAGIC {
        return Err("not an artifact of this format");
    }
    let len = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    if len != body.len() as u64 {
        return Err("its length does not match its header (torn write?)");
    }
    if blake3::hash(body).as_bytes() != &head[16..HEADER] {
        return Err("its checksum does not match (corrupt or tampered)");
    }
    Ok(body)
}

pub(crate) fn load(engine: &Engine, dir: Option<&Path>, key: &[u8; 32]) -> Option<Module> {
    let path = dir?.join(file_name(key));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read cached module {}: {e}", path.display());
            return None;
        }
    };
    let body = match checked_body(&bytes) {
        Ok(b) => b,
        Err(why) => {
            tracing::warn!("discarding cached module {}: {why}", path.display());
            let _ = std::fs::remove_file(&path);
            return None;
        }
    };
    // SAFETY: these bytes were written by `store` below, on this machine, by an engine with
    // the same settings and version (both are in the key), and they still match the checksum
    // written with them; wasmtime also checks the artifact's header against the engine.
    // Artifacts from peers are never written here.
    #[allow(unsafe_code)]
    let loaded = unsafe { Module::deserialize(engine, body) };
    match loaded {
        Ok(m) => {
            // Recently used: the last to be evicted.
            if let Ok(f) = File::options().write(true).open(&path) {
                let _ = f.set_modified(SystemTime::now());
            }
            Some(m)
        }
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

/// Writes `module`'s artifact durably under `key`, then evicts down to `quota` bytes.
pub(crate) fn store(module: &Module, dir: &Path, key: &[u8; 32], quota: u64) -> anyhow::Result<()> {
    let body = module
        .serialize()
        .map_err(|e| crate::wasm_err(e, "serialize module"))?;
    let total = (HEADER + body.len()) as u64;
    if total > quota {
        tracing::debug!("compiled module of {total} bytes is over the cache quota of {quota}");
        return Ok(());
    }
    let mut head = Vec::with_capacity(HEADER);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    head.extend_from_slice(blake3::hash(&body).as_bytes());
    let path = dir.join(file_name(key));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp")
        .suffix(".part")
        .tempfile_in(dir)?;
    tmp.write_all(&head)?;
    tmp.write_all(&body)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path)?;
    // The rename itself is durable only once the directory is.
    File::open(dir)?.sync_all()?;
    evict(dir, quota);
    Ok(())
}

/// Removes the least recently used artifacts until the directory's artifacts fit in `quota`
/// bytes, and temporary files a crash left behind.
pub(crate) fn evict(dir: &Path, quota: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut files = Vec::new();
    let mut total = 0u64;
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let path = e.path();
        if path.extension().is_none_or(|x| x != EXT) {
            // Another process's write under way, or a crash's leftover.
            if now.duration_since(modified).unwrap_or_default() > STALE_TEMP {
                let _ = std::fs::remove_file(&path);
            } else {
                total += meta.len();
            }
            continue;
        }
        total += meta.len();
        files.push((modified, meta.len(), path));
    }
    if total <= quota {
        return;
    }
    files.sort();
    for (_, len, path) in files {
        if total <= quota {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            tracing::debug!("evicted cached module {}", path.display());
        }
        total = total.saturating_sub(len);
    }
}
