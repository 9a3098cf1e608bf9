//! Guest used by naac's tests and benchmarks: one binary, many small behaviours.
//!
//! `testkit MODE [ARGS...]`, where MODE is one of:
//!
//! | mode                   | behaviour                                                        |
//! |------------------------|------------------------------------------------------------------|
//! | `noop`                 | exits 0, prints nothing                                          |
//! | `sleep MILLIS`         | sleeps, then prints `slept N ms` as the monotonic clock saw it   |
//! | `echo`                 | copies stdin to stdout                                           |
//! | `print TEXT`           | prints `TEXT` and a newline                                      |
//! | `stderr TEXT`          | prints `TEXT` and a newline to stderr, exits 0                   |
//! | `exit CODE`            | exits with `CODE`                                                |
//! | `random`               | prints the wall clock, a monotonic-clock interval and a hash     |
//! |                        | keyed by std's `RandomState` (all host-controlled sources)       |
//! | `spin MILLIS`          | busy-loops for roughly `MILLIS` ms of native CPU, prints result  |
//! | `pi SEED SAMPLES`      | prints `naac_guest::kernels::pi_hits(SEED, SAMPLES)`             |
//! | `sha256 SEED ROUNDS`   | prints the hex of `naac_guest::kernels::sha256_chain`            |
//! | `ckpt SEED STEPS [PER]`| prints what `sha256 SEED STEPS` prints, one round per step,      |
//! |                        | checkpointing `(step, state)` every `PER` steps (default 1000)   |
//! |                        | and resuming from a restored checkpoint (`resumed at step N` on  |
//! |                        | stderr)                                                          |
//! | `ckptbig BYTES ITERS`  | offers a `BYTES`-long checkpoint `ITERS` times, prints `ITERS`   |
//! | `bytes N`              | writes `N` pattern bytes to stdout in 64 KiB chunks              |
//! | `outfile NAME N`       | writes `N` pattern bytes to `/out/NAME`, prints `wrote NAME`     |
//! | `readin NAME`          | reads `/in/NAME`, prints `LENGTH CHECKSUM`                       |
//! | `readfile PATH`        | prints the content of `PATH`, or `denied: ERROR` on stderr and   |
//! |                        | exit code 3                                                      |
//! | `trap`                 | executes wasm `unreachable` (a panic when run natively)          |
//! | `loop`                 | loops forever                                                    |
//! | `alloc`                | allocates (and touches) 1 MiB blocks forever                     |
//!
//! "Pattern bytes" are `(i % 251) as u8` for byte offset `i`; `CHECKSUM` is the sum of all
//! bytes modulo 2^32. Usage errors (unknown mode, bad arguments) exit with code 2, I/O errors
//! with code 1.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use naac_guest::args::{self, arg};
use naac_guest::kernels::{pi_hits, sha256_chain, sha256_extend};
use naac_guest::{IN_DIR, OUT_DIR, hex};

const MODES: &str = "noop, sleep MILLIS, echo, print TEXT, stderr TEXT, exit CODE, random, spin MILLIS, \
                     pi SEED SAMPLES, sha256 SEED ROUNDS, ckpt SEED STEPS [PER], \
                     ckptbig BYTES ITERS, factor N, checkfactor N, bytes N, outfile NAME N, readin NAME, readfile PATH, \
                     trap, loop, alloc";

/// Size of the chunks written by `bytes` and `outfile`.
const CHUNK: usize = 64 * 1024;

/// Period of the byte pattern.
const PATTERN_PERIOD: usize = 251;

/// `spin` iterations per millisecond, calibrated with the native release build on an AMD EPYC
/// server core (each iteration is a short chain of dependent shifts and xors, so the rate
/// scales with clock speed; wasm runs it somewhat slower).
const SPIN_ITERATIONS_PER_MS: u64 = 600_000;

/// Exit code of `readfile` when the file cannot be read.
const DENIED_EXIT_CODE: i32 = 3;

/// Steps between the checkpoints of `ckpt` unless given.
const DEFAULT_STEPS_PER_CHECKPOINT: u64 = 1000;

fn main() {
    let Some(mode) = args::optional(1, "mode") else {
        args::usage_error(&format!("missing mode; modes: {MODES}"));
    };
    match mode.as_str() {
        "noop" => {}
        "sleep" => {
            // Sleeps MILLIS of (the host's) clock time, then prints how long the monotonic
            // clock says it slept.
            let ms: u64 = arg(2, "millis");
            let t0 = Instant::now();
            std::thread::sleep(std::time::Duration::from_millis(ms));
            println!("slept {} ms", t0.elapsed().as_millis());
        }
        "echo" => echo(),
        "print" => println!("{}", arg::<String>(2, "text")),
        "stderr" => eprintln!("{}", arg::<String>(2, "text")),
        "exit" => std::process::exit(arg(2, "code")),
        "random" => random(),
        "spin" => println!(
            "{}",
            spin(arg::<u64>(2, "millis").saturating_mul(SPIN_ITERATIONS_PER_MS))
        ),
        "pi" => println!("{}", pi_hits(arg(2, "seed"), arg(3, "samples"))),
        "sha256" => println!("{}", hex(&sha256_chain(arg(2, "seed"), arg(3, "rounds")))),
        "ckpt" => ckpt(arg(2, "seed"), arg(3, "steps"), steps_per_checkpoint()),
        "ckptbig" => ckptbig(arg(2, "bytes"), arg(3, "iters")),
        "factor" => factor(arg(2, "n")),
        "checkfactor" => checkfactor(arg(2, "n")),
        "bytes" => bytes(arg(2, "n")),
        "outfile" => outfile(&arg::<String>(2, "name"), arg(3, "n")),
        "readin" => readin(&arg::<String>(2, "name")),
        "readfile" => readfile(&arg::<String>(2, "path")),
        "trap" => trap(),
        "loop" => spin_forever(),
        "alloc" => alloc_forever(),
        other => args::usage_error(&format!("unknown mode {other:?}; modes: {MODES}")),
    }
}

fn echo() {
    if let Err(e) = io::copy(&mut io::stdin().lock(), &mut io::stdout().lock()) {
        args::fail(&format!("echo: {e}"));
    }
}

/// Prints values from every nondeterministic source std exposes on WASI: the wall clock, the
/// monotonic clock and the random source (which keys `RandomState`). The naac host makes all
/// of them deterministic, so two runs must print the same bytes.
fn random() {
    let wall = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_nanos().to_string(),
        Err(e) => format!("-{}", e.duration().as_nanos()),
    };
    let start = Instant::now();
    let spun = spin(black_box(100_000));
    let elapsed = start.elapsed().as_nanos();
    let keyed = RandomState::new().hash_one(42u64);
    println!("time {wall}");
    println!("elapsed {elapsed} (spin {spun})");
    println!("hash {keyed:016x}");
}

/// Runs `iterations` steps of a xorshift generator and returns its final state. The step
/// count goes through `black_box`, so the loop cannot be folded away even under LTO.
fn spin(iterations: u64) -> u64 {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..black_box(iterations) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

fn spin_forever() -> ! {
    let mut x: u64 = 1;
    loop {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
}

fn alloc_forever() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        // Touch every page so the memory is really committed (natively as well as in wasm).
        for byte in block.iter_mut().step_by(4096) {
            *byte = 1;
        }
        blocks.push(black_box(block));
        black_box(&blocks);
    }
}

fn steps_per_checkpoint() -> u64 {
    if args::count() < 4 {
        return DEFAULT_STEPS_PER_CHECKPOINT;
    }
    let per = arg(4, "steps per checkpoint");
    if per == 0 {
        args::usage_error("argument 4 (steps per checkpoint): must be at least 1");
    }
    per
}

/// The SHA-256 chain of `sha256 SEED STEPS`, one round per step, checkpointed as
/// `(step, state)` every `per` steps. A restored checkpoint skips the steps it covers; the
/// output is the same either way.
fn ckpt(seed: u64, steps: u64, per: u64) {
    // The chain's first round hashes the seed; every later round, one step, hashes a digest.
    let (mut step, mut state) = match naac_guest::restore() {
        Some(saved) => {
            let Some((step, state)) =
                decode_progress(&saved).filter(|(s, _)| (steps.min(1)..=steps).contains(s))
            else {
                args::fail(&format!(
                    "ckpt: checkpoint of {} bytes does not fit this task",
                    saved.len()
                ));
            };
            eprintln!("resumed at step {step}");
            (step, state)
        }
        None => (steps.min(1), sha256_chain(seed, steps.min(1))),
    };
    while step < steps {
        let n = per.min(steps - step);
        state = sha256_extend(state, n);
        step += n;
        if step < steps {
            naac_guest::checkpoint(&encode_progress(step, &state));
        }
    }
    println!("{}", hex(&state));
}

/// `ckpt`'s checkpoint: the step number (little-endian) followed by the chain's state.
fn encode_progress(step: u64, state: &[u8; 32]) -> Vec<u8> {
    let mut out = step.to_le_bytes().to_vec();
    out.extend_from_slice(state);
    out
}

fn decode_progress(bytes: &[u8]) -> Option<(u64, [u8; 32])> {
    let (step, state) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*step), state.try_into().ok()?))
}

/// Offers the same `bytes`-long checkpoint `iters` times (to measure what checkpoints cost).
fn ckptbig(bytes: usize, iters: u64) {
    let state = vec![0xa5u8; bytes];
    for _ in 0..iters {
        naac_guest::checkpoint(black_box(&state));
    }
    println!("{iters}");
}

/// Prints the smallest factor `p > 1` of `n` and `n / p` (slow: trial division).
fn factor(n: u64) {
    let p = (2..)
        .take_while(|p| p * p <= n)
        .find(|p| n.is_multiple_of(*p))
        .unwrap_or(n);
    println!("{p} {}", n / p);
}

/// A verifier for `factor`: reads the claimed "p q" on stdin and exits 0 when p * q = n
/// with p > 1 (cheap, unlike finding the factors).
fn checkfactor(n: u64) {
    let mut claim = String::new();
    let _ = io::stdin().read_to_string(&mut claim);
    let parts: Vec<u64> = claim
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    let ok = matches!(parts.as_slice(), [p, q] if *p > 1 && p.checked_mul(*q) == Some(n));
    if !ok {
        eprintln!("claimed factors {:?} of {n} are wrong", claim.trim());
        std::process::exit(1);
    }
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    panic!("testkit trap (wasm builds execute `unreachable` here)")
}

/// `PATTERN_PERIOD` pattern bytes followed by a further `CHUNK` of them, so that any chunk of
/// the pattern is a slice `&buf[offset % PATTERN_PERIOD..][..len]`.
fn pattern_buffer() -> Vec<u8> {
    (0..PATTERN_PERIOD + CHUNK)
        .map(|i| u8::try_from(i % PATTERN_PERIOD).expect("i % 251 fits in a byte"))
        .collect()
}

/// Writes `n` pattern bytes to `out` in chunks of at most `CHUNK` bytes.
fn write_pattern(out: &mut impl Write, n: u64) -> io::Result<()> {
    let buf = pattern_buffer();
    let mut offset: u64 = 0;
    while offset < n {
        let len = usize::try_from(n - offset).map_or(CHUNK, |left| left.min(CHUNK));
        let start = usize::try_from(offset % PATTERN_PERIOD as u64).expect("below 251");
        out.write_all(&buf[start..start + len])?;
        offset += len as u64;
    }
    out.flush()
}

fn bytes(n: u64) {
    if let Err(e) = write_pattern(&mut io::stdout().lock(), n) {
        args::fail(&format!("writing stdout: {e}"));
    }
}

fn outfile(name: &str, n: u64) {
    let path = format!("{OUT_DIR}/{name}");
    let written = File::create(&path).and_then(|mut file| write_pattern(&mut file, n));
    if let Err(e) = written {
        args::fail(&format!("writing {path}: {e}"));
    }
    println!("wrote {name}");
}

/// Length and checksum (sum of the bytes modulo 2^32) of everything `input` yields.
fn length_and_checksum(mut input: impl Read) -> io::Result<(u64, u32)> {
    let mut buf = vec![0u8; CHUNK];
    let (mut len, mut sum) = (0u64, 0u32);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok((len, sum)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n as u64;
        sum = buf[..n]
            .iter()
            .fold(sum, |acc, &b| acc.wrapping_add(u32::from(b)));
    }
}

fn readin(name: &str) {
    let path = format!("{IN_DIR}/{name}");
    match File::open(&path).and_then(length_and_checksum) {
        Ok((len, sum)) => println!("{len} {sum}"),
        Err(e) => args::fail(&format!("reading {path}: {e}")),
    }
}

fn readfile(path: &str) {
    match std::fs::read(path) {
        Ok(content) => {
            if let Err(e) = io::stdout().lock().write_all(&content) {
                args::fail(&format!("writing stdout: {e}"));
            }
        }
        Err(e) => {
            eprintln!("denied: {e}");
            std::process::exit(DENIED_EXIT_CODE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write_pattern(&mut out, n as u64).expect("writing to a Vec");
        out
    }

    #[test]
    fn pattern_is_i_mod_251_across_chunks() {
        for n in [
            0,
            1,
            250,
            251,
            252,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 17,
        ] {
            let bytes = pattern(n);
            assert_eq!(bytes.len(), n);
            assert!(
                bytes
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| usize::from(b) == i % 251),
                "n = {n}"
            );
        }
    }

    #[test]
    fn checksum_of_pattern() {
        let n = 2 * CHUNK + 5;
        let data = pattern(n);
        let expected: u32 = data.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(
            length_and_checksum(&data[..]).expect("reading a slice"),
            (n as u64, expected)
        );
        assert_eq!(length_and_checksum(&[][..]).expect("empty"), (0, 0));
        assert_eq!(
            length_and_checksum(&[255u8; 4][..]).expect("small"),
            (4, 1020)
        );
    }

    #[test]
    fn progress_round_trips() {
        let state = sha256_chain(3, 5);
        let bytes = encode_progress(5, &state);
        assert_eq!(decode_progress(&bytes), Some((5, state)));
        assert_eq!(decode_progress(&bytes[..39]), None);
        assert_eq!(decode_progress(&[]), None);
    }

    #[test]
    fn spin_depends_on_iterations() {
        assert_eq!(spin(1000), spin(1000));
        assert_ne!(spin(1000), spin(1001));
    }
}
