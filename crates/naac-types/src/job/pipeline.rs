//! Job files of several stages (`[[stage]]` tables): each stage is a job of today's shape
//! (module, args, sweep, limits, verify…) with a name, and may take its input from another:
//!
//! - `for_each = "a"`: one task per task of `a` (its sweep, unless it gives its own of the
//!   same width); task `i`'s stdin is `a`'s task `i`'s stdout;
//! - `gather = "a"`: one task whose stdin is every task of `a`'s stdout, in task order;
//! - `after = ["a", …]`: runs once those stages are done, passing no data.
//!
//! The stages form a DAG, checked here: names unique, references known, no cycles, widths
//! that agree. Errors name the file, line and field (`stage[2].for_each`), with a hint.

use super::reader::RawJob;
use super::{Job, JobError};
use crate::Credits;
use crate::diag::{FileKind, Source, file_error};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Most stages in one job file.
pub const MAX_STAGES: usize = 64;

/// A job file of stages, checked.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    pub name: String,
    /// In file order; [`Pipeline::order`] is an order that runs each after its inputs.
    pub stages: Vec<Stage>,
    /// Stage indexes, each after every stage it depends on.
    pub order: Vec<usize>,
}

/// One stage.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    /// The stage as a job (its `name` is the stage's).
    pub job: Job,
    pub input: StageInput,
    /// Stages that must be done first (indexes), data or not.
    pub after: Vec<usize>,
}

/// Where a stage's tasks take their input from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageInput {
    /// Its own files and sweep, as a job of today.
    Own,
    /// One task per task of that stage, fed its stdout.
    ForEach(usize),
    /// One task, fed every task's stdout of that stage in order.
    Gather(usize),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: Option<Spanned<String>>,
    stage: Vec<Spanned<RawJob>>,
}

/// Whether job file text has stages (a `[[stage]]` table at its top level).
pub fn has_stages(src: &str) -> bool {
    src.parse::<toml::Table>()
        .is_ok_and(|t| t.contains_key("stage"))
}

impl Pipeline {
    /// Reads and checks a job file of stages.
    pub fn load(path: &Path) -> Result<Pipeline, JobError> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            file_error(
                FileKind::Job,
                path,
                format!("cannot read: {e}"),
                Some("check the path; job files are TOML".into()),
            )
        })?;
        Self::parse(path, &src)
    }

    /// Parses job file text of stages.
    pub fn parse(path: &Path, src: &str) -> Result<Pipeline, JobError> {
        let cx = Source {
            kind: FileKind::Job,
            file: path,
            src,
        };
        let raw: RawPipeline = toml::from_str(src)
            .map_err(|e| cx.err(e.span(), cx.key_at(e.span()), e.message().trim(), None))?;
        if raw.stage.is_empty() || raw.stage.len() > MAX_STAGES {
            return Err(cx.err(
                None,
                "stage".to_string(),
                format!(
                    "{} stages; a job file has 1 to {MAX_STAGES}",
                    raw.stage.len()
                ),
                None,
            ));
        }
        let name = match &raw.name {
            Some(n) => n.get_ref().trim().to_string(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "job".into()),
        };
        // Names first: links refer to them.
        let mut names: Vec<String> = Vec::new();
        for (i, st) in raw.stage.iter().enumerate() {
            let Some(n) = st.get_ref().stage_name() else {
                return Err(cx.err(
                    Some(st.span()),
                    format!("stage[{i}].name"),
                    "a stage needs a name",
                    Some("add name = \"count\" to the [[stage]] table".into()),
                ));
            };
            if names.contains(&n) {
                return Err(cx.err(
                    Some(st.span()),
                    format!("stage[{i}].name"),
                    format!("two stages are named \"{n}\""),
                    Some("give each stage a name of its own".into()),
                ));
            }
            names.push(n);
        }
        let find = |i: usize, field: &str, r: &Spanned<String>| -> Result<usize, JobError> {
            let target = r.get_ref();
            match names.iter().position(|n| n == target) {
                Some(j) if j == i => Err(cx.err(
                    Some(r.span()),
                    format!("stage[{i}].{field}"),
                    format!("stage \"{target}\" refers to itself"),
                    None,
                )),
                Some(j) => Ok(j),
                None => Err(cx.err(
                    Some(r.span()),
                    format!("stage[{i}].{field}"),
                    format!("no stage is named \"{target}\""),
                    Some(format!("stages here: {}", names.join(", "))),
                )),
            }
        };
        // Links, then the order (which finds cycles), then each stage as a job: a for_each
        // stage may take its upstream's sweep, so upstreams are read first.
        let mut links: Vec<(StageInput, Vec<usize>)> = Vec::new();
        for (i, st) in raw.stage.iter().enumerate() {
            let r = st.get_ref();
            let input = match (&r.for_each, &r.gather) {
                (Some(a), Some(b)) => {
                    return Err(cx.err(
                        Some(b.span().start.min(a.span().start)..b.span().end),
                        format!("stage[{i}]"),
                        "a stage takes its input from one stage: for_each or gather, not both",
                        Some("split it into two stages".into()),
                    ));
                }
                (Some(a), None) => StageInput::ForEach(find(i, "for_each", a)?),
                (None, Some(g)) => StageInput::Gather(find(i, "gather", g)?),
                (None, None) => StageInput::Own,
            };
            let after = r
                .after
                .iter()
                .enumerate()
                .map(|(k, a)| find(i, &format!("after[{k}]"), a))
                .collect::<Result<Vec<_>, _>>()?;
            links.push((input, after));
        }
        let order = topological(&links).map_err(|cycle| {
            let path: Vec<&str> = cycle.iter().map(|&i| names[i].as_str()).collect();
            cx.err(
                Some(raw.stage[cycle[0]].span()),
                format!("stage[{}]", cycle[0]),
                format!("the stages form a cycle: {}", path.join(" -> ")),
                Some("a stage may only depend on stages that do not depend on it".into()),
            )
        })?;
        let mut jobs: Vec<Option<Job>> = vec![None; raw.stage.len()];
        let mut raws: Vec<Option<Spanned<RawJob>>> = raw.stage.into_iter().map(Some).collect();
        for &i in &order {
            let Some(st) = raws[i].take() else { continue };
            let span = st.span();
            let (input, _) = links[i];
            let inherited = match input {
                StageInput::ForEach(up) => jobs[up].as_ref().map(|j| j.sweep.clone()),
                _ => None,
            };
            let job = Job::from_raw(&cx, path, st.into_inner(), inherited.as_deref())
                .map_err(|e| in_stage(e, i))?;
            match input {
                StageInput::ForEach(up) => {
                    let want = jobs[up].as_ref().map_or(0, Job::task_count);
                    if job.task_count() != want {
                        return Err(cx.err(
                            Some(span),
                            format!("stage[{i}].sweep"),
                            format!(
                                "{} tasks, but it runs one per task of \"{}\" ({want})",
                                job.task_count(),
                                names[up]
                            ),
                            Some("drop its sweep to take its upstream's".into()),
                        ));
                    }
                }
                StageInput::Gather(_) if job.task_count() != 1 => {
                    return Err(cx.err(
                        Some(span),
                        format!("stage[{i}].sweep"),
                        format!("{} tasks, but a gather stage runs one", job.task_count()),
                        Some("drop its sweep".into()),
                    ));
                }
                _ => {}
            }
            jobs[i] = Some(job);
        }
        let stages = jobs
            .into_iter()
            .zip(names)
            .zip(links)
            .map(|((job, name), (input, after))| {
                let job = job.expect("every stage was read in order");
                Stage {
                    name,
                    job,
                    input,
                    after,
                }
            })
            .collect();
        Ok(Pipeline {
            file: path.to_path_buf(),
            name,
            stages,
            order,
        })
    }
}

impl Pipeline {
    /// The whole pipeline as one job, for what is job-wide (its name, payment, the
    /// requester's own checks): the largest limits of any stage, the highest price, the
    /// most replicated stage's policy, and every stage's tasks. Each stage's own job says
    /// how its tasks run.
    pub fn as_job(&self) -> Job {
        let first = &self.stages[0].job;
        let mut j = first.clone();
        j.file = self.file.clone();
        j.name = self.name.clone();
        j.reduce = None;
        j.output_store = false;
        let jobs = || self.stages.iter().map(|s| &s.job);
        j.limits.fuel = jobs()
            .map(|s| s.limits.fuel)
            .max()
            .unwrap_or(first.limits.fuel);
        j.limits.memory = jobs()
            .map(|s| s.limits.memory)
            .max()
            .unwrap_or(first.limits.memory);
        j.limits.timeout_ms = jobs()
            .map(|s| s.limits.timeout_ms)
            .max()
            .unwrap_or(first.limits.timeout_ms);
        j.budget.max_price = jobs().map(|s| s.budget.max_price).max().unwrap_or_default();
        j.budget.max_cost = jobs()
            .map(|s| s.budget.max_cost)
            .try_fold(Credits::ZERO, |sum, c| {
                c.map(|c| Credits(sum.0.saturating_add(c.0)))
            });
        if let Some(most) = jobs().max_by_key(|s| (s.verify.replicas, s.verify.max_replicas)) {
            j.verify = most.verify.clone();
        }
        j.retries = jobs().map(|s| s.retries).max().unwrap_or(first.retries);
        j.task_count = jobs().map(Job::task_count).sum();
        j
    }

    /// Stage indexes in the order their tasks are numbered: stages with no upstream first
    /// (in file order), then the rest, each after the stages it depends on.
    pub fn task_order(&self) -> Vec<usize> {
        let root = |i: &usize| {
            let s = &self.stages[*i];
            s.input == StageInput::Own && s.after.is_empty()
        };
        let mut out: Vec<usize> = (0..self.stages.len()).filter(root).collect();
        out.extend(self.order.iter().copied().filter(|i| !root(i)));
        out
    }
}

/// An error inside stage `i`: its field is named within the stage.
fn in_stage(mut e: JobError, i: usize) -> JobError {
    e.field = Some(match e.field.take() {
        Some(f) => format!("stage[{i}].{f}"),
        None => format!("stage[{i}]"),
    });
    e
}

/// Stage indexes, each after the ones it depends on (its input and `after`); `Err` with a
/// cycle's stages, in order, when there is one.
fn topological(links: &[(StageInput, Vec<usize>)]) -> Result<Vec<usize>, Vec<usize>> {
    let deps = |i: usize| -> Vec<usize> {
        let (input, after) = &links[i];
        let mut d = after.clone();
        if let StageInput::ForEach(u) | StageInput::Gather(u) = input {
            d.push(*u);
        }
        d
    };
    // 0: not seen, 1: on the current path, 2: done.
    let mut mark = vec![0u8; links.len()];
    let mut order = Vec::with_capacity(links.len());
    let mut path: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        deps: &dyn Fn(usize) -> Vec<usize>,
        mark: &mut [u8],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match mark[i] {
            2 => return Ok(()),
            1 => {
                let from = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(i);
                return Err(cycle);
            }
            _ => {}
        }
        mark[i] = 1;
        path.push(i);
        for d in deps(i) {
            visit(d, deps, mark, order, path)?;
        }
        path.pop();
        mark[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..links.len() {
        visit(i, &deps, &mut mark, &mut order, &mut path)?;
    }
    Ok(order)
}
