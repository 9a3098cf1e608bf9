//! The DHT's load in a run: each provided key's provider places its record as it comes up
//! and every 20 minutes while up, and hosts that are up look keys up ([`crate::dht`]); the
//! figures and the `expect.lookup_success` check.

use super::{Ev, Sim};
use crate::dht::{self, Dht, Liveness, Record};
use crate::engine::Time;
use crate::model::Host;
use crate::report::{DhtFigures, Violation};
use crate::rng::Rng;

/// The DHT's state in a run: the model, each key's provider and record, the figures.
pub(super) struct DhtState {
    dht: Dht,
    pub(super) provider: Vec<u32>,
    records: Vec<Option<Record>>,
    /// Keys each provider provides (only providers are in it; looked up, never iterated).
    pub(super) provides: std::collections::HashMap<u32, Vec<u32>>,
    rng: Rng,
    figures: DhtFigures,
    rounds: u64,
    queried: u64,
    timeouts: u64,
}

/// The hosts' liveness, as the DHT model asks for it.
struct Live<'a> {
    hosts: &'a [Host],
    changed_s: &'a [u32],
}

impl Liveness for Live<'_> {
    fn up(&self, h: u32) -> bool {
        self.hosts[h as usize].up
    }
    fn changed(&self, h: u32) -> Time {
        u64::from(self.changed_s[h as usize]) * 1000
    }
    fn session(&self, h: u32) -> u32 {
        self.hosts[h as usize].session
    }
}

impl Sim {
    /// Sets up the DHT when the scenario provides keys.
    pub(super) fn start_dht(&mut self, root: &Rng) {
        let n = self.hosts.len();
        let load = self.s.dht.clone();
        if load.keys > 0 && n > 0 {
            let mut rng = root.fork(6);
            let provider: Vec<u32> = (0..load.keys).map(|_| rng.below(n as u64) as u32).collect();
            let mut provides: std::collections::HashMap<u32, Vec<u32>> = Default::default();
            for (k, p) in provider.iter().enumerate() {
                provides.entry(*p).or_default().push(k as u32);
            }
            self.dht = Some(DhtState {
                dht: Dht::new(n as u32, self.seed ^ 0x0064_6874),
                records: vec![None; provider.len()],
                provider,
                provides,
                rng,
                figures: DhtFigures {
                    nodes: n as u32,
                    log2_nodes: (n as f64).log2(),
                    ..DhtFigures::default()
                },
                rounds: 0,
                queried: 0,
                timeouts: 0,
            });
            if load.lookups_per_hour > 0.0 {
                self.q
                    .push((load.warmup_min * 60_000.0) as Time, Ev::Lookup);
            }
        }
    }

    /// Key `k`'s provider places its record again, if it is up (it does on coming up, and
    /// every [`dht::REPUBLISH_MS`] while up).
    pub(super) fn publish(&mut self, k: u32) {
        let Some(d) = self.dht.as_mut() else { return };
        let p = d.provider[k as usize];
        if !self.hosts[p as usize].up {
            return;
        }
        let live = Live {
            hosts: &self.hosts,
            changed_s: &self.changed_s,
        };
        let key = d.dht.key(u64::from(k));
        let (_, record) = d.dht.publish(p, key, self.now, &live);
        self.trace.update(&[20]);
        self.trace
            .update(&(record.holders.len() as u32).to_le_bytes());
        d.records[k as usize] = Some(record);
        d.figures.published += 1;
        let session = self.hosts[p as usize].session;
        self.q
            .push(self.now + dht::REPUBLISH_MS, Ev::PublishIf(k, session));
    }

    /// A host that is up looks up a key whose provider is up.
    pub(super) fn lookup(&mut self) {
        let Some(d) = self.dht.as_mut() else { return };
        let rate = self.s.dht.lookups_per_hour;
        let next = d.rng.exp(3_600_000.0 / rate);
        self.q.push(self.now + next.max(1.0) as Time, Ev::Lookup);
        if self.online.is_empty() {
            return;
        }
        let origin = self.online[d.rng.below(self.online.len() as u64) as usize];
        let mut pick = None;
        for _ in 0..16 {
            let k = d.rng.below(d.provider.len() as u64) as u32;
            let p = d.provider[k as usize];
            if self.hosts[p as usize].up && p != origin {
                pick = Some(k);
                break;
            }
        }
        let Some(k) = pick else { return };
        let live = Live {
            hosts: &self.hosts,
            changed_s: &self.changed_s,
        };
        let key = d.dht.key(u64::from(k));
        let (l, _) = d
            .dht
            .lookup(origin, key, self.now, &live, d.records[k as usize].as_ref());
        self.trace.update(&[21, u8::from(l.found)]);
        self.trace.update(&l.rounds.to_le_bytes());
        let f = &mut d.figures;
        f.lookups += 1;
        if l.found {
            f.found += 1;
            d.rounds += u64::from(l.rounds);
            f.max_rounds = f.max_rounds.max(l.rounds);
        }
        d.queried += u64::from(l.queried);
        d.timeouts += u64::from(l.timeouts);
    }

    /// The DHT's figures, checked against `expect.lookup_success`.
    pub(super) fn dht_figures(&mut self) -> Option<DhtFigures> {
        let dht = self.dht.take().map(|d| {
            let mut f = d.figures;
            if f.found > 0 {
                f.mean_rounds = d.rounds as f64 / f.found as f64;
            }
            if f.lookups > 0 {
                f.mean_queried = d.queried as f64 / f.lookups as f64;
                f.mean_timeouts = d.timeouts as f64 / f.lookups as f64;
            }
            f
        });
        if let (Some(f), Some(want)) = (&dht, self.s.expect.lookup_success)
            && f.lookups >= 100
            && f.success() < want
        {
            let what = format!(
                "DHT lookups found a live provider {:.4} of the time, below {want}",
                f.success()
            );
            self.violations.push(Violation {
                event: self.event,
                at_ms: self.now,
                what,
            });
        }
        dht
    }
}
