//! Paying storage hosts per GiB-day. `naac store put --bank ADDR` escrows the whole term up
//! front (the escrow's id is derived from the manifest's, [`naac_store::escrow_job`]); each
//! shard's pay accrues from its placement, and every passed audit pays its host for the time
//! since the shard's last paid moment, while a failed, late or missed audit forfeits that
//! time. Payments are written to the catalog, signed, before the bank hears of them, so a
//! node that crashes resends the same request (a duplicate at the bank) rather than paying
//! twice. `naac store rm` pays what is owed, then refunds the rest.

use super::Catalog;
use crate::pay::BankConn;
use naac_ledger::{AccountKey, Request, SignedRequest};
use naac_net::{Client, Keypair, PeerId};
use naac_store::StoreId;
use naac_types::{Credits, JobId, Price};
use rusqlite::{OptionalExtension, params};
use std::collections::BTreeMap;

/// How a manifest's storage is paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayRow {
    /// The bank's address (a multiaddr), to reach it again.
    pub bank: String,
    pub bank_key: AccountKey,
    pub job: JobId,
    /// What was escrowed.
    pub escrowed: Credits,
    /// The most paid per GiB-day (hosts asking more are passed over, in repairs too).
    pub max_price: Option<Price>,
    /// Pay accrues until this time (the end of the term).
    pub end_ms: u64,
}

/// One payment as queued.
#[derive(Clone, Debug)]
pub struct Queued {
    pub manifest: StoreId,
    pub host: String,
    pub period: u32,
    pub req: SignedRequest,
}

impl Catalog {
    /// Records how a manifest's storage is paid.
    pub fn set_pay(&self, id: &StoreId, p: &PayRow) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO pay (manifest, bank, bank_key, job, escrowed, end_ms, max_price)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id.to_hex(),
                p.bank,
                &p.bank_key.0[..],
                &p.job.0[..],
                p.escrowed.0 as i64,
                p.end_ms as i64,
                p.max_price.map(|m| m.0 as i64)
            ],
        )?;
        Ok(())
    }

    /// How a manifest's storage is paid (`None`: unpaid).
    pub fn pay_row(&self, id: &StoreId) -> anyhow::Result<Option<PayRow>> {
        type Row = (String, Vec<u8>, Vec<u8>, i64, i64, Option<i64>);
        let row: Option<Row> = self
            .db()
            .query_row(
                "SELECT bank, bank_key, job, escrowed, end_ms, max_price FROM pay WHERE manifest = ?1",
                [id.to_hex()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()?;
        let Some((bank, key, job, escrowed, end_ms, max_price)) = row else {
            return Ok(None);
        };
        let (Ok(key), Ok(job)) = (<[u8; 32]>::try_from(key), <[u8; 16]>::try_from(job)) else {
            anyhow::bail!("the store catalog's pay row of {} is corrupt", id.short());
        };
        Ok(Some(PayRow {
            bank,
            bank_key: AccountKey(key),
            job: JobId(job),
            escrowed: Credits(escrowed as u64),
            end_ms: end_ms as u64,
            max_price: max_price.map(|m| Price(m as u64)),
        }))
    }

    /// A shard's audit at `now_ms` settles its pay since the last paid moment: what its host
    /// earned (at the agreed price, up to `end_ms`) when it passed, nothing when it did not.
    pub fn accrue(
        &self,
        id: &StoreId,
        shard: u16,
        passed: bool,
        now_ms: u64,
        end_ms: u64,
        shard_len: u64,
    ) -> anyhow::Result<Credits> {
        let db = self.db();
        let row: Option<(i64, i64)> = db
            .query_row(
                "SELECT price, paid_until FROM shards WHERE manifest = ?1 AND shard = ?2",
                params![id.to_hex(), shard],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((price, from)) = row else {
            return Ok(Credits::ZERO);
        };
        let to = now_ms.min(end_ms).max(from as u64);
        db.execute(
            "UPDATE shards SET paid_until = ?3 WHERE manifest = ?1 AND shard = ?2",
            params![id.to_hex(), shard, to as i64],
        )?;
        if !passed {
            return Ok(Credits::ZERO);
        }
        Ok(naac_store::storage_cost(
            Price(price as u64),
            shard_len,
            to - from as u64,
        ))
    }

    /// Queues a payment of `amount` to `host` as its next period, signed by `sign`.
    pub fn queue_payment(
        &self,
        id: &StoreId,
        host: &str,
        amount: Credits,
        sign: impl FnOnce(u32) -> SignedRequest,
    ) -> anyhow::Result<()> {
        let db = self.db();
        let period: u32 = db.query_row(
            "SELECT COUNT(*) FROM payments WHERE manifest = ?1 AND host = ?2",
            params![id.to_hex(), host],
            |r| r.get(0),
        )?;
        let req = sign(period);
        db.execute(
            "INSERT INTO payments (manifest, host, period, amount, msg, sig)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id.to_hex(), host, period, amount.0 as i64, req.msg, req.sig],
        )?;
        Ok(())
    }

    /// Payments not yet answered by the bank, oldest first.
    pub fn pending_payments(&self, authorizer: AccountKey) -> anyhow::Result<Vec<Queued>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT manifest, host, period, msg, sig FROM payments WHERE state = 'pending'
             ORDER BY rowid LIMIT 1024",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (m, host, period, msg, sig) = row?;
            if let Some(manifest) = StoreId::from_hex(&m) {
                out.push(Queued {
                    manifest,
                    host,
                    period,
                    req: SignedRequest {
                        authorizer,
                        msg,
                        sig,
                    },
                });
            }
        }
        Ok(out)
    }

    /// The bank's answer to a queued payment: `paid`, or refused with why.
    pub fn payment_answered(&self, q: &Queued, answer: Result<(), &str>) -> anyhow::Result<()> {
        let state = match answer {
            Ok(()) => "paid".to_string(),
            Err(e) => format!("refused: {e}"),
        };
        self.db().execute(
            "UPDATE payments SET state = ?4 WHERE manifest = ?1 AND host = ?2 AND period = ?3",
            params![q.manifest.to_hex(), q.host, q.period, state],
        )?;
        Ok(())
    }

    /// What each host was paid for a manifest, and what is queued for it.
    pub fn paid(&self, id: &StoreId) -> anyhow::Result<BTreeMap<String, (Credits, Credits)>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT host, state, SUM(amount) FROM payments WHERE manifest = ?1
             GROUP BY host, state = 'paid', state = 'pending'",
        )?;
        let rows = st.query_map([id.to_hex()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out: BTreeMap<String, (Credits, Credits)> = BTreeMap::new();
        for row in rows {
            let (host, state, sum) = row?;
            let e = out.entry(host).or_insert((Credits::ZERO, Credits::ZERO));
            match state.as_str() {
                "paid" => e.0 = Credits(e.0.0 + sum as u64),
                "pending" => e.1 = Credits(e.1.0 + sum as u64),
                _ => {}
            }
        }
        Ok(out)
    }
}

/// The user's account key.
pub fn account(user: &Keypair) -> anyhow::Result<AccountKey> {
    Ok(AccountKey(naac_net::ed25519_of_keypair(user).ok_or_else(
        || anyhow::anyhow!("the user key is not ed25519"),
    )?))
}

/// Opens the escrow of a manifest's storage: `amount` until `end_ms`, plus a day for the last
/// audits' payments.
pub async fn open_escrow(
    bank: &BankConn,
    user: &Keypair,
    id: &StoreId,
    amount: Credits,
    end_ms: u64,
) -> anyhow::Result<(AccountKey, JobId)> {
    let payer = account(user)?;
    let bank_key = bank.key().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let job = naac_store::escrow_job(id);
    let req = Request::OpenEscrow {
        job,
        payer,
        amount,
        max_price: Price(0),
        fuel_limit: 0,
        expires_ms: end_ms + naac_store::DAY_MS,
        claim_window_ms: 0,
        spend: None,
    };
    let signed = SignedRequest::new(payer, &bank_key, &req, |m| naac_net::sign(user, m));
    match bank
        .submit(vec![signed])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .pop()
    {
        Some(Ok(_)) => Ok((bank_key, job)),
        Some(Err(e)) => anyhow::bail!("the bank refused the storage escrow: {e}"),
        None => anyhow::bail!("the bank did not answer the storage escrow"),
    }
}

/// Refunds what is left of a manifest's storage escrow; returns it.
pub async fn refund(bank: &BankConn, user: &Keypair, p: &PayRow) -> anyhow::Result<Credits> {
    let payer = account(user)?;
    let req = Request::Refund { job: p.job };
    let signed = SignedRequest::new(payer, &p.bank_key, &req, |m| naac_net::sign(user, m));
    match bank
        .submit(vec![signed])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .pop()
    {
        Some(Ok(r)) => Ok(r.amount),
        Some(Err(e)) => anyhow::bail!("the bank refused the refund: {e}"),
        None => anyhow::bail!("the bank did not answer the refund"),
    }
}

/// Queues what audits earned each host: `owed` by (manifest, host).
pub fn queue(
    catalog: &Catalog,
    user: &Keypair,
    owed: BTreeMap<(StoreId, String), Credits>,
) -> anyhow::Result<()> {
    let payer = account(user)?;
    for ((id, host), amount) in owed {
        if amount.0 == 0 {
            continue;
        }
        let Some(p) = catalog.pay_row(&id)? else {
            continue;
        };
        let Some(provider) = host
            .parse::<PeerId>()
            .ok()
            .and_then(|h| naac_net::ed25519_of(&h))
        else {
            continue;
        };
        catalog.queue_payment(&id, &host, amount, |period| {
            let req = Request::StorePay {
                job: p.job,
                provider: AccountKey(provider),
                period,
                amount,
            };
            SignedRequest::new(payer, &p.bank_key, &req, |m| naac_net::sign(user, m))
        })?;
    }
    Ok(())
}

/// Sends every queued payment to its bank; returns how many the bank took.
pub async fn flush(client: &Client, catalog: &Catalog, user: &Keypair) -> anyhow::Result<usize> {
    let pending = catalog.pending_payments(account(user)?)?;
    let mut by_bank: BTreeMap<String, Vec<Queued>> = BTreeMap::new();
    for q in pending {
        if let Some(p) = catalog.pay_row(&q.manifest)? {
            by_bank.entry(p.bank).or_default().push(q);
        }
    }
    let mut took = 0;
    for (addr, qs) in by_bank {
        let bank = match connect(client, &addr).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("storage payments wait: the bank at {addr}: {e:#}");
                continue;
            }
        };
        for chunk in qs.chunks(naac_proto::MAX_BANK_BATCH) {
            let reqs = chunk.iter().map(|q| q.req.clone()).collect();
            let answers = match bank.submit(reqs).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("storage payments wait: the bank at {addr}: {e}");
                    break;
                }
            };
            for (q, a) in chunk.iter().zip(answers) {
                match a {
                    Ok(_) => {
                        took += 1;
                        catalog.payment_answered(q, Ok(()))?;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "the bank refused storage payment {} to {}: {e}",
                            q.period,
                            q.host
                        );
                        catalog.payment_answered(q, Err(&e))?;
                    }
                }
            }
        }
    }
    Ok(took)
}

/// Reaches the bank at `addr`.
pub async fn connect(client: &Client, addr: &str) -> anyhow::Result<BankConn> {
    let addr: naac_net::Multiaddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("bank address {addr:?}: {e}"))?;
    BankConn::connect(client, &addr).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passed_audits_earn_the_time_since_the_last_paid_moment_and_failures_forfeit_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("store.db")).unwrap();
        let id = StoreId::of(b"m");
        let day = naac_store::DAY_MS;
        let gib = 1u64 << 30;
        // 2 credits per GiB-day for a 1 GiB shard, placed at day 0, paid until day 10.
        c.place(&id, 0, "h", &[], Price::whole(2), 0, 0).unwrap();
        let end = 10 * day;
        assert_eq!(
            c.accrue(&id, 0, true, day, end, gib).unwrap(),
            Credits::whole(2)
        );
        // A failed audit at day 3 forfeits days 1-3; a pass at day 4 earns day 4 only.
        assert_eq!(
            c.accrue(&id, 0, false, 3 * day, end, gib).unwrap(),
            Credits::ZERO
        );
        assert_eq!(
            c.accrue(&id, 0, true, 4 * day, end, gib).unwrap(),
            Credits::whole(2)
        );
        // Nothing accrues past the end of the term, and a clock that went back earns nothing.
        assert_eq!(
            c.accrue(&id, 0, true, 30 * day, end, gib).unwrap(),
            Credits::whole(12)
        );
        assert_eq!(
            c.accrue(&id, 0, true, 31 * day, end, gib).unwrap(),
            Credits::ZERO
        );
        assert_eq!(
            c.accrue(&id, 0, true, 2 * day, end, gib).unwrap(),
            Credits::ZERO
        );
        // An unknown shard earns nothing.
        assert_eq!(
            c.accrue(&id, 9, true, day, end, gib).unwrap(),
            Credits::ZERO
        );
    }

    #[test]
    fn queued_payments_number_their_periods_per_host_and_keep_their_answers() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("store.db")).unwrap();
        let id = StoreId::of(b"m");
        let me = AccountKey([7; 32]);
        let sign = |period: u32| SignedRequest {
            authorizer: me,
            msg: period.to_le_bytes().to_vec(),
            sig: vec![1],
        };
        c.queue_payment(&id, "a", Credits(5), sign).unwrap();
        c.queue_payment(&id, "a", Credits(6), sign).unwrap();
        c.queue_payment(&id, "b", Credits(7), sign).unwrap();
        let q = c.pending_payments(me).unwrap();
        let periods: Vec<(&str, u32)> = q.iter().map(|q| (q.host.as_str(), q.period)).collect();
        assert_eq!(periods, [("a", 0), ("a", 1), ("b", 0)]);
        c.payment_answered(&q[0], Ok(())).unwrap();
        c.payment_answered(&q[2], Err("escrow exhausted")).unwrap();
        assert_eq!(c.pending_payments(me).unwrap().len(), 1);
        let paid = c.paid(&id).unwrap();
        assert_eq!(paid["a"], (Credits(5), Credits(6)));
        assert_eq!(paid["b"], (Credits::ZERO, Credits::ZERO));
    }
}
