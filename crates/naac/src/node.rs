//! `naac node`: run a node of the pool.

use anyhow::Context as _;
use naac_net::Multiaddr;
use naac_node::Home;
use naac_node::provider::{self, ProviderConfig};
use std::process::ExitCode;
use tokio::io::AsyncReadExt;

#[derive(clap::Args)]
pub struct Args {
    /// Run tasks for requesters that reach this node
    #[arg(long)]
    provide: bool,
    /// Lend disk: hold shards of data others store (`naac store put`), within the owner's
    /// storage_quota and min_free_disk
    #[arg(long)]
    store: bool,
    /// With --store: asking price in credits per GiB-day of storage
    #[arg(long, value_name = "CREDITS", requires = "store", value_parser = parse_price)]
    store_price: Option<naac_types::Price>,
    /// Testing aid: a storage host that answers every read with garbage
    #[arg(long, hide = true, requires = "store")]
    store_garbage: bool,
    /// How often, on average, each shard of data this data dir's user stored is audited (and
    /// repaired when too few pass)
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = crate::run::parse_duration)]
    audit_every: std::time::Duration,
    /// Keep the pool's accounts: balances, escrows, payments and the signed ledger
    /// (requesters and wallets reach it with --bank ADDR)
    #[arg(long)]
    bank: bool,
    /// Serve as a circuit relay, AutoNAT server and bootstrap node for hosts behind NAT
    /// (give it a public address with --listen); they join it with --join ADDR
    #[arg(long)]
    relay: bool,
    /// With --relay: most hosts holding a reservation at once
    #[arg(long, value_name = "N", default_value_t = 128, requires = "relay")]
    relay_reservations: usize,
    /// With --relay: most relayed connections at once (and 4 per host)
    #[arg(long, value_name = "N", default_value_t = 32, requires = "relay")]
    relay_circuits: usize,
    /// With --relay: most bytes one relayed connection carries each way (signalling and
    /// small jobs, not bulk data: hosts hole-punch a direct connection for that)
    #[arg(long, value_name = "SIZE", default_value = "16MiB", requires = "relay", value_parser = naac_types::units::parse_size)]
    relay_circuit_bytes: u64,
    /// With --relay: longest one relayed connection lasts
    #[arg(long, value_name = "DURATION", default_value = "10m", requires = "relay", value_parser = crate::run::parse_duration)]
    relay_circuit_duration: std::time::Duration,
    /// The bank's ledger: a SQLite path (default: bank/ledger.db in the data dir) or a
    /// PostgreSQL connection string (postgres://... or "host=... dbname=...")
    #[arg(long, value_name = "URL", requires = "bank", env = "NAAC_LEDGER")]
    ledger: Option<String>,
    /// Run a faucet: every new account gets CREDITS with its first valid request, at most
    /// --faucet-rate grants an hour in all. Without it the bank mints nothing on its own;
    /// credits come from `naac bank grant USER AMOUNT` (keys are free: an open faucet
    /// would let anyone mint without bound)
    #[arg(long, value_name = "CREDITS", requires = "bank", value_parser = parse_credits)]
    faucet: Option<naac_types::Credits>,
    /// Most faucet grants an hour, all accounts together, e.g. 60/h
    #[arg(long, value_name = "N/h", default_value = "60/h", requires = "faucet", value_parser = parse_rate)]
    faucet_rate: u32,
    /// Asking price in credits per giga-fuel, before the owner's time-window multiplier;
    /// the policy's min_price is the floor [default: 0.1]
    #[arg(long, value_name = "CREDITS", value_parser = parse_price)]
    price: Option<naac_types::Price>,
    /// The bank this provider is paid at (its "listening on" address): it bids only for jobs
    /// whose escrow is there, and runs paid work only while the bank shows that escrow pays
    /// for it; with --store and a --store-price, it keeps only shards escrowed there
    /// [default: take the requester's word]
    #[arg(long, value_name = "MULTIADDR")]
    paid_at: Option<naac_net::Multiaddr>,
    /// With --paid-at: the shortest claim window a job's escrow must give, during which this
    /// node claims results the payer left unpaid once it closes the escrow
    #[arg(long, value_name = "DURATION", default_value = "60s", requires = "paid_at", value_parser = crate::run::parse_duration)]
    min_claim_window: std::time::Duration,
    /// Tasks run at once [default: the number of cores]
    #[arg(long, value_name = "N")]
    slots: Option<u32>,
    /// Address to listen on (repeatable)
    #[arg(long, value_name = "MULTIADDR", default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Vec<Multiaddr>,
    /// Peer to dial at start, e.g. /ip4/192.168.1.5/tcp/4001/p2p/12D3K... (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    join: Vec<Multiaddr>,
    /// Do not discover peers on the local network (mDNS)
    #[arg(long)]
    no_mdns: bool,
    /// Who runs this node (any name); requesters never put two copies of one task on
    /// nodes of the same owner
    #[arg(long, value_name = "NAME")]
    owner: Option<String>,
    /// Testing aid: for a fraction of tasks, return wrong outputs (wrong:0.3) or claim the
    /// whole fuel limit (fuel:0.3)
    #[arg(long, hide = true, value_name = "wrong:F|fuel:F", value_parser = parse_faulty)]
    faulty: Option<naac_node::provider::Fault>,
    /// Testing aid: hold every result for N times its run time
    #[arg(long, hide = true, value_name = "N", default_value_t = 1.0)]
    slowdown: f64,
    /// Use a throwaway identity instead of the data dir's key, and no owner policy (embedded
    /// pools, tests)
    #[arg(long, hide = true)]
    ephemeral: bool,
    /// Exit when stdin closes (set by the process that started this node)
    #[arg(long, hide = true)]
    exit_with_parent: bool,
    /// Serve the HTTP API (jobs submitted with `naac submit`, …) on this address
    /// [default: 127.0.0.1:7878; a node with a role goes on without it if that is taken]
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "NAAC_API",
        conflicts_with = "no_api"
    )]
    api: Option<String>,
    /// Do not serve the HTTP API (and take no submitted jobs)
    #[arg(long)]
    no_api: bool,
    /// Most submitted jobs waiting at once; a submit beyond is refused (HTTP 429)
    #[arg(long, value_name = "N", default_value_t = naac_node::jobs::MAX_QUEUED)]
    max_queued: usize,
    /// Most submitted jobs running at once [default: 2 on a pool joined with --join, where
    /// they share its providers; 1 on the embedded pool, which takes this machine's cores]
    #[arg(long, value_name = "N")]
    max_running: Option<usize>,
    /// Largest job submit (the job file and every file it names; HTTP 413 beyond)
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = naac_types::units::parse_size)]
    max_upload: u64,
}

pub async fn main(a: Args) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    home.ensure()?;
    let roles: Vec<&str> = [
        (a.provide, "provider"),
        (a.store, "store"),
        (a.bank, "bank"),
        (a.relay, "relay"),
    ]
    .into_iter()
    .filter_map(|(on, r)| on.then_some(r))
    .collect();
    if roles.is_empty() {
        return requester(a, &home).await;
    }
    // The API and its job queue: on by default on a node of its own (not an embedded
    // pool's worker); a node with a role goes on without it if the address is taken.
    let mut daemon = None;
    if !a.no_api && !a.ephemeral {
        let addr = a
            .api
            .clone()
            .unwrap_or_else(|| naac_api::DEFAULT_ADDR.into());
        let info = node_info(&roles, &a.join);
        match crate::daemon::start(&home, daemon_config(&a, addr, info)).await {
            Ok((at, d)) => {
                tracing::info!("api on http://{at}");
                daemon = Some(d);
            }
            Err(e) if a.api.is_none() => tracing::warn!(
                "no HTTP API: {e:#} (another node has it?); pass --api HOST:PORT to serve it elsewhere"
            ),
            Err(e) => return Err(e),
        }
    }
    let bank = if a.bank {
        let faucet = naac_node::bank::Faucet {
            amount: a.faucet.unwrap_or_default(),
            per_hour: Some(a.faucet_rate),
        };
        let h = naac_node::bank::start_in_home(&home, a.ledger.clone(), faucet)?;
        match a.faucet {
            Some(c) => tracing::info!(
                "faucet: {c} credits per new account, at most {}/h",
                a.faucet_rate
            ),
            None => tracing::info!("no faucet: credits come from `naac bank grant`"),
        }
        tracing::info!("bank key {}", naac_types::hex(&h.key().0));
        Some(h)
    } else {
        None
    };
    let keypair = if a.ephemeral {
        naac_net::Keypair::generate_ed25519()
    } else {
        naac_net::load_or_create_identity(&home.identity()).context("load the node identity")?
    };
    let slots = a.slots.unwrap_or_else(cores).max(1);
    if a.paid_at.is_some() && !a.provide && !a.store {
        eprintln!(
            "error: --paid-at is for nodes that earn: add --provide (tasks) or --store (disk)"
        );
        return Ok(ExitCode::from(2));
    }
    if !(1.0..=1000.0).contains(&a.slowdown) {
        eprintln!(
            "error: --slowdown {} is out of range\nhint: use a factor from 1 to 1000",
            a.slowdown
        );
        return Ok(ExitCode::from(2));
    }
    let mut config = ProviderConfig::new(
        home,
        slots,
        naac_net::Config {
            listen: a.listen,
            join: a.join,
            mdns: !a.no_mdns,
            relay: a.relay.then(|| naac_net::RelayLimits {
                max_reservations: a.relay_reservations,
                max_circuits: a.relay_circuits,
                circuit_bytes: a.relay_circuit_bytes,
                circuit_duration: a.relay_circuit_duration,
                ..naac_net::RelayLimits::default()
            }),
            // A provider is reachable through the relays it joins, NAT or not.
            reserve: a.provide,
            ..naac_net::Config::default()
        },
    );
    config.owner = a.owner;
    config.faulty = a.faulty;
    config.slowdown = a.slowdown;
    config.owner_policy = !a.ephemeral && a.provide;
    config.price = a.price.unwrap_or(DEFAULT_PRICE);
    config.paid_at = a.paid_at.clone();
    config.min_claim_window = a.min_claim_window;
    config.bank = bank;
    config.provide = a.provide;
    config.store = a.store;
    config.store_price = a.store_price.unwrap_or_default();
    config.store_fault = a
        .store_garbage
        .then_some(naac_node::store::host::StoreFault::Garbage);
    config.owner_policy = config.owner_policy || (!a.ephemeral && a.store);
    if !a.ephemeral {
        crate::store::spawn_auditor(&config.home, &config.net.join, a.audit_every);
    }
    let (listen_tx, mut listen_rx) = tokio::sync::mpsc::channel::<Multiaddr>(16);
    tokio::spawn(async move {
        // One line per address, for people and for scripts (`listening on MULTIADDR`).
        // Whoever started us may stop reading after the first line: not an error.
        while let Some(a) = listen_rx.recv().await {
            if let Some(d) = &daemon {
                d.add_address(a.to_string());
            }
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {a}").and_then(|()| out.flush());
        }
    });
    let exit_with_parent = a.exit_with_parent;
    let shutdown = async move {
        if exit_with_parent {
            tokio::select! {
                _ = crate::shutdown_signal() => {}
                _ = stdin_closed() => {}
            }
        } else {
            crate::shutdown_signal().await
        }
    };
    provider::run(config, keypair, Some(listen_tx), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `naac node` with no role: a requester daemon, its API and job queue.
async fn requester(a: Args, home: &Home) -> anyhow::Result<ExitCode> {
    if a.no_api {
        eprintln!(
            "error: nothing to do: a node with no role serves the API for submitted jobs\nhint: drop --no-api, or give the node a role: --provide [--slots N] to run tasks, --bank to keep a pool's accounts, --relay to let hosts behind NAT be reached"
        );
        return Ok(ExitCode::from(2));
    }
    let addr = a
        .api
        .clone()
        .unwrap_or_else(|| naac_api::DEFAULT_ADDR.into());
    let info = node_info(&["requester"], &a.join);
    let (at, _daemon) = crate::daemon::start(home, daemon_config(&a, addr, info)).await?;
    crate::store::spawn_auditor(home, &a.join, a.audit_every);
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "api on http://{at}").and_then(|()| out.flush());
    }
    tracing::info!(
        "requester node up: jobs submitted with `naac submit` run {}",
        if a.join.is_empty() {
            "on an embedded pool on this machine".to_string()
        } else {
            format!(
                "on the pool reached through {}",
                a.join
                    .iter()
                    .map(|j| j.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    crate::shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}

fn daemon_config(a: &Args, api: String, node: serde_json::Value) -> crate::daemon::Config {
    crate::daemon::Config {
        api,
        join: a.join.clone(),
        mdns: !a.no_mdns,
        max_queued: a.max_queued,
        max_running: a
            .max_running
            .unwrap_or(if a.join.is_empty() { 1 } else { 2 }),
        max_upload: usize::try_from(a.max_upload).unwrap_or(usize::MAX),
        node,
    }
}

/// What `GET /v1/node` says.
fn node_info(roles: &[&str], join: &[Multiaddr]) -> serde_json::Value {
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "roles": roles,
        "join": join.iter().map(|j| j.to_string()).collect::<Vec<_>>(),
    })
}

async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// What a provider asks when neither `--price` nor its policy's `min_price` says more:
/// 0.1 credits per giga-fuel.
pub const DEFAULT_PRICE: naac_types::Price = naac_types::Price(100_000);

/// `N/h`: a number of grants an hour.
fn parse_rate(s: &str) -> Result<u32, String> {
    let n = s
        .strip_suffix("/h")
        .ok_or_else(|| format!("{s:?} is not a rate; write it as N/h, e.g. 60/h"))?;
    n.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a rate; write it as N/h, e.g. 60/h"))
}

pub(crate) fn parse_credits(s: &str) -> Result<naac_types::Credits, String> {
    naac_types::Credits::parse(s)
}

pub(crate) fn parse_price(s: &str) -> Result<naac_types::Price, String> {
    naac_types::Price::parse(s)
}

/// `wrong:FRACTION` with a fraction from 0 to 1.
/// `wrong:FRACTION` (wrong outputs) or `fuel:FRACTION` (overbilling), a fraction from 0 to 1.
fn parse_faulty(s: &str) -> Result<naac_node::provider::Fault, String> {
    use naac_node::provider::Fault;
    let bad =
        || format!("{s:?} is not a fault; write wrong:FRACTION or fuel:FRACTION, e.g. wrong:0.3");
    let (kind, f) = s.split_once(':').ok_or_else(bad)?;
    let v: f64 = f
        .parse()
        .map_err(|_| format!("{f:?} is not a number; write e.g. wrong:0.3"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} is not a fraction from 0 to 1"));
    }
    match kind {
        "wrong" => Ok(Fault::Wrong(v)),
        "fuel" => Ok(Fault::Fuel(v)),
        _ => Err(bad()),
    }
}

pub fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}
