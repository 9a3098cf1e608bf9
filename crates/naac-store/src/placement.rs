//! Where shards go: never two shards of one manifest on one host, one owner or one public
//! /24 (Tahoe-LAFS's "servers of happiness", Storj's distinct subnets); among the hosts that
//! qualify, the most trusted with room first.

/// A host that could take a shard.
#[derive(Clone, Debug)]
pub struct Candidate<H> {
    pub host: H,
    /// Who runs it, when it says (hosts of one owner count as one failure domain).
    pub owner: Option<String>,
    /// Its public /24 (`None` for loopback and private addresses, which say nothing about
    /// where a host is).
    pub net: Option<[u8; 3]>,
    /// Bytes it would take now.
    pub free: u64,
    /// Higher first (the owner's trust in it: audits passed, vetting).
    pub score: f64,
}

/// A shard already held somewhere: its host, owner and net are taken.
#[derive(Clone, Debug)]
pub struct Held<H> {
    pub shard: u16,
    pub host: H,
    pub owner: Option<String>,
    pub net: Option<[u8; 3]>,
}

/// The outcome of placing shards.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement<H> {
    /// Shard and the host it goes to.
    pub assigned: Vec<(u16, H)>,
    /// Shards no qualifying host was left for.
    pub unplaced: Vec<u16>,
}

/// Places `shards` (each `shard_len` bytes) on `candidates`, keeping clear of the hosts,
/// owners and nets in `held` and of each other. Ties keep the candidates' order, so a caller
/// that shuffles them first spreads load.
pub fn place<H: Clone + PartialEq>(
    shards: &[u16],
    shard_len: u64,
    candidates: &[Candidate<H>],
    held: &[Held<H>],
) -> Placement<H> {
    let mut order: Vec<&Candidate<H>> = candidates.iter().filter(|c| c.free >= shard_len).collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut hosts: Vec<H> = held.iter().map(|h| h.host.clone()).collect();
    let mut owners: Vec<String> = held.iter().filter_map(|h| h.owner.clone()).collect();
    let mut nets: Vec<[u8; 3]> = held.iter().filter_map(|h| h.net).collect();
    let mut assigned = Vec::new();
    let mut unplaced = Vec::new();
    let mut next = order.into_iter();
    for &shard in shards {
        let pick = next.by_ref().find(|c| {
            !hosts.contains(&c.host)
                && c.owner.as_ref().is_none_or(|o| !owners.contains(o))
                && c.net.is_none_or(|n| !nets.contains(&n))
        });
        match pick {
            Some(c) => {
                hosts.push(c.host.clone());
                owners.extend(c.owner.clone());
                nets.extend(c.net);
                assigned.push((shard, c.host.clone()));
            }
            None => unplaced.push(shard),
        }
    }
    Placement { assigned, unplaced }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(
        host: u32,
        owner: Option<u8>,
        net: Option<u8>,
        free: u64,
        score: f64,
    ) -> Candidate<u32> {
        Candidate {
            host,
            owner: owner.map(|o| format!("owner-{o}")),
            net: net.map(|n| [198, 18, n]),
            free,
            score,
        }
    }

    #[test]
    fn prefers_trusted_hosts_with_room_and_skips_shared_domains() {
        let c = vec![
            cand(1, Some(1), None, 100, 1.0),
            cand(2, Some(1), None, 100, 5.0), // same owner as 1, more trusted
            cand(3, None, Some(7), 100, 2.0),
            cand(4, None, Some(7), 100, 3.0), // same /24 as 3
            cand(5, None, None, 10, 9.0),     // no room
            cand(6, None, None, 100, 0.0),
        ];
        let p = place(&[0, 1, 2, 3, 4], 50, &c, &[]);
        assert_eq!(p.assigned, vec![(0, 2), (1, 4), (2, 6)]);
        assert_eq!(p.unplaced, vec![3, 4]);
        // What is already held is avoided too.
        let held = [Held {
            shard: 9,
            host: 6,
            owner: Some("owner-1".into()),
            net: None,
        }];
        let p = place(&[0, 1], 50, &c, &held);
        assert_eq!(p.assigned, vec![(0, 4)]);
    }

    proptest! {
        #[test]
        fn never_two_shards_on_one_host_owner_or_net(
            hosts in proptest::collection::vec((proptest::option::of(0u8..6), proptest::option::of(0u8..6), 0u64..200, 0.0f64..10.0), 0..60),
            held_n in 0usize..4,
            want in 1u16..20,
        ) {
            let c: Vec<Candidate<u32>> = hosts.iter().enumerate().map(|(i, &(o, n, f, s))| cand(i as u32, o, n, f, s)).collect();
            let held: Vec<Held<u32>> = c.iter().take(held_n).enumerate().map(|(i, c)| Held {
                shard: 100 + i as u16, host: c.host, owner: c.owner.clone(), net: c.net,
            }).collect();
            let shards: Vec<u16> = (0..want).collect();
            let p = place(&shards, 100, &c, &held);
            prop_assert_eq!(p.assigned.len() + p.unplaced.len(), shards.len());
            let mut used: Vec<&Candidate<u32>> = c.iter().take(held_n).collect();
            for (_, h) in &p.assigned {
                let x = &c[*h as usize];
                prop_assert!(x.free >= 100);
                for u in &used {
                    prop_assert!(u.host != x.host);
                    prop_assert!(x.owner.is_none() || u.owner != x.owner);
                    prop_assert!(x.net.is_none() || u.net != x.net);
                }
                used.push(x);
            }
            // Nothing left unplaced while a qualifying host was free.
            if !p.unplaced.is_empty() {
                for x in &c {
                    let clear = x.free >= 100 && used.iter().all(|u| u.host != x.host
                        && (x.owner.is_none() || u.owner != x.owner)
                        && (x.net.is_none() || u.net != x.net));
                    prop_assert!(!clear, "host {} was left out", x.host);
                }
            }
        }
    }
}
