//! The manifest: what a `naac://` id names. It lists the file tree (each file's path, offset
//! in the data stream, length and BLAKE3), the erasure geometry and each shard's BLAKE3 root,
//! and is signed by its uploader's ed25519 key. Its id is the BLAKE3 of the signed bytes, so
//! whoever holds an id can check any manifest a peer hands over against it, and every shard
//! and file inside it from there.

use crate::layout::{Geometry, GeometryError};
use naac_types::ContentId;
use serde::{Deserialize, Serialize};

/// Version of the manifest layout.
pub const MANIFEST_VERSION: u16 = 1;
/// Largest signed manifest read or sent.
pub const MAX_MANIFEST_BYTES: usize = 8 << 20;
/// Most files (and empty directories) one manifest lists.
pub const MAX_FILES: usize = 100_000;
/// Longest path inside a manifest, in bytes.
pub const MAX_PATH: usize = 1024;

const DOMAIN: &[u8] = b"naac store manifest v1\0";

/// A manifest's id: the BLAKE3 of its signed bytes.
pub type StoreId = ContentId;

/// One file of the stored tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// `/`-separated, relative, no `.` or `..` parts.
    pub path: String,
    /// Where its bytes start in the data stream.
    pub offset: u64,
    pub len: u64,
    /// The BLAKE3 of its bytes (a job input's content id).
    pub hash: ContentId,
}

/// What an uploader signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub v: u16,
    /// The uploader's ed25519 key: it signed this, and only it may remove the data.
    #[serde(with = "serde_bytes")]
    pub owner: [u8; 32],
    /// When it was made (Unix milliseconds).
    pub created_ms: u64,
    /// The name of what was put (the directory's or file's own name).
    pub name: String,
    /// A single file was put (its one entry has the path `name`), not a directory.
    pub single: bool,
    pub files: Vec<FileEntry>,
    /// Directories with nothing in them (others are implied by their files' paths).
    pub empty_dirs: Vec<String>,
    pub geometry: Geometry,
    /// Each shard's BLAKE3 root, shard `i` at `i`.
    pub shards: Vec<ContentId>,
    /// Hosts serve it only to readers with a data token rooted in `owner` (`naac store put
    /// --private`); otherwise to anyone holding the id. Absent from public manifests' bytes,
    /// so their ids are what they were before this field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// A manifest's bytes and its uploader's signature: what hosts keep and hand out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedManifest {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {0} bytes, more than the {MAX_MANIFEST_BYTES} allowed")]
    TooLarge(usize),
    #[error("manifest does not hash to the id asked for")]
    WrongId,
    #[error("manifest does not decode: {0}")]
    Decode(String),
    #[error("manifest version {0} is not supported (this node reads {MANIFEST_VERSION})")]
    Version(u16),
    #[error("manifest signature does not match its owner's key")]
    Signature,
    #[error("manifest geometry: {0}")]
    Geometry(#[from] GeometryError),
    #[error("manifest lists {got} shard roots for n = {n}")]
    ShardCount { got: usize, n: u16 },
    #[error("manifest lists {0} entries, more than the {MAX_FILES} allowed")]
    TooManyFiles(usize),
    #[error("manifest path {path:?}: {why}")]
    Path { path: String, why: &'static str },
    #[error("manifest file {path:?} lies outside the data or overlaps the file before it")]
    Extent { path: String },
    #[error("manifest of a single file must list exactly one file named as it")]
    Single,
}

impl Manifest {
    /// The bytes the owner signs.
    pub fn signing_bytes(body: &[u8]) -> Vec<u8> {
        let mut b = DOMAIN.to_vec();
        b.extend_from_slice(body);
        b
    }

    /// The encoded body (what [`SignedManifest::body`] holds).
    pub fn encode(&self) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), self).unwrap_or_default()
    }

    /// Checks everything a reader relies on: geometry, shard count, each path, and that files
    /// lie inside the data in path order without overlapping.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.v != MANIFEST_VERSION {
            return Err(ManifestError::Version(self.v));
        }
        self.geometry.check()?;
        if self.shards.len() != usize::from(self.geometry.n) {
            return Err(ManifestError::ShardCount {
                got: self.shards.len(),
                n: self.geometry.n,
            });
        }
        let entries = self.files.len() + self.empty_dirs.len();
        if entries > MAX_FILES {
            return Err(ManifestError::TooManyFiles(entries));
        }
        let mut end = 0u64;
        let mut last: Option<&str> = None;
        for f in &self.files {
            check_path(&f.path)?;
            if last.is_some_and(|l| l >= f.path.as_str()) {
                return Err(ManifestError::Path {
                    path: f.path.clone(),
                    why: "is out of order or listed twice",
                });
            }
            last = Some(&f.path);
            let stop = f.offset.checked_add(f.len);
            if f.offset < end || stop.is_none_or(|s| s > self.geometry.data_len) {
                return Err(ManifestError::Extent {
                    path: f.path.clone(),
                });
            }
            end = stop.unwrap_or(end);
        }
        for d in &self.empty_dirs {
            check_path(d)?;
        }
        if self.single && (self.files.len() != 1 || self.files[0].path != self.name) {
            return Err(ManifestError::Single);
        }
        Ok(())
    }

    /// The file at `path`, if the manifest lists it.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// For each stripe that shard bytes `start..start + len` cover (every shard's bytes of
    /// a stripe are at the same offsets), the files with bytes in that stripe, in order. A
    /// reader who may read only some files may read a stripe holding a byte of one of them
    /// (and so the neighbours' bytes sharing that stripe), or one holding no file's bytes.
    pub fn files_by_stripe(&self, start: u64, len: u64) -> Vec<Vec<&FileEntry>> {
        let g = &self.geometry;
        let piece = u64::from(g.piece);
        if len == 0 || piece == 0 {
            return Vec::new();
        }
        let first = start / piece;
        let last = (start.saturating_add(len) - 1) / piece;
        (first..=last.min(g.stripes().saturating_sub(1)))
            .map(|s| {
                let (lo, hi) = (s * g.stripe_bytes(), (s + 1) * g.stripe_bytes());
                let from = self.files.partition_point(|f| f.offset + f.len <= lo);
                let to = from + self.files[from..].partition_point(|f| f.offset < hi);
                // Empty files sit between bytes and hold none.
                self.files[from..to].iter().filter(|f| f.len > 0).collect()
            })
            .collect()
    }

    /// Bytes stored for this manifest on all hosts together.
    pub fn stored_bytes(&self) -> u64 {
        self.geometry.stored_bytes()
    }
}

/// Whether `path` may name a file inside a stored tree.
pub fn check_path(path: &str) -> Result<(), ManifestError> {
    let bad = |why| {
        Err(ManifestError::Path {
            path: path.chars().take(200).collect(),
            why,
        })
    };
    if path.is_empty() || path.len() > MAX_PATH {
        return bad("is empty or longer than 1024 bytes");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return bad("must be relative, `/`-separated, without NUL");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("has an empty, `.` or `..` part");
    }
    Ok(())
}

impl SignedManifest {
    /// Signs `manifest` with `sign` (the owner's key over [`Manifest::signing_bytes`]).
    pub fn new(manifest: &Manifest, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Self {
        let body = manifest.encode();
        let sig = sign(&Manifest::signing_bytes(&body));
        Self { body, sig }
    }

    /// The bytes hosts keep and send.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), self).unwrap_or_default()
    }

    /// The id of these bytes.
    pub fn id_of(bytes: &[u8]) -> StoreId {
        ContentId::of(bytes)
    }

    /// Reads a manifest a peer sent for `id`: size first, then the hash, then the signature
    /// and every rule of [`Manifest::check`].
    pub fn open(bytes: &[u8], id: &StoreId) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        if ContentId::of(bytes) != *id {
            return Err(ManifestError::WrongId);
        }
        Self::open_unnamed(bytes)
    }

    /// Reads a manifest whose id is taken from its bytes (a local copy being re-read).
    pub fn open_unnamed(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let signed: SignedManifest =
            cbor4ii::serde::from_slice(bytes).map_err(|e| ManifestError::Decode(e.to_string()))?;
        let m: Manifest = cbor4ii::serde::from_slice(&signed.body)
            .map_err(|e| ManifestError::Decode(e.to_string()))?;
        if m.v != MANIFEST_VERSION {
            return Err(ManifestError::Version(m.v));
        }
        if !naac_types::sig::verify(
            &m.owner,
            &Manifest::signing_bytes(&signed.body),
            &signed.sig,
        ) {
            return Err(ManifestError::Signature);
        }
        m.check()?;
        Ok(m)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn manifest(key: &SigningKey) -> Manifest {
        let geometry = Geometry::new(2, 4, 30).unwrap();
        Manifest {
            v: MANIFEST_VERSION,
            owner: key.verifying_key().to_bytes(),
            created_ms: 1,
            name: "data".into(),
            single: false,
            files: vec![
                FileEntry {
                    path: "a.txt".into(),
                    offset: 0,
                    len: 10,
                    hash: ContentId::of(b"0123456789"),
                },
                FileEntry {
                    path: "b/c.txt".into(),
                    offset: 10,
                    len: 20,
                    hash: ContentId::of(b"x"),
                },
            ],
            empty_dirs: vec!["e".into()],
            geometry,
            shards: vec![ContentId::of(b"s"); 4],
            private: false,
        }
    }

    #[test]
    fn files_by_stripe_names_the_files_each_stripe_holds_bytes_of() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut m = manifest(&key);
        // 2-of-4 with 1 KiB pieces: stripes of 2 KiB of data, shard bytes 1 KiB per stripe.
        m.geometry = Geometry {
            k: 2,
            n: 4,
            piece: 1024,
            data_len: 6000,
        };
        let f = |path: &str, offset, len| FileEntry {
            path: path.into(),
            offset,
            len,
            hash: ContentId::of(path.as_bytes()),
        };
        m.files = vec![
            f("a", 0, 1000),
            f("b", 1000, 0),
            f("c", 1000, 3500),
            f("d", 4500, 1500),
        ];
        m.check().unwrap();
        let names = |start, len| -> Vec<Vec<String>> {
            m.files_by_stripe(start, len)
                .iter()
                .map(|s| s.iter().map(|f| f.path.clone()).collect())
                .collect()
        };
        // Stripe 0 is data 0..2048 (a and c), 1 is 2048..4096 (c), 2 is 4096..6000 (c, d).
        assert_eq!(names(0, 1), vec![vec!["a", "c"]]);
        assert_eq!(names(1023, 2), vec![vec!["a", "c"], vec!["c"]]);
        assert_eq!(names(2048, 1024), vec![vec!["c", "d"]]);
        // Past the last stripe: nothing.
        assert!(names(3072, 1024).is_empty());
        assert!(names(0, 0).is_empty());
        // A private manifest says so in its signed bytes; a public one's bytes are unchanged.
        let public = m.encode();
        m.private = true;
        assert_ne!(m.encode(), public);
        m.private = false;
        assert_eq!(m.encode(), public);
    }

    fn sign(key: &SigningKey, m: &Manifest) -> Vec<u8> {
        SignedManifest::new(m, |b| key.sign(b).to_bytes().to_vec()).to_bytes()
    }

    #[test]
    fn round_trips_and_checks_its_id() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let m = manifest(&key);
        let bytes = sign(&key, &m);
        let id = SignedManifest::id_of(&bytes);
        assert_eq!(SignedManifest::open(&bytes, &id).unwrap(), m);
        assert_eq!(
            SignedManifest::open(&bytes, &ContentId::of(b"other")),
            Err(ManifestError::WrongId)
        );
        assert_eq!(m.file("b/c.txt").unwrap().offset, 10);
        assert!(m.file("nope").is_none());
    }

    #[test]
    fn forged_and_tampered_manifests_are_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let m = manifest(&key);
        // Signed by another key than the one it names.
        let forged = SignedManifest::new(&m, |b| other.sign(b).to_bytes().to_vec()).to_bytes();
        assert_eq!(
            SignedManifest::open_unnamed(&forged),
            Err(ManifestError::Signature)
        );
        // A changed body under the old signature.
        let good = SignedManifest::new(&m, |b| key.sign(b).to_bytes().to_vec());
        let mut changed = m.clone();
        changed.files[0].len = 9;
        let tampered = SignedManifest {
            body: changed.encode(),
            sig: good.sig,
        }
        .to_bytes();
        assert_eq!(
            SignedManifest::open_unnamed(&tampered),
            Err(ManifestError::Signature)
        );
        assert!(matches!(
            SignedManifest::open_unnamed(b"garbage"),
            Err(ManifestError::Decode(_))
        ));
    }

    #[test]
    fn unsafe_paths_and_extents_are_refused_even_when_signed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        for path in ["../x", "/etc/passwd", "a//b", "a/./b", "", "a\\b"] {
            let mut m = manifest(&key);
            m.files[0].path = path.into();
            let bytes = sign(&key, &m);
            assert!(
                matches!(
                    SignedManifest::open_unnamed(&bytes),
                    Err(ManifestError::Path { .. })
                ),
                "{path:?}"
            );
        }
        let mut m = manifest(&key);
        m.files[1].offset = 5;
        assert!(matches!(m.check(), Err(ManifestError::Extent { .. })));
        let mut m = manifest(&key);
        m.files[1].len = u64::MAX;
        assert!(matches!(m.check(), Err(ManifestError::Extent { .. })));
        let mut m = manifest(&key);
        m.files.swap(0, 1);
        assert!(matches!(m.check(), Err(ManifestError::Path { .. })));
        let mut m = manifest(&key);
        m.shards.pop();
        assert!(matches!(m.check(), Err(ManifestError::ShardCount { .. })));
        let big = vec![0u8; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            SignedManifest::open_unnamed(&big),
            Err(ManifestError::TooLarge(_))
        ));
    }
}
