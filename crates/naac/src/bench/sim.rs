//! The simulator's figures: a pool of 100,000 hosts (10,000 with `--quick`) for two
//! simulated hours of `sim/million.toml`'s workload scaled to it (wall time, peak memory,
//! events and scheduler decisions per second; the full million hosts for a day is `naac sim
//! sim/million.toml`, quoted in the README), and the share of wrong results each
//! verification setting accepts against colluding cheaters of growing share
//! (`sim/collude.toml`, three seeds each), and DHT lookups' success and rounds at 10^3 to
//! 10^6 nodes under a fifth an hour of churn (`sim/dht.toml`).

use super::{Bench, Figure};
use serde_json::json;

/// Cheater shares the acceptance table covers, and each row's name.
const SHARES: [(f64, &str); 4] = [
    (0.05, "wrong accepted, 5% colluding cheaters"),
    (0.10, "wrong accepted, 10% colluding cheaters"),
    (0.20, "wrong accepted, 20% colluding cheaters"),
    (0.33, "wrong accepted, 33% colluding cheaters"),
];

impl Bench {
    pub(super) async fn sim(&self) -> anyhow::Result<Vec<Figure>> {
        let mut s = naac_sim::Scenario::parse(include_str!("../../../../sim/million.toml"))?;
        let hosts: u32 = if self.quick { 10_000 } else { 100_000 };
        s.jobs.per_hour *= f64::from(hosts) / f64::from(s.pool.hosts);
        s.pool.hosts = hosts;
        s.hours = 2.0;
        let ran = crate::sim::simulate(s, 1, None, true).await?;
        let r = &ran.report;
        let rss = crate::sim::peak_rss();
        let per_s = |n: u64| n as f64 / ran.wall_s.max(1e-9);
        let mut out = vec![
            Figure {
                name: "simulated pool, 2 h",
                value: format!("{:.1} s, {:.0} events/s", ran.wall_s, per_s(r.events)),
                target: "1M hosts x 24 h <= 1 h",
                baseline: format!(
                    "{hosts} hosts, peak RSS {}",
                    naac_types::units::format_size(rss)
                ),
                ratio: None,
                raw: json!({
                    "hosts": hosts, "sim_hours": r.sim_hours, "wall_seconds": ran.wall_s,
                    "events": r.events, "events_per_second": per_s(r.events),
                    "peak_rss_bytes": rss, "trace": r.trace,
                }),
            },
            Figure {
                name: "  scheduler decisions per second",
                value: format!("{:.0}", per_s(r.decisions)),
                target: "(the real scheduler)",
                baseline: format!("{} jobs", r.jobs_arrived),
                ratio: None,
                raw: json!({"decisions": r.decisions, "per_second": per_s(r.decisions)}),
            },
        ];
        // DHT lookups under a fifth an hour of churn, against the pool's size.
        let dht = naac_sim::Scenario::parse(include_str!("../../../../sim/dht.toml"))?;
        let sizes: &[(u32, &'static str)] = if self.quick {
            &[
                (1_000, "DHT lookups, 10^3 nodes"),
                (100_000, "DHT lookups, 10^5 nodes"),
            ]
        } else {
            &[
                (1_000, "DHT lookups, 10^3 nodes"),
                (10_000, "DHT lookups, 10^4 nodes"),
                (100_000, "DHT lookups, 10^5 nodes"),
                (1_000_000, "DHT lookups, 10^6 nodes"),
            ]
        };
        for &(n, name) in sizes {
            let mut s = dht.clone();
            s.pool.hosts = n;
            let r = crate::sim::simulate(s, 1, None, true).await?.report;
            let Some(d) = r.dht.clone() else { continue };
            out.push(Figure {
                name,
                value: format!(
                    "{:.2}% found, {:.2} rounds (max {})",
                    100.0 * d.success(),
                    d.mean_rounds,
                    d.max_rounds
                ),
                target: ">= 99%, O(log N)",
                baseline: format!(
                    "log2 N = {:.1}, churn {:.0}%/h",
                    d.log2_nodes,
                    100.0 * r.churn_per_hour()
                ),
                ratio: None,
                raw: json!({
                    "nodes": n, "lookups": d.lookups, "success": d.success(),
                    "mean_rounds": d.mean_rounds, "max_rounds": d.max_rounds,
                    "mean_queried": d.mean_queried, "mean_timeouts": d.mean_timeouts,
                    "log2_nodes": d.log2_nodes, "churn_per_hour": r.churn_per_hour(),
                }),
            });
        }
        let seeds: u64 = if self.quick { 1 } else { 3 };
        let base = naac_sim::Scenario::parse(include_str!("../../../../sim/collude.toml"))?;
        for (share, name) in SHARES {
            let mut totals: Vec<(String, u64, u64)> = Vec::new();
            for seed in 1..=seeds {
                let mut s = base.clone();
                s.adversary.cheaters = share;
                s.expect = Default::default();
                let r = crate::sim::simulate(s, seed, None, true).await?.report;
                for f in r.settings {
                    match totals.iter_mut().find(|t| t.0 == f.name) {
                        Some(t) => {
                            t.1 += f.accepted;
                            t.2 += f.wrong;
                        }
                        None => totals.push((f.name, f.accepted, f.wrong)),
                    }
                }
            }
            let rate = |a: u64, w: u64| if a == 0 { 0.0 } else { w as f64 / a as f64 };
            out.push(Figure {
                name,
                value: totals
                    .iter()
                    .map(|(n, a, w)| format!("{n} {:.1}%", 100.0 * rate(*a, *w)))
                    .collect::<Vec<_>>()
                    .join(", "),
                target: "(choose a setting)",
                baseline: format!("sim/collude.toml, {seeds} seeds"),
                ratio: None,
                raw: json!(totals
                    .iter()
                    .map(|(n, a, w)| json!({"setting": n, "accepted": a, "wrong": w, "rate": rate(*a, *w)}))
                    .collect::<Vec<_>>()),
            });
        }
        Ok(out)
    }
}
