//! `naac submit`, `naac jobs`, `naac status`, `naac cancel`, `naac results`: jobs handed to
//! the local node (`naac node`) through its HTTP API, which runs them whether or not this
//! terminal stays open.

use anyhow::Context as _;
use naac_api::JobView;
use naac_api::client::{Client, ClientError};
use naac_node::Home;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Where the node's API is.
#[derive(clap::Args, Clone)]
pub struct Api {
    /// The node's API address [default: 127.0.0.1:7878]
    #[arg(long, value_name = "HOST:PORT", env = "NAAC_API", global = true)]
    api: Option<String>,
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    /// The job file (TOML); it and every file it names are sent to the node
    job: PathBuf,
    /// Print the job as JSON
    #[arg(long)]
    json: bool,
    /// A key that makes a retried submit return the same job instead of a second one
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    api: Api,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Print JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: Api,
}

#[derive(clap::Args)]
pub struct JobArgs {
    /// The job's id (as `naac submit` printed it)
    id: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
    /// Follow the job until it ends
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    api: Api,
}

#[derive(clap::Args)]
pub struct ResultsArgs {
    /// The job's id
    id: String,
    /// Copy the results directory here (it has the layout of `naac run`'s)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    api: Api,
}

fn client(api: &Api) -> anyhow::Result<Client> {
    let home = Home::from_env()?;
    let path = crate::daemon::token_path(&home);
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read the node's API token {}\nhint: start the node first (`naac node`); it writes the token there",
            path.display()
        )
    })?;
    let addr = api
        .api
        .clone()
        .unwrap_or_else(|| naac_api::DEFAULT_ADDR.into());
    Ok(Client::new(&addr, token.trim()))
}

/// Says what went wrong (exit 2 for a refused request, 3 for no node).
fn failed(e: ClientError) -> ExitCode {
    eprintln!("error: {e}");
    match e {
        ClientError::Problem(_) => ExitCode::from(2),
        _ => ExitCode::from(3),
    }
}

pub async fn submit(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let job = match naac_types::job::Job::load(&a.job) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let files = match job.files() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let base = job.base_dir();
    let mut parts = Vec::with_capacity(files.len());
    for f in files {
        let name = match relative(&base, &f) {
            Some(n) => n,
            None => {
                eprintln!(
                    "error: {} names {}, outside its directory\nhint: a submitted job carries only files under the job file's directory; copy it there",
                    a.job.display(),
                    f.display()
                );
                return Ok(ExitCode::from(2));
            }
        };
        let bytes = std::fs::read(&f).with_context(|| format!("read {}", f.display()))?;
        parts.push((name, bytes));
    }
    let text = std::fs::read(&a.job).with_context(|| format!("read {}", a.job.display()))?;
    let c = client(&a.api)?;
    match c.submit(text, parts, a.idempotency_key.as_deref()).await {
        Ok(v) if a.json => println!("{}", serde_json::to_string(&v)?),
        Ok(v) => println!("{}", v.id),
        Err(e) => return Ok(failed(e)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `file`'s path under `base`, with `/` separators; `None` when it is not under it.
fn relative(base: &Path, file: &Path) -> Option<String> {
    let base = base.canonicalize().ok()?;
    let file = file.canonicalize().ok()?;
    let rel = file.strip_prefix(&base).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

pub async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let jobs = match client(&a.api)?.jobs().await {
        Ok(j) => j,
        Err(e) => return Ok(failed(e)),
    };
    if a.json {
        println!("{}", serde_json::to_string(&jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if jobs.is_empty() {
        println!("no jobs on this node (submit one with `naac submit JOB`)");
    }
    for j in &jobs {
        println!("{}  {:<9}  {:<20}  {}", j.id, j.state, j.name, progress(j));
    }
    Ok(ExitCode::SUCCESS)
}

/// `done/total tasks`, or why it failed, as far as is known.
fn progress(j: &JobView) -> String {
    if let Some(p) = &j.progress {
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        if let Some(why) = p["waiting"].as_str() {
            return format!("waiting: no host may run it now: {why}");
        }
        return format!(
            "{}/{} tasks, {} running, {} failed, {} providers",
            n("succeeded"),
            n("total"),
            n("running"),
            n("failed"),
            n("providers")
        );
    }
    let tasks = j.summary.as_ref().map(|s| {
        format!(
            "{}/{} tasks",
            s["tasks"]["succeeded"].as_u64().unwrap_or(0),
            s["tasks"]["total"].as_u64().unwrap_or(0)
        )
    });
    match (&j.error, tasks) {
        (Some(e), Some(t)) => format!("{t}; {e}"),
        (Some(e), None) => e.clone(),
        (None, Some(t)) => t,
        (None, None) => String::new(),
    }
}

pub async fn status(a: JobArgs) -> anyhow::Result<ExitCode> {
    let c = client(&a.api)?;
    let mut last = String::new();
    loop {
        let j = match c.job(&a.id).await {
            Ok(j) => j,
            Err(e) => return Ok(failed(e)),
        };
        let finished = matches!(j.state.as_str(), "done" | "failed" | "cancelled");
        if a.json {
            if finished || !a.watch {
                println!("{}", serde_json::to_string(&j)?);
            }
        } else {
            // Written, not printed: a reader that went away (`| head`) ends the watch.
            use std::io::Write;
            let mut out = std::io::stdout();
            let line = format!("{}  {}  {}  {}", j.id, j.state, j.name, progress(&j));
            if line != last {
                writeln!(out, "{line}")?;
                last = line;
            }
            if finished {
                writeln!(out, "results in {}", j.out_dir)?;
            }
        }
        if finished || !a.watch {
            return Ok(match j.state.as_str() {
                "failed" if a.watch => ExitCode::from(1),
                _ => ExitCode::SUCCESS,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn cancel(a: JobArgs) -> anyhow::Result<ExitCode> {
    match client(&a.api)?.cancel(&a.id).await {
        Ok(j) if a.json => println!("{}", serde_json::to_string(&j)?),
        Ok(j) => println!("{}  {}", j.id, j.state),
        Err(e) => return Ok(failed(e)),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn results(a: ResultsArgs) -> anyhow::Result<ExitCode> {
    let j = match client(&a.api)?.job(&a.id).await {
        Ok(j) => j,
        Err(e) => return Ok(failed(e)),
    };
    let src = PathBuf::from(&j.out_dir);
    let Some(out) = a.out else {
        println!("{}", src.display());
        return Ok(ExitCode::SUCCESS);
    };
    if !src.is_dir() {
        eprintln!("error: job {} has no results yet (it is {})", j.id, j.state);
        return Ok(ExitCode::from(2));
    }
    copy_dir(&src, &out)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn copy_dir(src: &Path, dst: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("create {}", dst.display()))?;
    for e in std::fs::read_dir(src).with_context(|| format!("read {}", src.display()))? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)
                .with_context(|| format!("copy {} to {}", e.path().display(), to.display()))?;
        }
    }
    Ok(())
}
