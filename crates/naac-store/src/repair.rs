//! Repair planning: when fewer than `repair_at` shards of a manifest pass their audits, read
//! exactly `k` healthy shards (the data shards first: they decode nothing) and rebuild every
//! shard that is not healthy onto new hosts.

use crate::audit::ShardState;
use crate::layout::Geometry;

/// The default threshold: repair once fewer than `k + 2` shards are healthy, so one more
/// loss during the repair still leaves a margin.
pub fn default_repair_at(g: &Geometry) -> u16 {
    (g.k + 2).min(g.n)
}

/// What to do for one manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Enough shards are healthy.
    Healthy { healthy: u16 },
    /// Read these `k` shards, rebuild these.
    Repair { read: Vec<u16>, rebuild: Vec<u16> },
    /// Fewer than `k` shards are healthy: nothing can be rebuilt until hosts come back.
    Stuck { healthy: u16 },
}

/// Plans the repair of a manifest whose shards are in `states` (shard `i` at `i`).
pub fn plan(g: &Geometry, states: &[ShardState], repair_at: u16) -> Plan {
    let healthy: Vec<u16> = (0..g.n)
        .filter(|&i| states.get(usize::from(i)) == Some(&ShardState::Healthy))
        .collect();
    let count = healthy.len() as u16;
    if count >= repair_at.clamp(g.k, g.n) {
        return Plan::Healthy { healthy: count };
    }
    if count < g.k {
        return Plan::Stuck { healthy: count };
    }
    let read = healthy.iter().copied().take(usize::from(g.k)).collect();
    let rebuild = (0..g.n).filter(|i| !healthy.contains(i)).collect();
    Plan::Repair { read, rebuild }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(i: u8) -> ShardState {
        match i % 5 {
            0 | 1 => ShardState::Healthy,
            2 => ShardState::Offline,
            3 => ShardState::Lost,
            _ => ShardState::Corrupt,
        }
    }

    #[test]
    fn repairs_below_the_threshold_only() {
        let g = Geometry::new(4, 8, 1 << 20).unwrap();
        use ShardState::*;
        let all = vec![Healthy; 8];
        assert_eq!(plan(&g, &all, 6), Plan::Healthy { healthy: 8 });
        let mut s = all.clone();
        s[1] = Corrupt;
        s[5] = Offline;
        assert_eq!(plan(&g, &s, 6), Plan::Healthy { healthy: 6 });
        s[6] = Lost;
        assert_eq!(
            plan(&g, &s, 6),
            Plan::Repair {
                read: vec![0, 2, 3, 4],
                rebuild: vec![1, 5, 6]
            }
        );
        s[0] = Lost;
        s[2] = Lost;
        assert_eq!(plan(&g, &s, 6), Plan::Stuck { healthy: 3 });
        assert_eq!(default_repair_at(&g), 6);
    }

    proptest! {
        #[test]
        fn never_reads_more_than_k_and_rebuilds_every_unhealthy_shard(
            k in 1u16..10, extra in 1u16..10, raw in proptest::collection::vec(0u8..5, 20), at in 0u16..25,
        ) {
            let g = Geometry::new(k, k + extra, 1 << 16).unwrap();
            let states: Vec<ShardState> = raw.iter().take(usize::from(g.n)).map(|&i| state(i)).collect();
            let healthy = states.iter().filter(|s| **s == ShardState::Healthy).count() as u16;
            match plan(&g, &states, at) {
                Plan::Repair { read, rebuild } => {
                    prop_assert_eq!(read.len(), usize::from(k));
                    for r in &read {
                        prop_assert_eq!(states[usize::from(*r)], ShardState::Healthy);
                        prop_assert!(!rebuild.contains(r));
                    }
                    prop_assert_eq!(rebuild.len() as u16, g.n - healthy);
                    prop_assert!(healthy < at.clamp(g.k, g.n));
                }
                Plan::Healthy { healthy: h } => prop_assert!(h >= at.clamp(g.k, g.n) && h == healthy),
                Plan::Stuck { healthy: h } => prop_assert!(h < k && h == healthy),
            }
        }
    }
}
