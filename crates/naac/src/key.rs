//! `naac key show`.

use anyhow::Context as _;
use clap::Subcommand;
use naac_node::Home;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum Cmd {
    /// Print this node's peer id (the identity is made on first use)
    Show {
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn main(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Show { json } => {
            let home = Home::from_env()?;
            home.ensure()?;
            let key = naac_net::load_or_create_identity(&home.identity())
                .context("load the node identity")?;
            let id = naac_net::peer_id_of(&key);
            if json {
                let v = serde_json::json!({
                    "peer_id": id.to_string(),
                    "key_file": home.identity(),
                });
                println!("{v}");
            } else {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
