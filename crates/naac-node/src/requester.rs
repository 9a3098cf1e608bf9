//! The requester: turns a job into tasks, drives the sans-IO [`Scheduler`] over the network,
//! serves module and input blobs to providers, writes results as they arrive, runs the reduce
//! step and writes `summary.json`.
//!
//! [`prepare`] does everything that can fail because of the user's input (job file, module,
//! input files) before anything runs; [`run`] then needs only a network client.
//!
//! Verification: every result's signature is checked against the record rebuilt from what
//! was assigned and what came back; a job's `verifier` module, if any, judges each result;
//! the scheduler's verdicts decide which copy is written. Result bytes wait in memory until
//! their task's verdict. Providers' verified, rejected and lost counts go to the reputation
//! store, and a provider whose score falls below the job's `min_reputation` is dropped.
//! Checkpoints from running tasks are kept (the latest per task) and handed to the run that
//! replaces a lost one.

use crate::output::{
    self, CheckpointSummary, Discrepancy, Failure, ProviderTasks, ReduceSummary, Side, Summary,
    TaskCounts, VerificationSummary,
};
use crate::pay::{Payer, Terms};
use crate::reputation::Reputation;
use anyhow::Context as _;
use naac_bank::wire::AskCheck as _;
use naac_net::{Client, Event, PeerId};
use naac_proto::{
    Assign, Bid, Hello, HostStatus, MAX_TASKS_PER_ASSIGN, Report, Request, RequestBody, Response,
    ResponseBody, SignedAsk, Solicit, TaskResult, TaskSpec, VERSION, Welcome,
};
use naac_sandbox::{Prepared, Sandbox, TaskRun};
use naac_sched::{Command, Millis, ProviderInfo, Scheduler, TaskId};
use naac_types::{ContentId, Credits, FailureKind, Job, JobId, Outcome, Price, ResultRecord};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
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

/// Most checkpoint bytes kept in memory for all open tasks together; beyond it new
/// checkpoints are refused (the older ones stay usable).
pub const CHECKPOINT_BUDGET: usize = 1 << 30;

/// Longest a verifier may run on one result (the job's timeout if shorter): verifiers are
/// meant to be cheap, and one runs on the requester for every result.
pub const VERIFIER_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest input (or stdin) file: it must fit in one message with room to spare.
pub const MAX_INPUT_BYTES: u64 = naac_proto::MAX_MESSAGE_BYTES - (1 << 20);

/// A job that passed every check and is ready to run.
pub struct PreparedJob {
    pub job: Job,
    pub id: JobId,
    module_id: ContentId,
    module_bytes: Arc<Vec<u8>>,
    reduce: Option<(Prepared, Vec<String>)>,
    verifier: Option<Prepared>,
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
    let verifier = match &job.verify.verifier {
        Some(v) => Some(load_module(v, sandbox)?.2),
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
        verifier,
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
    /// The reputation store; `None` keeps no record.
    pub reputation: Option<PathBuf>,
    /// The user's key: attests this run's identity to providers (their allow/deny lists).
    pub user_key: Option<naac_net::Keypair>,
    /// Fail at once, with the reasons, when the hosts in view cannot run the job, instead of
    /// waiting for them.
    pub no_wait: bool,
    /// Pay for the job through a bank: its escrow is already open.
    pub payment: Option<Payment>,
}

/// A job's open escrow and the key that signs its payments.
#[derive(Clone)]
pub struct Payment {
    pub escrow: crate::pay::Escrow,
    pub user: naac_net::Keypair,
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

/// How long a paid job collects sealed asks before it awards its first batch.
const BIDDING_WINDOW: Duration = Duration::from_millis(300);

/// Most market offers (and providers dialled from them) a run keeps.
const MAX_OFFERS: usize = 4096;

enum Internal {
    /// A provider answered Hello (`None`: not a provider), with the round-trip time to it.
    Hello(PeerId, Option<Box<Welcome>>, Option<Duration>),
    /// A node declined to work for us, and why.
    Declined(PeerId, String),
    AssignFailed(PeerId, String),
}

/// A result waiting for its task's verdict.
struct Vote {
    provider: PeerId,
    digest: ContentId,
    record: ContentId,
    result: TaskResult,
}

/// Per-provider counts for the summary.
#[derive(Default)]
struct Stats {
    accepted: u64,
    verified: u64,
    rejected: u64,
    lost: u64,
}

/// An `Assign` not yet confirmed applied: its sequence number and its attempts.
type SentAssign = (u64, Vec<(TaskId, u32)>);

enum WriteJob {
    Write {
        index: u32,
        provider: PeerId,
        result: Box<TaskResult>,
        digest: ContentId,
        record: ContentId,
        verified: bool,
        copies: u32,
        price: Option<Price>,
    },
    /// A result written earlier was voided by a re-check.
    Remove(u32),
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
    let reputation = match &opts.reputation {
        Some(path) => Some(Reputation::open(path)?),
        None => None,
    };
    let mut sched_config = opts.sched.clone();
    sched_config.verify = prepared.job.verify.clone();
    sched_config.straggler_factor = prepared.job.straggler_factor;
    sched_config.retries = prepared.job.retries;
    sched_config.seed = u64::from_le_bytes(prepared.id.0[..8].try_into().expect("8 bytes"));
    let max_price = prepared.job.budget.max_price;
    let payer = opts.payment.take().map(|p| {
        let log = crate::pay::payment_log(&opts.out_dir, &p.escrow.job);
        Payer::new(p.escrow, p.user, Some(&log))
    });
    let mut hello = crate::survey::hello(&client, opts.user_key.as_ref());
    if payer.is_some() {
        hello.solicit = Some(Solicit {
            job: prepared.id,
            max_price,
            fuel: prepared.job.limits.fuel,
        });
    }
    let mut r = Run {
        prepared: &prepared,
        client: client.clone(),
        sched: Scheduler::new(total, sched_config),
        started,
        blobs,
        internal: internal_tx,
        write_tx,
        write_queue: std::collections::VecDeque::new(),
        sandbox: sandbox.clone(),
        fuel: 0,
        fuel_spent: 0,
        stats: HashMap::new(),
        last_failure: HashMap::new(),
        failures: Vec::new(),
        known_peers: Vec::new(),
        first_provider: None,
        next_seq: HashMap::new(),
        unconfirmed: HashMap::new(),
        votes: HashMap::new(),
        input_digests: HashMap::new(),
        checkpoints: HashMap::new(),
        checkpoint_blobs: HashMap::new(),
        checkpoint_bytes: 0,
        resumed_runs: HashSet::new(),
        checkpoint_summary: CheckpointSummary::default(),
        reopened: HashSet::new(),
        discrepancies: Vec::new(),
        rejected_results: 0,
        reputation,
        module_hex: prepared.module_id.to_hex(),
        banned: HashSet::new(),
        peer_ips: HashMap::new(),
        peer_keys: naac_net::PeerKeys::default(),
        hosts: HashMap::new(),
        hello,
        finished: false,
        payer,
        max_price,
        bids: HashMap::new(),
        asks: HashMap::new(),
        no_bids: HashMap::new(),
        terms: HashMap::new(),
        offers: naac_market::OfferBook::new(MAX_OFFERS),
        dialled: HashSet::new(),
        bidding_until: None,
        bidding_closed: false,
    };
    // The market: hear providers' offers, and look providers up by commodity class in the
    // DHT; both lead to providers we were not told about.
    if let Err(e) = crate::survey::discover(&client, Duration::ZERO, Duration::from_secs(10)).await
    {
        tracing::warn!("{e:#}");
    }
    r.drive();
    let mut last_flush = Instant::now();

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut no_provider_since = Some(Instant::now());
    // Providers are there but none may take the waiting tasks (e.g. replicas need more
    // independent providers than have joined).
    let mut stalled_since: Option<Instant> = None;
    let mut interrupted = false;
    tokio::pin!(shutdown);
    let mut failed: Option<RunError> = None;
    while !r.finished {
        tokio::select! {
            _ = &mut shutdown => {
                interrupted = true;
                break;
            }
            ev = events.recv() => match ev {
                Some(ev) => {
                    r.on_event(ev).await;
                    r.flush_writes().await;
                }
                None => { failed = Some(anyhow::anyhow!("the network stopped").into()); break; }
            },
            Some(i) = internal.recv() => {
                r.on_internal(i);
                r.flush_writes().await;
            }
            _ = tick.tick() => {
                r.close_bidding();
                let now = r.now();
                r.sched.tick(now);
                r.drive();
                r.flush_writes().await;
                if last_flush.elapsed() > Duration::from_secs(1) {
                    r.flush_reputation();
                    last_flush = Instant::now();
                }
                let p = r.sched.progress();
                if p.providers > 0 {
                    no_provider_since = None;
                } else if no_provider_since.is_none() {
                    no_provider_since = Some(Instant::now());
                }
                if let Some(since) = no_provider_since
                    && since.elapsed() > opts.provider_wait {
                        if !r.no_bids.is_empty() {
                            let mut why: Vec<String> = r.no_bids.iter().map(|(p, w)| format!("{p}: {w}")).collect();
                            why.sort();
                            failed = Some(anyhow::anyhow!(
                                "no provider bid for the job within {:?} ({} declined: {})\nhint: raise [budget] max_price in the job file, or pay through a bank (--bank ADDR)",
                                opts.provider_wait, why.len(), why.join("; ")
                            ).into());
                        break;
                        }
                        failed = Some(anyhow::anyhow!(
                            "no provider joined within {:?}; {} tasks are waiting\nhint: start providers with `naac node --provide` and pass --join ADDR, or run without --join to use this machine's cores",
                            opts.provider_wait, p.pending
                        ).into());
                        break;
                    }
                let mut waiting = None;
                let explained = r.explanation();
                if p.runs == 0 && !r.finished && explained.hosts > 0 && explained.usable == 0 {
                    // Hosts are there but none may run the tasks now: wait (the reason is
                    // shown), unless told not to.
                    if opts.no_wait {
                        failed = Some(anyhow::anyhow!(
                            "no host in view can run the job now: {}\nhint: see `naac pool`, or run without --no-wait to wait until one can",
                            explained.reasons()
                        ).into());
                        break;
                    }
                    waiting = Some(explained.reasons());
                    stalled_since = None;
                } else if p.providers > 0 && p.runs == 0 && !r.finished {
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > opts.provider_wait {
                        let v = &prepared.job.verify;
                        let why = if v.compares() {
                            format!(
                                "copies of a task must run on providers with distinct owners and networks (replicas = {}, quorum = {}), and only {} usable providers joined",
                                v.replicas, v.quorum, p.providers
                            )
                        } else {
                            format!("none of the {} providers will take them", p.providers)
                        };
                        failed = Some(anyhow::anyhow!(
                            "{} tasks have waited {:?} without a provider to run them: {why}\nhint: add providers (or --workers N for the embedded pool), or lower [verify] replicas",
                            p.pending, opts.provider_wait
                        ).into());
                        break;
                    }
                } else {
                    stalled_since = None;
                }
                let cost = r.cost();
                progress.send_replace(Progress { sched: p, fuel: r.fuel, elapsed: started.elapsed(), waiting, cost });
            }
        }
    }
    if let Some(e) = failed {
        // Pay for what was verified, then give the rest of the escrow back.
        if let Some(payer) = r.payer.take()
            && let Err(why) = payer.finish(Duration::from_secs(30)).await
        {
            tracing::error!(
                "the escrow could not be refunded now: {why}; the bank refunds it when it expires"
            );
        }
        return Err(e);
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
    r.flush_writes().await;
    r.flush_reputation();
    // Pay what is still queued, then refund the rest of the escrow.
    let mut cost = None;
    let mut earned: HashMap<PeerId, Credits> = HashMap::new();
    if let Some(payer) = r.payer.take() {
        let paid = payer.paid.clone();
        let (bank, escrow, max_price) = (
            naac_types::hex(&payer.escrow().bank_key.0),
            payer.escrow().amount,
            payer.escrow().max_price,
        );
        let (refunded, open) = match payer.finish(Duration::from_secs(60)).await {
            Ok(c) => (c, false),
            Err(e) => {
                tracing::error!("the escrow was not refunded: {e}");
                (Credits::ZERO, true)
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
            settlements: p.settlements,
            refused: p.refused,
            refusal: p.last_refusal,
            unconfirmed: p.unconfirmed,
            open,
        });
    }
    progress.send_replace(Progress {
        sched: final_progress,
        fuel: r.fuel,
        elapsed: started.elapsed(),
        waiting: None,
        cost: cost
            .as_ref()
            .and_then(|c| Credits::parse(&c.paid.replace(',', "")).ok()),
    });
    let mut providers: Vec<ProviderTasks> = r
        .stats
        .iter()
        .map(|(p, st)| {
            let peer_id = p.to_string();
            let reputation = r
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
                ask: r.bids.get(p).map(|b| b.price.to_string()),
                earned: cost
                    .is_some()
                    .then(|| earned.get(p).copied().unwrap_or_default().to_string()),
            }
        })
        .collect();
    providers.sort_by(|a, b| b.tasks.cmp(&a.tasks).then(a.peer_id.cmp(&b.peer_id)));
    let policy = &prepared.job.verify;
    let closed = (final_progress.succeeded + final_progress.failed).max(1) as f64;
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
        rejected_results: r.rejected_results,
    };
    let Run {
        write_tx,
        fuel,
        fuel_spent,
        failures,
        first_provider,
        discrepancies,
        checkpoint_summary,
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
            succeeded: (final_progress.succeeded as u64).saturating_sub(write_errors.len() as u64),
            failed: final_progress.failed as u64 + write_errors.len() as u64,
            retried: final_progress.retried as u64,
        },
        wall_seconds: 0.0,
        first_provider_seconds: first_provider.map(|d| d.as_secs_f64()),
        fuel_total: fuel,
        fuel_spent,
        providers,
        verification,
        discrepancies,
        checkpoints: checkpoint_summary,
        failures,
        out_dir: opts.out_dir.clone(),
        interrupted,
        reduce: None,
        cost,
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
        let (index_no, provider, result, digest, record, verified, copies, price) = match w {
            WriteJob::Remove(i) => {
                let dir = tasks_dir.join(i.to_string());
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::error!("failed to remove voided result {}: {e}", dir.display());
                }
                continue;
            }
            WriteJob::Write {
                index,
                provider,
                result,
                digest,
                record,
                verified,
                copies,
                price,
            } => (
                index, provider, result, digest, record, verified, copies, price,
            ),
        };
        let dir = tasks_dir.join(index_no.to_string());
        if let Err(e) = output::write_result_dir(
            staging,
            &dir,
            &result.stdout,
            &result.stderr,
            &result.outputs,
        ) {
            tracing::error!("failed to write the results of task {index_no}: {e:#}");
            errors.push((index_no, format!("{e:#}")));
            continue;
        }
        if let Some(ix) = index.as_mut() {
            ix.record(&output::TaskRecord {
                task: index_no as u64,
                attempt: result.attempt,
                provider: names
                    .entry(provider)
                    .or_insert_with(|| provider.to_string()),
                fuel: result.fuel_used,
                wall_ms: result.wall_us as f64 / 1000.0,
                stdout_bytes: result.stdout.len() as u64,
                outputs: result.outputs.len() as u64,
                output: digest.to_hex(),
                record: record.to_hex(),
                signature: naac_types::hex(&result.signature),
                verified,
                copies,
                resumed: result.resumed.is_some(),
                price: price.map(|p| p.to_string()),
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
        ..TaskRun::default()
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
    /// Writes in verdict order, handed to the writer thread after each event.
    write_queue: std::collections::VecDeque<WriteJob>,
    sandbox: Arc<Sandbox>,
    /// Fuel of accepted results.
    fuel: u64,
    /// Fuel of every result received.
    fuel_spent: u64,
    stats: HashMap<PeerId, Stats>,
    /// The most recent failure of each task, for the summary when it fails for good.
    last_failure: HashMap<u32, (FailureKind, String)>,
    failures: Vec<Failure>,
    known_peers: Vec<PeerId>,
    /// The newest status of every provider that welcomed us.
    hosts: HashMap<PeerId, HostStatus>,
    /// What we greet providers with.
    hello: Hello,
    /// When the first provider joined, from the start of the run.
    first_provider: Option<Duration>,
    /// Per provider: the last `Assign::seq` used, and the assignments it has not yet
    /// confirmed applying (by echoing their seq in a report).
    next_seq: HashMap<PeerId, u64>,
    unconfirmed: HashMap<PeerId, std::collections::VecDeque<SentAssign>>,
    /// Results waiting for their task's verdict.
    votes: HashMap<u32, Vec<Vote>>,
    /// Input digest of every open task, for checking result records.
    input_digests: HashMap<u32, ContentId>,
    /// Latest checkpoint of each open task, and the checkpoint bytes providers may fetch.
    checkpoints: HashMap<u32, ContentId>,
    /// Checkpoint bytes by content id, with how many tasks refer to them.
    checkpoint_blobs: HashMap<ContentId, (Arc<Vec<u8>>, u32)>,
    checkpoint_bytes: usize,
    /// `(task, attempt)` of runs assigned to resume from a checkpoint.
    resumed_runs: HashSet<(u32, u32)>,
    checkpoint_summary: CheckpointSummary,
    /// Tasks whose written result is being checked again.
    reopened: HashSet<u32>,
    discrepancies: Vec<Discrepancy>,
    rejected_results: u64,
    reputation: Option<Reputation>,
    module_hex: String,
    /// Providers dropped for a low reputation.
    banned: HashSet<PeerId>,
    peer_ips: HashMap<PeerId, IpAddr>,
    peer_keys: naac_net::PeerKeys,
    finished: bool,
    /// Pays verified results, when the job is paid.
    payer: Option<Payer>,
    max_price: Price,
    /// Every provider's sealed ask for this job, as auction bids.
    bids: HashMap<PeerId, naac_market::Bid<PeerId>>,
    asks: HashMap<PeerId, SignedAsk>,
    /// Providers that would not bid, and why.
    no_bids: HashMap<PeerId, String>,
    /// The price of each open run, fixed when its batch was auctioned: per task, by attempt.
    terms: HashMap<u32, Vec<(u32, Terms)>>,
    /// Providers' offers heard on the market topic (soft state).
    offers: naac_market::OfferBook,
    /// Providers found through the market that we dialled.
    dialled: HashSet<PeerId>,
    /// A paid job's first auction closes here: asks are collected until then, so the
    /// first batches are not awarded before the other bids are in.
    bidding_until: Option<Instant>,
    bidding_closed: bool,
}

impl Run<'_> {
    fn now(&self) -> Millis {
        Millis(self.started.elapsed().as_millis() as u64)
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Connected(peer, ip) => {
                if let Some(ip) = ip {
                    self.peer_ips.insert(peer, ip);
                }
                let client = self.client.clone();
                let tx = self.internal.clone();
                let hello = self.hello.clone();
                tokio::spawn(async move {
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
                        .find_map(|(p, d)| (p == peer).then_some(d));
                    let _ = tx.send(Internal::Hello(peer, offer, rtt)).await;
                });
            }
            Event::Disconnected(peer) => {
                self.hosts.remove(&peer);
                self.bids.remove(&peer);
                self.known_peers.retain(|p| *p != peer);
                self.peer_ips.remove(&peer);
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
            Event::Gossip { topic, data, .. } => self.on_offer(&topic, &data),
            Event::Listening(_) => {}
        }
    }

    async fn on_request(&mut self, peer: PeerId, body: RequestBody) -> ResponseBody {
        match body {
            RequestBody::Bank(_) => ResponseBody::Refused("this node is not a bank".into()),
            RequestBody::Fetch { id } => match self
                .blobs
                .get(&id)
                .or_else(|| self.checkpoint_blobs.get(&id).map(|(b, _)| b))
            {
                Some(b) => ResponseBody::Blob(b.to_vec()),
                None => ResponseBody::NotFound,
            },
            RequestBody::Report(report) => self.on_report(peer, report).await,
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
        if !report.returned.is_empty() {
            tracing::info!(
                "provider {peer} handed back {} tasks (its owner's policy paused them)",
                report.returned.len()
            );
            let returned: Vec<(TaskId, u32)> = report
                .returned
                .iter()
                .map(|(t, a)| (TaskId(*t), *a))
                .collect();
            for (t, a) in &report.returned {
                self.resumed_runs.remove(&(*t, *a));
            }
            self.sched.runs_returned(&peer, &returned, now);
        }
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
        // Rebuild every result's record and check all signatures in one batch.
        let checked: Vec<Option<(ResultRecord, Vec<u8>)>> = report
            .results
            .iter()
            .map(|r| {
                self.record_of(r).map(|rec| {
                    let bytes = rec.signing_bytes();
                    (rec, bytes)
                })
            })
            .collect();
        let items: Vec<(PeerId, &[u8], &[u8])> = checked
            .iter()
            .zip(&report.results)
            .filter_map(|(c, r)| {
                c.as_ref()
                    .map(|(_, b)| (peer, b.as_slice(), r.signature.as_slice()))
            })
            .collect();
        let mut verdicts = self.peer_keys.verify_many(&items).into_iter();
        let signed: Vec<Option<(ResultRecord, bool)>> = checked
            .into_iter()
            .map(|c| c.map(|(rec, _)| (rec, verdicts.next().unwrap_or(false))))
            .collect();
        for (result, signed) in report.results.into_iter().zip(signed) {
            self.on_result(peer, result, signed, now).await;
        }
        self.drive();
        ResponseBody::Ack
    }

    /// Checks one result (record signature, output names, verifier) and hands it to the
    /// scheduler as a vote or a failure.
    /// The record a result claims to be signed over, rebuilt from what was assigned; `None`
    /// for a stale result or one without an outcome (unsigned).
    fn record_of(&self, result: &TaskResult) -> Option<ResultRecord> {
        let input = *self.input_digests.get(&result.index)?;
        Some(ResultRecord {
            job: self.prepared.id,
            task: result.index,
            attempt: result.attempt,
            module: self.prepared.module_id,
            input,
            output: result.output_digest(),
            outcome: result.outcome?,
            fuel_used: result.fuel_used,
        })
    }

    async fn on_result(
        &mut self,
        peer: PeerId,
        result: TaskResult,
        signed: Option<(ResultRecord, bool)>,
        now: Millis,
    ) {
        let index = result.index;
        if index as u64 >= self.prepared.job.task_count() {
            tracing::warn!("provider {peer} reported unknown task {index}");
            return;
        }
        let task = TaskId(index);
        let attempt = result.attempt;
        // A task that is no longer open has no digest: a stale result, not wanted.
        if !self.input_digests.contains_key(&index) {
            return;
        }
        let (Some(outcome), Some((record, signature_ok))) = (result.outcome, signed) else {
            // The provider could not run it at all (fetch failed, ...): unsigned, a retry.
            self.last_failure
                .insert(index, (FailureKind::Rejected, result.message));
            self.sched
                .task_failed(&peer, task, attempt, FailureKind::Rejected, now);
            return;
        };
        self.fuel_spent = self.fuel_spent.saturating_add(result.fuel_used);
        let digest = record.output;
        if !signature_ok {
            tracing::warn!(
                "provider {peer}: the record of task {index} is not signed by it; result refused"
            );
            self.refuse(
                peer,
                task,
                attempt,
                FailureKind::Rejected,
                "the result's signature does not match its record".into(),
                now,
            );
            return;
        }
        if result.fuel_used > self.prepared.job.limits.fuel {
            // Fuel is what a result is paid for: a claim above the task's limit is a lie.
            tracing::warn!(
                "provider {peer}: task {index} claims {} fuel, above its limit {}; result refused",
                result.fuel_used,
                self.prepared.job.limits.fuel
            );
            self.refuse(
                peer,
                task,
                attempt,
                FailureKind::Rejected,
                "the result claims more fuel than the task's limit".into(),
                now,
            );
            return;
        }
        if outcome != Outcome::Ok {
            let kind = FailureKind::from_outcome(outcome).unwrap_or(FailureKind::Rejected);
            tracing::debug!(
                "task {index} failed on {peer}: {}: {}",
                kind.as_str(),
                result.message
            );
            self.last_failure.insert(index, (kind, result.message));
            self.sched.task_failed(&peer, task, attempt, kind, now);
            return;
        }
        if let Some(bad) = result
            .outputs
            .iter()
            .find(|o| output::safe_relative(&o.name).is_none())
        {
            let message = format!(
                "output file name {:?} is not a safe relative path",
                bad.name
            );
            self.last_failure
                .insert(index, (FailureKind::Rejected, message));
            self.sched
                .task_failed(&peer, task, attempt, FailureKind::Rejected, now);
            return;
        }
        if let Some(verifier) = self.prepared.verifier.clone() {
            match self.run_verifier(&verifier, index, &result).await {
                Ok(None) => {}
                Ok(Some(why)) => {
                    tracing::warn!("the verifier rejected task {index} from {peer}: {why}");
                    self.refuse(peer, task, attempt, FailureKind::Unverified, why, now);
                    return;
                }
                Err(e) => {
                    // Our own failure, not the provider's: do not blame it, try again.
                    tracing::error!("could not run the verifier on task {index}: {e:#}");
                    self.last_failure
                        .insert(index, (FailureKind::Rejected, format!("verifier: {e:#}")));
                    self.sched
                        .task_failed(&peer, task, attempt, FailureKind::Rejected, now);
                    return;
                }
            }
        }
        if self.resumed_runs.remove(&(index, attempt)) {
            // It started from state another provider made: under a verifying policy, an
            // independent copy must confirm it.
            self.sched.require_check(task);
        }
        if self.sched.task_result(&peer, task, attempt, digest, now) {
            self.votes.entry(index).or_default().push(Vote {
                provider: peer,
                digest,
                record: record.id(),
                result,
            });
        }
    }

    /// A provably bad result: count it against the provider and retry the task elsewhere.
    fn refuse(
        &mut self,
        peer: PeerId,
        task: TaskId,
        attempt: u32,
        kind: FailureKind,
        why: String,
        now: Millis,
    ) {
        self.rejected_results += 1;
        self.stats.entry(peer).or_default().rejected += 1;
        if let Some(rep) = self.reputation.as_mut()
            && let Err(e) = rep.add(&peer.to_string(), 0, 1, 0)
        {
            tracing::warn!("reputation store: {e:#}");
        }
        self.last_failure.insert(task.0, (kind, why));
        self.sched.task_rejected(&peer, task, attempt, kind, now);
        if let Some(rep) = self.reputation.as_mut() {
            rep.set_streak(&peer.to_string(), &self.module_hex, 0);
        }
        self.check_reputation(peer);
    }

    /// Runs the job's verifier on a claimed result: `Ok(None)` accepts, `Ok(Some(why))`
    /// rejects. The verifier gets `verifier_args` (default: the task's arguments), the task's
    /// input files, the claimed stdout on its stdin, and each claimed output file at `/in/out.<name>` (`/` in names becomes
    /// `_`).
    async fn run_verifier(
        &mut self,
        verifier: &Prepared,
        index: u32,
        result: &TaskResult,
    ) -> anyhow::Result<Option<String>> {
        let spec = task_spec(
            &self.prepared.job,
            self.prepared.module_id,
            index,
            0,
            &mut self.blobs,
        )?;
        let mut inputs = Vec::with_capacity(spec.inputs.len() + result.outputs.len());
        for (name, id) in &spec.inputs {
            let bytes = self.blobs.get(id).context("input blob")?.clone();
            inputs.push((name.clone(), bytes));
        }
        for o in &result.outputs {
            inputs.push((
                format!("out.{}", o.name.replace('/', "_")),
                Arc::new(o.data.clone()),
            ));
        }
        let run = TaskRun {
            argv0: self.prepared.job.name.clone(),
            args: self.prepared.job.verifier_args(index as u64),
            stdin: result.stdout.clone(),
            inputs,
            limits: naac_types::Limits {
                timeout_ms: self
                    .prepared
                    .job
                    .limits
                    .timeout_ms
                    .min(VERIFIER_TIMEOUT.as_millis() as u64),
                ..self.prepared.job.limits
            },
            seed: spec.seed.0,
            ..TaskRun::default()
        };
        let sandbox = self.sandbox.clone();
        let verifier = verifier.clone();
        let r = tokio::task::spawn_blocking(move || {
            sandbox.run(&verifier, &run, &Arc::new(AtomicBool::new(false)))
        })
        .await
        .context("verifier thread panicked")??;
        Ok(match r.outcome {
            Outcome::Ok => None,
            Outcome::Exit => Some(format!(
                "the verifier exited with code {}: {}",
                r.exit_code.unwrap_or(-1),
                String::from_utf8_lossy(&r.stderr).trim()
            )),
            other => anyhow::bail!(
                "the verifier itself failed ({}): {}",
                other.as_str(),
                r.message
            ),
        })
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
        let id = ContentId::of(&data);
        if self.checkpoints.get(&index) == Some(&id) {
            return ResponseBody::Ack;
        }
        if self.checkpoint_bytes + data.len() > CHECKPOINT_BUDGET
            && !self.checkpoint_blobs.contains_key(&id)
        {
            tracing::debug!("checkpoint store full; refused a checkpoint of task {index}");
            return ResponseBody::Refused("the requester's checkpoint store is full".into());
        }
        self.checkpoint_summary.received += 1;
        self.drop_checkpoint(index);
        self.checkpoints.insert(index, id);
        let len = data.len();
        let entry = self
            .checkpoint_blobs
            .entry(id)
            .or_insert_with(|| (Arc::new(data), 0));
        if entry.1 == 0 {
            self.checkpoint_bytes += len;
        }
        entry.1 += 1;
        ResponseBody::Ack
    }

    /// Forgets the task's checkpoint, freeing its bytes once no task refers to them.
    fn drop_checkpoint(&mut self, index: u32) {
        let Some(id) = self.checkpoints.remove(&index) else {
            return;
        };
        if let Some((bytes, refs)) = self.checkpoint_blobs.get_mut(&id) {
            *refs -= 1;
            if *refs == 0 {
                self.checkpoint_bytes -= bytes.len();
                self.checkpoint_blobs.remove(&id);
            }
        }
    }

    /// Drops a provider whose reputation fell below the job's floor.
    fn check_reputation(&mut self, peer: PeerId) {
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

    /// Hands queued writes to the writer thread, in order; waits when it is behind, which
    /// holds back this loop (and so the providers) instead of piling results up in memory.
    async fn flush_writes(&mut self) {
        while let Some(job) = self.write_queue.pop_front() {
            if self.write_tx.send(job).await.is_err() {
                tracing::error!("the result writer stopped");
                self.write_queue.clear();
            }
        }
    }

    fn flush_reputation(&mut self) {
        if let Some(rep) = self.reputation.as_mut()
            && let Err(e) = rep.flush()
        {
            tracing::warn!("failed to save reputation: {e:#}");
        }
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Hello(peer, Some(w), rtt) => {
                let w = *w;
                if self.payer.is_some() && !self.take_bid(peer, w.bid.as_ref(), rtt) {
                    return;
                }
                self.hosts.insert(peer, w.status.clone());
                self.on_hello(peer, w.slots, w.owner);
                self.apply_status(peer);
                if self.payer.is_some() {
                    self.rerank();
                }
            }
            Internal::Hello(_, None, _) => {}
            Internal::Declined(peer, why) => {
                tracing::info!("{peer} declined: {why}");
                if self.no_bids.len() < MAX_OFFERS {
                    self.no_bids.insert(peer, why);
                }
            }
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

    /// A provider's offer on the market topic: kept as soft state; a provider we have not
    /// met that accepts work is dialled (its `Hello` follows on connection).
    fn on_offer(&mut self, topic: &str, data: &[u8]) {
        let Some(offer) = crate::survey::offer_of(topic, data) else {
            return;
        };
        let now = crate::survey::unix_ms();
        self.offers.expire(now);
        let o = offer.offer.clone();
        let contact = crate::survey::offer_contact(&offer);
        match self.offers.insert(offer, now) {
            Ok(naac_market::Inserted::Stale) | Err(_) => return,
            Ok(_) => {}
        }
        let Some((peer, addr)) = contact else {
            return;
        };
        if !o.accepting
            || o.price > self.max_price && self.payer.is_some()
            || self.hosts.contains_key(&peer)
            || self.banned.contains(&peer)
            || self.dialled.len() >= MAX_OFFERS
            || !self.dialled.insert(peer)
        {
            return;
        }
        tracing::debug!("dialling {peer}, found on the market at {addr}");
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.dial(addr).await {
                tracing::debug!("dial {peer}: {e:#}");
            }
        });
    }

    /// What has been paid so far.
    fn cost(&self) -> Option<Credits> {
        self.payer
            .as_ref()
            .map(|p| p.paid.lock().unwrap_or_else(|e| e.into_inner()).total)
    }

    /// Checks a provider's sealed ask and keeps it as a bid; `false` if it did not bid (or
    /// its ask is not valid), in which case it gets no work.
    fn take_bid(&mut self, peer: PeerId, bid: Option<&Bid>, rtt: Option<Duration>) -> bool {
        let why = match bid {
            None => "it sent no ask (an older naac?)".to_string(),
            Some(Bid::NoBid(why)) => why.clone(),
            Some(Bid::Ask(a)) => {
                let key = naac_net::ed25519_of(&peer);
                if !a.verify() || key != Some(a.ask.provider) {
                    "its ask is not signed by its key".to_string()
                } else if a.ask.job != self.prepared.id {
                    "its ask is for another job".to_string()
                } else if a.ask.price > self.max_price {
                    format!(
                        "it asks {} credits per giga-fuel; the job pays at most {}",
                        a.ask.price, self.max_price
                    )
                } else {
                    let reputation = self
                        .reputation
                        .as_mut()
                        .and_then(|r| r.get(&peer.to_string()).ok())
                        .map(|r| r.score())
                        .unwrap_or(0.5);
                    self.bids.insert(
                        peer,
                        naac_market::Bid {
                            provider: peer,
                            price: a.ask.price,
                            reputation,
                            latency_ms: rtt.map(|d| d.as_millis() as u64).unwrap_or(u64::MAX / 2),
                        },
                    );
                    self.asks.insert(peer, a.clone());
                    self.no_bids.remove(&peer);
                    self.bidding_until
                        .get_or_insert_with(|| Instant::now() + BIDDING_WINDOW);
                    return true;
                }
            }
        };
        tracing::info!("provider {peer} does not bid for this job: {why}");
        self.no_bids.insert(peer, why);
        false
    }

    /// Ends the first bidding window: the bidders may take work now.
    fn close_bidding(&mut self) {
        if self.bidding_closed || self.bidding_until.is_none_or(|t| Instant::now() < t) {
            return;
        }
        self.bidding_closed = true;
        tracing::debug!("bidding closed with {} bids", self.bids.len());
        let peers: Vec<PeerId> = self.bids.keys().copied().collect();
        for p in peers {
            self.apply_status(p);
        }
        self.rerank();
        self.drive();
    }

    /// Whether a paid job is still collecting its first asks.
    fn bidding(&self) -> bool {
        self.payer.is_some() && !self.bidding_closed
    }

    /// Offers work to bidders in auction order: cheapest ask, then reputation, then latency.
    fn rerank(&mut self) {
        let mut bids: Vec<naac_market::Bid<PeerId>> = self.bids.values().cloned().collect();
        naac_market::rank(&mut bids);
        let order: Vec<PeerId> = bids.iter().map(|b| b.provider).collect();
        let now = self.now();
        self.sched.set_preference(&order, now);
    }

    /// The batch going to `provider` is auctioned: its price and the asks that set it.
    fn terms_for(&self, provider: &PeerId) -> Option<Terms> {
        let bids: Vec<naac_market::Bid<PeerId>> = self
            .bids
            .values()
            .filter(|b| self.sched.is_available(&b.provider))
            .cloned()
            .collect();
        let c = naac_market::clear_for(&bids, provider, self.max_price)?;
        Some(Terms {
            price: c.price,
            winner: self.asks.get(provider)?.clone(),
            second: match c.second {
                Some(i) => Some(self.asks.get(&bids[i].provider)?.clone()),
                None => None,
            },
        })
    }

    /// Pays every copy of an accepted task that agreed with the accepted output; returns
    /// the price each paid attempt got.
    fn pay(&mut self, index: u32, accepted: ContentId, copies: &[&Vote]) -> Vec<(u32, Price)> {
        let terms = self.terms.remove(&index).unwrap_or_default();
        let mut paid = Vec::new();
        if self.payer.is_none() {
            return paid;
        }
        let mut due = Vec::new();
        for v in copies {
            if v.digest != accepted {
                continue;
            }
            let Some(t) = terms
                .iter()
                .find(|(a, _)| *a == v.result.attempt)
                .map(|(_, t)| t)
            else {
                continue;
            };
            let Some(record) = self.record_of(&v.result) else {
                continue;
            };
            due.push((
                v.provider,
                naac_ledger::SignedRecord {
                    bytes: record.signing_bytes(),
                    sig: v.result.signature.clone(),
                },
                t.clone(),
            ));
            paid.push((v.result.attempt, t.price));
        }
        if let Some(payer) = self.payer.as_mut() {
            for (provider, record, t) in due {
                payer.settle(provider, record, &t);
            }
        }
        paid
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
        if let Some(o) = owner {
            groups.push(format!("owner:{o}"));
        }
        if let Some(net) = self.peer_ips.get(&peer).and_then(|ip| network_label(*ip)) {
            groups.push(net);
        }
        let now = self.now();
        self.sched.provider_joined(
            peer,
            ProviderInfo {
                slots,
                groups,
                streak,
                paused: self.bidding()
                    || self.hosts.get(&peer).is_some_and(|st| {
                        !crate::explain::rule_out(&self.prepared.job.limits, st).is_empty()
                    }),
            },
            now,
        );
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
        let why = crate::explain::rule_out(&self.prepared.job.limits, st);
        let paused = !why.is_empty() || self.bidding();
        if paused == self.sched.is_available(&peer) && !self.bidding() {
            if paused {
                tracing::info!("provider {peer} cannot take tasks now: {}", why.join("; "));
            } else {
                tracing::info!("provider {peer} takes tasks again");
            }
        }
        let now = self.now();
        self.sched.set_paused(&peer, paused, now);
    }

    /// Why the hosts in view cannot run this job's tasks now.
    fn explanation(&self) -> crate::explain::Explanation {
        let min = self.prepared.job.verify.min_reputation;
        crate::explain::Explanation::of_reasons(self.hosts.iter().map(|(peer, st)| {
            let mut why = crate::explain::rule_out(&self.prepared.job.limits, st);
            if self.banned.contains(peer) {
                why.push(crate::explain::rejected_here(min));
            }
            why
        }))
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
                    self.reopened.insert(task.0);
                }
                Command::Lost { provider, tasks } => {
                    if self.banned.contains(&provider) {
                        // We took its work away; it did not lose it.
                        continue;
                    }
                    self.stats.entry(provider).or_default().lost += tasks.len() as u64;
                    if let Some(rep) = self.reputation.as_mut()
                        && let Err(e) = rep.add(&provider.to_string(), 0, 0, tasks.len() as u64)
                    {
                        tracing::warn!("reputation store: {e:#}");
                    }
                }
                Command::TaskFailed { task, kind } => {
                    let last = self.last_failure.remove(&task.0);
                    self.close_task(task.0);
                    if self.reopened.remove(&task.0) {
                        // Its earlier result did not survive the re-check.
                        self.write_queue.push_back(WriteJob::Remove(task.0));
                    }
                    let message = match last {
                        Some((_, m))
                            if kind != FailureKind::Lost && kind != FailureKind::NoQuorum =>
                        {
                            m
                        }
                        _ if kind == FailureKind::NoQuorum => {
                            "its replicas disagreed and no output reached the quorum".to_string()
                        }
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

    /// Forgets what an open task needed: its input digest, votes and checkpoint.
    fn close_task(&mut self, index: u32) {
        self.input_digests.remove(&index);
        self.votes.remove(&index);
        self.last_failure.remove(&index);
        self.drop_checkpoint(index);
    }

    fn on_verdict(
        &mut self,
        task: TaskId,
        accepted: Option<ContentId>,
        verified: bool,
        votes: Vec<(PeerId, ContentId)>,
    ) {
        let index = task.0;
        let mut mine = self.votes.remove(&index).unwrap_or_default();
        let mut paid = Vec::new();
        match accepted {
            Some(d) => {
                let copies: Vec<&Vote> = mine.iter().collect();
                paid = self.pay(index, d, &copies);
            }
            None => {
                self.terms.remove(&index);
            }
        }
        self.close_task(index);
        if let Some(d) = accepted {
            self.reopened.remove(&index);
            if let Some(pos) = mine.iter().position(|v| v.digest == d) {
                let v = mine.swap_remove(pos);
                self.fuel = self.fuel.saturating_add(v.result.fuel_used);
                self.stats.entry(v.provider).or_default().accepted += 1;
                let job = WriteJob::Write {
                    index,
                    provider: v.provider,
                    digest: v.digest,
                    record: v.record,
                    verified,
                    copies: votes.len() as u32,
                    price: paid
                        .iter()
                        .find(|(a, _)| *a == v.result.attempt)
                        .map(|(_, p)| *p),
                    result: Box::new(v.result),
                };
                self.write_queue.push_back(job);
            }
            // Otherwise the winner is the result already written before a re-check.
        }
        if votes.len() >= 2 {
            let winner = accepted;
            for (p, d) in &votes {
                let agreed = Some(*d) == winner;
                let st = self.stats.entry(*p).or_default();
                if agreed && verified {
                    st.verified += 1;
                } else if winner.is_some() && !agreed {
                    st.rejected += 1;
                }
                if let Some(rep) = self.reputation.as_mut() {
                    let name = p.to_string();
                    let res = if agreed && verified {
                        rep.add(&name, 1, 0, 0)
                    } else if winner.is_some() && !agreed {
                        rep.add(&name, 0, 1, 0)
                    } else {
                        Ok(Default::default())
                    };
                    if let Err(e) = res {
                        tracing::warn!("reputation store: {e:#}");
                    }
                    let streak = if winner.is_some() && !agreed {
                        Some(0)
                    } else {
                        self.sched.streak(p)
                    };
                    if let Some(streak) = streak {
                        rep.set_streak(&name, &self.module_hex, streak);
                    }
                }
            }
            if votes.iter().any(|(_, d)| Some(*d) != winner) {
                let mut sides: Vec<Side> = Vec::new();
                for (p, d) in &votes {
                    let hex = d.to_hex();
                    match sides.iter_mut().find(|s| s.output == hex) {
                        Some(side) => side.providers.push(p.to_string()),
                        None => sides.push(Side {
                            output: hex,
                            providers: vec![p.to_string()],
                        }),
                    }
                }
                tracing::warn!(
                    "task {index}: results disagreed ({} sides){}",
                    sides.len(),
                    if winner.is_some() {
                        "; the quorum's output was kept"
                    } else {
                        ""
                    }
                );
                self.discrepancies.push(Discrepancy {
                    task: index as u64,
                    accepted: winner.map(|d| d.to_hex()),
                    sides,
                });
                for (p, d) in &votes {
                    if winner.is_some() && Some(*d) != winner {
                        self.check_reputation(*p);
                    }
                }
            }
        }
    }

    fn assign(&mut self, provider: PeerId, tasks: Vec<(TaskId, u32)>) {
        if self.payer.is_some() {
            match self.terms_for(&provider) {
                Some(t) => {
                    for (task, attempt) in &tasks {
                        self.terms
                            .entry(task.0)
                            .or_default()
                            .push((*attempt, t.clone()));
                    }
                }
                None => tracing::warn!("no auction price for {provider}: its results go unpaid"),
            }
        }
        let job = &self.prepared.job;
        let mut specs = Vec::with_capacity(tasks.len());
        for (t, attempt) in tasks {
            match task_spec(job, self.prepared.module_id, t.0, attempt, &mut self.blobs) {
                Ok(mut s) => {
                    self.input_digests
                        .entry(t.0)
                        .or_insert_with(|| s.input_digest(&job.name));
                    // A lone replacement run resumes from the lost run's checkpoint; copies
                    // that are compared with each other start fresh, so each stays
                    // independent.
                    // Only after a loss: a run that failed on its own (out of fuel, trap) must
                    // not get a fresh budget by resuming.
                    if let Some(ck) = self.checkpoints.get(&t.0)
                        && self.sched.copies(t) == (1, 0)
                        && !self.last_failure.contains_key(&t.0)
                    {
                        s.resume = Some(*ck);
                        self.resumed_runs.insert((t.0, attempt));
                        self.checkpoint_summary.resumed += 1;
                    }
                    specs.push(s)
                }
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
                checkpoint_interval_ms: job.checkpoint_interval.map(|d| d.as_millis() as u64),
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
        resume: None,
    })
}
