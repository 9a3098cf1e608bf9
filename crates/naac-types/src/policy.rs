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
//! min_battery_percent = 20     # on battery, pause below this charge (0-100; 20)
//! on_ac_only = true            # pause whenever the machine runs on battery (default true)
//! min_price = 0                # least credits per giga-fuel it asks; > 0: no unpaid work (0)
//! pause_grace = "2m"           # a task paused longer than this is handed back (default "2m")
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

use crate::diag::{FileError, FileKind, Source, file_error};
use crate::host::HostState;
use crate::units::{format_size, parse_duration, parse_size};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

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
    "min_battery_percent",
    "on_ac_only",
    "min_price",
    "pause_grace",
    "windows",
];

/// The keys of one `[[windows]]` table.
const WINDOW_KEYS: &[&str] = &["days", "from", "to", "action", "price"];

/// Most windows one policy may have.
pub const MAX_WINDOWS: usize = 100;
/// Most entries in `allow` or `deny`.
pub const MAX_PEERS: usize = 10_000;
/// How far ahead [`WindowState::next_change`] looks.
const LOOKAHEAD: SignedDuration = SignedDuration::from_hours(8 * 24);

const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(5 * 60);
const DEFAULT_STORAGE_QUOTA: u64 = 10 << 30;
const DEFAULT_MIN_FREE_DISK: u64 = 1 << 30;
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
    /// Off mains power, pause below this battery charge (0–100).
    pub min_battery_percent: u8,
    /// Pause whenever the machine runs on battery.
    pub on_ac_only: bool,
    /// Least price the owner takes, in credits per giga-fuel (before window multipliers).
    pub min_price: u64,
    /// A task paused longer than this is handed back to its requester.
    pub pause_grace: Duration,
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
            min_battery_percent: 20,
            on_ac_only: true,
            min_price: 0,
            pause_grace: DEFAULT_PAUSE_GRACE,
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

impl Window {
    /// Whether the window covers `minute` (after midnight) of weekday `wd` (0 = Monday).
    fn covers(&self, wd: u8, minute: u16) -> bool {
        let today = self.days & (1 << wd) != 0;
        let yesterday = self.days & (1 << ((wd + 6) % 7)) != 0;
        if self.from < self.to {
            today && self.from <= minute && minute < self.to
        } else {
            (today && minute >= self.from) || (yesterday && minute < self.to)
        }
    }

    /// e.g. `mon-fri 18:00-08:00`.
    fn hours(&self) -> String {
        format!(
            "{} {}-{}",
            format_days(self.days),
            format_time(self.from),
            format_time(self.to)
        )
    }
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

impl Policy {
    /// Reads the policy file; a file that does not exist means the defaults.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        match std::fs::read_to_string(path) {
            Ok(src) => Self::parse(path, &src),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
            Err(e) => Err(file_error(
                FileKind::Policy,
                path,
                format!("cannot read: {e}"),
                Some("check the file's permissions; without the file the defaults apply".into()),
            )),
        }
    }

    /// Parses policy file text; `path` only names the file in errors.
    pub fn parse(path: &Path, src: &str) -> Result<Policy, PolicyError> {
        let cx = Ctx(Source {
            kind: FileKind::Policy,
            file: path,
            src,
        });
        let doc = DeTable::parse(src).map_err(|e| {
            cx.err(
                e.span(),
                None,
                e.message().trim().to_string(),
                Some("policy.toml is TOML: key = value lines, then [[windows]] tables".into()),
            )
        })?;
        let mut p = Policy::default();
        for (key, value) in doc.get_ref().iter() {
            let k: &str = key.get_ref();
            match k {
                "max_slots" => {
                    p.max_slots =
                        Some(cx.int(value, k, 1, u32::MAX.into(), "max_slots = 4")? as u32)
                }
                "max_cpu_percent" => {
                    p.max_cpu_percent = cx.int(value, k, 1, 100, "max_cpu_percent = 50")? as u8
                }
                "idle_only" => p.idle_only = cx.boolean(value, k)?,
                "idle_after" => p.idle_after = cx.duration(value, k, "idle_after = \"5m\"")?,
                "idle_cpu_percent" => {
                    p.idle_cpu_percent = cx.int(value, k, 1, 100, "idle_cpu_percent = 25")? as u8
                }
                "windows" => p.windows = cx.windows(value)?,
                "time_zone" => {
                    let name = cx.string(value, k, "time_zone = \"Europe/Berlin\"")?;
                    if let Err(e) = TimeZone::get(name) {
                        return Err(cx.err(
                            Some(value.span()),
                            k,
                            format!("unknown time zone \"{name}\": {e}"),
                            Some(
                                "use an IANA name like \"Europe/Berlin\" or \"America/New_York\"; \
                                 leave it out to use the system's zone"
                                    .into(),
                            ),
                        ));
                    }
                    p.time_zone = Some(name.to_string());
                }
                "max_task_runtime" => {
                    let d = cx.duration(value, k, "max_task_runtime = \"2h\"")?;
                    if d.is_zero() {
                        return Err(cx.err(
                            Some(value.span()),
                            k,
                            "must be longer than zero",
                            Some("leave it out for no limit, or write e.g. \"2h\"".into()),
                        ));
                    }
                    p.max_task_runtime = Some(d);
                }
                "max_task_memory" => {
                    p.max_task_memory = Some(cx.size(value, k, "max_task_memory = \"2GiB\"")?)
                }
                "storage_quota" => {
                    p.storage_quota = cx.size(value, k, "storage_quota = \"10GiB\"")?
                }
                "min_free_disk" => {
                    p.min_free_disk = cx.size_or_zero(value, k, "min_free_disk = \"1GiB\"")?
                }
                "storage_dir" => {
                    let dir = cx.string(value, k, "storage_dir = \"/srv/naac\"")?;
                    if !Path::new(dir).is_absolute() {
                        return Err(cx.err(
                            Some(value.span()),
                            k,
                            format!("\"{dir}\" is not an absolute path"),
                            Some(
                                "write the full path, e.g. \"/srv/naac\"; leave it out to use \
                                 the data dir"
                                    .into(),
                            ),
                        ));
                    }
                    p.storage_dir = Some(PathBuf::from(dir));
                }
                "allow" => p.allow = cx.peers(value, k)?,
                "deny" => p.deny = cx.peers(value, k)?,
                "min_battery_percent" => {
                    p.min_battery_percent =
                        cx.int(value, k, 0, 100, "min_battery_percent = 20")? as u8
                }
                "on_ac_only" => p.on_ac_only = cx.boolean(value, k)?,
                "min_price" => {
                    p.min_price = cx.int(value, k, 0, i64::MAX, "min_price = 10")? as u64
                }
                "pause_grace" => p.pause_grace = cx.duration(value, k, "pause_grace = \"2m\"")?,
                _ => return Err(cx.unknown_key(Some(key.span()), None, k, KEYS, "known keys")),
            }
        }
        Ok(p)
    }

    /// The zone windows are read in: `time_zone`, else the system's (UTC when unknown).
    pub fn tz(&self) -> TimeZone {
        self.time_zone
            .as_deref()
            .and_then(|name| TimeZone::get(name).ok())
            .unwrap_or_else(|| TimeZone::try_system().unwrap_or(TimeZone::UTC))
    }

    /// What the windows say at `now`, and when that next changes.
    pub fn window_state(&self, now: Timestamp) -> WindowState {
        let tz = self.tz();
        let (allowed, price_multiplier, reason) = self.windows_at(&tz, now);
        let next_change = self.next_change(&tz, now, allowed, price_multiplier);
        WindowState {
            allowed,
            price_multiplier,
            reason,
            next_change,
        }
    }

    /// Whether to take work given `facts`, with every reason not to.
    pub fn evaluate(&self, facts: &Facts) -> Decision {
        let mut reasons = Vec::new();
        match facts.manual_pause {
            Some(None) => reasons.push(PauseReason::Manual { until: None }),
            Some(Some(until)) if until > facts.now => {
                reasons.push(PauseReason::Manual { until: Some(until) })
            }
            _ => {}
        }
        if self.idle_only {
            match facts.owner_idle_for {
                Some(d) if d >= self.idle_after => {}
                idle_for => reasons.push(PauseReason::OwnerActive {
                    idle_for,
                    needed: self.idle_after,
                }),
            }
        }
        let tz = self.tz();
        let (allowed, price_multiplier, reason) = self.windows_at(&tz, facts.now);
        if !allowed {
            reasons.push(PauseReason::Window(reason.unwrap_or_default()));
        }
        if self.on_ac_only && facts.on_ac == Some(false) {
            reasons.push(PauseReason::OnBattery);
        }
        if let Some(percent) = facts.battery_percent
            && facts.on_ac != Some(true)
            && percent < self.min_battery_percent
        {
            reasons.push(PauseReason::BatteryLow {
                percent,
                min: self.min_battery_percent,
            });
        }
        if facts.storage_used >= self.storage_quota {
            reasons.push(PauseReason::StorageQuota {
                used: facts.storage_used,
                quota: self.storage_quota,
            });
        }
        if let Some(free) = facts.disk_free
            && free < self.min_free_disk
        {
            reasons.push(PauseReason::DiskLow {
                free,
                floor: self.min_free_disk,
            });
        }
        Decision {
            accept: reasons.is_empty(),
            reasons,
            price_multiplier,
        }
    }

    /// Whether a requester may use this machine: `peer` is its session peer id, `user` its
    /// attested user id. Either one on the deny list refuses it; with an allow list, one of
    /// them must be on it.
    pub fn peer_access(&self, peer: &str, user: Option<&str>) -> Result<(), String> {
        let named = |list: &[String]| {
            list.iter()
                .any(|id| id == peer || user.is_some_and(|u| u == id))
        };
        if named(&self.deny) {
            return Err("you are on its deny list".into());
        }
        if !self.allow.is_empty() && !named(&self.allow) {
            return Err("you are not on its allow list".into());
        }
        Ok(())
    }

    /// The effective policy as a policy file: every key, defaults filled in, unset optional
    /// keys as comments. Parses back to an equal policy.
    pub fn to_toml(&self) -> String {
        // Destructured so that a new field cannot be forgotten here.
        let Policy {
            max_slots,
            max_cpu_percent,
            idle_only,
            idle_after,
            idle_cpu_percent,
            windows,
            time_zone,
            max_task_runtime,
            max_task_memory,
            storage_quota,
            storage_dir,
            min_free_disk,
            allow,
            deny,
            min_battery_percent,
            on_ac_only,
            min_price,
            pause_grace,
        } = self;
        let s = |v: &str| toml_edit::Value::from(v).to_string();
        let duration = |d: &Duration| s(&format_duration(*d));
        let list = |ids: &[String]| {
            toml_edit::Value::Array(ids.iter().map(String::as_str).collect()).to_string()
        };
        let either = |set: bool, yes: &str, no: &str| if set { yes } else { no }.to_string();
        let system_zone = match TimeZone::try_system()
            .ok()
            .as_ref()
            .and_then(|tz| tz.iana_name())
        {
            Some(name) => format!("the system's zone ({name})"),
            None => "the system's zone".to_string(),
        };
        // (key, value or None when not set, comment)
        let lines: [(&str, Option<String>, String); 17] = [
            (
                "max_slots",
                max_slots.map(|n| n.to_string()),
                either(max_slots.is_some(), "tasks at once", "one task per core"),
            ),
            (
                "max_cpu_percent",
                Some(max_cpu_percent.to_string()),
                "share of the whole machine naac may use".into(),
            ),
            (
                "idle_only",
                Some(idle_only.to_string()),
                "run only while the owner is away".into(),
            ),
            (
                "idle_after",
                Some(duration(idle_after)),
                "... for this long".into(),
            ),
            (
                "idle_cpu_percent",
                Some(idle_cpu_percent.to_string()),
                "other programs' cpu load above this: owner active".into(),
            ),
            (
                "time_zone",
                time_zone.as_deref().map(s),
                match time_zone {
                    Some(_) => "the windows are read in this zone".into(),
                    None => system_zone,
                },
            ),
            (
                "max_task_runtime",
                max_task_runtime.as_ref().map(duration),
                either(
                    max_task_runtime.is_some(),
                    "longest time limit a task may ask for",
                    "tasks may ask for any time limit",
                ),
            ),
            (
                "max_task_memory",
                max_task_memory.map(|m| size_value(m).to_string()),
                either(
                    max_task_memory.is_some(),
                    "largest memory limit a task may ask for",
                    "tasks may ask for any memory limit",
                ),
            ),
            (
                "storage_quota",
                Some(size_value(*storage_quota).to_string()),
                "disk for tasks' data".into(),
            ),
            (
                "storage_dir",
                storage_dir.as_ref().map(|d| s(&d.to_string_lossy())),
                either(
                    storage_dir.is_some(),
                    "where tasks' data lives",
                    "tasks' data lives in the data dir",
                ),
            ),
            (
                "min_free_disk",
                Some(size_value(*min_free_disk).to_string()),
                "pause when its disk has less free space (0: never)".into(),
            ),
            (
                "allow",
                Some(list(allow)),
                either(
                    allow.is_empty(),
                    "empty: every peer not denied",
                    "only these peers or users",
                ),
            ),
            (
                "deny",
                Some(list(deny)),
                "never these peers or users".into(),
            ),
            (
                "min_battery_percent",
                Some(min_battery_percent.to_string()),
                "on battery, pause below this charge".into(),
            ),
            (
                "on_ac_only",
                Some(on_ac_only.to_string()),
                "pause whenever on battery".into(),
            ),
            (
                "min_price",
                Some(min_price.to_string()),
                "least credits per giga-fuel".into(),
            ),
            (
                "pause_grace",
                Some(duration(pause_grace)),
                "a task paused longer is handed back".into(),
            ),
        ];
        let mut out =
            String::from("# naac owner policy: the effective values, defaults filled in\n\n");
        let mut line = |text: String, note: &str| out.push_str(&format!("{text:<28} # {note}\n"));
        for (key, value, note) in lines {
            match value {
                Some(v) => line(format!("{key} = {v}"), &note),
                None => line(format!("# {key}: not set"), &note),
            }
        }
        if windows.is_empty() {
            line("# windows: not set".into(), "work at any hour");
        }
        for w in windows {
            let action = match w.action {
                WindowAction::Allow => "action = \"allow\"".to_string(),
                WindowAction::Deny => "action = \"deny\"".to_string(),
                WindowAction::Price(m) => format!("price = {}", toml_edit::Value::from(m)),
            };
            out.push_str(&format!(
                "\n[[windows]]\ndays = {}\nfrom = {}\nto = {}\n{action}\n",
                s(&format_days(w.days)),
                s(&format_time(w.from)),
                s(&format_time(w.to)),
            ));
        }
        out
    }

    /// (allowed, price multiplier, reason) at `t`.
    fn windows_at(&self, tz: &TimeZone, t: Timestamp) -> (bool, f64, Option<String>) {
        let dt = tz.to_datetime(t);
        let wd = dt.weekday().to_monday_zero_offset() as u8;
        let minute = dt.hour() as u16 * 60 + dt.minute() as u16;
        let mut allows = Vec::new();
        let mut in_allow = false;
        let mut deny = None;
        let mut price = 1.0f64;
        for w in &self.windows {
            let covers = w.covers(wd, minute);
            match w.action {
                WindowAction::Allow => {
                    allows.push(w);
                    in_allow |= covers;
                }
                WindowAction::Deny if covers && deny.is_none() => deny = Some(w),
                WindowAction::Deny => {}
                WindowAction::Price(m) if covers => price = price.max(m),
                WindowAction::Price(_) => {}
            }
        }
        if let Some(w) = deny {
            return (
                false,
                price,
                Some(format!("in a no-work window ({})", w.hours())),
            );
        }
        if !allows.is_empty() && !in_allow {
            let hours = allows
                .iter()
                .map(|w| w.hours())
                .collect::<Vec<_>>()
                .join(", ");
            return (
                false,
                price,
                Some(format!("outside its allowed hours ({hours})")),
            );
        }
        (true, price, None)
    }

    /// The first instant after `now` (within the lookahead) where the windows' verdict or
    /// multiplier differs from the given one.
    ///
    /// The verdict depends only on the civil weekday and minute, which changes at window
    /// edges and at the zone's transitions. So the candidates are every instant a window edge
    /// (or midnight) happens in civil time, both of them when a fold repeats it, plus every
    /// transition; the answer is the first candidate where the verdict differs.
    fn next_change(
        &self,
        tz: &TimeZone,
        now: Timestamp,
        allowed: bool,
        price: f64,
    ) -> Option<Timestamp> {
        if self.windows.is_empty() {
            return None;
        }
        let limit = now.checked_add(LOOKAHEAD).unwrap_or(Timestamp::MAX);
        let mut edges: Vec<u16> = vec![0];
        for w in &self.windows {
            edges.push(w.from % 1440);
            edges.push(w.to % 1440);
        }
        edges.sort_unstable();
        edges.dedup();
        let mut candidates = Vec::new();
        let today = tz.to_datetime(now).date();
        let mut day = today.yesterday().unwrap_or(today);
        // Yesterday through 9 days ahead covers the lookahead whatever the offsets.
        for _ in 0..11 {
            for &e in &edges {
                let civil = day.at((e / 60) as i8, (e % 60) as i8, 0, 0);
                let amb = tz.to_ambiguous_timestamp(civil);
                for t in [amb.earlier(), amb.later()].into_iter().flatten() {
                    if t > now && t <= limit {
                        candidates.push(t);
                    }
                }
            }
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        candidates.extend(
            tz.following(now)
                .map(|tr| tr.timestamp())
                .take_while(|t| *t <= limit),
        );
        candidates.sort_unstable();
        candidates.dedup();
        candidates.into_iter().find(|&t| {
            let (a, p, _) = self.windows_at(tz, t);
            a != allowed || p != price
        })
    }
}

/// Sets one top-level key of the policy file text `src` to `value` (parsed according to the
/// key's type; `none` or empty removes it, back to the default), keeping comments and
/// layout. Returns the new text, which has passed [`Policy::parse`]; `path` only names the
/// file in errors.
pub fn set_key(src: &str, path: &Path, key: &str, value: &str) -> Result<String, PolicyError> {
    let cx = Source {
        kind: FileKind::Policy,
        file: path,
        src,
    };
    if key == "windows" {
        return Err(cx.err(
            None,
            key,
            "windows cannot be set from the command line",
            Some("edit the file: naac policy show --path".into()),
        ));
    }
    if !KEYS.contains(&key) {
        return Err(cx.unknown_key(None, None, key, KEYS, "known keys"));
    }
    let mut doc: toml_edit::DocumentMut = src.parse().map_err(|e: toml_edit::TomlError| {
        cx.err(
            e.span(),
            None,
            e.message().trim(),
            Some("fix the file first: naac policy show --path".into()),
        )
    })?;
    let v = value.trim();
    let table = doc.as_table_mut();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        table.remove(key);
    } else {
        let new = typed_value(key, v).map_err(|(m, h)| cx.err(None, key, m, Some(h)))?;
        match table.get_mut(key) {
            Some(toml_edit::Item::Value(old)) => {
                // Keep the old value's surroundings (e.g. a trailing comment).
                let decor = old.decor().clone();
                *old = new;
                *old.decor_mut() = decor;
            }
            Some(item) => *item = toml_edit::Item::Value(new),
            None => {
                table.insert(key, toml_edit::Item::Value(new));
            }
        }
    }
    let out = doc.to_string();
    Policy::parse(path, &out).map_err(|mut e| {
        // The value given is at fault, not a line of the file the owner has.
        let ours = e
            .field
            .as_deref()
            .is_some_and(|f| f == key || f.starts_with(&format!("{key}[")));
        if ours {
            e.line = None;
        }
        e
    })?;
    Ok(out)
}

/// `value` (from the command line) as the TOML value `key` takes; Err: (message, hint).
fn typed_value(key: &str, v: &str) -> Result<toml_edit::Value, (String, String)> {
    let example = example(key);
    let hint = || format!("e.g. {example}");
    match key {
        "max_slots"
        | "max_cpu_percent"
        | "idle_cpu_percent"
        | "min_battery_percent"
        | "min_price" => {
            let digits = v.strip_suffix('%').unwrap_or(v).trim().replace('_', "");
            let n: i64 = digits
                .parse()
                .map_err(|_| (format!("\"{v}\" is not a whole number"), hint()))?;
            Ok(n.into())
        }
        "idle_only" | "on_ac_only" => match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true.into()),
            "false" | "no" | "off" => Ok(false.into()),
            _ => Err((
                format!("\"{v}\" is not true or false"),
                "use true or false (or yes/no, on/off)".into(),
            )),
        },
        "idle_after" | "max_task_runtime" | "pause_grace" => {
            parse_duration(v).map_err(|e| (e, hint()))?;
            Ok(v.into())
        }
        "max_task_memory" | "storage_quota" | "min_free_disk" => {
            parse_size(v).map_err(|e| (e, hint()))?;
            Ok(v.into())
        }
        "allow" | "deny" => {
            let mut a = toml_edit::Array::new();
            for id in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                a.push(id);
            }
            Ok(toml_edit::Value::Array(a))
        }
        _ => Ok(v.into()),
    }
}

/// An example value of `key`, for hints.
fn example(key: &str) -> &'static str {
    match key {
        "max_slots" => "4",
        "max_cpu_percent" => "50",
        "idle_cpu_percent" => "25",
        "min_battery_percent" => "20",
        "min_price" => "10",
        "idle_after" => "\"5m\"",
        "max_task_runtime" => "\"2h\"",
        "pause_grace" => "\"2m\"",
        "max_task_memory" => "\"2GiB\"",
        "storage_quota" => "\"10GiB\"",
        "min_free_disk" => "\"1GiB\"",
        _ => "",
    }
}

/// A policy file being read: its [`Source`] and readers for each kind of value.
struct Ctx<'a>(Source<'a>);

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = Source<'a>;

    fn deref(&self) -> &Source<'a> {
        &self.0
    }
}

type Val<'i> = Spanned<DeValue<'i>>;

impl Ctx<'_> {
    fn int(
        &self,
        v: &Val<'_>,
        field: &str,
        lo: i64,
        hi: i64,
        example: &str,
    ) -> Result<i64, PolicyError> {
        let range_hint = || {
            if hi == i64::MAX || hi == i64::from(u32::MAX) {
                format!("use a whole number of at least {lo}, e.g. {example}")
            } else {
                format!("use a number from {lo} to {hi}, e.g. {example}")
            }
        };
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                Ok(n) => Err(self.err(
                    Some(v.span()),
                    field,
                    format!("{n} is out of range"),
                    Some(range_hint()),
                )),
                Err(_) => Err(self.err(
                    Some(v.span()),
                    field,
                    format!("{i} is out of range"),
                    Some(range_hint()),
                )),
            },
            other => Err(self.err(
                Some(v.span()),
                field,
                format!("must be a whole number, found {}", other.type_str()),
                Some(range_hint()),
            )),
        }
    }

    fn boolean(&self, v: &Val<'_>, field: &str) -> Result<bool, PolicyError> {
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            other => Err(self.err(
                Some(v.span()),
                field,
                format!("must be true or false, found {}", other.type_str()),
                Some(format!("e.g. {field} = false (no quotes)")),
            )),
        }
    }

    fn string<'v>(
        &self,
        v: &'v Val<'_>,
        field: &str,
        example: &str,
    ) -> Result<&'v str, PolicyError> {
        match v.get_ref() {
            DeValue::String(s) if !s.trim().is_empty() => Ok(s.as_ref()),
            DeValue::String(_) => Err(self.err(
                Some(v.span()),
                field,
                "is empty",
                Some(format!("e.g. {example}, or leave the key out")),
            )),
            other => Err(self.err(
                Some(v.span()),
                field,
                format!("must be a string, found {}", other.type_str()),
                Some(format!("e.g. {example}")),
            )),
        }
    }

    /// A duration string or a number of seconds, rounded to the millisecond (so that
    /// `to_toml` writes it back exactly).
    fn duration(&self, v: &Val<'_>, field: &str, example: &str) -> Result<Duration, PolicyError> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Ok(Duration::from_secs(n)),
                Err(_) => Err(format!("{i} is not a number of seconds")),
            },
            DeValue::String(s) => parse_duration(s),
            other => Err(format!(
                "must be a duration like \"5m\", found {}",
                other.type_str()
            )),
        };
        let d = parsed
            .map_err(|m| self.err(Some(v.span()), field, m, Some(format!("e.g. {example}"))))?;
        let ms = u64::try_from((d.as_nanos() + 500_000) / 1_000_000).map_err(|_| {
            self.err(
                Some(v.span()),
                field,
                "is too long",
                Some(format!("e.g. {example}")),
            )
        })?;
        Ok(Duration::from_millis(ms))
    }

    /// A size string or a number of bytes, more than zero.
    fn size(&self, v: &Val<'_>, field: &str, example: &str) -> Result<u64, PolicyError> {
        match self.size_or_zero(v, field, example)? {
            0 => Err(self.err(
                Some(v.span()),
                field,
                "must be more than zero",
                Some(format!("e.g. {example}")),
            )),
            n => Ok(n),
        }
    }

    /// A size where 0 is allowed (it turns the limit off).
    fn size_or_zero(&self, v: &Val<'_>, field: &str, example: &str) -> Result<u64, PolicyError> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| format!("{i} is not a number of bytes")),
            DeValue::String(s) => parse_size(s),
            other => Err(format!(
                "must be a size like \"2GiB\", found {}",
                other.type_str()
            )),
        };
        parsed.map_err(|m| self.err(Some(v.span()), field, m, Some(format!("e.g. {example}"))))
    }

    fn peers(&self, v: &Val<'_>, field: &str) -> Result<Vec<String>, PolicyError> {
        let hint = || {
            Some(format!(
                "write a list of peer ids, e.g. {field} = [\"12D3KooW...\"]; \
                 naac key show prints this machine's"
            ))
        };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.err(
                Some(v.span()),
                field,
                format!(
                    "must be a list of peer ids, found {}",
                    v.get_ref().type_str()
                ),
                hint(),
            ));
        };
        if items.len() > MAX_PEERS {
            return Err(self.err(
                Some(v.span()),
                field,
                format!("has {} entries, more than {MAX_PEERS}", items.len()),
                None,
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let DeValue::String(id) = item.get_ref() else {
                return Err(self.err(
                    Some(item.span()),
                    f.as_str(),
                    format!("must be a string, found {}", item.get_ref().type_str()),
                    hint(),
                ));
            };
            if !looks_like_peer_id(id) {
                return Err(self.err(
                    Some(item.span()),
                    f.as_str(),
                    format!("\"{id}\" is not a peer id"),
                    Some(
                        "a peer id is 40 to 60 base58 characters, e.g. 12D3KooW...; \
                         naac key show prints this machine's"
                            .into(),
                    ),
                ));
            }
            out.push(id.to_string());
        }
        Ok(out)
    }

    fn windows(&self, v: &Val<'_>) -> Result<Vec<Window>, PolicyError> {
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.err(
                Some(v.span()),
                "windows",
                format!("must be a list of tables, found {}", v.get_ref().type_str()),
                Some("write each window as a [[windows]] table".into()),
            ));
        };
        if items.len() > MAX_WINDOWS {
            return Err(self.err(
                Some(v.span()),
                "windows",
                format!("has {} windows, more than {MAX_WINDOWS}", items.len()),
                None,
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.window(i, item))
            .collect()
    }

    fn window(&self, i: usize, v: &Val<'_>) -> Result<Window, PolicyError> {
        let field = format!("windows[{i}]");
        let sub = |k: &str| format!("{field}.{k}");
        let DeValue::Table(t) = v.get_ref() else {
            return Err(self.err(
                Some(v.span()),
                field.as_str(),
                format!("must be a table, found {}", v.get_ref().type_str()),
                Some("write each window as a [[windows]] table".into()),
            ));
        };
        let (mut days, mut from, mut to, mut action, mut price) = (None, None, None, None, None);
        for (k, val) in t.iter() {
            let slot = match k.get_ref().as_ref() {
                "days" => &mut days,
                "from" => &mut from,
                "to" => &mut to,
                "action" => &mut action,
                "price" => &mut price,
                other => {
                    return Err(self.unknown_key(
                        Some(k.span()),
                        field.as_str(),
                        other,
                        WINDOW_KEYS,
                        "a window's keys are",
                    ));
                }
            };
            *slot = Some(val);
        }
        let days = match days {
            None => {
                return Err(self.err(
                    Some(v.span()),
                    field.as_str(),
                    "has no \"days\"",
                    Some("add e.g. days = \"mon-fri\" (or \"daily\")".into()),
                ));
            }
            Some(d) => {
                let s = self.string(d, &sub("days"), "days = \"mon-fri\"")?;
                parse_days(s).map_err(|m| {
                    self.err(
                        Some(d.span()),
                        sub("days").as_str(),
                        m,
                        Some(
                            "use mon, tue, wed, thu, fri, sat, sun, ranges like \"mon-fri\", \
                             lists like \"sat,sun\", or \"daily\""
                                .into(),
                        ),
                    )
                })?
            }
        };
        let time = |val: &Val<'_>, name: &str, is_to: bool| -> Result<u16, PolicyError> {
            let f = sub(name);
            let s = self.string(val, &f, &format!("{name} = \"18:00\""))?;
            parse_time(s, is_to).map_err(|m| {
                self.err(
                    Some(val.span()),
                    f.as_str(),
                    m,
                    Some(
                        "write HH:MM on a 24-hour clock, e.g. \"18:00\"; \"24:00\" ends a window \
                         at midnight"
                            .into(),
                    ),
                )
            })
        };
        let (from, to) = match (from, to) {
            (None, None) => (0, 1440),
            (Some(f), Some(t)) => {
                let (f, to) = (time(f, "from", false)?, time(t, "to", true)?);
                if f == to {
                    return Err(self.err(
                        Some(t.span()),
                        sub("to").as_str(),
                        format!(
                            "from and to are both {}, so the window is empty",
                            format_time(f)
                        ),
                        Some(
                            "for the whole day write from = \"00:00\" and to = \"24:00\", \
                             or leave both out"
                                .into(),
                        ),
                    ));
                }
                (f, to)
            }
            (Some(f), None) => {
                return Err(self.err(
                    Some(f.span()),
                    sub("to").as_str(),
                    "the window has a \"from\" but no \"to\"",
                    Some("add e.g. to = \"08:00\", or leave both out for the whole day".into()),
                ));
            }
            (None, Some(t)) => {
                return Err(self.err(
                    Some(t.span()),
                    sub("from").as_str(),
                    "the window has a \"to\" but no \"from\"",
                    Some("add e.g. from = \"18:00\", or leave both out for the whole day".into()),
                ));
            }
        };
        let action_hint =
            || Some("give each window action = \"allow\", action = \"deny\" or price = 2.0".into());
        let action = match (action, price) {
            (Some(_), Some(p)) => {
                return Err(self.err(
                    Some(p.span()),
                    sub("price").as_str(),
                    "a window takes either action or price, not both",
                    Some("make a separate window for the price".into()),
                ));
            }
            (None, None) => {
                return Err(self.err(
                    Some(v.span()),
                    field.as_str(),
                    "has no action",
                    action_hint(),
                ));
            }
            (Some(a), None) => {
                let s = self.string(a, &sub("action"), "action = \"allow\"")?;
                match s.trim().to_ascii_lowercase().as_str() {
                    "allow" => WindowAction::Allow,
                    "deny" => WindowAction::Deny,
                    _ => {
                        return Err(self.err(
                            Some(a.span()),
                            sub("action").as_str(),
                            format!("unknown action \"{s}\""),
                            action_hint(),
                        ));
                    }
                }
            }
            (None, Some(p)) => {
                let f = sub("price");
                let m = match p.get_ref() {
                    DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                        .ok()
                        .map(|n| n as f64),
                    DeValue::Float(x) => x.as_str().parse::<f64>().ok(),
                    other => {
                        return Err(self.err(
                            Some(p.span()),
                            f.as_str(),
                            format!("must be a number, found {}", other.type_str()),
                            Some("e.g. price = 2.0".into()),
                        ));
                    }
                };
                match m {
                    Some(m) if m.is_finite() && m >= 1.0 => WindowAction::Price(m),
                    _ => {
                        return Err(self.err(
                            Some(p.span()),
                            f.as_str(),
                            format!("{} is not a price multiplier", number_text(p)),
                            Some("use a number of at least 1, e.g. price = 2.0".into()),
                        ));
                    }
                }
            }
        };
        Ok(Window {
            days,
            from,
            to,
            action,
        })
    }
}

/// A number's source text, for messages.
fn number_text(v: &Val<'_>) -> String {
    match v.get_ref() {
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        other => other.type_str().to_string(),
    }
}

fn looks_like_peer_id(s: &str) -> bool {
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    (40..=60).contains(&s.len()) && s.chars().all(|c| BASE58.contains(c))
}

const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `mon-fri`, `sat,sun`, `mon,wed-fri`, `fri-mon` (wraps), `daily`/`all` → a day mask.
fn parse_days(s: &str) -> Result<u8, String> {
    let lower = s.trim().to_ascii_lowercase();
    match lower.as_str() {
        "daily" | "all" => return Ok(0x7f),
        "weekdays" => return Ok(0x1f),
        "weekends" => return Ok(0x60),
        _ => {}
    }
    let day = |name: &str| -> Result<u8, String> {
        let name = name.trim();
        DAY_NAMES
            .iter()
            .position(|full| name.len() >= 3 && full.starts_with(name))
            .map(|i| i as u8)
            .ok_or_else(|| format!("unknown day \"{name}\" in \"{s}\""))
    };
    let mut mask = 0u8;
    for part in lower.split(',') {
        if part.trim().is_empty() {
            return Err(format!("\"{s}\" has an empty entry"));
        }
        if let Some((a, b)) = part.split_once('-') {
            let (mut d, end) = (day(a)?, day(b)?);
            loop {
                mask |= 1 << d;
                if d == end {
                    break;
                }
                d = (d + 1) % 7;
            }
        } else {
            mask |= 1 << day(part)?;
        }
    }
    Ok(mask)
}

/// A day mask as text: `daily`, or runs of three or more days as ranges (`mon-fri`), others
/// listed (`sat,sun`).
fn format_days(mask: u8) -> String {
    if mask & 0x7f == 0x7f {
        return "daily".into();
    }
    let mut parts = Vec::new();
    let mut d = 0;
    while d < 7 {
        if mask & (1 << d) == 0 {
            d += 1;
            continue;
        }
        let start = d;
        while d + 1 < 7 && mask & (1 << (d + 1)) != 0 {
            d += 1;
        }
        let name = |i: usize| &DAY_NAMES[i][..3];
        if d - start >= 2 {
            parts.push(format!("{}-{}", name(start), name(d)));
        } else {
            parts.extend((start..=d).map(|i| name(i).to_string()));
        }
        d += 1;
    }
    parts.join(",")
}

/// `HH:MM` → minutes after midnight; as an end, `24:00` and `00:00` are both midnight
/// (1440).
fn parse_time(s: &str, is_to: bool) -> Result<u16, String> {
    let bad = || format!("\"{s}\" is not a time");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !(digits(h) && h.len() <= 2 && digits(m) && m.len() == 2) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) if is_to => Ok(1440),
        (24, 0) => Err("\"24:00\" can only end a window; start at \"00:00\"".into()),
        (0, 0) if is_to => Ok(1440),
        (h, m) if h < 24 && m < 60 => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

fn format_time(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A duration as `parse_duration` reads it back exactly (to the millisecond): `5m`,
/// `1h30m`, `250ms`, `0s`.
fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

/// A size as a TOML value the parser reads back exactly: a string in the largest binary
/// unit that divides it (`"10GiB"`), else an integer of bytes (`parse_size` goes through
/// `f64`, which cannot hold every large odd number).
fn size_value(bytes: u64) -> toml_edit::Value {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift).into();
        }
    }
    match i64::try_from(bytes) {
        Ok(n) => n.into(),
        Err(_) => format!("{bytes}B").into(),
    }
}

#[cfg(test)]
mod tests;
