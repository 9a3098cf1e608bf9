//! The provider's paid side, for a node paid at a bank (`--paid-at`): looking up job
//! escrows there, the escrow and order checks on each assignment, and claiming from an
//! escrow the results its payer left unpaid.

use super::node::{Internal, Provider};
use naac_net::PeerId;
use naac_proto::Assign;
use std::time::Instant;

/// An assignment's order, checked, with its runs: what this node claims with.
pub(super) type Order = (naac_ledger::SignedOrder, Vec<(u32, u32)>);

/// Most assignments held for a fresh look at their escrow, in all and per job.
const MAX_HELD_ASSIGNS: usize = 1024;
const MAX_HELD_PER_JOB: usize = 64;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Provider {
    /// Asks the bank this node is paid at about `job`'s escrow, unless a look is under way
    /// or fresh; the answer comes back as [`Internal::Escrow`].
    pub(super) fn look_up_escrow(&mut self, job: naac_types::JobId) {
        if self.paid_at.is_some() && self.escrows.should_ask(job, Instant::now()) {
            self.ask_bank(job);
        }
    }

    /// Asks the bank about `job`'s escrow now, fresh look or not, unless a look is under way.
    fn look_up_escrow_now(&mut self, job: naac_types::JobId) {
        if self.paid_at.is_some() && self.escrows.force_ask(job, Instant::now()) {
            self.ask_bank(job);
        }
    }

    /// Sends the look at `job`'s escrow (with what it reserves for this node).
    fn ask_bank(&self, job: naac_types::JobId) {
        let Some((bank, _)) = &self.paid_at else {
            return;
        };
        let (bank, tx) = (bank.clone(), self.internal.clone());
        let me = naac_net::ed25519_of_keypair(&self.runner.keypair).map(naac_ledger::AccountKey);
        tokio::spawn(async move {
            let view = bank.escrow_for(job, me).await;
            let _ = tx.send(Internal::Escrow { job, view }).await;
        });
    }

    /// Whether `a` is paid work whose check fails on the escrow as last seen (or it was not
    /// seen yet): then the assignment waits for a fresh look before it is answered, rather
    /// than going back unstarted (its order may have been committed since).
    pub(super) fn should_hold(&self, peer: &PeerId, a: &Assign) -> bool {
        self.paid_at.is_some()
            && self.asked.contains(peer, &a.job)
            && !matches!(self.paid_check(*peer, a), Some(Ok(_)))
    }

    /// Holds `a` until the bank shows its escrow afresh (bounded: past the bounds it is
    /// answered at once, as before): then it is given back.
    pub(super) fn hold_assign(
        &mut self,
        peer: PeerId,
        a: Assign,
        channel: naac_net::Reply,
    ) -> Option<(Assign, naac_net::Reply)> {
        let total: usize = self.held_assigns.values().map(Vec::len).sum();
        let here = self.held_assigns.get(&a.job).map_or(0, Vec::len);
        if total >= MAX_HELD_ASSIGNS || here >= MAX_HELD_PER_JOB {
            return Some((a, channel));
        }
        let job = a.job;
        self.held_assigns
            .entry(job)
            .or_default()
            .push((peer, a, channel, Instant::now()));
        self.look_up_escrow_now(job);
        None
    }

    /// The bank showed `job`'s escrow: the assignments held for it are answered now, a
    /// failing check believed (the look is newer than they are).
    pub(super) fn release_held(&mut self, job: naac_types::JobId) {
        let Some(held) = self.held_assigns.remove(&job) else {
            return;
        };
        for (peer, a, channel, arrived) in held {
            self.escrows.doubt(job, arrived);
            let wants = a.reply_with_results;
            let body = self.on_assign(peer, a);
            self.answer_assign((peer, job), wants, body, channel);
        }
    }

    /// The checks of paid work `a` against the escrow as last seen: `None` when it was not
    /// seen yet; `Ok` with the order to claim with.
    fn paid_check(&self, peer: PeerId, a: &Assign) -> Option<Result<Option<Order>, String>> {
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
        self.escrows.get(&a.job).map(|seen| {
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
            if view.claim_window_ms == 0 && min_window == 0 {
                return Ok(None);
            }
            let order =
                super::admission::order_covers(a, view, &me, &bank, price, (min_window, now_ms()))?;
            Ok(Some(order))
        })
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
        let mut order = None;
        let check = self.paid_check(peer, a).map(|c| {
            c.map(|o| {
                order = o;
            })
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
