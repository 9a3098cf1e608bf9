//! Availability: the node's up-time intervals of the last 7 days, kept in `uptime.json`
//! ([`Uptime`]), and the share of that week it was up.

use anyhow::Context as _;
use std::path::{Path, PathBuf};

use super::write_atomically;

/// The availability window.
const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;

/// Most up-time intervals kept (the oldest go first).
const MAX_UPTIME_INTERVALS: usize = 1024;

/// When this node was up, persisted across restarts (see the [`device`](super) module
/// docs): the fraction of the last 7 days it was up.
#[derive(Debug)]
pub struct Uptime {
    path: PathBuf,
    /// Sorted and disjoint; the last one is this run's.
    intervals: Vec<[u64; 2]>,
}

impl Uptime {
    /// Reads the recorded intervals at `path` (a missing or corrupt file counts as none,
    /// logged at debug) and starts a new one at `now_ms`. Writes nothing.
    pub fn open(path: &Path, now_ms: u64) -> Uptime {
        let mut intervals: Vec<[u64; 2]> = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::debug!("ignoring corrupt up-time file {}: {e}", path.display());
                Vec::new()
            }),
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!("ignoring up-time file {}: {e}", path.display());
                }
                Vec::new()
            }
        };
        // Clamp what a wrong clock may have left in the future, drop nonsense, sort, merge.
        for i in &mut intervals {
            *i = [i[0].min(now_ms), i[1].min(now_ms)];
        }
        intervals.retain(|[s, e]| s <= e);
        intervals.sort_unstable();
        let mut merged: Vec<[u64; 2]> = Vec::with_capacity(intervals.len() + 1);
        for [s, e] in intervals.into_iter().chain([[now_ms, now_ms]]) {
            match merged.last_mut() {
                Some(last) if s <= last[1] => last[1] = last[1].max(e),
                _ => merged.push([s, e]),
            }
        }
        let mut up = Uptime {
            path: path.to_path_buf(),
            intervals: merged,
        };
        up.prune(now_ms);
        up
    }

    /// Extends this run's interval to `now_ms` and writes the file atomically (no fsync:
    /// a file lost in a power cut only costs the history).
    pub fn touch(&mut self, now_ms: u64) -> anyhow::Result<()> {
        if let Some(last) = self.intervals.last_mut() {
            last[1] = last[1].max(now_ms);
        }
        self.prune(now_ms);
        let bytes = serde_json::to_vec(&self.intervals).context("encode up time")?;
        write_atomically(&self.path, &bytes, false)
    }

    /// Up time within `[max(now − 7 days, first start), now]` over the length of that span
    /// (this run counts as up until `now_ms`); 1.0 when the span is empty.
    pub fn fraction(&self, now_ms: u64) -> f64 {
        let Some(first) = self.intervals.first() else {
            return 1.0;
        };
        let from = now_ms.saturating_sub(WEEK_MS).max(first[0]);
        if now_ms <= from {
            return 1.0;
        }
        let last = self.intervals.len() - 1;
        let up: u64 = self
            .intervals
            .iter()
            .enumerate()
            .map(|(i, &[s, e])| {
                let e = if i == last { e.max(now_ms) } else { e };
                e.min(now_ms).saturating_sub(s.max(from))
            })
            .sum();
        (up as f64 / (now_ms - from) as f64).clamp(0.0, 1.0)
    }

    /// Drops intervals that ended before the window and the oldest beyond the bound, never
    /// this run's.
    fn prune(&mut self, now_ms: u64) {
        let from = now_ms.saturating_sub(WEEK_MS);
        let Some(current) = self.intervals.pop() else {
            return;
        };
        self.intervals.retain(|iv| iv[1] >= from);
        self.intervals.push(current);
        let excess = self.intervals.len().saturating_sub(MAX_UPTIME_INTERVALS);
        self.intervals.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;
    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn device_uptime_fresh_start_is_fully_available() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("uptime.json");
        let mut up = Uptime::open(&path, T0);
        assert_eq!(up.fraction(T0), 1.0);
        assert_eq!(up.fraction(T0 + 3 * DAY), 1.0);
        up.touch(T0 + 1000).expect("touch");
        let saved: Vec<[u64; 2]> =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(saved, vec![[T0, T0 + 1000]]);
    }

    #[test]
    fn device_uptime_up_down_up() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("uptime.json");
        let mut up = Uptime::open(&path, T0);
        up.touch(T0 + DAY).expect("touch");
        drop(up);
        // Down for a day, then up again.
        let mut up = Uptime::open(&path, T0 + 2 * DAY);
        assert!((up.fraction(T0 + 2 * DAY) - 0.5).abs() < 1e-9);
        assert!((up.fraction(T0 + 3 * DAY) - 2.0 / 3.0).abs() < 1e-9);
        up.touch(T0 + 3 * DAY).expect("touch");
        // A crash, then back 12 hours later.
        let up = Uptime::open(&path, T0 + 3 * DAY + DAY / 2);
        assert!((up.fraction(T0 + 3 * DAY + DAY / 2) - 2.0 / 3.5).abs() < 1e-9);
        // Up until day 10: the window is days 3 to 10, down half a day of it.
        assert!((up.fraction(T0 + 10 * DAY) - 6.5 / 7.0).abs() < 1e-9);
    }

    #[test]
    fn device_uptime_prunes_old_intervals() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("uptime.json");
        let mut up = Uptime::open(&path, T0);
        up.touch(T0 + DAY).expect("touch");
        // Back after 9 days: the old day is out of the window, so the window starts now.
        let mut up = Uptime::open(&path, T0 + 10 * DAY);
        assert_eq!(up.fraction(T0 + 10 * DAY), 1.0);
        up.touch(T0 + 10 * DAY + 1).expect("touch");
        let saved: Vec<[u64; 2]> =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(saved, vec![[T0 + 10 * DAY, T0 + 10 * DAY + 1]]);
        // Up 3.5 days, down 3.5 days, up: the week was half up.
        let mut up = Uptime::open(&path, T0 + 20 * DAY);
        up.touch(T0 + 23 * DAY + DAY / 2).expect("touch");
        let mut up = Uptime::open(&path, T0 + 27 * DAY);
        assert!((up.fraction(T0 + 27 * DAY) - 0.5).abs() < 1e-9);
        up.touch(T0 + 27 * DAY).expect("touch");
    }

    #[test]
    fn device_uptime_bounded_and_corrupt_ignored() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("uptime.json");
        // A node that restarts every minute, for two days.
        for i in 0..3000u64 {
            let t = T0 + i * 60_000;
            let mut up = Uptime::open(&path, t);
            up.touch(t + 30_000).expect("touch");
        }
        let saved: Vec<[u64; 2]> =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(saved.len(), MAX_UPTIME_INTERVALS);
        let now = T0 + 3000 * 60_000;
        let f = Uptime::open(&path, now).fraction(now);
        assert!((f - 0.5).abs() < 0.01, "{f}");

        std::fs::write(&path, "[[1, 2], oops").expect("write");
        let mut up = Uptime::open(&path, T0);
        assert_eq!(up.fraction(T0 + 1000), 1.0);
        up.touch(T0 + 1000).expect("touch");
        let saved: Vec<[u64; 2]> =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(saved, vec![[T0, T0 + 1000]]);
        // Intervals from a clock that was ahead are clamped, not trusted.
        std::fs::write(&path, format!("[[{}, {}]]", T0 + DAY, T0 + 2 * DAY)).expect("write");
        let up = Uptime::open(&path, T0);
        assert_eq!(up.fraction(T0), 1.0);
    }
}
