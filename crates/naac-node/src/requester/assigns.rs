//! Sequencing of `Assign`s per provider: each gets the next sequence number, and until a
//! report echoes it (`seen_seq`) its attempts count as held whatever the report's own list
//! says, since the provider had not applied it when it made the list. No IO.

use naac_net::PeerId;
use naac_proto::MAX_TASKS_PER_ASSIGN;
use naac_sched::TaskId;
use std::collections::{HashMap, VecDeque};

/// An `Assign` not yet confirmed applied: its sequence number and its attempts.
type Sent = (u64, Vec<(TaskId, u32)>);

/// Every provider's last sequence number and its unconfirmed assignments.
#[derive(Debug, Default)]
pub struct Assigns {
    next_seq: HashMap<PeerId, u64>,
    unconfirmed: HashMap<PeerId, VecDeque<Sent>>,
}

impl Assigns {
    /// Numbers an `Assign` of `tasks` to `provider` and remembers it until confirmed.
    pub fn send(&mut self, provider: PeerId, tasks: Vec<(TaskId, u32)>) -> u64 {
        let seq = self.next_seq.entry(provider).or_default();
        *seq += 1;
        let seq = *seq;
        self.unconfirmed
            .entry(provider)
            .or_default()
            .push_back((seq, tasks));
        seq
    }

    /// What `provider` holds according to a report that lists `held` and has applied every
    /// `Assign` up to `seen_seq`: the list plus every assignment it had not applied yet.
    pub fn held(
        &mut self,
        provider: &PeerId,
        seen_seq: u64,
        held: impl IntoIterator<Item = (TaskId, u32)>,
    ) -> Vec<(TaskId, u32)> {
        let mut all: Vec<(TaskId, u32)> = held.into_iter().collect();
        if let Some(sent) = self.unconfirmed.get_mut(provider) {
            while sent.front().is_some_and(|(seq, _)| *seq <= seen_seq) {
                sent.pop_front();
            }
            all.extend(sent.iter().flat_map(|(_, tasks)| tasks.iter().copied()));
        }
        all
    }

    /// The provider went away: its unconfirmed assignments mean nothing now (numbering
    /// goes on, so a reconnect never reuses a number).
    pub fn forget(&mut self, provider: &PeerId) {
        self.unconfirmed.remove(provider);
    }
}

/// Bytes of `Assign` a batch may fill, well under the wire's limit for the kind
/// ([`naac_proto::request_limit`]): a batch is cut at this or at `MAX_TASKS_PER_ASSIGN`.
const ASSIGN_BYTES: usize = 32 << 20;

/// Splits tasks into `Assign`s of at most `MAX_TASKS_PER_ASSIGN` tasks and about
/// [`ASSIGN_BYTES`] (arguments, input names and a fixed allowance per task).
pub(super) fn assign_chunks(specs: &[naac_proto::TaskSpec]) -> Vec<&[naac_proto::TaskSpec]> {
    let size = |t: &naac_proto::TaskSpec| {
        256 + t.args.iter().map(|a| a.len() + 8).sum::<usize>()
            + t.inputs.iter().map(|(n, _)| n.len() + 48).sum::<usize>()
    };
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, t) in specs.iter().enumerate() {
        let b = size(t);
        if i > start && (i - start == MAX_TASKS_PER_ASSIGN || bytes + b > ASSIGN_BYTES) {
            out.push(&specs[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += b;
    }
    if start < specs.len() {
        out.push(&specs[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unapplied_assignments_count_as_held_until_echoed() {
        let p = PeerId::random();
        let mut a = Assigns::default();
        assert_eq!(a.send(p, vec![(TaskId(1), 0)]), 1);
        assert_eq!(a.send(p, vec![(TaskId(2), 0), (TaskId(3), 1)]), 2);
        // A report made before either was applied.
        let held = a.held(&p, 0, [(TaskId(9), 0)]);
        assert_eq!(
            held,
            vec![
                (TaskId(9), 0),
                (TaskId(1), 0),
                (TaskId(2), 0),
                (TaskId(3), 1)
            ]
        );
        // The first is applied: only its own list counts for it now.
        assert_eq!(a.held(&p, 1, []), vec![(TaskId(2), 0), (TaskId(3), 1)]);
        assert!(a.held(&p, 2, []).is_empty());
    }

    #[test]
    fn providers_are_numbered_apart_and_numbers_survive_a_reconnect() {
        let (p, q) = (PeerId::random(), PeerId::random());
        let mut a = Assigns::default();
        assert_eq!(a.send(p, vec![]), 1);
        assert_eq!(a.send(q, vec![]), 1);
        a.send(p, vec![(TaskId(4), 2)]);
        a.forget(&p);
        assert!(a.held(&p, 0, []).is_empty());
        assert_eq!(a.send(p, vec![]), 3);
    }

    fn spec(index: u32, arg: usize) -> naac_proto::TaskSpec {
        naac_proto::TaskSpec {
            index,
            attempt: 1,
            args: vec!["x".repeat(arg)],
            stdin: None,
            inputs: Vec::new(),
            seed: naac_types::ContentId::of(b"s"),
            resume: None,
            env: Vec::new(),
        }
    }

    #[test]
    fn assigns_are_cut_by_count_and_by_bytes() {
        let small: Vec<_> = (0..10_000).map(|i| spec(i, 10)).collect();
        let sizes: Vec<usize> = assign_chunks(&small).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![4096, 4096, 1808]);
        // 20 KiB of arguments each: 4,096 would be 80 MiB, over the wire's 64 MiB.
        let big: Vec<_> = (0..4096).map(|i| spec(i, 20 << 10)).collect();
        let chunks = assign_chunks(&big);
        assert!(chunks.len() >= 3, "{}", chunks.len());
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 4096);
        assert!(assign_chunks(&[]).is_empty());
    }
}
