//! `naac run JOB.toml`: run a job on the embedded pool (default) or on providers reached with
//! `--join`/mDNS, with a progress bar, and write results to the output directory.

use crate::embedded::Pool;
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use naac_net::Multiaddr;
use naac_node::Home;
use naac_node::requester::{self, Finished, Options, Progress, RunError};
use naac_sandbox::{Sandbox, SandboxConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

mod explain;
mod report;
use explain::explain;
use report::report;

#[derive(clap::Args)]
pub struct Args {
    /// The job file (TOML), e.g. examples/pi/job.toml
    job: PathBuf,
    /// Provider processes for the embedded pool [default: the number of cores, at least the
    /// job's replicas]
    #[arg(long, value_name = "N")]
    workers: Option<u32>,
    /// Where results go [default: ./naac-out/<name>-<id>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print one JSON object (the summary) on stdout instead of text
    #[arg(long)]
    json: bool,
    /// Use the providers reached at this address (and found by mDNS) instead of an embedded
    /// pool (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    join: Vec<Multiaddr>,
    /// Do not discover providers on the local network (mDNS) when using --join
    #[arg(long)]
    no_mdns: bool,
    /// Give up when no provider has joined for this long
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    provider_wait: Duration,
    /// Do not run: say which hosts in view could run the job now, and why the others cannot
    /// (per constraint)
    #[arg(long)]
    explain: bool,
    /// Fail at once, with the reasons, when no host in view may run the job now (default:
    /// wait for one, showing why)
    #[arg(long)]
    no_wait: bool,
    /// Pay through this bank (a node started with `naac node --bank`), e.g.
    /// /ip4/192.168.1.5/tcp/4001/p2p/12D3K... [default: the embedded pool's own bank;
    /// with --join and no --bank the run is unpaid]
    #[arg(long, value_name = "MULTIADDR", env = "NAAC_BANK")]
    bank: Option<Multiaddr>,
    /// Do not pay: run without a bank (providers' asks are ignored)
    #[arg(long, conflicts_with = "bank")]
    no_pay: bool,
    /// How long providers may claim results this run did not pay for once it closes its
    /// escrow; what is left returns to you after it. Providers paid at a bank
    /// (`naac node --paid-at`) refuse work without one [default: 10m with --bank, 0 with the
    /// embedded pool's bank]
    #[arg(long, value_name = "DURATION", env = "NAAC_CLAIM_WINDOW", value_parser = parse_duration)]
    claim_window: Option<Duration>,
    /// Continue a failed or interrupted run of this job from its results directory: the
    /// tasks accepted there are kept, only the missing ones run (results go to DIR)
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Also run N local worker processes beside the remote pool reached with --join: they
    /// get work after the remote hosts and the retries of runs that failed there, and run
    /// the job alone when no remote host is in view
    #[arg(long, value_name = "N", requires = "join", default_value_t = 0)]
    local: u32,
    /// With --local: local workers only work beside a remote host; with none in view the
    /// job waits
    #[arg(long, requires = "local")]
    no_local_fallback: bool,
    /// A pool token (or a file holding one) from an owner (`naac token mint pool`): the
    /// owner's providers that trust it run this job even when you are not on their allow list
    #[arg(long, value_name = "TOKEN", env = "NAAC_POOL_TOKEN")]
    pool_token: Option<String>,
    /// A spend token (or a file holding one) from a user (`naac token mint spend`): the
    /// job's escrow is paid from their wallet, within the token's caps
    #[arg(long, value_name = "TOKEN", env = "NAAC_SPEND_TOKEN")]
    spend_token: Option<String>,
    /// A data token (or a file holding one) for someone else's private stored inputs
    /// (`naac token mint data --to YOU`; repeatable); providers are handed it for the files
    /// their tasks read. Your own private data needs none
    #[arg(long, value_name = "TOKEN")]
    data_token: Vec<String>,
    /// Hidden testing aid: take the results and pay no provider, then close the escrow
    #[arg(long, hide = true)]
    testing_unpaid: bool,
    /// Hidden testing aid: extra arguments for embedded provider processes
    #[arg(long, hide = true, allow_hyphen_values = true)]
    provider_arg: Vec<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    naac_types::units::parse_duration(s)
}

/// One run of a job, as `naac run` and `naac bench` need it.
pub struct Exec {
    pub job: PathBuf,
    pub workers: Option<u32>,
    pub out: Option<PathBuf>,
    pub join: Vec<Multiaddr>,
    pub mdns: bool,
    pub provider_wait: Duration,
    pub provider_args: Vec<String>,
    /// No progress bar or banner.
    pub quiet: bool,
    /// Receives the embedded pool's worker pids once it starts.
    pub on_pool: Option<tokio::sync::oneshot::Sender<crate::embedded::Pids>>,
    pub no_wait: bool,
    /// Local workers beside the remote pool (`--local`), and whether they may run the job
    /// alone.
    pub local: u32,
    pub local_fallback: bool,
    /// Where to pay.
    pub bank: BankChoice,
    /// The escrow's claim window (`None`: the bank's default, [`DEFAULT_CLAIM_WINDOW`] for
    /// a remote bank, none for the embedded pool's).
    pub claim_window: Option<Duration>,
    /// Testing aid: pay no provider.
    pub unpaid: bool,
    /// Ends the run early, as Ctrl-C does (the escrow closed, the summary written).
    pub stop: Option<Arc<tokio::sync::Notify>>,
    /// Gets the run's progress as it changes.
    pub progress: Option<watch::Sender<requester::Progress>>,
    /// Keep the tasks whose results are in the results directory already (a job resumed
    /// after a restart, or `--resume`): they are not run (nor paid) again.
    pub resume: bool,
    /// The network identity to run under [default: the node's, from the data dir]. Jobs
    /// that run side by side in one daemon each need their own.
    pub identity: Option<naac_net::Keypair>,
    /// A pool token shown to providers (`--token`).
    pub pool_token: Option<String>,
    /// A spend token the escrow is opened with (`--spend-token`): its root's wallet pays.
    pub spend_token: Option<String>,
    /// Data tokens for others' private stored inputs (`--data-token`).
    pub data_tokens: Vec<String>,
}

/// How long providers may claim unpaid results after a run with a remote bank closes its
/// escrow, unless `--claim-window` says otherwise.
pub const DEFAULT_CLAIM_WINDOW: Duration = Duration::from_secs(600);

/// Which bank pays for a run.
#[derive(Clone, Debug)]
pub enum BankChoice {
    /// The embedded pool's own (in this process, ledger in the data dir); unpaid with --join.
    Default,
    /// A bank node.
    Remote(Multiaddr),
    /// No payments.
    None,
}

/// What a new account gets from the embedded pool's bank: the quick start's play money.
pub const EMBEDDED_GRANT: naac_types::Credits = naac_types::Credits(1_000_000 * 1_000_000);

pub enum Executed {
    /// The job file, a module or an input is wrong.
    Invalid(anyhow::Error),
    /// The bank refused to open the job's escrow (too little balance, over budget).
    Refused(String),
    Done(Box<Finished>),
}

pub async fn main(a: Args) -> anyhow::Result<ExitCode> {
    if a.explain {
        return explain(a).await;
    }
    let json = a.json;
    if let Some(dir) = &a.resume
        && !dir.is_dir()
    {
        eprintln!(
            "error: --resume {}: no such results directory\nhint: name the directory of the run to continue (its --out)",
            dir.display()
        );
        return Ok(ExitCode::from(2));
    }
    let exec = Exec {
        job: a.job,
        workers: a.workers,
        resume: a.resume.is_some(),
        out: a.out.or(a.resume),
        join: a.join,
        mdns: !a.no_mdns,
        provider_wait: a.provider_wait,
        provider_args: a.provider_arg,
        quiet: json,
        on_pool: None,
        no_wait: a.no_wait,
        local: a.local,
        local_fallback: !a.no_local_fallback,
        bank: match (a.no_pay, a.bank) {
            (true, _) => BankChoice::None,
            (false, Some(b)) => BankChoice::Remote(b),
            (false, None) => BankChoice::Default,
        },
        claim_window: a.claim_window,
        unpaid: a.testing_unpaid,
        stop: None,
        progress: None,
        identity: None,
        pool_token: a
            .pool_token
            .as_deref()
            .map(crate::token::read)
            .transpose()?,
        spend_token: a
            .spend_token
            .as_deref()
            .map(crate::token::read)
            .transpose()?,
        data_tokens: a
            .data_token
            .iter()
            .map(|t| crate::token::read(t))
            .collect::<anyhow::Result<_>>()?,
    };
    let finished = match execute(exec).await? {
        Executed::Invalid(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
        Executed::Refused(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(3));
        }
        Executed::Done(f) => f,
    };
    report(&finished, json)?;
    Ok(if finished.summary.interrupted {
        ExitCode::from(130)
    } else if finished.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

type Opened = (Home, Arc<Sandbox>, requester::PreparedJob);

/// The data dir, a sandbox, and the job checked: everything that depends on the user's
/// input is checked before anything starts. `Ok(Err(_))`: the job, a module or an input is
/// invalid.
fn open(job: &std::path::Path) -> anyhow::Result<Result<Opened, anyhow::Error>> {
    open_with(job, &requester::StoredModules::new())
}

/// [`open`], with the job's stored modules fetched already.
fn open_with(
    job: &std::path::Path,
    stored: &requester::StoredModules,
) -> anyhow::Result<Result<Opened, anyhow::Error>> {
    let home = Home::from_env()?;
    home.ensure()?;
    let sandbox = Arc::new(
        Sandbox::start(SandboxConfig::new(home.work()).with_cache_dir(home.module_cache()))
            .context("start the sandbox")?,
    );
    match requester::prepare_with(job, &sandbox, stored) {
        Ok(p) => Ok(Ok((home, sandbox, p))),
        Err(RunError::Invalid(e)) => Ok(Err(e)),
        Err(RunError::Internal(e)) => Err(e),
    }
}

pub async fn execute(a: Exec) -> anyhow::Result<Executed> {
    // Modules that are stored data are fetched first (the job is checked with them).
    let stored = match crate::store::job_modules(&a.job, &a.join, &a.data_tokens).await {
        Ok(s) => s,
        Err(RunError::Invalid(e)) => return Ok(Executed::Invalid(e)),
        Err(RunError::Internal(e)) => return Err(e),
    };
    let (home, sandbox, prepared) = match open_with(&a.job, &stored)? {
        Ok(x) => x,
        Err(e) => return Ok(Executed::Invalid(e)),
    };
    let out_dir = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("naac-out").join(format!("{}-{}", prepared.job.name, prepared.id.short()))
    });
    let total = prepared.job.task_count();
    let keep = if a.resume {
        if let Err(e) = requester::stages::check_resumable(&out_dir, &prepared) {
            return Ok(Executed::Invalid(e));
        }
        let kept = requester::stages::kept(&out_dir, &prepared.stages, total as u32);
        if !kept.is_empty() && !a.quiet {
            eprintln!(
                "naac: resuming {}: {} of {total} tasks kept, {} to run",
                out_dir.display(),
                kept.len(),
                total - kept.len() as u64
            );
        }
        kept
    } else {
        Vec::new()
    };

    let keypair = match &a.identity {
        Some(k) => k.clone(),
        None => {
            naac_net::load_or_create_identity(&home.identity()).context("load the node identity")?
        }
    };
    let embedded = a.join.is_empty();
    let listen: Multiaddr = if embedded {
        "/ip4/127.0.0.1/tcp/0"
    } else {
        "/ip4/0.0.0.0/tcp/0"
    }
    .parse()
    .expect("valid multiaddr");
    let (client, mut events) = naac_net::start(
        keypair,
        naac_net::Config {
            listen: vec![listen],
            join: a.join.clone(),
            mdns: !embedded && a.mdns,
            ..naac_net::Config::default()
        },
    )
    .await?;

    // The embedded pool starts first: its workers start up while the bank loads its ledger
    // and the escrow opens (they run nothing before the job is paid for).
    let mut pool = None;
    // The embedded pool's workers are all the bidders there will be.
    let mut bidders = None;
    if embedded {
        // Wait until we listen, then start providers that dial us.
        let addr = loop {
            match events.recv().await {
                Some(naac_net::Event::Listening(_)) => {
                    let addrs = client.listen_addrs().await;
                    if let Some(a) = addrs.into_iter().next() {
                        break a;
                    }
                }
                Some(other) => tracing::debug!("before the pool started: {other:?}"),
                None => anyhow::bail!("the network stopped before listening"),
            }
        };
        // Copies of a task need distinct providers: enough workers for the job's replicas.
        let v = &prepared.job.verify;
        let copies = if v.compares() { v.replicas.max(2) } else { 1 };
        let workers = a
            .workers
            .unwrap_or_else(|| crate::node::cores().max(copies))
            .max(1);
        let p = Pool::start(workers, 1, &addr, &a.provider_args)?;
        if let Some(tx) = a.on_pool {
            let _ = tx.send(p.pids());
        }
        pool = Some(p);
        bidders = Some(workers as usize);
    }
    // Pay first: a job the user cannot pay for is refused before anything runs.
    let user = user_key(&home)?;
    let paid: anyhow::Result<Result<_, String>> = async {
        let bank = match &a.bank {
            BankChoice::None => None,
            BankChoice::Default if !embedded => None,
            BankChoice::Default => Some(crate::bank::embedded(&home, &user).await?),
            BankChoice::Remote(addr) => Some(crate::bank::connect(&client, addr).await?),
        };
        // A run into this directory that crashed left its escrow open: close it out first.
        if let Some(bank) = &bank {
            reclaim_escrow(&out_dir, bank, &user).await;
        }
        let payment = match bank {
            None => None,
            Some(bank) => {
                let claim_window = a.claim_window.unwrap_or(match a.bank {
                    BankChoice::Remote(_) => DEFAULT_CLAIM_WINDOW,
                    _ => Duration::ZERO,
                });
                let opened = naac_node::escrow::open(
                    &out_dir,
                    bank,
                    &user,
                    (&prepared.job, prepared.id, total),
                    (claim_window, a.spend_token.as_deref()),
                )
                .await;
                match opened {
                    Ok(escrow) => Some(requester::Payment {
                        escrow,
                        user: user.clone(),
                        // The embedded pool's bank is this machine's, and so are its workers:
                        // its operator vouches for each, so their asks set each other's prices.
                        operator: match (&a.bank, embedded) {
                            (BankChoice::Default, true) => Some(naac_node::bank::bank_key(&home)?),
                            _ => None,
                        },
                        unpaid: a.unpaid,
                    }),
                    Err(e @ naac_node::pay::PayError::Insufficient { .. }) => {
                        return Ok(Err(format!(
                            "{e}\nhint: the escrow holds the tasks in flight, each at max_price ({} credits per giga-fuel) x limits.fuel ({}); lower [budget] max_price or [limits] fuel in the job file{}",
                            prepared.job.budget.max_price,
                            prepared.job.limits.fuel,
                            if embedded {
                                ", or run with --no-pay"
                            } else {
                                ", or ask the bank for credits"
                            }
                        )));
                    }
                    Err(e @ naac_node::pay::PayError::OverBudget { .. }) => {
                        return Ok(Err(format!(
                            "{e}\nhint: the worst case is max_price ({} credits per giga-fuel) x limits.fuel ({}) x {} copies; raise [budget] max_cost, or lower max_price or [limits] fuel in the job file",
                            prepared.job.budget.max_price,
                            prepared.job.limits.fuel,
                            naac_node::pay::expected_copies(&prepared.job, total),
                        )));
                    }
                    Err(e) => anyhow::bail!("{e}"),
                }
            }
        };
        Ok(Ok(payment))
    }
    .await;
    let payment = match paid {
        Ok(Ok(payment)) => payment,
        refused => {
            // Nothing ran: the pool's workers go.
            if let Some(p) = pool.take() {
                p.stop().await;
            }
            return match refused {
                Ok(Err(why)) => Ok(Executed::Refused(why)),
                Err(e) => Err(e),
                Ok(Ok(_)) => unreachable!("matched above"),
            };
        }
    };
    let escrow = payment.as_ref().map(|p| p.escrow.clone());
    let user_for_reclaim = user.clone();
    if let Some(p) = &payment
        && !a.quiet
    {
        eprintln!(
            "naac: escrow of {} credits opened (balance was {}; max price {} credits per giga-fuel)",
            p.escrow.amount, p.escrow.balance_before, p.escrow.max_price
        );
    }
    if let (Some(workers), false) = (bidders, a.quiet) {
        eprintln!(
            "naac: job {} ({total} tasks) on an embedded pool of {workers} providers",
            prepared.job.name
        );
    }

    // Local workers name an owner of their own, so the run knows them (and never puts two
    // copies of a task on this machine).
    // The name carries a secret of this run (a fresh key's id), so no remote host can pass
    // for one of its local workers.
    let secret = naac_net::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_string();
    let local_owner = format!("local-{}", &secret[secret.len() - 16..]);
    if !embedded && a.local > 0 {
        let p = start_local(&client, a.local, &local_owner, &a.provider_args).await?;
        pool = Some(p);
    }
    if !embedded && !a.quiet {
        eprintln!(
            "naac: job {} ({total} tasks) on providers reached via {}{}",
            prepared.job.name,
            a.join
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            match a.local {
                0 => String::new(),
                n => format!(" and {n} local workers"),
            }
        );
    }

    let (ptx, prx) = watch::channel(Progress::default());
    if let Some(out) = a.progress.clone() {
        let mut rx = prx.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                out.send_replace(rx.borrow_and_update().clone());
            }
        });
    }
    let bar = progress_bar(total, prx, a.quiet);
    let stop = a.stop.clone();
    let shutdown = async move {
        match stop {
            Some(s) => tokio::select! {
                _ = crate::shutdown_signal() => {}
                _ = s.notified() => {}
            },
            None => crate::shutdown_signal().await,
        }
    };
    let opts = Options {
        out_dir: out_dir.clone(),
        sched: naac_sched::Config {
            retries: prepared.job.retries,
            ..naac_sched::Config::default()
        },
        provider_wait: a.provider_wait,
        reputation: Some(home.reputation_db()),
        user_key: Some(user),
        no_wait: a.no_wait,
        payment,
        keep,
        store_home: prepared.job.output_store.then(|| home.clone()),
        local: (a.local > 0).then(|| requester::Local {
            owner: local_owner.clone(),
            workers: a.local,
            fallback: a.local_fallback,
        }),
        bidders,
        data_tokens: a.data_tokens.clone(),
        pass: a.pool_token.clone().map(|token| naac_proto::Pass {
            token,
            job_name: prepared.job.name.clone(),
        }),
    };
    let output_store = prepared.job.output_store;
    let store_client = client.clone();
    let mut result = requester::run(prepared, client, events, sandbox, opts, ptx, shutdown).await;
    bar.abort();
    let _ = bar.await;
    if let Ok(f) = &mut result
        && output_store
        && !f.summary.interrupted
    {
        let kept =
            crate::store::keep_results(&store_client, &home, &user_for_reclaim, &out_dir).await;
        if let Some(e) = &kept.error {
            eprintln!("warning: the results were not kept in the store: {e}");
        }
        f.summary.store = Some(kept);
        naac_node::output::write_json_atomic(&out_dir.join("summary.json"), &f.summary)?;
    }
    if let Some(e) = &escrow {
        // Paid and refunded: nothing to reclaim; else the logged payments are sent again
        // and the rest refunded now if the bank answers (or by the next run into the dir).
        let settled = matches!(&result, Ok(f) if f.summary.cost.as_ref().is_some_and(|c| !c.open));
        if let Some((job, c)) =
            naac_node::escrow::close(&out_dir, e, &user_for_reclaim, settled).await
        {
            eprintln!(
                "naac: refunded {c} credits left in the escrow of an interrupted run (job {})",
                job.short()
            );
        }
    }
    if let Some(p) = pool {
        p.stop().await;
    }
    match result {
        Ok(f) => Ok(Executed::Done(Box::new(f))),
        Err(RunError::Invalid(e)) => Ok(Executed::Invalid(e)),
        Err(RunError::Internal(e)) => Err(e),
    }
}

fn progress_bar(
    total: u64,
    mut rx: watch::Receiver<Progress>,
    quiet: bool,
) -> tokio::task::JoinHandle<()> {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} tasks  {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    tokio::spawn(async move {
        let guard = BarGuard(bar.clone());
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            let s = p.sched;
            let done = (s.succeeded + s.failed) as u64;
            bar.set_position(done);
            let secs = p.elapsed.as_secs_f64().max(0.001);
            let rate = done as f64 / secs;
            let eta = if rate > 0.0 && done < total {
                format!("  ETA {:.0}s", (total - done) as f64 / rate)
            } else {
                String::new()
            };
            if let Some(why) = &p.waiting {
                bar.set_message(format!("waiting: no host may run it now: {why}"));
                continue;
            }
            let providers = if s.providers == 0 {
                "waiting for providers".to_string()
            } else {
                format!("{} providers", s.providers)
            };
            let checks = if s.verified > 0 || s.disagreements > 0 {
                format!("  verified {}  disputed {}", s.verified, s.disagreements)
            } else {
                String::new()
            };
            let cost = match p.cost {
                Some(c) => format!("  cost {c} credits"),
                None => String::new(),
            };
            bar.set_message(format!(
                "running {}  failed {}{checks}{cost}  {rate:.1} tasks/s{eta}  ({providers})",
                s.running, s.failed
            ));
        }
        drop(guard);
    })
}

/// Clears the bar however the progress task ends (including `abort`).
struct BarGuard(ProgressBar);

impl Drop for BarGuard {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Reclaims the escrow a crashed run into `out_dir` left open, saying so.
async fn reclaim_escrow(
    out_dir: &std::path::Path,
    bank: &naac_node::pay::BankConn,
    user: &naac_net::Keypair,
) {
    if let Some((job, c)) = naac_node::escrow::reclaim(out_dir, bank, user).await {
        eprintln!(
            "naac: refunded {c} credits left in the escrow of an interrupted run (job {})",
            job.short()
        );
    }
}

/// Starts `workers` local worker processes that dial this run over loopback, under the
/// owner name `owner`.
async fn start_local(
    client: &naac_net::Client,
    workers: u32,
    owner: &str,
    extra: &[String],
) -> anyhow::Result<Pool> {
    let t0 = std::time::Instant::now();
    let addr = loop {
        let addrs = client.listen_addrs().await;
        let port = addrs.iter().find_map(|a| {
            a.iter().find_map(|p| match p {
                naac_net::Protocol::Tcp(port) => Some(port),
                _ => None,
            })
        });
        if let Some(port) = port {
            break format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", client.peer_id())
                .parse::<Multiaddr>()
                .context("the local workers' address")?;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "the run did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut args = extra.to_vec();
    args.extend(["--owner".to_string(), owner.to_string()]);
    Pool::start(workers, 1, &addr, &args)
}

/// The user's key (made on first use): attests each run's throwaway identity to providers.
pub fn user_key(home: &Home) -> anyhow::Result<naac_net::Keypair> {
    naac_net::load_or_create_identity(&home.user_identity()).context("load the user key")
}

/// How long `--explain` (and `naac pool`) listen for hosts.
pub const SURVEY_WAIT: Duration = Duration::from_secs(2);

impl Args {
    fn mdns_on(&self) -> bool {
        !self.no_mdns
    }
}
