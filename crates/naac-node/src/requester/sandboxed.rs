//! The requester's own sandbox runs, off the event loop: the job's verifier on a claimed
//! result (the session runs these concurrently, within a budget per provider, so one
//! provider's slow verifications never hold up the others), and the reduce step over every
//! task's stdout once all succeeded.

use super::prepare::{Blobs, PreparedJob, task_spec};
use crate::output::{self, ReduceSummary};
use anyhow::Context as _;
use naac_proto::TaskResult;
use naac_sandbox::{Prepared, Sandbox, TaskRun};
use naac_types::{ContentId, Outcome};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Longest a verifier may run on one result (the job's timeout if shorter): verifiers are
/// meant to be cheap, and one runs on the requester for every result.
pub const VERIFIER_TIMEOUT: Duration = Duration::from_secs(30);

/// The verifier's run for a claimed result of task `index` (it reads the task's input files,
/// so it is made on the caller's thread; [`verify`] then runs it anywhere). The verifier gets
/// `verifier_args` (default: the task's arguments), the task's input files, the claimed
/// stdout on its stdin, and each claimed output file at `/in/out.<name>` (`/` in names
/// becomes `_`).
pub fn verifier_run(
    prepared: &PreparedJob,
    blobs: &mut Blobs,
    index: u32,
    result: &TaskResult,
) -> anyhow::Result<TaskRun> {
    let spec = task_spec(&prepared.job, prepared.module_id, index, 0, blobs)?;
    let mut inputs = Vec::with_capacity(spec.inputs.len() + result.outputs.len());
    for (name, id) in &spec.inputs {
        let bytes = blobs
            .get(id)
            .context("an input in the store: the requester's verifier cannot read it")?
            .clone();
        inputs.push((name.clone(), bytes));
    }
    for o in &result.outputs {
        inputs.push((
            format!("out.{}", o.name.replace('/', "_")),
            Arc::new(o.data.clone()),
        ));
    }
    let limits = prepared.job.limits;
    Ok(TaskRun {
        argv0: prepared.job.name.clone(),
        env: spec.env.clone(),
        args: prepared.job.verifier_args(index as u64),
        stdin: result.stdout.clone(),
        inputs,
        limits: naac_types::Limits {
            timeout_ms: limits.timeout_ms.min(VERIFIER_TIMEOUT.as_millis() as u64),
            ..limits
        },
        seed: spec.seed.0,
        ..TaskRun::default()
    })
}

/// Runs the job's verifier (a [`verifier_run`]) on a blocking thread: `Ok(None)` accepts,
/// `Ok(Some(why))` rejects, `Err` is the requester's own failure (not the provider's).
pub async fn verify(
    sandbox: Arc<Sandbox>,
    verifier: Prepared,
    run: TaskRun,
) -> anyhow::Result<Option<String>> {
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

/// Runs the reduce step on every task's stdout, in task order, and writes `DIR/reduce/`.
/// Returns its summary and, when it succeeded, its stdout.
pub async fn reduce(
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
        env: Vec::new(),
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
        &[],
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
