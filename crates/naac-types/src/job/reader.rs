//! Reading job files: [`Job::load`] and [`Job::parse`], the TOML read into raw tables and
//! every value checked (sweep, limits, budget, verify, modules) with line-numbered errors.

use super::{
    Budget, DEFAULT_RETRIES, DEFAULT_STRAGGLER_FACTOR, Job, JobError, MAX_MODULE_BYTES, MAX_TASKS,
    MIN_CHECKPOINT_INTERVAL, Reduce, SweepAxis, SweepValue, Template,
};
use crate::Limits;
use crate::diag::{FileKind, Source, file_error, suggest};
use crate::units::{parse_duration, parse_size};
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    name: Option<Spanned<String>>,
    module: Spanned<String>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    #[serde(default)]
    inputs: Vec<Spanned<String>>,
    stdin: Option<Spanned<String>>,
    #[serde(default)]
    env: IndexMap<String, Spanned<String>>,
    retries: Option<Spanned<i64>>,
    #[serde(default)]
    sweep: IndexMap<String, Spanned<toml::Value>>,
    limits: Option<RawLimits>,
    reduce: Option<RawReduce>,
    verify: Option<super::verify_table::RawVerify>,
    requirements: Option<super::requirements::RawRequirements>,
    budget: Option<RawBudget>,
    checkpoint_interval: Option<Spanned<toml::Value>>,
    straggler_factor: Option<Spanned<toml::Value>>,
    output: Option<RawOutput>,
    // A stage's links to others (`[[stage]]` only).
    pub(super) for_each: Option<Spanned<String>>,
    pub(super) gather: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) after: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    store: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<Spanned<i64>>,
    memory: Option<Spanned<toml::Value>>,
    timeout: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    max_price: Option<Spanned<toml::Value>>,
    max_cost: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReduce {
    module: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
}

const TOP_KEYS: &[&str] = &[
    "name",
    "module",
    "args",
    "inputs",
    "stdin",
    "env",
    "retries",
    "checkpoint_interval",
    "straggler_factor",
    "sweep",
    "limits",
    "verify",
    "budget",
    "reduce",
    "output",
    "requirements",
    "stage",
];
const REQUIREMENT_KEYS: &[&str] = &["arch", "min_score", "gpus", "labels"];
const OUTPUT_KEYS: &[&str] = &["store"];
const BUDGET_KEYS: &[&str] = &["max_price", "max_cost"];
const VERIFY_KEYS: &[&str] = &[
    "replicas",
    "quorum",
    "max_replicas",
    "adaptive",
    "trust_after",
    "spot_check",
    "verifier",
    "verifier_args",
    "min_reputation",
];
const LIMIT_KEYS: &[&str] = &["fuel", "memory", "timeout"];
const REDUCE_KEYS: &[&str] = &["module", "args"];

impl RawJob {
    /// The `name` it gives, trimmed (a stage's must).
    pub(super) fn stage_name(&self) -> Option<String> {
        self.name
            .as_ref()
            .map(|n| n.get_ref().trim().to_string())
            .filter(|n| !n.is_empty())
    }
}

impl Job {
    /// Reads and validates a job file. Checks that the module exists and looks like
    /// WebAssembly; full validation (compilation) is the sandbox's job.
    pub fn load(path: &Path) -> Result<Job, JobError> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            file_error(
                FileKind::Job,
                path,
                format!("cannot read: {e}"),
                Some("check the path; job files are TOML, e.g. examples/pi/job.toml".into()),
            )
        })?;
        Self::parse(path, &src)
    }

    /// Parses job file text; `path` locates relative module and input paths.
    pub fn parse(path: &Path, src: &str) -> Result<Job, JobError> {
        let cx = Source {
            kind: FileKind::Job,
            file: path,
            src,
        };
        if super::pipeline::has_stages(src) {
            // Checked whole, so its errors come out now; running stages comes next.
            super::pipeline::Pipeline::parse(path, src)?;
            return Err(cx.err(
                None,
                "stage".to_string(),
                "this job file has stages; it is read as a pipeline, not as one job",
                Some("`naac run` and `naac submit` run job files of stages".into()),
            ));
        }
        let raw: RawJob = toml::from_str(src).map_err(|e| toml_error(&cx, &e))?;
        for (key, at) in [
            ("for_each", raw.for_each.as_ref()),
            ("gather", raw.gather.as_ref()),
        ]
        .into_iter()
        .chain(raw.after.first().map(|a| ("after", Some(a))))
        {
            if let Some(at) = at {
                return Err(cx.err(
                    Some(at.span()),
                    key.to_string(),
                    format!("{key} links stages; this job file has none"),
                    Some("put each step in a [[stage]] table with a name".into()),
                ));
            }
        }
        Self::from_raw(&cx, path, raw, None)
    }

    /// A job from its parsed table (a whole job file, or one `[[stage]]`); a stage with no
    /// sweep of its own may take `inherited`, its upstream's (one task per upstream task).
    pub(super) fn from_raw(
        cx: &Source<'_>,
        path: &Path,
        raw: RawJob,
        inherited: Option<&[(String, SweepAxis)]>,
    ) -> Result<Job, JobError> {
        let cx = *cx;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };

        let name = match raw.name {
            Some(n) => {
                let v = n.get_ref().trim();
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(cx.err(
                        Some(n.span()),
                        "name".to_string(),
                        format!("\"{v}\" is not a valid job name"),
                        Some("use letters, digits, '-', '_' and '.'".into()),
                    ));
                }
                v.to_string()
            }
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "job".into()),
        };

        // Sweep first: templates refer to its keys.
        let mut sweep = Vec::new();
        for (key, value) in raw.sweep {
            let field = format!("sweep.{key}");
            if key.is_empty() || key.contains(['{', '}']) {
                return Err(cx.err(
                    Some(value.span()),
                    field,
                    "sweep keys must be non-empty and contain no braces",
                    None,
                ));
            }
            let axis = sweep_axis(&cx, &field, value)?;
            sweep.push((key, axis));
        }
        if sweep.is_empty()
            && let Some(inh) = inherited
        {
            sweep = inh.to_vec();
        }
        let keys: Vec<String> = sweep.iter().map(|(k, _)| k.clone()).collect();
        let mut task_count: u64 = 1;
        for (k, axis) in &sweep {
            task_count = task_count.saturating_mul(axis.len());
            if axis.is_empty() {
                return Err(cx.err(
                    None,
                    format!("sweep.{k}"),
                    "has no values, so the job would have no tasks",
                    Some("give it at least one value, or a range with to > from".into()),
                ));
            }
        }
        if task_count > MAX_TASKS {
            return Err(cx.err(
                None,
                "sweep".to_string(),
                format!("expands to {task_count} tasks, more than the limit of {MAX_TASKS}"),
                Some("split the job into several jobs".into()),
            ));
        }

        let template = |field: String, s: &Spanned<String>| {
            Template::parse(s.get_ref(), &keys)
                .map_err(|(m, h)| cx.err(Some(s.span()), field, m, h))
        };
        let args = raw
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| template(format!("args[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = raw
            .inputs
            .iter()
            .enumerate()
            .map(|(i, a)| template(format!("inputs[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        let stdin = raw
            .stdin
            .as_ref()
            .map(|s| template("stdin".into(), s))
            .transpose()?;
        if raw.env.len() > super::MAX_ENV {
            return Err(cx.err(
                None,
                "env".to_string(),
                format!("{} variables, more than {}", raw.env.len(), super::MAX_ENV),
                None,
            ));
        }
        let mut env = Vec::with_capacity(raw.env.len());
        for (k, v) in &raw.env {
            let field = format!("env.{k}");
            let bad_key = k.is_empty()
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || k.starts_with(|c: char| c.is_ascii_digit());
            if bad_key {
                return Err(cx.err(
                    Some(v.span()),
                    field,
                    format!("\"{k}\" is not an environment variable name"),
                    Some("use letters, digits and '_', not starting with a digit".into()),
                ));
            }
            if v.get_ref().len() > super::MAX_ENV_VALUE || v.get_ref().contains('\0') {
                return Err(cx.err(
                    Some(v.span()),
                    field,
                    format!(
                        "a value is at most {} bytes, without NUL",
                        super::MAX_ENV_VALUE
                    ),
                    None,
                ));
            }
            env.push((k.clone(), template(field, v)?));
        }

        let retries = match raw.retries {
            None => DEFAULT_RETRIES,
            Some(r) => u32::try_from(*r.get_ref())
                .ok()
                .filter(|r| *r <= 100)
                .ok_or_else(|| {
                    cx.err(
                        Some(r.span()),
                        "retries".to_string(),
                        format!("{} is out of range", r.get_ref()),
                        Some("use a number from 0 to 100".into()),
                    )
                })?,
        };

        let limits = limits(&cx, raw.limits)?;
        let budget = budget(&cx, raw.budget)?;

        let module = check_module(&cx, &dir, &raw.module, "module")?;
        let reduce = match raw.reduce {
            None => None,
            Some(r) => Some(Reduce {
                module: match &r.module {
                    Some(m) => check_module(&cx, &dir, m, "reduce.module")?,
                    None => module.clone(),
                },
                args: r.args,
            }),
        };

        let verifier_args = match &raw.verify {
            Some(v) if !v.verifier_args.is_empty() => Some(
                v.verifier_args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| template(format!("verify.verifier_args[{i}]"), a))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        let verify = super::verify_table::read(&cx, &dir, raw.verify)?;
        let requirements = super::requirements::read(&cx, raw.requirements)?;
        if verifier_args.is_some() && verify.verifier.is_none() {
            return Err(cx.err(
                None,
                "verify.verifier_args".to_string(),
                "verifier_args without a verifier",
                Some("add verifier = \"check.wasm\" or remove verifier_args".into()),
            ));
        }
        let checkpoint_interval = raw
            .checkpoint_interval
            .map(|t| {
                let parsed = match t.get_ref() {
                    toml::Value::Integer(n) if *n > 0 => {
                        Ok(std::time::Duration::from_secs(*n as u64))
                    }
                    toml::Value::String(s) => parse_duration(s),
                    _ => Err("must be a duration like \"10s\"".to_string()),
                };
                parsed
                    .and_then(|d| {
                        if d < MIN_CHECKPOINT_INTERVAL {
                            Err(format!(
                                "must be at least {} ms",
                                MIN_CHECKPOINT_INTERVAL.as_millis()
                            ))
                        } else {
                            Ok(d)
                        }
                    })
                    .map_err(|e| {
                        cx.err(
                            Some(t.span()),
                            "checkpoint_interval".to_string(),
                            e,
                            Some("e.g. checkpoint_interval = \"10s\"".into()),
                        )
                    })
            })
            .transpose()?;
        let straggler_factor = match raw.straggler_factor {
            None => DEFAULT_STRAGGLER_FACTOR,
            Some(f) => number(&cx, &f, "straggler_factor").and_then(|v| {
                if v == 0.0 || (1.0..=1000.0).contains(&v) {
                    Ok(v)
                } else {
                    Err(cx.err(
                        Some(f.span()),
                        "straggler_factor".to_string(),
                        format!("{v} is out of range"),
                        Some("use 0 (off) or a factor from 1 to 1000, e.g. 3".into()),
                    ))
                }
            })?,
        };

        let job = Job {
            file: path.to_path_buf(),
            name,
            module,
            retries,
            limits,
            reduce,
            verify,
            budget,
            checkpoint_interval,
            straggler_factor,
            output_store: raw.output.and_then(|o| o.store).unwrap_or(false),
            requirements,
            sweep,
            args,
            inputs,
            stdin,
            env,
            verifier_args,
            task_count,
        };
        // Inputs must exist before anything runs; check the first task's now and every
        // task's when it is built.
        if job.task_count > 0 {
            job.task(0)?;
        }
        Ok(job)
    }
}

fn toml_error(cx: &Source<'_>, e: &toml::de::Error) -> JobError {
    let msg = e.message().trim().to_string();
    // serde's message for deny_unknown_fields: "unknown field `x`, expected one of `a`, `b`"
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        let key = &rest[..end];
        let candidates: &[&str] = if rest.contains("`fuel`") {
            LIMIT_KEYS
        } else if rest.contains("`quorum`") {
            VERIFY_KEYS
        } else if rest.contains("`max_price`") {
            BUDGET_KEYS
        } else if rest.contains("expected `store`") {
            OUTPUT_KEYS
        } else if rest.contains("`min_score`") {
            REQUIREMENT_KEYS
        } else if rest.contains("`module`") && !rest.contains("`sweep`") {
            REDUCE_KEYS
        } else {
            TOP_KEYS
        };
        return cx.unknown_key(e.span(), None, key, candidates, "known keys here");
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        return cx.err(
            None,
            key.to_string(),
            format!("missing required key \"{key}\""),
            Some(format!(
                "add e.g. {key} = \"task.wasm\" at the top of the file"
            )),
        );
    }
    cx.err(e.span(), cx.key_at(e.span()), msg, None)
}

fn sweep_axis(
    cx: &Source<'_>,
    field: &str,
    value: Spanned<toml::Value>,
) -> Result<SweepAxis, JobError> {
    let span = value.span();
    let shape_hint = || {
        Some(
            "write e.g. seed = { from = 0, to = 64 } or seed = [1, 2, 3] or name = [\"a\", \"b\"]"
                .to_string(),
        )
    };
    match value.into_inner() {
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, it) in items.into_iter().enumerate() {
                out.push(match it {
                    toml::Value::Integer(n) => SweepValue::Int(n),
                    toml::Value::String(s) => SweepValue::Str(s),
                    other => {
                        return Err(cx.err(
                            Some(span.clone()),
                            format!("{field}[{i}]"),
                            format!(
                                "{} values cannot be swept; use integers or strings",
                                other.type_str()
                            ),
                            None,
                        ));
                    }
                });
            }
            Ok(SweepAxis::List(out))
        }
        toml::Value::Table(t) => {
            let int = |k: &str| -> Result<Option<i64>, JobError> {
                match t.get(k) {
                    None => Ok(None),
                    Some(toml::Value::Integer(n)) => Ok(Some(*n)),
                    Some(other) => Err(cx.err(
                        Some(span.clone()),
                        format!("{field}.{k}"),
                        format!("must be an integer, found {}", other.type_str()),
                        None,
                    )),
                }
            };
            for k in t.keys() {
                if !["from", "to", "step"].contains(&k.as_str()) {
                    return Err(cx.err(
                        Some(span.clone()),
                        field.to_string(),
                        format!("unknown key \"{k}\" in range"),
                        suggest(k, &["from", "to", "step"]).or_else(shape_hint),
                    ));
                }
            }
            let (Some(from), Some(to)) = (int("from")?, int("to")?) else {
                return Err(cx.err(
                    Some(span.clone()),
                    field.to_string(),
                    "a range needs both \"from\" and \"to\"",
                    shape_hint(),
                ));
            };
            let step = int("step")?.unwrap_or(1);
            if step <= 0 {
                return Err(cx.err(
                    Some(span.clone()),
                    format!("{field}.step"),
                    format!("step must be positive, found {step}"),
                    None,
                ));
            }
            Ok(SweepAxis::Range { from, to, step })
        }
        other => Err(cx.err(
            Some(span),
            field.to_string(),
            format!(
                "a sweep key must be a range or a list, found {}",
                other.type_str()
            ),
            shape_hint(),
        )),
    }
}

fn budget(cx: &Source<'_>, raw: Option<RawBudget>) -> Result<Budget, JobError> {
    let mut b = Budget::default();
    let Some(raw) = raw else { return Ok(b) };
    let amount = |v: &Spanned<toml::Value>, key: &str, example: &str| {
        let parsed = match v.get_ref() {
            toml::Value::Integer(n) if *n >= 0 => Ok(crate::Credits::whole(*n as u64).0),
            toml::Value::Float(f) => crate::Credits::parse(&f.to_string()).map(|c| c.0),
            toml::Value::String(s) => crate::Credits::parse(s).map(|c| c.0),
            _ => Err("must be a number of credits like 2.5".to_string()),
        };
        parsed.map_err(|e| {
            cx.err(
                Some(v.span()),
                format!("budget.{key}"),
                e,
                Some(format!("e.g. {key} = {example}")),
            )
        })
    };
    if let Some(p) = &raw.max_price {
        b.max_price = crate::Price(amount(p, "max_price", "2.5")?);
    }
    if let Some(c) = &raw.max_cost {
        b.max_cost = Some(crate::Credits(amount(c, "max_cost", "1000")?));
    }
    Ok(b)
}

fn limits(cx: &Source<'_>, raw: Option<RawLimits>) -> Result<Limits, JobError> {
    let mut l = Limits::default();
    let Some(raw) = raw else { return Ok(l) };
    if let Some(f) = raw.fuel {
        l.fuel = u64::try_from(*f.get_ref())
            .ok()
            .filter(|f| *f > 0)
            .ok_or_else(|| {
                cx.err(
                    Some(f.span()),
                    "limits.fuel".to_string(),
                    format!("{} is not a positive number of instructions", f.get_ref()),
                    Some("e.g. fuel = 50_000_000_000".into()),
                )
            })?;
    }
    if let Some(m) = raw.memory {
        let parsed = match m.get_ref() {
            toml::Value::Integer(n) if *n > 0 => Ok(*n as u64),
            toml::Value::String(s) => parse_size(s),
            _ => Err("must be a size like \"256MiB\"".to_string()),
        };
        l.memory = parsed
            .and_then(|v| {
                if v < 64 << 10 {
                    Err("is below one WebAssembly page (64 KiB)".to_string())
                } else if v > Limits::MAX_MEMORY {
                    Err("is above 4 GiB, the most a wasm32 guest can address".to_string())
                } else {
                    Ok(v)
                }
            })
            .map_err(|e| {
                cx.err(
                    Some(m.span()),
                    "limits.memory".to_string(),
                    e,
                    Some("e.g. memory = \"256MiB\"".into()),
                )
            })?;
    }
    if let Some(t) = raw.timeout {
        let parsed = match t.get_ref() {
            toml::Value::Integer(n) if *n > 0 => Ok(std::time::Duration::from_secs(*n as u64)),
            toml::Value::String(s) => parse_duration(s),
            _ => Err("must be a duration like \"5m\"".to_string()),
        };
        let d = parsed
            .and_then(|d| {
                if d.is_zero() {
                    Err("must be longer than zero".to_string())
                } else {
                    Ok(d)
                }
            })
            .map_err(|e| {
                cx.err(
                    Some(t.span()),
                    "limits.timeout".to_string(),
                    e,
                    Some("e.g. timeout = \"5m\"".into()),
                )
            })?;
        l.timeout_ms = d.as_millis().min(u64::MAX as u128) as u64;
    }
    Ok(l)
}

/// A TOML integer or float as `f64`.
pub(super) fn number(
    cx: &Source<'_>,
    v: &Spanned<toml::Value>,
    field: &str,
) -> Result<f64, JobError> {
    match v.get_ref() {
        toml::Value::Integer(n) => Ok(*n as f64),
        toml::Value::Float(f) if f.is_finite() => Ok(*f),
        other => Err(cx.err(
            Some(v.span()),
            field.to_string(),
            format!("must be a number, found {}", other.type_str()),
            None,
        )),
    }
}

pub(super) fn check_module(
    cx: &Source<'_>,
    dir: &Path,
    m: &Spanned<String>,
    field: &str,
) -> Result<PathBuf, JobError> {
    // Stored data (`naac://<id>/<path>`): fetched and checked when the job is prepared.
    if m.get_ref().starts_with(crate::job::STORE_SCHEME) {
        return Ok(PathBuf::from(m.get_ref()));
    }
    let p = dir.join(m.get_ref());
    let fail =
        |msg: String, hint: &str| cx.err(Some(m.span()), field.to_string(), msg, Some(hint.into()));
    let meta = std::fs::metadata(&p).map_err(|e| {
        fail(
            format!("module {} cannot be read: {e}", p.display()),
            "the path is relative to the job file; build guests with scripts/build-guests.sh",
        )
    })?;
    if !meta.is_file() {
        return Err(fail(
            format!("module {} is not a file", p.display()),
            "name a .wasm file",
        ));
    }
    if meta.len() > MAX_MODULE_BYTES {
        return Err(fail(
            format!(
                "module {} is {} bytes, above the {MAX_MODULE_BYTES}-byte limit",
                p.display(),
                meta.len()
            ),
            "strip debug info (strip = true) or split the module",
        ));
    }
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(&p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok();
    if !ok || magic != *b"\0asm" {
        return Err(fail(
            format!(
                "{} is not a WebAssembly module (no \\0asm header)",
                p.display()
            ),
            "build the guest for wasm32-wasip1, e.g. cargo build --target wasm32-wasip1",
        ));
    }
    Ok(p)
}
