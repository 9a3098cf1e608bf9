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
use naac_sandbox::{CheckpointSink, Prepared, Sandbox, SandboxConfig, TaskRun};
use naac_types::{ContentId, JobId, ResultRecord};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore, mpsc};

use crate::Home;

/// How often a provider renews the leases of the tasks it holds.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

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
}

/// One task attempt we hold: queued or running.
struct Held {
    attempt: u32,
    cancel: Arc<AtomicBool>,
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
    ) -> TaskResult {
        let (index, attempt) = (spec.index, spec.attempt);
        match self.try_run(peer, assign, spec, cancel).await {
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
            let extra = r.wall.mul_f64(self.slowdown - 1.0);
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
    let mut sandbox_config =
        SandboxConfig::new(config.home.work()).with_cache_dir(config.home.module_cache());
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
    let shared = Arc::new(Shared {
        client: client.clone(),
        keypair,
        faulty: config.faulty,
        slowdown: config.slowdown.max(1.0),
        sandbox,
        slots: Arc::new(Semaphore::new(slots as usize)),
        blobs: Blobs {
            fetches: Semaphore::new(MAX_FETCHES),
            cells: Mutex::new(HashMap::new()),
            bytes: Mutex::new(0),
        },
        modules: Mutex::new(HashMap::new()),
        internal: internal_tx,
    });
    let mut p = Provider {
        shared,
        slots,
        owner: config.owner.clone(),
        jobs: HashMap::new(),
    };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    tracing::info!("provider {} up with {slots} slots", client.peer_id());
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            ev = events.recv() => match ev {
                Some(Event::Listening(addr)) => {
                    if let Some(tx) = &listening {
                        let me = client.peer_id();
                        let _ = tx.try_send(addr.clone().with_p2p(me).unwrap_or(addr));
                    }
                }
                Some(ev) => p.on_event(ev).await,
                None => break,
            },
            Some(i) = internal.recv() => p.on_internal(i),
            _ = heartbeat.tick() => p.heartbeat(),
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
    slots: u32,
    owner: Option<String>,
    jobs: HashMap<JobKey, JobState>,
}

impl Provider {
    async fn on_event(&mut self, ev: Event) {
        match ev {
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
            Event::Connected(..) | Event::Listening(_) => {}
        }
    }

    fn on_request(&mut self, peer: PeerId, body: RequestBody) -> ResponseBody {
        match body {
            RequestBody::Hello => ResponseBody::Welcome {
                slots: self.slots,
                agent: format!("naac/{}", env!("CARGO_PKG_VERSION")),
                owner: self.owner.clone(),
            },
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
            RequestBody::Report(_) | RequestBody::Checkpoint { .. } => {
                ResponseBody::Refused("this node does not request work".into())
            }
        }
    }

    fn on_assign(&mut self, peer: PeerId, a: Assign) -> ResponseBody {
        if a.tasks.len() > MAX_TASKS_PER_ASSIGN {
            return ResponseBody::Refused(format!(
                "{} tasks in one assignment; the limit is {MAX_TASKS_PER_ASSIGN}",
                a.tasks.len()
            ));
        }
        let key = (peer, a.job);
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
            let held = Held {
                attempt: spec.attempt,
                cancel: cancel.clone(),
            };
            if let Some(old) = state.held.insert(spec.index, held) {
                // A new attempt of a task we still hold: the old one is stale.
                old.cancel.store(true, Ordering::Relaxed);
            }
            let shared = self.shared.clone();
            let info = info.clone();
            tokio::spawn(async move {
                let result = shared.run_task(peer, &info, spec, cancel).await;
                let _ = shared.internal.send(Internal::Done { key, result }).await;
            });
        }
        ResponseBody::Ack
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
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
        }
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
        if !heartbeat && job.outbox.is_empty() {
            return;
        }
        if job.reporting {
            if heartbeat {
                let renewal = Report {
                    job: key.1,
                    results: Vec::new(),
                    held: job.all_held(),
                    seen_seq: job.seen_seq,
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
        job.reporting = true;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let req = Request::new(RequestBody::Report(Report {
                job: key.1,
                results,
                held,
                seen_seq,
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
