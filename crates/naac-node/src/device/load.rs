//! CPU load: all CPUs' time since boot from `/proc/stat`, and a process's own CPU time
//! from `/proc/PID/stat` (so naac's own use can be told from others').

/// Time all CPUs spent since boot, from the first line of `/proc/stat`, in clock ticks
/// (`USER_HZ`, normally 100 per second per CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + idle + iowait + irq + softirq + steal.
    pub total: u64,
    /// idle + iowait.
    pub idle: u64,
}

impl CpuTimes {
    /// The share (0–1) of all CPUs used by everything but naac between `self` and `later`,
    /// given the ticks naac itself used meanwhile (a difference of [`own_cpu_ticks`]).
    /// 0 when no time passed.
    pub fn other_load(&self, later: &CpuTimes, own_ticks: u64) -> f64 {
        let total = later.total.saturating_sub(self.total);
        let idle = later.idle.saturating_sub(self.idle);
        let busy = total.saturating_sub(idle).saturating_sub(own_ticks);
        if total == 0 {
            return 0.0;
        }
        (busy as f64 / total as f64).clamp(0.0, 1.0)
    }
}

/// All CPUs' time since boot from `/proc/stat`; `None` if unreadable.
pub fn cpu_times() -> Option<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let mut fields = text.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user, nice]
    let v: Vec<u64> = fields.take(8).map_while(|f| f.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    Some(CpuTimes {
        total: v.iter().sum(),
        idle: v[3] + v.get(4).copied().unwrap_or(0),
    })
}

/// CPU time naac itself has used (user + system), in clock ticks (`USER_HZ`): this process
/// and the helpers it ran and waited for (`loginctl`), from `/proc/self/stat`; `None` if
/// unreadable.
pub fn own_cpu_ticks() -> Option<u64> {
    cpu_ticks_with_children_of(std::process::id())
}

/// Another process's utime+stime in clock ticks, from `/proc/PID/stat`.
pub fn cpu_ticks_of(pid: u32) -> Option<u64> {
    parse_self_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU ticks of process `pid` plus those of its children it has waited for (helpers such as
/// `loginctl`).
pub fn cpu_ticks_with_children_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let own = parse_self_stat(&text)?;
    let (_, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cutime: u64 = f.get(13)?.parse().ok()?;
    let cstime: u64 = f.get(14)?.parse().ok()?;
    Some(own + cutime + cstime)
}

fn parse_self_stat(text: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces; utime and stime are
    // fields 14 and 15, the 12th and 13th after it.
    let (_, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_cpu_times_and_own_ticks() {
        let t = parse_proc_stat("cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 1 2 3 4\n").expect("parse");
        assert_eq!(
            t,
            CpuTimes {
                total: 1181,
                idle: 1020
            }
        );
        assert_eq!(parse_proc_stat("intr 1 2 3\n"), None);
        let later = CpuTimes {
            total: t.total + 400,
            idle: t.idle + 100,
        };
        // 300 ticks busy, 100 of them ours: others used half of the 400.
        assert!((t.other_load(&later, 100) - 0.5).abs() < 1e-9);
        assert_eq!(t.other_load(&t, 0), 0.0);

        let stat =
            "1234 (naac (worker) x) S 1 1234 1234 0 -1 4194560 500 0 0 0 17 4 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_self_stat(stat), Some(21));
        assert!(cpu_times().expect("/proc/stat").total > 0);
        assert!(own_cpu_ticks().is_some());
    }
}
