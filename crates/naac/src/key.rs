//! `naac key show`.

use anyhow::Context as _;
use clap::Subcommand;
use naac_node::Home;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum Cmd {
    /// Print this node's peer id (the identity is made on first use)
    Show {
        /// Print the user id instead: the key `naac run` attests its runs with, which
        /// providers' allow and deny lists name
        #[arg(long)]
        user: bool,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn main(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Show { json, user } => {
            let home = Home::from_env()?;
            home.ensure()?;
            let file = if user {
                home.user_identity()
            } else {
                home.identity()
            };
            let key = naac_net::load_or_create_identity(&file).context("load the key")?;
            let id = naac_net::peer_id_of(&key);
            if json {
                let v = serde_json::json!({
                    "peer_id": id.to_string(),
                    "key_file": file,
                });
                println!("{v}");
            } else {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
