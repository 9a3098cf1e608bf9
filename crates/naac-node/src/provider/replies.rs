//! Sending reports, as `Report` requests or as answers to `Assign`s that take results
//! ([`naac_proto::Assign::reply_with_results`]). Each such `Assign` is kept unanswered for
//! up to [`REPLY_HOLD`], and the job's next report rides back on it if one is due by then;
//! otherwise it is answered `Ack` and results go as `Report` requests, as before. A tiny
//! task then costs one exchange instead of two. Bounded: past [`MAX_HELD_REPLIES`] an
//! `Assign` is answered at once.

use super::node::{Internal, JobKey, Provider};
use super::reports::Outgoing;
use naac_proto::{Report, Request, RequestBody, Response, ResponseBody};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long an answer waits for a report.
pub(super) const REPLY_HOLD: Duration = Duration::from_millis(naac_proto::REPLY_HOLD_MS);
/// Most answers held at once, over all requesters.
const MAX_HELD_REPLIES: usize = 1024;

/// The answers held (`C`: a response channel), oldest first per job.
pub(super) struct Replies<C = naac_net::Reply> {
    held: HashMap<JobKey, VecDeque<(C, Instant)>>,
    count: usize,
}

impl<C> Default for Replies<C> {
    fn default() -> Self {
        Self {
            held: HashMap::new(),
            count: 0,
        }
    }
}

impl<C> Replies<C> {
    /// Keeps `channel` for `key`'s next report; gives it back when too many are held.
    fn hold(&mut self, key: JobKey, channel: C, now: Instant) -> Option<C> {
        if self.count >= MAX_HELD_REPLIES {
            return Some(channel);
        }
        self.count += 1;
        self.held.entry(key).or_default().push_back((channel, now));
        None
    }

    /// The oldest answer held for `key`.
    fn take(&mut self, key: &JobKey) -> Option<C> {
        let q = self.held.get_mut(key)?;
        let (channel, _) = q.pop_front()?;
        if q.is_empty() {
            self.held.remove(key);
        }
        self.count -= 1;
        Some(channel)
    }

    /// Answers held since before `now - REPLY_HOLD`.
    fn expired(&mut self, now: Instant) -> Vec<C> {
        let mut out = Vec::new();
        self.held.retain(|_, q| {
            while q
                .front()
                .is_some_and(|(_, since)| now.duration_since(*since) >= REPLY_HOLD)
            {
                if let Some((c, _)) = q.pop_front() {
                    out.push(c);
                }
            }
            !q.is_empty()
        });
        self.count -= out.len();
        out
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl Provider {
    /// Answers an `Assign` from `key.0` with `body`: held for the job's next report when it
    /// asked for results and was taken, else at once.
    pub(super) fn answer_assign(
        &mut self,
        key: JobKey,
        wants_results: bool,
        body: ResponseBody,
        mut channel: naac_net::Reply,
    ) {
        if wants_results && matches!(body, ResponseBody::Ack) && self.jobs.contains_key(&key) {
            match self.replies.hold(key, channel, Instant::now()) {
                None => {
                    // Something may already wait to be sent (tasks handed back at once).
                    self.send_report(key, false);
                    return;
                }
                Some(c) => channel = c,
            }
        }
        self.respond(channel, body);
    }

    /// Sends `report` as the answer to one of `key`'s held `Assign`s, if any is held;
    /// gives it back otherwise.
    pub(super) fn reply_report(&mut self, key: JobKey, report: Report) -> Option<Report> {
        let Some(channel) = self.replies.take(&key) else {
            return Some(report);
        };
        self.respond(channel, ResponseBody::Report(Box::new(report)));
        None
    }

    /// Answers `Ack` to the `Assign`s held past [`REPLY_HOLD`].
    pub(super) fn answer_expired(&mut self) {
        for channel in self.replies.expired(Instant::now()) {
            self.respond(channel, ResponseBody::Ack);
        }
    }

    fn respond(&self, channel: naac_net::Reply, body: ResponseBody) {
        let client = self.runner.client.clone();
        tokio::spawn(async move { client.respond(channel, Response::new(body)).await });
    }

    /// Sends the job's next report, if [`super::reports::JobState::next_report`] says there is
    /// one.
    pub(super) fn send_report(&mut self, key: JobKey, heartbeat: bool) {
        let Some(job) = self.jobs.get_mut(&key) else {
            return;
        };
        let report = match job.next_report(key.1, heartbeat) {
            Outgoing::Nothing => return,
            Outgoing::Renewal(renewal) => {
                let client = self.runner.client.clone();
                tokio::spawn(async move {
                    let _ = client
                        .request(key.0, Request::new(RequestBody::Report(renewal)))
                        .await;
                });
                return;
            }
            Outgoing::Report(r) => r,
        };
        let Some(report) = self.reply_report(key, report) else {
            // Answered on an `Assign`: what did not fit may go at once.
            if let Some(job) = self.jobs.get_mut(&key) {
                job.report_replied();
            }
            return self.send_report(key, false);
        };
        let client = self.runner.client.clone();
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let req = Request::new(RequestBody::Report(report));
            // A report that does not get through is not resent: its results are dropped
            // from what we hold, and the requester reassigns them when it reconciles (the
            // usual cause, a requester that is gone, makes resending pointless anyway).
            let forget = match client.request(key.0, req).await {
                Ok(Response {
                    body: ResponseBody::Ack,
                    ..
                }) => false,
                Ok(other) => {
                    // The requester does not know the job (any more): stop working for it.
                    tracing::debug!(
                        "requester {} answered a report with {:?}",
                        key.0,
                        other.body
                    );
                    true
                }
                Err(e) => {
                    tracing::debug!("failed to report to {}: {e}", key.0);
                    false
                }
            };
            let _ = tx.send(Internal::ReportSent { key, forget }).await;
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use naac_net::PeerId;
    use naac_types::{ContentId, JobId};

    fn key(i: u8) -> JobKey {
        (PeerId::random(), JobId::derive(&ContentId::of(&[i]), b"1"))
    }

    /// A requester that sends `Assign` after `Assign` asking for results cannot make the
    /// provider hold more than `MAX_HELD_REPLIES` open, nor any longer than `REPLY_HOLD`.
    #[test]
    fn held_answers_are_bounded_in_number_and_time() {
        let mut r = Replies::<usize>::default();
        let t0 = Instant::now();
        let k = key(1);
        for i in 0..MAX_HELD_REPLIES {
            assert_eq!(r.hold(k, i, t0), None);
        }
        assert_eq!(
            r.hold(key(2), 99_999, t0),
            Some(99_999),
            "past the bound: at once"
        );
        // Oldest first.
        assert_eq!(r.take(&k), Some(0));
        assert_eq!(r.take(&key(3)), None);
        assert!(r.hold(k, 5_000, t0 + REPLY_HOLD / 2).is_none());
        // At the hold's end every answer still held goes, and nothing held later.
        assert!(r.expired(t0 + REPLY_HOLD / 4).is_empty());
        let gone = r.expired(t0 + REPLY_HOLD);
        assert_eq!(gone.len(), MAX_HELD_REPLIES - 1);
        assert!(!r.is_empty());
        assert_eq!(r.expired(t0 + REPLY_HOLD + REPLY_HOLD / 2), vec![5_000]);
        assert!(r.is_empty());
        assert_eq!(r.count, 0);
    }
}
