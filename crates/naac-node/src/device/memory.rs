//! The memory probe: total and available bytes from `/proc/meminfo`, narrowed to this
//! process's cgroup memory limit (v2 or v1) when that is lower.

use naac_types::host::Memory;
use std::path::{Path, PathBuf};

/// Total and available memory from `/proc/meminfo`, in bytes, within this process's
/// cgroup memory limit (v2 `memory.max`, or v1 `memory.limit_in_bytes`) when it has one;
/// zeros if unreadable.
pub fn probe_memory() -> Memory {
    let host = std::fs::read_to_string("/proc/meminfo")
        .map(|t| parse_meminfo(&t))
        .unwrap_or_default();
    let Ok(cgroups) = std::fs::read_to_string("/proc/self/cgroup") else {
        return host;
    };
    for (dir, max, current) in cgroup_memory_files(&cgroups) {
        if let Ok(max) = std::fs::read_to_string(dir.join(max)) {
            let current = std::fs::read_to_string(dir.join(current)).ok();
            let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            return within_cgroup(host, Some(&max), current.as_deref(), &stat);
        }
    }
    host
}

/// Reclaimable page cache in a cgroup's `memory.stat` (v2 `inactive_file`, v1
/// `total_inactive_file`), bytes.
fn inactive_file(memory_stat: &str) -> u64 {
    memory_stat
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            matches!(k, "inactive_file" | "total_inactive_file")
                .then(|| v.trim().parse::<u64>().ok())
                .flatten()
        })
        .unwrap_or(0)
}

/// Where this process's cgroup memory limit and use may be, given `/proc/self/cgroup`:
/// (dir, limit file, use file), most specific first. In a container the cgroup file
/// system is often mounted at the process's own cgroup, so its root is tried too.
fn cgroup_memory_files(proc_self_cgroup: &str) -> Vec<(PathBuf, &'static str, &'static str)> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim().trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            let base = root.join("memory");
            out.push((
                base.join(rel),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            ));
            out.push((base, "memory.limit_in_bytes", "memory.usage_in_bytes"));
        } else if controllers.is_empty() {
            out.push((root.join(rel), "memory.max", "memory.current"));
            out.push((root.to_path_buf(), "memory.max", "memory.current"));
        }
    }
    out.dedup();
    out
}

/// The host's memory narrowed to a cgroup's memory limit (bytes, or `max` for none) given
/// its use (less the page cache it could drop, from `memory_stat`): a container's limit is
/// what its tasks may really use.
fn within_cgroup(
    host: Memory,
    max: Option<&str>,
    current: Option<&str>,
    memory_stat: &str,
) -> Memory {
    let Some(limit) = max.and_then(|m| m.trim().parse::<u64>().ok()) else {
        return host;
    };
    if host.total > 0 && limit >= host.total {
        return host;
    }
    let used = current
        .and_then(|c| c.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_sub(inactive_file(memory_stat));
    Memory {
        total: limit,
        available: limit.saturating_sub(used).min(host.available),
    }
}

fn parse_meminfo(text: &str) -> Memory {
    let kib = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(n.saturating_mul(1024))
        })
    };
    Memory {
        total: kib("MemTotal").unwrap_or(0),
        available: kib("MemAvailable").or_else(|| kib("MemFree")).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_meminfo_parse() {
        let m = parse_meminfo(
            "MemTotal:       24684084 kB\nMemFree:        22487484 kB\nMemAvailable:   23968440 kB\n",
        );
        assert_eq!(m.total, 24_684_084 * 1024);
        assert_eq!(m.available, 23_968_440 * 1024);
        let old = parse_meminfo("MemTotal: 1000 kB\nMemFree: 300 kB\n");
        assert_eq!(old.available, 300 * 1024);
        assert_eq!(parse_meminfo("garbage"), Memory::default());
    }

    #[test]
    fn device_memory_within_a_cgroup_limit() {
        let v1 = cgroup_memory_files("12:cpu:/x\n4:memory:/process_api/abc\n0::/\n");
        assert_eq!(
            v1[0],
            (
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes"
            )
        );
        assert_eq!(v1[1].0, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(v1[2].0, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(v1.len(), 3, "the v2 root is listed once: {v1:?}");
        let v2 = cgroup_memory_files("0::/system.slice/naac.service\n");
        assert_eq!(
            v2[0],
            (
                PathBuf::from("/sys/fs/cgroup/system.slice/naac.service"),
                "memory.max",
                "memory.current"
            )
        );
        assert!(cgroup_memory_files("garbage").is_empty());
        let host = Memory {
            total: 16 << 30,
            available: 12 << 30,
        };
        // No limit, or one above the host's memory: the host's figures.
        assert_eq!(
            within_cgroup(host.clone(), Some("max\n"), Some("100\n"), ""),
            host
        );
        assert_eq!(
            within_cgroup(host.clone(), Some("34359738368\n"), None, ""),
            host
        );
        assert_eq!(within_cgroup(host.clone(), None, None, ""), host);
        // A 2 GiB container using 512 MiB has 1.5 GiB left.
        let c = within_cgroup(host.clone(), Some("2147483648\n"), Some("536870912\n"), "");
        assert_eq!(c.total, 2 << 30);
        assert_eq!(c.available, 1536 << 20);
        // Page cache it could drop does not count as used (v2 and v1 names).
        let stat = "anon 268435456\nfile 268435456\ninactive_file 134217728\n";
        let c = within_cgroup(host.clone(), Some("2147483648"), Some("536870912"), stat);
        assert_eq!(c.available, 1664 << 20);
        let v1 = "cache 1\ntotal_inactive_file 134217728\n";
        let c = within_cgroup(host.clone(), Some("2147483648"), Some("536870912"), v1);
        assert_eq!(c.available, 1664 << 20);
        // Over its limit (reclaim lags): nothing available, not an underflow.
        let over = within_cgroup(host.clone(), Some("1024\n"), Some("4096\n"), "");
        assert_eq!((over.total, over.available), (1024, 0));
    }

    #[test]
    fn device_memory_of_this_machine() {
        let m = probe_memory();
        assert!(m.total > 64 << 20, "{m:?}");
        assert!(m.available > 0 && m.available <= m.total, "{m:?}");
    }
}
