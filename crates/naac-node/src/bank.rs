//! The data dir's bank: [`start_in_home`] starts the bank service (`naac-bank`) with the
//! data dir's bank key and, by default, its SQLite ledger.

use anyhow::Context as _;
use naac_bank::BankConn;
pub use naac_bank::{BankConfig, BankHandle, Faucet};
use naac_ledger::{AccountKey, Request, SignedRequest};
use naac_net::Keypair;
use naac_types::Credits;

/// The data dir's bank: its key (`bank/identity.key`) and, unless `store` names another,
/// its SQLite ledger (`bank/ledger.db`).
pub fn start_in_home(
    home: &crate::Home,
    store: Option<String>,
    faucet: Faucet,
) -> anyhow::Result<BankHandle> {
    let keypair = bank_key(home)?;
    let store = match store {
        Some(s) => s,
        None => {
            let path = home.bank_ledger();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("create {}", dir.display()))?;
            }
            format!("sqlite:{}", path.display())
        }
    };
    naac_bank::start_with_keypair(BankConfig { store, faucet }, keypair)
}

/// The data dir's bank key (`bank/identity.key`), made on first use.
pub fn bank_key(home: &crate::Home) -> anyhow::Result<Keypair> {
    naac_net::load_or_create_identity(&home.bank_identity()).context("load the bank's key")
}

/// The operator's grant: `amount` credits into `to`'s wallet, signed with the bank's key
/// and sent to `bank` (this data dir's bank, in process or as a node). A grant is once per
/// account: the same grant again changes nothing, another amount is refused.
pub async fn grant(
    bank: &BankConn,
    bank_key: &Keypair,
    to: AccountKey,
    amount: Credits,
) -> Result<u64, String> {
    operator_request(bank, bank_key, &Request::Grant { to, amount }).await
}

/// Registers `provider` at `bank`, signed with `bank_key` (which must be the bank's): the
/// operator vouches for it, so its asks may set another provider's price. Returns the
/// ledger entry's seq.
pub async fn register(
    bank: &BankConn,
    bank_key: &Keypair,
    provider: AccountKey,
) -> Result<u64, String> {
    operator_request(bank, bank_key, &Request::Register { provider }).await
}

/// Sends one request signed by the bank's own key, which must be `bank`'s.
async fn operator_request(
    bank: &BankConn,
    bank_key: &Keypair,
    req: &Request,
) -> Result<u64, String> {
    let key =
        AccountKey(naac_net::ed25519_of_keypair(bank_key).ok_or("the bank's key is not ed25519")?);
    if bank.key().await? != key {
        return Err("that bank does not hold this data dir's bank key".into());
    }
    let signed = SignedRequest::new(key, &key, req, |m| naac_net::sign(bank_key, m));
    let mut answers = bank.submit(vec![signed]).await?;
    match answers.pop() {
        Some(Ok(receipt)) => Ok(receipt.seq),
        Some(Err(e)) => Err(e),
        None => Err("the bank did not answer".into()),
    }
}
