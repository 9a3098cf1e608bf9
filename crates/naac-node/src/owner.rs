//! The owner's side of a provider: the usage policy (`policy.toml`, hot-reloaded), what the
//! machine's owner is doing, and the manual pause (`naac pause`), folded into one decision —
//! take work, or pause and why — plus the duty cycle that keeps naac within
//! `max_cpu_percent`.
//!
//! Owner activity is detected without any desktop dependency: a change in the input-device
//! interrupt counters of `/proc/interrupts` (keyboard, mouse, touchpad), CPU load from
//! other programs above `idle_cpu_percent` (the machine's busy time minus naac's own, from
//! `/proc/stat` and `/proc/self/stat`, over windows of at least a second), and, where
//! systemd-logind runs, the login sessions' idle hints (see [`crate::logind`]; this is what
//! sees USB keyboards and mice, whose interrupts are shared with other USB devices). The
//! daemon's start counts as activity, so `idle_only` waits `idle_after` before the first
//! task.
//!
//! Power is read from sysfs every [`POWER_READ`] on a thread of its own when the policy cares
//! about it (`on_ac_only`, `min_battery_percent`), so unplugging a laptop pauses work within
//! a second.

use crate::Home;
use crate::device;
use crate::logind;
use naac_types::host::Power;
use naac_types::policy::{Decision, Facts, Policy};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Clock ticks per second of `/proc` CPU counters (USER_HZ; 100 on every Linux platform naac
/// targets).
const TICKS_PER_SECOND: f64 = 100.0;

/// Shortest window over which CPU load is judged.
const LOAD_WINDOW: Duration = Duration::from_secs(1);

/// Tracks when the owner was last active. Sans-IO: the caller reads the counters.
#[derive(Debug)]
pub struct Activity {
    last_active: Instant,
    input: Option<u64>,
    /// (when, machine total ticks, machine busy ticks, naac's own ticks)
    sample: Option<(Instant, u64, u64, u64)>,
    /// Other programs' share of the machine over the last window, percent.
    load: Option<f64>,
}

impl Activity {
    /// Starts counting with the owner active at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            last_active: now,
            input: None,
            sample: None,
            load: None,
        }
    }

    /// The owner was last seen at `at` by another source (logind's idle hints); an earlier
    /// time than what is already known changes nothing.
    pub fn seen(&mut self, at: Instant) {
        self.last_active = self.last_active.max(at);
    }

    /// One reading of the counters: input interrupts (any change is activity), the machine's
    /// total and busy CPU ticks, and naac's own CPU ticks.
    pub fn observe(
        &mut self,
        now: Instant,
        input: Option<u64>,
        cpu: Option<(u64, u64)>,
        own: Option<u64>,
        threshold_percent: u8,
    ) {
        if let Some(n) = input {
            if self.input.is_some_and(|old| old != n) {
                self.last_active = now;
            }
            self.input = Some(n);
        }
        let (Some((total, busy)), Some(own)) = (cpu, own) else {
            return;
        };
        match self.sample {
            Some((t, total0, busy0, own0)) if now.duration_since(t) >= LOAD_WINDOW => {
                let dt = total.saturating_sub(total0);
                if dt > 0 {
                    let others = busy
                        .saturating_sub(busy0)
                        .saturating_sub(own.saturating_sub(own0));
                    let load = others as f64 * 100.0 / dt as f64;
                    self.load = Some(load);
                    if load > f64::from(threshold_percent) {
                        self.last_active = now;
                    }
                }
                self.sample = Some((now, total, busy, own));
            }
            Some(_) => {}
            None => self.sample = Some((now, total, busy, own)),
        }
    }

    /// How long the owner has been away.
    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_active)
    }

    /// Other programs' CPU load over the last window (percent of the machine).
    pub fn load(&self) -> Option<f64> {
        self.load
    }
}

/// Keeps naac's CPU use near `max_cpu_percent` of the machine: each running guest may run a
/// `duty` fraction of the time. Open loop (target × cores ÷ running guests) corrected by the
/// measured use. Sans-IO.
#[derive(Debug)]
pub struct Throttle {
    cores: f64,
    /// Correction factor learned from measurements.
    k: f64,
    sample: Option<(Instant, u64)>,
    duty: f64,
}

impl Throttle {
    pub fn new(cores: u32) -> Self {
        Self {
            cores: f64::from(cores.max(1)),
            k: 1.0,
            sample: None,
            duty: 1.0,
        }
    }

    /// The duty cycle for `running` guests under a cap of `percent`, given naac's own CPU
    /// ticks so far.
    pub fn update(&mut self, now: Instant, percent: u8, running: usize, own: Option<u64>) -> f64 {
        if percent >= 100 || running == 0 {
            self.sample = own.map(|o| (now, o));
            self.duty = 1.0;
            return 1.0;
        }
        let target = f64::from(percent) / 100.0;
        let open = (target * self.cores / running as f64).min(1.0);
        if let Some(own) = own {
            match self.sample {
                Some((t, own0)) if now.duration_since(t) >= LOAD_WINDOW => {
                    let secs = now.duration_since(t).as_secs_f64();
                    let used =
                        own.saturating_sub(own0) as f64 / TICKS_PER_SECOND / secs / self.cores;
                    // Only correct while guests are actually held back (the guests may
                    // simply need less than the cap).
                    if self.duty < 1.0 && used > 0.0 {
                        let step = (target / used).clamp(0.8, 1.25);
                        self.k = (self.k * step).clamp(0.3, 3.0);
                    }
                    self.sample = Some((now, own));
                }
                Some(_) => {}
                None => self.sample = Some((now, own)),
            }
        }
        self.duty = (open * self.k).clamp(0.01, 1.0);
        self.duty
    }
}

/// The policy file, reloaded when it changes; a broken edit keeps the last good policy.
pub struct Monitor {
    home: Home,
    path: PathBuf,
    policy: Policy,
    mtime: Option<SystemTime>,
    /// The last reload's error, until the file is fixed.
    pub error: Option<String>,
    activity: Activity,
    throttle: Throttle,
    interrupts: PathBuf,
    power_supply: PathBuf,
    /// Started the first time the policy asks for `idle_only`.
    logind: Option<logind::Watcher>,
    /// Latest power reading: from a [`PowerReader`] when the policy cares about power, else
    /// from the daemon's device refresh ([`Monitor::probed_power`]).
    power: Power,
    power_reader: Option<PowerReader>,
    /// Storage use, and the free space of the disk holding it, measured by the daemon.
    pub storage_used: u64,
    pub disk_free: Option<u64>,
}

/// How often the power supply is read when the policy cares about power.
pub const POWER_READ: Duration = Duration::from_millis(500);

/// Reads the power supply every [`POWER_READ`] on its own thread: sysfs battery reads can
/// take milliseconds on some laptops, and decisions run on the daemon's event loop. The
/// thread ends when this is dropped.
struct PowerReader {
    latest: Arc<Mutex<Option<Power>>>,
    alive: Arc<AtomicBool>,
}

impl PowerReader {
    fn start(power_supply: PathBuf) -> Self {
        let latest = Arc::new(Mutex::new(None));
        let alive = Arc::new(AtomicBool::new(true));
        let (l, a) = (latest.clone(), alive.clone());
        let spawned = std::thread::Builder::new()
            .name("naac-power".into())
            .spawn(move || {
                while a.load(Ordering::Relaxed) {
                    let p = device::probe_power(&power_supply);
                    *l.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                    std::thread::sleep(POWER_READ);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the power reader: {e}");
        }
        PowerReader { latest, alive }
    }

    fn latest(&self) -> Option<Power> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for PowerReader {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

impl Monitor {
    /// Loads the policy; an invalid file is an error (the node does not start on a policy
    /// it cannot read).
    pub fn new(home: &Home, cores: u32, now: Instant) -> anyhow::Result<Self> {
        let path = home.policy();
        let mtime = mtime(&path);
        let policy = Policy::load(&path).map_err(|e| match &e.hint {
            Some(h) => anyhow::anyhow!("{e}\nhint: {h}"),
            None => anyhow::anyhow!("{e}"),
        })?;
        Ok(Self {
            home: home.clone(),
            path,
            policy,
            mtime,
            error: None,
            activity: Activity::new(now),
            throttle: Throttle::new(cores),
            interrupts: PathBuf::from("/proc/interrupts"),
            power_supply: PathBuf::from(device::SYSFS_POWER_SUPPLY),
            logind: None,
            power: Power::default(),
            power_reader: None,
            storage_used: 0,
            disk_free: None,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reloads the policy if its file changed. Returns whether it changed.
    pub fn reload(&mut self) -> bool {
        let m = mtime(&self.path);
        if m == self.mtime {
            return false;
        }
        self.mtime = m;
        match Policy::load(&self.path) {
            Ok(p) => {
                self.error = None;
                if p != self.policy {
                    tracing::info!("policy {} reloaded", self.path.display());
                    self.policy = p;
                    return true;
                }
                false
            }
            Err(e) => {
                let msg = e.to_string();
                if self.error.as_deref() != Some(&msg) {
                    tracing::error!("{msg}; keeping the previous policy");
                }
                self.error = Some(msg);
                false
            }
        }
    }

    /// Reads other sources than the real machine's (tests): `interrupts` for
    /// `/proc/interrupts`, `power_supply` for `/sys/class/power_supply`.
    pub fn with_sources(mut self, interrupts: PathBuf, power_supply: PathBuf) -> Self {
        self.interrupts = interrupts;
        self.power_supply = power_supply;
        self
    }

    /// Reads the activity counters, logind's hints, the power supply (when the policy
    /// cares), the manual pause and the clock, and decides. `busy`: the node holds tasks.
    pub fn decide(&mut self, now: Instant, busy: bool) -> Decision {
        let cpu = device::cpu_times().map(|c| (c.total, c.total.saturating_sub(c.idle)));
        let own = device::own_cpu_ticks();
        let input = device::input_interrupts(&self.interrupts);
        self.activity
            .observe(now, input, cpu, own, self.policy.idle_cpu_percent);
        if self.policy.idle_only {
            let w = self.logind.get_or_insert_with(logind::Watcher::start);
            w.set_busy(busy);
            match w.hint() {
                Some(logind::Hint::Active) => self.activity.seen(now),
                Some(logind::Hint::IdleSince(t)) => {
                    let ago = SystemTime::now().duration_since(t).unwrap_or_default();
                    if let Some(at) = now.checked_sub(ago) {
                        self.activity.seen(at);
                    }
                }
                None => {}
            }
        }
        if self.cares_about_power() {
            let supply = &self.power_supply;
            let reader = self
                .power_reader
                .get_or_insert_with(|| PowerReader::start(supply.clone()));
            if let Some(p) = reader.latest() {
                self.power = p;
            }
        } else {
            self.power_reader = None;
        }
        let facts = Facts {
            now: jiff::Timestamp::now(),
            owner_idle_for: Some(self.activity.idle_for(now)),
            on_ac: self.power.on_ac,
            battery_percent: self.power.battery_percent,
            storage_used: self.storage_used,
            disk_free: self.disk_free,
            manual_pause: manual_pause(&self.home.pause_file()),
        };
        self.policy.evaluate(&facts)
    }

    fn cares_about_power(&self) -> bool {
        self.policy.on_ac_only || self.policy.min_battery_percent > 0
    }

    /// The device refresh's power reading: used unless decisions read power themselves
    /// (theirs is fresher).
    pub fn probed_power(&mut self, power: Power) {
        if !self.cares_about_power() {
            self.power = power;
        }
    }

    /// The duty cycle for `running` guests now.
    pub fn duty(&mut self, now: Instant, running: usize) -> f64 {
        let pct = self.policy.max_cpu_percent;
        self.throttle
            .update(now, pct, running, device::own_cpu_ticks())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(w) = &self.logind {
            w.stop();
        }
    }
}

fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The manual pause: `None` when not paused; `Some(None)` until resumed; `Some(Some(t))`
/// until `t`.
pub fn manual_pause(path: &std::path::Path) -> Option<Option<jiff::Timestamp>> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    if text.is_empty() {
        return Some(None);
    }
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Some(Some(t)),
        Err(_) => Some(None),
    }
}

/// Pauses the node by hand (`naac pause`): until `until`, or until resumed.
pub fn pause(home: &Home, until: Option<jiff::Timestamp>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    home.ensure()?;
    let path = home.pause_file();
    let text = until.map(|t| t.to_string()).unwrap_or_default();
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

/// Ends a manual pause (`naac resume`). Returns whether there was one.
pub fn resume(home: &Home) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let path = home.pause_file();
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("remove {}", path.display())),
    }
}

/// Bytes under `dir` (files only; bounded walk: at most `max_entries` entries).
pub fn dir_size(dir: &std::path::Path, max_entries: usize) -> u64 {
    let mut total = 0;
    let mut seen = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if seen > max_entries {
                return total;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_interrupts_mark_activity() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        a.observe(t0, Some(10), None, None, 25);
        let t1 = t0 + Duration::from_secs(60);
        a.observe(t1, Some(10), None, None, 25);
        assert_eq!(a.idle_for(t1), Duration::from_secs(60), "no change: idle");
        let t2 = t1 + Duration::from_secs(1);
        a.observe(t2, Some(11), None, None, 25);
        assert_eq!(a.idle_for(t2), Duration::ZERO, "a keypress is activity");
    }

    #[test]
    fn other_programs_load_marks_activity_but_naacs_own_does_not() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        // 2 cores: 200 ticks per second in all.
        a.observe(t0, None, Some((0, 0)), Some(0), 25);
        // naac itself used 180 of 190 busy ticks: others 10/200 = 5%.
        let t1 = t0 + Duration::from_secs(1);
        a.observe(t1, None, Some((200, 190)), Some(180), 25);
        assert!((a.load().expect("load") - 5.0).abs() < 1e-9);
        assert_eq!(a.idle_for(t1), Duration::from_secs(1));
        // Others used 100 of 200: 50% > 25%.
        let t2 = t1 + Duration::from_secs(1);
        a.observe(t2, None, Some((400, 300)), Some(190), 25);
        assert_eq!(a.idle_for(t2), Duration::ZERO);
        // Windows shorter than a second are not judged.
        let t3 = t2 + Duration::from_millis(300);
        a.observe(t3, None, Some((460, 460)), Some(190), 25);
        assert_eq!(a.idle_for(t3), Duration::from_millis(300));
    }

    #[test]
    fn throttle_converges_on_the_cap() {
        // A fake machine: 2 cores, 2 guests that use all the duty they get.
        let mut t = Throttle::new(2);
        let t0 = Instant::now();
        let mut now = t0;
        let mut own = 0u64;
        let mut duty = t.update(now, 50, 2, Some(own));
        assert!(
            (duty - 0.5).abs() < 1e-9,
            "open loop: 50% of 2 cores over 2 guests"
        );
        // The guests overshoot by 20% (overheads): the correction brings use back to 50%.
        for _ in 0..30 {
            now += Duration::from_secs(1);
            own += (2.0 * duty * 1.2 * TICKS_PER_SECOND) as u64;
            duty = t.update(now, 50, 2, Some(own));
        }
        let used = 2.0 * duty * 1.2 / 2.0;
        assert!((used - 0.5).abs() < 0.05, "use {used}");
        assert_eq!(t.update(now, 100, 2, Some(own)), 1.0);
    }

    #[test]
    fn unplugging_pauses_at_the_next_decision() {
        use naac_types::policy::PauseReason;
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path().join("home"));
        home.ensure().expect("home");
        std::fs::write(
            home.policy(),
            "idle_only = false\non_ac_only = true\nmin_battery_percent = 30\n",
        )
        .expect("policy");
        let sysfs = dir.path().join("power_supply");
        let set = |name: &str, file: &str, value: &str| {
            let d = sysfs.join(name);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join(file), value).expect("write");
        };
        set("AC", "type", "Mains\n");
        set("AC", "online", "1\n");
        set("BAT0", "type", "Battery\n");
        set("BAT0", "status", "Charging\n");
        set("BAT0", "capacity", "80\n");
        let mut m = Monitor::new(&home, 2, Instant::now())
            .expect("monitor")
            .with_sources(dir.path().join("no-interrupts"), sysfs.clone());
        // Decisions use the reader thread's latest reading: poll until it shows.
        let mut until = |want: &[PauseReason]| {
            let start = Instant::now();
            loop {
                let d = m.decide(Instant::now(), true);
                if d.reasons == want {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "still {:?}, want {want:?}",
                    d.reasons
                );
                std::thread::sleep(POLL);
            }
        };
        until(&[]);
        // Unplugged: paused, with no device refresh in between.
        set("AC", "online", "0\n");
        set("BAT0", "status", "Discharging\n");
        until(&[PauseReason::OnBattery]);
        set("BAT0", "capacity", "25\n");
        until(&[
            PauseReason::OnBattery,
            PauseReason::BatteryLow {
                percent: 25,
                min: 30,
            },
        ]);
        set("AC", "online", "1\n");
        set("BAT0", "status", "Charging\n");
        set("BAT0", "capacity", "80\n");
        until(&[]);
        // A device refresh's (older) reading does not override the reader's.
        m.probed_power(Power {
            on_ac: Some(false),
            battery_percent: Some(5),
        });
        assert!(m.decide(Instant::now(), true).accept);
    }

    const POLL: Duration = Duration::from_millis(100);

    #[test]
    fn logind_sightings_only_move_the_last_activity_forward() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        let t1 = t0 + Duration::from_secs(600);
        // Seen before the daemon started: the start still counts.
        a.seen(t0.checked_sub(Duration::from_secs(60)).unwrap_or(t0));
        assert_eq!(a.idle_for(t1), Duration::from_secs(600));
        a.seen(t0 + Duration::from_secs(500));
        assert_eq!(a.idle_for(t1), Duration::from_secs(100));
        a.seen(t0 + Duration::from_secs(400));
        assert_eq!(a.idle_for(t1), Duration::from_secs(100));
    }

    #[test]
    fn manual_pause_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path().to_path_buf());
        assert_eq!(manual_pause(&home.pause_file()), None);
        pause(&home, None).expect("pause");
        assert_eq!(manual_pause(&home.pause_file()), Some(None));
        let t: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().expect("time");
        pause(&home, Some(t)).expect("pause");
        assert_eq!(manual_pause(&home.pause_file()), Some(Some(t)));
        assert!(resume(&home).expect("resume"));
        assert!(!resume(&home).expect("resume"));
    }
}
