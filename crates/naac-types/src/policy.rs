//! The owner's usage policy: `policy.toml` in the data dir, the rules under which an owner
//! lends a machine (in the spirit of BOINC's computing preferences and HTCondor's desktop
//! policy). Every key is optional and a missing file means the defaults, which suit a
//! desktop: all cores, only while the owner is away, off on battery.
//!
//! ```toml
//! max_slots = 4                # tasks at once; default: one per core
//! max_cpu_percent = 50         # share of the whole machine naac may use over time (1-100; 100)
//! idle_only = true             # run only while the owner is away ... (default true)
//! idle_after = "5m"            # ... for this long (default "5m")
//! idle_cpu_percent = 25        # other programs' cpu load above this = owner active (1-100; 25)
//! time_zone = "Europe/Berlin"  # IANA name the windows are read in; default: the system's zone
//! max_task_runtime = "2h"      # longest wall-clock limit a task may ask for; default: none
//! max_task_memory = "2GiB"     # largest memory limit a task may ask for; default: none
//! storage_quota = "10GiB"      # disk for tasks' data (default "10GiB")
//! storage_dir = "/srv/naac"    # where that data lives (absolute); default: the data dir
//! min_free_disk = "1GiB"       # pause when its disk has less free space (0: never; "1GiB")
//! allow = ["12D3KooW..."]      # if not empty: only these peers or users
//! deny = ["12D3KooW..."]       # never these; deny wins over allow
//! trust_tokens_from = ["12D3KooW..."]  # users whose pool tokens let holders in (none)
//! min_battery_percent = 20     # on battery, pause below this charge (0-100; 20)
//! on_ac_only = true            # pause whenever the machine runs on battery (default true)
//! min_price = 0                # least credits per giga-fuel it asks; > 0: no unpaid work (0)
//! pause_grace = "2m"           # a task paused longer than this is handed back (default "2m")
//! min_store_price = 0          # least credits per GiB-day for storage (--store) (0)
//! store_when_paused = true     # paused, still answer reads and cheap audits (default true)
//! labels = ["zone=eu"]         # what this host is; jobs may require labels (none)
//!
//! [[windows]]                  # hours, in the owner's civil time
//! days = "mon-fri"             # mon..sun, ranges (mon-fri, fri-mon), lists (sat,sun), daily
//! from = "18:00"               # HH:MM, 24-hour clock
//! to = "08:00"                 # "24:00" = midnight; to < from crosses midnight
//! action = "allow"             # "allow", "deny", or price = N instead
//!
//! [[windows]]
//! days = "sat,sun"             # from and to left out: the whole day
//! action = "allow"
//!
//! [[windows]]
//! days = "daily"
//! from = "17:00"
//! to = "21:00"
//! price = 2.0                  # minimum price multiplier here (at least 1)
//! ```
//!
//! Durations are strings like `"30s"`, `"5m"`, `"1h30m"` (or an integer of seconds) and are
//! kept to the millisecond; sizes are strings like `"2GiB"` (or an integer of bytes). Peer
//! ids are base58 (`12D3KooW...`); an entry matches a requester's session peer id or its
//! attested user id.
//!
//! **Windows.** If any `allow` window exists, work runs only inside one of them; inside a
//! `deny` window it never runs; `price` windows set the minimum price multiplier (the largest
//! of those that match, else 1). A window whose `to` is before its `from` crosses midnight
//! and belongs to the day it starts on (`days = "fri"`, 22:00–02:00 covers Saturday 01:00).
//! Windows are read in the civil time of `time_zone`, so they follow daylight saving time:
//! a 01:00–03:00 window lasts one hour on the night the clocks spring forward and three on
//! the night they fall back.
//!
//! [`Policy::evaluate`] turns the policy and the current facts (idle time, power, storage)
//! into a [`Decision`]: accept work now, or the reasons not to.

mod editor;
mod evaluator;
mod reader;
mod text;

pub use editor::set_key;

use crate::diag::FileError;
use crate::host::HostState;
use crate::units::format_size;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use text::format_duration;

/// Every top-level key of `policy.toml`, in the order `to_toml` writes them.
pub const KEYS: &[&str] = &[
    "max_slots",
    "max_cpu_percent",
    "idle_only",
    "idle_after",
    "idle_cpu_percent",
    "time_zone",
    "max_task_runtime",
    "max_task_memory",
    "storage_quota",
    "storage_dir",
    "min_free_disk",
    "allow",
    "deny",
    "trust_tokens_from",
    "min_battery_percent",
    "on_ac_only",
    "min_price",
    "pause_grace",
    "min_store_price",
    "store_when_paused",
    "labels",
    "windows",
];

/// Most labels one host carries.
pub const MAX_LABELS: usize = 64;

/// Most windows one policy may have.
pub const MAX_WINDOWS: usize = 100;
/// Most entries in `allow` or `deny`.
pub const MAX_PEERS: usize = 10_000;

const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(5 * 60);
/// `storage_quota` when the policy names none.
pub const DEFAULT_STORAGE_QUOTA: u64 = 10 << 30;
/// `min_free_disk` when the policy names none.
pub const DEFAULT_MIN_FREE_DISK: u64 = 1 << 30;
const DEFAULT_PAUSE_GRACE: Duration = Duration::from_secs(2 * 60);

/// The owner's rules for lending this machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Tasks at once; `None`: one per core.
    pub max_slots: Option<u32>,
    /// Share of the whole machine naac may use over time (1–100).
    pub max_cpu_percent: u8,
    /// Work only while the owner is away.
    pub idle_only: bool,
    /// How long the owner must have been away before work starts.
    pub idle_after: Duration,
    /// Load from other programs above this (percent of the machine) means the owner is active.
    pub idle_cpu_percent: u8,
    /// Allowed, forbidden and priced hours, in file order.
    pub windows: Vec<Window>,
    /// IANA zone the windows are read in; `None`: the system's zone.
    pub time_zone: Option<String>,
    /// Longest wall-clock limit a task may ask for.
    pub max_task_runtime: Option<Duration>,
    /// Largest memory limit a task may ask for (bytes).
    pub max_task_memory: Option<u64>,
    /// Disk naac may use for tasks' data (bytes).
    pub storage_quota: u64,
    /// Where that data lives; `None`: the data dir.
    pub storage_dir: Option<PathBuf>,
    /// Pause when a file system holding that data (task scratch, module cache) has less free
    /// space than this (bytes; 0: never): the owner's disk does not fill because of naac,
    /// whatever a guest writes.
    pub min_free_disk: u64,
    /// If not empty, only these peer or user ids may use the machine.
    pub allow: Vec<String>,
    /// These peer or user ids may never use it; wins over `allow`.
    pub deny: Vec<String>,
    /// Users (their ids) whose pool tokens let a requester in (`naac token mint pool`):
    /// with any, the machine serves only requesters on `allow` or with such a token.
    pub trust_tokens_from: Vec<String>,
    /// Off mains power, pause below this battery charge (0–100).
    pub min_battery_percent: u8,
    /// Pause whenever the machine runs on battery.
    pub on_ac_only: bool,
    /// Least price the owner takes, in credits per giga-fuel (before window multipliers).
    pub min_price: u64,
    /// A task paused longer than this is handed back to its requester.
    pub pause_grace: Duration,
    /// Least price for storage, in credits per GiB-day (`naac node --store`).
    pub min_store_price: u64,
    /// While the machine is paused for its owner, storage hosts still answer reads and
    /// chunk audits (cheap; whole-shard proofs wait); `false`: they answer nothing.
    pub store_when_paused: bool,
    /// What the owner says this host is, e.g. "zone=eu": jobs may require labels.
    pub labels: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_slots: None,
            max_cpu_percent: 100,
            idle_only: true,
            idle_after: DEFAULT_IDLE_AFTER,
            idle_cpu_percent: 25,
            windows: Vec::new(),
            time_zone: None,
            max_task_runtime: None,
            max_task_memory: None,
            storage_quota: DEFAULT_STORAGE_QUOTA,
            storage_dir: None,
            min_free_disk: DEFAULT_MIN_FREE_DISK,
            allow: Vec::new(),
            deny: Vec::new(),
            trust_tokens_from: Vec::new(),
            min_battery_percent: 20,
            on_ac_only: true,
            min_price: 0,
            pause_grace: DEFAULT_PAUSE_GRACE,
            min_store_price: 0,
            store_when_paused: true,
            labels: Vec::new(),
        }
    }
}

/// A span of hours on some days of the week, and what it does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Bit 0 = Monday .. bit 6 = Sunday: the days the window starts on.
    pub days: u8,
    /// Start, in minutes after midnight (0..1440).
    pub from: u16,
    /// End, in minutes after midnight (1..=1440); before `from`: ends the next day.
    pub to: u16,
    pub action: WindowAction,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WindowAction {
    /// Work may run here (and, once any allow window exists, only in allow windows).
    Allow,
    /// Work never runs here.
    Deny,
    /// Minimum price multiplier here (at least 1).
    Price(f64),
}

/// What the windows say at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowState {
    /// Work may run now, as far as the windows go.
    pub allowed: bool,
    /// Minimum price multiplier now (1 outside priced windows).
    pub price_multiplier: f64,
    /// Why work may not run, e.g. "outside its allowed hours (mon-fri 18:00-08:00)".
    pub reason: Option<String>,
    /// When `allowed` or the multiplier next changes, looking up to 8 days ahead.
    pub next_change: Option<Timestamp>,
}

/// What the provider knows about the machine right now.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub now: Timestamp,
    /// How long the owner has been away; `None`: active now (or never idle since start).
    pub owner_idle_for: Option<Duration>,
    /// `None`: unknown (no power information).
    pub on_ac: Option<bool>,
    /// `None`: no battery, or unknown.
    pub battery_percent: Option<u8>,
    /// Bytes of tasks' data on disk.
    pub storage_used: u64,
    /// Free bytes on the file system holding tasks' data; `None`: unknown.
    pub disk_free: Option<u64>,
    /// `Some(None)`: paused by the owner until resumed; `Some(Some(t))`: until `t`.
    pub manual_pause: Option<Option<Timestamp>>,
}

/// Whether to take work now, and if not, every reason why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// `reasons` is empty.
    pub accept: bool,
    pub reasons: Vec<PauseReason>,
    /// Minimum price multiplier of the current window.
    pub price_multiplier: f64,
}

impl Decision {
    /// The host state to publish: accepting, or paused with the reasons joined.
    pub fn host_state(&self) -> HostState {
        if self.reasons.is_empty() {
            HostState::Accepting
        } else {
            HostState::Paused(
                self.reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        }
    }
}

/// One reason not to run work now.
#[derive(Clone, Debug, PartialEq)]
pub enum PauseReason {
    /// The owner paused naac, until a time or until resumed.
    Manual {
        until: Option<Timestamp>,
    },
    /// The owner is active, or has not been away long enough.
    OwnerActive {
        idle_for: Option<Duration>,
        needed: Duration,
    },
    /// A window forbids work now; the text says which.
    Window(String),
    OnBattery,
    BatteryLow {
        percent: u8,
        min: u8,
    },
    StorageQuota {
        used: u64,
        quota: u64,
    },
    DiskLow {
        free: u64,
        floor: u64,
    },
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseReason::Manual { until: None } => f.write_str("paused by its owner"),
            PauseReason::Manual { until: Some(t) } => {
                // Shown to the owner, in this machine's zone; the date only when not soon.
                let local = t.to_zoned(TimeZone::system());
                let ahead = t.duration_since(Timestamp::now());
                let format = if ahead < SignedDuration::from_hours(20) {
                    "%H:%M"
                } else {
                    "%Y-%m-%d %H:%M"
                };
                write!(f, "paused by its owner until {}", local.strftime(format))
            }
            PauseReason::OwnerActive { idle_for: None, .. } => f.write_str("owner active"),
            PauseReason::OwnerActive {
                idle_for: Some(d),
                needed,
            } => write!(
                f,
                "owner idle {} of the {} it needs",
                format_duration(Duration::from_secs(d.as_secs())),
                format_duration(*needed)
            ),
            PauseReason::Window(reason) => f.write_str(reason),
            PauseReason::OnBattery => f.write_str("on battery"),
            PauseReason::BatteryLow { percent, min } => write!(f, "battery {percent}% < {min}%"),
            PauseReason::StorageQuota { used, quota } => write!(
                f,
                "storage quota full ({} of {})",
                format_size(*used),
                format_size(*quota)
            ),
            PauseReason::DiskLow { free, floor } => write!(
                f,
                "disk nearly full ({} free < {})",
                format_size(*free),
                format_size(*floor)
            ),
        }
    }
}

/// A policy file that could not be used, with where and what to do about it.
pub type PolicyError = FileError;

#[cfg(test)]
mod tests;
