//! `naac`: pool the machines you have into one computer.
//!
//! The binary is glue: it parses arguments, sets up logging and calls into `naac-node`.
//! One file per command.

mod bank;
mod bench;
mod daemon;
mod embedded;
mod jobs;
mod key;
mod manual;
mod market;
mod node;
mod policy;
mod pool;
mod reach;
mod reputation;
mod run;
mod service;
mod sim;
mod store;
mod token;
mod wallet;

use clap::{CommandFactory as _, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "naac",
    version,
    about = "Network as a Computer: pool machines and run sandboxed WebAssembly jobs on them",
    long_about = "Network as a Computer: pool the idle machines you have into one computer and \
run sandboxed, deterministic WebAssembly jobs on them.\n\n\
Quick start (no set-up; uses this machine's cores):\n  naac run examples/pi/job.toml",
    after_help = "Data dir: $NAAC_HOME (default ~/.local/share/naac). Logs: RUST_LOG=naac=debug."
)]
struct Cli {
    /// More log output on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a job file and collect its results
    Run(run::Args),
    /// Run a node of the pool: with no role, a requester node that runs jobs handed to it
    /// (`naac submit`); `--provide` to run tasks for others, `--bank`, `--relay`
    Node(node::Args),
    /// Show this node's identity
    #[command(subcommand)]
    Key(key::Cmd),
    /// Show the pool as one computer: every host in view, its resources, free slots, policy
    /// state, ask, latency and reputation here, and the totals
    Pool(pool::Args),
    /// Show, change or check this machine's usage policy (when and how much it shares)
    #[command(subcommand)]
    Policy(policy::Cmd),
    /// Pause this machine's node: running tasks stop within a second, resume later
    Pause(policy::PauseArgs),
    /// Resume a node paused with `naac pause`
    Resume,
    /// List the providers this machine has used, with their verified/rejected/lost counts
    Reputation(reputation::Args),
    /// The market: every live offer in view (asking price, free slots, cores, speed)
    Market(market::Args),
    /// Your credits: balance, history, and an independent check of the bank's ledger
    #[command(subcommand)]
    Wallet(wallet::Cmd),
    /// The bank operator's commands (grant credits)
    #[command(subcommand)]
    Bank(bank::Cmd),
    /// Measure throughput, latency, scaling, sandbox and verification overhead
    Bench(bench::Args),
    /// Hand a job to the local node (`naac node`), which runs it whether or not this
    /// terminal stays open; prints its id
    Submit(jobs::SubmitArgs),
    /// The jobs on the local node: queued, running, done, failed, cancelled
    Jobs(jobs::ListArgs),
    /// One job on the local node (--watch follows it until it ends)
    Status(jobs::JobArgs),
    /// Cancel a queued or running job on the local node
    Cancel(jobs::JobArgs),
    /// Where a job's results are (the layout of `naac run`'s), or a copy of them (--out)
    Results(jobs::ResultsArgs),
    /// The local node's API: narrower tokens, the dashboard's login address
    #[command(subcommand)]
    Api(jobs::ApiCmd),
    /// Keep files on the pool's storage hosts, erasure-coded, audited and repaired
    #[command(subcommand)]
    Store(store::Cmd),
    /// Capability tokens: let others use your providers, with limits they can narrow and
    /// hand on but never widen
    #[command(subcommand)]
    Token(token::Cmd),
    /// Simulate a pool deterministically: the real scheduler with simulated hosts, churn,
    /// cheaters and a job stream; figures, broken invariants and a replayable trace
    Sim(sim::Args),
    /// Run `naac node` as a systemd service: install once, and it comes back after a reboot
    #[command(subcommand)]
    Service(service::Cmd),
    /// Print a completion script for your shell (see the README for where it goes)
    Completions(manual::CompletionsArgs),
    /// Print the man page, every command included (`naac man > naac.1; man -l naac.1`)
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match (&cli.command, cli.verbose) {
        (_, 2..) => "debug",
        (_, 1) => "info",
        (Cmd::Node(_), 0) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // wasmtime-wasi warns on every socket call a guest makes: a guest could flood the
        // provider's log with them.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{default_level},wasmtime_wasi=error"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();

    // One thread drives all networking and bookkeeping; guests and disk writes run on the
    // blocking pool. Measured: a multi-threaded runtime spends more time waking its own
    // threads than doing the work, on a no-op-task flood.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Run(a) => run::main(a).await,
            Cmd::Node(a) => node::main(a).await,
            Cmd::Key(c) => key::main(c).await,
            Cmd::Reputation(a) => reputation::main(a).await,
            Cmd::Pool(a) => pool::main(a).await,
            Cmd::Policy(c) => policy::main(c).await,
            Cmd::Pause(a) => policy::pause(a).await,
            Cmd::Resume => policy::resume().await,
            Cmd::Bench(a) => bench::main(a).await,
            Cmd::Wallet(c) => wallet::main(c).await,
            Cmd::Bank(c) => bank::main(c).await,
            Cmd::Market(a) => market::main(a).await,
            Cmd::Submit(a) => jobs::submit(a).await,
            Cmd::Jobs(a) => jobs::list(a).await,
            Cmd::Status(a) => jobs::status(a).await,
            Cmd::Cancel(a) => jobs::cancel(a).await,
            Cmd::Results(a) => jobs::results(a).await,
            Cmd::Api(c) => jobs::api(c),
            Cmd::Token(c) => token::main(c).await,
            Cmd::Store(c) => store::main(c).await,
            Cmd::Sim(a) => sim::main(a).await,
            Cmd::Service(c) => service::main(c, Cli::command()).await,
            Cmd::Completions(a) => {
                manual::completions(a, Cli::command()).map(|()| ExitCode::SUCCESS)
            }
            Cmd::Man => manual::man(Cli::command()).map(|()| ExitCode::SUCCESS),
        }
    });
    // Do not wait for blocking threads (a guest still winding down) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Resolves on Ctrl-C (or SIGTERM on Unix).
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
