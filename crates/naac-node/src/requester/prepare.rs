//! What a run needs before it starts, checked up front: the job file, its modules compiled,
//! every task's input files; and the wire form of a task ([`task_spec`]) with the blobs it
//! names registered for providers to fetch.

use anyhow::Context as _;
use naac_proto::TaskSpec;
use naac_sandbox::{Prepared, Sandbox};
use naac_types::{ContentId, Job, JobId};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

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

/// Content the requester serves to providers (modules, inputs), by content id.
pub type Blobs = HashMap<ContentId, Arc<Vec<u8>>>;

/// A job that passed every check and is ready to run.
pub struct PreparedJob {
    pub job: Job,
    pub id: JobId,
    pub(crate) module_id: ContentId,
    pub(crate) module_bytes: Arc<Vec<u8>>,
    pub(crate) reduce: Option<(Prepared, Vec<String>)>,
    pub(crate) verifier: Option<Prepared>,
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

/// Builds the wire form of one task, registering its input blobs for providers to fetch.
pub fn task_spec(
    job: &Job,
    module: ContentId,
    index: u32,
    attempt: u32,
    blobs: &mut Blobs,
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
