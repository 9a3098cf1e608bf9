//! A deterministic simulator of a naac pool: a discrete-event engine ([`engine`]) with one
//! seeded generator ([`rng`]) that drives the project's real sans-IO scheduler
//! (`naac-sched`: placement, leases, retries, replicas, adaptive trust, spot checks) with
//! simulated hosts and requesters ([`world`]), drawn from documented models ([`model`]):
//! heavy-tailed sessions, log-normal speeds, regional latency, crashes, slow hosts and
//! cheaters. A scenario ([`scenario`]) is a TOML file; a run reports its figures, the
//! invariants it broke with the event to replay to, and a trace hash: the same scenario and
//! seed always give the same hash.
//!
//! Nothing here reads a clock, spawns a thread or iterates a hash map in an order that
//! reaches the trace; the scheduler's own state is kept in ordered collections for the same
//! reason.

pub mod dht;
pub mod engine;
pub mod model;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod world;

pub use report::{DhtFigures, Report, SettingFigures, Violation};
pub use scenario::{Scenario, ScenarioError};
pub use world::Sim;

/// Runs `scenario` under `seed` to its end (or to event `stop_at`).
pub fn run(scenario: Scenario, seed: u64, stop_at: Option<u64>) -> Report {
    Sim::new(scenario, seed).run(stop_at)
}

#[cfg(test)]
mod tests;
