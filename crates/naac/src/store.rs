//! `naac store put | get | status | ls | rm`: data kept erasure-coded on the pool's storage
//! hosts (`naac node --store`), named by `naac://<id>`, signed with this data dir's user key.

use crate::reach::Reach;
use anyhow::Context as _;
use naac_node::Home;
use naac_node::store::{self, Catalog, audit, get, put};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod via;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Store a file or directory on the pool's storage hosts; prints its naac:// id
    Put(PutArgs),
    /// Fetch stored data (any k shards) into a new path
    Get(GetArgs),
    /// Shards, hosts, health, audits and repairs of data you stored
    Status(StatusArgs),
    /// What you stored
    Ls(LsArgs),
    /// Remove stored data from its hosts
    Rm(RmArgs),
    /// Hand another node the right to audit and repair data you stored: writes a bundle
    /// (the manifest, where its shards are, and your signed whole-shard challenges)
    Delegate(DelegateArgs),
    /// Audit and repair data someone delegated to you (a bundle from `naac store delegate`);
    /// this data dir's node then does it
    Adopt(AdoptArgs),
}

#[derive(clap::Args)]
pub struct DelegateArgs {
    /// naac://<id>
    url: String,
    /// Where to write the bundle [default: stdout]
    #[arg(short, long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct AdoptArgs {
    /// The bundle `naac store delegate` wrote
    bundle: PathBuf,
}

#[derive(clap::Args)]
pub struct PutArgs {
    /// File or directory to store
    path: PathBuf,
    /// Shards that suffice to rebuild the data
    #[arg(long, default_value_t = naac_store::DEFAULT_K)]
    k: u16,
    /// Shards made, each on its own host (n/k is the space overhead)
    #[arg(long, default_value_t = naac_store::DEFAULT_N)]
    n: u16,
    /// Least number of hosts that must take a shard for the put to count [default: halfway
    /// from k to n]
    #[arg(long, value_name = "HOSTS")]
    happy: Option<u16>,
    /// Days the hosts keep it
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Give up after this long
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::run::parse_duration)]
    timeout: Duration,
    /// How long to look for storage hosts
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = crate::run::parse_duration)]
    discover: Duration,
    /// Pay the hosts through this bank (a node started with `naac node --bank`): the whole
    /// term is escrowed there now, each host is paid per audit its shards pass, and
    /// `naac store rm` refunds the rest [default: unpaid; only hosts that ask nothing]
    #[arg(long, value_name = "ADDR")]
    bank: Option<naac_net::Multiaddr>,
    /// Pay at most this many credits per GiB-day to a host (hosts asking more are passed over)
    #[arg(long, value_name = "CREDITS", requires = "bank", value_parser = crate::node::parse_price)]
    max_price: Option<naac_types::Price>,
    /// Hosts serve it only to you and to holders of a data token you mint (`naac token mint
    /// data`) [default: to anyone who has its id]
    #[arg(long)]
    private: bool,
    /// Store the file in another user's name through their node's API (`host:port`), with
    /// the data token they gave you (--token); it is private to them
    #[arg(long, value_name = "ADDR", requires = "token")]
    via: Option<String>,
    /// With --via: the data token (or a file holding it) that lets you write
    #[arg(long, value_name = "TOKEN", requires = "via")]
    token: Option<String>,
    /// With --via: the file's path inside the stored tree [default: its name]
    #[arg(long = "as", value_name = "PATH", requires = "via")]
    at: Option<String>,
    #[command(flatten)]
    reach: Reach,
    /// Print the outcome as JSON
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// naac://<id>, or naac://<id>/<path> for one file of a stored directory
    url: String,
    /// Where to put it (a new path) [default: the stored name, here]
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// How long to look for its hosts
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = crate::run::parse_duration)]
    discover: Duration,
    /// A data token (or a file holding it) for someone else's private data (`naac token
    /// mint data --to YOU`); your own private data needs none
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Read one file through its owner's node API (`host:port`) instead of from the storage
    /// hosts, with --token (their node checks the token's exact path)
    #[arg(long, value_name = "ADDR", requires = "token")]
    via: Option<String>,
    #[command(flatten)]
    reach: Reach,
    /// Print the outcome as JSON
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// naac://<id>
    url: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct LsArgs {
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// naac://<id>
    url: String,
    #[command(flatten)]
    reach: Reach,
}

pub async fn main(c: Cmd) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    home.ensure()?;
    match c {
        Cmd::Put(a) => put_cmd(a, &home).await,
        Cmd::Get(a) => get_cmd(a).await,
        Cmd::Status(a) => status_cmd(a, &home),
        Cmd::Ls(a) => ls_cmd(a, &home),
        Cmd::Rm(a) => rm_cmd(a, &home).await,
        Cmd::Delegate(a) => delegate_cmd(a, &home),
        Cmd::Adopt(a) => adopt_cmd(a, &home),
    }
}

fn delegate_cmd(a: DelegateArgs, home: &Home) -> anyhow::Result<ExitCode> {
    let (id, _) = store::parse_url(&a.url)?;
    let user = user_key(home)?;
    let catalog = Catalog::open(&home.store_db())?;
    let bundle = store::delegate::export(&catalog, &user, &id)?;
    let text = serde_json::to_string_pretty(&bundle)?;
    let handed: usize = bundle.shards.iter().map(|s| s.challenges.len()).sum();
    match &a.out {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("write {}", p.display()))?;
            eprintln!(
                "wrote {}: naac://{id} with {handed} whole-shard challenges (yours audit with chunk reads from now on)",
                p.display()
            );
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn adopt_cmd(a: AdoptArgs, home: &Home) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.bundle)
        .with_context(|| format!("read {}", a.bundle.display()))?;
    let bundle: store::delegate::Bundle = match serde_json::from_str(&text) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "error: {}: line {}, column {}: {e}\nhint: pass the file `naac store delegate -o FILE` wrote",
                a.bundle.display(),
                e.line(),
                e.column()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let catalog = Catalog::open(&home.store_db())?;
    match store::delegate::adopt(&catalog, &bundle) {
        Ok(id) => {
            eprintln!(
                "auditing naac://{id} ({}) for its owner: `naac node` here audits and repairs it",
                bundle.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}: {e:#}", a.bundle.display());
            Ok(ExitCode::from(2))
        }
    }
}

fn user_key(home: &Home) -> anyhow::Result<naac_net::Keypair> {
    naac_net::load_or_create_identity(&home.user_identity()).context("load the user key")
}

async fn put_cmd(a: PutArgs, home: &Home) -> anyhow::Result<ExitCode> {
    if let Some(addr) = &a.via {
        return via::put(home, addr, a.token.as_deref(), &a.path, a.at, a.json).await;
    }
    if let Err(e) = naac_store::Geometry::new(a.k, a.n, 0) {
        eprintln!(
            "error: --k {} --n {}: {e}\nhint: e.g. --k 4 --n 8",
            a.k, a.n
        );
        return Ok(ExitCode::from(2));
    }
    let happy = a.happy.unwrap_or_else(|| put::default_happy(a.k, a.n));
    if happy < a.k || happy > a.n {
        eprintln!(
            "error: --happy {happy} must lie between k ({}) and n ({})",
            a.k, a.n
        );
        return Ok(ExitCode::from(2));
    }
    let user = user_key(home)?;
    let (client, _events) = a.reach.start().await?;
    let opts = put::PutOptions {
        k: a.k,
        n: a.n,
        happy,
        days: a.days,
        timeout: a.timeout,
        discover: a.discover,
        max_price: a.max_price,
        private: a.private,
    };
    let bank = match &a.bank {
        Some(addr) => Some((
            naac_node::pay::BankConn::connect(&client, addr)
                .await
                .with_context(|| format!("reach the bank at {addr}"))?,
            addr.to_string(),
        )),
        None => None,
    };
    let started = Instant::now();
    let pay = bank.as_ref().map(|(b, a)| (b, a.as_str()));
    let out = match put::put(&client, home, &user, &a.path, &opts, pay).await {
        Ok(p) => p,
        Err(put::PutError::Unhappy {
            placed,
            happy,
            hosts,
        }) => {
            eprintln!(
                "error: {}",
                put::PutError::Unhappy {
                    placed,
                    happy,
                    hosts
                }
            );
            eprintln!(
                "hint: start more hosts with `naac node --store`, free room on them, or lower --happy / --n"
            );
            return Ok(ExitCode::from(1));
        }
        Err(put::PutError::Other(e)) => return Err(e),
    };
    let secs = started.elapsed().as_secs_f64();
    let g = out.manifest.geometry;
    let escrowed = Catalog::open(&home.store_db())?
        .pay_row(&out.id)?
        .map(|p| p.escrowed);
    if a.json {
        let v = serde_json::json!({
            "id": format!("naac://{}", out.id),
            "name": out.manifest.name,
            "bytes": g.data_len,
            "files": out.manifest.files.len(),
            "k": g.k, "n": g.n,
            "stored_bytes": g.stored_bytes(),
            "placed": out.placed.iter().map(|(s, p)| serde_json::json!({"shard": s, "host": p.to_string()})).collect::<Vec<_>>(),
            "refused": out.refused.iter().map(|(p, w)| serde_json::json!({"host": p.to_string(), "why": w})).collect::<Vec<_>>(),
            "escrowed": escrowed.map(|c| c.to_string()),
            "seconds": secs,
        });
        println!("{v}");
    } else {
        println!("naac://{}", out.id);
        eprintln!(
            "{} in {} files, {}-of-{} on {} hosts ({} stored) in {secs:.1}s ({:.1} MiB/s)",
            naac_types::units::format_size(g.data_len),
            out.manifest.files.len(),
            g.k,
            g.n,
            out.placed.len(),
            naac_types::units::format_size(g.stored_bytes()),
            g.data_len as f64 / (1 << 20) as f64 / secs.max(1e-9)
        );
        for (p, why) in &out.refused {
            eprintln!("  not on {p}: {why}");
        }
        if let Some(c) = escrowed {
            eprintln!(
                "escrowed {c} credits for {} days; hosts are paid per passed audit, `naac store rm` refunds the rest",
                a.days
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn get_cmd(a: GetArgs) -> anyhow::Result<ExitCode> {
    if let Some(addr) = &a.via {
        let home = Home::from_env()?;
        return via::get(&home, addr, a.token.as_deref(), &a.url, a.out, a.json).await;
    }
    let (id, path) = store::parse_url(&a.url)?;
    let (client, _events) = a.reach.start().await?;
    let home = Home::from_env()?;
    let hints = catalog_hints(&home, &id);
    let started = Instant::now();
    let access = naac_node::store::DataAccess {
        user: user_key(&home)?,
        tokens: a
            .token
            .as_deref()
            .map(crate::token::read)
            .transpose()?
            .into_iter()
            .collect(),
    };
    let opened = access.open(&client, &id, hints, a.discover).await?;
    let m = &opened.manifest;
    let (bytes, failures) = match &path {
        Some(p) => {
            let (data, failures) = get::read_file_noting(&client, &opened, p).await?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(p.rsplit('/').next().unwrap_or(p.as_str())));
            anyhow::ensure!(
                !out.exists(),
                "{} already exists; name a new path with -o",
                out.display()
            );
            std::fs::write(&out, &data).with_context(|| format!("write {}", out.display()))?;
            (data.len() as u64, failures)
        }
        None => {
            let out = a.out.clone().unwrap_or_else(|| PathBuf::from(&m.name));
            let bar = indicatif::ProgressBar::new(m.geometry.data_len);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            if a.json {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let n = get::get_to(&client, &opened, &out, |done| bar.set_position(done)).await?;
            bar.finish_and_clear();
            n
        }
    };
    let secs = started.elapsed().as_secs_f64();
    // A host that sent bad bytes (or lost its shard) fails an audit, if this data dir put it.
    if !failures.is_empty()
        && let Ok(c) = Catalog::open(&home.store_db())
        && c.get(&id)?.is_some()
    {
        get::note_failures(&c, &id, &failures);
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"id": format!("naac://{id}"), "bytes": bytes, "seconds": secs})
        );
    } else {
        eprintln!(
            "{} in {secs:.1}s ({:.1} MiB/s)",
            naac_types::units::format_size(bytes),
            bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status_cmd(a: StatusArgs, home: &Home) -> anyhow::Result<ExitCode> {
    let (id, _) = store::parse_url(&a.url)?;
    let catalog = Catalog::open(&home.store_db())?;
    let Some((row, _)) = catalog.get(&id)? else {
        eprintln!(
            "error: naac://{id} is not in this data dir's store catalog\nhint: `naac store ls` lists what you stored; status is kept by the data dir that put it"
        );
        return Ok(ExitCode::from(1));
    };
    let states = audit::states(&catalog, &id, row.n)?;
    let shards = catalog.shards(&id)?;
    let healthy = states
        .iter()
        .filter(|s| **s == naac_store::audit::ShardState::Healthy)
        .count();
    let events = catalog.events(&id)?;
    let pay = catalog.pay_row(&id)?;
    let paid = catalog.paid(&id)?;
    let total = |f: fn(&(naac_types::Credits, naac_types::Credits)) -> u64| {
        naac_types::Credits(paid.values().map(f).sum())
    };
    if a.json {
        let v = serde_json::json!({
            "id": format!("naac://{id}"),
            "name": row.name, "bytes": row.data_len, "k": row.k, "n": row.n,
            "days": row.days, "removed": row.removed, "healthy": healthy,
            "shards": (0..row.n).map(|i| {
                let r = shards.iter().find(|r| r.shard == i);
                serde_json::json!({
                    "shard": i,
                    "state": states[usize::from(i)].as_str(),
                    "host": r.map(|r| r.host.clone()),
                    "last_audit": r.and_then(|r| r.last.map(|v| v.as_str())),
                    "audits": r.map_or(0, |r| r.audits),
                    "passed": r.map_or(0, |r| r.passed),
                    "next_audit_ms": r.map(|r| r.next_ms),
                })
            }).collect::<Vec<_>>(),
            "cost": pay.as_ref().map(|p| serde_json::json!({
                "escrowed": p.escrowed.to_string(),
                "paid": total(|c| c.0.0).to_string(),
                "queued": total(|c| c.1.0).to_string(),
                "until_ms": p.end_ms,
                "by_host": paid.iter().map(|(h, (p, q))| serde_json::json!({"host": h, "paid": p.to_string(), "queued": q.to_string()})).collect::<Vec<_>>(),
            })),
            "events": events.iter().map(|(t, w)| serde_json::json!({"at_ms": t, "what": w})).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "naac://{id}  {}  {}  {}-of-{}  {healthy}/{} shards healthy{}",
        row.name,
        naac_types::units::format_size(row.data_len),
        row.k,
        row.n,
        row.n,
        if row.removed { "  (removed)" } else { "" }
    );
    let now = naac_node::survey::unix_ms();
    for i in 0..row.n {
        let r = shards.iter().find(|r| r.shard == i);
        println!(
            "  shard {i:>3}  {:<8}  {}  audits {}/{} passed  next audit {}",
            states[usize::from(i)].as_str(),
            r.map_or("(no host)".to_string(), |r| r.host.clone()),
            r.map_or(0, |r| r.passed),
            r.map_or(0, |r| r.audits),
            r.map_or("-".to_string(), |r| {
                format!("in {}s", r.next_ms.saturating_sub(now) / 1000)
            })
        );
    }
    match &pay {
        Some(p) => println!(
            "  cost: {} credits escrowed, {} paid to {} hosts, {} queued",
            p.escrowed,
            total(|c| c.0.0),
            paid.values().filter(|c| c.0.0 > 0).count(),
            total(|c| c.1.0)
        ),
        None => println!("  cost: unpaid (put without --bank)"),
    }
    for (t, w) in events.iter().take(5) {
        println!("  {}s ago: {w}", now.saturating_sub(*t) / 1000);
    }
    Ok(ExitCode::SUCCESS)
}

fn ls_cmd(a: LsArgs, home: &Home) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::open(&home.store_db())?;
    let all: Vec<_> = catalog
        .manifests()?
        .into_iter()
        .filter(|m| !m.removed)
        .collect();
    if a.json {
        let v: Vec<_> = all
            .iter()
            .map(|m| {
                serde_json::json!({"id": format!("naac://{}", m.id), "name": m.name,
                    "bytes": m.data_len, "k": m.k, "n": m.n, "created_ms": m.created_ms, "days": m.days})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        eprintln!("nothing stored yet: `naac store put PATH --join ADDR`");
    }
    for m in all {
        println!(
            "naac://{}  {:>10}  {}-of-{}  {}",
            m.id,
            naac_types::units::format_size(m.data_len),
            m.k,
            m.n,
            m.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn rm_cmd(a: RmArgs, home: &Home) -> anyhow::Result<ExitCode> {
    let (id, _) = store::parse_url(&a.url)?;
    let user = user_key(home)?;
    let (client, _events) = a.reach.start().await?;
    let catalog = Catalog::open(&home.store_db())?;
    let mut hosts: Vec<naac_net::PeerId> = catalog
        .shards(&id)?
        .iter()
        .filter_map(|r| r.host.parse().ok())
        .collect();
    if let Ok(found) = client
        .get_providers(store::dht_key(&id), Duration::from_secs(3))
        .await
    {
        for (p, addrs) in found {
            let _ = client.dial_peer(p, addrs).await;
            hosts.push(p);
        }
    }
    let freed = store::remove_from(&client, &user, &id, hosts.into_iter()).await;
    catalog.mark_removed(&id)?;
    eprintln!(
        "removed naac://{id} ({} freed on its hosts)",
        naac_types::units::format_size(freed)
    );
    // Pay what passed audits earned, then take back the rest of the escrow.
    if let Some(p) = catalog.pay_row(&id)? {
        if let Err(e) = store::pay::flush(&client, &catalog, &user).await {
            eprintln!("warning: storage payments still queued: {e:#}");
        }
        let bank = store::pay::connect(&client, &p.bank).await?;
        let back = store::pay::refund(&bank, &user, &p).await?;
        eprintln!("refunded {back} credits of the storage escrow");
    }
    Ok(ExitCode::SUCCESS)
}

/// The job's modules that are stored data, fetched from their hosts through the pool at
/// `join` (none: nothing is started when the job names none).
pub(crate) async fn job_modules(
    job: &std::path::Path,
    join: &[naac_net::Multiaddr],
    data_tokens: &[String],
) -> Result<naac_node::requester::StoredModules, naac_node::requester::RunError> {
    let Ok(parsed) = naac_types::Job::load(job) else {
        // Reported, with its line, by the preparation that follows.
        return Ok(naac_node::requester::StoredModules::new());
    };
    if parsed.stored_modules().is_empty() {
        return Ok(naac_node::requester::StoredModules::new());
    }
    if join.is_empty() {
        return Err(naac_node::requester::RunError::Invalid(anyhow::anyhow!(
            "the job's module is stored data; its hosts are reached through a pool\nhint: add --join ADDR"
        )));
    }
    let (client, _events) = crate::reach::looking_node(join, false).await?;
    let access = naac_node::store::DataAccess {
        user: user_key(&Home::from_env()?)?,
        tokens: data_tokens.to_vec(),
    };
    naac_node::requester::fetch_modules(&client, job, Some(&access)).await
}

/// Puts `path` into the store for 30 days, unpaid: 4-of-8, or half of the storage hosts in
/// view when there are fewer than 8.
pub(crate) async fn put_spread(
    client: &naac_net::Client,
    home: &Home,
    user: &naac_net::Keypair,
    path: &std::path::Path,
    private: bool,
) -> Result<put::Put, put::PutError> {
    let hosts = naac_node::store::client::find_hosts(client, Duration::from_secs(3), 1024).await;
    let n = (hosts.len() as u16).clamp(2, naac_store::DEFAULT_N);
    let k = (n / 2).max(1);
    let opts = put::PutOptions {
        k,
        n,
        happy: put::default_happy(k, n),
        days: 30,
        timeout: Duration::from_secs(600),
        discover: Duration::from_secs(3),
        max_price: None,
        private,
    };
    put::put(client, home, user, path, &opts, None).await
}

/// The hosts this data dir placed `id`'s shards on, if it put it: asked first.
pub(crate) fn catalog_hints(
    home: &Home,
    id: &naac_store::StoreId,
) -> Vec<(naac_net::PeerId, Vec<naac_net::Multiaddr>)> {
    Catalog::open(&home.store_db())
        .and_then(|c| c.shards(id))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            Some((
                r.host.parse().ok()?,
                r.addrs.iter().filter_map(|s| s.parse().ok()).collect(),
            ))
        })
        .collect()
}

/// `[output] store = true`: puts the results (`out_dir/tasks`) into the store: 4-of-8, or
/// half of the storage hosts in view when there are fewer than 8.
pub(crate) async fn keep_results(
    client: &naac_net::Client,
    home: &Home,
    user: &naac_net::Keypair,
    out_dir: &std::path::Path,
) -> naac_node::output::OutputStore {
    let tasks = out_dir.join("tasks");
    match put_spread(client, home, user, &tasks, false).await {
        Ok(p) => naac_node::output::OutputStore {
            id: Some(format!("naac://{}", p.id)),
            files: p.manifest.files.len() as u64,
            bytes: p.manifest.geometry.data_len,
            error: None,
        },
        Err(e) => naac_node::output::OutputStore {
            error: Some(e.to_string()),
            ..Default::default()
        },
    }
}

/// Audits (and repairs) what this data dir's user stored, from a node of its own, for as
/// long as the process runs: each shard about once per `every`. Starts its network only once
/// the catalog lists something.
pub fn spawn_auditor(home: &Home, join: &[naac_net::Multiaddr], every: Duration) {
    let home = home.clone();
    let join = join.to_vec();
    let tick = (every / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut net = None;
        let mut seed = naac_node::survey::unix_ms();
        let cfg = audit::AuditConfig {
            every_ms: every.as_millis().max(1) as u64,
            repair_at: None,
        };
        loop {
            tokio::time::sleep(tick).await;
            if !home.store_db().exists() {
                continue;
            }
            let stored = Catalog::open(&home.store_db())
                .and_then(|c| c.manifests())
                .map(|m| m.iter().any(|m| !m.removed))
                .unwrap_or(false);
            if !stored {
                continue;
            }
            if net.is_none() {
                match crate::reach::looking_node(&join, true).await {
                    Ok(n) => net = Some(n),
                    Err(e) => {
                        tracing::warn!("auditor network: {e:#}");
                        continue;
                    }
                }
            }
            let Some((client, _)) = &net else { continue };
            let user = match user_key(&home) {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!("auditor: {e:#}");
                    continue;
                }
            };
            match audit::round(client, &home, &user, &cfg, &mut seed).await {
                Ok(r) if r.audited > 0 => tracing::info!(
                    "audited {} shards: {} passed, {} rebuilt",
                    r.audited,
                    r.passed,
                    r.rebuilt
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("audit round: {e:#}"),
            }
        }
    });
}
