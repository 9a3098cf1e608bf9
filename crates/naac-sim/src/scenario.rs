//! A scenario: what is simulated, as a TOML file (`sim/*.toml`). Every key has a default, so
//! a scenario names only what it changes; unknown keys are refused, naming the line.
//!
//! ```toml
//! name = "small"
//! hours = 2.0
//! [pool]
//! hosts = 1000
//! [adversary]
//! cheaters = 0.1
//! strategy = "collude"
//! [jobs]
//! per_hour = 120
//! verify = ["plain", "replicas2", "adaptive"]
//! ```

use serde::Deserialize;

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}")]
    Parse(String),
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Simulated hours.
    #[serde(default = "d_hours")]
    pub hours: f64,
    #[serde(default)]
    pub pool: Pool,
    #[serde(default)]
    pub adversary: Adversary,
    #[serde(default)]
    pub jobs: Jobs,
    #[serde(default)]
    pub faults: Faults,
    #[serde(default)]
    pub dht: DhtLoad,
    #[serde(default)]
    pub expect: Expect,
}

/// The DHT's load ([`crate::dht`]): provider records and lookups for them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DhtLoad {
    /// Keys provided, each by one host (a market class, a stored manifest); 0: no DHT.
    pub keys: u32,
    /// Lookups per hour, each for a key whose provider is up, from a host that is up.
    pub lookups_per_hour: f64,
    /// Lookups are counted only after this many minutes (the first records placed).
    pub warmup_min: f64,
}

impl Default for DhtLoad {
    fn default() -> Self {
        Self {
            keys: 0,
            lookups_per_hour: 0.0,
            warmup_min: 30.0,
        }
    }
}

/// What the scenario holds verification to, checked as the run goes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// Settings that must accept no wrong result at all in this scenario (replicas against
    /// cheaters that do not collude): the first one accepted is a violation at its event.
    pub no_wrong: Vec<String>,
    /// Settings whose share of wrong results accepted must stay below a bound, checked
    /// once a setting has 200 accepted tasks.
    pub wrong_below: std::collections::BTreeMap<String, f64>,
    /// The least share of DHT lookups that must find a live provider (checked once 100
    /// were made).
    pub lookup_success: Option<f64>,
}

/// The hosts: how many, how long they stay, how fast they are, where they are.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    pub hosts: u32,
    /// Median minutes a host stays online once up (Weibull sessions).
    pub session_median_min: f64,
    /// The sessions' Weibull shape: below 1, heavy-tailed (most sessions short, a few very
    /// long), as measured in deployed P2P systems.
    pub session_shape: f64,
    /// Median minutes a host stays away once gone.
    pub offline_median_min: f64,
    /// Share of departures that close their connections (the requester hears at once);
    /// the rest are crashes and power cuts found only when the lease lapses.
    pub graceful: f64,
    /// Slots per host, least and most (uniform).
    pub slots: [u32; 2],
    /// Spread of compute scores: log-normal with median 1 and this log-space deviation.
    pub speed_sigma: f64,
    /// Regions hosts and requesters are spread over (round trips in [`crate::model::rtt`]).
    pub regions: u8,
}

/// Cheaters: their share of the hosts and how they lie.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Adversary {
    /// Share of hosts that cheat.
    pub cheaters: f64,
    pub strategy: Strategy,
    /// Chance a cheater lies on a given result.
    pub lie: f64,
    /// A lying cheater returns after this share of the task's time (it skipped the work).
    pub haste: f64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every cheater returns the same wrong answer for a task (a coordinated attack: its
    /// copies agree with each other).
    Collude,
    /// Each cheater returns a wrong answer of its own.
    Alone,
}

/// The job stream.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Jobs {
    /// Jobs submitted per hour (Poisson arrivals).
    pub per_hour: f64,
    /// Tasks per job, least and most (log-uniform).
    pub tasks: [u32; 2],
    /// A job's mean task time at compute score 1, least and most (log-uniform), seconds.
    pub task_seconds: [f64; 2],
    /// Hosts a requester finds and greets for a job (it looks for more as they leave).
    pub hosts_per_job: u32,
    /// Verification settings, one drawn per job: `plain`, `replicas2`, `replicas3`,
    /// `adaptive`, `spot10` (10% spot checks).
    pub verify: Vec<String>,
}

/// Faults beyond churn and cheating.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Share of hosts ten times slower than their score says (thermal throttling, a busy
    /// owner).
    pub slow: f64,
}

fn d_hours() -> f64 {
    1.0
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            hosts: 1000,
            session_median_min: 60.0,
            session_shape: 0.5,
            offline_median_min: 60.0,
            graceful: 0.5,
            slots: [1, 4],
            speed_sigma: 0.5,
            regions: 6,
        }
    }
}

impl Default for Adversary {
    fn default() -> Self {
        Self {
            cheaters: 0.0,
            strategy: Strategy::Collude,
            lie: 1.0,
            haste: 0.1,
        }
    }
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            per_hour: 60.0,
            tasks: [10, 1000],
            task_seconds: [1.0, 60.0],
            hosts_per_job: 64,
            verify: vec!["plain".into()],
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self { slow: 0.0 }
    }
}

/// The verification settings a scenario may draw from.
pub const SETTINGS: &[&str] = &["plain", "replicas2", "replicas3", "adaptive", "spot10"];

/// The scheduler's policy for setting `name`.
pub fn policy(name: &str) -> Option<naac_types::VerifyPolicy> {
    use naac_types::VerifyPolicy;
    let base = VerifyPolicy::default();
    Some(match name {
        "plain" => base,
        "replicas2" => VerifyPolicy {
            replicas: 2,
            quorum: 2,
            max_replicas: 4,
            ..base
        },
        "replicas3" => VerifyPolicy {
            replicas: 3,
            quorum: 2,
            max_replicas: 5,
            ..base
        },
        "adaptive" => VerifyPolicy {
            adaptive: true,
            max_replicas: 4,
            ..base
        },
        "spot10" => VerifyPolicy {
            spot_check: 0.1,
            max_replicas: 3,
            ..base
        },
        _ => return None,
    })
}

impl Scenario {
    /// Reads and checks a scenario's TOML.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), ScenarioError> {
        let bad = |field: &'static str, why: &str| {
            Err(ScenarioError::Invalid {
                field,
                why: why.to_string(),
            })
        };
        let share = |x: f64| (0.0..=1.0).contains(&x);
        if !(self.hours > 0.0 && self.hours <= 24.0 * 365.0) {
            return bad("hours", "must be above 0 and at most a year");
        }
        let p = &self.pool;
        if p.hosts == 0 || p.hosts > 10_000_000 {
            return bad("pool.hosts", "must be 1 to 10,000,000");
        }
        if p.session_median_min <= 0.0 || p.offline_median_min <= 0.0 {
            return bad(
                "pool.session_median_min",
                "session and offline medians must be above 0",
            );
        }
        if !(0.05..=10.0).contains(&p.session_shape) {
            return bad("pool.session_shape", "must be 0.05 to 10");
        }
        if !share(p.graceful) {
            return bad("pool.graceful", "is a share, 0 to 1");
        }
        if p.slots[0] == 0 || p.slots[0] > p.slots[1] || p.slots[1] > 255 {
            return bad(
                "pool.slots",
                "must be [least, most] with 1 <= least <= most <= 255",
            );
        }
        if !(0.0..=3.0).contains(&p.speed_sigma) {
            return bad("pool.speed_sigma", "must be 0 to 3");
        }
        if p.regions == 0 || usize::from(p.regions) > crate::model::REGIONS {
            return bad("pool.regions", "must be 1 to 6");
        }
        let a = &self.adversary;
        if !share(a.cheaters) || !share(a.lie) || !(0.0..=1.0).contains(&a.haste) {
            return bad("adversary", "cheaters, lie and haste are shares, 0 to 1");
        }
        let j = &self.jobs;
        if !(j.per_hour >= 0.0 && j.per_hour <= 1e7) {
            return bad("jobs.per_hour", "must be 0 to 10,000,000");
        }
        if j.tasks[0] == 0 || j.tasks[0] > j.tasks[1] || j.tasks[1] > 10_000_000 {
            return bad(
                "jobs.tasks",
                "must be [least, most] with 1 <= least <= most <= 10,000,000",
            );
        }
        if !(j.task_seconds[0] > 0.0 && j.task_seconds[0] <= j.task_seconds[1]) {
            return bad(
                "jobs.task_seconds",
                "must be [least, most] with 0 < least <= most",
            );
        }
        if j.hosts_per_job == 0 {
            return bad("jobs.hosts_per_job", "must be at least 1");
        }
        if j.verify.is_empty() {
            return bad("jobs.verify", "names at least one setting");
        }
        if let Some(v) = j.verify.iter().find(|v| policy(v).is_none()) {
            return Err(ScenarioError::Invalid {
                field: "jobs.verify",
                why: format!("unknown setting {v:?}: use {}", SETTINGS.join(", ")),
            });
        }
        let named = self
            .expect
            .no_wrong
            .iter()
            .chain(self.expect.wrong_below.keys());
        if let Some(v) = named.clone().find(|v| !j.verify.contains(v)) {
            return Err(ScenarioError::Invalid {
                field: "expect",
                why: format!("{v:?} is not one of jobs.verify"),
            });
        }
        if !(self.dht.lookups_per_hour >= 0.0 && self.dht.lookups_per_hour <= 1e8) {
            return bad("dht.lookups_per_hour", "must be 0 to 100,000,000");
        }
        if self.dht.keys > 1_000_000 {
            return bad("dht.keys", "must be at most 1,000,000");
        }
        if self.expect.lookup_success.is_some_and(|x| !share(x)) {
            return bad("expect.lookup_success", "is a share, 0 to 1");
        }
        if !share(self.faults.slow) {
            return bad("faults.slow", "is a share, 0 to 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_names_only_what_it_changes_and_bad_ones_say_where() {
        let s = Scenario::parse("name = \"x\"\n[pool]\nhosts = 50\n").expect("parses");
        assert_eq!(s.pool.hosts, 50);
        assert_eq!(s.jobs.hosts_per_job, 64);
        let e = Scenario::parse("name = \"x\"\n[pool]\nhostz = 5\n").expect_err("unknown key");
        assert!(e.to_string().contains("hostz"), "{e}");
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = Scenario::parse("name = \"x\"\n[jobs]\nverify = [\"magic\"]\n").expect_err("bad");
        assert!(e.to_string().starts_with("jobs.verify"), "{e}");
        let e = Scenario::parse("name = \"x\"\n[pool]\nslots = [3, 2]\n").expect_err("bad");
        assert!(e.to_string().starts_with("pool.slots"), "{e}");
        for s in SETTINGS {
            assert!(policy(s).is_some(), "{s}");
        }
    }
}
