//! The data dir's bank: [`start_in_home`] starts the bank service (`naac-bank`) with the
//! data dir's bank key and, by default, its SQLite ledger.

use anyhow::Context as _;
pub use naac_bank::{BankConfig, BankHandle};
use naac_types::Credits;

/// The data dir's bank: its key (`bank/identity.key`) and, unless `store` names another,
/// its SQLite ledger (`bank/ledger.db`).
pub fn start_in_home(
    home: &crate::Home,
    store: Option<String>,
    grant: Credits,
) -> anyhow::Result<BankHandle> {
    let keypair =
        naac_net::load_or_create_identity(&home.bank_identity()).context("load the bank's key")?;
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
    naac_bank::start_with_keypair(BankConfig { store, grant }, keypair)
}
