//! Stragglers: observed run times (mean and median) and speculative copies of runs that
//! are out far longer than the median.

use crate::{Attempt, Millis, Scheduler, TaskId};
use std::hash::Hash;

/// Completed run times kept for the median.
pub(crate) const DURATION_SAMPLES: usize = 1001;
/// Completed runs needed before stragglers are judged.
const MIN_DURATION_SAMPLES: usize = 3;

impl<P: Clone + Eq + Hash + std::fmt::Debug> Scheduler<P> {
    /// The median run time of completed runs, once there are enough of them.
    pub fn median_run_ms(&mut self) -> Option<u64> {
        if self.durations.len() < MIN_DURATION_SAMPLES {
            return None;
        }
        if self.median_cache.is_none() {
            let mut v: Vec<u64> = self.durations.iter().copied().collect();
            let mid = v.len() / 2;
            let (_, m, _) = v.select_nth_unstable(mid);
            self.median_cache = Some(*m);
        }
        self.median_cache
    }

    pub(crate) fn record_duration(&mut self, ms: u64) {
        if self.durations.len() >= DURATION_SAMPLES {
            self.durations.pop_front();
        }
        self.durations.push_back(ms);
        self.median_cache = None;
        let run = ms as f64;
        self.mean_run_ms = Some(match self.mean_run_ms {
            None => run,
            Some(m) => m * 0.9 + run * 0.1,
        });
    }

    /// The open tasks whose every run has been out far longer than the median (and that
    /// have no speculative copy yet): what [`Scheduler::speculate`] may copy. Found once per
    /// `fill`, not once per provider: at a job's tail, with many providers and many runs
    /// out, that scan was most of the scheduler's time.
    pub(crate) fn stragglers(&mut self, now: Millis) -> Vec<TaskId> {
        let factor = self.config.straggler_factor;
        if factor <= 0.0 {
            return Vec::new();
        }
        let Some(median) = self.median_run_ms() else {
            return Vec::new();
        };
        let threshold = ((median as f64 * factor) as u64).max(self.config.straggler_min_ms);
        self.active
            .iter()
            .filter(|t| {
                let task = &self.tasks[t.0 as usize];
                task.wanted() == 0
                    && task.released
                    && !task.runs.iter().any(|r| r.speculative)
                    && task
                        .runs
                        .iter()
                        .all(|r| now.0.saturating_sub(r.since.0) > threshold)
            })
            .copied()
            .collect()
    }

    /// Starts speculative copies on `provider` of the `candidates` it may take; those
    /// copied leave the list.
    pub(crate) fn speculate(
        &mut self,
        candidates: &mut Vec<TaskId>,
        provider: &P,
        room: &mut u32,
        batch: &mut Vec<(TaskId, Attempt)>,
        now: Millis,
        active_providers: usize,
    ) {
        let mut i = 0;
        while i < candidates.len() && *room > 0 {
            let t = candidates[i];
            if !self.eligible(t, provider, active_providers) {
                i += 1;
                continue;
            }
            batch.push((t, self.add_run(t, provider, now, true)));
            *room -= 1;
            candidates.remove(i);
        }
    }
}
