//! `naac reputation`: what this machine's requester has learned about each provider.

use naac_node::Home;
use naac_node::reputation::{MIN_REJECTIONS_TO_EXCLUDE, Reputation};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object per provider instead of a table
    #[arg(long)]
    json: bool,
}

pub async fn main(a: Args) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let path = home.reputation_db();
    if !path.exists() {
        if !a.json {
            eprintln!(
                "naac: no providers on record yet ({} is made by the first `naac run`)",
                path.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows = Reputation::open(&path)?.list()?;
    if a.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<54} {:>6} {:>9} {:>9} {:>7}",
        "PROVIDER", "SCORE", "VERIFIED", "REJECTED", "LOST"
    );
    for r in &rows {
        println!(
            "{:<54} {:>6.2} {:>9} {:>9} {:>7}",
            r.peer_id, r.score, r.record.verified, r.record.rejected, r.record.lost
        );
    }
    eprintln!(
        "score = (verified + 1) / (verified + rejected + 2); jobs skip providers with {MIN_REJECTIONS_TO_EXCLUDE}+ rejections scoring below their verify.min_reputation (default 0.5)"
    );
    Ok(ExitCode::SUCCESS)
}
