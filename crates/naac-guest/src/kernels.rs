//! Pure compute kernels used by the example jobs and by the host benchmark.
//!
//! Every kernel is a deterministic function of its arguments: it gives bit-identical results
//! natively and inside wasm (only IEEE-754 `+ - * / sqrt` are used on floats, which WebAssembly
//! and every native target round identically).

use sha2::{Digest, Sha256};

use crate::SplitMix64;

/// Monte-Carlo π: draws `samples` points uniformly from the unit square (two
/// [`SplitMix64::next_f64`] calls per point, x then y, from a generator seeded with `seed`) and
/// returns how many fall strictly inside the quarter circle `x² + y² < 1`.
///
/// `4 * hits / samples` estimates π.
#[must_use]
pub fn pi_hits(seed: u64, samples: u64) -> u64 {
    let mut rng = SplitMix64::new(seed);
    let mut hits = 0;
    for _ in 0..samples {
        let x = rng.next_f64();
        let y = rng.next_f64();
        if x * x + y * y < 1.0 {
            hits += 1;
        }
    }
    hits
}

/// SHA-256 chain: starts from the 8 little-endian bytes of `seed` and applies SHA-256
/// `rounds` times, each round hashing the previous 32-byte digest.
///
/// `rounds == 1` therefore returns `SHA-256(seed.to_le_bytes())`. With `rounds == 0` nothing is
/// hashed and the seed bytes are returned, zero-padded to 32 bytes.
#[must_use]
pub fn sha256_chain(seed: u64, rounds: u64) -> [u8; 32] {
    let mut state = [0u8; 32];
    state[..8].copy_from_slice(&seed.to_le_bytes());
    if rounds == 0 {
        return state;
    }
    state = Sha256::digest(seed.to_le_bytes()).into();
    for _ in 1..rounds {
        state = Sha256::digest(state).into();
    }
    state
}

/// Number of candidates sieved at a time by [`count_primes`] (bounds its memory use).
const SEGMENT: u64 = 1 << 16;

/// `√to` up to which [`count_primes`] always sieves.
const ALWAYS_SIEVE_ROOT: u64 = 1 << 16;

/// Largest `√to` for which [`count_primes`] ever sieves (the base sieve holds `√to` bytes).
const MAX_SIEVE_ROOT: u64 = 1 << 24;

/// Counts the primes `p` with `from <= p < to` (0 if `to <= from`). Exact for all `u64` inputs.
///
/// Uses a segmented sieve of Eratosthenes: the primes up to `√to` are sieved once, then the
/// range is processed in fixed-size segments, so memory stays small for wide ranges. When `√to`
/// is large compared with the range (or above 2^24), each candidate is instead tested with a
/// deterministic Miller–Rabin test, which is exact for every 64-bit number.
#[must_use]
pub fn count_primes(from: u64, to: u64) -> u64 {
    let from = from.max(2);
    if to <= from {
        return 0;
    }
    // Every composite below `to` has a prime factor <= isqrt(to - 1).
    let root = (to - 1).isqrt();
    if root <= ALWAYS_SIEVE_ROOT || (root <= MAX_SIEVE_ROOT && root <= to - from) {
        count_by_sieve(from, to)
    } else {
        (from..to).filter(|&n| is_prime(n)).count() as u64
    }
}

/// Segmented sieve over `[from, to)`; requires `2 <= from` and `isqrt(to - 1) <= 2^24`.
fn count_by_sieve(from: u64, to: u64) -> u64 {
    let base = small_primes(usize_from((to - 1).isqrt()));
    let mut count = 0;
    let mut composite = Vec::new();
    let mut lo = from;
    while lo < to {
        let hi = lo.saturating_add(SEGMENT).min(to);
        composite.clear();
        composite.resize(usize_from(hi - lo), false);
        for &p in &base {
            let p = p as u64;
            let square = p * p; // p <= 2^24, and `to` < 2^48 + 2^25 here: no overflow below
            if square >= hi {
                break;
            }
            // First multiple of p in [lo, hi) that is at least p², so p itself stays unmarked.
            let mut m = square.max(lo.div_ceil(p) * p);
            while m < hi {
                composite[usize_from(m - lo)] = true;
                m += p;
            }
        }
        count += composite.iter().filter(|&&c| !c).count() as u64;
        lo = hi;
    }
    count
}

/// All primes `<= limit` in increasing order (plain sieve of Eratosthenes).
fn small_primes(limit: usize) -> Vec<usize> {
    if limit < 2 {
        return Vec::new();
    }
    let mut composite = vec![false; limit + 1];
    let mut primes = Vec::new();
    for n in 2..=limit {
        if composite[n] {
            continue;
        }
        primes.push(n);
        let mut m = n.saturating_mul(n);
        while m <= limit {
            composite[m] = true;
            m += n;
        }
    }
    primes
}

/// Deterministic primality test for any `u64`: trial division by the primes up to 37, then
/// Miller–Rabin with those same primes as witnesses, which has no false positives below
/// 3.3·10^24.
fn is_prime(n: u64) -> bool {
    const WITNESSES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for p in WITNESSES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    // n is odd and > 37: write n − 1 = d · 2^s with d odd.
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'witness: for a in WITNESSES {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    let product = u128::from(a) * u128::from(b) % u128::from(m);
    u64::try_from(product).expect("a value reduced modulo a u64 fits in a u64")
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut acc = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mul_mod(acc, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    acc
}

fn usize_from(n: u64) -> usize {
    usize::try_from(n).expect("sieve size exceeds the address space")
}

/// Renders a `width` × `height` tile of the Mandelbrot set as 8-bit grayscale, row-major.
///
/// Pixel `(i, j)` samples the point at the centre of its cell:
/// `c = (x0 + (i + ½)·(x1 − x0)/width) + (y0 + (j + ½)·(y1 − y0)/height)·i`, so row 0 lies next
/// to `y0` (pass `y0 > y1` to put the larger imaginary parts on top). `z ← z² + c` is iterated
/// from 0 until `|z| > 2` or `max_iter` iterations have been done. Points that never escape are
/// black (0); a point escaping after `n` iterations gets `round(255·√(n / max_iter))`, which
/// brightens the thin filaments near the set.
#[must_use]
pub fn mandelbrot_tile(
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    width: u32,
    height: u32,
    max_iter: u32,
) -> Vec<u8> {
    let dx = (x1 - x0) / f64::from(width);
    let dy = (y1 - y0) / f64::from(height);
    let mut out = Vec::with_capacity(width as usize * height as usize);
    for j in 0..height {
        let cy = y0 + (f64::from(j) + 0.5) * dy;
        for i in 0..width {
            let cx = x0 + (f64::from(i) + 0.5) * dx;
            out.push(shade(escape_time(cx, cy, max_iter), max_iter));
        }
    }
    out
}

/// Iterations before `z ← z² + c` leaves the radius-2 disc, or `None` within `max_iter`.
fn escape_time(cx: f64, cy: f64, max_iter: u32) -> Option<u32> {
    let (mut x, mut y) = (0.0f64, 0.0f64);
    for n in 0..max_iter {
        let (xx, yy) = (x * x, y * y);
        if xx + yy > 4.0 {
            return Some(n);
        }
        y = 2.0 * x * y + cy;
        x = xx - yy + cx;
    }
    None
}

fn shade(escape: Option<u32>, max_iter: u32) -> u8 {
    match escape {
        None => 0,
        Some(n) => {
            let level = 255.0 * (f64::from(n) / f64::from(max_iter)).sqrt();
            // `level` is within [0, 255]; the cast saturates anyway.
            level.round() as u8
        }
    }
}

/// Continues a SHA-256 chain: hashes the 32-byte `state` `rounds` more times, so that
/// `sha256_extend(sha256_chain(seed, a), b) == sha256_chain(seed, a + b)` for every `a >= 1`.
/// Each round costs the same, which makes a round a fixed unit of work.
#[must_use]
pub fn sha256_extend(mut state: [u8; 32], rounds: u64) -> [u8; 32] {
    for _ in 0..rounds {
        state = Sha256::digest(state).into();
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward primality test used as an independent reference.
    fn is_prime_slow(n: u64) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    #[test]
    fn count_primes_known_values() {
        assert_eq!(count_primes(0, 100), 25);
        assert_eq!(count_primes(0, 1_000_000), 78_498);
        assert_eq!(count_primes(0, 0), 0);
        assert_eq!(count_primes(0, 2), 0);
        assert_eq!(count_primes(0, 3), 1);
        assert_eq!(count_primes(2, 3), 1);
        assert_eq!(count_primes(3, 3), 0);
        assert_eq!(count_primes(10, 5), 0);
        // π(10^7) − π(9·10^6) = 664579 − 602489.
        assert_eq!(count_primes(9_000_000, 10_000_000), 664_579 - 602_489);
    }

    #[test]
    fn count_primes_matches_trial_division_on_small_ranges() {
        for from in 0..60 {
            for to in from..160 {
                let expected = (from..to).filter(|&n| is_prime_slow(n)).count() as u64;
                assert_eq!(count_primes(from, to), expected, "[{from}, {to})");
            }
        }
    }

    #[test]
    fn count_primes_is_additive_across_segments() {
        let whole = count_primes(0, 1_000_000);
        let parts: u64 = (0..8)
            .map(|k| count_primes(k * 125_000, (k + 1) * 125_000))
            .sum();
        assert_eq!(parts, whole);
    }

    #[test]
    fn miller_rabin_agrees_with_the_sieve() {
        for n in 0..20_000 {
            assert_eq!(is_prime(n), is_prime_slow(n), "{n}");
        }
        // Strong pseudoprimes to several small bases, and Carmichael numbers.
        for n in [
            561,
            1_105,
            2_047,
            1_373_653,
            25_326_001,
            3_215_031_751,
            2_152_302_898_747,
            3_474_749_660_383,
            341_550_071_728_321,
            3_825_123_056_546_413_051,
        ] {
            assert!(!is_prime(n), "{n} is composite");
        }
        // Both strategies over the same range above the always-sieve threshold.
        let (from, to) = (1_000_000_000_000, 1_000_000_020_000);
        assert_eq!(
            count_by_sieve(from, to),
            (from..to).filter(|&n| is_prime(n)).count() as u64
        );
    }

    #[test]
    fn count_primes_near_u64_max() {
        // 2^64 − 59 is the largest 64-bit prime; the next smaller one is 2^64 − 83.
        let top = u64::MAX - 58;
        assert_eq!(count_primes(top, top + 1), 1);
        assert_eq!(count_primes(top - 24, top), 1);
        assert_eq!(count_primes(top - 23, top), 0);
        assert_eq!(count_primes(top + 1, u64::MAX), 0);
        assert!(!is_prime(u64::MAX));
    }

    #[test]
    fn pi_hits_ratio_is_close_to_pi() {
        let samples = 1_000_000;
        let hits = pi_hits(1, samples);
        let estimate = 4.0 * hits as f64 / samples as f64;
        // The standard error of the estimate is about 0.0016 for 10^6 samples.
        assert!((estimate - std::f64::consts::PI).abs() < 0.01, "{estimate}");
        assert_eq!(pi_hits(1, samples), hits, "deterministic");
        assert_ne!(pi_hits(2, samples), hits, "seed dependent");
        assert_eq!(pi_hits(5, 0), 0);
    }

    #[test]
    fn sha256_chain_known_vectors() {
        // Expected digests from python3: hashlib.sha256(struct.pack('<Q', seed)).
        assert_eq!(
            crate::hex(&sha256_chain(0, 1)),
            "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"
        );
        assert_eq!(
            crate::hex(&sha256_chain(42, 1)),
            "ed049108bc18f2c64369e8d0ea42850bdd1a7d1dd340cfde716315579702a76c"
        );
        assert_eq!(
            crate::hex(&sha256_chain(42, 2)),
            "f271627877ccbedabf47a39026cff1b1aa019e0e586c2dc3e896c8244a98945b"
        );
        assert_eq!(
            crate::hex(&sha256_chain(0x0123_4567_89ab_cdef, 1000)),
            "e77cd4bed700daf4977aa8575df3add1e892ba0b97491bea77b0836948f7e26a"
        );
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&7u64.to_le_bytes());
        assert_eq!(sha256_chain(7, 0), raw);
    }

    #[test]
    fn sha256_extend_continues_the_chain() {
        assert_eq!(sha256_extend(sha256_chain(9, 1), 0), sha256_chain(9, 1));
        assert_eq!(sha256_extend(sha256_chain(9, 3), 4), sha256_chain(9, 7));
        assert_eq!(
            sha256_extend(sha256_extend(sha256_chain(9, 1), 10), 5),
            sha256_chain(9, 16)
        );
    }

    #[test]
    fn mandelbrot_tile_shape_and_values() {
        let tile = mandelbrot_tile(-2.0, 1.5, 1.0, -1.5, 30, 20, 100);
        assert_eq!(tile.len(), 600);
        // Row-major: pixel (i, j) is at j * width + i. The centre column x = −0.5 … lies
        // inside the set at row 10 (y ≈ −0.075); the corners escape immediately.
        assert_eq!(tile[10 * 30 + 15], 0);
        assert!(tile[0] > 0);
        assert!(tile[599] > 0);
        assert!(mandelbrot_tile(0.0, 0.0, 1.0, 1.0, 0, 5, 10).is_empty());
        assert!(
            mandelbrot_tile(-2.0, -1.0, 1.0, 1.0, 4, 4, 0)
                .iter()
                .all(|&v| v == 0)
        );
    }

    #[test]
    fn mandelbrot_tiles_compose() {
        // Rendering two halves separately gives the same pixels as rendering the whole.
        let whole = mandelbrot_tile(-2.0, -1.0, 1.0, 1.0, 16, 8, 64);
        let left = mandelbrot_tile(-2.0, -1.0, -0.5, 1.0, 8, 8, 64);
        let right = mandelbrot_tile(-0.5, -1.0, 1.0, 1.0, 8, 8, 64);
        for j in 0..8 {
            assert_eq!(whole[j * 16..j * 16 + 8], left[j * 8..j * 8 + 8]);
            assert_eq!(whole[j * 16 + 8..j * 16 + 16], right[j * 8..j * 8 + 8]);
        }
    }

    #[test]
    fn shade_scale() {
        assert_eq!(shade(None, 256), 0);
        assert_eq!(shade(Some(0), 256), 0);
        assert_eq!(shade(Some(256), 256), 255);
        assert_eq!(shade(Some(64), 256), 128);
    }
}
