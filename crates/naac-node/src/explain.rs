//! Why a job can or cannot run on the hosts in view: each host's status (from its `Welcome`
//! and `Status` updates) checked against the job, and the verdicts counted per constraint —
//! "3 hosts: owner active; 1 host: task memory 512 MiB > its limit 256 MiB".

use naac_proto::HostStatus;
use naac_types::Limits;
use naac_types::units::format_size;
use std::time::Duration;

/// Every reason `status`'s host cannot take tasks with `limits` now; empty when it can.
pub fn rule_out(limits: &Limits, status: &HostStatus) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(d) = &status.denied {
        why.push(d.clone());
    }
    if let naac_types::host::HostState::Paused(p) = &status.state {
        why.extend(p.split("; ").map(str::to_string));
    }
    let l = &status.limits;
    if let Some(max) = l.max_task_memory
        && limits.memory > max
    {
        why.push(format!(
            "task memory {} > its limit {}",
            format_size(limits.memory),
            format_size(max)
        ));
    }
    if let Some(max) = l.max_task_runtime_ms
        && limits.timeout_ms > max
    {
        why.push(format!(
            "task time limit {} > its limit {}",
            human(Duration::from_millis(limits.timeout_ms)),
            human(Duration::from_millis(max))
        ));
    }
    if status.slots == 0 {
        why.push("no slots".into());
    }
    why
}

/// [`rule_out`] for a job: its limits, and its `[requirements]`.
pub fn rule_out_job(job: &naac_types::Job, status: &HostStatus) -> Vec<String> {
    let mut why = rule_out(&job.limits, status);
    why.extend(unmet(&job.requirements, status));
    why
}

/// Each of `req` the host does not meet, said so that hosts count together.
pub fn unmet(req: &naac_types::job::Requirements, status: &HostStatus) -> Vec<String> {
    let mut why = Vec::new();
    let cpu = &status.resources.cpu;
    if let Some(arch) = &req.arch
        && cpu.arch != *arch
    {
        why.push(format!("architecture {} ≠ {arch}", cpu.arch));
    }
    if let Some(min) = req.min_score {
        if cpu.score <= 0.0 {
            why.push("compute score not measured yet".into());
        } else if cpu.score < min {
            why.push(format!("compute score {:.1} < {min}", cpu.score));
        }
    }
    let gpus = status.resources.gpus.len() as u32;
    if gpus < req.gpus {
        why.push(format!("{gpus} GPUs < {}", req.gpus));
    }
    for l in &req.labels {
        if !status.limits.labels.contains(l) {
            why.push(format!("no label {l}"));
        }
    }
    why
}

/// Why a host whose measured round trip is `rtt` is too far for `req`, if it is.
pub fn too_far(
    req: &naac_types::job::Requirements,
    rtt: Option<std::time::Duration>,
) -> Option<String> {
    let max = req.max_latency_ms?;
    match rtt {
        None => Some("round trip not measured yet".into()),
        Some(d) if d.as_millis() as u64 > max => {
            Some(format!("round trip {} ms > {max} ms", d.as_millis()))
        }
        Some(_) => None,
    }
}

/// How many hosts each reason rules out, most first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Explanation {
    pub hosts: usize,
    pub usable: usize,
    pub ruled_out: Vec<(String, usize)>,
}

/// Why a job whose floor is `min` does not use a provider with this reputation record
/// here, if it does not.
pub fn reputation_rules_out(record: &crate::reputation::Record, min: f64) -> Option<String> {
    record.excluded(min).then(|| rejected_here(min))
}

/// The reason a provider excluded for its reputation is ruled out (one text for all such
/// providers, so an explanation counts them together).
pub fn rejected_here(min: f64) -> String {
    format!("its results were rejected here (reputation below your {min})")
}

impl Explanation {
    /// Counts each host's [`rule_out`] reasons.
    pub fn of<'a>(limits: &Limits, hosts: impl IntoIterator<Item = &'a HostStatus>) -> Self {
        Self::of_reasons(hosts.into_iter().map(|st| rule_out(limits, st)))
    }

    /// Counts the reasons given for each host (empty: it can run the job).
    pub fn of_reasons(hosts: impl IntoIterator<Item = Vec<String>>) -> Self {
        let mut e = Explanation::default();
        for why in hosts {
            e.hosts += 1;
            if why.is_empty() {
                e.usable += 1;
            }
            for w in why {
                match e.ruled_out.iter_mut().find(|(r, _)| *r == w) {
                    Some((_, n)) => *n += 1,
                    None => e.ruled_out.push((w, 1)),
                }
            }
        }
        e.ruled_out
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        e
    }

    /// "3 hosts: owner active; 1 host: task memory 512 MiB > its limit 256 MiB".
    pub fn reasons(&self) -> String {
        self.ruled_out
            .iter()
            .map(|(r, n)| format!("{n} host{}: {r}", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.hosts == 0 {
            return write!(f, "no hosts in view");
        }
        write!(
            f,
            "{} of {} host{} can run it now",
            self.usable,
            self.hosts,
            if self.hosts == 1 { "" } else { "s" }
        )?;
        if !self.ruled_out.is_empty() {
            write!(f, "; ruled out: {}", self.reasons())?;
        }
        Ok(())
    }
}

/// "30m", "1h 30m", "45s".
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if sec > 0 {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use naac_types::host::{HostLimits, HostState};

    fn host(state: HostState, denied: Option<&str>, mem: Option<u64>) -> HostStatus {
        HostStatus {
            state,
            denied: denied.map(str::to_string),
            limits: HostLimits {
                max_task_memory: mem,
                ..HostLimits::default()
            },
            slots: 2,
            ..HostStatus::default()
        }
    }

    #[test]
    fn counts_hosts_per_constraint() {
        let limits = Limits {
            memory: 512 << 20,
            ..Limits::default()
        };
        let active = HostState::Paused("owner active".into());
        let hosts = [
            host(active.clone(), None, None),
            host(active.clone(), None, None),
            host(
                HostState::Paused("owner active; on battery".into()),
                None,
                None,
            ),
            host(HostState::Accepting, Some("you are on its deny list"), None),
            host(HostState::Accepting, Some("you are on its deny list"), None),
            host(HostState::Accepting, None, Some(256 << 20)),
            host(HostState::Accepting, None, Some(1 << 30)),
        ];
        let e = Explanation::of(&limits, &hosts);
        assert_eq!(e.hosts, 7);
        assert_eq!(e.usable, 1);
        assert_eq!(
            e.reasons(),
            "3 hosts: owner active; 2 hosts: you are on its deny list; 1 host: on battery; \
             1 host: task memory 512 MiB > its limit 256 MiB"
        );
        assert!(
            e.to_string()
                .starts_with("1 of 7 hosts can run it now; ruled out: 3 hosts")
        );
    }

    #[test]
    fn runtime_limits() {
        let limits = Limits {
            timeout_ms: 3_600_000,
            ..Limits::default()
        };
        let mut h = host(HostState::Accepting, None, None);
        h.limits.max_task_runtime_ms = Some(1_800_000);
        assert_eq!(
            rule_out(&limits, &h),
            vec!["task time limit 1h > its limit 30m"]
        );
        assert_eq!(human(Duration::from_secs(5400)), "1h 30m");
    }

    #[test]
    fn requirements_rule_out_hosts_that_do_not_meet_them() {
        let mut h = host(HostState::Accepting, None, None);
        h.resources.cpu.arch = "x86_64".into();
        h.resources.cpu.score = 9.8;
        h.limits.labels = vec!["zone=eu".into()];
        let req = |arch: Option<&str>, min: Option<f64>, gpus: u32, labels: &[&str]| {
            naac_types::job::Requirements {
                arch: arch.map(str::to_string),
                min_score: min,
                gpus,
                labels: labels.iter().map(|l| l.to_string()).collect(),
                max_latency_ms: None,
            }
        };
        assert!(unmet(&req(None, None, 0, &[]), &h).is_empty());
        assert!(unmet(&req(Some("x86_64"), Some(5.0), 0, &["zone=eu"]), &h).is_empty());
        assert_eq!(
            unmet(
                &req(Some("aarch64"), Some(15.0), 2, &["zone=eu", "ssd"]),
                &h
            ),
            [
                "architecture x86_64 ≠ aarch64",
                "compute score 9.8 < 15",
                "0 GPUs < 2",
                "no label ssd"
            ]
        );
        h.resources.cpu.score = 0.0;
        assert_eq!(
            unmet(&req(None, Some(1.0), 0, &[]), &h),
            ["compute score not measured yet"]
        );
        // The round trip: measured at the greeting, refused above the limit.
        let ms = std::time::Duration::from_millis;
        let mut near = req(None, None, 0, &[]);
        assert_eq!(
            too_far(&near, None),
            None,
            "no limit, no measurement needed"
        );
        near.max_latency_ms = Some(50);
        assert_eq!(too_far(&near, Some(ms(12))), None);
        assert_eq!(too_far(&near, Some(ms(50))), None);
        assert_eq!(
            too_far(&near, Some(ms(80))).as_deref(),
            Some("round trip 80 ms > 50 ms")
        );
        assert_eq!(
            too_far(&near, None).as_deref(),
            Some("round trip not measured yet")
        );
    }
}
