//! A job's escrow from open to close, in one place: noted open in `DIR/escrow.json`, then
//! opened before anything runs (so a refusal costs nothing); when the run ends, noted
//! closed if it paid and refunded, else reclaimed — its logged settlements sent again and
//! the rest refunded — now if the bank answers, or by the next run into `DIR`.

use crate::pay::{self, BankConn, Escrow, PayError};
use naac_ledger::AccountKey;
use naac_net::Keypair;
use naac_types::{Credits, Job, JobId};
use std::path::Path;
use std::time::Duration;

/// What `DIR/escrow.json` says about a run's escrow: open from before the job starts until
/// the run has paid and refunded, so a run that crashed leaves it open.
#[derive(serde::Serialize, serde::Deserialize)]
struct Note {
    job: String,
    bank: String,
    amount: String,
    open: bool,
}

/// Opens the escrow of `job` (`tasks` tasks, id `id`) with its first deposit: the first
/// copies in flight at their worst case ([`pay::first_deposit`]), not the whole job; when the
/// balance covers fewer, as many whole copies as it does. It is noted open in `out_dir`
/// before the bank hears of it, so a crash in between leaves a note the next run reclaims
/// (a note of an escrow the bank never opened is simply closed then).
pub async fn open(
    out_dir: &Path,
    bank: BankConn,
    user: &Keypair,
    (job, id, tasks): (&Job, JobId, u64),
    (claim_window, spend): (Duration, Option<&str>),
) -> Result<Escrow, PayError> {
    let bank_key = bank.key().await.map_err(PayError::Bank)?;
    let want = pay::first_deposit(job, tasks)?;
    let open = |amount| {
        open_noted(
            out_dir,
            &bank,
            &bank_key,
            user,
            (job, id),
            amount,
            (claim_window, spend),
        )
    };
    // Asked for in full first: a bank's faucet grants with a new user's first request.
    let balance = match open(want).await {
        Err(PayError::Insufficient { balance, .. }) => balance,
        done => return done,
    };
    let per_copy = job.budget.max_price.cost(job.limits.fuel);
    match crate::requester::budget::fundable(per_copy, want, balance) {
        Some(amount) => open(amount).await,
        None => Err(PayError::Insufficient {
            need: per_copy,
            balance,
        }),
    }
}

/// Notes the escrow open, then opens it with `amount`; a refusal is noted closed.
async fn open_noted(
    out_dir: &Path,
    bank: &BankConn,
    bank_key: &AccountKey,
    user: &Keypair,
    (job, id): (&Job, JobId),
    amount: Credits,
    (claim_window, spend): (Duration, Option<&str>),
) -> Result<Escrow, PayError> {
    write_note(out_dir, id, bank_key, amount, true);
    let opened = pay::open_escrow(
        bank.clone(),
        user,
        id,
        amount,
        (job.budget.max_price, job.limits.fuel),
        (claim_window, spend),
    )
    .await;
    if opened.is_err() {
        write_note(out_dir, id, bank_key, amount, false);
    }
    opened
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
    write_note(out_dir, e.job, &e.bank_key, e.amount, open);
}

fn write_note(out_dir: &Path, job: JobId, bank: &AccountKey, amount: Credits, open: bool) {
    let note = Note {
        job: job.to_hex(),
        bank: naac_types::hex(&bank.0),
        amount: amount.to_string(),
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
        payer: AccountKey(payer),
        // Only the refund is sent, signed by the payer (the controller, with a spend token).
        funder: AccountKey(payer),
        spend: None,
        amount: Credits::ZERO,
        max_price: naac_types::Price(0),
        balance_before: Credits::ZERO,
        // Not needed to refund: an escrow with a claim window closes, and the bank returns
        // its rest when the window ends.
        claim_window_ms: 0,
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
        Err(e) if e.contains("has no escrow") => {
            // Noted, but the run stopped before the bank opened it: nothing to reclaim.
            note(out_dir, &escrow, false);
            None
        }
        Err(e) => {
            tracing::warn!("the interrupted run's escrow: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noted(dir: &Path) -> Option<bool> {
        let bytes = std::fs::read(dir.join("escrow.json")).ok()?;
        Some(serde_json::from_slice::<Note>(&bytes).ok()?.open)
    }

    #[tokio::test]
    async fn an_escrow_is_noted_before_it_is_opened_and_a_never_opened_one_is_closed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bank_kp = Keypair::generate_ed25519();
        let bank = BankConn::Local(
            naac_bank::start_with_keypair(
                naac_bank::BankConfig {
                    store: format!("sqlite:{}", dir.path().join("ledger.db").display()),
                    faucet: naac_bank::Faucet::NONE,
                },
                bank_kp,
            )
            .expect("bank"),
        );
        let user = Keypair::generate_ed25519();
        let job_file = dir.path().join("job.toml");
        std::fs::write(dir.path().join("m.wasm"), b"\0asm").expect("module");
        std::fs::write(&job_file, "name = \"j\"\nmodule = \"m.wasm\"\n").expect("job file");
        let job = Job::load(&job_file).expect("job");
        let id = JobId::derive(&naac_types::ContentId::of(b"e"), b"1");
        let out = dir.path().join("out");
        // The user has nothing: refused, and the note says it is not open.
        let e = open(
            &out,
            bank.clone(),
            &user,
            (&job, id, 4),
            (Duration::ZERO, None),
        )
        .await;
        assert!(
            matches!(e, Err(PayError::Insufficient { .. })),
            "{:?}",
            e.err()
        );
        assert_eq!(noted(&out), Some(false));
        // A run that died between the note and the bank's answer: the next run finds the
        // note, learns the bank never opened it, and closes it.
        let key = bank.key().await.expect("bank key");
        write_note(&out, id, &key, Credits(1), true);
        assert_eq!(reclaim(&out, &bank, &user).await, None);
        assert_eq!(noted(&out), Some(false));
    }
}
