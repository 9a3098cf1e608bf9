//! The session's handlers: what each network event, provider request and scheduler command
//! turns into. Decisions are the parts'; here they are performed (scheduler calls, payments,
//! reputation writes, network requests).

use super::session::{Internal, Session, VERIFIERS_PER_PROVIDER, Verifying};
use super::tally::{Check, RepChange, Streak};
use super::writer::WriteJob;
use naac_net::{Event, PeerId};
use naac_proto::{
    HostStatus, Report, Request, RequestBody, Response, ResponseBody, TaskResult, VERSION,
};
use naac_sched::{Command, Millis, ProviderInfo, TaskId};
use naac_types::{JobId, ResultRecord};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;

impl Session<'_> {
    pub(super) async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Connected(peer, ip) => {
                if let Some(ip) = ip {
                    self.peer_ips.insert(peer, ip);
                }
                let client = self.client.clone();
                let tx = self.internal.clone();
                let hello = self.hello.clone();
                tokio::spawn(async move {
                    let sent = std::time::Instant::now();
                    let offer = match client
                        .request(peer, Request::new(RequestBody::Hello(hello)))
                        .await
                    {
                        Ok(Response {
                            body: ResponseBody::Welcome(w),
                            ..
                        }) => Some(w),
                        Ok(Response {
                            body: ResponseBody::Refused(why),
                            ..
                        }) => {
                            let _ = tx.send(Internal::Declined(peer, why)).await;
                            return;
                        }
                        _ => None,
                    };
                    let rtt = client
                        .rtts()
                        .await
                        .into_iter()
                        .find_map(|(p, d)| (p == peer).then_some(d))
                        .or(Some(sent.elapsed()));
                    let _ = tx.send(Internal::Hello(peer, offer, rtt)).await;
                });
            }
            Event::Disconnected(peer) => {
                self.locals.remove(&peer);
                self.addrs.remove(&peer);
                self.rtts.remove(&peer);
                self.feeds.forget_peer(&peer);
                self.hosts.remove(&peer);
                self.bidding.forget(&peer);
                self.known_peers.retain(|p| *p != peer);
                self.peer_ips.remove(&peer);
                self.relayed.remove(&peer);
                self.assigns.forget(&peer);
                let now = self.now();
                self.sched.provider_lost(&peer, now);
                self.recheck_locals();
                self.drive();
            }
            Event::Request {
                peer,
                request,
                channel,
                relayed,
            } => {
                // Results answering an `Assign` are counted by the path the provider's
                // requests last took.
                if relayed {
                    self.relayed.insert(peer);
                } else if !self.relayed.is_empty() {
                    self.relayed.remove(&peer);
                }
                if let RequestBody::Report(r) = &request.body {
                    self.count_arrived(peer, r.results.len());
                }
                let body = if request.v != VERSION {
                    ResponseBody::Refused(format!("message version {} is not supported", request.v))
                } else {
                    self.on_request(peer, request.body)
                };
                self.client.respond(channel, Response::new(body)).await;
            }
            Event::BadFrame { peer, error } => {
                tracing::warn!("dropped a bad frame from {peer}: {error}");
            }
            Event::Gossip {
                topic,
                data,
                source,
                propagated_by,
            } => self.on_offer(&topic, &data, source, propagated_by),
            Event::Listening(_) => {}
        }
    }

    fn on_request(&mut self, peer: PeerId, body: RequestBody) -> ResponseBody {
        match body {
            RequestBody::Bank(_) => ResponseBody::Refused("this node is not a bank".into()),
            RequestBody::Fetch { id } => self.blobs.serve(&id, |id| self.checkpoints.blob(id)),
            RequestBody::Report(report) => self.on_report(peer, report),
            RequestBody::Checkpoint {
                job,
                index,
                attempt,
                data,
            } => self.on_checkpoint(peer, job, index, attempt, data),
            RequestBody::Status(st) => {
                self.on_status(peer, *st);
                ResponseBody::Ack
            }
            RequestBody::Hello(_) => {
                ResponseBody::Refused("this node is a requester, not a provider".into())
            }
            RequestBody::Assign(_) | RequestBody::Cancel { .. } | RequestBody::Store(_) => {
                ResponseBody::Refused("this node is a requester, not a provider".into())
            }
        }
    }

    /// Counts `n` results arrived from `peer`, by the path its requests last took.
    fn count_arrived(&mut self, peer: PeerId, n: usize) {
        let a = self.arrived.entry(peer).or_default();
        *(if self.relayed.contains(&peer) {
            &mut a.relayed
        } else {
            &mut a.direct
        }) += n as u64;
    }

    fn on_report(&mut self, peer: PeerId, report: Report) -> ResponseBody {
        if report.job != self.prepared.id {
            return ResponseBody::Refused(format!("unknown job {}", report.job));
        }
        let now = self.now();
        self.sched.renew(&peer, now);
        if !report.returned.is_empty() {
            tracing::info!(
                "provider {peer} handed back {} tasks unstarted (paused by its owner's policy, at its share, or waiting on the job's escrow)",
                report.returned.len()
            );
            let returned: Vec<(TaskId, u32)> = report
                .returned
                .iter()
                .map(|(t, a)| (TaskId(*t), *a))
                .collect();
            if let Some(payer) = self.payer.as_mut() {
                payer.release(report.returned.iter().copied());
            }
            for (t, a) in &report.returned {
                self.tally.returned(*t, *a);
                // Handed back unstarted: never paid, so it owes nothing.
                if self.sched.is_running(&peer, TaskId(*t), *a) {
                    self.bidding.drop_run(*t, *a);
                }
            }
            self.sched.runs_returned(&peer, &returned, now);
        }
        // What the provider holds: its list, the results in this report, and every
        // assignment it had not yet applied when it took the list.
        let listed = report
            .held
            .iter()
            .copied()
            .chain(report.results.iter().map(|r| (r.index, r.attempt)))
            .map(|(t, a)| (TaskId(t), a));
        // Results it sent that wait for the verifier are still its runs.
        let verifying = self
            .verifying
            .get(&peer)
            .into_iter()
            .flat_map(|v| v.runs.iter().map(|(t, a)| (TaskId(*t), *a)));
        let held = self
            .assigns
            .held(&peer, report.seen_seq, listed.chain(verifying));
        self.sched.reconcile(&peer, &held, now);
        let signed = self.tally.signatures(peer, &report.results);
        for (result, signed) in report.results.into_iter().zip(signed) {
            self.on_result(peer, result, signed, now);
        }
        self.drive();
        ResponseBody::Ack
    }

    /// Hands one result to the tally and performs its word; a result the verifier must judge
    /// first goes to it off the loop, within its provider's budget, and comes back as
    /// [`Internal::Verified`].
    fn on_result(
        &mut self,
        peer: PeerId,
        result: TaskResult,
        signed: Option<(ResultRecord, bool)>,
        now: Millis,
    ) {
        let check = self.tally.check(peer, &result, signed.as_ref());
        if check == Check::Verify {
            let (Some(verifier), Some((record, _))) = (&self.prepared.verifier, signed) else {
                return;
            };
            let run = match super::sandboxed::verifier_run(
                self.prepared,
                &mut self.blobs,
                result.index,
                &result,
            ) {
                Ok(run) => run,
                Err(e) => {
                    let check = self
                        .tally
                        .verified(peer, &result, &record, Err(format!("{e:#}")));
                    self.perform(peer, result, check, now);
                    return;
                }
            };
            let v = self.verifying.entry(peer).or_insert_with(|| Verifying {
                budget: Arc::new(Semaphore::new(VERIFIERS_PER_PROVIDER)),
                runs: HashSet::new(),
            });
            v.runs.insert((result.index, result.attempt));
            let (mine, all) = (v.budget.clone(), self.verifiers.clone());
            let (sandbox, verifier, tx) = (
                self.sandbox.clone(),
                verifier.clone(),
                self.internal.clone(),
            );
            tokio::spawn(async move {
                let verdict = async {
                    let _mine = mine.acquire_owned().await?;
                    let _all = all.acquire_owned().await?;
                    super::sandboxed::verify(sandbox, verifier, run).await
                }
                .await
                .map_err(|e| format!("{e:#}"));
                let _ = tx
                    .send(Internal::Verified {
                        peer,
                        result: Box::new(result),
                        record: Box::new(record),
                        verdict,
                    })
                    .await;
            });
            return;
        }
        self.perform(peer, result, check, now);
    }

    /// Performs the tally's word on a result: a vote for the scheduler, a retry, or a
    /// refusal counted against the provider.
    fn perform(&mut self, peer: PeerId, result: TaskResult, check: Check, now: Millis) {
        let (task, attempt) = (TaskId(result.index), result.attempt);
        match check {
            Check::Stale | Check::Verify => {}
            Check::Failed(kind) => {
                if result.message.contains(super::stages::NO_HOLDER) {
                    // No holder gave it an output it takes. Holders gone from here are
                    // dropped at once; the others only when it happens again, so one
                    // provider's word cannot make every upstream task run again.
                    let n = self.no_holder.entry(task.0).or_default();
                    *n += 1;
                    let again = *n > 1;
                    let known = &self.known_peers;
                    self.feeds
                        .lost_inputs_of(&self.prepared.stages, task.0, |p| {
                            !again && known.contains(p)
                        });
                }
                self.sched.task_failed(&peer, task, attempt, kind, now)
            }
            Check::Refused(kind) => {
                self.apply_reputation(&RepChange {
                    provider: peer,
                    verified: 0,
                    rejected: 1,
                    streak: Streak::Reset,
                });
                self.sched.task_rejected(&peer, task, attempt, kind, now);
                self.check_reputation(peer);
            }
            Check::Vote {
                digest,
                record,
                resumed,
            } => {
                if resumed {
                    // It started from state another provider made: under a verifying
                    // policy, an independent copy must confirm it.
                    self.sched.require_check(task);
                }
                if self.sched.task_result(&peer, task, attempt, digest, now) {
                    self.tally.add_vote(peer, result, digest, record);
                }
            }
        }
    }

    fn on_checkpoint(
        &mut self,
        peer: PeerId,
        job: JobId,
        index: u32,
        attempt: u32,
        data: Vec<u8>,
    ) -> ResponseBody {
        if job != self.prepared.id {
            return ResponseBody::Refused(format!("unknown job {job}"));
        }
        if data.len() > naac_sandbox::MAX_CHECKPOINT_BYTES {
            return ResponseBody::Refused(format!(
                "checkpoint of {} bytes is over the {}-byte limit",
                data.len(),
                naac_sandbox::MAX_CHECKPOINT_BYTES
            ));
        }
        // Only the runs out right now may checkpoint; anything else is stale.
        if !self.sched.is_running(&peer, TaskId(index), attempt) {
            return ResponseBody::Ack;
        }
        match self.checkpoints.offer(index, data) {
            Ok(()) => ResponseBody::Ack,
            Err(why) => {
                tracing::debug!("refused a checkpoint of task {index}: {why}");
                ResponseBody::Refused(why.to_string())
            }
        }
    }

    /// Writes one provider's reputation change, if the run keeps a reputation store.
    pub(super) fn apply_reputation(&mut self, c: &RepChange) {
        let Some(rep) = self.reputation.as_mut() else {
            return;
        };
        let name = c.provider.to_string();
        if (c.verified, c.rejected) != (0, 0)
            && let Err(e) = rep.add(&name, c.verified, c.rejected, 0)
        {
            tracing::warn!("reputation store: {e:#}");
        }
        let streak = match c.streak {
            Streak::Reset => Some(0),
            Streak::Current => self.sched.streak(&c.provider),
        };
        if let Some(streak) = streak {
            rep.set_streak(&name, &self.module_hex, streak);
        }
    }

    /// Drops a provider whose reputation fell below the job's floor.
    pub(super) fn check_reputation(&mut self, peer: PeerId) {
        let min = self.prepared.job.verify.min_reputation;
        let Some(rep) = self.reputation.as_mut() else {
            return;
        };
        let Ok(record) = rep.get(&peer.to_string()) else {
            return;
        };
        if record.excluded(min) && self.banned.insert(peer) {
            tracing::warn!(
                "dropping provider {peer}: reputation {:.2} is below {min} ({} verified, {} rejected)",
                record.score(),
                record.verified,
                record.rejected
            );
            let now = self.now();
            self.sched.provider_lost(&peer, now);
            // Tell it to stop working on this job.
            let client = self.client.clone();
            let req = Request::new(RequestBody::Cancel {
                job: self.prepared.id,
                tasks: Vec::new(),
            });
            tokio::spawn(async move {
                let _ = client.request(peer, req).await;
            });
        }
    }

    pub(super) fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Hello(peer, Some(w), rtt) => {
                let w = *w;
                if let Some(d) = rtt {
                    self.rtts.insert(peer, d);
                }
                let own = format!("/p2p/{peer}");
                let addrs: Vec<String> = w
                    .addrs
                    .iter()
                    .filter(|a| a.len() <= 256 && a.ends_with(&own))
                    .take(naac_proto::MAX_WELCOME_ADDRS)
                    .cloned()
                    .collect();
                self.addrs.insert(peer, addrs);
                if self.bidding.paid() {
                    let reputation = self
                        .reputation
                        .as_mut()
                        .and_then(|r| r.get(&peer.to_string()).ok())
                        .map(|r| r.score());
                    let now = self.now();
                    if let Err(why) = self.bidding.take(
                        peer,
                        w.bid.as_ref(),
                        rtt,
                        reputation,
                        now,
                        crate::survey::unix_ms(),
                    ) {
                        tracing::info!("provider {peer} does not bid for this job: {why}");
                        return;
                    }
                    self.ask_standing(peer);
                }
                self.hosts.insert(peer, w.status.clone());
                self.on_hello(peer, w.slots, w.owner);
                self.apply_status(peer);
                if self.bidding.paid() {
                    self.rerank();
                }
            }
            Internal::Hello(_, None, _) => {}
            Internal::Verified {
                peer,
                result,
                record,
                verdict,
            } => {
                if let Some(v) = self.verifying.get_mut(&peer) {
                    v.runs.remove(&(result.index, result.attempt));
                    if v.runs.is_empty() {
                        self.verifying.remove(&peer);
                    }
                }
                let now = self.now();
                let check = self.tally.verified(peer, &result, &record, verdict);
                self.perform(peer, *result, check, now);
            }
            Internal::Reask(peer, w) => {
                let now = self.now();
                match self.bidding.take(
                    peer,
                    w.bid.as_ref(),
                    None,
                    None,
                    now,
                    crate::survey::unix_ms(),
                ) {
                    Ok(()) => self.rerank(),
                    Err(why) => tracing::warn!("provider {peer} gave no fresh ask: {why}"),
                }
            }
            Internal::Standing(peer, standing) => {
                self.bidding.set_standing(peer, standing);
                self.rerank();
            }
            Internal::TopUp(outcome) => {
                let now = self.now();
                if let Some(why) = self.budget.as_mut().and_then(|b| b.settled(outcome, now)) {
                    tracing::warn!("{why}");
                }
            }
            Internal::Declined(peer, why) => {
                tracing::info!("{peer} declined: {why}");
                self.bidding.declined(peer, why);
            }
            Internal::Replied(peer, report) => {
                // A report answering an `Assign`: the same as one sent as a request.
                self.count_arrived(peer, report.results.len());
                if let ResponseBody::Refused(why) = self.on_report(peer, *report) {
                    tracing::debug!("refused a report from {peer} answering an assignment: {why}");
                }
            }
            Internal::AssignFailed(peer, why, runs) => {
                tracing::warn!("provider {peer} did not take its tasks: {why}; dropping it");
                // Their orders' reservations are free for the runs that replace them.
                if let Some(payer) = self.payer.as_mut() {
                    payer.release(runs);
                }
                self.known_peers.retain(|p| *p != peer);
                let now = self.now();
                self.sched.provider_lost(&peer, now);
                // Its Hello is not repeated on this connection: close it, so a reconnect
                // starts clean.
                let client = self.client.clone();
                tokio::spawn(async move { client.disconnect(peer).await });
            }
        }
        self.drive();
    }

    /// A provider's offer on the market topic: kept as soft state; a provider we have not
    /// met that accepts work at our price is dialled (its `Hello` follows on connection).
    fn on_offer(&mut self, topic: &str, data: &[u8], source: Option<PeerId>, via: PeerId) {
        let (hosts, banned, bidding) = (&self.hosts, &self.banned, &self.bidding);
        let contact = self.market.heard(topic, data, source, via, |peer, o| {
            o.accepting
                && (!bidding.paid() || o.price <= bidding.max_price())
                && !hosts.contains_key(peer)
                && !banned.contains(peer)
        });
        if let Some((peer, addr)) = contact {
            crate::survey::dial(&self.client, peer, addr);
        }
    }

    /// Ends the first bidding window when it is over: the bidders may take work now.
    pub(super) fn close_bidding(&mut self) {
        if !self.bidding.close_due(self.now()) {
            return;
        }
        let peers: Vec<PeerId> = self.bidding.bidders().copied().collect();
        tracing::debug!("bidding closed with {} bids", peers.len());
        for p in peers {
            self.apply_status(p);
        }
        self.rerank();
        self.drive();
    }

    /// Offers work to bidders in auction order.
    fn rerank(&mut self) {
        let order = self.bidding.order();
        let now = self.now();
        self.sched.set_preference(&order, now);
    }

    fn on_hello(&mut self, peer: PeerId, slots: u32, owner: Option<String>) {
        let name = peer.to_string();
        let mut streak = 0;
        if let Some(rep) = self.reputation.as_mut() {
            let min = self.prepared.job.verify.min_reputation;
            match rep.get(&name) {
                Ok(r) if r.excluded(min) => {
                    tracing::warn!(
                        "not using provider {peer}: reputation {:.2} is below {min}",
                        r.score()
                    );
                    self.banned.insert(peer);
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("reputation store: {e:#}"),
            }
            streak = rep.streak(&name, &self.module_hex).unwrap_or(0);
        }
        if self.banned.contains(&peer) {
            return;
        }
        tracing::debug!("provider {peer} joined with {slots} slots");
        if !self.known_peers.contains(&peer) {
            self.known_peers.push(peer);
        }
        self.first_provider
            .get_or_insert_with(|| self.started.elapsed());
        let mut groups = Vec::new();
        if let Some(o) = &owner {
            groups.push(format!("owner:{o}"));
        }
        if let Some(net) = self.peer_ips.get(&peer).and_then(|ip| network_label(*ip)) {
            groups.push(net);
        }
        let local = self
            .local
            .as_ref()
            .is_some_and(|l| owner.as_deref() == Some(l.owner.as_str()));
        if local {
            self.locals.insert(peer);
        }
        let now = self.now();
        let paused = self.bidding.open()
            || self.idle_local(&peer)
            || self.hosts.get(&peer).is_some_and(|st| {
                !self
                    .prepared
                    .rule_out(st, self.rtts.get(&peer).copied())
                    .is_empty()
            });
        self.sched.provider_joined(
            peer,
            ProviderInfo {
                slots,
                groups,
                streak,
                paused,
                fallback: local,
                stage_mask: self.hosts.get(&peer).map_or(0, |st| {
                    self.prepared.stage_mask(st, self.rtts.get(&peer).copied())
                }),
            },
            now,
        );
        if !local {
            self.recheck_locals();
        }
    }

    /// A local worker that must wait: the run's local workers may only work beside a
    /// remote host (`--no-local-fallback`) and none is in view.
    pub(super) fn idle_local(&self, peer: &PeerId) -> bool {
        self.local.as_ref().is_some_and(|l| !l.fallback)
            && self.locals.contains(peer)
            && !self
                .known_peers
                .iter()
                .any(|p| !self.locals.contains(p) && self.sched.is_available(p))
    }

    /// Remote hosts came or went: local workers that may only work beside one learn it.
    fn recheck_locals(&mut self) {
        if self.local.as_ref().is_some_and(|l| !l.fallback) {
            let locals: Vec<PeerId> = self.locals.iter().copied().collect();
            for p in locals {
                self.apply_status(p);
            }
        }
    }

    /// A provider's status changed: keep the newest, and let the scheduler know whether it
    /// may take this job's tasks now.
    fn on_status(&mut self, peer: PeerId, st: HostStatus) {
        match self.hosts.get_mut(&peer) {
            Some(old) if st.seq > old.seq => *old = st,
            _ => return,
        }
        self.apply_status(peer);
        self.drive();
    }

    fn apply_status(&mut self, peer: PeerId) {
        let Some(st) = self.hosts.get(&peer) else {
            return;
        };
        let why = self.prepared.rule_out(st, self.rtts.get(&peer).copied());
        let bidding = self.bidding.open();
        let paused = !why.is_empty() || bidding || self.idle_local(&peer);
        if paused == self.sched.is_available(&peer) && !bidding {
            if paused {
                tracing::info!("provider {peer} cannot take tasks now: {}", why.join("; "));
            } else {
                tracing::info!("provider {peer} takes tasks again");
            }
        }
        let mask = self.prepared.stage_mask(st, self.rtts.get(&peer).copied());
        let now = self.now();
        self.sched.set_stage_mask(&peer, mask, now);
        self.sched.set_paused(&peer, paused, now);
    }

    /// Performs the scheduler's commands.
    pub(super) fn drive(&mut self) {
        while let Some(c) = self.sched.poll_command() {
            match c {
                Command::Assign { provider, tasks } => self.assign(provider, tasks),
                Command::Cancel { provider, tasks } => {
                    let client = self.client.clone();
                    let req = Request::new(RequestBody::Cancel {
                        job: self.prepared.id,
                        tasks: tasks.iter().map(|(t, a)| (t.0, *a)).collect(),
                    });
                    tokio::spawn(async move {
                        let _ = client.request(provider, req).await;
                    });
                }
                Command::Verdict {
                    task,
                    accepted,
                    verified,
                    votes,
                } => self.on_verdict(task, accepted, verified, votes),
                Command::Reopened { task, provider } => {
                    tracing::info!(
                        "re-checking task {} (accepted on the word of {provider}, since caught)",
                        task.0
                    );
                    self.tally.reopened(task.0);
                }
                Command::Lost { provider, tasks } => {
                    if self.banned.contains(&provider) {
                        // We took its work away; it did not lose it.
                        continue;
                    }
                    self.tally.lost(provider, tasks.len() as u64);
                    if let Some(rep) = self.reputation.as_mut()
                        && let Err(e) = rep.add(&provider.to_string(), 0, 0, tasks.len() as u64)
                    {
                        tracing::warn!("reputation store: {e:#}");
                    }
                }
                Command::Reset { task } => {
                    tracing::info!("task {} runs again: an input it took changed", task.0);
                    self.tally.reset(task.0);
                    // Its result on disk was made from the old input: not one to keep.
                    self.writer.push(WriteJob::Remove(task.0));
                }
                Command::Recompute { task } => {
                    tracing::info!("task {} runs again: its outputs were lost", task.0);
                    self.tally.reopened(task.0);
                    self.recomputed += 1;
                }
                Command::TaskFailed { task, kind } => {
                    self.assigned_at.remove(&task.0);
                    self.checkpoints.forget(task.0);
                    self.bidding.take_terms(task.0);
                    if self.tally.task_failed(task.0, kind) {
                        // Its earlier result did not survive the re-check.
                        self.writer.push(WriteJob::Remove(task.0));
                    }
                }
                Command::JobFinished => self.finished = true,
            }
        }
    }
}

/// The network label replicas must not share: the /24 (IPv4) or /48 (IPv6) of a public
/// address. Loopback, private and link-local addresses say nothing about who runs a host
/// (a whole LAN shares one), so they get no label.
fn network_label(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() {
                return None;
            }
            let o = v4.octets();
            Some(format!("net:{}.{}.{}.0/24", o[0], o[1], o[2]))
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if v6.is_loopback()
                || v6.is_unspecified()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
            {
                return None;
            }
            Some(format!("net:{:x}:{:x}:{:x}::/48", seg[0], seg[1], seg[2]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::network_label;

    #[test]
    fn network_labels_name_public_prefixes_only() {
        let l = |s: &str| network_label(s.parse().expect("an address"));
        assert_eq!(l("198.18.3.7").as_deref(), Some("net:198.18.3.0/24"));
        assert_eq!(l("127.0.0.1"), None);
        assert_eq!(l("192.168.1.9"), None);
        assert_eq!(l("2001:db8:1:2::5").as_deref(), Some("net:2001:db8:1::/48"));
        assert_eq!(l("fe80::1"), None);
        assert_eq!(l("fd00::1"), None);
    }
}
