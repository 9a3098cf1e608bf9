//! The provider's owner side: the owner's policy and activity polled into pause, resume,
//! throttle and hand-back decisions; the slots the policy allows; device and storage
//! measurements; what the node tells peers (status, market offers, sealed asks).

use super::node::{Internal, JobKey, Provider};
use naac_net::PeerId;
use naac_proto::{HostStatus, Request, RequestBody};
use naac_types::host::{HostLimits, HostState, PeerRtt, Resources};
use std::time::{Duration, Instant};

/// How often an idle node checks the owner's policy and activity.
pub(super) const IDLE_POLICY_POLL: Duration = Duration::from_secs(1);

/// How often the storage dirs are measured while tasks run.
pub(super) const STORAGE_MEASURE: Duration = Duration::from_secs(1);

/// Peers get a status at least this often, changed or not.
pub(super) const STATUS_EVERY: Duration = Duration::from_secs(30);

/// A status that does not get through in this time is dropped.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an offer lives unless renewed (soft state).
const OFFER_TTL: Duration = Duration::from_secs(30);

/// Bytes under the storage dirs, the least free space of the disks holding them, and when
/// the walk that counted them began.
#[derive(Clone, Copy, Debug)]
pub(super) struct StorageUse {
    bytes: u64,
    free: Option<u64>,
    at: Instant,
}

impl StorageUse {
    /// Walks the storage dirs (bounded; blocking).
    pub(super) fn measure(dirs: &[std::path::PathBuf]) -> Self {
        let at = Instant::now();
        let bytes = dirs
            .iter()
            .map(|d| crate::owner::dir_size(d, 100_000))
            .sum();
        let free = dirs
            .iter()
            .map(|d| crate::device::probe_disk(d))
            .filter(|d| d.total > 0)
            .map(|d| d.free)
            .min();
        StorageUse { bytes, free, at }
    }
}

impl Provider {
    /// Keeps the newest storage measurement (the device refresh's and the running tasks'
    /// walks may finish out of order).
    pub(super) fn note_storage(&mut self, used: StorageUse) {
        if self.storage_at.is_some_and(|at| used.at < at) {
            return;
        }
        self.storage_at = Some(used.at);
        let shards = self.store.as_ref().map_or(0, |s| s.held());
        if let Some(m) = self.monitor.as_mut() {
            // Shards count against the quota with the tasks' scratch and the module cache.
            m.storage_used = used.bytes + shards;
            m.disk_free = used.free;
        }
        self.update_room();
    }

    /// What this node asks per giga-fuel now: its base price, at least the owner's
    /// `min_price`, times the current window's multiplier.
    pub(super) fn ask_price(&self) -> naac_types::Price {
        let floor = self
            .monitor
            .as_ref()
            .map(|m| naac_types::Price::whole(m.policy().min_price))
            .unwrap_or_default();
        naac_market::ask_price(self.base_price.max(floor), self.price_multiplier)
    }

    /// A sealed ask for a requester's job, or why it will not bid.
    pub(super) fn bid(&self, s: &naac_proto::Solicit) -> naac_proto::Bid {
        if let Some((_, bank)) = &self.paid_at
            && s.bank.map(|b| b.0) != Some(bank.0)
        {
            return naac_proto::Bid::NoBid(format!(
                "it is paid only at bank {}; the job's escrow is not there",
                naac_types::hex(&bank.0[..8])
            ));
        }
        let price = self.ask_price();
        if !naac_market::will_bid(price, s.max_price) {
            return naac_proto::Bid::NoBid(format!(
                "it asks {price} credits per giga-fuel; the job pays at most {}",
                s.max_price
            ));
        }
        let Some(provider) = naac_net::ed25519_of_keypair(&self.runner.keypair) else {
            return naac_proto::Bid::NoBid("its key cannot sign asks".into());
        };
        let ask = naac_market::Ask {
            job: s.job,
            provider,
            price,
            expires_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
                + 3_600_000,
        };
        let sig = naac_net::sign(&self.runner.keypair, &ask.signing_bytes());
        naac_bank::wire::ask_bid(naac_market::SignedAsk { ask, sig })
    }

    /// This node as `peer` sees it.
    pub(super) fn status_for(&self, peer: &PeerId) -> HostStatus {
        let limits = match &self.monitor {
            Some(m) => {
                let pol = m.policy();
                HostLimits {
                    max_task_memory: pol.max_task_memory,
                    max_task_runtime_ms: pol.max_task_runtime.map(|d| d.as_millis() as u64),
                    // What tasks may still write: the quota left, and the work disk's free
                    // space above the owner's floor.
                    storage_free: Some(
                        pol.storage_quota.saturating_sub(m.storage_used).min(
                            m.disk_free
                                .unwrap_or(self.resources.disk.free)
                                .saturating_sub(pol.min_free_disk)
                                .max(1),
                        ),
                    ),
                    min_price: pol.min_price,
                    price_multiplier: self.price_multiplier,
                    max_cpu_percent: pol.max_cpu_percent,
                    labels: pol.labels.clone(),
                }
            }
            None => HostLimits {
                price_multiplier: 1.0,
                max_cpu_percent: 100,
                ..HostLimits::default()
            },
        };
        HostStatus {
            seq: self.status_seq,
            resources: self.resources.clone(),
            state: self.state.clone(),
            limits,
            slots: self.allowed,
            running: self.runner.gate.running() as u32,
            denied: self.denied(peer),
            store: self.store.as_ref().map(|s| s.info()),
        }
    }

    /// Publishes a signed offer on the market topic: soft state, renewed every
    /// [`super::node::OFFER_INTERVAL`] and when our state changes, expiring after [`OFFER_TTL`] unless
    /// renewed.
    pub(super) fn publish_offer(&mut self) {
        let Some(provider) = naac_net::ed25519_of_keypair(&self.runner.keypair) else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Time-based, so a restarted node's offers still supersede its old ones.
        self.offer_seq = self.offer_seq.max(now.saturating_sub(1)) + 1;
        self.last_offer = Instant::now();
        let running = self.runner.gate.running() as u32;
        let offer = naac_market::Offer {
            provider,
            class: naac_market::commodity_class().to_string(),
            cores: self.resources.cpu.cores,
            memory: self.resources.memory.available,
            score_milli: (self.resources.cpu.score * 1000.0) as u64,
            slots: self.allowed,
            free_slots: self.allowed.saturating_sub(running),
            price: self.ask_price(),
            max_task_memory: self
                .monitor
                .as_ref()
                .and_then(|m| m.policy().max_task_memory)
                .unwrap_or(0),
            accepting: matches!(self.state, HostState::Accepting),
            addrs: self.addrs.iter().map(|a| a.to_string()).collect(),
            seq: self.offer_seq,
            issued_ms: now,
            expires_ms: now + OFFER_TTL.as_millis() as u64,
        };
        let sig = naac_net::sign(&self.runner.keypair, &offer.signing_bytes());
        let bytes = match (naac_market::SignedOffer { offer, sig }).to_bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("offer not published: {e}");
                return;
            }
        };
        let client = self.runner.client.clone();
        tokio::spawn(async move {
            let topic = naac_market::topic(naac_market::commodity_class());
            match client.publish(&topic, bytes).await {
                Ok(()) | Err(naac_net::PublishError::NoPeers(_)) => {}
                Err(e) => tracing::debug!("offer not published: {e}"),
            }
        });
    }

    /// Sends every peer that said Hello our current status.
    pub(super) fn push_status(&mut self) {
        if self.provide {
            self.publish_offer();
        }
        self.status_seq += 1;
        self.last_status = Instant::now();
        for peer in self.peers.keys().copied().collect::<Vec<_>>() {
            let req = Request::new(RequestBody::Status(Box::new(self.status_for(&peer))));
            let client = self.runner.client.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(STATUS_TIMEOUT, client.request(peer, req)).await;
            });
        }
    }

    /// Re-reads the owner's policy and activity and pauses, resumes, throttles or hands work
    /// back accordingly.
    pub(super) fn poll_policy(&mut self) {
        let now = Instant::now();
        let busy = self.jobs.values().any(|j| !j.held.is_empty());
        if !busy && now.duration_since(self.last_poll) < IDLE_POLICY_POLL {
            return;
        }
        self.last_poll = now;
        let Some(m) = self.monitor.as_mut() else {
            return;
        };
        let reloaded = m.reload();
        // Tasks fill the storage dirs: while they run, measure them (and the free space of
        // their disk) every second so a reached quota or a nearly full disk pauses work
        // promptly; the device refresh measures them too, and the first poll does at once.
        if (busy || self.storage_at.is_none())
            && !self.storage_measuring
            && now.duration_since(self.storage_measured) >= STORAGE_MEASURE
        {
            self.storage_measuring = true;
            let dirs = [self.work_dir.clone(), self.cache_dir.clone()];
            let tx = self.internal.clone();
            tokio::task::spawn_blocking(move || {
                let used = StorageUse::measure(&dirs);
                let _ = tx.blocking_send(Internal::Storage(used, used.at.elapsed()));
            });
        }
        let decision = m.decide(now, busy);
        let grace = m.policy().pause_grace;
        let max_slots = m.policy().max_slots;
        let storage_quota = m.policy().storage_quota;
        let duty = m.duty(now, self.runner.gate.running());
        self.runner.gate.set_duty(duty);
        let mut changed = reloaded;
        if reloaded {
            let allowed = max_slots.map_or(self.slots, |n| n.clamp(1, self.slots));
            self.set_allowed(allowed);
            self.runner
                .set_module_cache_quota(super::module_cache_quota(storage_quota));
        }
        if (decision.price_multiplier - self.price_multiplier).abs() > f64::EPSILON {
            self.price_multiplier = decision.price_multiplier;
            changed = true;
        }
        let state = if decision.accept {
            HostState::Accepting
        } else {
            HostState::Paused(
                decision
                    .reasons
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        };
        if state != self.state {
            match &state {
                HostState::Paused(why) => {
                    self.runner.gate.pause();
                    self.paused_since = Some(now);
                    tracing::info!("paused: {why}");
                    // Work that has not started goes back at once; running tasks wait out
                    // the grace period.
                    self.hand_back(false);
                }
                HostState::Accepting => {
                    self.runner.gate.resume();
                    self.paused_since = None;
                    tracing::info!("accepting work again");
                }
            }
            self.state = state;
            changed = true;
        }
        if let Some(since) = self.paused_since
            && now.duration_since(since) >= grace
            && self.jobs.values().any(|j| !j.held.is_empty())
        {
            tracing::info!("paused for longer than {grace:?}: handing running tasks back");
            self.hand_back(true);
        }
        if changed {
            self.push_status();
        }
    }

    /// Cancels held tasks (only those that have not started unless `running` too) and
    /// reports them as returned.
    pub(super) fn hand_back(&mut self, running: bool) {
        let keys: Vec<JobKey> = self.jobs.keys().copied().collect();
        for key in keys {
            if self
                .jobs
                .get_mut(&key)
                .is_some_and(|job| job.hand_back(running))
            {
                self.send_report(key, false);
            }
        }
    }

    /// Changes how many tasks may run at once.
    pub(super) fn set_allowed(&mut self, n: u32) {
        if n > self.allowed {
            self.runner.slots.add_permits((n - self.allowed) as usize);
        } else if n < self.allowed {
            // Take the extra permits out as running tasks give them back.
            let k = self.allowed - n;
            let sem = self.runner.slots.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(k).await {
                    p.forget();
                }
            });
        }
        if n != self.allowed {
            tracing::info!("policy: {n} slots");
        }
        self.allowed = n;
    }

    /// Refreshes the cheap probes (memory, disk, power, availability), the round-trip times
    /// and the storage use, off the runtime thread.
    pub(super) fn refresh_device(&mut self) {
        let Some(dm) = self.device.clone() else {
            return;
        };
        let client = self.runner.client.clone();
        let tx = self.internal.clone();
        let dirs = [self.work_dir.clone(), self.cache_dir.clone()];
        tokio::spawn(async move {
            let rtts = client.rtts().await;
            let probed = tokio::task::spawn_blocking(move || {
                let mut r = dm.lock().expect("device lock").refresh().clone();
                r.network = rtts
                    .into_iter()
                    .map(|(p, d)| PeerRtt {
                        peer: p.to_string(),
                        rtt_ms: d.as_secs_f64() * 1e3,
                    })
                    .collect();
                (r, StorageUse::measure(&dirs))
            })
            .await;
            if let Ok((r, used)) = probed {
                let _ = tx.send(Internal::Resources(Box::new(r), used)).await;
            }
        });
    }
}

/// Whether two probes differ enough to tell peers (free memory and disk drift all the time:
/// only a 10% change counts).
pub(super) fn same_resources(a: &Resources, b: &Resources) -> bool {
    let near = |x: u64, y: u64| x.abs_diff(y) <= x.max(y) / 10;
    a.cpu == b.cpu
        && a.gpus == b.gpus
        && a.power == b.power
        && a.memory.total == b.memory.total
        && near(a.memory.available, b.memory.available)
        && near(a.disk.free, b.disk.free)
}

impl Provider {
    /// Why `peer` may not use this node at all, if it may not.
    pub(super) fn denied(&self, peer: &PeerId) -> Option<String> {
        let token = self.peers.get(peer).and_then(|g| g.pass.as_ref()).map(|p| {
            let (p, policy) = (p.as_ref().map_err(Clone::clone)?, self.monitor.as_ref());
            policy.map_or(Ok(()), |m| {
                p.admits(
                    &self.runner.client.peer_id().to_string(),
                    m.policy(),
                    &self.revoked,
                )
            })
        });
        self.admission().denied(peer, self.user_of(peer), token)
    }

    /// The verdict of `peer`'s token on an `Assign` of `job_name`, and the grant its tasks
    /// then count against with the most they may run at once.
    pub(super) fn token_for_assign(
        &mut self,
        peer: &PeerId,
        job_name: &str,
    ) -> (Option<Result<(), String>>, Option<super::passes::Gate>) {
        let host = self.runner.client.peer_id().to_string();
        let (Some(m), Some(pass)) = (
            self.monitor.as_ref(),
            self.peers.get_mut(peer).and_then(|g| g.pass.as_mut()),
        ) else {
            return (None, None);
        };
        let shown = match pass {
            Ok(s) => s,
            Err(why) => return (Some(Err(why.clone())), None),
        };
        match shown.for_assign(&host, job_name, m.policy(), self.slots, &self.revoked) {
            Ok(cap) => (Some(Ok(())), Some((shown.grant(), cap))),
            Err(why) => (Some(Err(why)), None),
        }
    }

    /// A revocation heard on the gossip topic: kept when it revokes a token this node
    /// could accept (rooted in `trust_tokens_from`), on a storage host a data token of an
    /// owner whose private data it holds, or, on a bank, a spend token whose root holds
    /// credits there (so strangers cannot fill the set with their own tokens), and its
    /// signer may revoke it.
    pub(super) fn on_revocation(&mut self, data: &[u8]) {
        let trusted = self
            .monitor
            .as_ref()
            .and_then(|m| super::passes::verifier(m.policy()));
        if data.len() > crate::revoked::MAX_REVOCATION_BYTES
            || trusted.is_none() && self.bank.is_none() && self.store.is_none()
        {
            return;
        }
        let r = match serde_json::from_slice::<naac_proto::Revocation>(data) {
            Ok(r) => r,
            Err(e) => return tracing::debug!("an undecodable revocation: {e}"),
        };
        if let Some(v) = &trusted
            && let Ok(a) = crate::revoked::accept(&r, Some(v))
        {
            self.keep_revocation(&a, false);
            return;
        }
        // A data token of an owner whose private data this host holds.
        if let Some(store) = &self.store
            && naac_token::inspect(&r.token).is_ok_and(|t| {
                t.kind() == naac_token::Kind::Data && store.keeps_revocation_of(t.root())
            })
            && let Ok(a) = crate::revoked::accept(&r, None)
        {
            self.keep_revocation(&a, false);
            return;
        }
        let Some(bank) = self.bank.clone() else {
            return;
        };
        let spend = naac_token::inspect(&r.token)
            .ok()
            .filter(|t| t.kind() == naac_token::Kind::Spend)
            .map(|t| *t.root());
        let (Some(root), Ok(a)) = (spend, crate::revoked::accept(&r, None)) else {
            return;
        };
        // At most a few balance looks at once: a flood is dropped, not queued.
        let Ok(permit) = self.revocation_looks.clone().try_acquire_owned() else {
            return;
        };
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = crate::pay::BankConn::Local(bank);
            if conn
                .balance(naac_ledger::AccountKey(root))
                .await
                .is_ok_and(|b| b.0 > 0)
            {
                let _ = tx.send(Internal::Revoked(Box::new(a))).await;
            }
        });
    }

    /// Keeps a checked revocation: refuses its token from now on (here, and at this node's
    /// bank when `spend`), hands back what waits under it.
    pub(super) fn keep_revocation(&mut self, a: &crate::revoked::Accepted, spend: bool) {
        if !self.revoked.keep(a) {
            return;
        }
        if let (true, Some(b)) = (spend, &self.bank) {
            b.revoke(a.id.clone());
        }
        if let Some(s) = &self.store {
            s.revoke([a.id.clone()]);
        }
        tracing::info!("a token was revoked");
        let mut cut = Vec::new();
        for (peer, g) in &mut self.peers {
            if let Some(Ok(p)) = g.pass.as_mut()
                && p.recheck(&self.revoked)
            {
                cut.push(*peer);
            }
        }
        // Their running tasks finish (and are paid); what waits goes back.
        let keys: Vec<JobKey> = self
            .jobs
            .keys()
            .filter(|k| cut.contains(&k.0))
            .copied()
            .collect();
        for key in keys {
            if self.jobs.get_mut(&key).is_some_and(|j| j.hand_back(false)) {
                self.send_report(key, false);
            }
        }
        self.push_status();
    }

    /// Notes `peer`'s greeting. A peer that ran under a token and greets again without it (or
    /// with one of another grant) takes back the tasks still waiting under the old one: they
    /// were admitted by a token that no longer speaks for them (and may be revoked later).
    pub(super) fn greet(&mut self, peer: PeerId, g: super::passes::Greeted) {
        let grant = |g: &super::passes::Greeted| {
            g.pass
                .as_ref()
                .and_then(|p| p.as_ref().ok())
                .map(|s| s.grant())
        };
        let before = self.peers.get(&peer).and_then(grant);
        let after = grant(&g);
        if let Some(b) = before
            && after.is_none_or(|a| !std::sync::Arc::ptr_eq(&a, &b))
        {
            let keys: Vec<JobKey> = self.jobs.keys().filter(|k| k.0 == peer).copied().collect();
            for key in keys {
                if self.jobs.get_mut(&key).is_some_and(|j| j.hand_back(false)) {
                    self.send_report(key, false);
                }
            }
        }
        self.peers.insert(peer, g);
    }
}
