//! Jobs of stages (`[[stage]]`) on the requester: each stage prepared as a job of its own,
//! task ids numbered across stages for the scheduler's DAG, the accepted outputs that later
//! stages take as input (served to providers as blobs), where each task's results go
//! (`DIR/stages/<name>/tasks/<index>/`) and the per-stage counts for `summary.json`.
//!
//! A `for_each` task gets its upstream task's stdout as stdin and that task's `/out` files
//! in `/in/from/<stage>/`; a `gather` task gets every upstream stdout in task order, and
//! their files in `/in/from/<stage>/<index>/`. No IO but reading kept results back.

use super::prepare::{Blobs, Fed, PreparedJob, RunError, StoredModules};
use naac_proto::TaskSpec;
use naac_sandbox::Sandbox;
use naac_sched::{Scheduler, StageSpec};
use naac_types::ContentId;
use naac_types::job::pipeline::{Pipeline, StageInput};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a stage's tasks take their input from, by stage position in task order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Own,
    Each(usize),
    Gather(usize),
}

/// One stage, ready to run.
#[derive(Debug)]
pub struct PreparedStage {
    pub name: String,
    pub job: naac_types::Job,
    pub module_id: ContentId,
    pub module_bytes: Arc<Vec<u8>>,
    /// Its first task id and its number of tasks.
    pub base: u32,
    pub width: u32,
    pub feed: Feed,
    /// Stages (positions) all of whose tasks come first, data or not.
    pub after: Vec<usize>,
}

/// Reads a job file of stages and prepares every stage: modules compiled, input files
/// checked. A stage may not have a verifier, a `[reduce]` or `[output] store` yet.
pub(super) fn prepare(
    file: &Path,
    sandbox: &Sandbox,
    stored: &StoredModules,
) -> Result<PreparedJob, RunError> {
    let invalid = |e: anyhow::Error| RunError::Invalid(e);
    let p = Pipeline::load(file).map_err(|e| invalid(super::prepare::job_error(e)))?;
    let order = p.task_order();
    let pos = |i: usize| order.iter().position(|&o| o == i).unwrap_or(0);
    let mut stages: Vec<PreparedStage> = Vec::with_capacity(order.len());
    let mut base: u32 = 0;
    for &i in &order {
        let st = &p.stages[i];
        let job = &st.job;
        let unsupported = if job.verify.verifier.is_some() {
            Some("[verify] verifier")
        } else if job.reduce.is_some() {
            Some("[reduce]")
        } else if job.output_store {
            Some("[output] store")
        } else {
            None
        };
        if let Some(what) = unsupported {
            return Err(invalid(anyhow::anyhow!(
                "{}: stage \"{}\" has {what}, which stages do not support yet\nhint: add a stage that gathers the results instead",
                file.display(),
                st.name
            )));
        }
        let (module_id, bytes, _) = super::prepare::load_module(&job.module, sandbox, stored)?;
        super::prepare::check_inputs(job)?;
        let width = u32::try_from(job.task_count())
            .map_err(|_| invalid(anyhow::anyhow!("stage \"{}\" has too many tasks", st.name)))?;
        let feed = match st.input {
            StageInput::Own => Feed::Own,
            StageInput::ForEach(u) => Feed::Each(pos(u)),
            StageInput::Gather(u) => Feed::Gather(pos(u)),
        };
        stages.push(PreparedStage {
            name: st.name.clone(),
            job: job.clone(),
            module_id,
            module_bytes: Arc::new(bytes),
            base,
            width,
            feed,
            after: st.after.iter().map(|&a| pos(a)).collect(),
        });
        base = base
            .checked_add(width)
            .ok_or_else(|| invalid(anyhow::anyhow!("the stages hold too many tasks")))?;
    }
    let job = p.as_job();
    let first = &stages[0];
    Ok(PreparedJob {
        id: super::prepare::job_id(&job, &first.module_id),
        module_id: first.module_id,
        module_bytes: first.module_bytes.clone(),
        module_source: None,
        reduce: None,
        verifier: None,
        job,
        stages,
    })
}

/// The stage (position) task `task` belongs to, and its index there.
pub fn locate(stages: &[PreparedStage], task: u32) -> (usize, u32) {
    let s = stages
        .partition_point(|st| st.base <= task)
        .saturating_sub(1);
    (s, task - stages[s].base)
}

/// The scheduler for a job of stages.
pub fn scheduler<P: Clone + Eq + std::hash::Hash + std::fmt::Debug>(
    stages: &[PreparedStage],
    config: naac_sched::Config,
) -> anyhow::Result<Scheduler<P>> {
    let specs = stages
        .iter()
        .map(|s| {
            let mut all = s.after.clone();
            if let Feed::Gather(u) = s.feed {
                all.push(u);
            }
            StageSpec {
                width: s.width,
                each: match s.feed {
                    Feed::Each(u) => Some(u),
                    _ => None,
                },
                all,
                verify: s.job.verify.clone(),
                retries: s.job.retries,
            }
        })
        .collect();
    Ok(Scheduler::with_stages(specs, config)?)
}

/// Output files of at least this many bytes, of tasks whose stage feeds another, stay with
/// the providers that made them (and the replicas that agreed); only their content id
/// comes to the requester, and the tasks that take them fetch them from those providers.
pub const HOLD_OVER: u64 = 1 << 20;

/// What a provider's failure says when no holder gave it an output it takes.
pub const NO_HOLDER: &str = "no holder of blob";

/// An accepted output that later stages take: its stdout (a blob here) and its `/out`
/// files (blobs here, or held by providers).
struct Output {
    stdout: ContentId,
    files: Vec<(String, ContentId)>,
}

/// The accepted outputs of tasks whose stage feeds another, kept (and served to providers,
/// or named with the providers that hold them) until the run ends.
#[derive(Default)]
pub struct Feeds {
    outputs: HashMap<u32, Output>,
    /// Who holds each held output, and the tasks that made it (several tasks may make the
    /// same bytes).
    holders: HashMap<ContentId, Vec<naac_net::PeerId>>,
    made_by: HashMap<ContentId, Vec<u32>>,
}

/// Why a task of a later stage cannot be sent now.
#[derive(Debug)]
pub enum SpecError {
    /// Outputs it takes are held by no provider any more: these tasks must run again
    /// (lineage) before it can.
    Lost(Vec<u32>),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for SpecError {
    fn from(e: anyhow::Error) -> Self {
        SpecError::Other(e)
    }
}

/// A task's wire form, its stage, and who holds the outputs of earlier stages it takes.
pub struct FedSpec {
    pub stage: usize,
    pub spec: TaskSpec,
    pub holders: Vec<naac_proto::Holders>,
}

impl Feeds {
    /// Whether the results of `task` are input to a later stage.
    pub fn feeds_others(stages: &[PreparedStage], task: u32) -> bool {
        let (s, _) = locate(stages, task);
        stages
            .iter()
            .any(|d| matches!(d.feed, Feed::Each(u) | Feed::Gather(u) if u == s))
    }

    /// `task`'s result was accepted: keep its outputs for the tasks it feeds (replacing an
    /// earlier one a re-check overturned). `held` are files its providers kept: `holders`
    /// (the providers whose copies agreed) serve them.
    pub fn accept<'a>(
        &mut self,
        task: u32,
        stdout: &[u8],
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        held: &[naac_proto::HeldOutput],
        holders: &[(naac_net::PeerId, Vec<ContentId>)],
        blobs: &mut Blobs,
    ) {
        let mut put = |bytes: &[u8]| {
            let id = ContentId::of(bytes);
            blobs.insert(id, Arc::new(bytes.to_vec()));
            id
        };
        let mut out = Output {
            stdout: put(stdout),
            files: files
                .into_iter()
                .map(|(n, b)| (n.to_string(), put(b)))
                .collect(),
        };
        for h in held {
            out.files.push((h.name.clone(), h.id));
            let hs = self.holders.entry(h.id).or_default();
            for (p, ids) in holders {
                if ids.contains(&h.id) && !hs.contains(p) && hs.len() < naac_proto::MAX_SOURCE_HOSTS
                {
                    hs.push(*p);
                }
            }
            let makers = self.made_by.entry(h.id).or_default();
            if !makers.contains(&task) {
                makers.push(task);
            }
        }
        self.outputs.insert(task, out);
    }

    /// `peer` is gone: it holds nothing any more.
    pub fn forget_peer(&mut self, peer: &naac_net::PeerId) {
        for hs in self.holders.values_mut() {
            hs.retain(|h| h != peer);
        }
    }

    /// No holder could give `task` the held outputs it takes: those of its holders that
    /// `keep` refuses count as gone (when none is left, the tasks that made them run again
    /// before it is sent again).
    pub fn lost_inputs_of(
        &mut self,
        stages: &[PreparedStage],
        task: u32,
        keep: impl Fn(&naac_net::PeerId) -> bool,
    ) {
        for u in inputs_of(stages, task) {
            if let Some(o) = self.outputs.get(&u) {
                for (_, id) in &o.files {
                    if let Some(hs) = self.holders.get_mut(id) {
                        hs.retain(&keep);
                    }
                }
            }
        }
    }

    /// Reads back the result of `task` an earlier run left in `dir` (its stdout and
    /// `out/` files).
    pub fn load(&mut self, task: u32, dir: &Path, blobs: &mut Blobs) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let stdout = std::fs::read(dir.join("stdout"))
            .with_context(|| format!("read {}", dir.join("stdout").display()))?;
        let mut files = Vec::new();
        let out = dir.join("out");
        if out.is_dir() {
            let mut stack = vec![out.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
                    let e = e?;
                    let path = e.path();
                    if e.file_type()?.is_dir() {
                        stack.push(path);
                    } else {
                        let name = path
                            .strip_prefix(&out)
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        files.push((name, std::fs::read(&path)?));
                    }
                }
            }
            files.sort();
        }
        let files = files.iter().map(|(n, b)| (n.as_str(), b.as_slice()));
        self.accept(task, &stdout, files, &[], &[], blobs);
        Ok(())
    }

    /// The wire form of `task`, fed from the outputs of the tasks it waits for (the
    /// scheduler releases it only once they are accepted), and who holds the held ones.
    pub fn spec(
        &self,
        stages: &[PreparedStage],
        task: u32,
        attempt: u32,
        blobs: &mut Blobs,
    ) -> Result<FedSpec, SpecError> {
        let (s, i) = locate(stages, task);
        let st = &stages[s];
        let fed = match st.feed {
            Feed::Own => None,
            Feed::Each(u) => {
                let up = &stages[u];
                let o = self.get(up.base + i, &up.name)?;
                let inputs = o
                    .files
                    .iter()
                    .map(|(n, id)| (format!("from/{}/{n}", up.name), *id))
                    .collect();
                Some(Fed {
                    stdin: Some(o.stdout),
                    inputs,
                })
            }
            Feed::Gather(u) => {
                let up = &stages[u];
                let mut stdin = Vec::new();
                let mut inputs = Vec::new();
                for k in 0..up.width {
                    let o = self.get(up.base + k, &up.name)?;
                    let bytes = blobs
                        .get(&o.stdout)
                        .ok_or_else(|| anyhow::anyhow!("the stdout of {}[{k}] is gone", up.name))?;
                    stdin.extend_from_slice(bytes);
                    inputs.extend(
                        o.files
                            .iter()
                            .map(|(n, id)| (format!("from/{}/{k}/{n}", up.name), *id)),
                    );
                }
                if stdin.len() as u64 > super::prepare::MAX_INPUT_BYTES {
                    return Err(anyhow::anyhow!(
                        "stage \"{}\" gathers {} bytes of stdout from \"{}\"; the limit is {}\nhint: have each task write less, or gather in steps",
                        st.name,
                        stdin.len(),
                        up.name,
                        super::prepare::MAX_INPUT_BYTES
                    )
                    .into());
                }
                let id = ContentId::of(&stdin);
                blobs.insert(id, Arc::new(stdin));
                Some(Fed {
                    stdin: Some(id),
                    inputs,
                })
            }
        };
        // Held inputs: who to fetch them from, or which tasks must make them again.
        let mut holders = Vec::new();
        let mut lost = Vec::new();
        for (_, id) in fed.iter().flat_map(|f| f.inputs.iter()) {
            let Some(hs) = self.holders.get(id) else {
                continue;
            };
            if hs.is_empty() {
                lost.extend(self.made_by.get(id).into_iter().flatten().copied());
                continue;
            }
            holders.push(naac_proto::Holders {
                id: *id,
                peers: hs
                    .iter()
                    .take(naac_proto::MAX_SOURCE_HOSTS)
                    .map(|p| naac_proto::ByteBuf::from(p.to_bytes()))
                    .collect(),
                addrs: Vec::new(),
            });
        }
        if !lost.is_empty() {
            lost.sort_unstable();
            lost.dedup();
            return Err(SpecError::Lost(lost));
        }
        let mut spec =
            super::prepare::task_spec_fed(&st.job, st.module_id, i, attempt, blobs, fed)?;
        spec.index = task;
        Ok(FedSpec {
            stage: s,
            spec,
            holders,
        })
    }

    fn get(&self, task: u32, stage: &str) -> anyhow::Result<&Output> {
        self.outputs.get(&task).ok_or_else(|| {
            anyhow::anyhow!("no accepted result of a task of \"{stage}\" to feed it")
        })
    }
}

/// Where the results of task `task` go under the results directory: `tasks/<i>` for a job
/// of one stage, `stages/<name>/tasks/<i>` for a job of stages.
pub fn task_dir(stages: &[(u32, String)], task: u32) -> PathBuf {
    if stages.is_empty() {
        return PathBuf::from("tasks").join(task.to_string());
    }
    let s = stages
        .partition_point(|(b, _)| *b <= task)
        .saturating_sub(1);
    let (base, name) = &stages[s];
    PathBuf::from("stages")
        .join(name)
        .join("tasks")
        .join((task - base).to_string())
}

/// What the writer needs to place results: each stage's first task id and name.
pub fn layout(stages: &[PreparedStage]) -> Vec<(u32, String)> {
    stages.iter().map(|s| (s.base, s.name.clone())).collect()
}

/// Per-stage counts for `summary.json`.
pub fn summary<P: Clone + Eq + std::hash::Hash + std::fmt::Debug>(
    stages: &[PreparedStage],
    sched: &Scheduler<P>,
) -> BTreeMap<String, crate::output::StageSummary> {
    stages
        .iter()
        .enumerate()
        .map(|(s, st)| {
            let (total, succeeded, failed, retried) = sched.stage_counts(s);
            let counts = crate::output::TaskCounts {
                total: total as u64,
                succeeded: succeeded as u64,
                failed: failed as u64,
                retried: retried as u64,
                kept: 0,
            };
            (
                st.name.clone(),
                crate::output::StageSummary {
                    tasks: counts,
                    module: st.module_id.to_hex(),
                    first_task: st.base as u64,
                },
            )
        })
        .collect()
}

/// Finishes `summary.json` for a job of stages: each failure named by its stage and index
/// there (an upstream failure names the stages it took input from). Returns the last
/// stage's stdout when it is one task that succeeded (what `naac run` prints).
pub fn finish(stages: &[PreparedStage], summary: &mut crate::output::Summary) -> Option<Vec<u8>> {
    let last = stages.last()?;
    let layout = layout(stages);
    for f in &mut summary.failures {
        let Ok(task) = u32::try_from(f.task) else {
            continue;
        };
        let (s, i) = locate(stages, task);
        let st = &stages[s];
        f.task = i as u64;
        f.stage = Some(st.name.clone());
        if f.kind == naac_types::FailureKind::Upstream.as_str() {
            let mut from: Vec<&str> = st.after.iter().map(|&u| stages[u].name.as_str()).collect();
            if let Feed::Each(u) | Feed::Gather(u) = st.feed {
                from.push(&stages[u].name);
            }
            f.message = format!(
                "a task of stage {} it waits for failed, so it never ran",
                from.iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(" or ")
            );
        }
    }
    let counts = summary.stages.get(&last.name)?;
    if last.width != 1 || counts.tasks.succeeded != 1 {
        return None;
    }
    std::fs::read(
        summary
            .out_dir
            .join(task_dir(&layout, last.base))
            .join("stdout"),
    )
    .ok()
}

/// Tasks whose results an earlier run of the job left in `out_dir` (their task
/// directories: each appears whole, and goes when a re-check voids it), as task ids.
pub fn kept(out_dir: &Path, stages: &[PreparedStage], total: u32) -> Vec<u32> {
    let dirs: Vec<(u32, u32, PathBuf)> = if stages.is_empty() {
        vec![(0, total, out_dir.join("tasks"))]
    } else {
        stages
            .iter()
            .map(|s| {
                (
                    s.base,
                    s.width,
                    out_dir.join("stages").join(&s.name).join("tasks"),
                )
            })
            .collect()
    };
    let mut kept = Vec::new();
    for (base, width, dir) in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        kept.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                // Outputs its providers kept are gone with them: it runs again.
                .filter(|e| !e.path().join(crate::output::HELD_FILE).exists())
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|i| *i < width)
                .map(|i| base + i),
        );
    }
    kept.sort_unstable();
    kept
}

/// Whether the results in `out_dir` can be the start of this job: its `summary.json`,
/// when there is one, names the same job and the same module for every stage.
pub fn check_resumable(out_dir: &Path, job: &PreparedJob) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read(out_dir.join("summary.json")) else {
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", out_dir.join("summary.json").display()))?;
    let hint = "hint: resume with the job file that made them, or run into a new directory";
    if v["name"] != job.job.name.as_str() {
        anyhow::bail!(
            "{} holds results of job {}, not {}\n{hint}",
            out_dir.display(),
            v["name"],
            job.job.name
        );
    }
    for st in &job.stages {
        let module = &v["stages"][&st.name]["module"];
        if !module.is_null() && *module != st.module_id.to_hex().as_str() {
            anyhow::bail!(
                "{}: stage \"{}\" ran another module there\n{hint}",
                out_dir.display(),
                st.name
            );
        }
    }
    Ok(())
}

/// The tasks `task` takes input from (its stage's `for_each` or `gather` upstream).
pub fn inputs_of(stages: &[PreparedStage], task: u32) -> Vec<u32> {
    let (s, i) = locate(stages, task);
    match stages[s].feed {
        Feed::Own => Vec::new(),
        Feed::Each(u) => vec![stages[u].base + i],
        Feed::Gather(u) => (stages[u].base..stages[u].base + stages[u].width).collect(),
    }
}
