//! `naac sim SCENARIO`: a deterministic simulation of a pool (`naac-sim`) — the real
//! scheduler driven with simulated hosts, churn, cheaters and a job stream. Prints the
//! figures, every invariant the run broke with the command that replays it to that event,
//! and the trace hash (the same scenario and seed always give the same hash).

use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The scenario: a TOML file (the repository's are in sim/, e.g. sim/small.toml)
    scenario: PathBuf,
    /// The seed: one scenario and seed always give the same run
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop at this event (a violation's) and print the events that led to it
    #[arg(long, value_name = "EVENT")]
    stop_at: Option<u64>,
    /// Simulate this many hours instead of the scenario's
    #[arg(long)]
    hours: Option<f64>,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// The process's peak resident memory, from /proc (0 where there is none).
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}

/// A finished run and what it cost here.
pub struct Ran {
    pub report: naac_sim::Report,
    pub wall_s: f64,
}

/// Runs `scenario` under `seed` on a blocking thread, with a progress bar unless `quiet`.
pub async fn simulate(
    scenario: naac_sim::Scenario,
    seed: u64,
    stop_at: Option<u64>,
    quiet: bool,
) -> anyhow::Result<Ran> {
    tokio::task::spawn_blocking(move || {
        let sim = naac_sim::Sim::new(scenario, seed);
        let bar = indicatif::ProgressBar::new(sim.end() / 1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} simulated s, {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        if quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let started = Instant::now();
        let report = sim.run_watched(stop_at, &mut |now, events| {
            bar.set_position(now / 1000);
            bar.set_message(format!("{events} events"));
        });
        bar.finish_and_clear();
        Ran {
            report,
            wall_s: started.elapsed().as_secs_f64(),
        }
    })
    .await
    .context("the simulation stopped")
}

pub async fn main(a: Args) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read_to_string(&a.scenario) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: read {}: {e}", a.scenario.display());
            return Ok(ExitCode::from(2));
        }
    };
    let mut scenario = match naac_sim::Scenario::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}: {e}", a.scenario.display());
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(h) = a.hours {
        if !(h > 0.0 && h <= 24.0 * 365.0) {
            eprintln!("error: --hours {h}: must be above 0 and at most a year");
            return Ok(ExitCode::from(2));
        }
        scenario.hours = h;
    }
    let ran = simulate(scenario, a.seed, a.stop_at, a.json).await?;
    let r = &ran.report;
    let rss = peak_rss();
    let per_s = |n: u64| n as f64 / ran.wall_s.max(1e-9);
    let replay = |event: u64| {
        format!(
            "naac sim {} --seed {} --stop-at {event}",
            a.scenario.display(),
            a.seed
        )
    };
    if a.json {
        let mut v = serde_json::to_value(r)?;
        v["wall_seconds"] = ran.wall_s.into();
        v["events_per_second"] = per_s(r.events).into();
        v["decisions_per_second"] = per_s(r.decisions).into();
        v["peak_rss_bytes"] = rss.into();
        v["churn_per_hour"] = r.churn_per_hour().into();
        for (i, x) in r.violations.iter().enumerate() {
            v["violations"][i]["replay"] = replay(x.event).into();
        }
        println!("{v}");
    } else {
        print_text(r, &ran, rss, &replay);
    }
    Ok(if r.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_text(r: &naac_sim::Report, ran: &Ran, rss: u64, replay: &dyn Fn(u64) -> String) {
    let per_s = |n: u64| n as f64 / ran.wall_s.max(1e-9);
    println!(
        "{}, seed {}: {} hosts, {:.2} simulated hours in {:.1} s ({:.0} events/s, {:.0} scheduler decisions/s, peak RSS {})",
        r.scenario,
        r.seed,
        r.hosts,
        r.sim_hours,
        ran.wall_s,
        per_s(r.events),
        per_s(r.decisions),
        naac_types::units::format_size(rss)
    );
    println!(
        "jobs {} finished, {} still running, of {}; {} runs, {} lost to churn; {:.2} of the online hosts leave per hour",
        r.jobs_finished,
        r.jobs_unfinished,
        r.jobs_arrived,
        r.runs,
        r.runs_lost,
        r.churn_per_hour()
    );
    println!(
        "\n{:<12} {:>6} {:>10} {:>8} {:>11} {:>8} {:>10}   (cheaters: {:.0}% of hosts)",
        "verification",
        "jobs",
        "accepted",
        "wrong",
        "wrong rate",
        "failed",
        "runs/task",
        r.cheater_share * 100.0
    );
    for f in &r.settings {
        println!(
            "{:<12} {:>6} {:>10} {:>8} {:>11.4} {:>8} {:>10.2}",
            f.name,
            f.finished,
            f.accepted,
            f.wrong,
            f.wrong_rate(),
            f.failed,
            f.runs_per_task()
        );
    }
    if let Some(d) = &r.dht {
        println!(
            "\nDHT: {} nodes (log2 {:.1}); {} lookups, {:.2}% found a live provider in {:.2} rounds on average ({} at most), {:.1} nodes asked of which {:.2} had left; {} records placed",
            d.nodes,
            d.log2_nodes,
            d.lookups,
            100.0 * d.success(),
            d.mean_rounds,
            d.max_rounds,
            d.mean_queried,
            d.mean_timeouts,
            d.published
        );
    }
    if r.violations.is_empty() {
        println!("\nno invariant broken");
    } else {
        println!("\n{} invariants broken:", r.violations.len());
        for v in r.violations.iter().take(20) {
            println!(
                "  event {} at {:.1} s: {}",
                v.event,
                v.at_ms as f64 / 1000.0,
                v.what
            );
            println!("    replay: {}", replay(v.event));
        }
    }
    if !r.recent.is_empty() {
        println!("\nthe events up to {}:", r.events);
        for e in &r.recent {
            println!("  {e}");
        }
    }
    println!("trace {}", r.trace);
}
