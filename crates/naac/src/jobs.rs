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
    /// The token to call it with [default: the node's admin token, from api.token in the
    /// data dir]
    #[arg(
        long,
        value_name = "TOKEN",
        env = "NAAC_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
}

impl Api {
    /// This, at `addr` unless an address was given.
    pub(crate) fn or_addr(mut self, addr: Option<String>) -> Self {
        if self.api.is_none() {
            self.api = addr;
        }
        self
    }

    fn addr(&self) -> String {
        self.api
            .clone()
            .unwrap_or_else(|| naac_api::DEFAULT_ADDR.into())
    }

    /// `--token`, else the node's admin token.
    fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.trim().to_string());
        }
        let home = Home::from_env()?;
        let path = crate::daemon::token_path(&home);
        let t = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "read the node's API token {}\nhint: start the node first (`naac node`); it writes the token there",
                path.display()
            )
        })?;
        Ok(t.trim().to_string())
    }
}

/// `naac api`: tokens and the dashboard's address.
#[derive(clap::Subcommand)]
pub enum ApiCmd {
    /// Print a narrower token made offline from the node's admin token (or --token): a
    /// scope, an expiry, a job-name prefix. Nobody can widen it again
    Token(TokenArgs),
    /// Print the dashboard's login address: opening it logs the browser in (an HttpOnly
    /// cookie) and drops the token from the address bar
    Url(UrlArgs),
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// What it may do: `read` (look), `submit` (look, submit and cancel jobs), `admin`
    /// (everything, the node's policy included)
    #[arg(long, default_value = "read", value_name = "SCOPE")]
    scope: naac_token::Scope,
    /// How long it holds, e.g. 30m, 12h, 7d [default: no expiry]
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    ttl: Option<std::time::Duration>,
    /// Only jobs whose name starts with this may be submitted or cancelled with it
    #[arg(long, value_name = "PREFIX")]
    job_name_prefix: Option<String>,
    #[command(flatten)]
    api: Api,
}

#[derive(clap::Args)]
pub struct UrlArgs {
    /// Log in with a narrower token (as `naac api token --scope`)
    #[arg(long, value_name = "SCOPE")]
    scope: Option<naac_token::Scope>,
    #[command(flatten)]
    api: Api,
}

/// `30m`, `12h`, `7d`, `2w` (or seconds, `90s`).
pub(crate) fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use a number and a unit, e.g. 12h or 7d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d, w")),
    };
    n.checked_mul(secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

pub fn api(cmd: ApiCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ApiCmd::Token(a) => {
            let limits = naac_token::Limits {
                scope: Some(a.scope),
                expires: a.ttl.map(|t| std::time::SystemTime::now() + t),
                job_name_prefix: a.job_name_prefix,
                ..Default::default()
            };
            println!("{}", naac_token::attenuate(&a.api.token()?, &limits)?);
        }
        ApiCmd::Url(a) => {
            let mut token = a.api.token()?;
            if let Some(scope) = a.scope {
                let limits = naac_token::Limits {
                    scope: Some(scope),
                    ..Default::default()
                };
                token = naac_token::attenuate(&token, &limits)?;
            }
            println!("http://{}/?token={token}", a.api.addr());
        }
    }
    Ok(ExitCode::SUCCESS)
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
    /// A pool token (or a file holding one; `naac token mint pool`) the job's runs show
    /// providers: those that trust its root run it even when you are not on their allow list
    #[arg(long, value_name = "TOKEN", env = "NAAC_POOL_TOKEN")]
    pool_token: Option<String>,
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

pub(crate) fn client(api: &Api) -> anyhow::Result<Client> {
    Ok(Client::new(&api.addr(), &api.token()?))
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
    let (job, files) = match naac_types::job::load_with_files(&a.job) {
        Ok(j) => j,
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
    let pool_token = a
        .pool_token
        .as_deref()
        .map(crate::token::read)
        .transpose()?;
    match c
        .submit(
            text,
            parts,
            (a.idempotency_key.as_deref(), pool_token.as_deref()),
        )
        .await
    {
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
    let j = match c.job(&a.id).await {
        Ok(j) => j,
        Err(e) => return Ok(failed(e)),
    };
    if !a.watch {
        show(&j, a.json, &mut String::new(), true)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Follow its events: each change arrives as it happens, and the stream ends after
    // the job does (a cancelled job's with the summary its run wrote as it stopped).
    let mut last = String::new();
    let mut end: Option<JobView> = None;
    let mut gone = false;
    // A node that restarts mid-job ends the stream early: follow again, for up to a
    // minute without news.
    let mut quiet = 0;
    loop {
        let mut news = false;
        let followed = c
            .follow(&a.id, |j| {
                news = true;
                // A line per change; JSON once, at the end.
                if !a.json && show(&j, false, &mut last, false).is_err() {
                    gone = true;
                    return false;
                }
                end = Some(j);
                true
            })
            .await;
        if gone {
            // The reader went away (`| head`): the watch is over.
            return Ok(ExitCode::SUCCESS);
        }
        match followed {
            Err(ClientError::Problem(p)) => return Ok(failed(ClientError::Problem(p))),
            _ if end.as_ref().is_some_and(finished) => break,
            _ if news => quiet = 0,
            _ => quiet += 1,
        }
        if quiet >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match end {
        Some(j) if finished(&j) => {
            if show(&j, a.json, &mut last, true).is_err() {
                return Ok(ExitCode::SUCCESS);
            }
            Ok(match j.state.as_str() {
                "failed" => ExitCode::from(1),
                _ => ExitCode::SUCCESS,
            })
        }
        _ => {
            eprintln!(
                "error: the node stopped sending job {}'s events before it ended\nhint: is the node still running? `naac status {} --watch` follows it again",
                a.id, a.id
            );
            Ok(ExitCode::from(3))
        }
    }
}

fn finished(j: &JobView) -> bool {
    matches!(j.state.as_str(), "done" | "failed" | "cancelled")
}

/// Prints a view of a job: as JSON, or as a line when it changed since `last` (and, when
/// it is the `last_view` of a job that ended, where its results are).
fn show(j: &JobView, json: bool, last: &mut String, last_view: bool) -> std::io::Result<()> {
    use std::io::Write;
    // Written, not printed: a reader that went away (`| head`) ends the watch.
    let mut out = std::io::stdout();
    if json {
        return writeln!(out, "{}", serde_json::to_string(j)?);
    }
    let line = format!("{}  {}  {}  {}", j.id, j.state, j.name, progress(j));
    if line != *last {
        writeln!(out, "{line}")?;
        *last = line;
    }
    if last_view && finished(j) {
        writeln!(out, "results in {}", j.out_dir)?;
    }
    Ok(())
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
    let c = client(&a.api)?;
    let j = match c.job(&a.id).await {
        Ok(j) => j,
        Err(e) => return Ok(failed(e)),
    };
    let Some(out) = a.out else {
        println!("{}", j.out_dir);
        return Ok(ExitCode::SUCCESS);
    };
    // Through the API, so a node on another machine serves them too.
    if let Err(e) = c.archive(&j.id, &out).await {
        return Ok(failed(e));
    }
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}
