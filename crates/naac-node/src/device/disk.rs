//! The disk probe: free and total bytes of the file system holding a directory
//! (`statvfs`).

use naac_types::host::Disk;
use std::path::Path;

/// Free space (for unprivileged users) and total size of the file system holding `dir`, in
/// bytes. A `dir` that does not exist yet is measured at its nearest existing ancestor;
/// zeros if `statvfs` fails.
pub fn probe_disk(dir: &Path) -> Disk {
    for d in dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
        match rustix::fs::statvfs(d) {
            Ok(s) => {
                let unit = if s.f_frsize > 0 {
                    s.f_frsize
                } else {
                    s.f_bsize
                };
                return Disk {
                    free: s.f_bavail.saturating_mul(unit),
                    total: s.f_blocks.saturating_mul(unit),
                };
            }
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                tracing::debug!("statvfs {}: {e}", d.display());
                break;
            }
        }
    }
    Disk::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_disk_of_a_temp_dir() {
        let d = tempfile::tempdir().expect("tempdir");
        let disk = probe_disk(d.path());
        assert!(
            disk.total > 0 && disk.free > 0 && disk.free <= disk.total,
            "{disk:?}"
        );
        // Not created yet: measured where it will be.
        assert_eq!(probe_disk(&d.path().join("a/b")).total, disk.total);
    }
}
