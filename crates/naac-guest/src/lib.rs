//! Small SDK shared by naac guest programs and by the host.
//!
//! Guests are ordinary Rust programs compiled for `wasm32-wasip1`; this crate gives them:
//!
//! * [`SplitMix64`], a tiny seeded PRNG, so that every bit of randomness a guest uses comes
//!   from its arguments and re-running a task reproduces its output exactly;
//! * [`kernels`], the pure compute kernels behind the example jobs (Monte-Carlo π, a SHA-256
//!   chain, prime counting, Mandelbrot tiles). They are plain functions without I/O so the
//!   host can also run them natively, e.g. to compare wasm and native speed;
//! * [`args`], argument parsing that reports problems the way every example does
//!   (`error: argument <index> (<name>): ...` on stderr, exit code 2);
//! * [`hex`] and [`out_path`], small helpers for printing results and writing output files;
//! * [`checkpoint`] and [`restore`], so a long task can save its progress and a later run of
//!   it (possibly on another machine) resumes where it left off.
//!
//! Nothing here reads clocks, spawns threads or touches the OS random source.

use std::path::PathBuf;

pub mod args;
pub mod kernels;
pub mod portable;

/// Seeded 64-bit pseudo-random generator (the SplitMix64 construction).
///
/// It is tiny, fast and has a full period of 2^64; it is *not* cryptographically secure. Equal
/// seeds always give equal sequences on every platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Odd increment added to the state on every step (2^64 divided by the golden ratio).
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// Creates a generator whose sequence is fully determined by `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Returns the next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a uniformly distributed float in `[0, 1)` with 53 random bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        // The top 53 bits fit the f64 mantissa exactly, so the conversion is exact.
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }
}

/// Lower-case hexadecimal encoding of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes lower- or upper-case hexadecimal text; `None` if the length is odd or a character
/// is not a hex digit.
#[must_use]
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

/// Directory in which naac mounts a task's output files inside the sandbox.
pub const OUT_DIR: &str = "/out";

/// Directory in which naac mounts a task's input files inside the sandbox.
pub const IN_DIR: &str = "/in";

/// Path of the output file `name`: inside [`OUT_DIR`], or inside the directory named by the
/// `NAAC_OUT_DIR` environment variable when it is set (handy when running a guest natively).
#[must_use]
pub fn out_path(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("NAAC_OUT_DIR").map_or_else(|| PathBuf::from(OUT_DIR), PathBuf::from);
    dir.join(name)
}

/// Offers the host a checkpoint: `state`, which must fully describe the task's progress.
///
/// Cheap to call often (say, every few milliseconds of work): the host keeps a copy at most
/// once per checkpoint interval (a setting of the job, not of the guest) and ignores the other
/// calls without copying anything. The guest cannot tell whether a copy was taken, on purpose: that depends on
/// wall time, and the task's output must not. If the task is interrupted, a later run of it
/// gets the last copy taken from [`restore`] and must continue so that its output is exactly
/// that of an uninterrupted run.
///
/// The host ends the task with a trap if `state` is longer than 64 MiB. Natively (outside
/// wasm) this does nothing.
pub fn checkpoint(state: &[u8]) {
    #[cfg(target_arch = "wasm32")]
    host::checkpoint(state);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = state;
}

/// The state this run resumes from: what an earlier run of the same task passed to
/// [`checkpoint`], or `None` when the task starts afresh (and always natively, outside wasm).
#[must_use]
pub fn restore() -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    {
        host::restore()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        None
    }
}

/// Safe wrappers of the `naac` host functions.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod host {
    #[link(wasm_import_module = "naac")]
    unsafe extern "C" {
        #[link_name = "checkpoint"]
        fn naac_checkpoint(ptr: *const u8, len: usize);
        #[link_name = "restore_size"]
        fn naac_restore_size() -> i64;
        #[link_name = "restore"]
        fn naac_restore(ptr: *mut u8, len: usize) -> usize;
    }

    pub(crate) fn checkpoint(state: &[u8]) {
        // SAFETY: the host only reads `len` bytes at `ptr`, which `state` owns.
        unsafe { naac_checkpoint(state.as_ptr(), state.len()) }
    }

    pub(crate) fn restore() -> Option<Vec<u8>> {
        // SAFETY: takes no arguments and touches no guest memory.
        let size = usize::try_from(unsafe { naac_restore_size() }).ok()?;
        let mut state = vec![0u8; size];
        // SAFETY: the host writes at most `len` bytes at `ptr`, all of them inside `state`.
        let copied = unsafe { naac_restore(state.as_mut_ptr(), state.len()) };
        state.truncate(copied);
        Some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_seed_dependent() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let mut c = SplitMix64::new(8);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn splitmix_known_values() {
        // First outputs for seed 0 and seed 1234567, computed independently (python3 script
        // implementing the published SplitMix64 recurrence).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn next_f64_is_in_unit_interval_and_roughly_uniform() {
        let mut r = SplitMix64::new(42);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x), "{x} outside [0, 1)");
            sum += x;
        }
        let mean = sum / f64::from(n);
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(unhex("000fA5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&all)), Some(all));
    }

    #[test]
    fn checkpoints_are_inert_natively() {
        checkpoint(b"state");
        assert_eq!(restore(), None);
    }
}
