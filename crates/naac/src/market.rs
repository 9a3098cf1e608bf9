//! `naac market`: the live offers in view — what each provider asks per giga-fuel and what it
//! has free — heard on the market's gossip topic, with providers found through the DHT.

use naac_market::SignedOffer;
use naac_types::units::format_size;
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    reach: crate::reach::Reach,
    /// How long to listen for offers (providers renew theirs every 10 s, and send one to a
    /// newcomer about a second after it connects)
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = crate::run::parse_duration)]
    wait: Duration,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// The offers heard from a throwaway node on `join` (and the LAN if `mdns`) in `wait`.
async fn offers(
    join: &[naac_net::Multiaddr],
    mdns: bool,
    wait: Duration,
) -> anyhow::Result<Vec<SignedOffer>> {
    let (client, mut events) = crate::reach::looking_node(join, mdns).await?;
    // Offers arrive by gossip; providers we were not told about are found in the DHT once
    // the first peers are known, and dialled.
    naac_node::survey::discover(&client, Duration::from_millis(300), wait / 2).await?;
    let market = naac_node::survey::listen(&client, &mut events, wait).await;
    Ok(market.live().into_iter().cloned().collect())
}

fn peer(o: &SignedOffer) -> String {
    naac_net::peer_of_ed25519(&o.offer.provider)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// The live offers as `naac market --json` and `GET /v1/market` show them.
pub async fn offers_json(
    join: &[naac_net::Multiaddr],
    mdns: bool,
    wait: Duration,
) -> anyhow::Result<serde_json::Value> {
    Ok(to_json(&offers(join, mdns, wait).await?))
}

fn to_json(offers: &[SignedOffer]) -> serde_json::Value {
    let now = naac_node::survey::unix_ms();
    serde_json::Value::Array(
        offers
            .iter()
            .map(|o| {
                let f = &o.offer;
                json!({
                    "peer_id": peer(o),
                    "class": f.class,
                    "price": f.price.to_string(),
                    "accepting": f.accepting,
                    "cores": f.cores,
                    "slots": f.slots,
                    "free_slots": f.free_slots,
                    "memory_available": f.memory,
                    "max_task_memory": (f.max_task_memory > 0).then_some(f.max_task_memory),
                    "compute_score": f.score_milli as f64 / 1000.0,
                    "addrs": f.addrs,
                    "expires_in_ms": f.expires_ms.saturating_sub(now),
                })
            })
            .collect(),
    )
}

pub async fn main(a: Args) -> anyhow::Result<ExitCode> {
    let offers = offers(&a.reach.join, !a.reach.no_mdns, a.wait).await?;
    if a.json {
        println!("{}", to_json(&offers));
        return Ok(ExitCode::SUCCESS);
    }
    if offers.is_empty() {
        println!(
            "no offers heard in {:?}\nhint: providers (`naac node --provide`) publish offers; pass --join ADDR to reach a pool not on this network, or a longer --wait",
            a.wait
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:>12} {:>6} {:>10} {:>10} {:>11}  state",
        "provider", "credits/Gfuel", "cores", "free slots", "memory", "Gfuel/s/core"
    );
    for o in &offers {
        let f = &o.offer;
        let id = peer(o);
        println!(
            "{:<14} {:>12} {:>6} {:>10} {:>10} {:>11.2}  {}",
            &id[id.len().saturating_sub(12)..],
            f.price.to_string(),
            f.cores,
            format!("{}/{}", f.free_slots, f.slots),
            format_size(f.memory),
            f.score_milli as f64 / 1000.0,
            if f.accepting { "accepting" } else { "paused" }
        );
    }
    let cheapest = offers
        .iter()
        .filter(|o| o.offer.accepting)
        .map(|o| o.offer.price)
        .min();
    println!(
        "market: {} offers, {} accepting{}",
        offers.len(),
        offers.iter().filter(|o| o.offer.accepting).count(),
        cheapest
            .map(|p| format!(", cheapest {p} credits per giga-fuel"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
