//! The requester's IO shell: one session per run owns the network client, the scheduler,
//! the payer and the reputation store. It turns network events into calls on the parts
//! (tally, checkpoints, bidding, assigns, watchdog), performs what they return, and is the
//! only code that drives the scheduler or pays. [`run`] is its loop; `events.rs` holds its
//! handlers.

use super::Local;
use super::assigns::Assigns;
use super::bidding::Bidding;
use super::budget::{Budget, TopUpOutcome};
use super::checkpoints::{self, CheckpointStore};
use super::prepare::{Blobs, PreparedJob, RunError};
use super::stored::StoredCheckpoints;
use super::tally::Tally;
use super::watchdog::{Sight, Watch, Watchdog};
use super::writer::Writer;
use crate::output::{self, Failure, ProviderTasks, Summary, TaskCounts, VerificationSummary};
use crate::pay::Payer;
use crate::reputation::Reputation;
use anyhow::Context as _;
use naac_net::{Client, Event, PeerId};
use naac_proto::{Hello, HostStatus, Request, RequestBody, Solicit, TaskResult, Welcome};
use naac_sandbox::Sandbox;
use naac_sched::{Millis, Scheduler};
use naac_types::{Credits, ResultRecord};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Requester settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub out_dir: PathBuf,
    pub sched: naac_sched::Config,
    /// Give up when no provider has joined for this long while tasks wait.
    pub provider_wait: Duration,
    /// The reputation store; `None` keeps no record.
    pub reputation: Option<PathBuf>,
    /// The user's key: attests this run's identity to providers (their allow/deny lists).
    pub user_key: Option<naac_net::Keypair>,
    /// Fail at once, with the reasons, when the hosts in view cannot run the job, instead of
    /// waiting for them.
    pub no_wait: bool,
    /// Pay for the job through a bank: its escrow is already open.
    pub payment: Option<Payment>,
    /// Tasks whose results an earlier run of this job left in `out_dir`: counted as
    /// accepted, never run (nor paid) again.
    pub keep: Vec<u32>,
    /// With `[output] store = true`: the data dir whose user keeps the run's checkpoints in
    /// the store (with `user_key`), so a run into the same `out_dir` resumes from them.
    pub store_home: Option<crate::Home>,
    /// Local workers run alongside the remote pool (`naac run --local N`): the owner name
    /// they greet with, and whether they may work while no remote host is in view.
    pub local: Option<Local>,
    /// Exactly this many providers will bid or decline (the embedded pool's workers): the
    /// first bidding window closes once they have, instead of after its full length.
    pub bidders: Option<usize>,
    /// A pool token shown in every `Hello` (`naac run --token`).
    pub pass: Option<naac_proto::Pass>,
    /// Data tokens for private stored inputs of others (`naac run --data-token`); the
    /// user's own private data needs none (with `user_key`).
    pub data_tokens: Vec<String>,
}

/// A job's open escrow and the key that signs its payments.
#[derive(Clone)]
pub struct Payment {
    pub escrow: crate::pay::Escrow,
    pub user: naac_net::Keypair,
    /// The bank's operator key, when this run holds it (the embedded pool's own bank): each
    /// bidder is registered before its standing is asked, since the pool's workers are this
    /// machine's own.
    pub operator: Option<naac_net::Keypair>,
    /// Testing aid: a payer who takes results and pays nothing (no settlement, no
    /// rejection), then closes its escrow; its providers must claim.
    pub unpaid: bool,
}

impl std::fmt::Debug for Payment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Payment {{ job: {}, escrow: {} }}",
            self.escrow.job.short(),
            self.escrow.amount
        )
    }
}

/// Live counts for progress displays.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub sched: naac_sched::Progress,
    pub fuel: u64,
    pub elapsed: Duration,
    /// Why tasks are waiting when no host in view may run them now.
    pub waiting: Option<String>,
    /// Paid to providers so far, when the job is paid.
    pub cost: Option<Credits>,
}

/// What happened, for the caller's exit code and printout.
#[derive(Debug)]
pub struct Finished {
    pub summary: Summary,
    /// The reduce step's stdout, when there is one and it succeeded.
    pub reduce_stdout: Option<Vec<u8>>,
}

impl Finished {
    /// Every task succeeded, and the reduce step too if there is one.
    pub fn success(&self) -> bool {
        let s = &self.summary;
        !s.interrupted
            && s.tasks.failed == 0
            && s.tasks.succeeded == s.tasks.total
            && s.reduce.as_ref().is_none_or(|r| r.outcome == "ok")
    }
}

/// Most market offers (and providers dialled from them) a run keeps.
const MAX_OFFERS: usize = 4096;

/// What spawned network calls tell the session.
pub(super) enum Internal {
    /// A provider answered Hello (`None`: not a provider), with the round-trip time to it.
    Hello(PeerId, Option<Box<Welcome>>, Option<Duration>),
    /// A node declined to work for us, and why.
    Declined(PeerId, String),
    /// With the runs it carried.
    AssignFailed(PeerId, String, Vec<(u32, u32)>),
    /// A provider answered an `Assign` with a report.
    Replied(PeerId, Box<naac_proto::Report>),
    /// The verifier's word on a result from the provider (`Err`: it could not run).
    Verified {
        peer: PeerId,
        result: Box<TaskResult>,
        record: Box<ResultRecord>,
        verdict: Result<Option<String>, String>,
    },
    /// A top-up of the escrow came back.
    TopUp(TopUpOutcome),
    /// The bank said whether a bidder has standing (its asks may set others' prices).
    Standing(PeerId, bool),
    /// A bidder answered a greeting for a fresh ask.
    Reask(PeerId, Box<Welcome>),
}

/// Verifications of one provider's results that may run at once: a provider whose results
/// are slow to verify waits for its own, never holds up another's.
pub(super) const VERIFIERS_PER_PROVIDER: usize = 1;

/// A provider's verifications: its budget, and the runs whose results wait for them (they
/// count as held by it, since it sent them and forgot them).
pub(super) struct Verifying {
    pub(super) budget: Arc<tokio::sync::Semaphore>,
    pub(super) runs: HashSet<(u32, u32)>,
}

/// One run of one job: the IO shell around the parts.
pub(super) struct Session<'a> {
    pub(super) prepared: &'a PreparedJob,
    pub(super) client: Client,
    pub(super) sched: Scheduler<PeerId>,
    pub(super) started: Instant,
    /// Modules and inputs providers may fetch.
    pub(super) blobs: Blobs,
    pub(super) internal: mpsc::Sender<Internal>,
    pub(super) writer: Writer,
    pub(super) sandbox: Arc<Sandbox>,
    pub(super) tally: Tally,
    pub(super) checkpoints: CheckpointStore,
    pub(super) bidding: Bidding,
    pub(super) assigns: Assigns,
    /// Pays verified results, when the job is paid.
    pub(super) payer: Option<Payer>,
    /// The rolling escrow's count, when the job is paid; and the start limit it last set.
    pub(super) budget: Option<Budget>,
    pub(super) start_limit: Option<u64>,
    /// The bank's operator key, when this run holds it (see [`Payment::operator`]).
    pub(super) operator: Option<naac_net::Keypair>,
    pub(super) reputation: Option<Reputation>,
    pub(super) module_hex: String,
    /// Providers that welcomed us, in order.
    pub(super) known_peers: Vec<PeerId>,
    /// The newest status of every provider that welcomed us.
    pub(super) hosts: HashMap<PeerId, HostStatus>,
    /// Providers dropped for a low reputation.
    pub(super) banned: HashSet<PeerId>,
    pub(super) peer_ips: HashMap<PeerId, IpAddr>,
    /// Results received per provider, by the path they took.
    pub(super) arrived: HashMap<PeerId, crate::output::Arrived>,
    /// Providers whose last request came over a relayed connection.
    pub(super) relayed: HashSet<PeerId>,
    /// What we greet providers with.
    pub(super) hello: Hello,
    /// When the first provider joined, from the start of the run.
    pub(super) first_provider: Option<Duration>,
    /// Verifier runs at once, all providers together (the machine's cores).
    pub(super) verifiers: Arc<tokio::sync::Semaphore>,
    /// Each provider's verifications under way.
    pub(super) verifying: HashMap<PeerId, Verifying>,
    /// Providers' offers heard on the market topic (soft state), and those dialled.
    pub(super) market: crate::survey::Market,
    pub(super) finished: bool,
    /// Checkpoints going to the store too (`[output] store = true`).
    pub(super) stored: Option<StoredCheckpoints>,
    /// A job of stages: the accepted outputs later stages take.
    pub(super) feeds: super::stages::Feeds,
    /// When each open task's runs were assigned: `(attempt, run clock ms)`.
    pub(super) assigned_at: HashMap<u32, Vec<(u32, u64)>>,
    /// The round trip measured to each provider when it was greeted.
    pub(super) rtts: HashMap<PeerId, Duration>,
    /// This run's own local workers (`--local`), and the providers among them.
    pub(super) local: Option<Local>,
    pub(super) locals: HashSet<PeerId>,
    /// Accepted tasks run again because every copy of an output they made was lost.
    pub(super) recomputed: u64,
    /// Where each provider said it listens (for others to fetch what it holds).
    pub(super) addrs: HashMap<PeerId, Vec<String>>,
    /// Reports per task that no holder gave it an output it takes.
    pub(super) no_holder: HashMap<u32, u32>,
}

/// Runs a prepared job over the network until every task is done or failed, or `shutdown`
/// resolves (Ctrl-C). Results land in `opts.out_dir` as they arrive.
pub async fn run(
    prepared: PreparedJob,
    client: Client,
    mut events: mpsc::Receiver<Event>,
    sandbox: Arc<Sandbox>,
    mut opts: Options,
    progress: watch::Sender<Progress>,
    shutdown: impl Future<Output = ()>,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let total = u32::try_from(prepared.job.task_count()).context("too many tasks")?;
    let writer = Writer::start(
        &opts.out_dir,
        super::stages::layout(&prepared.stages),
        !opts.keep.is_empty(),
    )?;
    let mut blobs = Blobs::new();
    blobs.insert(prepared.module_id, prepared.module_bytes.clone());
    for st in &prepared.stages {
        blobs.insert(st.module_id, st.module_bytes.clone());
    }
    blobs.access = opts.user_key.clone().map(|user| crate::store::DataAccess {
        user,
        tokens: opts.data_tokens.clone(),
    });
    blobs.set_module(prepared.module_source.clone());
    let (internal_tx, mut internal) = mpsc::channel(256);
    let reputation = match &opts.reputation {
        Some(path) => Some(Reputation::open(path)?),
        None => None,
    };
    let job = &prepared.job;
    let mut sched_config = opts.sched.clone();
    sched_config.verify = job.verify.clone();
    sched_config.straggler_factor = job.straggler_factor;
    sched_config.retries = job.retries;
    sched_config.seed = u64::from_le_bytes(prepared.id.0[..8].try_into().expect("8 bytes"));
    let max_price = job.budget.max_price;
    let operator = opts.payment.as_ref().and_then(|p| p.operator.clone());
    let payer = match opts.payment.take() {
        Some(p) => {
            let log = crate::pay::payment_log(&opts.out_dir, &p.escrow.job);
            let mut payer = Payer::new(p.escrow, p.user, Some(&log)).map_err(|e| {
                RunError::Internal(anyhow::anyhow!(
                    "{e}\nhint: the results directory must be writable; nothing ran and the escrow is refunded"
                ))
            })?;
            if p.unpaid {
                payer.stiff();
            }
            Some(payer)
        }
        None => None,
    };
    let budget = payer.as_ref().map(|p| {
        Budget::new(
            job.budget.max_price.cost(job.limits.fuel),
            p.escrow().amount,
            crate::pay::escrow_for(job, job.task_count()),
            job.budget.max_cost,
        )
    });
    let mut hello = crate::survey::hello(&client, opts.user_key.as_ref());
    hello.pass = opts.pass.clone();
    let s_bank = payer
        .as_ref()
        .map(|p| naac_proto::AccountKey(p.escrow().bank_key.0));
    if payer.is_some() {
        hello.solicit = Some(Solicit {
            job: prepared.id,
            max_price,
            fuel: job.limits.fuel,
            bank: s_bank,
        });
    }
    let sched = if prepared.stages.is_empty() {
        Scheduler::new(total, sched_config)
    } else {
        super::stages::scheduler(&prepared.stages, sched_config)?
    };
    let mut s = Session {
        prepared: &prepared,
        client: client.clone(),
        sched,
        started,
        blobs,
        internal: internal_tx,
        writer,
        sandbox: sandbox.clone(),
        tally: Tally::new(
            prepared.id,
            prepared.module_id,
            job.task_count(),
            job.limits.fuel,
            prepared.verifier.is_some(),
        ),
        checkpoints: CheckpointStore::new(checkpoints::BUDGET, naac_sandbox::MAX_CHECKPOINT_BYTES),
        bidding: {
            let mut b = Bidding::new(prepared.id, payer.is_some(), max_price);
            if let Some(n) = opts.bidders {
                b.expect(n);
            }
            b
        },
        assigns: Assigns::default(),
        payer,
        budget,
        start_limit: None,
        operator,
        reputation,
        module_hex: prepared.module_id.to_hex(),
        known_peers: Vec::new(),
        hosts: HashMap::new(),
        banned: HashSet::new(),
        peer_ips: HashMap::new(),
        arrived: HashMap::new(),
        relayed: HashSet::new(),
        hello,
        first_provider: None,
        verifiers: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        verifying: HashMap::new(),
        market: crate::survey::Market::new(MAX_OFFERS, client.home()),
        finished: false,
        stored: None,
        feeds: Default::default(),
        assigned_at: HashMap::new(),
        rtts: HashMap::new(),
        local: opts.local.clone(),
        locals: HashSet::new(),
        recomputed: 0,
        addrs: HashMap::new(),
        no_holder: HashMap::new(),
    };
    s.tally.set_stages(
        prepared
            .stages
            .iter()
            .map(|st| {
                let hold = super::stages::Feeds::feeds_others(&prepared.stages, st.base)
                    .then_some(super::stages::HOLD_OVER);
                (st.base, st.module_id, st.job.limits.fuel, hold)
            })
            .collect(),
    );
    // Kept results that later stages take as input are read back.
    for &t in &opts.keep {
        let st = &prepared.stages;
        if !st.is_empty() && t < total && super::stages::Feeds::feeds_others(st, t) {
            let dir = opts
                .out_dir
                .join(super::stages::task_dir(&super::stages::layout(st), t));
            s.feeds.load(t, &dir, &mut s.blobs)?;
        }
    }
    s.sched.keep_accepted(opts.keep.iter().copied());
    if let (true, Some(home), Some(user)) = (job.output_store, &opts.store_home, &opts.user_key) {
        let mut st =
            StoredCheckpoints::new(client.clone(), home.clone(), user.clone(), &opts.out_dir);
        for (task, source) in st.load() {
            if !opts.keep.contains(&task) {
                s.checkpoints.restore(task, source.id);
                s.blobs.add_source(source);
            }
        }
        s.checkpoints.track();
        s.stored = Some(st);
    }
    // The market: hear providers' offers, and look providers up by commodity class in the
    // DHT; both lead to providers we were not told about.
    if let Err(e) = crate::survey::discover(&client, Duration::ZERO, Duration::from_secs(10)).await
    {
        tracing::warn!("{e:#}");
    }
    // Stored inputs are looked up, not read: providers read them from storage hosts.
    if let Err(e) = s.blobs.open_stored(&client, &s.prepared.job).await {
        return Err(RunError::Invalid(e));
    }
    s.drive();
    let mut last_flush = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watchdog = Watchdog::new(opts.provider_wait, opts.no_wait, s.now());
    let mut interrupted = false;
    tokio::pin!(shutdown);
    let mut failed: Option<RunError> = None;
    while !s.finished {
        tokio::select! {
            _ = &mut shutdown => {
                interrupted = true;
                break;
            }
            ev = events.recv() => match ev {
                Some(ev) => {
                    s.on_event(ev).await;
                    s.close_bidding();
                    s.steer_budget();
                    s.writer.flush().await;
                }
                None => { failed = Some(anyhow::anyhow!("the network stopped").into()); break; }
            },
            Some(i) = internal.recv() => {
                s.on_internal(i);
                s.close_bidding();
                s.steer_budget();
                s.writer.flush().await;
            }
            _ = tick.tick() => {
                if let Some(st) = &mut s.stored {
                    st.apply(s.checkpoints.take_changes());
                    st.poll();
                }
                s.close_bidding();
                s.refresh_asks();
                let now = s.now();
                s.sched.tick(now);
                s.steer_budget();
                s.drive();
                s.writer.flush().await;
                if last_flush.elapsed() > Duration::from_secs(1) {
                    s.flush_reputation();
                    last_flush = Instant::now();
                }
                let p = s.sched.progress();
                let explanation = s.explanation();
                let declined = || s.bidding.declined_list();
                let watch = watchdog.tick(s.now(), &Sight {
                    progress: &p,
                    finished: s.finished,
                    explanation: &explanation,
                    declined: &declined,
                    verify: &prepared.job.verify,
                    budget: s.budget.as_ref().and_then(|b| b.paused()),
                });
                let waiting = match watch {
                    Watch::Go => s.budget.as_ref().and_then(|b| b.paused()).map(str::to_string),
                    Watch::Wait(why) => Some(why),
                    Watch::Fail(why) => {
                        failed = Some(anyhow::anyhow!(why).into());
                        break;
                    }
                };
                if let Some(why) = s.payer.as_ref().and_then(|p| p.failed()) {
                    failed = Some(anyhow::anyhow!(
                        "{why}: stopped before paying anything a restart would not know of\nhint: free space where the results go, then run the job again into the same directory (the payments already logged are sent again)"
                    ).into());
                    break;
                }
                let cost = s.cost();
                progress.send_replace(Progress { sched: p, fuel: s.tally.fuel, elapsed: started.elapsed(), waiting, cost });
            }
        }
    }
    if let Some(e) = failed {
        // Pay for what was verified, then give the rest of the escrow back.
        if let Some(payer) = s.payer.take()
            && let Err(why) = payer.finish(Duration::from_secs(30)).await
        {
            tracing::error!(
                "the escrow could not be refunded now: {why}; the bank refunds it when it expires"
            );
        }
        return Err(e);
    }
    s.finish(&opts, &progress, interrupted).await
}

impl Session<'_> {
    /// The run's clock.
    pub(super) fn now(&self) -> Millis {
        Millis(self.started.elapsed().as_millis() as u64)
    }

    /// Keeps the scheduler's start limit at what the escrow covers, and tops the escrow up
    /// when it runs low (the rolling escrow, `budget.rs`).
    pub(super) fn steer_budget(&mut self) {
        let (Some(b), Some(payer)) = (self.budget.as_mut(), self.payer.as_ref()) else {
            return;
        };
        let (paid, unanswered) = payer.accounts();
        let owed = self.bidding.owed().saturating_add(unanswered);
        let now = Millis(self.started.elapsed().as_millis() as u64);
        let progress = self.sched.progress();
        let limit = b.start_limit(paid, owed, progress.started);
        if limit != self.start_limit {
            self.start_limit = limit;
            self.sched.set_start_limit(limit, now);
            self.drive();
        }
        let Some(b) = self.budget.as_mut() else {
            return;
        };
        // Tasks wait with no copy covered: retries past the expected copies.
        let blocked = progress.pending > 0 && b.free_copies(paid, owed) == 0;
        if let Some(due) = b.due(paid, owed, blocked, now) {
            let per_copy = b.per_copy();
            let Some(payer) = self.payer.as_ref() else {
                return;
            };
            let top_up = payer.top_up(per_copy, due);
            let internal = self.internal.clone();
            tokio::spawn(async move {
                let _ = internal.send(Internal::TopUp(top_up.await)).await;
            });
        }
    }

    /// What has been paid so far.
    fn cost(&self) -> Option<Credits> {
        self.payer
            .as_ref()
            .map(|p| p.paid.lock().unwrap_or_else(|e| e.into_inner()).total)
    }

    pub(super) fn flush_reputation(&mut self) {
        if let Some(rep) = self.reputation.as_mut()
            && let Err(e) = rep.flush()
        {
            tracing::warn!("failed to save reputation: {e:#}");
        }
    }

    /// Why the hosts in view cannot run this job's tasks now.
    fn explanation(&self) -> crate::explain::Explanation {
        let min = self.prepared.job.verify.min_reputation;
        crate::explain::Explanation::of_reasons(self.hosts.iter().map(|(peer, st)| {
            let mut why = self.prepared.rule_out(st, self.rtts.get(peer).copied());
            if self.banned.contains(peer) {
                why.push(crate::explain::rejected_here(min));
            }
            if self.idle_local(peer) {
                why.push("a local worker, waiting for a remote host (--no-local-fallback)".into());
            }
            why
        }))
    }

    /// The run is over: says goodbye to providers, settles and refunds, writes the
    /// remaining results, runs the reduce step and writes `summary.json`.
    async fn finish(
        mut self,
        opts: &Options,
        progress: &watch::Sender<Progress>,
        interrupted: bool,
    ) -> Result<Finished, RunError> {
        let prepared = self.prepared;
        // Tell every provider the job is over (after Ctrl-C: to stop working on it), so
        // they forget it; best effort, without waiting long.
        let farewells = self.known_peers.iter().map(|peer| {
            let req = Request::new(RequestBody::Cancel {
                job: prepared.id,
                tasks: Vec::new(),
            });
            tokio::time::timeout(Duration::from_millis(500), self.client.request(*peer, req))
        });
        futures::future::join_all(farewells).await;
        let final_progress = self.sched.progress();
        self.writer.flush().await;
        self.flush_reputation();
        // Pay what is still queued, then refund the rest of the escrow.
        let mut cost = None;
        let mut earned: HashMap<PeerId, Credits> = HashMap::new();
        if let Some(payer) = self.payer.take() {
            let paid = payer.paid.clone();
            let (bank, escrow, max_price) = (
                naac_types::hex(&payer.escrow().bank_key.0),
                // Opened plus every top-up.
                self.budget
                    .as_ref()
                    .map_or(payer.escrow().amount, |b| b.deposited()),
                payer.escrow().max_price,
            );
            let (refunded, held, open) = match payer.finish(Duration::from_secs(60)).await {
                Ok(crate::pay::Closed::Refunded(c)) => (c, None, false),
                Ok(crate::pay::Closed::Returns { now, later, at_ms }) => {
                    (now, Some((later, at_ms)), false)
                }
                Err(e) => {
                    tracing::error!("the escrow was not refunded: {e}");
                    (Credits::ZERO, None, true)
                }
            };
            let p = paid.lock().unwrap_or_else(|e| e.into_inner()).clone();
            earned = p.by_provider.clone();
            cost = Some(output::CostSummary {
                bank,
                max_price: max_price.to_string(),
                escrow: escrow.to_string(),
                paid: p.total.to_string(),
                refunded: refunded.to_string(),
                held_for_claims: held.map(|(c, _)| c.to_string()),
                returns_at_ms: held.map(|(_, at)| at),
                settlements: p.settlements,
                refused: p.refused,
                refusal: p.last_refusal,
                unconfirmed: p.unconfirmed,
                open,
            });
        }
        let started = self.started;
        progress.send_replace(Progress {
            sched: final_progress,
            fuel: self.tally.fuel,
            elapsed: started.elapsed(),
            waiting: None,
            cost: cost
                .as_ref()
                .and_then(|c| Credits::parse(&c.paid.replace(',', "")).ok()),
        });
        let mut providers: Vec<ProviderTasks> = self
            .tally
            .stats
            .iter()
            .map(|(p, st)| {
                let peer_id = p.to_string();
                let reputation = self
                    .reputation
                    .as_mut()
                    .and_then(|rep| rep.get(&peer_id).ok())
                    .map(|rec| rec.score());
                ProviderTasks {
                    peer_id,
                    tasks: st.accepted,
                    verified: st.verified,
                    rejected: st.rejected,
                    lost: st.lost,
                    reputation,
                    ask: self.bidding.ask_of(p).map(|a| a.to_string()),
                    earned: cost
                        .is_some()
                        .then(|| earned.get(p).copied().unwrap_or_default().to_string()),
                    arrived: self.arrived.get(p).copied().unwrap_or_default(),
                    local: self.locals.contains(p),
                }
            })
            .collect();
        providers.sort_by(|a, b| b.tasks.cmp(&a.tasks).then(a.peer_id.cmp(&b.peer_id)));
        let policy = &prepared.job.verify;
        let closed = (final_progress.succeeded + final_progress.failed).max(1) as f64;
        let tally = &self.tally;
        let verification = VerificationSummary {
            replicas: policy.replicas,
            quorum: policy.quorum,
            adaptive: policy.adaptive,
            spot_check: policy.spot_check,
            verifier: policy.verifier.is_some(),
            runs: final_progress.started,
            overhead: final_progress.started as f64 / closed,
            verified: final_progress.verified as u64,
            disagreements: final_progress.disagreements as u64,
            rechecked: final_progress.rechecked as u64,
            speculative: final_progress.speculative as u64,
            rejected_results: tally.rejected_results,
        };
        let stage_counts = super::stages::summary(&prepared.stages, &self.sched);
        let recomputed = self.recomputed;
        let Session {
            writer,
            tally,
            first_provider,
            checkpoints,
            sandbox,
            blobs,
            stored,
            ..
        } = self;
        // Done with them: the checkpoints kept in the store go (an interrupted run keeps
        // them for the next run into this dir).
        if let Some(st) = stored
            && !interrupted
        {
            st.finish().await;
        }
        let write_errors = writer.finish().await?;
        let mut failures = tally.failures;
        for (task, message) in &write_errors {
            failures.push(Failure {
                task: *task as u64,
                stage: None,
                kind: "write".into(),
                message: format!("result could not be written: {message}"),
            });
        }
        let total = final_progress.total;
        let mut summary = Summary {
            job_id: prepared.id.to_hex(),
            name: prepared.job.name.clone(),
            tasks: TaskCounts {
                total: total as u64,
                succeeded: (final_progress.succeeded as u64)
                    .saturating_sub(write_errors.len() as u64),
                failed: final_progress.failed as u64 + write_errors.len() as u64,
                retried: final_progress.retried as u64,
                kept: opts.keep.iter().filter(|t| **t < total).count() as u64,
            },
            wall_seconds: 0.0,
            first_provider_seconds: first_provider.map(|d| d.as_secs_f64()),
            fuel_total: tally.fuel,
            fuel_spent: tally.fuel_spent,
            providers,
            verification,
            discrepancies: tally.discrepancies,
            checkpoints: checkpoints.summary,
            failures,
            out_dir: opts.out_dir.clone(),
            interrupted,
            reduce: None,
            cost,
            served: blobs.summary(),
            store: None,
            stages: stage_counts,
            recomputed,
        };
        let mut reduce_stdout = super::stages::finish(&prepared.stages, &mut summary);
        if let Some((module, args)) = &prepared.reduce
            && !interrupted
            && final_progress.succeeded == total
        {
            let (rs, out) =
                super::sandboxed::reduce(prepared, module, args, &opts.out_dir, &sandbox).await?;
            summary.fuel_total += rs.fuel;
            summary.reduce = Some(rs);
            reduce_stdout = out;
        }
        let _ = std::fs::remove_dir(opts.out_dir.join(".staging"));
        summary.wall_seconds = started.elapsed().as_secs_f64();
        output::write_json_atomic(&opts.out_dir.join("summary.json"), &summary)?;
        Ok(Finished {
            summary,
            reduce_stdout,
        })
    }
}
