//! The provider's paid side, for a node paid at a bank (`--paid-at`): looking up job
//! escrows there, the escrow and order checks on each assignment, and claiming from an
//! escrow the results its payer left unpaid.

use super::node::{Internal, Provider};
use naac_net::PeerId;
use naac_proto::Assign;
use std::time::Instant;

/// An assignment's order, checked, with its runs: what this node claims with.
pub(super) type Order = (naac_ledger::SignedOrder, Vec<(u32, u32)>);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Provider {
    /// Asks the bank this node is paid at about `job`'s escrow, unless a look is under way
    /// or fresh; the answer comes back as [`Internal::Escrow`].
    pub(super) fn look_up_escrow(&mut self, job: naac_types::JobId) {
        let Some((bank, _)) = &self.paid_at else {
            return;
        };
        if !self.escrows.should_ask(job, Instant::now()) {
            return;
        }
        let (bank, tx) = (bank.clone(), self.internal.clone());
        let me = naac_net::ed25519_of_keypair(&self.runner.keypair).map(naac_ledger::AccountKey);
        tokio::spawn(async move {
            let view = bank.escrow_for(job, me).await;
            let _ = tx.send(Internal::Escrow { job, view }).await;
        });
    }

    /// Whether the escrow pays for `a` (on top of what `peer` holds of its job here), for a
    /// node paid at a bank and a job it bid on; other work runs as before.
    pub(super) fn escrow_verdict(
        &mut self,
        peer: PeerId,
        a: &Assign,
    ) -> (super::escrows::Verdict, Option<Order>) {
        use super::escrows::Verdict;
        if self.paid_at.is_none() || !self.asked.contains(&peer, &a.job) {
            return (Verdict::Run, None);
        }
        let in_flight = self
            .jobs
            .get(&(peer, a.job))
            .map_or(0, |j| j.load() as u64)
            .saturating_add(a.tasks.len() as u64);
        let user = self
            .user_of(&peer)
            .and_then(|u| u.parse::<PeerId>().ok())
            .and_then(|p| naac_net::ed25519_of(&p));
        let price = self.ask_price();
        let me = naac_net::ed25519_of(&self.runner.client.peer_id()).map(naac_ledger::AccountKey);
        let bank = self.paid_at.as_ref().map(|(_, k)| *k);
        let min_window = self.min_claim_window.as_millis() as u64;
        let mut order = None;
        let check = self.escrows.get(&a.job).map(|seen| {
            super::admission::escrow_covers(
                &a.job,
                seen.view.as_ref(),
                user,
                price,
                a.limits.fuel,
                in_flight,
            )?;
            let (Some(view), Some(me), Some(bank)) = (seen.view.as_ref(), me, bank) else {
                return Err("this node has no account key to be paid to".into());
            };
            order = Some(super::admission::order_covers(
                a,
                view,
                &me,
                &bank,
                price,
                (min_window, now_ms()),
            )?);
            Ok(())
        });
        let now = Instant::now();
        let verdict = self.escrows.verdict(a.job, check, now);
        // Keep the look fresh while work comes in, and look again after any doubt.
        self.look_up_escrow(a.job);
        (verdict, order)
    }

    /// Looks at the escrows of jobs this node holds claimable results for, and claims them
    /// once claims are open.
    pub(super) fn claim_tick(&mut self) {
        let Some((bank, _)) = &self.paid_at else {
            return;
        };
        for job in self.claims.due(Instant::now()) {
            let (bank, tx) = (bank.clone(), self.internal.clone());
            tokio::spawn(async move {
                let view = bank.escrow(job).await;
                let _ = tx.send(Internal::ClaimLook { job, view }).await;
            });
        }
    }

    pub(super) fn on_claim_look(
        &mut self,
        job: naac_types::JobId,
        view: Result<Option<naac_proto::EscrowView>, String>,
    ) {
        let view = match view {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("the bank did not show job {}'s escrow: {e}", job.short());
                self.claims.look_failed(job);
                return;
            }
        };
        let step = self.claims.looked(job, view.as_ref(), now_ms());
        let super::claims::Step::Claim(claims) = step else {
            return;
        };
        let Some((bank, bank_key)) = self.paid_at.clone() else {
            return;
        };
        let keypair = self.runner.keypair.clone();
        let Some(me) = naac_net::ed25519_of_keypair(&keypair).map(naac_ledger::AccountKey) else {
            return;
        };
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let done = claim(&bank, &bank_key, (&keypair, me), job, claims).await;
            let _ = tx.send(Internal::Claimed { job, done }).await;
        });
    }
}

/// Sends `claims` of `job` that the bank shows unresolved, signed by this node. Returns the
/// runs settled for good: paid (now or before), rejected, or refused for a reason that will
/// not pass; the rest are tried again later (claims not open yet, the bank unreachable).
async fn claim(
    bank: &crate::pay::BankConn,
    bank_key: &naac_ledger::AccountKey,
    (keypair, me): (&naac_net::Keypair, naac_ledger::AccountKey),
    job: naac_types::JobId,
    claims: Vec<((u32, u32), naac_ledger::Request)>,
) -> Vec<(u32, u32)> {
    let runs: Vec<(u32, u32)> = claims.iter().map(|(r, _)| *r).collect();
    // Only what is still owed: most results were paid as usual.
    let owed = match bank.unresolved(job, me, runs.clone()).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(
                "the bank did not say which runs of job {} are owed: {e}",
                job.short()
            );
            return Vec::new();
        }
    };
    let mut done: Vec<(u32, u32)> = Vec::new();
    let mut sent: Vec<(u32, u32)> = Vec::new();
    let mut reqs: Vec<naac_ledger::SignedRequest> = Vec::new();
    for ((run, req), owed) in claims.into_iter().zip(owed) {
        if owed {
            sent.push(run);
            reqs.push(naac_ledger::SignedRequest::new(me, bank_key, &req, |m| {
                naac_net::sign(keypair, m)
            }));
        } else {
            done.push(run);
        }
    }
    if reqs.is_empty() {
        return done;
    }
    let answers = match bank.submit(reqs).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("claims of job {} not sent: {e}", job.short());
            return done;
        }
    };
    let (mut paid, mut refused) = (0, 0);
    for (run, answer) in sent.into_iter().zip(answers) {
        match answer {
            Ok(r) => {
                paid += u32::from(!r.duplicate);
                done.push(run);
            }
            Err(e) if final_refusal(&e) => {
                refused += 1;
                tracing::debug!("claim of task {} attempt {} refused: {e}", run.0, run.1);
                done.push(run);
            }
            Err(e) => tracing::debug!("claim of task {} attempt {} not yet: {e}", run.0, run.1),
        }
    }
    if paid + refused > 0 {
        tracing::info!(
            "claimed {paid} unpaid results of job {} from its escrow ({refused} refused)",
            job.short()
        );
    }
    done
}

/// Whether a bank's refusal of a claim is for good (the run was paid or rejected, the
/// escrow is gone, the claim itself is wrong), not one a later try may pass.
fn final_refusal(why: &str) -> bool {
    [
        "already paid",
        "rejected",
        "is closed",
        "has no escrow",
        "takes no claims",
        "bad order",
        "bad result record",
    ]
    .iter()
    .any(|w| why.contains(w))
}
