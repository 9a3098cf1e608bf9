//! `naac wallet`: balances, history, sending credits and an independent check of a bank's
//! ledger.
//!
//! With `--bank ADDR` the wallet asks that bank over the network; without, it reads this data
//! dir's own bank (the embedded pool's ledger, `bank/ledger.db`) directly, read-only,
//! through a read-only bank in this process (`naac_bank::start_reader`): either way the
//! same bank client, [`BankConn`].

use anyhow::Context as _;
use naac_bank::BankConn;
use naac_ledger::{Account, AccountKey, Entry, TreeHead, verify_entries};
use naac_net::Multiaddr;
use naac_node::Home;
use naac_proto::{BankRequest, BankResponse, MAX_BANK_ENTRIES};
use naac_types::Credits;
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Show an account's balance
    Balance(Args),
    /// List an account's entries, newest first
    History(HistoryArgs),
    /// Check the bank's whole ledger: hash chain, every signature, the rules, the balances
    /// recomputed from the entries, the signed checkpoint (and that it extends the one seen
    /// last time), and an inclusion proof of your latest entry
    Verify(Args),
    /// Send credits from your user account to another account (e.g. to top up the user
    /// running a paused job)
    Send(SendArgs),
}

#[derive(clap::Args)]
pub struct SendArgs {
    /// Who gets them: a user id (`naac key show --user`), a peer id, or an account key in hex
    to: String,
    /// Credits to send, e.g. 10 or 2.5
    #[arg(value_parser = crate::node::parse_credits)]
    amount: Credits,
    /// The bank [default: this data dir's own bank]
    #[arg(long, value_name = "MULTIADDR", env = "NAAC_BANK")]
    bank: Option<Multiaddr>,
}

#[derive(clap::Args)]
pub struct Args {
    /// The bank to ask [default: this data dir's own bank, read directly]
    #[arg(long, value_name = "MULTIADDR", env = "NAAC_BANK")]
    bank: Option<Multiaddr>,
    /// Read a ledger database directly instead (a SQLite path or PostgreSQL connection
    /// string), e.g. on the bank's host
    #[arg(long, value_name = "URL", conflicts_with = "bank")]
    ledger: Option<String>,
    /// Whose account: "user" (your user key, what `naac run` pays with), "node" (this
    /// machine's node key, what a provider earns) or a peer id [default: user]
    #[arg(long, value_name = "WHO", default_value = "user")]
    account: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    args: Args,
    /// Most entries to list
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

pub async fn main(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Balance(a) => balance(a).await,
        Cmd::History(h) => history(h).await,
        Cmd::Verify(a) => verify(a).await,
        Cmd::Send(a) => send(a).await,
    }
}

async fn send(a: SendArgs) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let to = match a.to.parse::<naac_net::PeerId>() {
        Ok(p) => naac_net::ed25519_of(&p).map(AccountKey),
        Err(_) => naac_ledger::unhex::<32>(&a.to).map(AccountKey),
    };
    let Some(to) = to else {
        eprintln!(
            "error: {:?} is not a user id, peer id or account key\nhint: the receiver's machine prints its id with `naac key show --user`",
            a.to
        );
        return Ok(ExitCode::from(2));
    };
    let user = crate::run::user_key(&home)?;
    let from =
        AccountKey(naac_net::ed25519_of_keypair(&user).context("the user key is not ed25519")?);
    let bank = match &a.bank {
        Some(addr) => crate::bank::dial(addr).await?,
        None => BankConn::Local(
            naac_node::bank::start_in_home(&home, None, naac_node::bank::Faucet::NONE)
                .context("open this data dir's bank")?,
        ),
    };
    let bank_key = bank.key().await.map_err(bank_err)?;
    // Each send is its own transfer: the nonce is the time it was made.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let req = naac_ledger::Request::Transfer {
        from,
        to,
        amount: a.amount,
        nonce,
    };
    let signed =
        naac_ledger::SignedRequest::new(from, &bank_key, &req, |m| naac_net::sign(&user, m));
    match bank.submit(vec![signed]).await.map_err(bank_err)?.pop() {
        Some(Ok(r)) => {
            println!(
                "sent {} credits to {} (ledger entry {})",
                a.amount, a.to, r.seq
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Err(e)) => {
            eprintln!("error: the transfer was refused: {e}");
            Ok(ExitCode::from(1))
        }
        None => anyhow::bail!("the bank did not answer the transfer"),
    }
}

/// Where the books are read from: a bank node, or a read-only bank in this process over a
/// ledger store (this data dir's own, or the one `--ledger` names). Both are reached through
/// the same bank client; only a bank node is asked for its claims and proofs.
struct Source {
    bank: BankConn,
    remote: bool,
}

fn bank_err(e: String) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn open(a: &Args, home: &Home) -> anyhow::Result<Source> {
    if let Some(addr) = &a.bank {
        return Ok(Source {
            bank: crate::bank::dial(addr).await?,
            remote: true,
        });
    }
    let url = match &a.ledger {
        Some(u) => u.clone(),
        None => {
            let path = home.bank_ledger();
            if !path.exists() {
                anyhow::bail!(
                    "no bank here yet: {} does not exist\nhint: run a job (`naac run JOB.toml`) to start the embedded pool's bank, or pass --bank ADDR",
                    path.display()
                );
            }
            format!("sqlite:{}", path.display())
        }
    };
    // The bank's key: from its key file when it is ours, else from its latest checkpoint.
    let key_file = a.ledger.is_none().then(|| home.bank_identity());
    let bank_key = move || {
        key_file
            .map(|path| -> anyhow::Result<AccountKey> {
                Ok(AccountKey(
                    naac_net::ed25519_of_keypair(&naac_net::load_or_create_identity(&path)?)
                        .context("the bank key is not ed25519")?,
                ))
            })
            .transpose()
    };
    let bank =
        tokio::task::spawn_blocking(move || naac_bank::start_reader(url, bank_key)).await??;
    Ok(Source {
        bank: BankConn::Local(bank),
        remote: false,
    })
}

impl Source {
    async fn bank_key(&self) -> anyhow::Result<AccountKey> {
        self.bank.key().await.map_err(bank_err)
    }

    async fn checkpoint(&self) -> anyhow::Result<Option<TreeHead>> {
        self.bank.checkpoint(None).await.map_err(bank_err)
    }

    /// Every entry, in order.
    async fn entries(&self) -> anyhow::Result<Vec<Entry>> {
        let mut out: Vec<Entry> = Vec::new();
        loop {
            let page = self
                .bank
                .entries(out.len() as u64, MAX_BANK_ENTRIES)
                .await
                .map_err(bank_err)?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    async fn balance(&self, who: AccountKey) -> anyhow::Result<Credits> {
        self.bank.balance(who).await.map_err(bank_err)
    }

    async fn history(&self, who: AccountKey, limit: u32) -> anyhow::Result<Vec<Entry>> {
        self.bank
            .history(Account::User(who), None, limit)
            .await
            .map_err(bank_err)
    }
}

/// The account a `--account` names.
fn account_of(who: &str, home: &Home) -> anyhow::Result<AccountKey> {
    let key = match who {
        "user" => naac_net::ed25519_of_keypair(&crate::run::user_key(home)?),
        "node" => naac_net::ed25519_of_keypair(
            &naac_net::load_or_create_identity(&home.identity())
                .context("load the node identity")?,
        ),
        peer => {
            let id: naac_net::PeerId = peer.parse().with_context(|| {
                format!("--account {peer:?} is not \"user\", \"node\" or a peer id")
            })?;
            naac_net::ed25519_of(&id)
        }
    };
    key.map(AccountKey)
        .context("that identity has no ed25519 key: it cannot hold an account")
}

fn peer_name(k: &AccountKey) -> String {
    naac_net::peer_of_ed25519(&k.0)
        .map(|p| p.to_string())
        .unwrap_or_else(|| naac_types::hex(&k.0))
}

fn account_name(a: &Account) -> String {
    match a {
        Account::Mint => "mint".into(),
        Account::User(k) => peer_name(k),
        Account::Escrow(j) => format!("escrow of job {}", j.short()),
    }
}

async fn balance(a: Args) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let who = account_of(&a.account, &home)?;
    let src = open(&a, &home).await?;
    let b = src.balance(who).await?;
    if a.json {
        println!(
            "{}",
            json!({"account": peer_name(&who), "balance": b.to_string(), "micro_credits": b.0})
        );
    } else {
        println!("{} credits", b);
        eprintln!("account {}", peer_name(&who));
    }
    Ok(ExitCode::SUCCESS)
}

async fn history(h: HistoryArgs) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let who = account_of(&h.args.account, &home)?;
    let src = open(&h.args, &home).await?;
    let entries = src.history(who, h.limit.min(MAX_BANK_ENTRIES)).await?;
    let me = Account::User(who);
    if h.args.json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq,
                    "time_ms": e.time_ms,
                    "kind": e.kind.as_str(),
                    "debit": account_name(&e.debit),
                    "credit": account_name(&e.credit),
                    "amount": e.amount.to_string(),
                    "change": if e.credit == me { format!("+{}", e.amount) } else { format!("-{}", e.amount) },
                    "job": e.job.map(|j| j.to_hex()),
                    "task": e.task,
                    "record": e.record.map(|r| naac_types::hex(&r)),
                    "memo": e.memo,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no entries for {}", peer_name(&who));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>7}  {:<25}  {:<8}  {:>16}  other side / why",
        "entry", "time", "kind", "change"
    );
    for e in &entries {
        let (sign, other) = if e.credit == me {
            ("+", &e.debit)
        } else {
            ("-", &e.credit)
        };
        let when = jiff::Timestamp::from_millisecond(e.time_ms as i64)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        println!(
            "{:>7}  {:<25}  {:<8}  {:>16}  {}{}",
            e.seq,
            when,
            e.kind.as_str(),
            format!("{sign}{}", e.amount),
            account_name(other),
            if e.memo.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.memo)
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the books are, as the user named them: the bank's peer id, or the ledger's location.
fn where_(a: &Args, home: &Home) -> String {
    if let Some(addr) = &a.bank {
        return addr
            .iter()
            .find_map(|p| match p {
                naac_net::Protocol::P2p(id) => Some(format!("bank {id}")),
                _ => None,
            })
            .unwrap_or_else(|| format!("bank {addr}"));
    }
    match &a.ledger {
        Some(url) => format!("ledger {url}"),
        None => format!("ledger {}", home.bank_ledger().display()),
    }
}

async fn verify(a: Args) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let who = account_of(&a.account, &home)?;
    let src = open(&a, &home).await?;
    let bank = src.bank_key().await?;
    let cp = src.checkpoint().await?;
    let entries = src.entries().await?;
    let n = entries.len() as u64;
    let mine: Vec<u64> = entries
        .iter()
        .filter(|e| e.debit == Account::User(who) || e.credit == Account::User(who))
        .map(|e| e.seq)
        .collect();
    let last_mine = mine.last().and_then(|s| entries.get(*s as usize).cloned());
    let fail = |what: String, json: bool| -> anyhow::Result<ExitCode> {
        if json {
            println!("{}", json!({"ok": false, "error": what}));
        } else {
            eprintln!("error: ledger does not verify: {what}");
        }
        Ok(ExitCode::from(1))
    };
    let report = match verify_entries(bank, entries, cp.as_ref()) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string(), a.json),
    };
    let mut checks: Vec<String> = vec![format!(
        "{n} entries: hash chain, signatures and rules hold; balances recomputed ({} credits issued, all accounted for)",
        report.issued
    )];
    match &cp {
        Some(c) if c.size == n => checks.push(format!(
            "the bank's signed checkpoint covers all {n} entries and its Merkle root matches"
        )),
        Some(c) => checks.push(format!(
            "the bank's signed checkpoint of {} entries matches ({} entries are newer)",
            c.size,
            n - c.size
        )),
        None => {
            if n > 0 {
                return fail(
                    "the ledger has entries but no signed checkpoint".into(),
                    a.json,
                );
            }
        }
    }
    // The bank's claim about our balance, against the recomputed one.
    let verified = report.balance(&Account::User(who));
    if src.remote {
        let claimed = src.balance(who).await?;
        if claimed != verified && report.checkpoint_size == Some(n) {
            return fail(
                format!(
                    "the bank says your balance is {claimed} credits; its entries say {verified}"
                ),
                a.json,
            );
        }
    }
    checks.push(format!(
        "your balance: {verified} credits ({} entries)",
        mine.len()
    ));
    // The latest checkpoint must extend the one seen last time.
    if let Some(c) = &cp {
        // What we saw of this bank before, kept by where the bank is (its peer id, or the
        // ledger's location), not by the key it claims now: a bank that re-signed its
        // ledger under a new key is caught here.
        let seen_path = home.root().join("wallet").join(format!(
            "{}.checkpoint.json",
            &naac_types::hex(blake3::hash(where_(&a, &home).as_bytes()).as_bytes())[..32]
        ));
        if let Ok(bytes) = std::fs::read(&seen_path)
            && let Ok(old) = serde_json::from_slice::<TreeHead>(&bytes)
            && old.bank != bank
        {
            return fail(
                format!(
                    "this bank signed with key {} before ({}) and now with {}: its ledger is not the one seen before",
                    naac_types::hex(&old.bank.0),
                    seen_path.display(),
                    naac_types::hex(&bank.0)
                ),
                a.json,
            );
        }
        if let Ok(bytes) = std::fs::read(&seen_path)
            && let Ok(old) = serde_json::from_slice::<TreeHead>(&bytes)
            && old.size > c.size
        {
            return fail(
                format!(
                    "the bank's checkpoint shrank from {} entries (seen before, {}) to {}: it rewrote history",
                    old.size,
                    seen_path.display(),
                    c.size
                ),
                a.json,
            );
        }
        if let Ok(bytes) = std::fs::read(&seen_path)
            && let Ok(old) = serde_json::from_slice::<TreeHead>(&bytes)
        {
            let ok = match &src {
                Source { remote: true, .. } if old.size > 0 && old.size < c.size => {
                    match src
                        .bank
                        .call(BankRequest::Consistency {
                            old: old.size,
                            new: c.size,
                        })
                        .await
                        .map_err(bank_err)?
                    {
                        BankResponse::Consistency(proof) => {
                            naac_ledger::merkle::verify_consistency(
                                old.size, c.size, &old.root, &c.root, &proof,
                            )
                        }
                        _ => false,
                    }
                }
                // With every entry at hand, recompute the old root directly.
                _ => {
                    let mut tree = naac_ledger::MerkleTree::new();
                    for e in src.entries().await?.iter().take(old.size as usize) {
                        tree.push(naac_ledger::merkle::leaf_hash(&e.to_bytes()));
                    }
                    tree.root_at(old.size) == Some(old.root)
                }
            };
            if !ok {
                return fail(
                    format!(
                        "the checkpoint of {} entries does not extend the one of {} entries seen on {}: the bank rewrote history",
                        c.size,
                        old.size,
                        seen_path.display()
                    ),
                    a.json,
                );
            }
            checks.push(format!(
                "it extends the checkpoint of {} entries seen before",
                old.size
            ));
        }
        if let Some(dir) = seen_path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        if let Err(e) = naac_node::output::write_json_atomic(&seen_path, c) {
            tracing::warn!("could not remember the checkpoint: {e:#}");
        }
        // An inclusion proof of our latest entry against the checkpoint.
        if let Some(e) = &last_mine
            && src.remote
            && e.seq < c.size
        {
            let (entry, proof, checkpoint) = src.bank.proof(e.seq).await.map_err(bank_err)?;
            if entry != *e || !proof.verify_entry(e, &checkpoint.root) || !checkpoint.signature_ok()
            {
                return fail(
                    format!("the inclusion proof of entry {} does not check", e.seq),
                    a.json,
                );
            }
            checks.push(format!(
                "your latest entry ({}) is in the signed tree (proof of {} hashes)",
                e.seq,
                proof.path.len()
            ));
        }
    }
    if a.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "bank": naac_types::hex(&bank.0),
                "entries": n,
                "issued": report.issued.to_string(),
                "checkpoint": cp.as_ref().map(|c| json!({"size": c.size, "root": naac_types::hex(&c.root)})),
                "account": peer_name(&who),
                "balance": verified.to_string(),
                "checks": checks,
            })
        );
    } else {
        println!("ledger ok");
        for c in &checks {
            println!("  {c}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
