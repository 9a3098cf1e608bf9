//! `naac node`'s requester side: the job queue behind the HTTP API (`naac submit`, `naac
//! jobs`, …) and the runner that takes queued jobs, oldest first, up to `--max-running` at
//! once, and runs each as `naac run` would (on the peers the node joined, or an embedded pool on this
//! machine when it joined none), its results under `jobs/<id>/out/` in the data dir.

use crate::run::{BankChoice, Exec, Executed, execute};
use anyhow::Context as _;
use naac_api::{Backend, JobPage, JobView, Problem, Sample, Upload};
use naac_net::Multiaddr;
use naac_node::home::Home;
use naac_node::jobs::{JobRow, JobStore, State};
use naac_node::requester::Progress;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

mod views;

/// The job file's name inside a job's directory.
const JOB_FILE: &str = "job.toml";

/// The queue and the jobs running now.
pub struct Daemon {
    store: JobStore,
    /// Rung when a job is queued.
    wake: Notify,
    /// The running jobs, by id: what stops each, and its progress.
    running: Mutex<HashMap<String, Running>>,
    /// Most jobs running at once.
    max_running: usize,
    /// What `GET /v1/node` says (addresses added as the node learns them).
    node: Mutex<serde_json::Value>,
    max_queued: usize,
    /// Ticks on every change to a job (what event streams wait on).
    tick: watch::Sender<u64>,
    views: Arc<views::Views>,
}

struct Running {
    stop: Arc<Notify>,
    progress: watch::Receiver<Progress>,
}

/// How a node serves the API and runs the jobs handed to it.
pub struct Config {
    /// `HOST:PORT` to serve the API on.
    pub api: String,
    /// Where jobs run: these peers, or an embedded pool when empty.
    pub join: Vec<Multiaddr>,
    pub mdns: bool,
    /// Most jobs waiting; a submit beyond is refused (429).
    pub max_queued: usize,
    /// Largest submit, in bytes (413 beyond).
    pub max_upload: usize,
    /// Most jobs running at once.
    pub max_running: usize,
    /// What `GET /v1/node` says.
    pub node: serde_json::Value,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Daemon {
    pub fn open(
        home: &Home,
        node: serde_json::Value,
        max_queued: usize,
        max_running: usize,
        join: Vec<Multiaddr>,
        mdns: bool,
    ) -> anyhow::Result<Arc<Daemon>> {
        Ok(Arc::new(Daemon {
            store: JobStore::open(home.root())?,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            max_running: max_running.max(1),
            node: Mutex::new(node),
            max_queued,
            tick: watch::Sender::new(0),
            views: views::Views::new(home.clone(), join, mdns),
        }))
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An address the node listens on, for `GET /v1/node` (the first 32 kept).
    pub fn add_address(&self, addr: String) {
        let mut node = self.node.lock().unwrap_or_else(|e| e.into_inner());
        if !node["addresses"].is_array() {
            node["addresses"] = serde_json::Value::Array(Vec::new());
        }
        if let Some(list) = node["addresses"].as_array_mut()
            && list.len() < 32
            && !list.iter().any(|a| a == &addr)
        {
            list.push(addr.into());
        }
    }

    fn changed(&self) {
        self.tick.send_modify(|t| *t = t.wrapping_add(1));
    }

    fn view(&self, r: JobRow) -> JobView {
        let progress = self
            .running()
            .get(&r.id)
            .filter(|_| r.state == State::Running)
            .map(|run| {
                let p = run.progress.borrow();
                let s = &p.sched;
                serde_json::json!({
                    "total": s.total,
                    "succeeded": s.succeeded,
                    "failed": s.failed,
                    "running": s.running,
                    "providers": s.providers,
                    "fuel": p.fuel,
                    "cost": p.cost.map(|c| c.to_string()),
                    "waiting": p.waiting,
                })
            });
        JobView {
            progress,
            out_dir: self.store.dir_of(&r.id).join("out").display().to_string(),
            summary: r
                .summary
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            id: r.id,
            name: r.name,
            state: r.state.as_str().into(),
            submitted_ms: r.submitted_ms,
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            error: r.error,
        }
    }

    /// Writes the upload under `dir` and checks the job names only files it brought.
    fn unpack(dir: &Path, upload: &Upload) -> Result<String, Problem> {
        let write = |p: &Path, bytes: &[u8]| -> Result<(), Problem> {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Problem::internal(format!("create {}: {e}", parent.display())))?;
            }
            std::fs::write(p, bytes)
                .map_err(|e| Problem::internal(format!("write {}: {e}", p.display())))
        };
        let job_path = dir.join(JOB_FILE);
        write(&job_path, &upload.job)?;
        for (name, bytes) in &upload.files {
            naac_api::check_path(name)?;
            if name == JOB_FILE {
                return Err(Problem::bad_request(format!(
                    "part {name:?}: the job file goes in the part named `job`"
                )));
            }
            write(&dir.join(name), bytes)?;
        }
        let (job, _) = naac_types::job::load_with_files(&job_path)
            .map_err(|e| Problem::bad_request(format!("{e}")))?;
        Ok(job.name)
    }

    /// Runs queued jobs, oldest first, at most `max_running` at once, on `join` (an
    /// embedded pool when empty).
    pub async fn run_queue(self: Arc<Self>, join: Vec<Multiaddr>, mdns: bool) {
        let mut runs = tokio::task::JoinSet::new();
        loop {
            while runs.len() < self.max_running {
                match self.store.start_next(now_ms()) {
                    Ok(Some(job)) => {
                        runs.spawn(self.clone().run_one(job, join.clone(), mdns));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("job queue: {e:#}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
            // A submit rings `wake` (its permit kept if nobody waits yet); a run that ends
            // frees a place.
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(_) = runs.join_next(), if !runs.is_empty() => {}
            }
        }
    }

    /// Runs one job as `naac run` would, into its results directory, and records how it
    /// ended.
    async fn run_one(self: Arc<Self>, job: JobRow, join: Vec<Multiaddr>, mdns: bool) {
        let stop = Arc::new(Notify::new());
        let (progress, rx) = watch::channel(Progress::default());
        let mut watch_progress = rx.clone();
        self.running().insert(
            job.id.clone(),
            Running {
                stop: stop.clone(),
                progress: rx,
            },
        );
        self.changed();
        let me = self.clone();
        // Ends with the run (its progress sender dropped).
        tokio::spawn(async move {
            while watch_progress.changed().await.is_ok() {
                me.changed();
            }
        });
        tracing::info!("job {} ({}) started", job.id, job.name);
        let dir = self.store.dir_of(&job.id);
        let exec = Exec {
            job: dir.join("job").join(JOB_FILE),
            workers: None,
            out: Some(dir.join("out")),
            join,
            mdns,
            provider_wait: Duration::from_secs(60),
            provider_args: Vec::new(),
            quiet: true,
            on_pool: None,
            no_wait: false,
            local: 0,
            local_fallback: true,
            bank: BankChoice::Default,
            claim_window: None,
            unpaid: false,
            // A cancel interrupts the run as Ctrl-C would: it closes its escrow and
            // writes its summary.
            stop: Some(stop),
            progress: Some(progress),
            // Results accepted before a restart are kept, not run (and paid) again.
            resume: true,
            // Jobs side by side are separate requesters to the providers, each under a
            // throwaway identity its user key attests (as `naac pool` and `naac market`
            // look); one at a time, the node's own.
            identity: (self.max_running > 1).then(naac_net::Keypair::generate_ed25519),
            pool_token: std::fs::read_to_string(dir.join(POOL_TOKEN_FILE)).ok(),
            data_tokens: Vec::new(),
            spend_token: None,
        };
        let (state, summary, error) = outcome(execute(exec).await);
        self.running().remove(&job.id);
        tracing::info!("job {} ({}) {}", job.id, job.name, state.as_str());
        if let Err(e) = self.store.finish(
            &job.id,
            state,
            summary.as_deref(),
            error.as_deref(),
            now_ms(),
        ) {
            tracing::error!("job queue: record job {}: {e:#}", job.id);
        }
        self.changed();
    }
}

/// How a run ended, for the queue: its state, summary and error.
fn outcome(r: anyhow::Result<Executed>) -> (State, Option<String>, Option<String>) {
    match r {
        Err(e) => (State::Failed, None, Some(format!("{e:#}"))),
        Ok(Executed::Invalid(e)) => (State::Failed, None, Some(format!("{e:#}"))),
        Ok(Executed::Refused(e)) => (State::Failed, None, Some(e)),
        Ok(Executed::Done(f)) => {
            let summary = serde_json::to_string(&f.summary).ok();
            if f.success() {
                (State::Done, summary, None)
            } else {
                let t = &f.summary.tasks;
                let why = format!("{} of {} tasks failed", t.failed, t.total);
                (State::Failed, summary, Some(why))
            }
        }
    }
}

impl Backend for Daemon {
    fn submit(
        &self,
        upload: Upload,
        may: &dyn Fn(&str) -> Result<(), Problem>,
    ) -> Result<JobView, Problem> {
        let internal = |e: anyhow::Error| Problem::internal(format!("{e:#}"));
        if let Some(k) = &upload.idempotency_key
            && let Some(r) = self.store.by_idempotency_key(k).map_err(internal)?
        {
            may(&r.name)?;
            return Ok(self.view(r));
        }
        if self.store.queued().map_err(internal)? >= self.max_queued {
            return Err(Problem::too_many(
                format!(
                    "{} jobs are already waiting; try again later",
                    self.max_queued
                ),
                30,
            ));
        }
        let id = new_id();
        let dir = self.store.dir_of(&id);
        let name = match Self::unpack(&dir.join("job"), &upload).and_then(|n| may(&n).map(|()| n)) {
            Ok(n) => n,
            Err(p) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(p);
            }
        };
        if let Some(t) = &upload.pool_token {
            // Kept with the job (so a restart runs it with it too), readable by the node only.
            write_private(&dir.join(POOL_TOKEN_FILE), t.as_bytes()).map_err(internal)?;
        }
        let row = self
            .store
            .insert(&id, &name, upload.idempotency_key.as_deref(), now_ms())
            .map_err(internal)?;
        self.wake.notify_one();
        self.changed();
        Ok(self.view(row))
    }

    fn jobs(&self, limit: usize, cursor: Option<&str>) -> Result<JobPage, Problem> {
        let (rows, next) = self
            .store
            .page(limit, cursor)
            .map_err(|e| Problem::bad_request(format!("{e:#}")))?;
        Ok(JobPage {
            jobs: rows.into_iter().map(|r| self.view(r)).collect(),
            next,
        })
    }

    fn job(&self, id: &str) -> Result<JobView, Problem> {
        match self.store.get(id) {
            Ok(Some(r)) => Ok(self.view(r)),
            Ok(None) => Err(Problem::not_found(format!("no job {id} on this node"))),
            Err(e) => Err(Problem::internal(format!("{e:#}"))),
        }
    }

    fn cancel(&self, id: &str) -> Result<JobView, Problem> {
        let row = self
            .store
            .cancel(id, now_ms())
            .map_err(|e| Problem::internal(format!("{e:#}")))?
            .ok_or_else(|| Problem::not_found(format!("no job {id} on this node")))?;
        if let Some(run) = self.running().get(id) {
            run.stop.notify_one();
        }
        self.changed();
        Ok(self.view(row))
    }

    fn task_file(&self, id: &str, index: Option<u64>, file: &str) -> Result<Vec<u8>, Problem> {
        let job = self.job(id)?;
        let out = self.store.dir_of(id).join("out");
        let (path, what) = match index {
            Some(i) => (
                out.join("tasks").join(i.to_string()).join(file),
                format!("task {i}"),
            ),
            None => (out.join("reduce").join(file), "its reduce step".to_string()),
        };
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Problem::not_found(format!(
                "job {id} has no {file} for {what} (it is {}; a task's files appear once its result is accepted)",
                job.state
            )),
            _ => Problem::internal(format!("read {}: {e}", path.display())),
        })
    }

    fn node(&self) -> serde_json::Value {
        self.node.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn tasks(&self, id: &str, from: u64, limit: u64) -> Result<serde_json::Value, Problem> {
        let job = self.job(id)?;
        let total = job
            .progress
            .as_ref()
            .and_then(|p| p["total"].as_u64())
            .or_else(|| {
                job.summary
                    .as_ref()
                    .and_then(|s| s["tasks"]["total"].as_u64())
            })
            .unwrap_or(0);
        let out = self.store.dir_of(id).join("out");
        Ok(views::tasks(&out, job.summary.as_ref(), total, from, limit))
    }

    fn results_dir(&self, id: &str) -> Result<PathBuf, Problem> {
        let job = self.job(id)?;
        let dir = self.store.dir_of(id).join("out");
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(Problem::not_found(format!(
                "job {id} has no results yet (it is {})",
                job.state
            )))
        }
    }

    fn pool(&self) -> naac_api::Pending {
        self.views.pool()
    }

    fn market(&self) -> naac_api::Pending {
        self.views.market()
    }

    fn wallet(&self, verify: bool) -> naac_api::Pending {
        self.views.wallet(verify)
    }

    fn data_read(&self, id: String, path: String) -> naac_api::PendingBytes {
        self.views.data_read(id, path)
    }

    fn data_write(&self, path: String, bytes: Vec<u8>) -> naac_api::Pending {
        self.views.data_write(path, bytes)
    }

    fn policy(&self) -> Result<serde_json::Value, Problem> {
        self.views.policy()
    }

    fn set_policy(&self, changes: Vec<(String, String)>) -> Result<serde_json::Value, Problem> {
        self.views.set_policy(changes)
    }

    fn metrics(&self) -> Result<Vec<Sample>, Problem> {
        let t = self
            .store
            .totals()
            .map_err(|e| Problem::internal(format!("{e:#}")))?;
        let progress: Vec<Progress> = self
            .running()
            .values()
            .map(|r| r.progress.borrow().clone())
            .collect();
        Ok(metrics_of(&t, &progress))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }
}

/// The figures of `GET /metrics`: jobs by state, and tasks, fuel, verification, payment
/// and connections summed over every finished job's summary plus the running jobs'
/// progress.
fn metrics_of(t: &naac_node::jobs::Totals, running: &[Progress]) -> Vec<Sample> {
    let s = |name, help, counter, labels: Vec<(&'static str, String)>, value| Sample {
        name,
        help,
        counter,
        labels,
        value,
    };
    let mut out = Vec::new();
    for state in [
        State::Queued,
        State::Running,
        State::Done,
        State::Failed,
        State::Cancelled,
    ] {
        let n = t
            .by_state
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        out.push(s(
            "naac_jobs",
            "jobs on this node by state",
            false,
            vec![("state", state.as_str().into())],
            n,
        ));
    }
    let sum = |f: fn(&Progress) -> u64| running.iter().map(f).sum::<u64>();
    let (ok, bad) = (
        sum(|p| p.sched.succeeded as u64),
        sum(|p| p.sched.failed as u64),
    );
    for (outcome, n) in [
        ("succeeded", t.succeeded + ok),
        ("failed", t.failed + bad),
        ("retried", t.retried),
    ] {
        out.push(s(
            "naac_tasks",
            "tasks of this node's jobs by outcome (retried: needed more than one attempt)",
            true,
            vec![("outcome", outcome.into())],
            n,
        ));
    }
    out.push(s(
        "naac_tasks_running",
        "tasks of the running jobs on hosts now",
        false,
        vec![],
        sum(|p| p.sched.running as u64),
    ));
    out.push(s(
        "naac_providers",
        "providers working on the running jobs (one provider counted once per job)",
        false,
        vec![],
        sum(|p| p.sched.providers as u64),
    ));
    out.push(s(
        "naac_fuel",
        "fuel of accepted results",
        true,
        vec![],
        t.fuel + sum(|p| p.fuel),
    ));
    out.push(s(
        "naac_task_runs",
        "runs of tasks, replicas and retries included",
        true,
        vec![],
        t.runs,
    ));
    out.push(s(
        "naac_results_rejected",
        "results that lost a vote, failed the verifier or carried a bad signature",
        true,
        vec![],
        t.rejected,
    ));
    out.push(s(
        "naac_verification_disagreements",
        "tasks whose replicas disagreed",
        true,
        vec![],
        t.disagreements,
    ));
    for (outcome, n) in [("settled", t.settlements), ("refused", t.refused)] {
        out.push(s(
            "naac_bank_settlements",
            "payments the bank settled or refused",
            true,
            vec![("outcome", outcome.into())],
            n,
        ));
    }
    for (kind, n) in &t.failures {
        out.push(s(
            "naac_task_failures",
            "tasks that failed for good, by how: the sandbox's outcome (exit, trap, out_of_fuel, timeout, memory) or lost, rejected, no_quorum, unverified, write",
            true,
            vec![("kind", kind.clone())],
            *n,
        ));
    }
    // Bank calls this process made (its runs' escrows, settlements, standing checks).
    for op in naac_bank::stats::totals() {
        for (outcome, n) in [("ok", op.ok), ("failed", op.failed)] {
            out.push(s(
                "naac_bank_requests",
                "requests this node sent to banks, by kind and outcome",
                true,
                vec![("kind", op.kind.into()), ("outcome", outcome.into())],
                n,
            ));
        }
        out.push(s(
            "naac_bank_request_milliseconds",
            "time this node waited on bank requests in all, by kind (divide by naac_bank_requests_total for the mean)",
            true,
            vec![("kind", op.kind.into())],
            (op.seconds * 1e3).round() as u64,
        ));
    }
    for (path, n) in [("direct", t.arrived_direct), ("relayed", t.arrived_relayed)] {
        out.push(s(
            "naac_results_arrived",
            "results received, by the connection they came over",
            true,
            vec![("connection", path.into())],
            n,
        ));
    }
    out
}

/// A fresh job id: 16 hex digits from the OS's randomness.
fn new_id() -> String {
    let bytes = random_bytes::<8>();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut b = [0u8; N];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom")
        && f.read_exact(&mut b).is_ok()
    {
        return b;
    }
    // No /dev/urandom: the clock and the process, hashed.
    let seed = format!("{:?} {}", std::time::SystemTime::now(), std::process::id());
    let h = blake3::hash(seed.as_bytes());
    b.copy_from_slice(&h.as_bytes()[..N]);
    b
}

/// The node's admin token in `api.token` in the data dir, minted (mode 0600) from the
/// node's identity key if missing or not this key's (a token from an older key, or from
/// before tokens were biscuits).
pub fn api_token(home: &Home, root: &naac_token::Root, node: &str) -> anyhow::Result<String> {
    let path = token_path(home);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if root.verifier().verify(&t).is_ok() {
            return Ok(t);
        }
        tracing::warn!(
            "{} holds no token of this node's key: minting a new admin token",
            path.display()
        );
    }
    let token = root.mint_admin(node)?;
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// The API's token root: the node's identity key.
pub fn token_root(home: &Home) -> anyhow::Result<(naac_token::Root, String)> {
    let key =
        naac_net::load_or_create_identity(&home.identity()).context("load the node identity")?;
    root_of(&key)
}

pub fn root_of(key: &naac_net::Keypair) -> anyhow::Result<(naac_token::Root, String)> {
    let id = key.public().to_peer_id().to_string();
    let root = naac_node::store::token_root(key).context("the node's identity")?;
    Ok((root, id))
}

/// Where a submitted job's pool token is kept, in its directory.
const POOL_TOKEN_FILE: &str = "pool.token";

/// Writes `bytes` to `path` at once (a temporary file renamed), readable by this user only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("save {}", path.display()))?;
    Ok(())
}

pub fn token_path(home: &Home) -> PathBuf {
    home.root().join("api.token")
}

/// Serves the API and runs the queue in the background. `Err` when the address cannot be
/// bound.
pub async fn start(home: &Home, c: Config) -> anyhow::Result<(std::net::SocketAddr, Arc<Daemon>)> {
    let listener = tokio::net::TcpListener::bind(&c.api)
        .await
        .with_context(|| format!("listen for the API on {}", c.api))?;
    let local = listener.local_addr()?;
    let (root, id) = token_root(home)?;
    api_token(home, &root, &id)?;
    let mut node = c.node;
    node["id"] = serde_json::Value::String(id);
    let (join, mdns) = (c.join, c.mdns);
    let daemon = Daemon::open(home, node, c.max_queued, c.max_running, join.clone(), mdns)?;
    // Data tokens are rooted in the user's key (the one that owns what the user stored).
    let user = naac_node::store::token_root(&crate::run::user_key(home)?)?;
    let router = naac_api::router(
        daemon.clone(),
        root.verifier(),
        Some(user.verifier()),
        c.max_upload,
    );
    tokio::spawn(async move {
        if let Err(e) = naac_api::serve(listener, router, std::future::pending()).await {
            tracing::error!("the API stopped: {e:#}");
        }
    });
    tokio::spawn(daemon.clone().run_queue(join, mdns));
    Ok((local, daemon))
}
