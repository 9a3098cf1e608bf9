//! The models a run draws from, each with its source.
//!
//! - **Sessions and churn.** A host stays online for a Weibull-distributed session and away
//!   for a Weibull-distributed while. Stutzbach and Rejaie, "Understanding Churn in
//!   Peer-to-Peer Networks" (IMC 2006), found session lengths in Gnutella, Kad and
//!   BitTorrent heavy-tailed and fit by Weibull with shape 0.34–0.59, not by the
//!   exponential most simulators assume; the default shape is 0.5 (`pool.session_shape`).
//!   Some departures are graceful (connections close, the requester hears at once), the
//!   rest crashes found only when a lease lapses (`pool.graceful`).
//! - **Speeds.** Compute scores spread log-normally around 1 (`pool.speed_sigma`): Anderson
//!   and Reed, "Celebrating Diversity in Volunteer Computing" (HICSS 2009), show BOINC hosts'
//!   speeds spread over an order of magnitude with a long upper tail. A share of hosts runs
//!   ten times slower than its score (`faults.slow`).
//! - **Latency.** Round trips between six regions ([`rtt`]), rounded from public
//!   inter-region ping tables (WonderNetwork's global ping statistics); within a region,
//!   20 ms for the last mile of home connections.
//! - **Cheaters.** A share of hosts (`adversary.cheaters`) lies on a share of its results
//!   (`adversary.lie`), returning early (`adversary.haste`); colluders return the same
//!   wrong answer, so their copies agree (`adversary.strategy`).

use crate::rng::Rng;
use crate::scenario::Scenario;

/// Regions the latency table knows.
pub const REGIONS: usize = 6;

/// Round trips in milliseconds between North America east, North America west, Europe,
/// South America, Asia and Oceania.
const RTT: [[u16; REGIONS]; REGIONS] = [
    [20, 70, 90, 130, 200, 220],
    [70, 20, 150, 180, 130, 150],
    [90, 150, 20, 200, 220, 280],
    [130, 180, 200, 20, 300, 320],
    [200, 130, 220, 300, 20, 120],
    [220, 150, 280, 320, 120, 20],
];

/// The round trip between two regions, in milliseconds.
pub fn rtt(a: u8, b: u8) -> u64 {
    u64::from(RTT[usize::from(a) % REGIONS][usize::from(b) % REGIONS])
}

/// One host. Small on purpose: a million of these must fit in well under a gigabyte.
#[derive(Clone, Debug)]
pub struct Host {
    /// Compute score (1 = the reference machine); slow hosts have a tenth of it.
    pub speed: f32,
    pub slots: u8,
    pub region: u8,
    pub cheater: bool,
    pub up: bool,
    /// Counts its sessions: an event scheduled in an earlier session is stale.
    pub session: u32,
    /// Runs going now.
    pub running: u16,
}

impl Host {
    /// Host `i` of a scenario's pool, drawn from `rng`.
    pub fn draw(s: &Scenario, rng: &mut Rng) -> Host {
        let p = &s.pool;
        let mut speed = rng.lognormal(1.0, p.speed_sigma).clamp(0.01, 100.0);
        if rng.chance(s.faults.slow) {
            speed /= 10.0;
        }
        let span = u64::from(p.slots[1] - p.slots[0]) + 1;
        Host {
            speed: speed as f32,
            slots: (p.slots[0] + rng.below(span) as u32).min(255) as u8,
            region: rng.below(u64::from(p.regions)) as u8,
            cheater: rng.chance(s.adversary.cheaters),
            up: false,
            session: 0,
            running: 0,
        }
    }
}

/// The right answer's digest for a task of a job (what an honest host returns).
pub fn right(job: u32, task: u32) -> naac_types::ContentId {
    digest(job, task, 0)
}

/// A wrong answer: colluders share one per task (`who` = 1), lone cheaters each have their
/// own (`who` = 2 + host).
pub fn wrong(job: u32, task: u32, who: u64) -> naac_types::ContentId {
    digest(job, task, who.max(1))
}

fn digest(job: u32, task: u32, who: u64) -> naac_types::ContentId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&job.to_le_bytes());
    b[4..8].copy_from_slice(&task.to_le_bytes());
    b[8..16].copy_from_slice(&who.to_le_bytes());
    b[31] = 0x5a;
    naac_types::ContentId(b)
}
