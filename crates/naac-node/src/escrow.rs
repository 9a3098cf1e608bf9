//! A job's escrow from open to close, in one place: opened before anything runs (so a
//! refusal costs nothing) and noted open in `DIR/escrow.json`; when the run ends, noted
//! closed if it paid and refunded, else reclaimed — its logged settlements sent again and
//! the rest refunded — now if the bank answers, or by the next run into `DIR`.

use crate::pay::{self, BankConn, Escrow, PayError};
use naac_net::Keypair;
use naac_types::{Credits, Job, JobId};
use std::path::Path;

/// What `DIR/escrow.json` says about a run's escrow: open from before the job starts until
/// the run has paid and refunded, so a run that crashed leaves it open.
#[derive(serde::Serialize, serde::Deserialize)]
struct Note {
    job: String,
    bank: String,
    amount: String,
    open: bool,
}

/// Opens the escrow `job` (`tasks` tasks, id `id`) needs and notes it open in `out_dir`.
pub async fn open(
    out_dir: &Path,
    bank: BankConn,
    user: &Keypair,
    job: &Job,
    id: JobId,
    tasks: u64,
) -> Result<Escrow, PayError> {
    let amount = pay::escrow_for(job, tasks);
    let escrow = pay::open_escrow(
        bank,
        user,
        id,
        amount,
        job.budget.max_price,
        job.limits.fuel,
        job.budget.max_cost,
    )
    .await?;
    note(out_dir, &escrow, true);
    Ok(escrow)
}

/// The run is over: `settled` when it paid every verified result and refunded the rest;
/// otherwise its escrow is reclaimed now (or, if the bank does not answer, by the next run
/// into `out_dir`). Returns what a reclaim refunded.
pub async fn close(
    out_dir: &Path,
    escrow: &Escrow,
    user: &Keypair,
    settled: bool,
) -> Option<(JobId, Credits)> {
    if settled {
        note(out_dir, escrow, false);
        return None;
    }
    reclaim(out_dir, &escrow.bank, user).await
}

fn note(out_dir: &Path, e: &Escrow, open: bool) {
    let note = Note {
        job: e.job.to_hex(),
        bank: naac_types::hex(&e.bank_key.0),
        amount: e.amount.to_string(),
        open,
    };
    let write = std::fs::create_dir_all(out_dir)
        .map_err(anyhow::Error::from)
        .and_then(|()| crate::output::write_json_atomic(&out_dir.join("escrow.json"), &note));
    if let Err(e) = write {
        tracing::warn!("could not note the escrow in {}: {e:#}", out_dir.display());
    }
}

/// Settles and refunds the escrow an interrupted or failed run into `out_dir` left open:
/// its logged settlements are sent again, then the rest is refunded (both idempotent).
/// Returns what was refunded, if anything was.
pub async fn reclaim(out_dir: &Path, bank: &BankConn, user: &Keypair) -> Option<(JobId, Credits)> {
    let bytes = std::fs::read(out_dir.join("escrow.json")).ok()?;
    let noted = serde_json::from_slice::<Note>(&bytes).ok()?;
    if !noted.open {
        return None;
    }
    let (Some(job), Ok(bank_key), Some(payer)) = (
        naac_ledger::unhex::<16>(&noted.job),
        bank.key().await,
        naac_net::ed25519_of_keypair(user),
    ) else {
        return None;
    };
    if naac_types::hex(&bank_key.0) != noted.bank {
        return None;
    }
    let escrow = Escrow {
        bank: bank.clone(),
        bank_key,
        job: JobId(job),
        payer: naac_ledger::AccountKey(payer),
        amount: Credits::ZERO,
        max_price: naac_types::Price(0),
        balance_before: Credits::ZERO,
    };
    // Its verified results are paid first: the settlements it logged are sent again (the
    // bank ignores those it already has).
    let log = pay::payment_log(out_dir, &escrow.job);
    if let Err(e) = pay::resend_log(bank, &log).await {
        tracing::warn!(
            "the interrupted run's payments could not be sent: {e}; its escrow stays open"
        );
        return None;
    }
    match pay::refund(&escrow, user).await {
        Ok(c) => {
            note(out_dir, &escrow, false);
            Some((escrow.job, c))
        }
        Err(e) => {
            tracing::warn!("the interrupted run's escrow: {e}");
            None
        }
    }
}
