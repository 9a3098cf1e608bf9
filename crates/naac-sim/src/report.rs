//! What a run found: its figures, the trace hash that fixes it, and every invariant it
//! broke, with the event index to replay it to.

use serde::Serialize;

/// An invariant broken at an event.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Violation {
    /// The event's index (1-based): `naac sim SCENARIO --seed N --stop-at EVENT` replays
    /// the run to it.
    pub event: u64,
    pub at_ms: u64,
    pub what: String,
}

/// How one verification setting fared.
#[derive(Clone, Debug, Serialize)]
pub struct SettingFigures {
    pub name: String,
    pub jobs: u64,
    pub finished: u64,
    /// Tasks accepted, right or wrong, in finished jobs.
    pub accepted: u64,
    /// Tasks accepted with a wrong answer.
    pub wrong: u64,
    pub failed: u64,
    /// Runs started for those jobs (copies, retries and speculation included).
    pub runs: u64,
}

impl SettingFigures {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            jobs: 0,
            finished: 0,
            accepted: 0,
            wrong: 0,
            failed: 0,
            runs: 0,
        }
    }

    /// Share of accepted tasks whose answer was wrong.
    pub fn wrong_rate(&self) -> f64 {
        if self.accepted == 0 {
            0.0
        } else {
            self.wrong as f64 / self.accepted as f64
        }
    }

    /// Runs per accepted or failed task: what the setting costs.
    pub fn runs_per_task(&self) -> f64 {
        let done = self.accepted + self.failed;
        if done == 0 {
            0.0
        } else {
            self.runs as f64 / done as f64
        }
    }
}

/// How the DHT's lookups fared.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DhtFigures {
    pub nodes: u32,
    /// log2 of the nodes: the scale hop counts are read against.
    pub log2_nodes: f64,
    pub lookups: u64,
    /// Lookups that reached a live holder of the record.
    pub found: u64,
    /// Rounds of α queries until found (mean, and the most any took).
    pub mean_rounds: f64,
    pub max_rounds: u32,
    /// Nodes asked per lookup, and of those, how many had left.
    pub mean_queried: f64,
    pub mean_timeouts: f64,
    /// Records placed (publishing and republishing).
    pub published: u64,
}

impl DhtFigures {
    pub fn success(&self) -> f64 {
        if self.lookups == 0 {
            0.0
        } else {
            self.found as f64 / self.lookups as f64
        }
    }
}

/// The outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub hosts: u32,
    pub sim_hours: f64,
    /// Events processed.
    pub events: u64,
    /// BLAKE3 of every event and scheduler command in order: the same scenario and seed
    /// always give the same hash.
    pub trace: String,
    pub jobs_arrived: u64,
    pub jobs_finished: u64,
    pub jobs_unfinished: u64,
    pub runs: u64,
    pub runs_lost: u64,
    /// Commands the schedulers issued.
    pub decisions: u64,
    /// Hosts that left.
    pub departures: u64,
    pub online_end: u64,
    pub cheater_share: f64,
    pub settings: Vec<SettingFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dht: Option<DhtFigures>,
    pub violations: Vec<Violation>,
    /// With `--stop-at`: the events before the stop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<String>,
}

impl Report {
    /// Departures per hour as a share of the hosts online at the end.
    pub fn churn_per_hour(&self) -> f64 {
        if self.sim_hours <= 0.0 || self.online_end == 0 {
            return 0.0;
        }
        self.departures as f64 / self.sim_hours / self.online_end as f64
    }
}
