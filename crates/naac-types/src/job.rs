//! The job file: a WebAssembly module, its arguments, a parameter sweep and limits.
//!
//! ```toml
//! name = "pi"                         # optional; default: the file's stem
//! module = "pi.wasm"                  # path relative to the job file
//! args = ["{seed}", "{samples}"]      # argv after argv[0]; {key} from the sweep
//! inputs = ["data/{seed}.bin"]        # optional: files placed in /in (templated too);
//!                                     # "naac://<id>/<path>" names a file of stored data
//! stdin = "data/{seed}.txt"           # optional: file fed to the task's stdin
//! env = { MODE = "fast", SEED = "{seed}" }  # optional: the guest's environment (templated)
//! retries = 3                         # optional; per task
//! checkpoint_interval = "10s"         # optional: guests may checkpoint this often
//! straggler_factor = 3.0              # optional: speculate past 3x the median; 0 = off
//! [output]
//! store = true                        # optional: keep the results in the store too
//! [requirements]                      # optional: what a host must be to get tasks
//! arch = "x86_64"
//! min_score = 10                      # compute score, giga-fuel/s per core
//! gpus = 1
//! labels = ["zone=eu"]                # every one among the host's policy labels
//! max_latency_ms = 50                 # round trip from the requester, measured
//!
//! [sweep]                             # one task per combination, cartesian product
//! seed = { from = 0, to = 64 }        # integers, `to` exclusive, optional `step`
//! samples = [10000000]                # or an explicit list of values (ints or strings)
//!
//! [limits]
//! fuel = 50_000_000_000
//! memory = "256MiB"
//! timeout = "5m"
//!
//! [verify]                            # optional: see naac_types::verify
//! replicas = 2
//! quorum = 2
//!
//! [budget]                            # optional: what the user pays (when a bank is used)
//! max_price = 2.5                     # most credits per giga-fuel (default 1)
//! max_cost = 1000                     # refuse to start if the escrow would exceed this
//!
//! [reduce]                            # optional: runs once after every task succeeded
//! module = "pi.wasm"                  # default: the job's module
//! args = ["reduce"]                   # stdin = every task's stdout, in task order
//! ```
//!
//! Tasks are numbered from 0 in the order of the product, keys in file order, the last key
//! varying fastest. Task `i` is computed on demand ([`Job::task`]), so a sweep of millions
//! costs no memory.

pub mod pipeline;
mod reader;
mod requirements;
mod sweep;
mod verify_table;

pub use sweep::{SweepAxis, SweepValue, Template};

use crate::diag::{FileError, FileKind, file_error};
use crate::verify::VerifyPolicy;
use crate::{ContentId, Limits};
use std::path::{Path, PathBuf};

/// Most tasks one job may expand to.
pub const MAX_TASKS: u64 = 10_000_000;
/// Largest module accepted, in bytes.
pub const MAX_MODULE_BYTES: u64 = 256 << 20;
/// Most environment variables a job gives its tasks, and the longest value.
pub const MAX_ENV: usize = 64;
pub const MAX_ENV_VALUE: usize = 4096;
/// Default number of retries per task.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default straggler factor: a task running 3x longer than the median gets a speculative copy.
pub const DEFAULT_STRAGGLER_FACTOR: f64 = 3.0;
/// Shortest checkpoint interval a job may ask for.
pub const MIN_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A job file that could not be used, with where and what to do about it.
pub type JobError = FileError;

/// What a host must be to get a job's tasks (`[requirements]`); empty: any host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// The CPU architecture, e.g. "x86_64" or "aarch64".
    pub arch: Option<String>,
    /// The least compute score (giga-fuel per second per core).
    pub min_score: Option<f64>,
    /// The least number of GPUs.
    pub gpus: u32,
    /// Labels the host's owner gave it (`labels` in `policy.toml`), every one.
    pub labels: Vec<String>,
    /// The longest round trip from the requester to the host, in milliseconds.
    pub max_latency_ms: Option<u64>,
}

/// The reduce step: runs once, after every task succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reduce {
    /// Absolute or job-relative path of the module.
    pub module: PathBuf,
    pub args: Vec<String>,
}

/// A validated job file.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job file this came from.
    pub file: PathBuf,
    pub name: String,
    /// Path of the module (resolved against the job file's directory).
    pub module: PathBuf,
    pub retries: u32,
    pub limits: Limits,
    pub reduce: Option<Reduce>,
    pub verify: VerifyPolicy,
    /// What the user will pay (`[budget]`).
    pub budget: Budget,
    /// Guests may checkpoint at most this often; `None` disables checkpoints.
    pub checkpoint_interval: Option<std::time::Duration>,
    /// A task running longer than this many times the median task gets a speculative copy
    /// on an idle provider; 0 turns speculation off.
    pub straggler_factor: f64,
    /// `[output] store = true`: the accepted results are kept in the store too, under one
    /// `naac://` id that `summary.json` names.
    pub output_store: bool,
    /// `[requirements]`: what a host must be to get its tasks.
    pub requirements: Requirements,
    /// Sweep keys in file order.
    pub sweep: Vec<(String, SweepAxis)>,
    args: Vec<Template>,
    inputs: Vec<Template>,
    stdin: Option<Template>,
    /// The guest's environment, templated like `args`.
    env: Vec<(String, Template)>,
    /// The verifier's argv after argv[0]; `None`: the task's own args.
    verifier_args: Option<Vec<Template>>,
    task_count: u64,
}

/// Reads a job file of one stage or of several and lists every file it names (each
/// stage's, for a job of stages; see [`Job::files`]), with the job (for a job of stages,
/// the whole pipeline as one: [`pipeline::Pipeline::as_job`]).
pub fn load_with_files(path: &Path) -> Result<(Job, Vec<PathBuf>), JobError> {
    let src = std::fs::read_to_string(path).unwrap_or_default();
    if !pipeline::has_stages(&src) {
        let job = Job::load(path)?;
        let files = job.files()?;
        return Ok((job, files));
    }
    let p = pipeline::Pipeline::load(path)?;
    let mut files: Vec<PathBuf> = Vec::new();
    for s in &p.stages {
        for f in s.job.files()? {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    Ok((p.as_job(), files))
}

/// How an input or stdin names a file of stored data: `naac://<id>/<path>`.
pub const STORE_SCHEME: &str = "naac://";

/// The `naac://…` URL an input path stands for, if it names stored data.
pub fn store_url(p: &Path) -> Option<&str> {
    p.to_str().filter(|s| s.starts_with(STORE_SCHEME))
}

/// The concrete parameters of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskParams {
    pub index: u64,
    /// argv after argv[0].
    pub args: Vec<String>,
    /// Files to place in `/in`, as paths on this machine (resolved against the job file), or
    /// files of stored data as their `naac://` URL ([`store_url`]).
    pub inputs: Vec<PathBuf>,
    /// File whose bytes are the task's stdin.
    pub stdin: Option<PathBuf>,
    /// The guest's environment (`env` in the job file, filled from the sweep).
    pub env: Vec<(String, String)>,
}

/// The job's `[budget]`: where a bank keeps the books, the most the user pays per unit of
/// work and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most credits per giga-fuel any provider is paid (the auction's reserve price).
    pub max_price: crate::Price,
    /// Refuse to start when the job could cost more than this (its escrow).
    pub max_cost: Option<crate::Credits>,
}

impl Budget {
    /// 1 credit per giga-fuel.
    pub const DEFAULT_MAX_PRICE: crate::Price = crate::Price(crate::money::MICROS);
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_price: Self::DEFAULT_MAX_PRICE,
            max_cost: None,
        }
    }
}

impl Job {
    /// The job names input or stdin files (so each task's must be checked).
    pub fn has_files(&self) -> bool {
        !self.inputs.is_empty() || self.stdin.is_some()
    }

    /// Every file the job names, as paths on this machine, each once: the module, the reduce
    /// module and verifier, and each task's inputs and stdin (none of them in the store). Fails
    /// on the first input file that does not exist.
    pub fn files(&self) -> Result<Vec<PathBuf>, JobError> {
        let mut all: Vec<PathBuf> = vec![self.module.clone()];
        all.extend(self.reduce.as_ref().map(|r| r.module.clone()));
        all.extend(self.verify.verifier.clone());
        all.retain(|p| store_url(p).is_none());
        let mut seen: std::collections::HashSet<PathBuf> = all.iter().cloned().collect();
        for i in 0..self.task_count {
            if i > 0 && !self.has_files() {
                break;
            }
            let t = self.task(i)?;
            for p in t.inputs.into_iter().chain(t.stdin) {
                if store_url(&p).is_none() && seen.insert(p.clone()) {
                    all.push(p);
                }
            }
        }
        Ok(all)
    }

    /// The modules the job names that are stored data (`naac://…`): the module, the reduce
    /// module and the verifier.
    pub fn stored_modules(&self) -> Vec<&str> {
        let mut all = vec![self.module.as_path()];
        all.extend(self.reduce.as_ref().map(|r| r.module.as_path()));
        all.extend(self.verify.verifier.as_deref());
        all.into_iter().filter_map(store_url).collect()
    }

    /// The job file's directory, against which its paths are resolved.
    pub fn base_dir(&self) -> PathBuf {
        self.dir()
    }

    /// Number of tasks the sweep expands to.
    pub fn task_count(&self) -> u64 {
        self.task_count
    }

    /// The sweep values of task `index` (mixed radix, last key fastest).
    pub fn sweep_values(&self, index: u64) -> Vec<SweepValue> {
        let mut values = vec![SweepValue::Int(0); self.sweep.len()];
        let mut rest = index;
        for (i, (_, axis)) in self.sweep.iter().enumerate().rev() {
            let n = axis.len();
            values[i] = axis.get(rest % n);
            rest /= n;
        }
        values
    }

    /// Builds task `index`; fails when an input file it names does not exist.
    pub fn task(&self, index: u64) -> Result<TaskParams, JobError> {
        assert!(index < self.task_count, "task index out of range");
        let values = self.sweep_values(index);
        let dir = self.dir();
        let resolve = |field: String, t: &Template| -> Result<PathBuf, JobError> {
            let rel = t.render(&values);
            // Stored data (`naac://<id>/<path>`): providers fetch it from storage hosts.
            if rel.starts_with(STORE_SCHEME) {
                return Ok(PathBuf::from(rel));
            }
            let p = dir.join(&rel);
            if !p.is_file() {
                return Err(FileError {
                    field: Some(field),
                    ..file_error(
                        FileKind::Job,
                        &self.file,
                        format!("task {index}: input file {} does not exist", p.display()),
                        Some("paths are relative to the job file's directory".into()),
                    )
                });
            }
            Ok(p)
        };
        let inputs = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, t)| resolve(format!("inputs[{i}]"), t))
            .collect::<Result<Vec<_>, _>>()?;
        let stdin = self
            .stdin
            .as_ref()
            .map(|t| resolve("stdin".into(), t))
            .transpose()?;
        Ok(TaskParams {
            index,
            args: self.args.iter().map(|t| t.render(&values)).collect(),
            env: self
                .env
                .iter()
                .map(|(k, t)| (k.clone(), t.render(&values)))
                .collect(),
            inputs,
            stdin,
        })
    }

    /// The verifier's arguments for task `index`: `verify.verifier_args` filled from the
    /// sweep, or else the task's own arguments.
    pub fn verifier_args(&self, index: u64) -> Vec<String> {
        let values = self.sweep_values(index);
        match &self.verifier_args {
            Some(ts) => ts.iter().map(|t| t.render(&values)).collect(),
            None => self.args.iter().map(|t| t.render(&values)).collect(),
        }
    }

    fn dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// A hash of everything that defines the job's work (used to derive ids).
    pub fn fingerprint(&self, module_id: &ContentId) -> ContentId {
        let mut h = blake3::Hasher::new_derive_key("naac job fingerprint v1");
        h.update(&module_id.0);
        h.update(self.name.as_bytes());
        h.update(&self.task_count.to_le_bytes());
        for t in &self.args {
            h.update(format!("{t:?}").as_bytes());
        }
        ContentId(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests;
