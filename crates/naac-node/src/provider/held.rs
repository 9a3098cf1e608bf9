//! Outputs a provider keeps instead of sending them (`Assign::hold_over`): large `/out`
//! files of tasks whose results later stages take. Only their content id travels to the
//! requester; the tasks that take them fetch them from here (`Fetch` by content id, from
//! any peer). They stay on disk until the requester says the job is over, within a quota:
//! an output that would pass it is sent the usual way instead.

use naac_net::PeerId;
use naac_types::{ContentId, JobId};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Most bytes of held outputs one node keeps, all jobs together.
pub const MAX_HELD_BYTES: u64 = 4 << 30;

/// Reads of held outputs served at once (each holds a whole file in memory).
const MAX_SERVING: usize = 4;

/// Whose job a held output is for: the requester and its job id (another peer that learned
/// the id cannot end it).
pub type Owner = (PeerId, JobId);

/// The held outputs of this node.
#[derive(Clone)]
pub struct Held {
    dir: PathBuf,
    limit: u64,
    state: Arc<Mutex<State>>,
    /// Permits to serve a read (see [`MAX_SERVING`]).
    pub serving: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct State {
    used: u64,
    /// Each file: its length and the jobs holding it.
    files: HashMap<ContentId, (u64, HashSet<Owner>)>,
}

impl Held {
    /// Held outputs in `dir` (emptied: nothing held survives a restart, since the jobs
    /// that held them cannot tell this node they are over), at most `limit` bytes.
    pub fn open(dir: PathBuf, limit: u64) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self {
            dir,
            limit,
            state: Arc::new(Mutex::new(State::default())),
            serving: Arc::new(tokio::sync::Semaphore::new(MAX_SERVING)),
        })
    }

    /// This process's held outputs, in a folder of its own under `work_dir` (those of
    /// processes that are gone are removed).
    pub fn in_work_dir(work_dir: &std::path::Path) -> anyhow::Result<Self> {
        for e in std::fs::read_dir(work_dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("held-"));
            if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok())
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Self::open(
            work_dir.join(format!("held-{}", std::process::id())),
            MAX_HELD_BYTES,
        )
    }

    fn path(&self, id: &ContentId) -> PathBuf {
        self.dir.join(id.to_hex())
    }

    /// Keeps `data` (content id `id`) for `job`. `false`: not kept (over the quota, or the
    /// disk refused), so it is sent with the result.
    pub fn keep(&self, job: Owner, id: ContentId, data: &[u8]) -> bool {
        let len = data.len() as u64;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, jobs)) = st.files.get_mut(&id) {
            jobs.insert(job);
            return true;
        }
        if st.used.saturating_add(len) > self.limit {
            return false;
        }
        if let Err(e) = std::fs::write(self.path(&id), data) {
            tracing::warn!("could not keep output {}: {e}", id.short());
            return false;
        }
        st.used += len;
        st.files.insert(id, (len, HashSet::from([job])));
        true
    }

    /// Whether `id` is held here.
    pub fn has(&self, id: &ContentId) -> bool {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.files.contains_key(id)
    }

    /// The bytes of a held output (read from disk: call off the node's loop).
    pub fn read(&self, id: &ContentId) -> Option<Vec<u8>> {
        if !self.has(id) {
            return None;
        }
        let bytes = std::fs::read(self.path(id)).ok()?;
        (ContentId::of(&bytes) == *id).then_some(bytes)
    }

    /// The requester is done with `job`: what only it held goes.
    pub fn drop_job(&self, job: &Owner) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = Vec::new();
        for (id, (len, jobs)) in st.files.iter_mut() {
            if jobs.remove(job) && jobs.is_empty() {
                gone.push((*id, *len));
            }
        }
        for (id, len) in gone {
            st.files.remove(&id);
            st.used -= len;
            let _ = std::fs::remove_file(self.path(&id));
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).used
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_kept_within_the_quota_and_go_with_their_last_job() {
        let dir = tempfile::tempdir().unwrap();
        let h = Held::open(dir.path().join("held"), 10).unwrap();
        let peer = PeerId::random();
        let (a, b) = ((peer, JobId([1; 16])), (peer, JobId([2; 16])));
        let six = [6u8; 6];
        let id = ContentId::of(&six);
        assert!(h.keep(a, id, &six));
        assert!(
            h.keep(b, id, &six),
            "the same bytes for another job cost nothing"
        );
        assert_eq!(h.used(), 6);
        let five = [5u8; 5];
        assert!(
            !h.keep(a, ContentId::of(&five), &five),
            "over the quota: sent instead"
        );
        assert_eq!(h.read(&id).as_deref(), Some(&six[..]));
        h.drop_job(&a);
        assert!(h.has(&id), "job b still holds it");
        h.drop_job(&b);
        assert!(!h.has(&id));
        assert_eq!(h.used(), 0);
        assert_eq!(h.read(&id), None);
        // A file changed on disk behind its back is not served.
        assert!(h.keep(a, id, &six));
        std::fs::write(dir.path().join("held").join(id.to_hex()), b"tampered").unwrap();
        assert_eq!(h.read(&id), None);
    }
}
