//! `naac pool`: the pool as one computer — every host in view (told, on the LAN, or known
//! to the market), its resources, free slots, policy state, asking price, latency from here
//! and what this machine's requester has learned of it, and the totals.

use naac_node::Home;
use naac_node::reputation::{Record, Reputation};
use naac_node::survey::Seen;
use naac_proto::store::StoreInfo;
use naac_types::host::HostState;
use naac_types::units::format_size;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    reach: crate::reach::Reach,
    /// How long to listen for hosts (those the market knows are looked up and dialled in the
    /// first half)
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = crate::run::parse_duration)]
    wait: Duration,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

pub async fn main(a: Args) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    home.ensure()?;
    let user = crate::run::user_key(&home)?;
    let (client, mut events) = a.reach.start().await?;
    let seen = naac_node::survey::survey(&client, &mut events, Some(&user), None, a.wait).await;
    let stores = stores(&client, &seen, a.wait).await;
    let totals = Totals::of(&seen, &stores);
    let records = records(&home, &seen);
    if a.json {
        println!("{}", pool_json(&seen, &records, &stores, &totals));
        return Ok(ExitCode::SUCCESS);
    }
    for (peer, si) in &stores {
        if !seen.iter().any(|s| s.peer == *peer) {
            println!("storage host {peer}: {}\n", storage_text(Some(si)));
        }
    }
    if seen.is_empty() && stores.is_empty() {
        println!(
            "no hosts found in {:?}\nhint: start one with `naac node --provide`, and pass --join ADDR when it is not on this network",
            a.wait
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (s, r) in seen.iter().zip(&records) {
        print!("{}", host_text(s, r.as_ref(), stores.get(&s.peer)));
        println!();
    }
    println!(
        "pool: {} hosts ({} accepting), {} cores, {} memory ({} available), {} disk free, {} GPUs, {}/{} slots free, compute {:.2} Gfuel/s",
        totals.hosts,
        totals.accepting,
        totals.cores,
        format_size(totals.memory),
        format_size(totals.memory_available),
        format_size(totals.disk_free),
        totals.gpus,
        totals.free_slots,
        totals.slots,
        totals.score
    );
    if totals.store_hosts > 0 {
        println!(
            "storage: {} hosts lend disk, {} free, {} held",
            totals.store_hosts,
            format_size(totals.store_free),
            format_size(totals.store_used)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Every storage host in view and its offer: those that greeted us with one, and those
/// the DHT names as storage hosts (storage-only nodes run no tasks and do not greet),
/// asked now.
async fn stores(
    client: &naac_net::Client,
    seen: &[Seen],
    wait: Duration,
) -> BTreeMap<naac_net::PeerId, StoreInfo> {
    let mut out: BTreeMap<naac_net::PeerId, StoreInfo> = seen
        .iter()
        .filter_map(|s| Some((s.peer, s.welcome.status.store.clone()?)))
        .collect();
    let found = naac_node::store::client::find_hosts(client, wait / 2, 1024).await;
    let found: Vec<_> = found
        .into_iter()
        .filter(|(p, _)| !out.contains_key(p))
        .collect();
    for (peer, info) in naac_node::store::client::survey(client, found).await {
        if let Ok(i) = info {
            out.insert(peer, i);
        }
    }
    out
}

/// What this machine's requester has on record for each host (`None`: nothing, or no
/// store yet).
fn records(home: &Home, seen: &[Seen]) -> Vec<Option<Record>> {
    let path = home.reputation_db();
    let store = if path.exists() {
        Reputation::open(&path)
            .map_err(|e| tracing::warn!("reputation store {}: {e:#}", path.display()))
            .ok()
    } else {
        None
    };
    let Some(mut store) = store else {
        return vec![None; seen.len()];
    };
    seen.iter()
        .map(|s| {
            store
                .get(&s.peer.to_string())
                .ok()
                .filter(|r| *r != Record::default())
        })
        .collect()
}

fn storage_text(s: Option<&StoreInfo>) -> String {
    let Some(s) = s else {
        return "lends no disk".into();
    };
    let mut t = format!(
        "{} free, {} held in {} shards, asks {} credits per GiB-day",
        format_size(s.free),
        format_size(s.used),
        s.shards,
        s.price
    );
    if let Some(why) = &s.refusing {
        t.push_str(&format!(" (takes no shards now: {why})"));
    }
    t
}

fn reputation_text(r: Option<&Record>) -> String {
    match r {
        Some(r) => format!(
            "{:.2} ({} verified, {} rejected, {} lost)",
            r.score(),
            r.verified,
            r.rejected,
            r.lost
        ),
        None => "no results from it on record here".into(),
    }
}

#[derive(Default)]
struct Totals {
    hosts: usize,
    accepting: usize,
    cores: u64,
    memory: u64,
    memory_available: u64,
    disk_free: u64,
    gpus: usize,
    slots: u64,
    free_slots: u64,
    score: f64,
    /// Hosts lending disk, what they would take and what they hold.
    store_hosts: usize,
    store_free: u64,
    store_used: u64,
}

impl Totals {
    fn of(seen: &[Seen], stores: &BTreeMap<naac_net::PeerId, StoreInfo>) -> Self {
        let mut t = Totals::default();
        for si in stores.values() {
            t.store_hosts += 1;
            t.store_free += si.free;
            t.store_used += si.used;
        }
        for s in seen {
            let st = &s.welcome.status;
            let r = &st.resources;
            t.hosts += 1;
            let usable = st.state.is_accepting() && st.denied.is_none();
            if usable {
                t.accepting += 1;
                t.free_slots += u64::from(st.slots.saturating_sub(st.running));
            }
            t.cores += u64::from(r.cpu.cores);
            t.memory += r.memory.total;
            t.memory_available += r.memory.available;
            t.disk_free += r.disk.free;
            t.gpus += r.gpus.len();
            t.slots += u64::from(st.slots);
            t.score += r.cpu.total_score();
        }
        t
    }
}

fn state_text(s: &Seen) -> String {
    let st = &s.welcome.status;
    match (&st.denied, &st.state) {
        (Some(d), _) => format!("not for you: {d}"),
        (None, HostState::Accepting) => "accepting".into(),
        (None, HostState::Paused(why)) => format!("paused: {why}"),
    }
}

fn host_text(s: &Seen, record: Option<&Record>, store: Option<&StoreInfo>) -> String {
    use std::fmt::Write as _;
    let st = &s.welcome.status;
    let r = &st.resources;
    let mut o = String::new();
    let owner = s
        .welcome
        .owner
        .as_deref()
        .map(|o| format!(" (owner {o})"))
        .unwrap_or_default();
    let _ = writeln!(o, "host {}{owner}: {}", s.peer, state_text(s));
    let features = if r.cpu.features.is_empty() {
        String::new()
    } else {
        format!(" [{}]", r.cpu.features.join(" "))
    };
    let score = if r.cpu.score > 0.0 {
        format!(", score {:.2} Gfuel/s per core", r.cpu.score)
    } else {
        ", score not measured yet".into()
    };
    let _ = writeln!(
        o,
        "  cpu           {}, {}, {} cores{features}{score}",
        r.cpu.model, r.cpu.arch, r.cpu.cores
    );
    let _ = writeln!(
        o,
        "  memory        {} available of {}",
        format_size(r.memory.available),
        format_size(r.memory.total)
    );
    let _ = writeln!(
        o,
        "  disk          {} free of {}",
        format_size(r.disk.free),
        format_size(r.disk.total)
    );
    let gpus = if r.gpus.is_empty() {
        "none".to_string()
    } else {
        r.gpus
            .iter()
            .map(|g| format!("{} {} ({})", g.vendor, g.model, format_size(g.memory)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(o, "  gpus          {gpus}");
    let power = match (r.power.on_ac, r.power.battery_percent) {
        (_, Some(b)) if r.power.on_ac == Some(true) => format!("on AC, battery {b}%"),
        (_, Some(b)) => format!("on battery, {b}%"),
        (Some(true), None) => "on AC".into(),
        (Some(false), None) => "on battery".into(),
        (None, None) => "no power supply information".into(),
    };
    let _ = writeln!(o, "  power         {power}");
    let _ = writeln!(
        o,
        "  slots         {} free of {} ({} running)",
        st.slots.saturating_sub(st.running),
        st.slots,
        st.running
    );
    let l = &st.limits;
    let mut limits = vec![format!("cpu ≤ {}%", l.max_cpu_percent)];
    if let Some(m) = l.max_task_memory {
        limits.push(format!("task memory ≤ {}", format_size(m)));
    }
    if let Some(ms) = l.max_task_runtime_ms {
        limits.push(format!(
            "task time ≤ {}",
            naac_node::explain::human(Duration::from_millis(ms))
        ));
    }
    if let Some(f) = l.storage_free {
        limits.push(format!("storage {} left", format_size(f)));
    }
    limits.push(format!("min price {} credits/Gfuel", l.min_price));
    if !l.labels.is_empty() {
        limits.push(format!("labels {}", l.labels.join(" ")));
    }
    if l.price_multiplier > 1.0 {
        limits.push(format!("×{} now", l.price_multiplier));
    }
    let _ = writeln!(o, "  policy        {}", limits.join(", "));
    let ask = s
        .ask
        .map(|p| format!("asks {p} credits per giga-fuel"))
        .unwrap_or_else(|| "no market offer heard".into());
    let _ = writeln!(o, "  price         {ask}");
    let _ = writeln!(o, "  storage       {}", storage_text(store));
    let _ = writeln!(o, "  reputation    {}", reputation_text(record));
    let latency = s
        .rtt
        .map(|d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
        .unwrap_or_else(|| "not measured yet".into());
    let path = s.path.map_or("", |p| match p {
        naac_net::Path::Direct => ", connected directly",
        naac_net::Path::Relayed => ", connected through a relay",
    });
    let _ = writeln!(o, "  latency       {latency} from here{path}");
    let _ = writeln!(
        o,
        "  availability  {:.0}% of the last 7 days",
        r.availability * 100.0
    );
    o
}

/// The pool as `naac pool --json` and `GET /v1/pool` show it.
fn pool_json(
    seen: &[Seen],
    records: &[Option<Record>],
    stores: &BTreeMap<naac_net::PeerId, StoreInfo>,
    totals: &Totals,
) -> serde_json::Value {
    let hosts: Vec<serde_json::Value> = seen
        .iter()
        .zip(records)
        .map(|(s, r)| host_json(s, r.as_ref(), stores.get(&s.peer)))
        .collect();
    let storage_only: Vec<serde_json::Value> = stores
        .iter()
        .filter(|(p, _)| !seen.iter().any(|s| s.peer == **p))
        .map(|(p, si)| {
            let mut v = store_json(si);
            v["peer_id"] = p.to_string().into();
            v["owner"] = si.owner.clone().into();
            v
        })
        .collect();
    serde_json::json!({
        "hosts": hosts,
        "storage_only": storage_only,
        "totals": {
            "hosts": totals.hosts,
            "accepting": totals.accepting,
            "cores": totals.cores,
            "memory": totals.memory,
            "memory_available": totals.memory_available,
            "disk_free": totals.disk_free,
            "gpus": totals.gpus,
            "slots": totals.slots,
            "free_slots": totals.free_slots,
            "compute_score": totals.score,
            "store_hosts": totals.store_hosts,
            "store_free": totals.store_free,
            "store_used": totals.store_used,
        },
    })
}

/// The pool seen from a throwaway node on `join` (and the LAN if `mdns`), listening for
/// `wait`: what `GET /v1/pool` answers.
pub async fn survey_json(
    home: &Home,
    join: &[naac_net::Multiaddr],
    mdns: bool,
    wait: Duration,
) -> anyhow::Result<serde_json::Value> {
    let user = crate::run::user_key(home)?;
    let (client, mut events) = crate::reach::looking_node(join, mdns).await?;
    let seen = naac_node::survey::survey(&client, &mut events, Some(&user), None, wait).await;
    let stores = stores(&client, &seen, wait).await;
    let records = records(home, &seen);
    Ok(pool_json(
        &seen,
        &records,
        &stores,
        &Totals::of(&seen, &stores),
    ))
}

fn store_json(si: &StoreInfo) -> serde_json::Value {
    serde_json::json!({
        "free": si.free,
        "used": si.used,
        "shards": si.shards,
        "price": si.price.to_string(),
        "refusing": si.refusing,
    })
}

fn host_json(s: &Seen, record: Option<&Record>, store: Option<&StoreInfo>) -> serde_json::Value {
    let st = &s.welcome.status;
    serde_json::json!({
        "peer_id": s.peer.to_string(),
        "owner": s.welcome.owner,
        "agent": s.welcome.agent,
        "state": match &st.state {
            HostState::Accepting => serde_json::json!({"accepting": true}),
            HostState::Paused(why) => serde_json::json!({"accepting": false, "paused": why}),
        },
        "denied": st.denied,
        "slots": st.slots,
        "running": st.running,
        "free_slots": st.slots.saturating_sub(st.running),
        "resources": st.resources,
        "limits": st.limits,
        "latency_ms": s.rtt.map(|d| d.as_secs_f64() * 1e3),
        "connection": s.path.map(|p| p.as_str()),
        "ask": s.ask.map(|p| p.to_string()),
        "store": store.map(store_json),
        "reputation": record.map(|r| serde_json::json!({
            "score": r.score(),
            "verified": r.verified,
            "rejected": r.rejected,
            "lost": r.lost,
        })),
    })
}
