//! The provider: runs tasks for any requester that reaches it.
//!
//! Inbound `Assign`s are acknowledged at once; each task then waits for its module and input
//! blobs (fetched once from the requester and checked against their hashes) and for a free
//! slot, runs in the sandbox on a blocking thread, and its result joins the job's outbox. One
//! `Report` per job is in flight at a time, so results batch up naturally under load; a
//! heartbeat report renews the leases of held tasks every [`HEARTBEAT`]. A requester that
//! disconnects has its tasks cancelled. Nothing a requester or a guest does stops the node.
//!
//! Every result is signed with the node's key over its [`ResultRecord`] (job, task, module,
//! inputs, output digest, outcome, fuel). A guest's checkpoints are sent to the requester as
//! they are taken (one upload per task at a time; a checkpoint taken while the previous one
//! is still uploading is skipped), and a task assigned with `resume` starts from one.
//!
//! Two testing aids make misbehaviour reproducible: `faulty` returns a wrong output for a
//! fraction of tasks (still signed: a cheater signs its own lies), and `slowdown` makes the
//! node hold every result for that many times the task's run time.

use anyhow::Context as _;
use naac_net::{Client, Event, Keypair, PeerId};
use naac_proto::{
    Assign, MAX_TASKS_PER_ASSIGN, OutputFile, REPORT_SOFT_LIMIT, Report, Request, RequestBody,
    Response, ResponseBody, TaskResult, TaskSpec, VERSION,
};
use naac_proto::{HostStatus, Welcome};
use naac_sandbox::{CheckpointSink, Gate, Prepared, Sandbox, SandboxConfig, TaskRun};
use naac_types::host::{HostLimits, HostState, PeerRtt, Resources};
use naac_types::{ContentId, JobId, ResultRecord};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore, mpsc};

use crate::Home;
use crate::device::{self, DeviceManager};
use crate::owner::{self, Monitor};
use std::time::Instant;

/// How often a provider renews the leases of the tasks it holds.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// How often the owner's policy and activity are checked while tasks are held (pause latency
/// is this plus an epoch tick); an idle node checks every `IDLE_POLICY_POLL` (1 s).
pub const POLICY_POLL: Duration = Duration::from_millis(100);
const IDLE_POLICY_POLL: Duration = Duration::from_secs(1);

/// How often memory, disk, power and round-trip times are re-probed.
const DEVICE_REFRESH: Duration = Duration::from_secs(10);

/// How often the storage dirs are measured while tasks run.
const STORAGE_MEASURE: Duration = Duration::from_secs(1);

/// Peers get a status at least this often, changed or not.
const STATUS_EVERY: Duration = Duration::from_secs(30);

/// A status that does not get through in this time is dropped.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Most peers that get status updates.
const MAX_STATUS_PEERS: usize = 1024;

/// Modules kept linked and ready in memory.
const MAX_MODULES: usize = 64;

/// Most blob bytes kept in memory for reuse across tasks.
const BLOB_CACHE_BYTES: usize = 512 << 20;

/// Provider settings.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub home: Home,
    /// Tasks run at once.
    pub slots: u32,
    pub net: naac_net::Config,
    /// Who runs this node, announced so requesters keep replicas of one task apart.
    pub owner: Option<String>,
    /// Testing aid: return a wrong output for this fraction of tasks.
    pub faulty: Option<f64>,
    /// Testing aid: hold each result for this many times its run time (1 = normal speed).
    pub slowdown: f64,
    /// Obey the owner's policy file and probe the device (off for embedded pools, which run
    /// their own user's job on their own machine).
    pub owner_policy: bool,
    /// Asking price per giga-fuel before the owner's window multiplier; the policy's
    /// `min_price` is the floor.
    pub price: naac_types::Price,
    /// This node is also the pool's bank: bank requests go here.
    pub bank: Option<crate::bank::BankHandle>,
    /// Run tasks (a node may be only a bank).
    pub provide: bool,
}

impl ProviderConfig {
    pub fn new(home: Home, slots: u32, net: naac_net::Config) -> Self {
        Self {
            home,
            slots,
            net,
            owner: None,
            faulty: None,
            slowdown: 1.0,
            owner_policy: true,
            price: naac_types::Price(0),
            bank: None,
            provide: true,
        }
    }
}

type JobKey = (PeerId, JobId);

enum Internal {
    Done {
        key: JobKey,
        result: TaskResult,
    },
    /// A report got its answer (or failed); `forget` when the requester disowned the job.
    ReportSent {
        key: JobKey,
        forget: bool,
    },
    /// The device manager is ready (first probe done).
    Device(Box<anyhow::Result<DeviceManager>>),
    /// A fresh probe, and the bytes under the storage dirs.
    Resources(Box<Resources>, StorageUse),
    /// The bytes under the storage dirs (measured more often while tasks run), and how
    /// long measuring took.
    Storage(StorageUse, Duration),
    /// A peer connected a moment ago: let it hear our offer without waiting for the renewal.
    Offer,
}

/// Bytes under the storage dirs, the least free space of the disks holding them, and when
/// the walk that counted them began.
#[derive(Clone, Copy, Debug)]
struct StorageUse {
    bytes: u64,
    free: Option<u64>,
    at: Instant,
}

impl StorageUse {
    /// Walks the storage dirs (bounded; blocking).
    fn measure(dirs: &[std::path::PathBuf]) -> Self {
        let at = Instant::now();
        let bytes = dirs.iter().map(|d| owner::dir_size(d, 100_000)).sum();
        let free = dirs
            .iter()
            .map(|d| crate::device::probe_disk(d))
            .filter(|d| d.total > 0)
            .map(|d| d.free)
            .min();
        StorageUse { bytes, free, at }
    }
}

/// How often a provider renews its market offer.
const OFFER_INTERVAL: Duration = Duration::from_secs(10);
/// How long an offer lives unless renewed (soft state).
const OFFER_TTL: Duration = Duration::from_secs(30);

/// One task attempt we hold: queued or running.
struct Held {
    attempt: u32,
    cancel: Arc<AtomicBool>,
    /// It got a slot (it is running, or paused while running).
    started: Arc<AtomicBool>,
}

#[derive(Default)]
struct JobState {
    /// Tasks queued or running, by index.
    held: HashMap<u32, Held>,
    /// Finished results not yet sent.
    outbox: Vec<TaskResult>,
    /// `(task, attempt)` of results in the report in flight.
    inflight: Vec<(u32, u32)>,
    reporting: bool,
    /// Highest `Assign::seq` applied.
    seen_seq: u64,
    /// Attempts handed back unfinished, for the next report.
    returned: Vec<(u32, u32)>,
}

impl JobState {
    /// Every attempt the requester should consider ours: held, waiting to be sent, or sent
    /// and not yet acknowledged.
    fn all_held(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self.held.iter().map(|(i, h)| (*i, h.attempt)).collect();
        v.extend(self.outbox.iter().map(|r| (r.index, r.attempt)));
        v.extend_from_slice(&self.inflight);
        v
    }
}

/// A blob, or the fetch that will produce it.
type BlobCell = Arc<OnceCell<Arc<Vec<u8>>>>;

/// Fetches in flight at once: queued tasks prefetch their inputs, but not all at once.
const MAX_FETCHES: usize = 32;

/// Blobs by content id, fetched at most once at a time.
struct Blobs {
    fetches: Semaphore,
    cells: Mutex<HashMap<ContentId, BlobCell>>,
    bytes: Mutex<usize>,
}

impl Blobs {
    async fn get(
        &self,
        client: &Client,
        peer: PeerId,
        id: ContentId,
    ) -> anyhow::Result<Arc<Vec<u8>>> {
        let cell = self
            .cells
            .lock()
            .expect("blob lock")
            .entry(id)
            .or_default()
            .clone();
        let mut fetched = false;
        let blob = cell
            .get_or_try_init(|| async {
                fetched = true;
                let _permit = self.fetches.acquire().await.context("fetches closed")?;
                let resp = client
                    .request(peer, Request::new(RequestBody::Fetch { id }))
                    .await
                    .with_context(|| format!("fetch blob {}", id.short()))?;
                match resp.body {
                    ResponseBody::Blob(bytes) => {
                        if ContentId::of(&bytes) != id {
                            anyhow::bail!(
                                "blob {} from {peer} does not match its hash",
                                id.short()
                            );
                        }
                        Ok(Arc::new(bytes))
                    }
                    other => anyhow::bail!("requester has no blob {}: {other:?}", id.short()),
                }
            })
            .await?
            .clone();
        if !fetched {
            return Ok(blob);
        }
        let mut total = self.bytes.lock().expect("blob lock");
        *total += blob.len();
        if *total > BLOB_CACHE_BYTES {
            // Crude but bounded: start over; tasks holding an Arc keep their copy.
            self.cells.lock().expect("blob lock").clear();
            *total = 0;
        }
        Ok(blob)
    }
}

struct Shared {
    client: Client,
    keypair: Keypair,
    faulty: Option<f64>,
    slowdown: f64,
    sandbox: Arc<Sandbox>,
    slots: Arc<Semaphore>,
    gate: Gate,
    blobs: Blobs,
    modules: Mutex<HashMap<ContentId, Arc<OnceCell<Prepared>>>>,
    internal: mpsc::Sender<Internal>,
}

impl Shared {
    async fn module(&self, peer: PeerId, id: ContentId) -> anyhow::Result<Prepared> {
        let cell = {
            let mut modules = self.modules.lock().expect("module lock");
            if modules.len() >= MAX_MODULES && !modules.contains_key(&id) {
                // Bounded: start over (the sandbox's own cache still has them compiled).
                modules.clear();
            }
            modules.entry(id).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let sandbox = self.sandbox.clone();
            if let Some(p) = tokio::task::spawn_blocking(move || sandbox.cached(&id)).await? {
                return Ok(p);
            }
            let bytes = self.blobs.get(&self.client, peer, id).await?;
            let sandbox = self.sandbox.clone();
            let p = tokio::task::spawn_blocking(move || sandbox.compile(&id, &bytes)).await??;
            Ok(p)
        })
        .await
        .cloned()
    }

    /// Runs one task to a result; never fails (a task that cannot run is a rejected result).
    async fn run_task(
        &self,
        peer: PeerId,
        assign: &AssignInfo,
        spec: TaskSpec,
        cancel: Arc<AtomicBool>,
        started: Arc<AtomicBool>,
    ) -> TaskResult {
        let (index, attempt) = (spec.index, spec.attempt);
        match self.try_run(peer, assign, spec, cancel, started).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    "failed to run task {index} of job {}: {e:#}",
                    assign.job.short()
                );
                rejected(index, attempt, format!("{e:#}"))
            }
        }
    }

    async fn try_run(
        &self,
        peer: PeerId,
        assign: &AssignInfo,
        spec: TaskSpec,
        cancel: Arc<AtomicBool>,
        started: Arc<AtomicBool>,
    ) -> anyhow::Result<TaskResult> {
        let module = self.module(peer, assign.module).await?;
        let stdin = match spec.stdin {
            Some(id) => self.blobs.get(&self.client, peer, id).await?.to_vec(),
            None => Vec::new(),
        };
        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for (name, id) in &spec.inputs {
            inputs.push((name.clone(), self.blobs.get(&self.client, peer, *id).await?));
        }
        let restore = match spec.resume {
            Some(id) => Some(self.blobs.get(&self.client, peer, id).await?),
            None => None,
        };
        let input_digest = spec.input_digest(&assign.argv0);
        let _permit = self.slots.acquire().await.context("slots closed")?;
        if cancel.load(Ordering::Relaxed) {
            anyhow::bail!("cancelled before it started");
        }
        started.store(true, Ordering::Relaxed);
        let checkpoint_interval = assign.checkpoint_interval_ms.map(Duration::from_millis);
        let on_checkpoint = checkpoint_interval.map(|_| {
            checkpoint_sink(
                self.client.clone(),
                peer,
                assign.job,
                spec.index,
                spec.attempt,
            )
        });
        let run = TaskRun {
            argv0: assign.argv0.clone(),
            args: spec.args,
            stdin,
            inputs,
            limits: assign.limits,
            seed: spec.seed.0,
            restore,
            checkpoint_interval,
            on_checkpoint,
        };
        let sandbox = self.sandbox.clone();
        let cancel2 = cancel.clone();
        let r = tokio::task::spawn_blocking(move || sandbox.run(&module, &run, &cancel2))
            .await
            .context("task thread panicked")??;
        if self.slowdown > 1.0 {
            // Testing aid: a slow machine holds its slot for the extra time too.
            let extra = r.wall.saturating_sub(r.paused).mul_f64(self.slowdown - 1.0);
            let until = tokio::time::Instant::now() + extra;
            while tokio::time::Instant::now() < until && !cancel.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20).min(extra)).await;
            }
        }
        let (mut stdout, mut stderr) = (r.stdout, r.stderr);
        if r.outcome == naac_types::Outcome::Ok
            && let Some(fraction) = self.faulty
            && cheat_on(&self.client.peer_id(), &assign.job, spec.index, fraction)
        {
            // Testing aid: a made-up answer, different on every faulty provider.
            stdout.extend_from_slice(
                format!("\n[wrong answer from {}]\n", self.client.peer_id()).as_bytes(),
            );
        }
        if r.outcome != naac_types::Outcome::Ok {
            // A failed attempt's output is for diagnosis only: keep the tail.
            keep_tail(&mut stdout, FAILED_OUTPUT_TAIL);
            keep_tail(&mut stderr, FAILED_OUTPUT_TAIL);
        }
        let mut result = TaskResult {
            index: spec.index,
            attempt: spec.attempt,
            outcome: Some(r.outcome),
            exit_code: r.exit_code,
            message: r.message,
            fuel_used: r.fuel_used,
            wall_us: r.wall.as_micros() as u64,
            stdout,
            stderr,
            outputs: r
                .outputs
                .into_iter()
                .map(|(name, data)| OutputFile { name, data })
                .collect(),
            signature: Vec::new(),
            checkpoints: r.checkpoints,
            resumed: spec.resume,
        };
        let record = ResultRecord {
            job: assign.job,
            task: spec.index,
            attempt: spec.attempt,
            module: assign.module,
            input: input_digest,
            output: result.output_digest(),
            outcome: r.outcome,
            fuel_used: result.fuel_used,
        };
        result.signature = naac_net::sign(&self.keypair, &record.signing_bytes());
        Ok(result)
    }
}

/// Sends each checkpoint the guest takes to the requester; while one is uploading, newer
/// ones are skipped (the next one after it lands is sent).
fn checkpoint_sink(
    client: Client,
    peer: PeerId,
    job: JobId,
    index: u32,
    attempt: u32,
) -> CheckpointSink {
    let handle = tokio::runtime::Handle::current();
    let uploading = Arc::new(AtomicBool::new(false));
    CheckpointSink(Arc::new(move |data: Vec<u8>| {
        if uploading.swap(true, Ordering::AcqRel) {
            return;
        }
        let (client, uploading) = (client.clone(), uploading.clone());
        handle.spawn(async move {
            let req = Request::new(RequestBody::Checkpoint {
                job,
                index,
                attempt,
                data,
            });
            if let Err(e) = client.request(peer, req).await {
                tracing::debug!("checkpoint of task {index} did not reach {peer}: {e}");
            }
            uploading.store(false, Ordering::Release);
        });
    }))
}

/// Testing aid: whether a faulty node cheats on this task (a fixed choice per node and task).
fn cheat_on(me: &PeerId, job: &JobId, index: u32, fraction: f64) -> bool {
    let mut h = blake3::Hasher::new_derive_key("naac faulty provider v1");
    h.update(&me.to_bytes());
    h.update(&job.0);
    h.update(&index.to_le_bytes());
    let x = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    ((x >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

/// Bytes of stdout and stderr kept from a failed attempt.
const FAILED_OUTPUT_TAIL: usize = 64 << 10;

fn keep_tail(v: &mut Vec<u8>, n: usize) {
    if v.len() > n {
        v.drain(..v.len() - n);
    }
}

fn rejected(index: u32, attempt: u32, message: String) -> TaskResult {
    TaskResult {
        index,
        attempt,
        outcome: None,
        exit_code: None,
        message,
        fuel_used: 0,
        wall_us: 0,
        stdout: Vec::new(),
        stderr: Vec::new(),
        outputs: Vec::new(),
        signature: Vec::new(),
        checkpoints: 0,
        resumed: None,
    }
}

/// What every task of one `Assign` shares.
struct AssignInfo {
    job: JobId,
    module: ContentId,
    argv0: String,
    limits: naac_types::Limits,
    checkpoint_interval_ms: Option<u64>,
}

/// Runs a provider until `shutdown` resolves. `listening` receives each address the node
/// listens on (with the peer id appended, ready to share) as it comes up.
pub async fn run(
    config: ProviderConfig,
    keypair: Keypair,
    listening: Option<mpsc::Sender<naac_net::Multiaddr>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.home.ensure()?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let monitor = if config.owner_policy {
        Some(Monitor::new(&config.home, cores, Instant::now())?)
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
    let sandbox = Arc::new(Sandbox::start(sandbox_config).context("start the sandbox")?);
    let (client, mut events) = naac_net::start(keypair.clone(), config.net.clone()).await?;
    let (internal_tx, mut internal) = mpsc::channel(1024);
    let slots = config.slots.max(1);
    if let Some(f) = config.faulty {
        tracing::warn!(
            "testing aid: this node returns wrong outputs for {:.0}% of tasks",
            f * 100.0
        );
    }
    let allowed = monitor
        .as_ref()
        .and_then(|m| m.policy().max_slots)
        .map_or(slots, |m| m.clamp(1, slots));
    let gate = sandbox.gate();
    let shared = Arc::new(Shared {
        client: client.clone(),
        keypair,
        faulty: config.faulty,
        slowdown: config.slowdown.max(1.0),
        sandbox,
        slots: Arc::new(Semaphore::new(allowed as usize)),
        gate,
        blobs: Blobs {
            fetches: Semaphore::new(MAX_FETCHES),
            cells: Mutex::new(HashMap::new()),
            bytes: Mutex::new(0),
        },
        modules: Mutex::new(HashMap::new()),
        internal: internal_tx,
    });
    let mut resources = Resources {
        cpu: device::probe_cpu(),
        memory: device::probe_memory(),
        ..Resources::default()
    };
    resources.cpu.cores = cores;
    let mut p = Provider {
        shared,
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
        peers: HashMap::new(),
        work_dir,
        cache_dir: config.home.module_cache(),
        monitor,
        base_price: config.price,
        bank: config.bank.clone(),
        provide: config.provide,
        addrs: Vec::new(),
        offer_seq: 0,
        last_offer: Instant::now(),
    };
    if p.provide {
        // The market: offers on the class's gossip topic, and a provider record under the
        // class's DHT key so requesters find us in O(log N) hops.
        let class = naac_market::commodity_class();
        if let Err(e) = client.subscribe(&naac_market::topic(class)).await {
            tracing::warn!("market topic: {e:#}");
        }
        if let Err(e) = client.start_providing(naac_market::dht_key(class)).await {
            tracing::warn!("market provider record: {e:#}");
        }
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
        let tx = p.shared.internal.clone();
        tokio::spawn(async move {
            let dm = tokio::task::spawn_blocking(move || DeviceManager::start(&home))
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("device probe panicked: {e}")));
            let _ = tx.send(Internal::Device(Box::new(dm))).await;
        });
        p.poll_policy();
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut policy_tick = tokio::time::interval(POLICY_POLL);
    policy_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh_tick = tokio::time::interval(DEVICE_REFRESH);
    refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    tracing::info!(
        "provider {} up with {slots} slots ({allowed} allowed by policy)",
        client.peer_id()
    );
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
            _ = policy_tick.tick(), if p.monitor.is_some() => p.poll_policy(),
            _ = refresh_tick.tick(), if p.monitor.is_some() => p.refresh_device(),
            _ = offer_tick.tick(), if p.provide => p.publish_offer(),
        }
    }
    for job in p.jobs.values() {
        for h in job.held.values() {
            h.cancel.store(true, Ordering::Relaxed);
        }
    }
    tracing::info!("provider stopped");
    Ok(())
}

struct Provider {
    shared: Arc<Shared>,
    /// Slots the node has, and how many its policy allows now.
    slots: u32,
    allowed: u32,
    owner: Option<String>,
    jobs: HashMap<JobKey, JobState>,
    /// `None` when no owner policy applies (embedded pools).
    monitor: Option<Monitor>,
    state: HostState,
    paused_since: Option<Instant>,
    price_multiplier: f64,
    resources: Resources,
    device: Option<Arc<Mutex<DeviceManager>>>,
    status_seq: u64,
    last_status: Instant,
    last_poll: Instant,
    /// When the storage dirs were last measured between device refreshes, and whether a
    /// measurement is under way.
    storage_measured: Instant,
    storage_measuring: bool,
    /// When the walk behind the storage use the monitor has began.
    storage_at: Option<Instant>,
    /// Peers that said Hello (they get status updates), with their attested user.
    peers: HashMap<PeerId, Option<String>>,
    work_dir: std::path::PathBuf,
    cache_dir: std::path::PathBuf,
    /// Asking price before the window multiplier (the policy's `min_price` is the floor).
    base_price: naac_types::Price,
    bank: Option<crate::bank::BankHandle>,
    provide: bool,
    /// Where we listen (with our peer id), for offers.
    addrs: Vec<naac_net::Multiaddr>,
    /// Sequence number of our last offer, and when it went out.
    offer_seq: u64,
    last_offer: Instant,
}

impl Provider {
    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Request {
                peer: _,
                request:
                    Request {
                        v: VERSION,
                        body: RequestBody::Bank(req),
                    },
                channel,
            } => {
                // Bank requests wait for a durable commit: answer from a task.
                let client = self.shared.client.clone();
                let bank = self.bank.clone();
                tokio::spawn(async move {
                    let body = match bank {
                        Some(b) => match b.call(req).await {
                            Ok(r) => ResponseBody::Bank(Box::new(r)),
                            Err(e) => ResponseBody::Refused(e),
                        },
                        None => ResponseBody::Refused("this node is not a bank".into()),
                    };
                    client.respond(channel, Response::new(body)).await;
                });
            }
            Event::Request {
                peer,
                request,
                channel,
            } => {
                let resp = if request.v != VERSION {
                    ResponseBody::Refused(format!(
                        "message version {} is not supported (this node speaks {VERSION})",
                        request.v
                    ))
                } else {
                    self.on_request(peer, request.body)
                };
                self.shared
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
                        for h in job.held.values() {
                            h.cancel.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            Event::BadFrame { peer, error } => {
                tracing::warn!("dropped a bad frame from {peer}: {error}");
            }
            Event::Connected(..) if self.provide => {
                // After its gossip subscription has had time to reach us.
                let tx = self.shared.internal.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1200)).await;
                    let _ = tx.send(Internal::Offer).await;
                });
            }
            Event::Connected(..) | Event::Listening(_) | Event::Gossip { .. } => {}
        }
    }

    fn on_request(&mut self, peer: PeerId, body: RequestBody) -> ResponseBody {
        match body {
            RequestBody::Hello(_) | RequestBody::Assign(_) if !self.provide => {
                ResponseBody::Refused("this node does not run tasks (it is a bank)".into())
            }
            RequestBody::Hello(hello)
                if hello.solicit.is_none()
                    && self
                        .monitor
                        .as_ref()
                        .is_some_and(|m| m.policy().min_price > 0) =>
            {
                // The owner set a price: no work for requesters that do not pay.
                ResponseBody::Refused(format!(
                    "this host works only for pay (its owner's min_price is {} credits per giga-fuel); run with --bank ADDR",
                    self.monitor
                        .as_ref()
                        .map(|m| m.policy().min_price)
                        .unwrap_or(0)
                ))
            }
            RequestBody::Hello(hello) => {
                let bid = hello.solicit.as_ref().map(|s| self.bid(s));
                let user = hello.user.and_then(|u| {
                    let id: PeerId = u.user.parse().ok()?;
                    let bytes = naac_proto::UserAttestation::signing_bytes(&peer.to_bytes());
                    naac_net::verify(&id, &bytes, &u.signature).then_some(u.user)
                });
                if self.peers.len() < MAX_STATUS_PEERS || self.peers.contains_key(&peer) {
                    self.peers.insert(peer, user);
                }
                ResponseBody::Welcome(Box::new(Welcome {
                    slots: self.slots,
                    agent: format!("naac/{}", env!("CARGO_PKG_VERSION")),
                    owner: self.owner.clone(),
                    status: self.status_for(&peer),
                    bid,
                }))
            }
            RequestBody::Assign(a) => self.on_assign(peer, a),
            RequestBody::Cancel { job, tasks } => {
                if tasks.is_empty() {
                    // The requester is done with the job (finished or interrupted).
                    if let Some(state) = self.jobs.remove(&(peer, job)) {
                        for h in state.held.values() {
                            h.cancel.store(true, Ordering::Relaxed);
                        }
                    }
                } else if let Some(state) = self.jobs.get_mut(&(peer, job)) {
                    let cancel_all = tasks.is_empty();
                    let wanted: HashSet<(u32, u32)> = tasks.into_iter().collect();
                    state.held.retain(|t, h| {
                        if cancel_all || wanted.contains(&(*t, h.attempt)) {
                            h.cancel.store(true, Ordering::Relaxed);
                            false
                        } else {
                            true
                        }
                    });
                }
                ResponseBody::Ack
            }
            RequestBody::Fetch { .. } => ResponseBody::NotFound,
            RequestBody::Report(_) | RequestBody::Checkpoint { .. } | RequestBody::Status(_) => {
                ResponseBody::Refused("this node does not request work".into())
            }
            RequestBody::Bank(_) => ResponseBody::Refused("this node is not a bank".into()),
        }
    }

    fn on_assign(&mut self, peer: PeerId, a: Assign) -> ResponseBody {
        if a.tasks.len() > MAX_TASKS_PER_ASSIGN {
            return ResponseBody::Refused(format!(
                "{} tasks in one assignment; the limit is {MAX_TASKS_PER_ASSIGN}",
                a.tasks.len()
            ));
        }
        if let Some(why) = self.denied(&peer) {
            return ResponseBody::Refused(format!("this node's owner does not serve you: {why}"));
        }
        if let Some(why) = self.exceeds_limits(&a.limits) {
            return ResponseBody::Refused(why);
        }
        let key = (peer, a.job);
        if !self.state.is_accepting() {
            // Raced with our status update: hand them straight back.
            let state = self.jobs.entry(key).or_default();
            state.seen_seq = state.seen_seq.max(a.seq);
            state
                .returned
                .extend(a.tasks.iter().map(|t| (t.index, t.attempt)));
            self.send_report(key, false);
            return ResponseBody::Ack;
        }
        let info = Arc::new(AssignInfo {
            job: a.job,
            module: a.module,
            argv0: a.argv0,
            limits: a.limits,
            checkpoint_interval_ms: a.checkpoint_interval_ms,
        });
        let state = self.jobs.entry(key).or_default();
        state.seen_seq = state.seen_seq.max(a.seq);
        for spec in a.tasks {
            let cancel = Arc::new(AtomicBool::new(false));
            let started = Arc::new(AtomicBool::new(false));
            let held = Held {
                attempt: spec.attempt,
                cancel: cancel.clone(),
                started: started.clone(),
            };
            if let Some(old) = state.held.insert(spec.index, held) {
                // A new attempt of a task we still hold: the old one is stale.
                old.cancel.store(true, Ordering::Relaxed);
            }
            let shared = self.shared.clone();
            let info = info.clone();
            tokio::spawn(async move {
                let result = shared.run_task(peer, &info, spec, cancel, started).await;
                let _ = shared.internal.send(Internal::Done { key, result }).await;
            });
        }
        ResponseBody::Ack
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Offer => {
                if self.last_offer.elapsed() >= Duration::from_secs(1) {
                    self.publish_offer();
                }
            }
            Internal::Done { key, result } => {
                let Some(job) = self.jobs.get_mut(&key) else {
                    return;
                };
                match job.held.get(&result.index) {
                    // Only the attempt we still hold counts; a cancelled or superseded
                    // attempt's result is not wanted.
                    Some(h) if h.attempt == result.attempt && !h.cancel.load(Ordering::Relaxed) => {
                    }
                    _ => return,
                }
                job.held.remove(&result.index);
                job.outbox.push(result);
                self.send_report(key, false);
            }
            Internal::ReportSent { key, forget } => {
                if forget {
                    if let Some(job) = self.jobs.remove(&key) {
                        for h in job.held.values() {
                            h.cancel.store(true, Ordering::Relaxed);
                        }
                    }
                    return;
                }
                let Some(job) = self.jobs.get_mut(&key) else {
                    return;
                };
                job.reporting = false;
                job.inflight.clear();
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

    /// Keeps the newest storage measurement (the device refresh's and the running tasks'
    /// walks may finish out of order).
    fn note_storage(&mut self, used: StorageUse) {
        if self.storage_at.is_some_and(|at| used.at < at) {
            return;
        }
        self.storage_at = Some(used.at);
        if let Some(m) = self.monitor.as_mut() {
            m.storage_used = used.bytes;
            m.disk_free = used.free;
        }
    }

    /// Why `peer` may not use this node at all, if it may not.
    fn denied(&self, peer: &PeerId) -> Option<String> {
        let m = self.monitor.as_ref()?;
        let user = self.peers.get(peer).cloned().flatten();
        m.policy()
            .peer_access(&peer.to_string(), user.as_deref())
            .err()
    }

    /// Why tasks with `limits` may not run here, if they may not.
    fn exceeds_limits(&self, limits: &naac_types::Limits) -> Option<String> {
        let pol = self.monitor.as_ref()?.policy();
        use naac_types::units::format_size;
        if let Some(max) = pol.max_task_memory
            && limits.memory > max
        {
            return Some(format!(
                "task memory {} > its limit {}",
                format_size(limits.memory),
                format_size(max)
            ));
        }
        if let Some(max) = pol.max_task_runtime
            && u128::from(limits.timeout_ms) > max.as_millis()
        {
            return Some(format!(
                "task time limit {:?} > its limit {:?}",
                Duration::from_millis(limits.timeout_ms),
                max
            ));
        }
        None
    }

    /// What this node asks per giga-fuel now: its base price, at least the owner's
    /// `min_price`, times the current window's multiplier.
    fn ask_price(&self) -> naac_types::Price {
        let floor = self
            .monitor
            .as_ref()
            .map(|m| naac_types::Price::whole(m.policy().min_price))
            .unwrap_or_default();
        naac_market::ask_price(self.base_price.max(floor), self.price_multiplier)
    }

    /// A sealed ask for a requester's job, or why it will not bid.
    fn bid(&self, s: &naac_proto::Solicit) -> naac_proto::Bid {
        let price = self.ask_price();
        if !naac_market::will_bid(price, s.max_price) {
            return naac_proto::Bid::NoBid(format!(
                "it asks {price} credits per giga-fuel; the job pays at most {}",
                s.max_price
            ));
        }
        let Some(provider) = naac_net::ed25519_of_keypair(&self.shared.keypair) else {
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
        let sig = naac_net::sign(&self.shared.keypair, &ask.signing_bytes());
        naac_bank::wire::ask_bid(naac_market::SignedAsk { ask, sig })
    }

    /// This node as `peer` sees it.
    fn status_for(&self, peer: &PeerId) -> HostStatus {
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
            running: self.shared.gate.running() as u32,
            denied: self.denied(peer),
        }
    }

    /// Publishes a signed offer on the market topic: soft state, renewed every
    /// [`OFFER_INTERVAL`] and when our state changes, expiring after [`OFFER_TTL`] unless
    /// renewed.
    fn publish_offer(&mut self) {
        let Some(provider) = naac_net::ed25519_of_keypair(&self.shared.keypair) else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Time-based, so a restarted node's offers still supersede its old ones.
        self.offer_seq = self.offer_seq.max(now.saturating_sub(1)) + 1;
        self.last_offer = Instant::now();
        let running = self.shared.gate.running() as u32;
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
        let sig = naac_net::sign(&self.shared.keypair, &offer.signing_bytes());
        let bytes = match (naac_market::SignedOffer { offer, sig }).to_bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("offer not published: {e}");
                return;
            }
        };
        let client = self.shared.client.clone();
        tokio::spawn(async move {
            let topic = naac_market::topic(naac_market::commodity_class());
            match client.publish(&topic, bytes).await {
                Ok(()) | Err(naac_net::PublishError::NoPeers(_)) => {}
                Err(e) => tracing::debug!("offer not published: {e}"),
            }
        });
    }

    /// Sends every peer that said Hello our current status.
    fn push_status(&mut self) {
        if self.provide {
            self.publish_offer();
        }
        self.status_seq += 1;
        self.last_status = Instant::now();
        for peer in self.peers.keys().copied().collect::<Vec<_>>() {
            let req = Request::new(RequestBody::Status(Box::new(self.status_for(&peer))));
            let client = self.shared.client.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(STATUS_TIMEOUT, client.request(peer, req)).await;
            });
        }
    }

    /// Re-reads the owner's policy and activity and pauses, resumes, throttles or hands work
    /// back accordingly.
    fn poll_policy(&mut self) {
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
            let tx = self.shared.internal.clone();
            tokio::task::spawn_blocking(move || {
                let used = StorageUse::measure(&dirs);
                let _ = tx.blocking_send(Internal::Storage(used, used.at.elapsed()));
            });
        }
        let decision = m.decide(now, busy);
        let grace = m.policy().pause_grace;
        let max_slots = m.policy().max_slots;
        let duty = m.duty(now, self.shared.gate.running());
        self.shared.gate.set_duty(duty);
        let mut changed = reloaded;
        if reloaded {
            let allowed = max_slots.map_or(self.slots, |n| n.clamp(1, self.slots));
            self.set_allowed(allowed);
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
                    self.shared.gate.pause();
                    self.paused_since = Some(now);
                    tracing::info!("paused: {why}");
                    // Work that has not started goes back at once; running tasks wait out
                    // the grace period.
                    self.hand_back(false);
                }
                HostState::Accepting => {
                    self.shared.gate.resume();
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
    fn hand_back(&mut self, running: bool) {
        let keys: Vec<JobKey> = self.jobs.keys().copied().collect();
        for key in keys {
            let Some(job) = self.jobs.get_mut(&key) else {
                continue;
            };
            let mut back = Vec::new();
            job.held.retain(|index, h| {
                if running || !h.started.load(Ordering::Relaxed) {
                    h.cancel.store(true, Ordering::Relaxed);
                    back.push((*index, h.attempt));
                    false
                } else {
                    true
                }
            });
            if !back.is_empty() {
                job.returned.extend(back);
                self.send_report(key, false);
            }
        }
    }

    /// Changes how many tasks may run at once.
    fn set_allowed(&mut self, n: u32) {
        if n > self.allowed {
            self.shared.slots.add_permits((n - self.allowed) as usize);
        } else if n < self.allowed {
            // Take the extra permits out as running tasks give them back.
            let k = self.allowed - n;
            let sem = self.shared.slots.clone();
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
    fn refresh_device(&mut self) {
        let Some(dm) = self.device.clone() else {
            return;
        };
        let client = self.shared.client.clone();
        let tx = self.shared.internal.clone();
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

    fn heartbeat(&mut self) {
        let keys: Vec<JobKey> = self.jobs.keys().copied().collect();
        for k in keys {
            self.send_report(k, true);
        }
    }

    /// Sends the job's pending results, unless a report is already in flight; forgets jobs
    /// with nothing left. A heartbeat always goes out (a bare lease renewal next to a large
    /// report still uploading), so leases do not lapse during long transfers.
    fn send_report(&mut self, key: JobKey, heartbeat: bool) {
        let Some(job) = self.jobs.get_mut(&key) else {
            return;
        };
        // The job's state stays until the requester cancels it or goes away: an idle provider
        // keeps sending heartbeats, so the requester always knows it is there and what it holds.
        if !heartbeat && job.outbox.is_empty() && job.returned.is_empty() {
            return;
        }
        if job.reporting {
            if heartbeat {
                let renewal = Report {
                    job: key.1,
                    results: Vec::new(),
                    held: job.all_held(),
                    seen_seq: job.seen_seq,
                    returned: Vec::new(),
                };
                let client = self.shared.client.clone();
                tokio::spawn(async move {
                    let _ = client
                        .request(key.0, Request::new(RequestBody::Report(renewal)))
                        .await;
                });
            }
            return;
        }
        let mut size = 0;
        let mut n = 0;
        for r in &job.outbox {
            if n > 0 && size + r.size() > REPORT_SOFT_LIMIT {
                break;
            }
            size += r.size();
            n += 1;
        }
        let results: Vec<TaskResult> = job.outbox.drain(..n).collect();
        job.inflight = results.iter().map(|r| (r.index, r.attempt)).collect();
        let held = job.all_held();
        let seen_seq = job.seen_seq;
        let returned = std::mem::take(&mut job.returned);
        job.reporting = true;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let req = Request::new(RequestBody::Report(Report {
                job: key.1,
                results,
                held,
                seen_seq,
                returned,
            }));
            // A report that does not get through is not resent: its results are dropped
            // from what we hold, and the requester reassigns them when it reconciles (the
            // usual cause, a requester that is gone, makes resending pointless anyway).
            let forget = match shared.client.request(key.0, req).await {
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
            let _ = shared
                .internal
                .send(Internal::ReportSent { key, forget })
                .await;
        });
    }
}

/// Whether two probes differ enough to tell peers (free memory and disk drift all the time:
/// only a 10% change counts).
fn same_resources(a: &Resources, b: &Resources) -> bool {
    let near = |x: u64, y: u64| x.abs_diff(y) <= x.max(y) / 10;
    a.cpu == b.cpu
        && a.gpus == b.gpus
        && a.power == b.power
        && a.memory.total == b.memory.total
        && near(a.memory.available, b.memory.available)
        && near(a.disk.free, b.disk.free)
}
