//! Audits: the data's owner asks each host for random chunks of its shard with their proofs,
//! at random times, and tells apart what the answers mean. A host that does not answer is
//! *offline* (it may come back: its shard counts as unhealthy only after several misses in a
//! row); one that answers "not found" has *lost* the shard; one whose proof fails holds it
//! *corrupt*; one that answers past the deadline is *late*. A host that failed is not
//! disqualified for good (storj#5328): it holds no new shards until it has passed a run of
//! audits again, and its trust grows back with each pass.

use crate::verify::CHUNK;

/// What one audit found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// Answered correctly but after the deadline.
    Late,
    /// Could not be reached, or did not answer.
    Offline,
    /// Said it does not hold the shard.
    Lost,
    /// Sent bytes that do not prove against the shard's root.
    Corrupt,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Late => "late",
            Verdict::Offline => "offline",
            Verdict::Lost => "lost",
            Verdict::Corrupt => "corrupt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "passed" => Verdict::Passed,
            "late" => Verdict::Late,
            "offline" => Verdict::Offline,
            "lost" => Verdict::Lost,
            "corrupt" => Verdict::Corrupt,
            _ => return None,
        })
    }
}

/// A shard's health as its audits show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardState {
    Healthy,
    /// Missed [`OFFLINE_AFTER`] audits in a row (or was never placed).
    Offline,
    Lost,
    Corrupt,
}

impl ShardState {
    pub fn as_str(self) -> &'static str {
        match self {
            ShardState::Healthy => "healthy",
            ShardState::Offline => "offline",
            ShardState::Lost => "lost",
            ShardState::Corrupt => "corrupt",
        }
    }
}

/// Misses in a row before an unreachable host's shard counts as unhealthy.
pub const OFFLINE_AFTER: u32 = 3;

/// The state of a shard from its last verdict and the misses (offline or late) in a row
/// that ended in it.
pub fn state(last: Option<Verdict>, misses: u32) -> ShardState {
    match last {
        None | Some(Verdict::Passed) => ShardState::Healthy,
        Some(Verdict::Lost) => ShardState::Lost,
        Some(Verdict::Corrupt) => ShardState::Corrupt,
        Some(Verdict::Late) | Some(Verdict::Offline) if misses >= OFFLINE_AFTER => {
            ShardState::Offline
        }
        Some(_) => ShardState::Healthy,
    }
}

/// One step of a seeded generator (SplitMix64), so audit times and chunks are reproducible
/// from the caller's seed.
pub fn next_random(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// When to audit a shard next: uniformly in `[0.5, 1.5] × every_ms` from `now_ms`, so hosts
/// cannot predict it, and on average once per `every_ms`.
pub fn next_audit(now_ms: u64, every_ms: u64, seed: &mut u64) -> u64 {
    let every = every_ms.max(1);
    now_ms + every / 2 + next_random(seed) % every
}

/// Chunks one challenge asks for.
pub const CHALLENGE_CHUNKS: u64 = 4;

/// A random chunk-aligned range of a shard of `shard_len` bytes to challenge: up to
/// [`CHALLENGE_CHUNKS`] chunks.
pub fn challenge(shard_len: u64, seed: &mut u64) -> (u64, u64) {
    let chunks = shard_len.div_ceil(CHUNK).max(1);
    let first = next_random(seed) % chunks;
    let len = (CHALLENGE_CHUNKS * CHUNK).min(shard_len.saturating_sub(first * CHUNK).max(1));
    (first * CHUNK, len)
}

/// Whole-shard challenges made per shard at upload: a chunk challenge proves a few random
/// chunks; these prove every byte (a flipped bit anywhere fails the next one), at the cost of
/// one pass over the shard on the host.
pub const WHOLE_CHALLENGES: usize = 16;

/// The answers to whole-shard challenges: the keyed BLAKE3 of all of `data` under each key,
/// in one pass. The owner computes them at upload and keeps them; a host can answer only by
/// hashing the whole shard with the key, which it learns only when challenged.
pub fn keyed_answers(
    mut data: impl std::io::Read,
    keys: &[[u8; 32]],
) -> std::io::Result<Vec<[u8; 32]>> {
    let mut hashers: Vec<blake3::Hasher> = keys.iter().map(blake3::Hasher::new_keyed).collect();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for h in &mut hashers {
            h.update(&buf[..n]);
        }
    }
    Ok(hashers.iter().map(|h| *h.finalize().as_bytes()).collect())
}

/// The key of whole-shard challenge `i` of a shard, derived from the owner's secret `seed`.
pub fn challenge_key(
    seed: &[u8; 32],
    manifest: &naac_types::ContentId,
    shard: u16,
    i: usize,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(seed);
    h.update(b"naac store whole-shard challenge v1");
    h.update(&manifest.0);
    h.update(&shard.to_le_bytes());
    h.update(&(i as u64).to_le_bytes());
    *h.finalize().as_bytes()
}

/// What the data's owner knows of one host across its audits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    pub passed: u64,
    pub failed: u64,
    /// Passes since its last loss or corruption (`None`: it never lost anything).
    pub since_failure: Option<u64>,
}

/// Passes a host that lost or corrupted a shard needs before it holds new shards again.
pub const REVET_PASSES: u64 = 10;

impl Trust {
    pub fn record(&mut self, v: Verdict) {
        match v {
            Verdict::Passed => {
                self.passed += 1;
                if let Some(n) = &mut self.since_failure {
                    *n += 1;
                }
            }
            Verdict::Lost | Verdict::Corrupt => {
                self.failed += 1;
                self.since_failure = Some(0);
            }
            Verdict::Late | Verdict::Offline => {}
        }
    }

    /// Whether new shards may go to this host: any host that never failed, or one that has
    /// passed [`REVET_PASSES`] audits since it last did.
    pub fn may_hold(&self) -> bool {
        self.since_failure.is_none_or(|n| n >= REVET_PASSES)
    }

    /// A placement score: passes count up, failures count heavily down; a host coming back
    /// from a failure earns its way up gradually.
    pub fn score(&self) -> f64 {
        let p = self.passed as f64;
        let f = self.failed as f64;
        (p + 1.0).ln() - 3.0 * f
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn offline_is_not_lost_and_one_miss_is_not_offline() {
        assert_eq!(state(None, 0), ShardState::Healthy);
        assert_eq!(state(Some(Verdict::Offline), 1), ShardState::Healthy);
        assert_eq!(state(Some(Verdict::Late), 2), ShardState::Healthy);
        assert_eq!(state(Some(Verdict::Offline), 3), ShardState::Offline);
        assert_eq!(state(Some(Verdict::Lost), 1), ShardState::Lost);
        assert_eq!(state(Some(Verdict::Corrupt), 0), ShardState::Corrupt);
        for v in ["passed", "late", "offline", "lost", "corrupt"] {
            assert_eq!(Verdict::parse(v).unwrap().as_str(), v);
        }
    }

    #[test]
    fn audits_are_spread_and_challenges_stay_inside_the_shard() {
        let mut seed = 42;
        let times: Vec<u64> = (0..1000).map(|_| next_audit(0, 1000, &mut seed)).collect();
        assert!(times.iter().all(|&t| (500..1500).contains(&t)));
        let mean = times.iter().sum::<u64>() / 1000;
        assert!((900..1100).contains(&mean), "{mean}");
        for len in [1u64, 1000, 1024, 5000, 1 << 20] {
            for _ in 0..200 {
                let (s, l) = challenge(len, &mut seed);
                assert_eq!(s % CHUNK, 0);
                assert!(
                    l >= 1 && s < len.max(1) && s + l <= len.max(1),
                    "{len}: {s}+{l}"
                );
            }
        }
    }

    #[test]
    fn whole_shard_answers_catch_any_flipped_byte() {
        let data = vec![3u8; 200_000];
        let m = naac_types::ContentId::of(b"m");
        let keys: Vec<[u8; 32]> = (0..3).map(|i| challenge_key(&[9; 32], &m, 1, i)).collect();
        assert_ne!(keys[0], keys[1]);
        let good = keyed_answers(&data[..], &keys).unwrap();
        let mut bad = data.clone();
        bad[123_456] ^= 1;
        let flipped = keyed_answers(&bad[..], &keys).unwrap();
        for i in 0..3 {
            assert_ne!(good[i], flipped[i]);
            assert_eq!(good[i], *blake3::keyed_hash(&keys[i], &data).as_bytes());
        }
    }

    #[test]
    fn a_failed_host_is_trusted_again_gradually() {
        let mut t = Trust::default();
        assert!(t.may_hold());
        t.record(Verdict::Passed);
        t.record(Verdict::Corrupt);
        assert!(!t.may_hold());
        let low = t.score();
        for _ in 0..REVET_PASSES - 1 {
            t.record(Verdict::Passed);
            assert!(!t.may_hold());
        }
        t.record(Verdict::Passed);
        assert!(t.may_hold());
        assert!(t.score() > low);
        t.record(Verdict::Offline);
        assert!(t.may_hold());
    }
}
