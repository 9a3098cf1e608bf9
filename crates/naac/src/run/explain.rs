//! `naac run --explain`: which hosts in view could run the job now, and per constraint why
//! the others cannot.

use super::{Args, SURVEY_WAIT, open, user_key};
use std::process::ExitCode;

/// `naac run --explain`: which hosts in view could run the job now, and why not the others.
pub(super) async fn explain(a: Args) -> anyhow::Result<ExitCode> {
    let (home, _sandbox, prepared) = match open(&a.job)? {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if a.join.is_empty() {
        let workers = a.workers.unwrap_or_else(crate::node::cores);
        let text = format!(
            "job {}: runs on an embedded pool of {workers} workers on this machine (no owner policies apply); pass --join ADDR to explain a pool",
            prepared.job.name
        );
        if a.json {
            println!(
                "{}",
                serde_json::json!({"job": prepared.job.name, "embedded": true, "hosts": workers, "usable": workers, "ruled_out": []})
            );
        } else {
            println!("{text}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let user = user_key(&home)?;
    let (client, mut events) = crate::reach::looking_node(&a.join, a.mdns_on()).await?;
    let pass = match a
        .pool_token
        .as_deref()
        .map(crate::token::read)
        .transpose()?
    {
        Some(token) => Some(naac_proto::Pass {
            token,
            job_name: prepared.job.name.clone(),
        }),
        None => None,
    };
    let seen =
        naac_node::survey::survey(&client, &mut events, Some(&user), pass, SURVEY_WAIT).await;
    // What the hosts say, plus what this machine's requester learned of them: a provider
    // whose results were rejected here is not used.
    let mut reputation = {
        let path = home.reputation_db();
        path.exists()
            .then(|| naac_node::reputation::Reputation::open(&path).ok())
            .flatten()
    };
    let min = prepared.job.verify.min_reputation;
    let per_host: Vec<Vec<String>> = seen
        .iter()
        .map(|s| {
            let mut why = prepared.rule_out(&s.welcome.status, s.rtt);
            if let Some(r) = reputation
                .as_mut()
                .and_then(|rep| rep.get(&s.peer.to_string()).ok())
                && let Some(w) = naac_node::explain::reputation_rules_out(&r, min)
            {
                why.push(w);
            }
            why
        })
        .collect();
    let e = naac_node::explain::Explanation::of_reasons(per_host.iter().cloned());
    // How each host is reached: one behind a relay alone returns only results the relay
    // carries.
    let paths: std::collections::HashMap<_, _> = client.paths().await.into_iter().collect();
    let mut relayed = Vec::with_capacity(seen.len());
    for s in &seen {
        let path = paths.get(&s.peer).copied();
        let limit = match path {
            Some(naac_net::Path::Relayed) => client.relay_limit(s.peer).await,
            _ => None,
        };
        relayed.push((path.map(|p| p.as_str()), limit));
    }
    if a.json {
        let hosts: Vec<serde_json::Value> = seen
            .iter()
            .zip(&per_host)
            .zip(&relayed)
            .map(|((s, why), (path, limit))| {
                serde_json::json!({
                    "peer_id": s.peer.to_string(),
                    "ruled_out": why,
                    "connection": path,
                    "relay_limit_bytes": limit,
                })
            })
            .collect();
        let ruled: Vec<serde_json::Value> = e
            .ruled_out
            .iter()
            .map(|(r, n)| serde_json::json!({"reason": r, "hosts": n}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"job": prepared.job.name, "embedded": false, "hosts": e.hosts, "usable": e.usable, "ruled_out": ruled, "per_host": hosts})
        );
    } else {
        println!("job {}: {e}", prepared.job.name);
        for ((s, why), (_, limit)) in seen.iter().zip(&per_host).zip(&relayed) {
            let through = limit.map_or(String::new(), |l| {
                format!(
                    " (reached through a relay only: a result over {} fails there)",
                    naac_types::units::format_size(l)
                )
            });
            if why.is_empty() {
                println!("  {}  can run it{through}", s.peer);
            } else {
                println!("  {}  {}{through}", s.peer, why.join("; "));
            }
        }
    }
    Ok(if e.usable > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
