//! A storage host's shards on its disk. An upload is appended to `incoming/` in order, then
//! sealed: the host computes the bao outboard itself, checks the root against the one the
//! signed manifest names, syncs and renames it into `shards/<manifest>/`. Only sealed shards
//! are read or audited; whatever an interrupted upload left in `incoming/` is removed at
//! open.
//!
//! ```text
//! DIR/incoming/<manifest>.<shard>.part
//! DIR/shards/<manifest>/manifest          the signed manifest
//! DIR/shards/<manifest>/<shard>.data      the shard
//! DIR/shards/<manifest>/<shard>.obao      its bao outboard tree
//! DIR/shards/<manifest>/<shard>.meta      what the host agreed to (CBOR)
//! ```

use crate::manifest::{SignedManifest, StoreId};
use naac_types::ContentId;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

/// What a host agreed to when it took a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub root: ContentId,
    pub len: u64,
    /// The manifest's owner (who may remove it).
    #[serde(with = "serde_bytes")]
    pub owner: [u8; 32],
    pub stored_ms: u64,
    /// Paid for until then (Unix milliseconds; 0: unpaid).
    pub until_ms: u64,
    /// The manifest is private: served only to readers with a data token from `owner`.
    #[serde(default)]
    pub private: bool,
}

/// Why a disk operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("no upload of shard {shard} of {manifest} is open")]
    NoUpload { manifest: String, shard: u16 },
    #[error("upload of shard {shard} is at byte {at}, a write at {offset} was sent")]
    OutOfOrder { shard: u16, at: u64, offset: u64 },
    #[error("shard {shard} would be {got} bytes, {want} were offered")]
    Length { shard: u16, got: u64, want: u64 },
    #[error("shard {shard} hashes to {got}, the manifest names {want}")]
    Root {
        shard: u16,
        got: String,
        want: String,
    },
    #[error("this host holds no shard {shard} of {manifest}")]
    NotFound { manifest: String, shard: u16 },
    #[error("read past the end of shard {shard} ({len} bytes)")]
    Range { shard: u16, len: u64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The shard directory of one host.
#[derive(Clone, Debug)]
pub struct Disk {
    dir: PathBuf,
}

impl Disk {
    /// Opens (creating) `dir` and drops unfinished uploads.
    pub fn open(dir: &Path) -> Result<Self, DiskError> {
        let d = Self {
            dir: dir.to_path_buf(),
        };
        let incoming = d.dir.join("incoming");
        if incoming.exists() {
            fs::remove_dir_all(&incoming).map_err(io_at(&incoming))?;
        }
        fs::create_dir_all(&incoming).map_err(io_at(&incoming))?;
        let shards = d.dir.join("shards");
        fs::create_dir_all(&shards).map_err(io_at(&shards))?;
        Ok(d)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn part(&self, m: &StoreId, shard: u16) -> PathBuf {
        self.dir
            .join("incoming")
            .join(format!("{}.{shard}.part", m.to_hex()))
    }

    fn held(&self, m: &StoreId) -> PathBuf {
        self.dir.join("shards").join(m.to_hex())
    }

    /// The file holding a sealed shard.
    pub fn shard_path(&self, m: &StoreId, shard: u16) -> PathBuf {
        self.held(m).join(format!("{shard}.data"))
    }

    /// Starts (or restarts) the upload of a shard.
    pub fn begin(&self, m: &StoreId, shard: u16) -> Result<(), DiskError> {
        let p = self.part(m, shard);
        File::create(&p).map_err(io_at(&p))?;
        Ok(())
    }

    /// Drops an unfinished upload.
    pub fn abort(&self, m: &StoreId, shard: u16) {
        let _ = fs::remove_file(self.part(m, shard));
    }

    /// Appends `bytes` at `offset`, which must be where the upload stands; returns the bytes
    /// uploaded so far.
    pub fn append(
        &self,
        m: &StoreId,
        shard: u16,
        offset: u64,
        bytes: &[u8],
    ) -> Result<u64, DiskError> {
        let p = self.part(m, shard);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&p)
            .map_err(|_| DiskError::NoUpload {
                manifest: m.short(),
                shard,
            })?;
        let at = f.metadata().map_err(io_at(&p))?.len();
        if at != offset {
            return Err(DiskError::OutOfOrder { shard, at, offset });
        }
        f.write_all(bytes).map_err(io_at(&p))?;
        Ok(at + bytes.len() as u64)
    }

    /// Seals an upload: it must be `len` bytes hashing to `root`, the root the signed
    /// manifest names for this shard. Synced to disk before it counts as held.
    pub fn seal(
        &self,
        m: &StoreId,
        shard: u16,
        manifest: &[u8],
        meta: &ShardMeta,
    ) -> Result<(), DiskError> {
        let p = self.part(m, shard);
        let mut data = File::open(&p).map_err(|_| DiskError::NoUpload {
            manifest: m.short(),
            shard,
        })?;
        let got = data.metadata().map_err(io_at(&p))?.len();
        if got != meta.len {
            return Err(DiskError::Length {
                shard,
                got,
                want: meta.len,
            });
        }
        let held = self.held(m);
        fs::create_dir_all(&held).map_err(io_at(&held))?;
        let ob_tmp = held.join(format!("{shard}.obao.tmp"));
        let mut ob = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&ob_tmp)
            .map_err(io_at(&ob_tmp))?;
        let root = crate::verify::outboard(&mut data, &mut ob).map_err(io_at(&p))?;
        if root != meta.root {
            let _ = fs::remove_file(&ob_tmp);
            return Err(DiskError::Root {
                shard,
                got: root.short(),
                want: meta.root.short(),
            });
        }
        ob.sync_all().map_err(io_at(&ob_tmp))?;
        data.sync_all().map_err(io_at(&p))?;
        let mpath = held.join("manifest");
        if !mpath.exists() {
            write_synced(&mpath, manifest)?;
        }
        let meta_bytes = cbor4ii::serde::to_vec(Vec::new(), meta).unwrap_or_default();
        write_synced(&held.join(format!("{shard}.meta")), &meta_bytes)?;
        fs::rename(&ob_tmp, held.join(format!("{shard}.obao"))).map_err(io_at(&ob_tmp))?;
        let dest = self.shard_path(m, shard);
        fs::rename(&p, &dest).map_err(io_at(&dest))?;
        if let Ok(d) = File::open(&held) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The verified slice `start..start + len` of a sealed shard.
    pub fn slice(
        &self,
        m: &StoreId,
        shard: u16,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, DiskError> {
        let not_found = || DiskError::NotFound {
            manifest: m.short(),
            shard,
        };
        let data = File::open(self.shard_path(m, shard)).map_err(|_| not_found())?;
        let ob_path = self.held(m).join(format!("{shard}.obao"));
        let ob = File::open(&ob_path).map_err(|_| not_found())?;
        let size = data.metadata().map_err(io_at(&ob_path))?.len();
        if start >= size.max(1) {
            return Err(DiskError::Range { shard, len: size });
        }
        crate::verify::extract(io::BufReader::new(data), io::BufReader::new(ob), start, len)
            .map_err(io_at(&ob_path))
    }

    /// The keyed BLAKE3 of a whole sealed shard (a whole-shard audit).
    pub fn keyed_hash(
        &self,
        m: &StoreId,
        shard: u16,
        key: &[u8; 32],
    ) -> Result<[u8; 32], DiskError> {
        let path = self.shard_path(m, shard);
        let f = File::open(&path).map_err(|_| DiskError::NotFound {
            manifest: m.short(),
            shard,
        })?;
        let answers =
            crate::audit::keyed_answers(io::BufReader::new(f), &[*key]).map_err(io_at(&path))?;
        Ok(answers[0])
    }

    /// The signed manifest kept with the shards of `m`.
    pub fn manifest(&self, m: &StoreId) -> Option<Vec<u8>> {
        fs::read(self.held(m).join("manifest")).ok()
    }

    /// What was agreed for a held shard.
    pub fn meta(&self, m: &StoreId, shard: u16) -> Option<ShardMeta> {
        let b = fs::read(self.held(m).join(format!("{shard}.meta"))).ok()?;
        cbor4ii::serde::from_slice(&b).ok()
    }

    /// Removes every shard of `m`; returns the bytes freed.
    pub fn remove(&self, m: &StoreId) -> Result<u64, DiskError> {
        let held = self.held(m);
        let freed = dir_bytes(&held);
        if held.exists() {
            fs::remove_dir_all(&held).map_err(io_at(&held))?;
        }
        Ok(freed)
    }

    /// Every sealed shard: manifest id, shard index and what was agreed.
    pub fn list(&self) -> Vec<(StoreId, u16, ShardMeta)> {
        let mut out = Vec::new();
        let Ok(dirs) = fs::read_dir(self.dir.join("shards")) else {
            return out;
        };
        for d in dirs.flatten() {
            let Some(m) = d.file_name().to_str().and_then(ContentId::from_hex) else {
                continue;
            };
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let Some(shard) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".data"))
                    .and_then(|n| n.parse::<u16>().ok())
                else {
                    continue;
                };
                if let Some(meta) = self.meta(&m, shard) {
                    out.push((m, shard, meta));
                }
            }
        }
        out.sort_by_key(|a| (a.0, a.1));
        out
    }

    /// Manifests whose every shard here was agreed to be kept only until before
    /// `now_ms - grace_ms` (their term is over; 0, no term, never expires).
    pub fn expired(&self, now_ms: u64, grace_ms: u64) -> Vec<StoreId> {
        let mut last: std::collections::BTreeMap<StoreId, u64> = std::collections::BTreeMap::new();
        for (m, _, meta) in self.list() {
            let until = if meta.until_ms == 0 {
                u64::MAX
            } else {
                meta.until_ms
            };
            let e = last.entry(m).or_insert(0);
            *e = (*e).max(until);
        }
        last.into_iter()
            .filter(|(_, until)| until.saturating_add(grace_ms) < now_ms)
            .map(|(m, _)| m)
            .collect()
    }

    /// Bytes on disk: sealed shards with their trees and uploads in progress.
    pub fn used(&self) -> u64 {
        dir_bytes(&self.dir)
    }
}

/// Whether the manifest a host is given names `root` and `len` for `shard` and hashes to `m`:
/// the host keeps only shards a signed manifest accounts for.
pub fn manifest_names(
    manifest: &[u8],
    m: &StoreId,
    shard: u16,
    root: &ContentId,
    len: u64,
) -> Result<crate::Manifest, String> {
    let man = SignedManifest::open(manifest, m).map_err(|e| e.to_string())?;
    if man.shards.get(usize::from(shard)) != Some(root) || man.geometry.shard_len() != len {
        return Err(format!(
            "the manifest does not name this root and length for shard {shard}"
        ));
    }
    Ok(man)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), DiskError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(bytes).map_err(io_at(&tmp))?;
    f.sync_all().map_err(io_at(&tmp))?;
    f.rewind().map_err(io_at(&tmp))?;
    fs::rename(&tmp, path).map_err(io_at(path))
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta(data: &[u8]) -> ShardMeta {
        ShardMeta {
            root: ContentId::of(data),
            len: data.len() as u64,
            owner: [1; 32],
            stored_ms: 0,
            until_ms: 0,
            private: false,
        }
    }

    #[test]
    fn upload_seal_read_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = Disk::open(tmp.path()).unwrap();
        let m = ContentId::of(b"manifest");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        disk.begin(&m, 3).unwrap();
        assert_eq!(disk.append(&m, 3, 0, &data[..4000]).unwrap(), 4000);
        assert!(matches!(
            disk.append(&m, 3, 0, &data[4000..]),
            Err(DiskError::OutOfOrder { at: 4000, .. })
        ));
        disk.append(&m, 3, 4000, &data[4000..]).unwrap();
        // A wrong root or length is refused and nothing is held.
        let mut bad = meta(&data);
        bad.root = ContentId::of(b"other");
        assert!(matches!(
            disk.seal(&m, 3, b"man", &bad),
            Err(DiskError::Root { .. })
        ));
        assert!(disk.list().is_empty());
        disk.seal(&m, 3, b"man", &meta(&data)).unwrap();
        assert_eq!(disk.list(), vec![(m, 3, meta(&data))]);
        assert_eq!(disk.manifest(&m).unwrap(), b"man");
        let s = disk.slice(&m, 3, 2048, 3000).unwrap();
        let got = crate::verify::check(&s, &ContentId::of(&data), 2048, 3000, 10_000).unwrap();
        assert_eq!(got, &data[2048..5048]);
        assert!(matches!(
            disk.slice(&m, 4, 0, 10),
            Err(DiskError::NotFound { .. })
        ));
        assert!(matches!(
            disk.slice(&m, 3, 20_000, 10),
            Err(DiskError::Range { .. })
        ));
        assert!(disk.used() > 10_000);
        // An upload left open is dropped when the store is opened again.
        disk.begin(&m, 5).unwrap();
        let disk = Disk::open(tmp.path()).unwrap();
        assert!(matches!(
            disk.append(&m, 5, 0, b"x"),
            Err(DiskError::NoUpload { .. })
        ));
        assert!(disk.remove(&m).unwrap() > 10_000);
        assert!(disk.list().is_empty());
    }

    #[test]
    fn a_flipped_byte_on_disk_fails_the_proof() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = Disk::open(tmp.path()).unwrap();
        let m = ContentId::of(b"m");
        let data = vec![7u8; 50_000];
        disk.begin(&m, 0).unwrap();
        disk.append(&m, 0, 0, &data).unwrap();
        disk.seal(&m, 0, b"man", &meta(&data)).unwrap();
        let p = disk.shard_path(&m, 0);
        let mut bytes = fs::read(&p).unwrap();
        bytes[30_000] ^= 0xff;
        fs::write(&p, &bytes).unwrap();
        let root = ContentId::of(&data);
        let s = disk.slice(&m, 0, 29 * 1024, 2048).unwrap();
        assert!(crate::verify::check(&s, &root, 29 * 1024, 2048, 50_000).is_err());
        // Chunks away from the flip still prove.
        let s = disk.slice(&m, 0, 0, 1024).unwrap();
        assert!(crate::verify::check(&s, &root, 0, 1024, 50_000).is_ok());
    }

    #[test]
    fn shards_expire_only_once_every_term_here_is_over() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = Disk::open(tmp.path()).unwrap();
        let keep = |m: &StoreId, shard: u16, until_ms: u64| {
            let data = vec![shard as u8; 100];
            disk.begin(m, shard).unwrap();
            disk.append(m, shard, 0, &data).unwrap();
            disk.seal(
                m,
                shard,
                b"man",
                &ShardMeta {
                    until_ms,
                    ..meta(&data)
                },
            )
            .unwrap();
        };
        let (a, b, c) = (
            ContentId::of(b"a"),
            ContentId::of(b"b"),
            ContentId::of(b"c"),
        );
        keep(&a, 0, 1_000);
        keep(&b, 0, 1_000);
        keep(&b, 1, 5_000);
        keep(&c, 0, 0);
        assert!(disk.expired(1_500, 1_000).is_empty(), "within the grace");
        assert_eq!(disk.expired(2_500, 1_000), vec![a]);
        assert_eq!(
            disk.expired(10_000, 1_000).len(),
            2,
            "b once its last shard's term ended; c never"
        );
    }
}
