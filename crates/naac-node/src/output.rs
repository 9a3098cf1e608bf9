//! The results directory — a contract users and tests script against:
//!
//! ```text
//! DIR/tasks/<index>/stdout
//! DIR/tasks/<index>/stderr
//! DIR/tasks/<index>/out/...        files the task left in /out
//! DIR/reduce/stdout, stderr, out/  when the job has a reduce step
//! DIR/summary.json
//! DIR/tasks.jsonl                  one line per accepted result: fuel, provider, time,
//!                                  output digest, signature, verification
//! ```
//!
//! Each task directory is assembled under a temporary name and renamed into place, so a
//! reader never sees half a task; `summary.json` is written to a temporary file and renamed.

use anyhow::Context as _;
use naac_proto::OutputFile;
use serde::Serialize;
use std::path::{Component, Path, PathBuf};

/// A task dir's list of the outputs its providers kept (a later stage took them from
/// there); the files are not in `out/`.
pub const HELD_FILE: &str = "held.json";

/// Writes one task's (or the reduce step's) files into `dir` atomically: they are assembled
/// in `staging` (a directory on the same file system) and renamed into place. Staging keeps
/// the work out of `dir`'s parent, which holds one entry per task and gets large. `held`
/// names the outputs its providers kept (listed in `held.json`).
pub fn write_result_dir(
    staging: &Path,
    dir: &Path,
    stdout: &[u8],
    stderr: &[u8],
    outputs: &[OutputFile],
    held: &[naac_proto::HeldOutput],
) -> anyhow::Result<()> {
    let name = dir
        .file_name()
        .context("result dir has a name")?
        .to_string_lossy()
        .into_owned();
    let tmp = staging.join(&name);
    match std::fs::create_dir(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left over from an interrupted write.
            std::fs::remove_dir_all(&tmp).with_context(|| format!("remove {}", tmp.display()))?;
            std::fs::create_dir(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("create {}", tmp.display())),
    }
    std::fs::write(tmp.join("stdout"), stdout).context("write stdout")?;
    std::fs::write(tmp.join("stderr"), stderr).context("write stderr")?;
    if !held.is_empty() {
        // Outputs that stayed with their providers: named, not here.
        let list = serde_json::to_vec_pretty(held).context("encode held.json")?;
        std::fs::write(tmp.join(HELD_FILE), list).context("write held.json")?;
    }
    if !outputs.is_empty() {
        let out = tmp.join("out");
        for f in outputs {
            let rel = safe_relative(&f.name).with_context(|| {
                format!("output file name {:?} is not a safe relative path", f.name)
            })?;
            let p = out.join(rel);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            }
            std::fs::write(&p, &f.data).with_context(|| format!("write {}", p.display()))?;
        }
    }
    if std::fs::rename(&tmp, dir).is_err() {
        // The destination exists (a rerun into the same directory): replace it.
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("replace {}", dir.display()))?;
        }
        std::fs::rename(&tmp, dir)
            .with_context(|| format!("move results into {}", dir.display()))?;
    }
    Ok(())
}

/// A path from a peer, accepted only if it stays inside the directory it is joined to.
pub fn safe_relative(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if name.is_empty() || name.len() > 4096 || name.contains(['\\', '\0']) {
        return None;
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Writes `value` as pretty JSON to `path` via a temporary file and a rename.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let dir = path.parent().context("json path has a parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("create a temporary file in {}", dir.display()))?;
    serde_json::to_writer_pretty(&mut tmp, value).context("encode json")?;
    std::io::Write::write_all(&mut tmp, b"\n").context("write json")?;
    // On disk before it replaces the old file, and the rename on disk before we go on.
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("sync {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("write {}", path.display()))?;
    sync_dir(dir)
}

/// Syncs a directory, so the names created or renamed in it are on disk.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync {}", dir.display()))
}

/// Syncs the whole filesystem `dir` is on: one call puts every result written so far on
/// disk, however many files they are.
pub fn sync_filesystem(dir: &Path) -> anyhow::Result<()> {
    let d = std::fs::File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    rustix::fs::syncfs(&d).with_context(|| format!("sync the filesystem of {}", dir.display()))
}

/// One line of `tasks.jsonl`: what each accepted result cost and where it ran.
#[derive(Clone, Debug, Serialize)]
pub struct TaskRecord<'a> {
    pub task: u64,
    pub attempt: u32,
    /// The provider whose result was accepted.
    pub provider: &'a str,
    /// Fuel the task used: the billing unit.
    pub fuel: u64,
    /// Run time on the provider.
    pub wall_ms: f64,
    pub stdout_bytes: u64,
    /// Files the task left in `/out`.
    pub outputs: u64,
    /// BLAKE3 output digest (what replicas compare), hex.
    pub output: String,
    /// Content id of the signed result record, hex.
    pub record: String,
    /// The provider's ed25519 signature over the record, hex.
    pub signature: String,
    /// At least two providers returned this exact output.
    pub verified: bool,
    /// Results compared for this task (1 when accepted on one provider's word).
    pub copies: u32,
    /// The run resumed from a checkpoint.
    pub resumed: bool,
    /// The auction price the accepted result was paid at (credits per giga-fuel), when the
    /// job was paid; the payment is this times `fuel`, rounded up to the micro-credit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Its stage, in a job of stages (`task` is then its index within the stage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'a str>,
    /// When the accepted run was assigned and when its result was accepted, in
    /// milliseconds since the run started.
    pub assigned_ms: u64,
    pub accepted_ms: u64,
}

/// Writes `tasks.jsonl` in the staging dir, then renames it into place.
pub struct TaskIndexWriter {
    tmp: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl TaskIndexWriter {
    /// `None` (with the reason logged) when the file cannot be created; results still land.
    pub fn create(staging: &Path) -> Option<Self> {
        let tmp = staging.join("tasks.jsonl");
        match std::fs::File::create(&tmp) {
            Ok(f) => Some(Self {
                tmp,
                out: std::io::BufWriter::new(f),
            }),
            Err(e) => {
                tracing::error!("failed to create {}: {e}", tmp.display());
                None
            }
        }
    }

    /// Copies the lines of an earlier run's index (a resumed run keeps its results).
    pub fn carry(&mut self, earlier: &Path) {
        use std::io::Write;
        let Ok(text) = std::fs::read(earlier) else {
            return;
        };
        if let Err(e) = self.out.write_all(&text) {
            tracing::error!("failed to write {}: {e}", self.tmp.display());
        }
    }

    pub fn record(&mut self, r: &TaskRecord<'_>) {
        use std::io::Write;
        let written = serde_json::to_writer(&mut self.out, r)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = written {
            tracing::error!("failed to write {}: {e}", self.tmp.display());
        }
    }

    pub fn finish(self, target: &Path) -> anyhow::Result<()> {
        let Self { tmp, out } = self;
        let f = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("flush {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("sync {}", tmp.display()))?;
        std::fs::rename(&tmp, target).with_context(|| format!("move {}", target.display()))?;
        match target.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub job_id: String,
    pub name: String,
    pub tasks: TaskCounts,
    pub wall_seconds: f64,
    /// Seconds from submission until the first provider joined (pool start-up, discovery).
    pub first_provider_seconds: Option<f64>,
    pub fuel_total: u64,
    /// Fuel of every result received, copies and rejected ones included.
    pub fuel_spent: u64,
    pub providers: Vec<ProviderTasks>,
    pub verification: VerificationSummary,
    /// Every task whose results disagreed, with the providers on each side.
    pub discrepancies: Vec<Discrepancy>,
    pub checkpoints: CheckpointSummary,
    pub failures: Vec<Failure>,
    /// Where the results are.
    pub out_dir: PathBuf,
    /// The run was stopped (Ctrl-C) before every task finished.
    pub interrupted: bool,
    /// The reduce step's outcome, when the job has one and it ran.
    pub reduce: Option<ReduceSummary>,
    /// What the job cost, when a bank kept the books (amounts in credits, as exact decimal
    /// strings).
    pub cost: Option<CostSummary>,
    /// What this requester handed providers itself (modules, inputs, checkpoints), and how
    /// many distinct inputs they read from storage hosts instead.
    pub served: ServedSummary,
    /// With `[output] store = true`: where the results are kept in the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<OutputStore>,
    /// A job of stages: each stage's counts, by name.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stages: std::collections::BTreeMap<String, StageSummary>,
    /// Accepted tasks run again because every copy of an output a later stage takes was
    /// lost with its providers (lineage).
    #[serde(skip_serializing_if = "is_zero")]
    pub recomputed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The results kept in the store: `naac://<id>/<task>/<file>` is task `<task>`'s file (its
/// `stdout`, `stderr`, `result.json`, and its outputs under `out/`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutputStore {
    /// `naac://<id>`, when the put succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub files: u64,
    pub bytes: u64,
    /// Why the results are not in the store, when they are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Blobs the requester served.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServedSummary {
    pub blobs: u64,
    pub bytes: u64,
    /// Distinct `naac://` inputs, which providers read from storage hosts.
    pub stored_inputs: u64,
}

/// The job's bill.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CostSummary {
    /// The bank's account key (hex).
    pub bank: String,
    /// Most credits per giga-fuel the job would pay.
    pub max_price: String,
    /// What the escrow held at the start.
    pub escrow: String,
    /// Paid to providers for verified results.
    pub paid: String,
    /// Returned to the payer when the job ended.
    pub refunded: String,
    /// Still held for providers' committed orders the run neither paid nor rejected (it
    /// paid nothing, or could not reach the bank): they may claim from it until
    /// `returns_at_ms` (Unix milliseconds), when the rest returns to the payer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_for_claims: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returns_at_ms: Option<u64>,
    /// Results paid.
    pub settlements: u64,
    /// Payments the bank refused, and why (the last reason).
    pub refused: u64,
    pub refusal: Option<String>,
    /// Payments the bank could not be reached to confirm.
    pub unconfirmed: u64,
    /// The escrow is still open (payments unconfirmed): the next run into the same
    /// directory sends them again and refunds the rest.
    pub open: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TaskCounts {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Tasks that needed more than one attempt.
    pub retried: u64,
    /// Tasks whose results an earlier run of the job left (a job resumed after its node
    /// restarted): counted in `succeeded`, not run again.
    pub kept: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProviderTasks {
    pub peer_id: String,
    /// Accepted results that came from this provider.
    pub tasks: u64,
    /// Its results that agreed with a quorum.
    pub verified: u64,
    /// Its results that lost a vote, failed the verifier or carried a bad signature.
    pub rejected: u64,
    /// Its runs that were lost.
    pub lost: u64,
    /// Its reputation score after this job (see `naac reputation`).
    pub reputation: Option<f64>,
    /// Its ask for this job (credits per giga-fuel), when the job was paid.
    pub ask: Option<String>,
    /// What it was paid for this job (credits), when the job was paid.
    pub earned: Option<String>,
    /// How its results arrived: over a direct connection or through a relay.
    pub arrived: Arrived,
    /// One of the run's own local workers (`naac run --local`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
}

/// Results received from one provider, by the path they took.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Arrived {
    pub direct: u64,
    pub relayed: u64,
}

/// The job's verification level and what it cost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerificationSummary {
    pub replicas: u32,
    pub quorum: u32,
    pub adaptive: bool,
    pub spot_check: f64,
    pub verifier: bool,
    /// Runs started, copies and retries included.
    pub runs: u64,
    /// Runs per accepted or failed task.
    pub overhead: f64,
    /// Tasks accepted on the agreement of two or more providers.
    pub verified: u64,
    pub disagreements: u64,
    /// Results accepted on one provider's word and checked again after it was caught.
    pub rechecked: u64,
    /// Speculative copies started for stragglers.
    pub speculative: u64,
    /// Results refused: bad signature or rejected by the verifier.
    pub rejected_results: u64,
}

/// One disagreement: which output won (if any) and who returned what.
#[derive(Clone, Debug, Serialize)]
pub struct Discrepancy {
    pub task: u64,
    /// The accepted output digest; `null` when no quorum formed.
    pub accepted: Option<String>,
    pub sides: Vec<Side>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Side {
    pub output: String,
    pub providers: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckpointSummary {
    /// Checkpoints received from providers.
    pub received: u64,
    /// Runs started from a checkpoint (after their provider was lost).
    pub resumed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The task's index (within its stage, in a job of stages).
    pub task: u64,
    /// Its stage, in a job of stages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub kind: String,
    pub message: String,
}

/// One stage of a job of stages, in `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    pub tasks: TaskCounts,
    /// Content id of the stage's module, hex.
    pub module: String,
    /// The id its first task has among all the job's tasks (in logs and `--explain`).
    pub first_task: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReduceSummary {
    pub outcome: String,
    pub message: String,
    pub fuel: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_output_names_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "./"] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
        assert_eq!(safe_relative("a/b.png"), Some(PathBuf::from("a/b.png")));
    }

    #[test]
    fn result_dirs_are_replaced_whole() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("tasks/3");
        let staging = d.path().join(".staging");
        std::fs::create_dir_all(d.path().join("tasks")).expect("mkdir");
        std::fs::create_dir_all(&staging).expect("mkdir");
        let out = vec![OutputFile {
            name: "img/a.png".into(),
            data: vec![1, 2],
        }];
        write_result_dir(&staging, &dir, b"out", b"err", &out, &[]).expect("write");
        assert_eq!(std::fs::read(dir.join("stdout")).expect("read"), b"out");
        assert_eq!(
            std::fs::read(dir.join("out/img/a.png")).expect("read"),
            [1, 2]
        );
        write_result_dir(&staging, &dir, b"second", b"", &[], &[]).expect("rewrite");
        assert_eq!(std::fs::read(dir.join("stdout")).expect("read"), b"second");
        assert!(!dir.join("out").exists());
        let evil = vec![OutputFile {
            name: "../../escape".into(),
            data: vec![],
        }];
        assert!(write_result_dir(&staging, &dir, b"", b"", &evil, &[]).is_err());
        assert!(!d.path().join("escape").exists());
    }
}
