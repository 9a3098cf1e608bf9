//! The bank client: [`BankConn`] reaches a bank in this process (a [`BankHandle`]: the
//! embedded pool's bank, a node's own, or a read-only view of a ledger) or a bank node over
//! `/naac/task/1`, and speaks the ledger's types to its callers (the wire's are converted
//! here).

use crate::handle::BankHandle;
use crate::wire::{FromWire, ToWire};
use naac_ledger::{Account, AccountKey, Entry, InclusionProof, SignedRequest, TreeHead};
use naac_net::{Client, PeerId};
use naac_proto::{BankRequest, BankResponse, Receipt, ResponseBody};
use naac_types::Credits;

/// Where the bank is: in this process (the embedded pool's) or a peer.
#[derive(Clone)]
pub enum BankConn {
    Local(BankHandle),
    Remote {
        client: Client,
        peer: PeerId,
        /// Dialled again when a request fails (the bank restarted, the connection dropped).
        addr: naac_net::Multiaddr,
        /// The bank's account key (its bank key, not its node's), once known: its receipts
        /// must be signed by it.
        key: Option<AccountKey>,
    },
}

fn unexpected<T>(other: BankResponse) -> Result<T, String> {
    Err(format!("unexpected answer {other:?}"))
}

impl BankConn {
    /// Dials the bank node at `addr` (which names its `/p2p/` peer id) and waits until it
    /// answers as a bank (up to 5 s), learning its bank key.
    pub async fn connect(client: &Client, addr: &naac_net::Multiaddr) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let peer = addr
            .iter()
            .find_map(|p| match p {
                naac_net::Protocol::P2p(id) => Some(id),
                _ => None,
            })
            .with_context(|| {
                format!("bank address {addr} has no /p2p/ peer id; copy the whole \"listening on\" line of the bank")
            })?;
        client
            .dial(addr.clone())
            .await
            .with_context(|| format!("dial the bank at {addr}"))?;
        let mut conn = BankConn::Remote {
            client: client.clone(),
            peer,
            addr: addr.clone(),
            key: None,
        };
        let mut last = String::new();
        for _ in 0..50 {
            match conn.key().await {
                Ok(k) => {
                    if let BankConn::Remote { key, .. } = &mut conn {
                        *key = Some(k);
                    }
                    return Ok(conn);
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::bail!("the bank at {addr} does not answer: {last}")
    }

    /// One request to the bank (counted in [`stats`](crate::stats)).
    pub async fn call(&self, req: BankRequest) -> Result<BankResponse, String> {
        let kind = crate::stats::kind_of(&req);
        let t = std::time::Instant::now();
        let r = self.call_uncounted(req).await;
        crate::stats::record(kind, t.elapsed(), r.is_ok());
        r
    }

    async fn call_uncounted(&self, req: BankRequest) -> Result<BankResponse, String> {
        match self {
            BankConn::Local(h) => h.call(req).await,
            BankConn::Remote {
                client, peer, addr, ..
            } => {
                let msg = naac_proto::Request::new(naac_proto::RequestBody::Bank(req));
                let resp = match client.request(*peer, msg.clone()).await {
                    Ok(r) => r,
                    Err(_) => {
                        // Once more over a fresh connection.
                        let _ = client.dial(addr.clone()).await;
                        client
                            .request(*peer, msg)
                            .await
                            .map_err(|e| format!("bank {peer}: {e}"))?
                    }
                };
                match resp.body {
                    ResponseBody::Bank(b) => Ok(*b),
                    ResponseBody::Refused(why) => Err(why),
                    other => Err(format!("bank {peer} answered {other:?}")),
                }
            }
        }
    }

    /// The bank's key as this connection knows it, or as the bank says.
    async fn bank_key(&self) -> Result<AccountKey, String> {
        match self {
            BankConn::Local(h) => Ok(h.key()),
            BankConn::Remote { key: Some(k), .. } => Ok(*k),
            BankConn::Remote { key: None, .. } => self.key().await,
        }
    }

    /// The bank's account key.
    pub async fn key(&self) -> Result<AccountKey, String> {
        match self.call(BankRequest::Info).await? {
            BankResponse::Info(i) => Ok(AccountKey::from_wire(i.bank)),
            other => unexpected(other),
        }
    }

    /// Submits signed requests and returns one answer each.
    pub async fn submit(
        &self,
        reqs: Vec<SignedRequest>,
    ) -> Result<Vec<Result<Receipt, String>>, String> {
        match self.call(BankRequest::Submit(reqs.into_wire())).await? {
            BankResponse::Submitted(v) => Ok(checked_receipts(&self.bank_key().await?, v)),
            other => unexpected(other),
        }
    }

    /// The escrow of `job` as the bank's books have it (`None`: it has none).
    pub async fn escrow(
        &self,
        job: naac_types::JobId,
    ) -> Result<Option<naac_proto::EscrowView>, String> {
        self.escrow_for(job, None).await
    }

    /// The escrow of `job`, with what its committed orders reserve for `provider`.
    pub async fn escrow_for(
        &self,
        job: naac_types::JobId,
        provider: Option<AccountKey>,
    ) -> Result<Option<naac_proto::EscrowView>, String> {
        let provider = provider.map(|p| p.into_wire());
        match self.call(BankRequest::Escrow { job, provider }).await? {
            BankResponse::Escrow(e) => Ok(e),
            other => unexpected(other),
        }
    }

    /// Which of `accounts` have standing at the bank (the operator registered them).
    pub async fn standing(&self, accounts: Vec<AccountKey>) -> Result<Vec<bool>, String> {
        let n = accounts.len();
        match self
            .call(BankRequest::Standing {
                accounts: accounts.into_iter().map(|a| a.into_wire()).collect(),
            })
            .await?
        {
            BankResponse::Standing(v) if v.len() == n => Ok(v),
            other => unexpected(other),
        }
    }

    /// Which of `runs` of `job` are neither paid nor rejected, in order.
    pub async fn unresolved(
        &self,
        job: naac_types::JobId,
        provider: AccountKey,
        runs: Vec<(u32, u32)>,
    ) -> Result<Vec<bool>, String> {
        let n = runs.len();
        let provider = provider.into_wire();
        match self
            .call(BankRequest::Unresolved {
                job,
                provider,
                runs,
            })
            .await?
        {
            BankResponse::Unresolved(v) if v.len() == n => Ok(v),
            other => unexpected(other),
        }
    }

    /// An account's balance (read-only: zero for an account the bank has not seen).
    pub async fn balance(&self, account: AccountKey) -> Result<Credits, String> {
        match self
            .call(BankRequest::Balance {
                account: account.into_wire(),
            })
            .await?
        {
            BankResponse::Balance { balance, .. } => Ok(balance),
            other => unexpected(other),
        }
    }

    /// The signed checkpoint of this size (`None`: the latest).
    pub async fn checkpoint(&self, size: Option<u64>) -> Result<Option<TreeHead>, String> {
        match self.call(BankRequest::Checkpoint { size }).await? {
            BankResponse::Checkpoint(c) => Ok(Option::from_wire(c)),
            other => unexpected(other),
        }
    }

    /// Entries `from..from + limit`, in order (a bank sends at most
    /// [`naac_proto::MAX_BANK_ENTRIES`] at once).
    pub async fn entries(&self, from: u64, limit: u32) -> Result<Vec<Entry>, String> {
        match self.call(BankRequest::Entries { from, limit }).await? {
            BankResponse::Entries(v) => Ok(Vec::from_wire(v)),
            other => unexpected(other),
        }
    }

    /// Entries touching `account`, newest first, with seq below `before`.
    pub async fn history(
        &self,
        account: Account,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Entry>, String> {
        let req = BankRequest::History {
            account: account.into_wire(),
            before,
            limit,
        };
        match self.call(req).await? {
            BankResponse::Entries(v) => Ok(Vec::from_wire(v)),
            other => unexpected(other),
        }
    }

    /// Entry `seq`, its inclusion proof and the signed checkpoint it is proven against.
    pub async fn proof(&self, seq: u64) -> Result<(Entry, InclusionProof, TreeHead), String> {
        match self.call(BankRequest::Proof { seq }).await? {
            BankResponse::Proof(p) => {
                let naac_proto::EntryProof {
                    entry,
                    proof,
                    checkpoint,
                } = *p;
                Ok((
                    Entry::from_wire(entry),
                    InclusionProof::from_wire(proof),
                    TreeHead::from_wire(checkpoint),
                ))
            }
            other => unexpected(other),
        }
    }
}

/// Each receipt must carry the bank's signature: one that does not is no promise, and the
/// request it answers counts as not confirmed.
fn checked_receipts(
    bank: &AccountKey,
    answers: Vec<Result<Receipt, String>>,
) -> Vec<Result<Receipt, String>> {
    answers
        .into_iter()
        .map(|a| match a {
            Ok(r) if r.signed_by(&bank.0) => Ok(r),
            Ok(r) => Err(format!(
                "the bank's receipt for entry {} is not signed by the bank",
                r.seq
            )),
            Err(e) => Err(e),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_counts_only_with_the_banks_signature() {
        let bank = naac_net::Keypair::generate_ed25519();
        let key = AccountKey(naac_net::ed25519_of_keypair(&bank).expect("ed25519"));
        let mut r = Receipt {
            seq: 7,
            hash: [3; 32],
            amount: Credits(5),
            duplicate: false,
            sig: Vec::new(),
        };
        r.sig = naac_net::sign(&bank, &r.signing_bytes(&key.0));
        let other = naac_net::Keypair::generate_ed25519();
        let mut forged = r.clone();
        forged.sig = naac_net::sign(&other, &forged.signing_bytes(&key.0));
        let mut altered = r.clone();
        altered.amount = Credits(6);
        let unsigned = Receipt {
            sig: Vec::new(),
            ..r.clone()
        };
        let out = checked_receipts(
            &key,
            vec![
                Ok(r.clone()),
                Ok(forged),
                Ok(altered),
                Ok(unsigned),
                Err("refused".into()),
            ],
        );
        assert_eq!(out[0], Ok(r));
        for bad in &out[1..4] {
            assert_eq!(
                bad,
                &Err("the bank's receipt for entry 7 is not signed by the bank".to_string())
            );
        }
        assert_eq!(out[4], Err("refused".to_string()));
    }
}
