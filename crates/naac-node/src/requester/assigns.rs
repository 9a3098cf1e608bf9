//! Sequencing of `Assign`s per provider: each gets the next sequence number, and until a
//! report echoes it (`seen_seq`) its attempts count as held whatever the report's own list
//! says, since the provider had not applied it when it made the list. No IO.

use naac_net::PeerId;
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
}
