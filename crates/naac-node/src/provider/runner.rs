//! The runner: what happens to one task between its `Assign` and its result — its module
//! and input blobs fetched from the requester once each (hash-checked, bounded cache), a
//! slot, the sandbox on a blocking thread, checkpoints uploaded as the guest takes them, and
//! the result signed with the node's key over its record. Also the testing aids `faulty`
//! (wrong outputs, still signed) and `slowdown`.
//!
//! Compiling a module is work like running a task: a module that is not compiled yet is
//! fetched and compiled only once a task needing it has a slot and the owner's policy lets
//! the node work (not paused), one at a time and within the sandbox's compile limit; a
//! module that cannot be compiled is remembered, and every task needing it fails at once.

use anyhow::Context as _;
use naac_net::{Client, Keypair, PeerId};
use naac_proto::{
    HeldOutput, OutputFile, Request, RequestBody, ResponseBody, TaskResult, TaskSpec,
};
use naac_sandbox::{CheckpointSink, Gate, Prepared, Sandbox, TaskRun};
use naac_types::{ContentId, JobId, ResultRecord};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};

/// Modules kept linked and ready in memory.
const MAX_MODULES: usize = 64;

/// Most blob bytes kept in memory for reuse across tasks beyond those tasks hold (blobs the
/// tasks about to run share stay while they hold them).
const BLOB_CACHE_BYTES: usize = 64 << 20;

/// A blob, or the fetch that will produce it.
type BlobCell = Arc<OnceCell<Arc<Vec<u8>>>>;

/// Fetches in flight at once: queued tasks prefetch their inputs, but not all at once.
const MAX_FETCHES: usize = 32;

/// How long to look for a provider that holds an output of an earlier stage.
const HOLDER_LOOKUP: Duration = Duration::from_secs(5);

/// How long to look for the storage hosts of stored data.
const STORE_LOOKUP: Duration = Duration::from_secs(5);

/// Tasks that may hold their inputs beyond those with a slot: the next ones fetch while the
/// running ones run, the rest wait without holding anything (a requester that queues 4,096
/// tasks with large inputs cannot make the provider hold them all).
pub const PREFETCH_AHEAD: usize = 2;

/// Blobs by content id, fetched at most once at a time.
struct Blobs {
    fetches: Semaphore,
    cells: Mutex<HashMap<ContentId, BlobCell>>,
    bytes: Mutex<usize>,
    /// Stored data opened lately (manifest and holders), to read more files of it.
    /// Manifests opened, by id and the data token shown for them (one requester's token is
    /// never shown for another's task).
    opened: Mutex<HashMap<OpenedKey, Arc<crate::store::get::Opened>>>,
}

/// Stored data kept opened at once.
const MAX_OPENED: usize = 64;

/// A manifest opened for tasks: its id and the data token shown for it.
type OpenedKey = (naac_store::StoreId, Option<String>);

impl Default for Blobs {
    fn default() -> Self {
        Self {
            fetches: Semaphore::new(MAX_FETCHES),
            cells: Mutex::new(HashMap::new()),
            bytes: Mutex::new(0),
            opened: Mutex::new(HashMap::new()),
        }
    }
}

impl Blobs {
    /// File `path` of stored data `m`, from any `k` of its storage hosts (each byte checked
    /// against the manifest, the file against its hash).
    async fn stored(
        &self,
        client: &Client,
        m: &naac_store::StoreId,
        path: &str,
        hosts: &[PeerId],
        token: Option<&String>,
    ) -> anyhow::Result<Vec<u8>> {
        let key = (*m, token.cloned());
        let known = self.opened.lock().expect("opened lock").get(&key).cloned();
        let opened = match known {
            Some(o) => o,
            None => {
                let hints = hosts.iter().map(|p| (*p, Vec::new())).collect();
                let pass = token.map(|t| naac_proto::store::DataPass {
                    token: t.clone(),
                    user: None,
                });
                let o = crate::store::get::open(client, m, hints, STORE_LOOKUP, pass).await?;
                let o = Arc::new(o);
                let mut all = self.opened.lock().expect("opened lock");
                if all.len() >= MAX_OPENED {
                    all.clear();
                }
                all.insert(key, o.clone());
                o
            }
        };
        crate::store::get::read_file(client, &opened, path)
            .await
            .with_context(|| format!("read naac://{m}/{path}"))
    }

    async fn get(
        &self,
        client: &Client,
        peer: PeerId,
        id: ContentId,
        from: Where<'_>,
    ) -> anyhow::Result<Arc<Vec<u8>>> {
        let Where {
            stored: source,
            holders,
            addrs: holder_addrs,
            local,
        } = from;
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
                if let Some(Stored {
                    manifest: m,
                    path,
                    hosts,
                    token,
                }) = source
                {
                    let bytes = self.stored(client, m, path, hosts, token.as_ref()).await?;
                    anyhow::ensure!(
                        ContentId::of(&bytes) == id,
                        "naac://{m}/{path} is not the blob {} the requester named",
                        id.short()
                    );
                    return Ok(Arc::new(bytes));
                }
                // An output of an earlier stage: from a provider that holds it.
                for h in holders {
                    if *h == client.peer_id() {
                        // Held right here (this node made it, or agreed with who did).
                        if let Some(bytes) = local.and_then(|l| l.read(&id)) {
                            return Ok(Arc::new(bytes));
                        }
                        continue;
                    }
                    let ask = || client.request(*h, Request::new(RequestBody::Fetch { id }));
                    let mut answer = ask().await;
                    if answer.is_err() {
                        // Not met yet: dial it where it told the requester it listens, else
                        // look it up.
                        let mut addrs = holder_addrs
                            .and_then(|a| a.get(h))
                            .cloned()
                            .unwrap_or_default();
                        if addrs.is_empty() {
                            addrs = client
                                .find_peer(*h, HOLDER_LOOKUP)
                                .await
                                .unwrap_or_default();
                        }
                        if !addrs.is_empty() && client.dial_peer(*h, addrs).await.is_ok() {
                            answer = ask().await;
                        }
                    }
                    match answer {
                        Ok(naac_proto::Response {
                            body: ResponseBody::Blob(bytes),
                            ..
                        }) if ContentId::of(&bytes) == id => return Ok(Arc::new(bytes)),
                        Ok(other) => {
                            tracing::debug!(
                                "holder {h} has no blob {}: {:?}",
                                id.short(),
                                other.body
                            )
                        }
                        Err(e) => tracing::debug!("holder {h} of blob {}: {e}", id.short()),
                    }
                }
                anyhow::ensure!(
                    holders.is_empty(),
                    "{} {} has it any more (asked {})",
                    crate::requester::stages::NO_HOLDER,
                    id.short(),
                    holders.len()
                );
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
            // Over budget: forget the blobs no task holds now (fetches under way stay).
            let mut cells = self.cells.lock().expect("blob lock");
            cells.retain(|_, c| c.get().is_none_or(|b| Arc::strong_count(b) > 1));
            *total = cells
                .values()
                .filter_map(|c| c.get())
                .map(|b| b.len())
                .sum();
        }
        Ok(blob)
    }
}

/// Where a blob may be besides the requester: stored data, or providers holding it (one of
/// them perhaps this node, `local`).
#[derive(Clone, Copy)]
struct Where<'a> {
    stored: Option<&'a Stored>,
    holders: &'a [PeerId],
    addrs: Option<&'a HashMap<PeerId, Vec<naac_net::Multiaddr>>>,
    local: Option<&'a super::held::Held>,
}

impl<'a> Where<'a> {
    /// Stored data, or else the requester only.
    fn stored(stored: Option<&'a Stored>) -> Self {
        Self {
            stored,
            holders: &[],
            addrs: None,
            local: None,
        }
    }
}

/// Runs tasks: shared by every task of every job on this node.
pub struct Runner {
    pub client: Client,
    pub keypair: Keypair,
    faulty: Option<super::Fault>,
    slowdown: f64,
    sandbox: Arc<Sandbox>,
    /// Slots: one permit per task that may run at once.
    pub slots: Arc<Semaphore>,
    /// Tasks that may hold their inputs: the node's slots plus [`PREFETCH_AHEAD`].
    prefetch: Semaphore,
    pub gate: Gate,
    blobs: Blobs,
    modules: Mutex<HashMap<ContentId, ModuleCell>>,
    /// Outputs kept here for later stages (`Assign::hold_over`); `None`: none are kept.
    pub held: Option<super::held::Held>,
}

/// A module once compiled, or why it cannot be (fetch failures and cancellations leave the
/// cell empty: the next task tries again).
type ModuleCell = Arc<OnceCell<Result<Prepared, String>>>;

/// How often a task waiting to compile its module looks at the pause.
const PAUSE_POLL: Duration = Duration::from_millis(50);

impl Runner {
    /// A runner with `allowed` of the node's `slots` open; `faulty` and `slowdown` are the
    /// testing aids.
    pub fn new(
        client: Client,
        keypair: Keypair,
        sandbox: Arc<Sandbox>,
        slots: u32,
        allowed: u32,
        faulty: Option<super::Fault>,
        slowdown: f64,
    ) -> Self {
        Self {
            client,
            keypair,
            faulty,
            slowdown: slowdown.max(1.0),
            gate: sandbox.gate(),
            sandbox,
            slots: Arc::new(Semaphore::new(allowed as usize)),
            prefetch: Semaphore::new(slots as usize + PREFETCH_AHEAD),
            blobs: Blobs::default(),
            modules: Mutex::new(HashMap::new()),
            held: None,
        }
    }

    /// Keeps outputs for later stages in `held`.
    pub fn with_held(mut self, held: super::held::Held) -> Self {
        self.held = Some(held);
        self
    }

    /// Changes the compiled-module cache's quota (trimmed off the runtime thread).
    pub fn set_module_cache_quota(&self, bytes: u64) {
        let sandbox = self.sandbox.clone();
        tokio::task::spawn_blocking(move || sandbox.set_cache_quota(bytes));
    }

    async fn module(
        &self,
        peer: PeerId,
        id: ContentId,
        source: Option<&Stored>,
        cancel: &AtomicBool,
    ) -> anyhow::Result<Prepared> {
        let cell = {
            let mut modules = self.modules.lock().expect("module lock");
            if modules.len() >= MAX_MODULES && !modules.contains_key(&id) {
                // Bounded: start over (the sandbox's own cache still has them compiled).
                modules.clear();
            }
            modules.entry(id).or_default().clone()
        };
        let compiled = cell
            .get_or_try_init(|| async {
                let sandbox = self.sandbox.clone();
                if let Some(p) = tokio::task::spawn_blocking(move || sandbox.cached(&id)).await? {
                    return Ok(Ok(p));
                }
                // Work: only with a slot and while the owner lets this node work. The slot
                // also bounds the modules fetched and held at once.
                let _slot = self.slots.acquire().await.context("slots closed")?;
                while self.gate.is_paused() {
                    if cancel.load(Ordering::Relaxed) {
                        anyhow::bail!("cancelled before it started");
                    }
                    tokio::time::sleep(PAUSE_POLL).await;
                }
                if cancel.load(Ordering::Relaxed) {
                    anyhow::bail!("cancelled before it started");
                }
                let bytes = self
                    .blobs
                    .get(&self.client, peer, id, Where::stored(source))
                    .await?;
                let sandbox = self.sandbox.clone();
                let r = tokio::task::spawn_blocking(move || sandbox.compile(&id, &bytes)).await?;
                Ok::<_, anyhow::Error>(r.map_err(|e| e.to_string()))
            })
            .await?;
        compiled.clone().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A blob of a task: from storage hosts when the assignment says so, else the requester.
    async fn fetch(
        &self,
        peer: PeerId,
        assign: &AssignInfo,
        id: ContentId,
    ) -> anyhow::Result<Arc<Vec<u8>>> {
        if let Some(b) = assign.inline.get(&id) {
            return Ok(b.clone());
        }
        let source = assign.sources.get(&id);
        let holders = assign.holders.get(&id).map_or(&[][..], Vec::as_slice);
        self.blobs
            .get(
                &self.client,
                peer,
                id,
                Where {
                    stored: source,
                    holders,
                    addrs: Some(&assign.holder_addrs),
                    local: self.held.as_ref(),
                },
            )
            .await
    }

    /// Runs one task to a result; never fails (a task that cannot run is a rejected result).
    pub async fn run_task(
        &self,
        peer: PeerId,
        assign: &AssignInfo,
        spec: TaskSpec,
        cancel: Arc<AtomicBool>,
        started: Arc<AtomicBool>,
    ) -> TaskResult {
        let (index, attempt) = (spec.index, spec.attempt);
        let result = match self.try_run(peer, assign, spec, cancel, started).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    "failed to run task {index} of job {}: {e:#}",
                    assign.job.short()
                );
                return rejected(index, attempt, format!("{e:#}"));
            }
        };
        // A result the relay between us cannot carry would only break the connection, again
        // and again: the requester hears why instead.
        match self.client.relay_limit(peer).await {
            Some(limit) if result.size() as u64 + RELAY_MARGIN > limit => {
                let why = over_relay(result.size() as u64, limit);
                tracing::warn!("task {index} of job {}: {why}", assign.job.short());
                rejected(index, attempt, why)
            }
            _ => result,
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
        let source = assign.sources.get(&assign.module);
        anyhow::ensure!(
            spec.env.len() <= naac_proto::MAX_TASK_ENV
                && spec.env.iter().all(|(k, v)| {
                    k.len() <= 256
                        && v.len() <= 4096
                        && !k.contains(['=', '\0'])
                        && !v.contains('\0')
                }),
            "the task's environment is over naac's limits ({} variables of at most 4096 bytes)",
            naac_proto::MAX_TASK_ENV
        );
        let module = self.module(peer, assign.module, source, &cancel).await?;
        // Inputs are fetched only within the window of tasks about to run.
        let _window = self.prefetch.acquire().await.context("prefetch closed")?;
        if cancel.load(Ordering::Relaxed) {
            anyhow::bail!("cancelled before it started");
        }
        let stdin = match spec.stdin {
            Some(id) => self.fetch(peer, assign, id).await?.to_vec(),
            None => Vec::new(),
        };
        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for (name, id) in &spec.inputs {
            inputs.push((name.clone(), self.fetch(peer, assign, *id).await?));
        }
        let restore = match spec.resume {
            Some(id) => Some(self.fetch(peer, assign, id).await?),
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
            env: spec.env,
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
        let cheat = |fraction| {
            r.outcome == naac_types::Outcome::Ok
                && cheat_on(&self.client.peer_id(), &assign.job, spec.index, fraction)
        };
        let overbill = matches!(self.faulty, Some(super::Fault::Fuel(f)) if cheat(f));
        if let Some(super::Fault::Wrong(fraction)) = self.faulty
            && cheat(fraction)
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
            // Testing aid: an overbiller claims all the fuel the task may burn.
            fuel_used: if overbill {
                assign.limits.fuel
            } else {
                r.fuel_used
            },
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
            held: Vec::new(),
        };
        if let (Some(over), Some(held), naac_types::Outcome::Ok) =
            (assign.hold_over, &self.held, r.outcome)
        {
            // Large outputs stay here for the tasks that take them; their ids go back.
            let outputs = std::mem::take(&mut result.outputs);
            for o in outputs {
                let id = ContentId::of(&o.data);
                let hold = o.data.len() as u64 >= over
                    && result.held.len() < naac_proto::MAX_HELD_OUTPUTS
                    && held.keep((peer, assign.job), id, &o.data);
                if hold {
                    let len = o.data.len() as u64;
                    result.held.push(HeldOutput {
                        name: o.name,
                        id,
                        len,
                    });
                } else {
                    result.outputs.push(o);
                }
            }
        }
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

/// Room left on a relayed connection for what else it carries (reports, heartbeats, gossip).
const RELAY_MARGIN: u64 = 64 << 10;

/// Why a result of `size` bytes does not go through a relay that carries `limit` per
/// connection.
fn over_relay(size: u64, limit: u64) -> String {
    use naac_types::units::format_size;
    format!(
        "its result ({}) is more than the relay between this provider and the requester carries ({} per connection), and there is no direct connection (hole punching failed); run it on hosts reached directly, or on a relay with a larger --relay-circuit-bytes",
        format_size(size),
        format_size(limit)
    )
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
        held: Vec::new(),
    }
}

/// A blob to read from storage hosts: a file of stored data, and hosts said to hold it.
pub struct Stored {
    pub manifest: naac_store::StoreId,
    pub path: String,
    pub hosts: Vec<PeerId>,
    /// The data token handed to this provider for private data.
    pub token: Option<String>,
}

/// What every task of one `Assign` shares.
pub struct AssignInfo {
    pub job: JobId,
    pub module: ContentId,
    pub argv0: String,
    pub limits: naac_types::Limits,
    pub checkpoint_interval_ms: Option<u64>,
    /// Blobs to read from storage hosts, by content id.
    pub sources: HashMap<ContentId, Stored>,
    /// Output files of at least this many bytes are kept here (`Assign::hold_over`).
    pub hold_over: Option<u64>,
    /// Small blobs that came with the assignment, checked against their ids.
    pub inline: HashMap<ContentId, Arc<Vec<u8>>>,
    /// Blobs other providers hold, by content id, and where those providers listen.
    pub holders: HashMap<ContentId, Vec<PeerId>>,
    pub holder_addrs: HashMap<PeerId, Vec<naac_net::Multiaddr>>,
}

impl AssignInfo {
    /// What the tasks of `a` share (its tasks taken out before).
    pub fn of(a: naac_proto::Assign) -> Self {
        Self {
            job: a.job,
            module: a.module,
            argv0: a.argv0,
            limits: a.limits,
            checkpoint_interval_ms: a.checkpoint_interval_ms,
            hold_over: a.hold_over,
            inline: a
                .inline
                .into_iter()
                .take(naac_proto::MAX_INLINE_BYTES / 64)
                .filter(|b| {
                    b.bytes.len() <= naac_proto::MAX_INLINE_BLOB && ContentId::of(&b.bytes) == b.id
                })
                .map(|b| (b.id, Arc::new(b.bytes)))
                .collect(),
            holder_addrs: {
                let mut by: HashMap<PeerId, Vec<naac_net::Multiaddr>> = HashMap::new();
                for a in a.holders.iter().flat_map(|h| h.addrs.iter()).take(1024) {
                    let Ok(addr) = a.parse::<naac_net::Multiaddr>() else {
                        continue;
                    };
                    if let Some(naac_net::Protocol::P2p(p)) = addr.iter().last() {
                        let list = by.entry(p).or_default();
                        if list.len() < naac_proto::MAX_WELCOME_ADDRS && !list.contains(&addr) {
                            list.push(addr);
                        }
                    }
                }
                by
            },
            holders: a
                .holders
                .into_iter()
                .map(|h| (h.id, peers_of(&h.peers)))
                .collect(),
            sources: a
                .sources
                .into_iter()
                .map(|s| {
                    let stored = Stored {
                        manifest: s.manifest,
                        hosts: peers_of(&s.hosts),
                        path: s.path,
                        token: s.token,
                    };
                    (s.id, stored)
                })
                .collect(),
        }
    }
}

/// Peer ids a requester sent as bytes: the valid ones, at most
/// [`naac_proto::MAX_SOURCE_HOSTS`].
fn peers_of(bytes: &[naac_proto::ByteBuf]) -> Vec<PeerId> {
    bytes
        .iter()
        .take(naac_proto::MAX_SOURCE_HOSTS)
        .filter_map(|b| PeerId::from_bytes(b).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use naac_proto::{Assign, InlineBlob};

    #[test]
    fn blobs_sent_along_are_kept_only_when_they_match_their_id_and_are_small() {
        let good = b"stdin of task 7".to_vec();
        let big = vec![1u8; naac_proto::MAX_INLINE_BLOB + 1];
        let a = Assign {
            job: JobId([3; 16]),
            seq: 1,
            module: ContentId::of(b"m"),
            argv0: "a".into(),
            limits: Default::default(),
            checkpoint_interval_ms: None,
            tasks: Vec::new(),
            order: None,
            sources: Vec::new(),
            hold_over: None,
            holders: Vec::new(),
            inline: vec![
                InlineBlob {
                    id: ContentId::of(&good),
                    bytes: good.clone(),
                },
                // A lie: these bytes are not that id.
                InlineBlob {
                    id: ContentId::of(b"something else"),
                    bytes: b"forged".to_vec(),
                },
                InlineBlob {
                    id: ContentId::of(&big),
                    bytes: big.clone(),
                },
            ],
            reply_with_results: false,
        };
        let info = AssignInfo::of(a);
        assert_eq!(info.inline.len(), 1);
        assert_eq!(info.inline[&ContentId::of(&good)].as_slice(), &good[..]);
    }
}
