//! The Merkle tree against the RFC 6962 definitions computed the slow way.

use naac_ledger::Hash;
use naac_ledger::merkle::{
    InclusionProof, MerkleTree, empty_root, leaf_hash, node_hash, verify_consistency,
    verify_inclusion,
};
use std::time::Instant;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
}

fn tree(n: u64) -> MerkleTree {
    leaves(n).into_iter().collect()
}

/// Largest power of two strictly below `n`.
fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 §2.1 MTH, recursively.
fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => *blake3::hash(b"").as_bytes(),
        1 => d[0],
        n => {
            let k = k_of(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

/// RFC 6962 §2.1.1 PATH, recursively.
fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// RFC 6962 §2.1.2 SUBPROOF, recursively.
fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn flip(h: &Hash) -> Hash {
    let mut x = *h;
    x[7] ^= 0x10;
    x
}

#[test]
fn hashes_are_domain_separated() {
    assert_eq!(empty_root(), *blake3::hash(b"").as_bytes());
    let mut b = vec![0u8];
    b.extend_from_slice(b"abc");
    assert_eq!(leaf_hash(b"abc"), *blake3::hash(&b).as_bytes());
    let (l, r) = ([1u8; 32], [2u8; 32]);
    let mut b = vec![1u8];
    b.extend_from_slice(&l);
    b.extend_from_slice(&r);
    assert_eq!(node_hash(&l, &r), *blake3::hash(&b).as_bytes());
    assert_eq!(MerkleTree::new().root(), empty_root());
}

#[test]
fn roots_match_the_recursive_definition() {
    let d = leaves(70);
    let mut t = MerkleTree::new();
    assert_eq!(t.root(), mth(&[]));
    for n in 1..=70 {
        t.push(d[n - 1]);
        assert_eq!(t.len(), n as u64);
        assert_eq!(t.root(), mth(&d[..n]), "size {n}");
    }
    for n in 0..=70 {
        assert_eq!(t.root_at(n as u64), Some(mth(&d[..n])), "root_at {n}");
    }
    assert_eq!(t.root_at(71), None);
    assert_eq!(t.leaf(69), Some(d[69]));
    assert_eq!(t.leaf(70), None);
}

#[test]
fn inclusion_proofs_match_and_verify() {
    let d = leaves(40);
    let t = tree(40);
    for size in 1..=40usize {
        let root = mth(&d[..size]);
        for i in 0..size {
            let (iu, su) = (i as u64, size as u64);
            let p = t.inclusion_proof(iu, su).expect("in range");
            assert_eq!(p, path(i, &d[..size]), "index {i} size {size}");
            assert!(verify_inclusion(&d[i], iu, su, &p, &root));
            // Another leaf, another index, a wrong root: refused.
            assert!(!verify_inclusion(&flip(&d[i]), iu, su, &p, &root));
            if size > 1 {
                let other = (i + 1) % size;
                assert!(!verify_inclusion(&d[i], other as u64, su, &p, &root));
                assert!(!verify_inclusion(&d[other], iu, su, &p, &root));
            }
            assert!(!verify_inclusion(&d[i], su, su, &p, &root));
            assert!(!verify_inclusion(&d[i], iu, su, &p, &flip(&root)));
            // Any tampered node, a dropped node, an extra node: refused.
            for j in 0..p.len() {
                let mut q = p.clone();
                q[j] = flip(&q[j]);
                assert!(!verify_inclusion(&d[i], iu, su, &q, &root));
            }
            if !p.is_empty() {
                assert!(!verify_inclusion(&d[i], iu, su, &p[..p.len() - 1], &root));
            }
            let mut longer = p.clone();
            longer.push(d[0]);
            assert!(!verify_inclusion(&d[i], iu, su, &longer, &root));
            // The packaged form.
            let proof = t.prove(iu, su).expect("in range");
            assert_eq!(
                proof,
                InclusionProof {
                    seq: iu,
                    size: su,
                    leaf: d[i],
                    path: p.clone(),
                }
            );
            assert!(proof.verify(&root));
        }
        assert_eq!(t.inclusion_proof(size as u64, size as u64), None);
    }
    assert_eq!(t.inclusion_proof(0, 41), None);
    assert_eq!(t.inclusion_proof(0, 0), None);
}

#[test]
fn consistency_proofs_match_and_verify() {
    let d = leaves(40);
    let t = tree(40);
    for new in 0..=40usize {
        let new_root = mth(&d[..new]);
        for old in 0..=new {
            let old_root = mth(&d[..old]);
            let (o, n) = (old as u64, new as u64);
            let p = t.consistency_proof(o, n).expect("in range");
            if old > 0 && old < new {
                assert_eq!(p, subproof(old, &d[..new], true), "{old} -> {new}");
            } else {
                assert!(p.is_empty());
            }
            assert!(
                verify_consistency(o, n, &old_root, &new_root, &p),
                "{old} -> {new}"
            );
            // Wrong roots, tampered, shortened or lengthened proofs: refused.
            if old > 0 {
                assert!(!verify_consistency(o, n, &flip(&old_root), &new_root, &p));
                assert!(!verify_consistency(o, n, &old_root, &flip(&new_root), &p));
            } else {
                // Everything extends the empty tree, whose root is fixed.
                assert!(!verify_consistency(0, n, &flip(&old_root), &new_root, &p));
            }
            for j in 0..p.len() {
                let mut q = p.clone();
                q[j] = flip(&q[j]);
                assert!(!verify_consistency(o, n, &old_root, &new_root, &q));
            }
            if !p.is_empty() {
                assert!(!verify_consistency(
                    o,
                    n,
                    &old_root,
                    &new_root,
                    &p[..p.len() - 1]
                ));
            }
            let mut longer = p.clone();
            longer.push(d[0]);
            assert!(!verify_consistency(o, n, &old_root, &new_root, &longer));
            // A proof does not carry over to other sizes.
            if old > 0 && old + 1 < new {
                let mid_root = mth(&d[..old + 1]);
                assert!(!verify_consistency(o + 1, n, &mid_root, &new_root, &p));
            }
        }
        assert_eq!(t.consistency_proof(new as u64 + 1, new as u64), None);
    }
    assert_eq!(t.consistency_proof(1, 41), None);
    assert!(!verify_consistency(2, 1, &d[0], &d[0], &[]));
}

#[test]
fn a_hundred_thousand_leaves() {
    let d = leaves(100_000);
    let t: MerkleTree = d.iter().copied().collect();
    let root = mth(&d);
    assert_eq!(t.root(), root);
    for i in [0u64, 1, 65_535, 65_536, 99_998, 99_999] {
        let p = t.inclusion_proof(i, 100_000).expect("in range");
        assert!(verify_inclusion(&d[i as usize], i, 100_000, &p, &root));
    }
    for old in [1u64, 2, 3, 65_536, 70_001, 99_999] {
        let old_root = t.root_at(old).expect("in range");
        assert_eq!(old_root, mth(&d[..old as usize]));
        let p = t.consistency_proof(old, 100_000).expect("in range");
        assert!(verify_consistency(old, 100_000, &old_root, &root, &p));
    }
}

/// Prints rough timings at a million leaves (run with `--nocapture`); asserts no timing.
#[test]
fn a_million_leaves_timings() {
    const N: u64 = 1_000_000;
    let start = Instant::now();
    let mut t = MerkleTree::new();
    for i in 0..N {
        t.push(leaf_hash(&i.to_le_bytes()));
    }
    let build = start.elapsed();

    let reps = 1_000u64;
    let start = Instant::now();
    let mut root = [0u8; 32];
    for _ in 0..reps {
        root = t.root();
    }
    let root_time = start.elapsed() / reps as u32;

    let start = Instant::now();
    let mut proofs = Vec::new();
    for r in 0..reps {
        let i = r.wrapping_mul(7_919_993) % N;
        proofs.push((i, t.inclusion_proof(i, N).expect("in range")));
    }
    let incl_time = start.elapsed() / reps as u32;

    let start = Instant::now();
    for (i, p) in &proofs {
        let leaf = t.leaf(*i).expect("in range");
        assert!(verify_inclusion(&leaf, *i, N, p, &root));
    }
    let verify_time = start.elapsed() / reps as u32;

    let start = Instant::now();
    let mut cons = Vec::new();
    for r in 1..=reps {
        let old = r.wrapping_mul(999_983) % N + 1;
        cons.push((old, t.consistency_proof(old, N).expect("in range")));
    }
    let cons_time = start.elapsed() / reps as u32;
    for (old, p) in cons.iter().take(50) {
        let old_root = t.root_at(*old).expect("in range");
        assert!(verify_consistency(*old, N, &old_root, &root, p));
    }

    let start = Instant::now();
    for r in 1..=reps {
        let _ = t.root_at(r.wrapping_mul(999_983) % N + 1);
    }
    let root_at_time = start.elapsed() / reps as u32;

    println!(
        "merkle at {N} leaves: build {build:?}; root {root_time:?}; root_at {root_at_time:?}; \
         inclusion proof {incl_time:?} (verify {verify_time:?}); consistency proof {cons_time:?}"
    );
}
