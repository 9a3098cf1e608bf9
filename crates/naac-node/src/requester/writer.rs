//! The results writer: accepted results go to a thread of their own, in verdict order, one
//! task directory each (assembled in `DIR/.staging/` and renamed into `DIR/tasks/`), plus a
//! line each in `tasks.jsonl`. A result that cannot be written (disk full, ...) is reported,
//! not fatal: the others still land. Written results are synced to disk at least every
//! [`SYNC_EVERY`] while results arrive, and all of them before `tasks.jsonl` is put in place
//! (which is synced too), so `summary.json`, written after, never names a result a crash
//! could still lose.

use crate::output;
use anyhow::Context as _;
use naac_net::PeerId;
use naac_proto::TaskResult;
use naac_types::{ContentId, Price};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use tokio::sync::mpsc;

/// Most time a written result may wait before it is synced to disk.
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// One accepted copy of a task, to be written.
#[derive(Debug)]
pub struct Write {
    pub index: u32,
    pub provider: PeerId,
    pub result: Box<TaskResult>,
    pub digest: ContentId,
    pub record: ContentId,
    pub verified: bool,
    pub copies: u32,
    pub price: Option<Price>,
    /// When the accepted run was assigned, and when it was accepted (run clock, ms).
    pub assigned_ms: u64,
    pub accepted_ms: u64,
}

/// What the writer thread does next.
#[derive(Debug)]
pub enum WriteJob {
    Write(Write),
    /// A result written earlier was voided by a re-check.
    Remove(u32),
}

/// The handle of the writer thread: writes queue here after each event and are handed over
/// in order by [`Writer::flush`].
pub struct Writer {
    tx: mpsc::Sender<WriteJob>,
    queue: VecDeque<WriteJob>,
    thread: tokio::task::JoinHandle<Vec<(u32, String)>>,
}

impl Writer {
    /// Creates `DIR/tasks` and `DIR/.staging` and starts the thread (the caller removes the
    /// staging dir once the reduce step, which assembles there too, is done).
    ///
    /// `stages` places the results of a job of stages (each stage's first task id and
    /// name; see [`super::stages::task_dir`]); empty for a job of one.
    ///
    /// `carry`: the run keeps results an earlier run left, so `tasks.jsonl` keeps its lines.
    pub fn start(out_dir: &Path, stages: Vec<(u32, String)>, carry: bool) -> anyhow::Result<Self> {
        let tasks_dir = out_dir.join(if stages.is_empty() { "tasks" } else { "stages" });
        std::fs::create_dir_all(&tasks_dir)
            .with_context(|| format!("create output dir {}", tasks_dir.display()))?;
        for (_, name) in &stages {
            let dir = tasks_dir.join(name).join("tasks");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("create output dir {}", dir.display()))?;
        }
        let staging = out_dir.join(".staging");
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("create output dir {}", staging.display()))?;
        let (tx, rx) = mpsc::channel::<WriteJob>(1024);
        let root = out_dir.to_path_buf();
        let thread =
            tokio::task::spawn_blocking(move || write_results(&staging, &root, &stages, carry, rx));
        Ok(Self {
            tx,
            queue: VecDeque::new(),
            thread,
        })
    }

    /// Queues a write; nothing reaches the thread before [`Writer::flush`].
    pub fn push(&mut self, job: WriteJob) {
        self.queue.push_back(job);
    }

    /// Hands queued writes to the thread, in order; waits when it is behind, which holds
    /// back the caller's loop (and so the providers) instead of piling results up in memory.
    pub async fn flush(&mut self) {
        while let Some(job) = self.queue.pop_front() {
            if self.tx.send(job).await.is_err() {
                tracing::error!("the result writer stopped");
                self.queue.clear();
            }
        }
    }

    /// Writes what is queued, waits for the thread to finish and returns the results that
    /// could not be written, with why.
    pub async fn finish(mut self) -> anyhow::Result<Vec<(u32, String)>> {
        self.flush().await;
        let Self { tx, thread, .. } = self;
        drop(tx);
        thread.await.context("result writer panicked")
    }
}

fn write_results(
    staging: &Path,
    root: &Path,
    stages: &[(u32, String)],
    carry: bool,
    mut rx: mpsc::Receiver<WriteJob>,
) -> Vec<(u32, String)> {
    let mut errors = Vec::new();
    // One line per accepted result, in arrival order, renamed into place at the end.
    let mut index = output::TaskIndexWriter::create(staging);
    if let Some(ix) = index.as_mut().filter(|_| carry) {
        ix.carry(&root.join("tasks.jsonl"));
    }
    // Peer ids in text form, made once per provider (base58 is not free).
    let mut names: HashMap<PeerId, String> = HashMap::new();
    let mut synced = std::time::Instant::now();
    let mut unsynced = false;
    let sync = |why: &str| {
        if let Err(e) = output::sync_filesystem(root) {
            tracing::error!("results could not be synced to disk ({why}): {e:#}");
        }
    };
    while let Some(w) = rx.blocking_recv() {
        if unsynced && synced.elapsed() >= SYNC_EVERY {
            sync("while running");
            synced = std::time::Instant::now();
            unsynced = false;
        }
        let w = match w {
            WriteJob::Remove(i) => {
                let dir = root.join(super::stages::task_dir(stages, i));
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::error!("failed to remove voided result {}: {e}", dir.display())
                    }
                }
                continue;
            }
            WriteJob::Write(w) => w,
        };
        let index_no = w.index;
        let result = &w.result;
        let dir = root.join(super::stages::task_dir(stages, index_no));
        let (stage, local) = match stages.partition_point(|(b, _)| *b <= index_no) {
            0 => (None, index_no),
            n => (Some(stages[n - 1].1.as_str()), index_no - stages[n - 1].0),
        };
        if let Err(e) = output::write_result_dir(
            staging,
            &dir,
            &result.stdout,
            &result.stderr,
            &result.outputs,
            &result.held,
        ) {
            tracing::error!("failed to write the results of task {index_no}: {e:#}");
            errors.push((index_no, format!("{e:#}")));
            continue;
        }
        unsynced = true;
        if let Some(ix) = index.as_mut() {
            ix.record(&output::TaskRecord {
                task: local as u64,
                attempt: result.attempt,
                provider: names
                    .entry(w.provider)
                    .or_insert_with(|| w.provider.to_string()),
                fuel: result.fuel_used,
                wall_ms: result.wall_us as f64 / 1000.0,
                stdout_bytes: result.stdout.len() as u64,
                outputs: result.outputs.len() as u64,
                output: w.digest.to_hex(),
                record: w.record.to_hex(),
                signature: naac_types::hex(&result.signature),
                verified: w.verified,
                copies: w.copies,
                resumed: result.resumed.is_some(),
                price: w.price.map(|p| p.to_string()),
                stage,
                assigned_ms: w.assigned_ms,
                accepted_ms: w.accepted_ms,
            });
        }
    }
    // Every result on disk before the index that lists them is.
    sync("at the end");
    if let Some(ix) = index {
        let target = root.join("tasks.jsonl");
        if let Err(e) = ix.finish(&target) {
            tracing::error!("failed to write {}: {e:#}", target.display());
        }
    }
    errors
}
