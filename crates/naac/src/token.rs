//! `naac token`: capability tokens made, narrowed, handed on and read offline with the
//! user's key (`naac key show --user`). Providers check pool tokens against the roots their
//! owner's `trust_tokens_from` names; storage hosts check data tokens against the owner of
//! the private data read.

use anyhow::Context as _;
use naac_token::{Hours, Key, Kind, Limits};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Make a token rooted in your user key and print it
    Mint {
        #[command(subcommand)]
        kind: MintKind,
    },
    /// Print TOKEN narrowed by more limits (offline; nobody can widen it again); with --to,
    /// handed on to another user (you must hold it)
    Attenuate {
        /// The token, or a file holding it
        token: String,
        /// Hand it on to this user (their `naac key show --user`): only they may use it
        #[arg(long, value_name = "USER")]
        to: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Revoke TOKEN (its last block, or --block N): every token made with that block is
    /// refused by providers in view within seconds. Its root may revoke any block; a holder,
    /// the blocks added since it held the token
    Revoke {
        /// The token, or a file holding it
        token: String,
        /// The block to revoke: 0 revokes the whole grant (root only) [default: the last]
        #[arg(long, value_name = "N")]
        block: Option<usize>,
        #[command(flatten)]
        reach: crate::reach::Reach,
        /// Keep publishing for this long, so hosts that join meanwhile hear it too
        #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = crate::run::parse_duration)]
        linger: Duration,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Say in plain words what TOKEN allows, block by block, after checking its signatures
    Inspect {
        /// The token, or a file holding it
        token: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum MintKind {
    /// Let holders open escrows paid from your wallet (`naac run --spend-token`), up to
    /// --credits in all and --credits-per-job for one job
    Spend {
        /// The user who may spend with it (their `naac key show --user`): only requests they
        /// sign may use it (required: the bank's ledger shows every request)
        #[arg(long, value_name = "USER")]
        to: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Let a user read your private stored data (`naac store put --private`): all of it, or
    /// the ids named with --data, or the files under --path-prefix; read-only unless --write
    Data {
        /// The user who may read with it (their `naac key show --user`); storage hosts take
        /// only tokens bound to a holder
        #[arg(long, value_name = "USER")]
        to: Option<String>,
        /// Let it store data in your name too (through your node's API)
        #[arg(long)]
        write: bool,
        #[command(flatten)]
        limits: LimitArgs,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Let holders run work on your providers (those whose policy.toml has your user id in
    /// `trust_tokens_from`), even when they are not on its allow list
    Pool {
        /// Bind it to this user (their `naac key show --user`): only they may use it and hand
        /// it on [default: whoever shows it]
        #[arg(long, value_name = "USER")]
        to: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Default)]
pub struct LimitArgs {
    /// At most N tasks of this grant at once on each provider
    #[arg(long, value_name = "N")]
    slots: Option<u32>,
    /// Only in these hours of the provider's day (its owner's time zone), e.g. 18:00-08:00
    #[arg(long, value_name = "HH:MM-HH:MM")]
    hours: Option<Hours>,
    /// Only jobs whose name starts with this
    #[arg(long, value_name = "PREFIX")]
    job_name_prefix: Option<String>,
    /// Only on this provider (its peer id; repeatable)
    #[arg(long = "host", value_name = "PEER")]
    hosts: Vec<String>,
    /// How long it holds, e.g. 30m, 12h, 7d, 2w [default: no expiry]
    #[arg(long, value_name = "DURATION", value_parser = crate::jobs::parse_ttl)]
    ttl: Option<Duration>,
    /// Spend: at most this many credits escrowed with it in all (e.g. 10, 2.5)
    #[arg(long, value_name = "CREDITS", value_parser = naac_types::Credits::parse)]
    credits: Option<naac_types::Credits>,
    /// Spend: at most this many credits escrowed for one job
    #[arg(long, value_name = "CREDITS", value_parser = naac_types::Credits::parse)]
    credits_per_job: Option<naac_types::Credits>,
    /// Data: only this stored data (naac://ID; repeatable)
    #[arg(long = "data", value_name = "NAAC_URL")]
    data: Vec<String>,
    /// Data: only files whose path inside the stored tree starts with this, e.g. results/
    #[arg(long, value_name = "PREFIX")]
    path_prefix: Option<String>,
    /// Reading only (data: no writes)
    #[arg(long)]
    read_only: bool,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        for h in &self.hosts {
            h.parse::<naac_net::PeerId>()
                .with_context(|| format!("--host {h}: not a peer id"))?;
        }
        let manifests = self
            .data
            .iter()
            .map(|d| {
                let (id, path) =
                    naac_node::store::parse_url(d).with_context(|| format!("--data {d}"))?;
                anyhow::ensure!(
                    path.is_none(),
                    "--data {d}: name the stored data's id only; limit paths with --path-prefix"
                );
                Ok(id.to_hex())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Limits {
            scope: self.read_only.then_some(naac_token::Scope::Read),
            manifests,
            path_prefix: self.path_prefix.clone(),
            expires: self.ttl.map(|t| std::time::SystemTime::now() + t),
            job_name_prefix: self.job_name_prefix.clone(),
            slots: self.slots,
            hours: self.hours,
            hosts: self.hosts.clone(),
            credits_total: self.credits.map(|c| c.0),
            credits_per_job: self.credits_per_job.map(|c| c.0),
        })
    }
}

/// A token given on the command line: itself, or the path of a file holding it.
pub fn read(arg: &str) -> anyhow::Result<String> {
    let p = std::path::Path::new(arg);
    if arg.len() < 4096 && p.is_file() {
        let s = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        return Ok(s.trim().to_string());
    }
    Ok(arg.trim().to_string())
}

/// The ed25519 key of user id `id`.
fn key_of(id: &str, what: &str) -> anyhow::Result<Key> {
    id.parse::<naac_net::PeerId>()
        .ok()
        .and_then(|p| naac_net::ed25519_of(&p))
        .with_context(|| {
            format!(
                "{what} {id}: not a user id (an ed25519 peer id, as `naac key show --user` prints)"
            )
        })
}

fn user_root() -> anyhow::Result<(naac_token::Root, Key)> {
    let home = naac_node::Home::from_env()?;
    home.ensure()?;
    let key = crate::run::user_key(&home)?;
    let (root, _) = crate::daemon::root_of(&key)?;
    let public = root.public();
    Ok((root, public))
}

pub async fn main(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Revoke {
            token,
            block,
            reach,
            linger,
            json,
        } => revoke(&read(&token)?, block, &reach, linger, json).await,
        Cmd::Mint { kind } => {
            let (kind, to, limits, json) = match kind {
                MintKind::Pool { to, limits, json } => (Kind::Pool, to, limits, json),
                MintKind::Data {
                    to,
                    write,
                    mut limits,
                    json,
                } => {
                    anyhow::ensure!(
                        to.is_some(),
                        "a data token names its holder: --to USER (their `naac key show --user`); storage hosts take only bound tokens"
                    );
                    limits.read_only |= !write;
                    (Kind::Data, to, limits, json)
                }
                MintKind::Spend { to, limits, json } => {
                    anyhow::ensure!(
                        to.is_some(),
                        "a spend token names its holder: --to USER (their `naac key show --user`); its requests are public in the bank's ledger"
                    );
                    anyhow::ensure!(
                        limits.credits.is_some() || limits.credits_per_job.is_some(),
                        "a spend token needs a cap: --credits N (in all) and/or --credits-per-job N"
                    );
                    (Kind::Spend, to, limits, json)
                }
            };
            let (root, _) = user_root()?;
            let to = to.map(|t| key_of(&t, "--to")).transpose()?;
            let t = root.mint(kind, to.as_ref(), &limits.limits()?)?;
            print(&t, json)
        }
        Cmd::Attenuate {
            token,
            to,
            limits,
            json,
        } => {
            let token = read(&token)?;
            let limits = limits.limits()?;
            let t = match to {
                Some(to) => {
                    let to = key_of(&to, "--to")?;
                    let (me, my_key) = user_root()?;
                    if let Ok(t) = naac_token::inspect(&token)
                        && t.holder().is_some_and(|h| *h != my_key)
                    {
                        anyhow::bail!(
                            "the token is held by {}, not by you: only its holder can hand it on",
                            name(t.holder().expect("held"), &my_key)
                        );
                    }
                    naac_token::delegate(&token, &me, &to, &limits)?
                }
                None => naac_token::attenuate(&token, &limits)?,
            };
            print(&t, json)
        }
        Cmd::Inspect { token, json } => {
            let token = read(&token)?;
            let t = naac_token::inspect(&token).context("the token does not check")?;
            let me = user_root().map(|(_, k)| k).unwrap_or([0; 32]);
            let words = naac_token::describe(&t, &|k| name(k, &me));
            if json {
                let blocks: Vec<_> = t
                    .blocks()
                    .iter()
                    .zip(&words)
                    .map(|(d, w)| serde_json::json!({"words": w, "datalog": d}))
                    .collect();
                let revocation: Vec<String> = t.revocation_ids().iter().map(|r| hex(r)).collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "kind": t.kind().as_str(),
                        "root": name(t.root(), &[0; 32]),
                        "holder": t.holder().map(|h| name(h, &[0; 32])),
                        "bytes": token.len(),
                        "blocks": blocks,
                        "revocation_ids": revocation,
                    })
                );
            } else {
                println!(
                    "{} token, {} bytes, {} blocks",
                    t.kind().as_str(),
                    token.len(),
                    words.len()
                );
                for w in words {
                    println!("  {w}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Publishes a revocation on the pool's revocation topic and keeps it in this data dir's set.
async fn revoke(
    token: &str,
    block: Option<usize>,
    reach: &crate::reach::Reach,
    linger: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let home = naac_node::Home::from_env()?;
    home.ensure()?;
    let user = crate::run::user_key(&home)?;
    let t = naac_token::inspect(token).context("the token does not check")?;
    let block = block.unwrap_or(t.revocation_ids().len().saturating_sub(1));
    let r = naac_node::revoked::revocation(token, block, &user).map_err(anyhow::Error::msg)?;
    let a = naac_node::revoked::accept(&r, None).map_err(anyhow::Error::msg)?;
    let id = a.id.clone();
    naac_node::revoked::Revoked::load(&home.revoked()).keep(&a);
    let data = serde_json::to_vec(&r)?;
    let (client, _events) = reach.start().await?;
    client.subscribe(naac_proto::REVOCATION_TOPIC).await?;
    // Published as soon as a peer on the topic is in view, again while lingering.
    let start = std::time::Instant::now();
    let mut sent = 0u32;
    let deadline = start + Duration::from_secs(10).max(linger);
    while std::time::Instant::now() < deadline {
        if client
            .publish(naac_proto::REVOCATION_TOPIC, data.clone())
            .await
            .is_ok()
        {
            sent += 1;
        }
        if sent > 0 && start.elapsed() >= linger {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if sent == 0 {
        anyhow::bail!(
            "no host on the revocation topic was reached in 10 s; it is kept here (revoked.jsonl): publish again with --join ADDR"
        );
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"revoked": hex(&id), "block": block, "published": sent})
        );
    } else {
        println!(
            "revoked block {block} ({}); published to the pool",
            hex(&id)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print(token: &str, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let t = naac_token::inspect(token)?;
        println!(
            "{}",
            serde_json::json!({
                "token": token,
                "kind": t.kind().as_str(),
                "root": name(t.root(), &[0; 32]),
                "holder": t.holder().map(|h| name(h, &[0; 32])),
                "bytes": token.len(),
            })
        );
    } else {
        println!("{token}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A key as a user id, "you (…)" when it is `me`.
fn name(k: &Key, me: &Key) -> String {
    let id = naac_net::peer_of_ed25519(k).map_or_else(|| hex(k), |p| p.to_string());
    if k == me { format!("you ({id})") } else { id }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
