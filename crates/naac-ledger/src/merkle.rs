//! The RFC 6962 Merkle tree over the ledger's entries, with BLAKE3 as its hash.
//!
//! Leaves are [`Entry::to_bytes`](crate::Entry::to_bytes); a leaf hashes as
//! `BLAKE3(0x00 ‖ leaf)` and an inner node as `BLAKE3(0x01 ‖ left ‖ right)`, so a leaf can
//! never pass for a node. The root of the empty tree is BLAKE3 of the empty string.
//!
//! [`MerkleTree`] is append-only and keeps, per level, the hash of every complete aligned
//! subtree (a leaf at level 0, a pair at level 1, four leaves at level 2...). Every range the
//! RFC's recursion visits is a run of such subtrees plus a ragged right edge, so a root
//! (at any past size), an inclusion proof or a consistency proof costs O(log² n) hashes at
//! worst and usually O(log n), whatever the number of leaves. Memory is about two hashes
//! (64 bytes) per leaf.
//!
//! The verifiers ([`verify_inclusion`], [`verify_consistency`]) are pure functions of their
//! inputs and follow RFC 9162 §2.1.3.2 and §2.1.4.2.

use crate::entry::Hash;
use serde::{Deserialize, Serialize};

/// Hash of one leaf: `BLAKE3(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x00]);
    h.update(data);
    *h.finalize().as_bytes()
}

/// Hash of an inner node: `BLAKE3(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut b = [0u8; 65];
    b[0] = 0x01;
    b[1..33].copy_from_slice(left);
    b[33..].copy_from_slice(right);
    *blake3::hash(&b).as_bytes()
}

/// Root of the empty tree: BLAKE3 of the empty string.
pub fn empty_root() -> Hash {
    *blake3::hash(&[]).as_bytes()
}

/// The largest power of two strictly below `n` (`n >= 2`): where RFC 6962 splits a range.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only Merkle tree of leaf hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[h][i]` is the root of the complete subtree over leaves
    /// `i·2^h .. (i+1)·2^h`; `levels[0]` holds the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash (see [`leaf_hash`]); completes the subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut hash = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            if row.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hash of leaf `index`, if there is one.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// The root over all leaves.
    pub fn root(&self) -> Hash {
        self.range(0, self.len())
    }

    /// The root the tree had when it held `size` leaves; `None` past the current size.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        (size <= self.len()).then(|| self.range(0, size))
    }

    /// The audit path of leaf `index` in the tree of its first `size` leaves (RFC 6962
    /// §2.1.1 `PATH`), from the leaf's sibling up; `None` unless `index < size <= len`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.len() {
            return None;
        }
        let mut path = Vec::new();
        let (mut start, mut end) = (0, size);
        while end - start > 1 {
            let k = split(end - start);
            if index < start + k {
                path.push(self.range(start + k, end));
                end = start + k;
            } else {
                path.push(self.range(start, start + k));
                start += k;
            }
        }
        path.reverse();
        Some(path)
    }

    /// [`MerkleTree::inclusion_proof`] packaged with the leaf and sizes.
    pub fn prove(&self, seq: u64, size: u64) -> Option<InclusionProof> {
        Some(InclusionProof {
            seq,
            size,
            leaf: self.leaf(seq)?,
            path: self.inclusion_proof(seq, size)?,
        })
    }

    /// A proof that the tree of the first `old_size` leaves is a prefix of the tree of the
    /// first `new_size` (RFC 6962 §2.1.2 `PROOF`); empty when `old_size` is 0 or equals
    /// `new_size`; `None` unless `old_size <= new_size <= len`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Option<Vec<Hash>> {
        if old_size > new_size || new_size > self.len() {
            return None;
        }
        let mut proof = Vec::new();
        if old_size == 0 || old_size == new_size {
            return Some(proof);
        }
        // SUBPROOF(m, D[start..end], whole): `m` counts old leaves inside the range, and
        // `whole` says the range starts at leaf 0 of the old tree (its root is known).
        let (mut start, mut end, mut m, mut whole) = (0, new_size, old_size, true);
        loop {
            if m == end - start {
                if !whole {
                    proof.push(self.range(start, end));
                }
                break;
            }
            let k = split(end - start);
            if m <= k {
                proof.push(self.range(start + k, end));
                end = start + k;
            } else {
                proof.push(self.range(start, start + k));
                start += k;
                m -= k;
                whole = false;
            }
        }
        proof.reverse();
        Some(proof)
    }

    /// MTH of leaves `start..end`, where `start` is a multiple of the largest power of two
    /// below `end - start` (true of every range the RFC recursion visits) and `end <= len`.
    fn range(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let h = n.trailing_zeros() as usize;
            return self.levels[h][(start >> h) as usize];
        }
        let k = split(n);
        node_hash(&self.range(start, start + k), &self.range(start + k, end))
    }
}

impl Extend<Hash> for MerkleTree {
    fn extend<I: IntoIterator<Item = Hash>>(&mut self, leaves: I) {
        for leaf in leaves {
            self.push(leaf);
        }
    }
}

impl FromIterator<Hash> for MerkleTree {
    fn from_iter<I: IntoIterator<Item = Hash>>(leaves: I) -> Self {
        let mut t = MerkleTree::new();
        t.extend(leaves);
        t
    }
}

/// Whether `proof` shows that the leaf hash `leaf` is leaf `index` of the tree of `size`
/// leaves with root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Whether `proof` shows that the tree of `old_size` leaves with root `old_root` is a prefix
/// of the tree of `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2). Equal sizes
/// need equal roots and an empty proof; the empty tree is a prefix of every tree.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == empty_root();
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if proof.is_empty() {
        return false;
    }
    // When the old tree is a complete subtree its root is the proof's implicit first node.
    let (first, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// A proof that one entry is in the ledger the bank checkpointed at `size` entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The entry's position (its leaf index).
    pub seq: u64,
    /// Size of the tree the proof is against (a checkpoint's `size`).
    pub size: u64,
    /// The entry's leaf hash: [`leaf_hash`] of [`Entry::to_bytes`](crate::Entry::to_bytes).
    pub leaf: Hash,
    /// The audit path, from the leaf's sibling up.
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// Whether the proof leads from `leaf` to `root`.
    pub fn verify(&self, root: &Hash) -> bool {
        verify_inclusion(&self.leaf, self.seq, self.size, &self.path, root)
    }

    /// Whether `entry` is the proven leaf (same seq and bytes) and the proof leads to `root`.
    pub fn verify_entry(&self, entry: &crate::Entry, root: &Hash) -> bool {
        entry.seq == self.seq && leaf_hash(&entry.to_bytes()) == self.leaf && self.verify(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_largest_power_below() {
        assert_eq!(split(2), 1);
        assert_eq!(split(3), 2);
        assert_eq!(split(4), 2);
        assert_eq!(split(5), 4);
        assert_eq!(split(8), 4);
        assert_eq!(split(9), 8);
        assert_eq!(split(u64::MAX), 1 << 63);
    }
}
