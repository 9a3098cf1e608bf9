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
