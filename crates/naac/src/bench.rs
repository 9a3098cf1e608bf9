//! `naac bench`: figures for throughput, latency, scaling and sandbox overhead.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub async fn main(_a: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
