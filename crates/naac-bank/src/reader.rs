//! A read-only bank over a ledger store: it answers the queries of [`BankRequest`] from the
//! store as it is at each request (another process, the bank itself, may be appending) and
//! takes no requests that would write. `naac wallet` reads a data dir's own ledger, or one
//! a `--ledger` URL names, through it, so it reaches every ledger with the same
//! [`BankConn`](crate::BankConn) as a remote bank.
//!
//! Nothing is checked on the way: a ledger changed behind the bank's back reads back as it
//! is, for `naac wallet verify` to catch. A balance is recomputed by replaying every entry
//! (without signature checks).

use crate::handle::BankHandle;
use crate::service::{QUEUE, Reply};
use crate::store::{self, Store};
use crate::wire::{FromWire, ToWire};
use anyhow::Context as _;
use naac_ledger::{Account, AccountKey, Ledger};
use naac_proto::{BankInfo, BankRequest, BankResponse, MAX_BANK_ENTRIES};
use naac_types::Credits;
use std::sync::mpsc as std_mpsc;

/// Opens the ledger at `url` read-only (`sqlite:PATH` without writing to it; a bare path or
/// a PostgreSQL connection string as [`store::open`] does) and starts answering queries.
/// `bank` gives the bank's key once the store is open, when the caller knows it (`None`:
/// the key that signed the ledger's latest checkpoint).
pub fn start_reader(
    url: String,
    bank: impl FnOnce() -> anyhow::Result<Option<AccountKey>> + Send + 'static,
) -> anyhow::Result<BankHandle> {
    let (tx, rx) = std_mpsc::sync_channel::<(BankRequest, Reply)>(QUEUE);
    let (ready_tx, ready_rx) = std_mpsc::sync_channel::<anyhow::Result<AccountKey>>(1);
    // Database clients may block: the store lives on a thread of its own.
    std::thread::Builder::new()
        .name("naac-ledger-reader".into())
        .spawn(move || {
            let opened = open(&url).and_then(|mut store| {
                let key = match bank()? {
                    Some(k) => k,
                    None => {
                        store
                            .latest_checkpoint()?
                            .context("the ledger has no checkpoint: it names no bank")?
                            .bank
                    }
                };
                Ok((store, key))
            });
            let (store, key) = match opened {
                Ok(v) => v,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(key));
            let mut reader = Reader { store, key };
            for (req, reply) in rx {
                let _ = reply.send(reader.answer(req));
            }
        })
        .context("start the ledger reader's thread")?;
    let key = ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the ledger reader stopped while opening the ledger"))??;
    Ok(BankHandle::new(tx, key))
}

fn open(url: &str) -> anyhow::Result<Box<dyn Store>> {
    Ok(if let Some(path) = url.strip_prefix("sqlite:") {
        Box::new(store::SqliteStore::open_read_only(path)?) as Box<dyn Store>
    } else {
        store::open(url)?
    })
}

struct Reader {
    store: Box<dyn Store>,
    key: AccountKey,
}

/// A store error as the caller would print it (with its causes).
fn why(e: store::StoreError) -> String {
    format!("{:#}", anyhow::Error::from(e))
}

impl Reader {
    fn answer(&mut self, req: BankRequest) -> Result<BankResponse, String> {
        match req {
            BankRequest::Info => Ok(BankResponse::Info(BankInfo {
                bank: self.key.into_wire(),
                grant: Credits::ZERO,
                entries: self.store.len().map_err(why)?,
                checkpoint: self.store.latest_checkpoint().map_err(why)?.into_wire(),
            })),
            BankRequest::Standing { .. }
            | BankRequest::Escrow { .. }
            | BankRequest::Unresolved { .. } => Err(
                "a ledger read directly does not answer standing, escrows or runs; ask the bank node"
                    .into(),
            ),
            BankRequest::Balance { account } => Ok(BankResponse::Balance {
                balance: self.balance(AccountKey::from_wire(account))?,
                checkpoint: self.store.latest_checkpoint().map_err(why)?.into_wire(),
            }),
            BankRequest::History {
                account,
                before,
                limit,
            } => self
                .store
                .history(
                    &Account::from_wire(account),
                    before,
                    limit.min(MAX_BANK_ENTRIES) as usize,
                )
                .map(|v| BankResponse::Entries(v.into_wire()))
                .map_err(why),
            BankRequest::Entries { from, limit } => self
                .store
                .read(from, limit.min(MAX_BANK_ENTRIES) as usize)
                .map(|v| BankResponse::Entries(v.into_wire()))
                .map_err(why),
            BankRequest::Checkpoint { size } => match size {
                None => self.store.latest_checkpoint(),
                Some(s) => self.store.checkpoint(s),
            }
            .map(|c| BankResponse::Checkpoint(c.into_wire()))
            .map_err(why),
            BankRequest::Submit(_) => {
                Err("this is a read-only view of a ledger: it applies no requests".into())
            }
            BankRequest::Proof { .. } | BankRequest::Consistency { .. } => {
                Err("a read-only view of a ledger gives no proofs: read its entries".into())
            }
        }
    }

    /// Replays every entry (trusted: no signature checks) and reads the account's balance.
    fn balance(&mut self, who: AccountKey) -> Result<Credits, String> {
        let mut entries = Vec::new();
        loop {
            let page = self
                .store
                .read(entries.len() as u64, MAX_BANK_ENTRIES as usize)
                .map_err(why)?;
            if page.is_empty() {
                break;
            }
            entries.extend(page);
        }
        let mut ledger = Ledger::new(self.key);
        for e in &entries {
            ledger
                .replay_trusted(e)
                .map_err(|e| format!("{e}\nhint: `naac wallet verify` checks the whole ledger"))?;
        }
        Ok(ledger.balance(&Account::User(who)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{BankConfig, BankConn};
    use naac_ledger::{Request, SignedRequest};

    fn ed25519() -> (naac_net::Keypair, AccountKey) {
        let kp = naac_net::Keypair::generate_ed25519();
        let key = AccountKey(naac_net::ed25519_of_keypair(&kp).unwrap());
        (kp, key)
    }

    #[test]
    fn answers_queries_from_the_store_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Nothing in it yet: no checkpoint names the bank.
        drop(store::SqliteStore::open(dir.path().join("ledger.db")).unwrap());
        let e = start_reader(url.clone(), || Ok(None)).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "the ledger has no checkpoint: it names no bank"
        );
        let (bank_kp, bank_key) = ed25519();
        let bank = BankConn::Local(
            crate::start_with_keypair(
                BankConfig {
                    store: url.clone(),
                    faucet: crate::Faucet {
                        amount: naac_types::Credits(100),
                        per_hour: None,
                    },
                },
                bank_kp,
            )
            .unwrap(),
        );
        let (alice_kp, alice) = ed25519();
        let (_, bob) = ed25519();
        let req = Request::Transfer {
            from: alice,
            to: bob,
            amount: naac_types::Credits(30),
            nonce: 1,
        };
        let signed = SignedRequest::new(alice, &bank_key, &req, |m| naac_net::sign(&alice_kp, m));
        let answers = rt.block_on(bank.submit(vec![signed.clone()])).unwrap();
        assert!(answers.iter().all(|a| a.is_ok()));
        let reader = BankConn::Local(start_reader(url, || Ok(None)).unwrap());
        assert_eq!(rt.block_on(reader.key()), Ok(bank_key));
        assert_eq!(
            rt.block_on(reader.balance(alice)),
            Ok(naac_types::Credits(70))
        );
        assert_eq!(
            rt.block_on(reader.balance(bob)),
            Ok(naac_types::Credits(30))
        );
        let entries = rt.block_on(reader.entries(0, 100)).unwrap();
        assert_eq!(entries, rt.block_on(bank.entries(0, 100)).unwrap());
        assert_eq!(entries.len(), 2, "the grant and the transfer");
        let history = rt
            .block_on(reader.history(Account::User(bob), None, 10))
            .unwrap();
        assert_eq!(history, vec![entries[1].clone()]);
        assert_eq!(
            rt.block_on(reader.checkpoint(None)).unwrap(),
            rt.block_on(bank.checkpoint(None)).unwrap()
        );
        assert!(rt.block_on(reader.submit(vec![signed])).is_err());
        assert!(rt.block_on(reader.proof(0)).is_err());
    }
}
