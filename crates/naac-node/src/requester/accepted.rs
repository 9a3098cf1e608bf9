//! What the session does with a verdict: pays the agreeing copies, queues the accepted
//! one for writing, keeps what later stages take from it (and who holds what stayed with
//! its providers) and records who agreed.

use super::session::Session;
use super::writer::{Write, WriteJob};
use naac_net::PeerId;
use naac_sched::TaskId;
use naac_types::{ContentId, Price};

impl Session<'_> {
    /// Performs a verdict: pays the agreeing copies, queues the accepted one for writing and
    /// records who agreed.
    pub(super) fn on_verdict(
        &mut self,
        task: TaskId,
        accepted: Option<ContentId>,
        verified: bool,
        votes: Vec<(PeerId, ContentId)>,
    ) {
        let index = task.0;
        let v = self.tally.verdict(index, accepted, verified, &votes);
        let terms = self.bidding.take_terms(index);
        let mut paid: Vec<(u32, Price)> = Vec::new();
        if let Some(payer) = self.payer.as_mut() {
            for c in v.pay {
                let Some((_, t)) = terms.iter().find(|(a, _)| *a == c.attempt) else {
                    continue;
                };
                let record = naac_ledger::SignedRecord {
                    bytes: c.record,
                    sig: c.signature,
                };
                payer.settle(c.provider, record, t, c.fuel);
                paid.push((c.attempt, t.price));
            }
        }
        self.checkpoints.forget(index);
        if let Some((vote, copies)) = v.write {
            let price = paid
                .iter()
                .find(|(a, _)| *a == vote.result.attempt)
                .map(|(_, p)| *p);
            let stages = &self.prepared.stages;
            if !stages.is_empty() && super::stages::Feeds::feeds_others(stages, index) {
                let r = &vote.result;
                let files = r
                    .outputs
                    .iter()
                    .map(|f| (f.name.as_str(), f.data.as_slice()));
                // Each agreeing copy's provider holds what it says it kept.
                self.feeds.accept(
                    index,
                    &r.stdout,
                    files,
                    &r.held,
                    &v.holders,
                    &mut self.blobs,
                );
            }
            let assigned_ms = self
                .assigned_at
                .remove(&index)
                .and_then(|a| {
                    a.iter()
                        .find(|(at, _)| *at == vote.result.attempt)
                        .map(|x| x.1)
                })
                .unwrap_or_default();
            self.writer.push(WriteJob::Write(Write {
                index,
                provider: vote.provider,
                digest: vote.digest,
                record: vote.record,
                verified,
                copies,
                price,
                assigned_ms,
                accepted_ms: self.now().0,
                result: Box::new(vote.result),
            }));
        }
        for change in &v.reputation {
            self.apply_reputation(change);
        }
        for p in v.suspects {
            self.check_reputation(p);
        }
    }
}
