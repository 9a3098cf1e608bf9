//! The handle to the bank thread: cheap to clone, it queues requests (bounded, without
//! holding a runtime thread while the queue is full), splits submissions into batches and
//! signs the receipts it hands out.

use crate::revoked::Revoked;
use crate::service::{Reply, Signer, WAITING_SENDERS};
use crate::wire::FromWire;
use naac_ledger::{AccountKey, SignedRequest};
use naac_proto::{BankRequest, BankResponse, MAX_BANK_BATCH};
use std::sync::mpsc as std_mpsc;
use tokio::sync::oneshot;
/// A handle to the bank thread (or to a [`reader`](crate::start_reader)'s); cheap to clone.
#[derive(Clone)]
pub struct BankHandle {
    tx: std_mpsc::SyncSender<(BankRequest, Reply)>,
    key: AccountKey,
    /// Revoked spend tokens' block ids, shared with the bank's thread.
    pub(crate) revoked: Revoked,
    /// Signs receipts (on the caller's task, beside the bank's thread); `None` for a
    /// read-only view, which takes no requests.
    sign: Option<Signer>,
    waiting: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for BankHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BankHandle({})", naac_types::hex(&self.key.0[..8]))
    }
}

impl BankHandle {
    /// The bank's account key: its bank key (`bank/identity.key`), not its node's.
    pub fn key(&self) -> AccountKey {
        self.key
    }

    /// A handle to a thread that answers the requests `rx` takes.
    pub(crate) fn new(tx: std_mpsc::SyncSender<(BankRequest, Reply)>, key: AccountKey) -> Self {
        BankHandle {
            tx,
            key,
            revoked: Revoked::default(),
            sign: None,
            waiting: std::sync::Arc::new(tokio::sync::Semaphore::new(WAITING_SENDERS)),
        }
    }

    /// The handle signs the receipts it hands out with `sign` (the bank's key).
    pub(crate) fn with_signer(mut self, sign: Signer) -> Self {
        self.sign = Some(sign);
        self
    }

    /// Sends a request and waits for the answer (after the durable commit, for writes).
    pub async fn call(&self, req: BankRequest) -> Result<BankResponse, String> {
        let BankRequest::Submit(reqs) = req else {
            return self.queue(req).await;
        };
        if reqs.len() > MAX_BANK_BATCH {
            return Err(format!(
                "{} requests in one submission; at most {MAX_BANK_BATCH}",
                reqs.len()
            ));
        }
        // Requests that are unsigned, undecodable or for another bank are answered here and
        // never queued: garbage costs the bank's thread nothing.
        let key = self.key;
        let checked: Vec<(naac_proto::SignedRequest, Result<(), String>)> = reqs
            .into_iter()
            .map(|w| {
                let r = SignedRequest::from_wire(w.clone());
                (
                    w,
                    naac_ledger::precheck(&r, &key).map_err(|e| e.to_string()),
                )
            })
            .collect();
        let valid: Vec<naac_proto::SignedRequest> = checked
            .iter()
            .filter(|(_, c)| c.is_ok())
            .map(|(w, _)| w.clone())
            .collect();
        let mut answers = if valid.is_empty() {
            Vec::new().into_iter()
        } else {
            match self.queue(BankRequest::Submit(valid)).await? {
                BankResponse::Submitted(v) => v.into_iter(),
                other => return Ok(other),
            }
        };
        let sign = self.sign.clone();
        Ok(BankResponse::Submitted(
            checked
                .into_iter()
                .map(|(_, c)| match c {
                    Err(e) => Err(e),
                    Ok(()) => answers
                        .next()
                        .unwrap_or_else(|| Err("the bank gave no answer".into())),
                })
                .map(|a| {
                    a.map(|mut r| {
                        if let Some(sign) = &sign {
                            r.sig = sign(&r.signing_bytes(&key.0));
                        }
                        r
                    })
                })
                .collect(),
        ))
    }

    /// Sends a request to the bank's thread and waits for its answer.
    async fn queue(&self, req: BankRequest) -> Result<BankResponse, String> {
        let (tx, rx) = oneshot::channel();
        match self.tx.try_send((req, tx)) {
            Ok(()) => {}
            Err(std_mpsc::TrySendError::Disconnected(_)) => {
                return Err("the bank has stopped".to_string());
            }
            // The queue is full: wait for room off the runtime threads, a bounded number of
            // callers at a time.
            Err(std_mpsc::TrySendError::Full(msg)) => {
                let turn = self
                    .waiting
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| "the bank has stopped".to_string())?;
                let sender = self.tx.clone();
                // The turn goes with the blocking send, so it is held until the send ends
                // even if this caller gives up waiting.
                tokio::task::spawn_blocking(move || {
                    let sent = sender.send(msg);
                    drop(turn);
                    sent
                })
                .await
                .map_err(|e| format!("bank queue: {e}"))?
                .map_err(|_| "the bank has stopped".to_string())?;
            }
        }
        rx.await
            .map_err(|_| "the bank stopped before answering".to_string())?
    }
}
