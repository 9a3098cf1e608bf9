//! Applying the policy: [`Policy::evaluate`] over the machine's facts, the time windows in
//! civil time (now and when that next changes) and who may use the machine.

use super::text::{format_days, format_time};
use super::{Decision, Facts, PauseReason, Policy, Window, WindowAction, WindowState};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How far ahead [`WindowState::next_change`] looks.
const LOOKAHEAD: SignedDuration = SignedDuration::from_hours(8 * 24);

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

impl Policy {
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
    /// attested user id, `token` whether it shows a pool token from a root in
    /// `trust_tokens_from` that lets it run here (`Err(why)` when it shows one that does
    /// not). Either id on the deny list refuses it; with an allow list or trusted roots, one
    /// of the ids must be on the allow list or the token must let it in.
    pub fn peer_access(
        &self,
        peer: &str,
        user: Option<&str>,
        token: Option<Result<(), String>>,
    ) -> Result<(), String> {
        let named = |list: &[String]| {
            list.iter()
                .any(|id| id == peer || user.is_some_and(|u| u == id))
        };
        if named(&self.deny) {
            return Err("you are on its deny list".into());
        }
        if self.allow.is_empty() && self.trust_tokens_from.is_empty() || named(&self.allow) {
            return Ok(());
        }
        match token {
            Some(Ok(())) if !self.trust_tokens_from.is_empty() => Ok(()),
            Some(Err(why)) => Err(format!(
                "you are not on its allow list and your token does not let you in: {why}"
            )),
            _ if self.trust_tokens_from.is_empty() => Err("you are not on its allow list".into()),
            _ => Err("you are not on its allow list and show no token its owner trusts".into()),
        }
    }

    /// Minutes since midnight at `t` in the owner's time zone (0–1439).
    pub fn minute_of_day(&self, t: std::time::SystemTime) -> u16 {
        let t = Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH);
        let dt = self.tz().to_datetime(t);
        dt.hour() as u16 * 60 + dt.minute() as u16
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
