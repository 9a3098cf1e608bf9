//! `naac bank`: the bank operator's commands, signed with this data dir's bank key.
//! `naac bank grant USER AMOUNT` mints credits into a user's wallet — the way credits enter
//! a pool whose bank runs no faucet (the default). `naac bank register PROVIDER` vouches for
//! a provider, so its asks may set other providers' prices (a second price from a key
//! nobody vouches for could be a requester's invention).

use anyhow::Context as _;
use naac_ledger::AccountKey;
use naac_net::Multiaddr;
use naac_node::Home;
use naac_types::Credits;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Grant a user credits (once per account), signed with this data dir's bank key
    Grant(GrantArgs),
    /// Vouch for a provider (once per key): its asks may then set another provider's price
    /// at settlement
    Register(RegisterArgs),
}

#[derive(clap::Args)]
pub struct RegisterArgs {
    /// The provider: its peer id (`naac key show` on its machine) or account key in hex
    provider: String,
    /// The bank node to send the registration to (it must hold this data dir's bank key)
    /// [default: this data dir's ledger, when no bank node runs on it]
    #[arg(long, value_name = "MULTIADDR", env = "NAAC_BANK")]
    bank: Option<Multiaddr>,
}

#[derive(clap::Args)]
pub struct GrantArgs {
    /// The user: its id (`naac key show --user` on its machine) or its account key in hex
    user: String,
    /// Credits to grant, e.g. 1000 or 2.5
    #[arg(value_parser = crate::node::parse_credits)]
    amount: Credits,
    /// The bank node to send the grant to (it must hold this data dir's bank key) [default:
    /// this data dir's ledger, when no bank node runs on it]
    #[arg(long, value_name = "MULTIADDR", env = "NAAC_BANK")]
    bank: Option<Multiaddr>,
}

pub async fn main(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Grant(a) => grant(a).await,
        Cmd::Register(a) => register(a).await,
    }
}

/// The bank to send an operator's request to: a bank node, or this data dir's own ledger.
async fn operator_bank(
    home: &Home,
    addr: Option<&Multiaddr>,
) -> anyhow::Result<naac_node::pay::BankConn> {
    Ok(match addr {
        Some(addr) => crate::bank::dial(addr).await?,
        None => naac_node::pay::BankConn::Local(
            naac_node::bank::start_in_home(home, None, naac_node::bank::Faucet::NONE)
                .context("open this data dir's bank")?,
        ),
    })
}

async fn register(a: RegisterArgs) -> anyhow::Result<ExitCode> {
    let Some(provider) = account_of(&a.provider) else {
        eprintln!(
            "error: {:?} is not a peer id or an account key\nhint: the provider's machine prints its id with `naac key show`",
            a.provider
        );
        return Ok(ExitCode::from(2));
    };
    let home = Home::from_env()?;
    let key = naac_node::bank::bank_key(&home)?;
    let bank = operator_bank(&home, a.bank.as_ref()).await?;
    match naac_node::bank::register(&bank, &key, provider).await {
        Ok(seq) => {
            println!("registered provider {} (ledger entry {seq})", a.provider);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let hint = if e.contains("does not hold this data dir's bank key") {
                "run this on the bank's host, with its data dir (NAAC_HOME), or pass the --bank it runs"
            } else {
                "check that the bank is up and this data dir holds its key"
            };
            eprintln!("error: the registration was refused: {e}\nhint: {hint}");
            Ok(ExitCode::from(1))
        }
    }
}

async fn grant(a: GrantArgs) -> anyhow::Result<ExitCode> {
    let Some(to) = account_of(&a.user) else {
        eprintln!(
            "error: {:?} is not a user id or an account key\nhint: the user's machine prints its id with `naac key show --user`",
            a.user
        );
        return Ok(ExitCode::from(2));
    };
    let home = Home::from_env()?;
    let key = naac_node::bank::bank_key(&home)?;
    let bank = operator_bank(&home, a.bank.as_ref()).await?;
    match naac_node::bank::grant(&bank, &key, to, a.amount).await {
        Ok(seq) => {
            println!(
                "granted {} credits to {} (ledger entry {seq})",
                a.amount, a.user
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let hint = if e.contains("already received its grant") {
                "a grant is once per account; send credits with a transfer instead"
            } else if e.contains("does not hold this data dir's bank key") {
                "run this on the bank's host, with its data dir (NAAC_HOME), or pass the --bank it runs"
            } else {
                "check that the bank is up and this data dir holds its key"
            };
            eprintln!("error: the grant was refused: {e}\nhint: {hint}");
            Ok(ExitCode::from(1))
        }
    }
}

/// A user id (a peer id of an ed25519 key) or a 64-digit hex account key.
fn account_of(user: &str) -> Option<AccountKey> {
    if let Ok(peer) = user.parse::<naac_net::PeerId>() {
        return naac_net::ed25519_of(&peer).map(AccountKey);
    }
    naac_ledger::unhex::<32>(user).map(AccountKey)
}

/// The embedded pool's bank: this data dir's own, which grants nothing on its own; its
/// operator (this machine's user) grants the user [`crate::run::EMBEDDED_GRANT`] once.
pub(crate) async fn embedded(
    home: &Home,
    user: &naac_net::Keypair,
) -> anyhow::Result<naac_node::pay::BankConn> {
    let handle = naac_node::bank::start_in_home(home, None, naac_node::bank::Faucet::NONE)
        .context("start the embedded pool's bank")?;
    let bank = naac_node::pay::BankConn::Local(handle);
    let to = naac_ledger::AccountKey(
        naac_net::ed25519_of_keypair(user).context("the user key is not ed25519")?,
    );
    let key = naac_node::bank::bank_key(home)?;
    if let Err(e) = naac_node::bank::grant(&bank, &key, to, crate::run::EMBEDDED_GRANT).await {
        // Granted before with another amount (an older naac): the user keeps what it has.
        tracing::debug!("the embedded pool's grant: {e}");
    }
    Ok(bank)
}

/// Reaches the bank node at `addr` from a throwaway network identity (for the operator's
/// and the wallet's one-off requests).
pub async fn dial(addr: &Multiaddr) -> anyhow::Result<naac_node::pay::BankConn> {
    let (client, _events) = naac_net::start(
        naac_net::Keypair::generate_ed25519(),
        naac_net::Config {
            listen: vec!["/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr")],
            mdns: false,
            ..naac_net::Config::default()
        },
    )
    .await?;
    connect(&client, addr).await
}

/// Dials a bank node and checks that it answers as one.
pub async fn connect(
    client: &naac_net::Client,
    addr: &Multiaddr,
) -> anyhow::Result<naac_node::pay::BankConn> {
    naac_node::pay::BankConn::connect(client, addr).await
}

#[cfg(test)]
mod tests {
    use super::account_of;

    #[test]
    fn users_are_named_by_id_or_hex_key() {
        let kp = naac_net::Keypair::generate_ed25519();
        let key = naac_net::ed25519_of_keypair(&kp).expect("ed25519");
        let id = kp.public().to_peer_id().to_string();
        assert_eq!(account_of(&id).map(|a| a.0), Some(key));
        assert_eq!(account_of(&naac_types::hex(&key)).map(|a| a.0), Some(key));
        assert_eq!(account_of("alice"), None);
    }
}
