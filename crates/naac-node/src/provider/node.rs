//! The provider's IO shell: the node's loop over network events, its own timers and what
//! spawned work reports back. It asks [`super::admission`] whether to serve a peer, hands
//! tasks to the [`super::runner`], keeps each job's [`JobState`] and sends what it says, and
//! leaves the owner's side to `control.rs`.

use super::ProviderConfig;
use super::admission::{Admission, Asked, PeerLoad, peer_room};
use super::control::{IDLE_POLICY_POLL, STATUS_EVERY, STORAGE_MEASURE, StorageUse, same_resources};
use super::reports::{Held, JobState};
use super::runner::{AssignInfo, Runner};
use super::{HEARTBEAT, POLICY_POLL};
use crate::device::{self, DeviceManager};
use crate::owner::Monitor;
use anyhow::Context as _;
use naac_net::{Client, Event, Keypair, PeerId};
use naac_proto::{
    Assign, Request, RequestBody, Response, ResponseBody, TaskResult, VERSION, Welcome,
};
use naac_sandbox::{Sandbox, SandboxConfig};
use naac_types::JobId;
use naac_types::host::{HostState, Resources};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often memory, disk, power and round-trip times are re-probed.
const DEVICE_REFRESH: Duration = Duration::from_secs(10);

/// Most peers that get status updates.
const MAX_STATUS_PEERS: usize = 1024;

/// How often a provider renews its market offer.
pub(super) const OFFER_INTERVAL: Duration = Duration::from_secs(10);

pub(super) type JobKey = (PeerId, JobId);

// One per finished task and consumed at once: boxing the result would only allocate.
#[allow(clippy::large_enum_variant)]
pub(super) enum Internal {
    Done {
        key: JobKey,
        result: TaskResult,
        /// For a run this node may claim: the module and input digest its record binds.
        claimable: Option<(naac_types::ContentId, naac_types::ContentId)>,
    },
    /// The bank showed a job's escrow, for claims.
    ClaimLook {
        job: naac_types::JobId,
        view: Result<Option<naac_proto::EscrowView>, String>,
    },
    /// Claims for a job were sent; these runs are settled for good (the rest are tried
    /// again).
    Claimed {
        job: naac_types::JobId,
        done: Vec<(u32, u32)>,
    },
    /// A report got its answer (or failed); `forget` when the requester disowned the job.
    ReportSent { key: JobKey, forget: bool },
    /// The device manager is ready (first probe done).
    Device(Box<anyhow::Result<DeviceManager>>),
    /// A fresh probe, and the bytes under the storage dirs.
    Resources(Box<Resources>, StorageUse),
    /// The bytes under the storage dirs (measured more often while tasks run), and how
    /// long measuring took.
    Storage(StorageUse, Duration),
    /// A peer connected a moment ago: let it hear our offer without waiting for the renewal.
    Offer,
    /// A revocation this node's bank keeps (its token's root holds credits there).
    Revoked(Box<crate::revoked::Accepted>),
    /// The bank this node is paid at answered about a job's escrow.
    Escrow {
        job: naac_types::JobId,
        view: Result<Option<naac_proto::EscrowView>, String>,
    },
}

/// What a provider runs on: its network, its sandbox and its owner's monitor. [`run`] makes
/// them from the config; tests may make their own and call [`serve`].
pub struct Deps {
    pub keypair: Keypair,
    pub client: Client,
    pub events: mpsc::Receiver<Event>,
    pub sandbox: Arc<Sandbox>,
    /// The owner's policy and activity (`None`: no owner policy applies).
    pub monitor: Option<Monitor>,
    /// Where tasks' scratch dirs live (measured against the owner's storage quota).
    pub work_dir: PathBuf,
}

impl Deps {
    /// Opens the data dir's owner policy (if the config obeys one), starts the sandbox
    /// under it and the network with `keypair`.
    pub async fn start(config: &ProviderConfig, keypair: Keypair) -> anyhow::Result<Self> {
        config.home.ensure()?;
        let monitor = if config.owner_policy {
            Some(Monitor::new(&config.home, cores(), Instant::now())?)
        } else {
            None
        };
        let work_dir = match monitor
            .as_ref()
            .and_then(|m| m.policy().storage_dir.clone())
        {
            Some(d) => d.join("work"),
            None => config.home.work(),
        };
        let mut sandbox_config =
            SandboxConfig::new(work_dir.clone()).with_cache_dir(config.home.module_cache());
        // Room for every slot plus stragglers still winding down after a cancel.
        sandbox_config.max_concurrent = config.slots.max(1).saturating_mul(2).max(8);
        // Compiling a peer's module is work: one core at a time, and the cache within the
        // owner's storage quota.
        sandbox_config.parallel_compilation = false;
        if let Some(m) = &monitor {
            sandbox_config.cache_quota = super::module_cache_quota(m.policy().storage_quota);
        }
        let sandbox = Arc::new(Sandbox::start(sandbox_config).context("start the sandbox")?);
        let (client, events) = naac_net::start(keypair.clone(), config.net.clone()).await?;
        Ok(Self {
            keypair,
            client,
            events,
            sandbox,
            monitor,
            work_dir,
        })
    }
}

fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Runs a provider until `shutdown` resolves. `listening` receives each address the node
/// listens on (with the peer id appended, ready to share) as it comes up.
pub async fn run(
    config: ProviderConfig,
    keypair: Keypair,
    listening: Option<mpsc::Sender<naac_net::Multiaddr>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let deps = Deps::start(&config, keypair).await?;
    serve(config, deps, listening, shutdown).await
}

/// Serves tasks over `deps` until `shutdown` resolves.
pub async fn serve(
    config: ProviderConfig,
    deps: Deps,
    listening: Option<mpsc::Sender<naac_net::Multiaddr>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let Deps {
        keypair,
        client,
        mut events,
        sandbox,
        monitor,
        work_dir,
    } = deps;
    let cores = cores();
    let relaying = config.net.relay.is_some();
    let paid_at = match &config.paid_at {
        Some(addr) => {
            let bank = crate::pay::BankConn::connect(&client, addr)
                .await
                .with_context(|| format!("reach the bank this node is paid at ({addr})"))?;
            let key = bank.key().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(
                "paid at bank {}: bids only for jobs with an escrow there",
                naac_types::hex(&key.0[..8])
            );
            Some((bank, key))
        }
        None => None,
    };
    let (internal_tx, mut internal) = mpsc::channel(1024);
    let slots = config.slots.max(1);
    match config.faulty {
        Some(super::Fault::Wrong(f)) => tracing::warn!(
            "testing aid: this node returns wrong outputs for {:.0}% of tasks",
            f * 100.0
        ),
        Some(super::Fault::Fuel(f)) => tracing::warn!(
            "testing aid: this node claims the whole fuel limit for {:.0}% of tasks",
            f * 100.0
        ),
        None => {}
    }
    let allowed = monitor
        .as_ref()
        .and_then(|m| m.policy().max_slots)
        .map_or(slots, |m| m.clamp(1, slots));
    let runner = Runner::new(
        client.clone(),
        keypair,
        sandbox,
        slots,
        allowed,
        config.faulty,
        config.slowdown,
    );
    let runner = Arc::new(runner.with_held(super::held::Held::in_work_dir(&work_dir)?));
    let mut resources = Resources {
        cpu: device::probe_cpu(),
        memory: device::probe_memory(),
        ..Resources::default()
    };
    resources.cpu.cores = cores;
    let mut p = Provider {
        runner,
        internal: internal_tx,
        slots,
        allowed,
        owner: config.owner.clone(),
        jobs: HashMap::new(),
        state: HostState::Accepting,
        paused_since: None,
        price_multiplier: 1.0,
        resources,
        device: None,
        status_seq: 0,
        last_status: Instant::now(),
        last_poll: Instant::now()
            .checked_sub(IDLE_POLICY_POLL)
            .unwrap_or_else(Instant::now),
        storage_measured: Instant::now()
            .checked_sub(STORAGE_MEASURE)
            .unwrap_or_else(Instant::now),
        storage_measuring: false,
        storage_at: None,
        asked: Asked::default(),
        peers: HashMap::new(),
        grants: Default::default(),
        revoked: crate::revoked::Revoked::load(&config.home.revoked()),
        revocation_looks: Arc::new(tokio::sync::Semaphore::new(8)),
        work_dir,
        cache_dir: config.home.module_cache(),
        monitor,
        base_price: config.price,
        bank: config.bank.clone(),
        paid_at,
        min_claim_window: config.min_claim_window,
        escrows: super::escrows::Escrows::default(),
        claims: super::claims::Claims::default(),
        held_assigns: HashMap::new(),
        replies: Default::default(),
        provide: config.provide,
        addrs: Vec::new(),
        offer_seq: 0,
        last_offer: Instant::now(),
        store: None,
    };
    p.open_store(&config, &client).await?;
    // The market: offers on the class's gossip topic (a relay carries them too, so hosts
    // behind NAT that joined it are heard by requesters that joined it), and a provider's
    // record under the class's DHT key so requesters find it in O(log N) hops.
    let class = naac_market::commodity_class();
    if (p.provide || relaying)
        && let Err(e) = client.subscribe(&naac_market::topic(class)).await
    {
        tracing::warn!("market topic: {e:#}");
    }
    if let Some(b) = &p.bank {
        p.revoked.ids().for_each(|id| b.revoke(id.clone()));
    }
    if (p.provide || p.bank.is_some() || p.store.is_some())
        && let Err(e) = client.subscribe(naac_proto::REVOCATION_TOPIC).await
    {
        tracing::warn!("revocation topic: {e:#}");
    }
    if p.provide
        && let Err(e) = client.start_providing(naac_market::dht_key(class)).await
    {
        tracing::warn!("market provider record: {e:#}");
    }
    let mut offer_tick = tokio::time::interval(OFFER_INTERVAL);
    offer_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(m) = &p.monitor {
        let pol = m.policy();
        tracing::info!(
            "policy {} ({}): idle_only {}, max_cpu_percent {}, {} time windows",
            m.path().display(),
            if m.path().exists() {
                "loaded"
            } else {
                "not there: defaults"
            },
            pol.idle_only,
            pol.max_cpu_percent,
            pol.windows.len()
        );
        // First probe off the runtime thread (the compute score may need measuring).
        let home = config.home.clone();
        let tx = p.internal.clone();
        tokio::spawn(async move {
            let dm = tokio::task::spawn_blocking(move || DeviceManager::start(&home))
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("device probe panicked: {e}")));
            let _ = tx.send(Internal::Device(Box::new(dm))).await;
        });
        p.poll_policy();
    }
    let mut claim_tick = tokio::time::interval(super::claims::LOOK_EVERY);
    claim_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reply_tick = tokio::time::interval(super::replies::REPLY_HOLD / 5);
    reply_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut policy_tick = tokio::time::interval(POLICY_POLL);
    policy_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh_tick = tokio::time::interval(DEVICE_REFRESH);
    refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    if p.provide {
        tracing::info!(
            "provider {} up with {slots} slots ({allowed} allowed by policy)",
            client.peer_id()
        );
    } else {
        tracing::info!("node {} up (runs no tasks)", client.peer_id());
    }
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            ev = events.recv() => match ev {
                Some(Event::Listening(addr)) => {
                    let me = client.peer_id();
                    let full = addr.clone().with_p2p(me).unwrap_or(addr);
                    if p.addrs.len() < naac_market::MAX_ADDRS && !p.addrs.contains(&full) {
                        p.addrs.push(full.clone());
                    }
                    if let Some(tx) = &listening {
                        let _ = tx.try_send(full);
                    }
                }
                Some(ev) => p.on_event(ev).await,
                None => break,
            },
            Some(i) = internal.recv() => p.on_internal(i),
            _ = heartbeat.tick() => p.heartbeat(),
            _ = reply_tick.tick(), if !p.replies.is_empty() => p.answer_expired(),
            _ = claim_tick.tick(), if p.paid_at.is_some() => p.claim_tick(),
            _ = policy_tick.tick(), if p.monitor.is_some() => p.poll_policy(),
            _ = refresh_tick.tick(), if p.monitor.is_some() => p.refresh_device(),
            _ = offer_tick.tick(), if p.provide => p.publish_offer(),
        }
    }
    for job in p.jobs.values() {
        job.cancel_all();
    }
    tracing::info!("provider stopped");
    Ok(())
}

pub(super) struct Provider {
    pub(super) runner: Arc<Runner>,
    pub(super) internal: mpsc::Sender<Internal>,
    /// Slots the node has, and how many its policy allows now.
    pub(super) slots: u32,
    pub(super) allowed: u32,
    pub(super) owner: Option<String>,
    pub(super) jobs: HashMap<JobKey, JobState>,
    /// `None` when no owner policy applies (embedded pools).
    pub(super) monitor: Option<Monitor>,
    pub(super) state: HostState,
    pub(super) paused_since: Option<Instant>,
    pub(super) price_multiplier: f64,
    pub(super) resources: Resources,
    pub(super) device: Option<Arc<Mutex<DeviceManager>>>,
    pub(super) status_seq: u64,
    pub(super) last_status: Instant,
    pub(super) last_poll: Instant,
    /// When the storage dirs were last measured between device refreshes, and whether a
    /// measurement is under way.
    pub(super) storage_measured: Instant,
    pub(super) storage_measuring: bool,
    /// When the walk behind the storage use the monitor has began.
    pub(super) storage_at: Option<Instant>,
    /// The asks this node made, by requester and job (admission of priced work).
    pub(super) asked: Asked,
    /// Peers that said Hello (they get status updates), with their attested user and token.
    pub(super) peers: HashMap<PeerId, super::passes::Greeted>,
    /// The grants of the pool tokens shown here, with their tasks running.
    pub(super) grants: super::passes::Grants,
    /// The revoked tokens this node knows of, and the bank's looks at revokers' balances.
    pub(super) revoked: crate::revoked::Revoked,
    pub(super) revocation_looks: Arc<tokio::sync::Semaphore>,
    pub(super) work_dir: std::path::PathBuf,
    pub(super) cache_dir: std::path::PathBuf,
    /// Asking price before the window multiplier (the policy's `min_price` is the floor).
    pub(super) base_price: naac_types::Price,
    pub(super) bank: Option<crate::bank::BankHandle>,
    /// The bank this node is paid at, and its key.
    pub(super) paid_at: Option<(crate::pay::BankConn, naac_ledger::AccountKey)>,
    pub(super) min_claim_window: Duration,
    /// Paid jobs' escrows as that bank last showed them.
    pub(super) escrows: super::escrows::Escrows,
    /// What this node may claim from paid jobs' escrows.
    pub(super) claims: super::claims::Claims,
    /// Paid assignments waiting for a fresh look at their escrow, with when they came.
    pub(super) held_assigns: HashMap<JobId, Vec<(PeerId, Assign, naac_net::Reply, Instant)>>,
    /// `Assign`s kept unanswered for their job's next report.
    pub(super) replies: super::replies::Replies,
    pub(super) provide: bool,
    /// Where we listen (with our peer id), for offers.
    pub(super) addrs: Vec<naac_net::Multiaddr>,
    /// Sequence number of our last offer, and when it went out.
    pub(super) offer_seq: u64,
    pub(super) last_offer: Instant,
    /// This node's shards, when it lends disk (`--store`).
    pub(super) store: Option<Arc<crate::store::host::StoreHost>>,
}

impl Provider {
    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Request {
                request:
                    Request {
                        v: VERSION,
                        body:
                            body @ (RequestBody::Bank(_)
                            | RequestBody::Store(_)
                            | RequestBody::Fetch { .. }),
                    },
                peer,
                channel,
                ..
            } => self.serve_service(peer, body, channel),
            Event::Request {
                peer,
                request,
                channel,
                ..
            } => {
                let resp = if request.v != VERSION {
                    ResponseBody::Refused(format!(
                        "message version {} is not supported (this node speaks {VERSION})",
                        request.v
                    ))
                } else {
                    // Paid work the escrow as last seen does not cover waits for a fresh
                    // look before it is answered.
                    let (body, channel) = match request.body {
                        RequestBody::Assign(a)
                            if self.denied(&peer).is_none() && self.should_hold(&peer, &a) =>
                        {
                            match self.hold_assign(peer, a, channel) {
                                None => return,
                                Some((a, channel)) => (RequestBody::Assign(a), channel),
                            }
                        }
                        body => (body, channel),
                    };
                    let assign = match &body {
                        RequestBody::Assign(a) => Some((a.job, a.reply_with_results)),
                        _ => None,
                    };
                    let resp = self.on_request(peer, body);
                    if let Some((job, wants)) = assign {
                        return self.answer_assign((peer, job), wants, resp, channel);
                    }
                    self.runner
                        .client
                        .respond(channel, Response::new(resp))
                        .await;
                    return;
                };
                self.runner
                    .client
                    .respond(channel, Response::new(resp))
                    .await;
            }
            Event::Disconnected(peer) => {
                self.peers.remove(&peer);
                let keys: Vec<JobKey> = self.jobs.keys().filter(|k| k.0 == peer).copied().collect();
                for k in keys {
                    if let Some(job) = self.jobs.remove(&k) {
                        tracing::info!(
                            "requester {peer} left: dropping {} tasks of job {}",
                            job.held.len(),
                            k.1.short()
                        );
                        job.cancel_all();
                    }
                }
            }
            Event::BadFrame { peer, error } => {
                tracing::warn!("dropped a bad frame from {peer}: {error}");
            }
            Event::Connected(..) if self.provide => {
                // After its gossip subscription has had time to reach us.
                let tx = self.internal.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1200)).await;
                    let _ = tx.send(Internal::Offer).await;
                });
            }
            Event::Gossip { topic, data, .. } if topic == naac_proto::REVOCATION_TOPIC => {
                self.on_revocation(&data);
            }
            Event::Connected(..) | Event::Listening(_) | Event::Gossip { .. } => {}
        }
    }

    fn on_request(&mut self, peer: PeerId, body: RequestBody) -> ResponseBody {
        match body {
            RequestBody::Hello(hello) => {
                let user = match self.admission().hello(&peer, &hello) {
                    Ok(user) => user,
                    Err(why) => return ResponseBody::Refused(why),
                };
                let bid = hello.solicit.as_ref().map(|s| self.bid(s));
                if let (Some(s), Some(naac_proto::Bid::Ask(_))) = (&hello.solicit, &bid) {
                    self.asked.insert(peer, s.job);
                    self.look_up_escrow(s.job);
                }
                let pass = super::passes::shown(
                    self.monitor.as_ref().map(|m| m.policy()),
                    hello.pass.as_ref(),
                    user.as_deref(),
                    (&mut self.grants, &self.revoked),
                )
                .transpose();
                if self.peers.len() < MAX_STATUS_PEERS || self.peers.contains_key(&peer) {
                    self.greet(peer, super::passes::Greeted { user, pass });
                }
                ResponseBody::Welcome(Box::new(Welcome {
                    slots: self.slots,
                    agent: format!("naac/{}", env!("CARGO_PKG_VERSION")),
                    owner: self.owner.clone(),
                    status: self.status_for(&peer),
                    bid,
                    addrs: naac_proto::welcome_addrs(&self.addrs),
                }))
            }
            RequestBody::Assign(a) => self.on_assign(peer, a),
            RequestBody::Cancel { job, tasks } => {
                if tasks.is_empty() {
                    // The requester is done with the job (finished or interrupted): so are
                    // the outputs kept for it.
                    if let Some(state) = self.jobs.remove(&(peer, job)) {
                        state.cancel_all();
                        if let Some(h) = &self.runner.held {
                            h.drop_job(&(peer, job));
                        }
                    }
                } else if let Some(state) = self.jobs.get_mut(&(peer, job)) {
                    state.cancel(tasks);
                }
                ResponseBody::Ack
            }
            RequestBody::Fetch { .. } => ResponseBody::NotFound,
            RequestBody::Report(_) | RequestBody::Checkpoint { .. } | RequestBody::Status(_) => {
                ResponseBody::Refused("this node does not request work".into())
            }
            RequestBody::Bank(_) | RequestBody::Store(_) => {
                ResponseBody::Refused("this node is not a bank".into())
            }
        }
    }

    /// What admission looks at now.
    pub(super) fn admission(&self) -> Admission<'_> {
        Admission {
            provide: self.provide,
            policy: self.monitor.as_ref().map(|m| m.policy()),
            asked: &self.asked,
        }
    }

    /// The user `peer` proved it works for in its `Hello`, if any.
    pub(super) fn user_of(&self, peer: &PeerId) -> Option<&str> {
        self.peers.get(peer).and_then(|g| g.user.as_deref())
    }

    pub(super) fn on_assign(&mut self, peer: PeerId, mut a: Assign) -> ResponseBody {
        let (token, gate) = self.token_for_assign(&peer, &a.argv0);
        if let Err(why) = self
            .admission()
            .assign(&peer, self.user_of(&peer), token, &a)
        {
            return ResponseBody::Refused(why);
        }
        let key = (peer, a.job);
        let (verdict, order) = self.escrow_verdict(peer, &a);
        match verdict {
            super::escrows::Verdict::Run => {
                if let Some((signed, runs)) = order
                    && let Err(why) = self.claims.ordered(a.job, signed, runs, Instant::now())
                {
                    tracing::warn!("refused an assignment from {peer}: {why}");
                    return ResponseBody::Refused(why);
                }
            }
            super::escrows::Verdict::Refuse(why) => {
                tracing::warn!("refused an assignment from {peer}: {why}");
                return ResponseBody::Refused(why);
            }
            super::escrows::Verdict::Wait => {
                // Not yet known to pay: back unstarted, while the bank is asked.
                let state = self.jobs.entry(key).or_default();
                state.applied(a.seq);
                state.return_unstarted(a.tasks.iter().map(|t| (t.index, t.attempt)));
                self.send_report(key, false);
                return ResponseBody::Ack;
            }
        }
        // A requester's share of this node: past it, new jobs are refused and the excess of
        // an assignment goes back unstarted, as after a pause.
        let load =
            self.jobs
                .iter()
                .filter(|(k, _)| k.0 == peer)
                .fold(PeerLoad::default(), |l, (k, j)| PeerLoad {
                    jobs: l.jobs + 1,
                    tasks: l.tasks + j.load(),
                    known_job: l.known_job || *k == key,
                });
        let take = match peer_room(load, a.tasks.len(), self.slots) {
            Ok(n) => n,
            Err(why) => {
                tracing::warn!("refused an assignment from {peer}: {why}");
                return ResponseBody::Refused(why);
            }
        };
        let mut tasks = std::mem::take(&mut a.tasks);
        let excess = tasks.split_off(take);
        if !self.state.is_accepting() {
            // Raced with our status update: hand them straight back.
            let state = self.jobs.entry(key).or_default();
            state.applied(a.seq);
            state.return_unstarted(tasks.iter().chain(&excess).map(|t| (t.index, t.attempt)));
            self.send_report(key, false);
            return ResponseBody::Ack;
        }
        let seq = a.seq;
        let info = Arc::new(AssignInfo::of(a));
        let state = self.jobs.entry(key).or_default();
        state.applied(seq);
        for spec in tasks {
            let held = Held::new(spec.attempt);
            let (cancel, started) = (held.cancel.clone(), held.started.clone());
            // A new attempt of a task we still hold makes the old one stale.
            state.hold(spec.index, held);
            let runner = self.runner.clone();
            let tx = self.internal.clone();
            let info = info.clone();
            let claimable = self
                .claims
                .wants(&info.job, (spec.index, spec.attempt))
                .then(|| (info.module, spec.input_digest(&info.argv0)));
            let gate = gate.clone();
            tokio::spawn(async move {
                // A token's grant runs at most its slots here at once.
                let _place = match &gate {
                    Some((grant, cap)) => grant.enter(*cap, &cancel).await,
                    None => None,
                };
                let result = runner.run_task(peer, &info, spec, cancel, started).await;
                let _ = tx
                    .send(Internal::Done {
                        key,
                        result,
                        claimable,
                    })
                    .await;
            });
        }
        if !excess.is_empty() {
            tracing::warn!(
                "{peer} has its share of tasks here: {} of job {} go back",
                excess.len(),
                info.job.short()
            );
            state.return_unstarted(excess.iter().map(|t| (t.index, t.attempt)));
            self.send_report(key, false);
        }
        ResponseBody::Ack
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Escrow { job, view } => {
                if let Err(e) = &view {
                    tracing::warn!("the bank did not show job {}'s escrow: {e}", job.short());
                }
                self.escrows.answered(job, view, Instant::now());
                self.release_held(job);
            }
            Internal::Offer => {
                if self.last_offer.elapsed() >= Duration::from_secs(1) {
                    self.publish_offer();
                }
            }
            Internal::Revoked(a) => self.keep_revocation(&a, true),
            Internal::ClaimLook { job, view } => self.on_claim_look(job, view),
            Internal::Claimed { job, done } => self.claims.answered(job, &done),
            Internal::Done {
                key,
                result,
                claimable,
            } => {
                if let (Some((module, input)), Some(outcome)) = (claimable, result.outcome) {
                    let record = naac_types::ResultRecord {
                        job: key.1,
                        task: result.index,
                        attempt: result.attempt,
                        module,
                        input,
                        output: result.output_digest(),
                        outcome,
                        fuel_used: result.fuel_used,
                    };
                    self.claims.made(
                        &key.1,
                        (result.index, result.attempt),
                        naac_ledger::SignedRecord {
                            bytes: record.signing_bytes(),
                            sig: result.signature.clone(),
                        },
                    );
                }
                let Some(job) = self.jobs.get_mut(&key) else {
                    return;
                };
                if job.finished(result) {
                    self.send_report(key, false);
                }
            }
            Internal::ReportSent { key, forget } => {
                if forget {
                    if let Some(job) = self.jobs.remove(&key) {
                        job.cancel_all();
                    }
                    return;
                }
                let Some(job) = self.jobs.get_mut(&key) else {
                    return;
                };
                job.report_answered();
                self.send_report(key, false);
            }
            Internal::Device(dm) => match *dm {
                Ok(dm) => {
                    let mut r = dm.resources().clone();
                    r.network = std::mem::take(&mut self.resources.network);
                    tracing::info!(
                        "device: {} ({} cores, score {:.2} Gfuel/s per core), {} memory, {} free disk, {} GPUs",
                        r.cpu.model,
                        r.cpu.cores,
                        r.cpu.score,
                        naac_types::units::format_size(r.memory.total),
                        naac_types::units::format_size(r.disk.free),
                        r.gpus.len()
                    );
                    self.resources = r;
                    self.device = Some(Arc::new(Mutex::new(dm)));
                    self.push_status();
                }
                Err(e) => tracing::warn!("device probe failed: {e:#}"),
            },
            Internal::Storage(used, took) => {
                self.storage_measuring = false;
                // A walk of many files waits ten times its own length before the next, so
                // measuring never takes more than a tenth of a core.
                self.storage_measured = Instant::now() + took.saturating_mul(9);
                self.note_storage(used);
            }
            Internal::Resources(r, storage_used) => {
                let changed = !same_resources(&self.resources, &r);
                self.resources = *r;
                if let Some(m) = self.monitor.as_mut() {
                    m.probed_power(self.resources.power.clone());
                }
                self.note_storage(storage_used);
                if changed || self.last_status.elapsed() >= STATUS_EVERY {
                    self.push_status();
                }
            }
        }
    }

    fn heartbeat(&mut self) {
        let keys: Vec<JobKey> = self.jobs.keys().copied().collect();
        for k in keys {
            self.send_report(k, true);
        }
    }
}
