//! The checkpoint store: the latest checkpoint of each open task, kept in memory for the run
//! that replaces a lost one. Bytes are refcounted by content id (tasks that saved the same
//! state share them) and bounded by a budget; over it, new checkpoints are refused and the
//! older ones stay usable. No IO.

use crate::output::CheckpointSummary;
use naac_types::ContentId;
use std::collections::HashMap;
use std::sync::Arc;

/// Most checkpoint bytes kept for all open tasks together.
pub const BUDGET: usize = 1 << 30;

/// Why a checkpoint was not kept.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("checkpoint of {len} bytes is over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("the requester's checkpoint store is full")]
    Full,
}

/// The latest checkpoint per open task.
#[derive(Debug)]
pub struct CheckpointStore {
    latest: HashMap<u32, ContentId>,
    /// Bytes by content id, with how many tasks refer to them.
    blobs: HashMap<ContentId, (Arc<Vec<u8>>, u32)>,
    bytes: usize,
    budget: usize,
    max_one: usize,
    pub summary: CheckpointSummary,
    /// With checkpoints kept in the store too: what changed since the caller last looked.
    outbox: Option<Vec<Change>>,
}

/// A change to the checkpoints kept, in order.
#[derive(Debug)]
pub enum Change {
    /// Task `index`'s latest checkpoint is now this one.
    Kept(u32, ContentId, Arc<Vec<u8>>),
    /// Task `index` needs no checkpoint any more (accepted, or failed for good).
    Gone(u32),
}

impl CheckpointStore {
    /// A store of at most `budget` bytes in all, `max_one` per checkpoint.
    pub fn new(budget: usize, max_one: usize) -> Self {
        Self {
            latest: HashMap::new(),
            blobs: HashMap::new(),
            bytes: 0,
            budget,
            max_one,
            summary: CheckpointSummary::default(),
            outbox: None,
        }
    }

    /// From now on, notes what changes for [`CheckpointStore::take_changes`].
    pub fn track(&mut self) {
        self.outbox.get_or_insert_with(Vec::new);
    }

    /// What changed since the last call, in order (nothing unless [`CheckpointStore::track`]ed).
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.outbox.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Task `index`'s latest checkpoint is `id`, whose bytes live elsewhere (in the store,
    /// from an earlier run): a run replacing it resumes from there.
    pub fn restore(&mut self, index: u32, id: ContentId) {
        self.latest.entry(index).or_insert(id);
    }

    /// Keeps `data` as task `index`'s latest checkpoint (the caller checked that the run
    /// sending it is out right now). The same state twice is accepted and changes nothing.
    pub fn offer(&mut self, index: u32, data: Vec<u8>) -> Result<(), Refusal> {
        if data.len() > self.max_one {
            return Err(Refusal::TooLarge {
                len: data.len(),
                limit: self.max_one,
            });
        }
        let id = ContentId::of(&data);
        if self.latest.get(&index) == Some(&id) {
            return Ok(());
        }
        if self.bytes + data.len() > self.budget && !self.blobs.contains_key(&id) {
            return Err(Refusal::Full);
        }
        self.summary.received += 1;
        self.drop_latest(index);
        self.latest.insert(index, id);
        let len = data.len();
        let entry = self.blobs.entry(id).or_insert_with(|| (Arc::new(data), 0));
        if entry.1 == 0 {
            self.bytes += len;
        }
        entry.1 += 1;
        if let Some(o) = &mut self.outbox {
            o.push(Change::Kept(index, id, entry.0.clone()));
        }
        Ok(())
    }

    /// The task's latest checkpoint.
    pub fn latest(&self, index: u32) -> Option<ContentId> {
        self.latest.get(&index).copied()
    }

    /// Checkpoint bytes by id, for a provider's `Fetch`.
    pub fn blob(&self, id: &ContentId) -> Option<&Arc<Vec<u8>>> {
        self.blobs.get(id).map(|(b, _)| b)
    }

    /// A run resumes from a checkpoint: counted for the summary.
    pub fn resumed(&mut self) {
        self.summary.resumed += 1;
    }

    /// Forgets the task's checkpoint, freeing its bytes once no task refers to them.
    pub fn forget(&mut self, index: u32) {
        if self.latest.contains_key(&index)
            && let Some(o) = &mut self.outbox
        {
            o.push(Change::Gone(index));
        }
        self.drop_latest(index);
    }

    /// Drops the task's latest checkpoint, freeing its bytes once nothing refers to them.
    fn drop_latest(&mut self, index: u32) {
        let Some(id) = self.latest.remove(&index) else {
            return;
        };
        if let Some((bytes, refs)) = self.blobs.get_mut(&id) {
            *refs -= 1;
            if *refs == 0 {
                self.bytes -= bytes.len();
                self.blobs.remove(&id);
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_per_task_and_frees_replaced_bytes() {
        let mut s = CheckpointStore::new(100, 50);
        s.offer(1, vec![1; 10]).expect("kept");
        s.offer(1, vec![2; 20]).expect("kept");
        assert_eq!(s.latest(1), Some(ContentId::of(&[2; 20])));
        assert!(s.blob(&ContentId::of(&[1; 10])).is_none());
        assert_eq!(s.bytes(), 20);
        assert_eq!(s.summary.received, 2);
        s.forget(1);
        assert_eq!((s.bytes(), s.latest(1)), (0, None));
    }

    #[test]
    fn the_same_state_twice_changes_nothing() {
        let mut s = CheckpointStore::new(100, 50);
        s.offer(1, vec![7; 10]).expect("kept");
        s.offer(1, vec![7; 10]).expect("kept");
        assert_eq!((s.bytes(), s.summary.received), (10, 1));
    }

    #[test]
    fn shared_bytes_are_counted_once_and_freed_with_the_last_task() {
        let mut s = CheckpointStore::new(100, 50);
        s.offer(1, vec![3; 30]).expect("kept");
        s.offer(2, vec![3; 30]).expect("kept");
        assert_eq!(s.bytes(), 30);
        s.forget(1);
        assert_eq!(s.bytes(), 30);
        assert!(s.blob(&ContentId::of(&[3; 30])).is_some());
        s.forget(2);
        assert_eq!(s.bytes(), 0);
        assert!(s.blob(&ContentId::of(&[3; 30])).is_none());
    }

    #[test]
    fn over_budget_is_refused_and_older_checkpoints_stay() {
        let mut s = CheckpointStore::new(50, 50);
        s.offer(1, vec![1; 40]).expect("kept");
        assert_eq!(s.offer(2, vec![2; 20]), Err(Refusal::Full));
        assert_eq!(s.latest(1), Some(ContentId::of(&[1; 40])));
        assert_eq!(s.latest(2), None);
        // Bytes already held cost nothing more.
        s.offer(2, vec![1; 40]).expect("kept");
        assert_eq!(s.bytes(), 40);
        assert_eq!(
            s.offer(3, vec![0; 51]),
            Err(Refusal::TooLarge { len: 51, limit: 50 })
        );
        assert_eq!(
            Refusal::TooLarge { len: 51, limit: 50 }.to_string(),
            "checkpoint of 51 bytes is over the 50-byte limit"
        );
    }

    #[test]
    fn a_tracked_store_lists_what_changed_in_order() {
        let mut s = CheckpointStore::new(100, 50);
        s.offer(1, vec![1; 10]).expect("kept");
        assert!(s.take_changes().is_empty(), "nothing is noted untracked");
        s.track();
        s.offer(1, vec![2; 10]).expect("kept");
        s.offer(2, vec![3; 10]).expect("kept");
        s.forget(1);
        s.forget(9);
        let got: Vec<String> = s
            .take_changes()
            .iter()
            .map(|c| match c {
                Change::Kept(i, id, b) => {
                    format!("kept {i} {} {}", *id == ContentId::of(b), b.len())
                }
                Change::Gone(i) => format!("gone {i}"),
            })
            .collect();
        assert_eq!(got, ["kept 1 true 10", "kept 2 true 10", "gone 1"]);
        assert!(s.take_changes().is_empty());
        // A checkpoint whose bytes live in the store: the latest, with nothing held here.
        s.restore(7, ContentId::of(b"stored"));
        assert_eq!(s.latest(7), Some(ContentId::of(b"stored")));
        assert!(s.blob(&ContentId::of(b"stored")).is_none());
    }
}
