//! The requester: turns a job into tasks, drives the sans-IO [`Scheduler`] over the network,
//! serves module and input blobs to providers, writes results as they arrive, runs the reduce
//! step and writes `summary.json`.
//!
//! [`prepare`] does everything that can fail because of the user's input (job file, module,
//! input files) before anything runs; [`run`] then needs only a network client.

use crate::output::{self, Failure, ProviderTasks, ReduceSummary, Summary, TaskCounts};
use anyhow::Context as _;
use naac_net::{Client, Event, PeerId};
use naac_proto::{
    Assign, MAX_TASKS_PER_ASSIGN, Report, Request, RequestBody, Response, ResponseBody, TaskResult,
    TaskSpec, VERSION,
};
use naac_sandbox::{Prepared, Sandbox, TaskRun};
use naac_sched::{Command, Millis, Scheduler, TaskId};
use naac_types::{ContentId, FailureKind, Job, JobId, Outcome};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Why a run could not go ahead or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The user's input is wrong (job file, module, input files): exit code 2.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// Anything else: exit code 3 or above.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

/// Largest input (or stdin) file: it must fit in one message with room to spare.
pub const MAX_INPUT_BYTES: u64 = naac_proto::MAX_MESSAGE_BYTES - (1 << 20);

/// A job that passed every check and is ready to run.
pub struct PreparedJob {
    pub job: Job,
    pub id: JobId,
    module_id: ContentId,
    module_bytes: Arc<Vec<u8>>,
    reduce: Option<(Prepared, Vec<String>)>,
}

impl PreparedJob {
    pub fn module_id(&self) -> ContentId {
        self.module_id
    }
}

/// Loads the job file, reads and compiles its modules and checks every task's input files.
pub fn prepare(job_file: &Path, sandbox: &Sandbox) -> Result<PreparedJob, RunError> {
    let job = Job::load(job_file).map_err(|e| RunError::Invalid(job_error(e)))?;
    let (module_id, module_bytes, _) = load_module(&job.module, sandbox)?;
    let reduce = match &job.reduce {
        Some(r) => {
            let (_, _, prepared) = load_module(&r.module, sandbox)?;
            Some((prepared, r.args.clone()))
        }
        None => None,
    };
    // Every task's input files must exist before anything runs.
    for i in 0..job.task_count() {
        if i > 0 && !job.has_files() {
            break;
        }
        let params = job.task(i).map_err(|e| RunError::Invalid(job_error(e)))?;
        for path in params.inputs.iter().chain(params.stdin.iter()) {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if len > MAX_INPUT_BYTES {
                return Err(RunError::Invalid(anyhow::anyhow!(
                    "input file {} of task {i} is {len} bytes; the limit is {MAX_INPUT_BYTES}\nhint: split the input across tasks",
                    path.display()
                )));
            }
        }
    }
    let mut unique = Vec::new();
    unique.extend_from_slice(&std::process::id().to_le_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    unique.extend_from_slice(&nanos.to_le_bytes());
    let id = JobId::derive(&job.fingerprint(&module_id), &unique);
    Ok(PreparedJob {
        job,
        id,
        module_id,
        module_bytes: Arc::new(module_bytes),
        reduce,
    })
}

fn job_error(e: naac_types::JobError) -> anyhow::Error {
    match &e.hint {
        Some(h) => anyhow::anyhow!("{e}\nhint: {h}"),
        None => anyhow::anyhow!("{e}"),
    }
}

fn load_module(path: &Path, sandbox: &Sandbox) -> Result<(ContentId, Vec<u8>, Prepared), RunError> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("read module {}", path.display()))
        .map_err(RunError::Invalid)?;
    let id = ContentId::of(&bytes);
    let prepared = sandbox
        .compile(&id, &bytes)
        .map_err(|e| RunError::Invalid(anyhow::anyhow!("module {}: {e}", path.display())))?;
    Ok((id, bytes, prepared))
}

/// Requester settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub out_dir: PathBuf,
    pub sched: naac_sched::Config,
    /// Give up when no provider has joined for this long while tasks wait.
    pub provider_wait: Duration,
}

/// Live counts for progress displays.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub sched: naac_sched::Progress,
    pub fuel: u64,
    pub elapsed: Duration,
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

enum Internal {
    Hello(PeerId, Option<u32>),
    AssignFailed(PeerId, String),
}

/// An `Assign` not yet confirmed applied: its sequence number and its attempts.
type SentAssign = (u64, Vec<(TaskId, u32)>);

struct WriteJob {
    index: u32,
    provider: PeerId,
    result: TaskResult,
}

/// Runs a prepared job over the network until every task is done or failed, or `shutdown`
/// resolves (Ctrl-C). Results land in `opts.out_dir` as they arrive.
pub async fn run(
    prepared: PreparedJob,
    client: Client,
    mut events: mpsc::Receiver<Event>,
    sandbox: Arc<Sandbox>,
    opts: Options,
    progress: watch::Sender<Progress>,
    shutdown: impl Future<Output = ()>,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let total = u32::try_from(prepared.job.task_count()).context("too many tasks")?;
    let tasks_dir = opts.out_dir.join("tasks");
    std::fs::create_dir_all(&tasks_dir)
        .with_context(|| format!("create output dir {}", tasks_dir.display()))?;

    let staging = opts.out_dir.join(".staging");
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("create output dir {}", staging.display()))?;
    let (write_tx, write_rx) = mpsc::channel::<WriteJob>(1024);
    let writer = {
        let (tasks_dir, staging) = (tasks_dir.clone(), staging.clone());
        tokio::task::spawn_blocking(move || write_results(&staging, &tasks_dir, write_rx))
    };

    let mut blobs: HashMap<ContentId, Arc<Vec<u8>>> = HashMap::new();
    blobs.insert(prepared.module_id, prepared.module_bytes.clone());
    let (internal_tx, mut internal) = mpsc::channel(256);
    let mut r = Run {
        prepared: &prepared,
        client: client.clone(),
        sched: Scheduler::new(total, opts.sched.clone()),
        started,
        blobs,
        internal: internal_tx,
        write_tx,
        fuel: 0,
        per_provider: HashMap::new(),
        last_failure: HashMap::new(),
        failures: Vec::new(),
        known_peers: Vec::new(),
        first_provider: None,
        next_seq: HashMap::new(),
        unconfirmed: HashMap::new(),
        finished: false,
    };
    r.drive();

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut no_provider_since = Some(Instant::now());
    let mut interrupted = false;
    tokio::pin!(shutdown);
    while !r.finished {
        tokio::select! {
            _ = &mut shutdown => {
                interrupted = true;
                break;
            }
            ev = events.recv() => match ev {
                Some(ev) => r.on_event(ev).await,
                None => return Err(anyhow::anyhow!("the network stopped").into()),
            },
            Some(i) = internal.recv() => r.on_internal(i),
            _ = tick.tick() => {
                let now = r.now();
                r.sched.tick(now);
                r.drive();
                let p = r.sched.progress();
                if p.providers > 0 {
                    no_provider_since = None;
                } else if no_provider_since.is_none() {
                    no_provider_since = Some(Instant::now());
                }
                if let Some(since) = no_provider_since
                    && since.elapsed() > opts.provider_wait {
                        return Err(anyhow::anyhow!(
                            "no provider joined within {:?}; {} tasks are waiting\nhint: start providers with `naac node --provide` and pass --join ADDR, or run without --join to use this machine's cores",
                            opts.provider_wait, p.pending
                        ).into());
                    }
                progress.send_replace(Progress { sched: p, fuel: r.fuel, elapsed: started.elapsed() });
            }
        }
    }
    // Tell every provider the job is over (after Ctrl-C: to stop working on it), so they
    // forget it; best effort, without waiting long.
    let farewells = r.known_peers.iter().map(|peer| {
        let req = Request::new(RequestBody::Cancel {
            job: prepared.id,
            tasks: Vec::new(),
        });
        tokio::time::timeout(Duration::from_millis(500), client.request(*peer, req))
    });
    futures::future::join_all(farewells).await;
    let final_progress = r.sched.progress();
    progress.send_replace(Progress {
        sched: final_progress,
        fuel: r.fuel,
        elapsed: started.elapsed(),
    });
    let Run {
        write_tx,
        fuel,
        per_provider,
        failures,
        first_provider,
        ..
    } = r;
    drop(write_tx);
    let write_errors = writer.await.context("result writer panicked")?;
    let mut failures = failures;
    for (task, message) in &write_errors {
        failures.push(Failure {
            task: *task as u64,
            kind: "write".into(),
            message: format!("result could not be written: {message}"),
        });
    }

    let mut summary = Summary {
        job_id: prepared.id.to_hex(),
        name: prepared.job.name.clone(),
        tasks: TaskCounts {
            total: total as u64,
            succeeded: final_progress.succeeded as u64 - write_errors.len() as u64,
            failed: final_progress.failed as u64 + write_errors.len() as u64,
            retried: final_progress.retried as u64,
        },
        wall_seconds: 0.0,
        first_provider_seconds: first_provider.map(|d| d.as_secs_f64()),
        fuel_total: fuel,
        providers: {
            let mut v: Vec<ProviderTasks> = per_provider
                .into_iter()
                .map(|(p, n)| ProviderTasks {
                    peer_id: p.to_string(),
                    tasks: n,
                })
                .collect();
            v.sort_by(|a, b| b.tasks.cmp(&a.tasks).then(a.peer_id.cmp(&b.peer_id)));
            v
        },
        failures,
        out_dir: opts.out_dir.clone(),
        interrupted,
        reduce: None,
    };
    let mut reduce_stdout = None;
    if let Some((module, args)) = &prepared.reduce
        && !interrupted
        && final_progress.succeeded == total
    {
        let (rs, out) = reduce(&prepared, module, args, &opts.out_dir, &sandbox).await?;
        summary.fuel_total += rs.fuel;
        summary.reduce = Some(rs);
        reduce_stdout = out;
    }
    let _ = std::fs::remove_dir(&staging);
    summary.wall_seconds = started.elapsed().as_secs_f64();
    output::write_json_atomic(&opts.out_dir.join("summary.json"), &summary)?;
    Ok(Finished {
        summary,
        reduce_stdout,
    })
}

/// The writer thread: one task directory per result, off the network loop. A result that
/// cannot be written (disk full, ...) is reported, not fatal: the others still land.
fn write_results(
    staging: &Path,
    tasks_dir: &Path,
    mut rx: mpsc::Receiver<WriteJob>,
) -> Vec<(u32, String)> {
    let mut errors = Vec::new();
    // One line per accepted result, in arrival order, renamed into place at the end.
    let mut index = output::TaskIndexWriter::create(staging);
    // Peer ids in text form, made once per provider (base58 is not free).
    let mut names: HashMap<PeerId, String> = HashMap::new();
    while let Some(w) = rx.blocking_recv() {
        let dir = tasks_dir.join(w.index.to_string());
        if let Err(e) = output::write_result_dir(
            staging,
            &dir,
            &w.result.stdout,
            &w.result.stderr,
            &w.result.outputs,
        ) {
            tracing::error!("failed to write the results of task {}: {e:#}", w.index);
            errors.push((w.index, format!("{e:#}")));
            continue;
        }
        if let Some(ix) = index.as_mut() {
            ix.record(&output::TaskRecord {
                task: w.index as u64,
                attempt: w.result.attempt,
                provider: names
                    .entry(w.provider)
                    .or_insert_with(|| w.provider.to_string()),
                fuel: w.result.fuel_used,
                wall_ms: w.result.wall_us as f64 / 1000.0,
                stdout_bytes: w.result.stdout.len() as u64,
                outputs: w.result.outputs.len() as u64,
            });
        }
    }
    if let Some(ix) = index {
        let target = tasks_dir.parent().unwrap_or(tasks_dir).join("tasks.jsonl");
        if let Err(e) = ix.finish(&target) {
            tracing::error!("failed to write {}: {e:#}", target.display());
        }
    }
    errors
}

async fn reduce(
    prepared: &PreparedJob,
    module: &Prepared,
    args: &[String],
    out_dir: &Path,
    sandbox: &Arc<Sandbox>,
) -> anyhow::Result<(ReduceSummary, Option<Vec<u8>>)> {
    let mut stdin = Vec::new();
    for i in 0..prepared.job.task_count() {
        let p = out_dir.join("tasks").join(i.to_string()).join("stdout");
        let mut b = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        stdin.append(&mut b);
    }
    let run = TaskRun {
        argv0: prepared.job.name.clone(),
        args: args.to_vec(),
        stdin,
        inputs: Vec::new(),
        limits: prepared.job.limits,
        seed: ContentId::of(b"naac reduce").0,
    };
    let sandbox = sandbox.clone();
    let module = module.clone();
    let r = tokio::task::spawn_blocking(move || {
        sandbox.run(&module, &run, &Arc::new(AtomicBool::new(false)))
    })
    .await
    .context("reduce thread panicked")??;
    let outputs: Vec<naac_proto::OutputFile> = r
        .outputs
        .into_iter()
        .map(|(name, data)| naac_proto::OutputFile { name, data })
        .collect();
    output::write_result_dir(
        &out_dir.join(".staging"),
        &out_dir.join("reduce"),
        &r.stdout,
        &r.stderr,
        &outputs,
    )?;
    let ok = r.outcome == Outcome::Ok;
    Ok((
        ReduceSummary {
            outcome: r.outcome.as_str().to_string(),
            message: r.message,
            fuel: r.fuel_used,
        },
        ok.then_some(r.stdout),
    ))
}

struct Run<'a> {
    prepared: &'a PreparedJob,
    client: Client,
    sched: Scheduler<PeerId>,
    started: Instant,
    blobs: HashMap<ContentId, Arc<Vec<u8>>>,
    internal: mpsc::Sender<Internal>,
    write_tx: mpsc::Sender<WriteJob>,
    fuel: u64,
    per_provider: HashMap<PeerId, u64>,
    /// The most recent failure of each task, for the summary when it fails for good.
    last_failure: HashMap<u32, (FailureKind, String)>,
    failures: Vec<Failure>,
    known_peers: Vec<PeerId>,
    /// When the first provider joined, from the start of the run.
    first_provider: Option<Duration>,
    /// Per provider: the last `Assign::seq` used, and the assignments it has not yet
    /// confirmed applying (by echoing their seq in a report).
    next_seq: HashMap<PeerId, u64>,
    unconfirmed: HashMap<PeerId, std::collections::VecDeque<SentAssign>>,
    finished: bool,
}

impl Run<'_> {
    fn now(&self) -> Millis {
        Millis(self.started.elapsed().as_millis() as u64)
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Connected(peer) => {
                let client = self.client.clone();
                let tx = self.internal.clone();
                tokio::spawn(async move {
                    let slots = match client.request(peer, Request::new(RequestBody::Hello)).await {
                        Ok(Response {
                            body: ResponseBody::Welcome { slots, .. },
                            ..
                        }) => Some(slots),
                        _ => None,
                    };
                    let _ = tx.send(Internal::Hello(peer, slots)).await;
                });
            }
            Event::Disconnected(peer) => {
                self.known_peers.retain(|p| *p != peer);
                self.unconfirmed.remove(&peer);
                let now = self.now();
                self.sched.provider_lost(&peer, now);
                self.drive();
            }
            Event::Request {
                peer,
                request,
                channel,
            } => {
                let body = if request.v != VERSION {
                    ResponseBody::Refused(format!("message version {} is not supported", request.v))
                } else {
                    self.on_request(peer, request.body).await
                };
                self.client.respond(channel, Response::new(body)).await;
            }
            Event::BadFrame { peer, error } => {
                tracing::warn!("dropped a bad frame from {peer}: {error}");
            }
            Event::Listening(_) => {}
        }
    }

    async fn on_request(&mut self, peer: PeerId, body: RequestBody) -> ResponseBody {
        match body {
            RequestBody::Fetch { id } => match self.blobs.get(&id) {
                Some(b) => ResponseBody::Blob(b.to_vec()),
                None => ResponseBody::NotFound,
            },
            RequestBody::Report(report) => self.on_report(peer, report).await,
            RequestBody::Hello => {
                ResponseBody::Refused("this node is a requester, not a provider".into())
            }
            RequestBody::Assign(_) | RequestBody::Cancel { .. } => {
                ResponseBody::Refused("this node is a requester, not a provider".into())
            }
        }
    }

    async fn on_report(&mut self, peer: PeerId, report: Report) -> ResponseBody {
        if report.job != self.prepared.id {
            return ResponseBody::Refused(format!("unknown job {}", report.job));
        }
        let now = self.now();
        self.sched.renew(&peer, now);
        // What the provider holds: its list, the results in this report, and every assignment
        // it had not yet applied when it took the list (those cannot be judged yet).
        let mut held: Vec<(TaskId, u32)> = report
            .held
            .iter()
            .copied()
            .chain(report.results.iter().map(|r| (r.index, r.attempt)))
            .map(|(t, a)| (TaskId(t), a))
            .collect();
        if let Some(sent) = self.unconfirmed.get_mut(&peer) {
            while sent.front().is_some_and(|(seq, _)| *seq <= report.seen_seq) {
                sent.pop_front();
            }
            held.extend(sent.iter().flat_map(|(_, tasks)| tasks.iter().copied()));
        }
        self.sched.reconcile(&peer, &held, now);
        for result in report.results {
            let index = result.index;
            if index as u64 >= self.prepared.job.task_count() {
                tracing::warn!("provider {peer} reported unknown task {index}");
                continue;
            }
            let task = TaskId(index);
            let bad_name = result
                .outputs
                .iter()
                .find(|o| output::safe_relative(&o.name).is_none())
                .map(|o| o.name.clone());
            match result.outcome {
                Some(Outcome::Ok) if bad_name.is_some() => {
                    let message = format!(
                        "output file name {:?} is not a safe relative path",
                        bad_name.unwrap_or_default()
                    );
                    self.last_failure
                        .insert(index, (FailureKind::Rejected, message));
                    self.sched
                        .task_failed(&peer, task, result.attempt, FailureKind::Rejected, now);
                }
                Some(Outcome::Ok) => {
                    let run_ms = result.wall_us / 1000;
                    let fuel = result.fuel_used;
                    if self.sched.task_succeeded(&peer, task, run_ms, now) {
                        self.fuel = self.fuel.saturating_add(fuel);
                        *self.per_provider.entry(peer).or_default() += 1;
                        self.last_failure.remove(&index);
                        if self
                            .write_tx
                            .send(WriteJob {
                                index,
                                provider: peer,
                                result,
                            })
                            .await
                            .is_err()
                        {
                            tracing::error!("the result writer stopped");
                        }
                    }
                }
                outcome => {
                    let kind = outcome
                        .and_then(FailureKind::from_outcome)
                        .unwrap_or(FailureKind::Rejected);
                    tracing::debug!(
                        "task {index} failed on {peer}: {}: {}",
                        kind.as_str(),
                        result.message
                    );
                    self.last_failure.insert(index, (kind, result.message));
                    self.sched
                        .task_failed(&peer, task, result.attempt, kind, now);
                }
            }
        }
        self.drive();
        ResponseBody::Ack
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Hello(peer, Some(slots)) => {
                tracing::debug!("provider {peer} joined with {slots} slots");
                if !self.known_peers.contains(&peer) {
                    self.known_peers.push(peer);
                }
                self.first_provider
                    .get_or_insert_with(|| self.started.elapsed());
                self.sched.provider_joined(peer, slots, self.now());
            }
            Internal::Hello(_, None) => {}
            Internal::AssignFailed(peer, why) => {
                tracing::warn!("provider {peer} did not take its tasks: {why}; dropping it");
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

    /// Performs the scheduler's commands.
    fn drive(&mut self) {
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
                Command::TaskFailed { task, kind } => {
                    let message = match self.last_failure.remove(&task.0) {
                        Some((_, m)) if kind != FailureKind::Lost => m,
                        _ => "its providers vanished or stopped reporting".to_string(),
                    };
                    self.failures.push(Failure {
                        task: task.0 as u64,
                        kind: kind.as_str().to_string(),
                        message,
                    });
                }
                Command::JobFinished => self.finished = true,
            }
        }
    }

    fn assign(&mut self, provider: PeerId, tasks: Vec<(TaskId, u32)>) {
        let job = &self.prepared.job;
        let mut specs = Vec::with_capacity(tasks.len());
        for (t, attempt) in tasks {
            match task_spec(job, self.prepared.module_id, t.0, attempt, &mut self.blobs) {
                Ok(s) => specs.push(s),
                Err(e) => {
                    tracing::error!("failed to prepare task {}: {e:#}", t.0);
                    self.last_failure
                        .insert(t.0, (FailureKind::Rejected, format!("{e:#}")));
                    self.sched.task_failed(
                        &provider,
                        t,
                        attempt,
                        FailureKind::Rejected,
                        self.now(),
                    );
                }
            }
        }
        for chunk in specs.chunks(MAX_TASKS_PER_ASSIGN) {
            let seq = self.next_seq.entry(provider).or_default();
            *seq += 1;
            let seq = *seq;
            self.unconfirmed.entry(provider).or_default().push_back((
                seq,
                chunk.iter().map(|t| (TaskId(t.index), t.attempt)).collect(),
            ));
            let req = Request::new(RequestBody::Assign(Assign {
                job: self.prepared.id,
                seq,
                module: self.prepared.module_id,
                argv0: job.name.clone(),
                limits: job.limits,
                tasks: chunk.to_vec(),
            }));
            let client = self.client.clone();
            let tx = self.internal.clone();
            tokio::spawn(async move {
                let why = match client.request(provider, req).await {
                    Ok(Response {
                        body: ResponseBody::Ack,
                        ..
                    }) => return,
                    Ok(other) => format!("{:?}", other.body),
                    Err(e) => e.to_string(),
                };
                let _ = tx.send(Internal::AssignFailed(provider, why)).await;
            });
        }
    }
}

/// Builds the wire form of one task, registering its input blobs for providers to fetch.
fn task_spec(
    job: &Job,
    module: ContentId,
    index: u32,
    attempt: u32,
    blobs: &mut HashMap<ContentId, Arc<Vec<u8>>>,
) -> anyhow::Result<TaskSpec> {
    let params = job.task(index as u64).map_err(job_error)?;
    let mut add = |path: &Path| -> anyhow::Result<ContentId> {
        let bytes =
            std::fs::read(path).with_context(|| format!("read input {}", path.display()))?;
        let id = ContentId::of(&bytes);
        blobs.entry(id).or_insert_with(|| Arc::new(bytes));
        Ok(id)
    };
    let stdin = params.stdin.as_deref().map(&mut add).transpose()?;
    let mut inputs = Vec::with_capacity(params.inputs.len());
    for p in &params.inputs {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("input path has no file name")?;
        inputs.push((name, add(p)?));
    }
    // Replicas of a task (same module, args and inputs) get the same seed.
    let mut h = blake3::Hasher::new_derive_key("naac task seed v1");
    h.update(&module.0);
    for a in &params.args {
        h.update(&(a.len() as u64).to_le_bytes());
        h.update(a.as_bytes());
    }
    if let Some(s) = &stdin {
        h.update(&s.0);
    }
    for (n, id) in &inputs {
        h.update(n.as_bytes());
        h.update(&id.0);
    }
    Ok(TaskSpec {
        index,
        attempt,
        args: params.args,
        stdin,
        inputs,
        seed: ContentId(*h.finalize().as_bytes()),
    })
}
