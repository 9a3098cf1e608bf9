//! A Kademlia model: provider records found by α-parallel iterative lookups over k-buckets,
//! with the parameters naac's DHT runs with (`naac-net/src/market.rs`: k = 20, α = 3,
//! provider records kept an hour and republished every 20 minutes).
//!
//! Node ids are 64 bits (enough to order ten million nodes; libp2p's are 256, which changes
//! no hop count below 2^64 nodes). A node's bucket for a target is the subtree that shares
//! its id's first `b` bits and differs at bit `b` (`b` = their common prefix), and holds up
//! to `k` of that subtree's nodes: drawn afresh every [`REFRESH_MS`] (libp2p refreshes its
//! buckets every 5 minutes; 10 minutes is the slower of what that gives under load), and
//! still listing a node that left less than [`REFRESH_MS`] ago (an entry stays until a
//! query to it fails or the bucket is refreshed). A lookup asks the `α` closest nodes it has
//! not asked, each round, until the `k` closest it knows have all answered; a node that left
//! does not answer (the query times out). A provider record lives on the `k` closest nodes
//! that answered the publisher's lookup, while they stay up (libp2p keeps records in memory)
//! and until it expires.
//!
//! The memory is two arrays (each node's id, and the ids sorted): a bucket is a range of the
//! sorted ids, sampled by hashing, so a million nodes need no routing tables.

use crate::engine::Time;

/// Replication: contacts per bucket, holders per record, results per lookup.
pub const K: usize = 20;
/// Queries in flight per lookup.
pub const ALPHA: usize = 3;
/// How often a node's buckets are refreshed, and how long a departed node stays listed.
pub const REFRESH_MS: Time = 10 * 60_000;
/// How long a provider record is kept without republishing.
pub const RECORD_TTL_MS: Time = 60 * 60_000;
/// How often a provider republishes.
pub const REPUBLISH_MS: Time = 20 * 60_000;
/// Most rounds a lookup takes: a safety bound (a lookup that finds its record stops there;
/// one that places a record asks until the `k` closest it knows have all answered, some
/// `k / α` rounds after it converged).
const MAX_ROUNDS: u32 = 60;

/// What a lookup found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lookup {
    /// Rounds of α queries: until a live holder of the record answered, or, for a lookup
    /// that places a record, until the `k` closest answered.
    pub rounds: u32,
    /// Nodes queried.
    pub queried: u32,
    /// Queries that timed out (the node had left).
    pub timeouts: u32,
    /// A live holder of the record answered.
    pub found: bool,
}

/// Whether a host is up now and, if not, since when it is away.
pub trait Liveness {
    fn up(&self, host: u32) -> bool;
    /// When the host last came or went, milliseconds.
    fn changed(&self, host: u32) -> Time;
    /// Its session counter (a record held in an earlier session is gone).
    fn session(&self, host: u32) -> u32;
}

/// The DHT: ids and provider records.
pub struct Dht {
    ids: Vec<u64>,
    /// (id, host), by id.
    sorted: Vec<(u64, u32)>,
    seed: u64,
}

/// A record's holders: (host, its session when it took the record), and when it expires.
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub holders: Vec<(u32, u32)>,
    pub expires: Time,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Leading bits two ids share.
fn cpl(a: u64, b: u64) -> u32 {
    (a ^ b).leading_zeros()
}

impl Dht {
    /// Ids for `n` hosts, drawn from `seed`.
    pub fn new(n: u32, seed: u64) -> Dht {
        let ids: Vec<u64> = (0..n).map(|h| mix(seed ^ mix(u64::from(h) + 1))).collect();
        let mut sorted: Vec<(u64, u32)> = ids
            .iter()
            .enumerate()
            .map(|(h, id)| (*id, h as u32))
            .collect();
        sorted.sort_unstable();
        Dht { ids, sorted, seed }
    }

    pub fn id(&self, host: u32) -> u64 {
        self.ids[host as usize]
    }

    /// The key a name hashes to.
    pub fn key(&self, name: u64) -> u64 {
        mix(name ^ 0x6b65_7973 ^ self.seed)
    }

    /// The hosts whose ids start with the first `len` bits of `prefix`: a range of `sorted`.
    fn subtree(&self, prefix: u64, len: u32) -> &[(u64, u32)] {
        if len == 0 {
            return &self.sorted;
        }
        let mask = if len >= 64 {
            u64::MAX
        } else {
            !(u64::MAX >> len)
        };
        let (lo, hi) = (prefix & mask, prefix | !mask);
        let from = self.sorted.partition_point(|(id, _)| *id < lo);
        let to = self.sorted.partition_point(|(id, _)| *id <= hi);
        &self.sorted[from..to]
    }

    /// What `host` answers a query for `target`: the `k` contacts of its routing table
    /// closest to it — its bucket for the target first, then (when that holds fewer) the
    /// buckets nearer itself, then the farther ones, in that order of distance.
    fn answer(&self, host: u32, target: u64, now: Time, live: &dyn Liveness, out: &mut Vec<u32>) {
        out.clear();
        let me = self.ids[host as usize];
        let epoch = now / REFRESH_MS;
        let listed = |h: u32| live.up(h) || now.saturating_sub(live.changed(h)) < REFRESH_MS;
        // Closeness to the target: its bucket, then the buckets nearer me, then the farther.
        let first = cpl(me, target);
        let order = (first..64).chain((0..first).rev());
        for b in order {
            if out.len() >= K {
                break;
            }
            // Bucket b: my first b bits, then the opposite of my bit b.
            let flip = 1u64 << (63 - b);
            let range = self.subtree(me ^ flip, b + 1);
            if range.len() <= K {
                for (_, h) in range {
                    if out.len() < K && listed(*h) && !out.contains(h) {
                        out.push(*h);
                    }
                }
            } else {
                let mut taken = 0;
                let mut tries = 0u64;
                while taken < K && out.len() < K && tries < 3 * K as u64 {
                    let r = mix(self.seed
                        ^ mix(u64::from(host) << 8 | u64::from(b))
                        ^ mix(epoch ^ tries));
                    tries += 1;
                    let h = range[(r % range.len() as u64) as usize].1;
                    if listed(h) && !out.contains(&h) {
                        out.push(h);
                        taken += 1;
                    }
                }
            }
        }
        out.sort_by_key(|h| self.ids[*h as usize] ^ target);
    }

    /// A lookup for `target` from `origin`: the closest nodes that answered (up to `k`), and
    /// whether a live holder of `record` was among those asked.
    pub fn lookup(
        &self,
        origin: u32,
        target: u64,
        now: Time,
        live: &dyn Liveness,
        record: Option<&Record>,
    ) -> (Lookup, Vec<u32>) {
        let mut out = Lookup::default();
        // (distance, host, asked, answered)
        let mut short: Vec<(u64, u32, bool, bool)> = Vec::with_capacity(4 * K);
        let mut buf = Vec::with_capacity(K);
        self.answer(origin, target, now, live, &mut buf);
        for &h in &buf {
            short.push((self.ids[h as usize] ^ target, h, false, false));
        }
        let holds = |h: u32| {
            record.is_some_and(|r| {
                r.expires > now
                    && r.holders
                        .iter()
                        .any(|(x, s)| *x == h && live.up(h) && live.session(h) == *s)
            })
        };
        while out.rounds < MAX_ROUNDS {
            short.sort_unstable_by_key(|e| e.0);
            // The k closest that have not failed.
            let mut ask = Vec::with_capacity(ALPHA);
            let mut live_seen = 0;
            for e in &short {
                if live_seen >= K {
                    break;
                }
                if e.2 && !e.3 {
                    continue; // asked, timed out
                }
                live_seen += 1;
                if !e.2 && ask.len() < ALPHA {
                    ask.push(e.1);
                }
            }
            if ask.is_empty() {
                break;
            }
            out.rounds += 1;
            for h in ask {
                out.queried += 1;
                let answered = live.up(h);
                if let Some(e) = short.iter_mut().find(|e| e.1 == h) {
                    e.2 = true;
                    e.3 = answered;
                }
                if !answered {
                    out.timeouts += 1;
                    continue;
                }
                if holds(h) {
                    out.found = true;
                }
                self.answer(h, target, now, live, &mut buf);
                for &c in &buf {
                    if c != origin && !short.iter().any(|e| e.1 == c) {
                        short.push((self.ids[c as usize] ^ target, c, false, false));
                    }
                }
            }
            if out.found && record.is_some() {
                break;
            }
        }
        short.sort_unstable_by_key(|e| e.0);
        let closest = short.iter().filter(|e| e.3).take(K).map(|e| e.1).collect();
        (out, closest)
    }

    /// `publisher` (re)publishes a record for `key`: it lives on the closest nodes its
    /// lookup reached.
    pub fn publish(
        &self,
        publisher: u32,
        key: u64,
        now: Time,
        live: &dyn Liveness,
    ) -> (Lookup, Record) {
        let (l, closest) = self.lookup(publisher, key, now, live, None);
        let holders = closest.into_iter().map(|h| (h, live.session(h))).collect();
        (
            l,
            Record {
                holders,
                expires: now + RECORD_TTL_MS,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AllUp;
    impl Liveness for AllUp {
        fn up(&self, _: u32) -> bool {
            true
        }
        fn changed(&self, _: u32) -> Time {
            0
        }
        fn session(&self, _: u32) -> u32 {
            1
        }
    }

    #[test]
    fn lookups_find_what_was_published_in_about_log_n_over_log_k_rounds() {
        for n in [1_000u32, 100_000] {
            let d = Dht::new(n, 9);
            let mut rounds = 0;
            for i in 0..200u64 {
                let key = d.key(i);
                let publisher = (i * 7919 % u64::from(n)) as u32;
                let (_, rec) = d.publish(publisher, key, 0, &AllUp);
                assert_eq!(rec.holders.len(), K);
                let origin = (i * 104_729 % u64::from(n)) as u32;
                let (l, _) = d.lookup(origin, key, 1, &AllUp, Some(&rec));
                assert!(l.found, "n {n} key {i}: {l:?}");
                rounds += l.rounds;
            }
            let mean = f64::from(rounds) / 200.0;
            let bound = f64::from(n).log2();
            assert!(mean <= bound / 2.0, "n {n}: {mean} rounds");
        }
    }

    #[test]
    fn the_closest_nodes_are_the_true_closest_when_all_are_up() {
        let d = Dht::new(5_000, 3);
        let key = d.key(42);
        let (_, closest) = d.lookup(17, key, 0, &AllUp, None);
        let mut truth: Vec<u32> = (0..5_000).collect();
        truth.sort_by_key(|h| d.id(*h) ^ key);
        let found: std::collections::BTreeSet<u32> = closest.into_iter().collect();
        let best: std::collections::BTreeSet<u32> = truth.into_iter().take(K).collect();
        let common = found.intersection(&best).count();
        assert!(common >= K - 2, "{common} of the {K} closest found");
    }
}
