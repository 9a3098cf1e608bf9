//! The ledger's rules: refusals and their messages, the auction rules at settlement,
//! replay and whole-ledger verification, and property tests over random histories.

use ed25519_dalek::{Signer, SigningKey};
use naac_ledger::{
    ASK_GRACE_MS, Account, AccountKey, Applied, Entry, HOSTILE_RULES_SINCE_MS, Kind, Ledger,
    LedgerError, Order, ReplayFault, Request, SignedOrder, SignedRecord, SignedRequest, TreeHead,
    VerifyError, order_tree, verify_entries,
};
use naac_market::{Ask, SignedAsk};
use naac_types::money::GIGA;
use naac_types::{ContentId, Credits, JobId, Outcome, Price, ResultRecord};
use proptest::prelude::*;
use std::time::Instant;

// ---------------------------------------------------------------------------------------
// Fixtures

fn sk(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn key(s: &SigningKey) -> AccountKey {
    AccountKey(s.verifying_key().to_bytes())
}

fn bank_sk() -> SigningKey {
    sk(100)
}

fn user(s: &SigningKey) -> Account {
    Account::User(key(s))
}

fn job(i: u8) -> JobId {
    JobId([i; 16])
}

fn signed(by: &SigningKey, bank: &AccountKey, r: &Request) -> SignedRequest {
    SignedRequest::new(key(by), bank, r, |m| by.sign(m).to_bytes().to_vec())
}

fn ask(by: &SigningKey, job: JobId, price: Price) -> SignedAsk {
    let ask = Ask {
        job,
        provider: key(by).0,
        price,
        expires_ms: 1_000_000,
    };
    let sig = by.sign(&ask.signing_bytes()).to_bytes().to_vec();
    SignedAsk { ask, sig }
}

fn result_record(job: JobId, task: u32, attempt: u32, fuel: u64) -> ResultRecord {
    ResultRecord {
        job,
        task,
        attempt,
        module: ContentId::of(b"module"),
        input: ContentId::of(&task.to_le_bytes()),
        output: ContentId::of(b"output"),
        outcome: Outcome::Ok,
        fuel_used: fuel,
    }
}

fn sign_record(by: &SigningKey, r: &ResultRecord) -> SignedRecord {
    let bytes = r.signing_bytes();
    let sig = by.sign(&bytes).to_bytes().to_vec();
    SignedRecord { bytes, sig }
}

fn record(by: &SigningKey, job: JobId, task: u32, fuel: u64) -> SignedRecord {
    sign_record(by, &result_record(job, task, 0, fuel))
}

fn c(n: u64) -> Credits {
    Credits::whole(n)
}

fn p(n: u64) -> Price {
    Price::whole(n)
}

/// A ledger with its bank's key and a clock.
struct World {
    ledger: Ledger,
    bank: SigningKey,
    now: u64,
    /// Every entry appended, in order.
    entries: Vec<Entry>,
}

impl World {
    fn new() -> Self {
        let bank = bank_sk();
        Self {
            ledger: Ledger::new(key(&bank)),
            bank,
            now: 1_000,
            entries: Vec::new(),
        }
    }

    fn req(&self, by: &SigningKey, r: &Request) -> SignedRequest {
        signed(by, &key(&self.bank), r)
    }

    fn apply(&mut self, by: &SigningKey, r: Request) -> Result<Applied, LedgerError> {
        let req = self.req(by, &r);
        let applied = self.ledger.apply(&req, self.now);
        if let Ok(Applied::New(e)) = &applied {
            self.entries.push(e.clone());
        }
        applied
    }

    /// Applies a request that must pass; returns its entry.
    fn ok(&mut self, by: &SigningKey, r: Request) -> Entry {
        match self.apply(by, r) {
            Ok(Applied::New(e)) => e,
            other => panic!("expected a new entry, got {other:?}"),
        }
    }

    /// Applies a request that must be refused; checks nothing changed; returns the error.
    fn refused(&mut self, by: &SigningKey, r: Request) -> LedgerError {
        let before = self.ledger.clone();
        let err = self.apply(by, r).expect_err("refused");
        assert_eq!(self.ledger, before, "a refusal changed the state");
        err
    }

    fn grant(&mut self, to: &SigningKey, amount: Credits) -> Entry {
        let bank = self.bank.clone();
        self.ok(
            &bank,
            Request::Grant {
                to: key(to),
                amount,
            },
        )
    }

    fn open(&mut self, payer: &SigningKey, job: JobId, amount: Credits, max: Price) -> Entry {
        self.ok(payer, open_req(payer, job, amount, max, self.now + 60_000))
    }
}

fn open_req(payer: &SigningKey, job: JobId, amount: Credits, max: Price, exp: u64) -> Request {
    Request::OpenEscrow {
        job,
        payer: key(payer),
        amount,
        max_price: max,
        fuel_limit: u64::MAX,
        expires_ms: exp,
        claim_window_ms: 0,
        spend: None,
    }
}

fn settle_req(
    job: JobId,
    provider: &SigningKey,
    record: SignedRecord,
    price: Price,
    winner: SignedAsk,
    second: Option<SignedAsk>,
) -> Request {
    Request::Settle {
        job,
        provider: key(provider),
        record,
        price,
        winner,
        second,
        fuel: None,
    }
}

/// A payer (1) with 1,000 credits and job 7's escrow of 100 at most 10 per giga-fuel;
/// providers 2 and 3.
fn market() -> (World, SigningKey, SigningKey, SigningKey) {
    let mut w = World::new();
    let (payer, a, b) = (sk(1), sk(2), sk(3));
    w.grant(&payer, c(1_000));
    w.open(&payer, job(7), c(100), p(10));
    (w, payer, a, b)
}

// ---------------------------------------------------------------------------------------
// The happy path

#[test]
fn grant_transfer_escrow_settle_refund() {
    let mut w = World::new();
    let (alice, bob, carol) = (sk(1), sk(2), sk(3));
    let e = w.grant(&alice, c(1_000));
    assert_eq!((e.seq, e.prev, e.kind), (0, [0; 32], Kind::Grant));
    assert_eq!(
        (e.debit, e.credit, e.amount),
        (Account::Mint, user(&alice), c(1_000))
    );
    assert_eq!(e.authorizer, key(&w.bank));
    assert!(w.ledger.is_granted(&key(&alice)));
    assert!(!w.ledger.is_granted(&key(&bob)));
    assert_eq!(w.ledger.head(), e.hash());

    let e = w.ok(
        &alice,
        Request::Transfer {
            from: key(&alice),
            to: key(&bob),
            amount: c(250),
            nonce: 1,
        },
    );
    assert_eq!(
        (e.seq, e.kind, e.memo.as_str()),
        (1, Kind::Transfer, "transfer 1")
    );
    assert_eq!(w.ledger.balance(&user(&alice)), c(750));
    assert_eq!(w.ledger.balance(&user(&bob)), c(250));

    let e = w.open(&alice, job(7), c(500), p(4));
    assert_eq!(
        (e.kind, e.job, e.credit),
        (Kind::Escrow, Some(job(7)), Account::Escrow(job(7)))
    );
    assert!(e.memo.starts_with("job 07070707"), "{}", e.memo);

    // Carol wins at her ask of 2 with bob's 3 second: she is paid 3 per giga-fuel.
    let rec = record(&carol, job(7), 12, 20 * GIGA);
    let e = w.ok(
        &alice,
        settle_req(
            job(7),
            &carol,
            rec.clone(),
            p(3),
            ask(&carol, job(7), p(2)),
            Some(ask(&bob, job(7), p(3))),
        ),
    );
    assert_eq!(e.amount, c(60));
    assert_eq!(e.task, Some(12));
    assert_eq!(e.record, Some(*blake3::hash(&rec.bytes).as_bytes()));
    assert!(e.memo.contains("task 12"), "{}", e.memo);
    assert!(
        w.ledger
            .is_settled(&e.record.expect("settle names its record"))
    );
    let esc = w.ledger.escrow(&job(7)).expect("open");
    assert_eq!(
        (esc.opened, esc.left, esc.paid, esc.settled),
        (c(500), c(440), c(60), 1)
    );
    assert_eq!(w.ledger.balance(&user(&carol)), c(60));
    assert_eq!(w.ledger.balance(&Account::Escrow(job(7))), c(440));

    let e = w.ok(&alice, Request::Refund { job: job(7) });
    assert_eq!(
        (e.kind, e.amount, e.credit),
        (Kind::Refund, c(440), user(&alice))
    );
    assert!(w.ledger.escrow(&job(7)).expect("known").closed);
    assert_eq!(w.ledger.balance(&user(&alice)), c(690));
    assert_eq!(w.ledger.issued(), c(1_000));
    assert_eq!(w.ledger.balance(&Account::Mint), Credits::ZERO);
    assert!(w.ledger.conserved());
    assert_eq!(w.ledger.len(), 5);
    let accounts: Vec<_> = w.ledger.accounts().collect();
    assert_eq!(accounts.len(), 4);
    assert_eq!(accounts.iter().map(|(_, b)| b.0).sum::<u64>(), c(1_000).0);

    let cp = w.ledger.checkpoint(99);
    assert_eq!(
        (cp.size, cp.root, cp.head, cp.time_ms),
        (5, w.ledger.root(), w.ledger.head(), 99)
    );
    assert!(cp.sig.is_empty());
    assert_eq!(w.ledger.tree().len(), 5);
}

#[test]
fn duplicates_change_nothing_and_name_the_first_entry() {
    let mut w = World::new();
    let (alice, bob) = (sk(1), sk(2));
    let bank = w.bank.clone();
    let grant = Request::Grant {
        to: key(&alice),
        amount: c(100),
    };
    let transfer = Request::Transfer {
        from: key(&alice),
        to: key(&bob),
        amount: c(10),
        nonce: 5,
    };
    let open = open_req(&alice, job(1), c(50), p(1), 10_000);
    let refund = Request::Refund { job: job(1) };
    for (by, r) in [
        (&bank, &grant),
        (&alice, &transfer),
        (&alice, &open),
        (&alice, &refund),
    ] {
        let seq = w.ok(by, r.clone()).seq;
        let before = w.ledger.clone();
        assert_eq!(w.apply(by, r.clone()), Ok(Applied::Duplicate { seq }));
        assert_eq!(w.ledger, before);
    }
    // The bank's expiry refund of an escrow the payer already closed is a duplicate too.
    w.now = 20_000;
    assert_eq!(w.apply(&bank, refund), Ok(Applied::Duplicate { seq: 3 }));
}

// ---------------------------------------------------------------------------------------
// Refusals and their messages

#[test]
fn refusal_messages() {
    let mut w = World::new();
    let (alice, bob, mallory) = (sk(1), sk(2), sk(66));
    let bank = w.bank.clone();
    w.grant(&alice, c(300));

    // Signature and envelope.
    let mut req = w.req(&alice, &Request::Refund { job: job(1) });
    req.sig[0] ^= 1;
    let before = w.ledger.clone();
    let e = w.ledger.apply(&req, 0).expect_err("bad signature");
    assert_eq!(e, LedgerError::BadSignature);
    assert_eq!(e.to_string(), "request signature is not the authorizer's");
    let garbage = b"not a request".to_vec();
    let req = SignedRequest {
        authorizer: key(&alice),
        sig: alice.sign(&garbage).to_bytes().to_vec(),
        msg: garbage,
    };
    let e = w.ledger.apply(&req, 0).expect_err("not a request");
    assert!(e.to_string().contains("domain"), "{e}");
    let huge = vec![0u8; 5_000];
    let req = SignedRequest {
        authorizer: key(&alice),
        sig: alice.sign(&huge).to_bytes().to_vec(),
        msg: huge,
    };
    let e = w.ledger.apply(&req, 0).expect_err("too large");
    assert_eq!(e.to_string(), "request is 5000 bytes; at most 4096 allowed");
    let other_bank = sk(101);
    let req = signed(&alice, &key(&other_bank), &Request::Refund { job: job(1) });
    let e = w.ledger.apply(&req, 0).expect_err("other bank");
    assert_eq!(e, LedgerError::WrongBank(key(&other_bank)));
    assert!(
        e.to_string().starts_with("request is addressed to bank "),
        "{e}"
    );
    assert!(e.to_string().ends_with(", not this one"), "{e}");
    assert_eq!(w.ledger, before);

    // Grants.
    let e = w.refused(
        &alice,
        Request::Grant {
            to: key(&alice),
            amount: c(5),
        },
    );
    assert_eq!(e.to_string(), "grant is not signed by the bank");
    let e = w.refused(
        &bank,
        Request::Grant {
            to: key(&alice),
            amount: c(5),
        },
    );
    assert_eq!(e, LedgerError::AlreadyGranted(key(&alice)));
    assert!(e.to_string().ends_with("already received its grant"), "{e}");
    let e = w.refused(
        &bank,
        Request::Grant {
            to: key(&bob),
            amount: Credits::ZERO,
        },
    );
    assert_eq!(e.to_string(), "amount must be more than zero");
    let e = w.refused(
        &bank,
        Request::Grant {
            to: key(&bob),
            amount: Credits(u64::MAX),
        },
    );
    assert_eq!(e, LedgerError::Overflow);
    assert_eq!(e.to_string(), "amount would overflow the books");

    // Transfers.
    let t = |from: &SigningKey, to: &SigningKey, amount, nonce| Request::Transfer {
        from: key(from),
        to: key(to),
        amount,
        nonce,
    };
    let e = w.refused(&alice, t(&alice, &bob, c(1_200), 1));
    assert_eq!(e.to_string(), "transfer needs 1,200 credits; balance 300");
    let e = w.refused(&mallory, t(&alice, &bob, c(1), 1));
    assert!(matches!(e, LedgerError::NotPayer { .. }));
    assert!(e.to_string().starts_with("request is signed by "), "{e}");
    assert!(e.to_string().contains(", not by the payer "), "{e}");
    let e = w.refused(&alice, t(&alice, &alice, c(1), 1));
    assert_eq!(e.to_string(), "cannot transfer from an account to itself");
    let e = w.refused(&alice, t(&alice, &bob, Credits::ZERO, 1));
    assert_eq!(e, LedgerError::ZeroAmount);
    w.ok(&alice, t(&alice, &bob, c(1), 1));
    let e = w.refused(&alice, t(&alice, &bob, c(2), 1));
    assert_eq!(
        e,
        LedgerError::NonceReused {
            from: key(&alice),
            nonce: 1
        }
    );
    assert!(e.to_string().contains("nonce 1"), "{e}");
    assert!(
        e.to_string()
            .ends_with("was already used for another transfer"),
        "{e}"
    );

    // Escrows.
    let e = w.refused(&alice, open_req(&alice, job(1), c(1_200), p(1), 5_000));
    assert_eq!(
        e.to_string(),
        "job 01010101 needs up to 1,200 credits; balance 299"
    );
    assert!(matches!(
        e,
        LedgerError::InsufficientBalance {
            need,
            balance,
            job: Some(_)
        } if need == c(1_200) && balance == c(299)
    ));
    let e = w.refused(&bob, open_req(&alice, job(1), c(1), p(1), 5_000));
    assert!(matches!(e, LedgerError::NotPayer { .. }));
    let e = w.refused(&alice, open_req(&alice, job(1), Credits::ZERO, p(1), 5_000));
    assert_eq!(e, LedgerError::ZeroAmount);
    w.ok(&alice, open_req(&alice, job(1), c(10), p(1), 5_000));
    let e = w.refused(&alice, open_req(&alice, job(1), c(11), p(1), 5_000));
    assert_eq!(e.to_string(), "job 01010101 already has an escrow");

    // Refunds.
    let e = w.refused(&alice, Request::Refund { job: job(2) });
    assert_eq!(e.to_string(), "job 02020202 has no escrow");
    let e = w.refused(&bob, Request::Refund { job: job(1) });
    assert!(matches!(e, LedgerError::NotPayer { .. }));
    // The bank may refund only once the escrow has expired.
    w.now = 4_999;
    let e = w.refused(&bank, Request::Refund { job: job(1) });
    assert!(matches!(e, LedgerError::NotPayer { .. }));
    assert_eq!(w.ledger.expired_escrows(w.now), vec![]);
    w.now = 5_000;
    assert_eq!(w.ledger.expired_escrows(w.now), vec![job(1)]);
    let e = w.ok(&bank, Request::Refund { job: job(1) });
    assert_eq!(
        (e.amount, e.credit, e.authorizer),
        (c(10), user(&alice), key(&bank))
    );
    assert_eq!(e.memo, "job 01010101 expired");
    assert_eq!(w.ledger.expired_escrows(u64::MAX), vec![]);

    // Settlements.
    let rec = record(&bob, job(1), 0, GIGA);
    let e = w.refused(
        &alice,
        settle_req(
            job(1),
            &bob,
            rec.clone(),
            p(1),
            ask(&bob, job(1), p(1)),
            None,
        ),
    );
    assert_eq!(e.to_string(), "escrow of job 01010101 is closed");
    let e = w.refused(
        &alice,
        settle_req(job(3), &bob, rec, p(1), ask(&bob, job(3), p(1)), None),
    );
    assert_eq!(e, LedgerError::NoSuchEscrow(job(3)));
    assert_eq!(w.ledger.len(), 4);
    assert!(w.ledger.conserved());
}

#[test]
fn entry_times_never_go_back() {
    let mut w = World::new();
    let (alice, bob) = (sk(1), sk(2));
    w.now = 5_000;
    w.grant(&alice, c(10));
    w.open(&alice, job(1), c(5), p(1));
    // The clock steps back: the entry keeps the last entry's time.
    w.now = 4_000;
    let e = w.grant(&bob, c(10));
    assert_eq!(e.time_ms, 5_000);
    assert_eq!(w.ledger.last_time_ms(), 5_000);
    w.now = 70_000;
    assert_eq!(w.grant(&sk(3), c(1)).time_ms, 70_000);
}

#[test]
fn a_top_up_adds_to_an_open_escrow_once_and_only_from_its_payer() {
    let (mut w, payer, a, _) = market();
    let top = |amount, nonce| Request::TopUp {
        job: job(7),
        amount: c(amount),
        nonce,
        expires_ms: None,
        spend: None,
    };
    let e = w.ok(&payer, top(50, 1));
    assert_eq!(
        (e.kind, e.debit, e.credit, e.amount),
        (Kind::Escrow, user(&payer), Account::Escrow(job(7)), c(50))
    );
    assert!(e.memo.ends_with("top-up 1"), "{}", e.memo);
    let esc = w.ledger.escrow(&job(7)).expect("open");
    assert_eq!((esc.opened, esc.left), (c(150), c(150)));
    assert_eq!(w.ledger.balance(&user(&payer)), c(850));
    // The same signed top-up again is a duplicate; another under the same nonce a clash.
    assert_eq!(
        w.apply(&payer, top(50, 1)),
        Ok(Applied::Duplicate { seq: e.seq })
    );
    assert_eq!(
        w.refused(&payer, top(60, 1)),
        LedgerError::TopUpNonceReused {
            job: job(7),
            nonce: 1
        }
    );
    // Only the payer tops up, with money it has, an escrow that is open.
    assert!(matches!(
        w.refused(&a, top(5, 2)),
        LedgerError::NotPayer { .. }
    ));
    assert!(matches!(
        w.refused(&payer, top(10_000, 2)),
        LedgerError::InsufficientBalance { .. }
    ));
    assert_eq!(w.refused(&payer, top(0, 2)), LedgerError::ZeroAmount);
    assert_eq!(
        w.refused(
            &payer,
            Request::TopUp {
                job: job(8),
                amount: c(1),
                nonce: 2,
                expires_ms: None,
                spend: None,
            }
        ),
        LedgerError::NoSuchEscrow(job(8))
    );
    // A top-up may move the expiry out, never in.
    let before = w.ledger.escrow(&job(7)).expect("open").expires_ms;
    let later = Request::TopUp {
        job: job(7),
        amount: c(1),
        nonce: 5,
        expires_ms: Some(before + 1_000),
        spend: None,
    };
    w.ok(&payer, later);
    assert_eq!(
        w.ledger.escrow(&job(7)).expect("open").expires_ms,
        before + 1_000
    );
    let sooner = Request::TopUp {
        job: job(7),
        amount: c(1),
        nonce: 6,
        expires_ms: Some(1),
        spend: None,
    };
    w.ok(&payer, sooner);
    assert_eq!(
        w.ledger.escrow(&job(7)).expect("open").expires_ms,
        before + 1_000
    );
    assert!(
        w.ledger.expired_escrows(before + 500).is_empty(),
        "not due yet"
    );
    let r = w.ok(&payer, Request::Refund { job: job(7) });
    assert_eq!(r.amount, c(152));
    assert_eq!(
        w.refused(&payer, top(5, 3)),
        LedgerError::EscrowClosed(job(7))
    );
    assert_eq!(w.ledger.issued(), c(1_000));
}

#[test]
fn storage_periods_are_paid_once_each_only_by_the_payer_and_replay() {
    let (mut w, payer, a, b) = market();
    let pay = |to: &SigningKey, period, amount| Request::StorePay {
        job: job(7),
        provider: key(to),
        period,
        amount: c(amount),
    };
    let e = w.ok(&payer, pay(&a, 0, 10));
    assert_eq!(
        (e.kind, e.debit, e.credit, e.amount, e.task),
        (
            Kind::Storage,
            Account::Escrow(job(7)),
            user(&a),
            c(10),
            Some(0)
        )
    );
    assert_eq!(w.ledger.store_paid_by(&job(7), &key(&a), 0), Some(e.seq));
    // Again: a duplicate; another amount for the same host and period: refused.
    assert_eq!(
        w.apply(&payer, pay(&a, 0, 10)),
        Ok(Applied::Duplicate { seq: e.seq })
    );
    assert!(matches!(
        w.refused(&payer, pay(&a, 0, 11)),
        LedgerError::StorePeriodPaid { period: 0, .. }
    ));
    // Another host, the same period: its own payment.
    w.ok(&payer, pay(&b, 0, 10));
    // A host cannot pay itself; nobody pays beyond the escrow, to the payer, or nothing.
    assert!(matches!(
        w.refused(&a, pay(&a, 1, 10)),
        LedgerError::NotPayer { .. }
    ));
    assert!(matches!(
        w.refused(&payer, pay(&a, 1, 81)),
        LedgerError::EscrowExhausted { .. }
    ));
    assert_eq!(
        w.refused(&payer, pay(&payer, 1, 1)),
        LedgerError::SelfTransfer
    );
    assert_eq!(w.refused(&payer, pay(&a, 1, 0)), LedgerError::ZeroAmount);
    // The refund returns the rest; nothing is paid after it.
    let r = w.ok(&payer, Request::Refund { job: job(7) });
    assert_eq!(r.amount, c(80));
    assert_eq!(
        w.refused(&payer, pay(&a, 1, 1)),
        LedgerError::EscrowClosed(job(7))
    );
    assert_eq!(w.ledger.balance(&user(&a)), c(10));
    assert!(w.ledger.conserved());
    // A verifier replays the same books.
    let mut replayed = Ledger::new(key(&w.bank));
    for e in &w.entries {
        replayed.replay(e).expect("replays");
    }
    assert_eq!(replayed, w.ledger);
}

#[test]
fn a_zero_refund_is_still_booked() {
    let (mut w, payer, a, _) = market();
    // 10 per giga-fuel × 10 giga-fuel: the whole escrow.
    w.ok(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 0, 10 * GIGA),
            p(10),
            ask(&a, job(7), p(5)),
            None,
        ),
    );
    let e = w.ok(&payer, Request::Refund { job: job(7) });
    assert_eq!((e.kind, e.amount), (Kind::Refund, Credits::ZERO));
    assert!(w.ledger.escrow(&job(7)).expect("known").closed);
}

// ---------------------------------------------------------------------------------------
// Provider claims: a payer who closes its escrow after receiving results still pays them

/// A 100-credit escrow of `job(9)` by `payer`, at most 10 per giga-fuel and 2 giga-fuel a
/// result (20 credits a run at worst), expiring in an hour, with a one-minute claim window;
/// an order of runs (0,0), (1,0), (2,0) to `a` at 4, committed (60 credits reserved).
fn claim_world() -> (World, SigningKey, SigningKey, SignedOrder, Vec<(u32, u32)>) {
    let mut w = World::new();
    let (payer, a) = (sk(1), sk(2));
    w.grant(&payer, c(1000));
    w.ok(&payer, windowed(&payer, job(9), c(100), w.now + 3_600_000));
    let runs = vec![(0, 0), (1, 0), (2, 0)];
    let order = order_of(&w, &payer, &a, &runs, p(4));
    let e = w.ok(
        &payer,
        Request::Commit {
            job: job(9),
            order: order.clone(),
        },
    );
    assert_eq!((e.kind, e.amount), (Kind::Commit, Credits::ZERO));
    assert_eq!(w.ledger.reserved_for(&job(9), &key(&a)), c(60));
    (w, payer, a, order, runs)
}

fn windowed(payer: &SigningKey, job: JobId, amount: Credits, exp: u64) -> Request {
    Request::OpenEscrow {
        job,
        payer: key(payer),
        amount,
        max_price: p(10),
        fuel_limit: 2 * GIGA,
        expires_ms: exp,
        claim_window_ms: 60_000,
        spend: None,
    }
}

fn order_of(
    w: &World,
    by: &SigningKey,
    to: &SigningKey,
    runs: &[(u32, u32)],
    price: Price,
) -> SignedOrder {
    Order::new(key(&w.bank), job(9), key(to), price, runs).sign(|m| by.sign(m).to_bytes().to_vec())
}

fn proof(runs: &[(u32, u32)], i: u32) -> Vec<[u8; 32]> {
    order_tree(runs)
        .inclusion_proof(u64::from(i), runs.len() as u64)
        .expect("proof")
}

fn claim_req(order: &SignedOrder, record: SignedRecord, runs: &[(u32, u32)], i: u32) -> Request {
    Request::Claim {
        job: job(9),
        order: order.clone(),
        record,
        index: i,
        proof: proof(runs, i),
    }
}

fn reject_req(order: &SignedOrder, runs: &[(u32, u32)], i: u32) -> Request {
    let (task, attempt) = runs[i as usize];
    Request::Reject {
        job: job(9),
        order: order.clone(),
        task,
        attempt,
        index: i,
        proof: proof(runs, i),
    }
}

#[test]
fn a_payer_who_closes_after_results_still_pays_the_claims_of_delivered_ones() {
    let (mut w, payer, a, order, runs) = claim_world();
    // Task 0 is settled by the payer as usual; task 1 was wrong and is rejected; task 2
    // was delivered and never paid.
    let r0 = record(&a, job(9), 0, GIGA / 2);
    let r1 = record(&a, job(9), 1, GIGA / 2);
    let r2 = record(&a, job(9), 2, GIGA / 2);
    w.ok(
        &payer,
        settle_req(job(9), &a, r0.clone(), p(10), ask(&a, job(9), p(4)), None),
    );
    // Paying a frees that run's worst case of its reservation, and so does a rejection.
    assert_eq!(w.ledger.reserved_for(&job(9), &key(&a)), c(40));
    let rej = w.ok(&payer, reject_req(&order, &runs, 1));
    assert_eq!((rej.kind, rej.amount), (Kind::Reject, Credits::ZERO));
    assert_eq!(w.ledger.reserved_for(&job(9), &key(&a)), c(20));
    assert!(matches!(
        w.apply(&payer, reject_req(&order, &runs, 1)),
        Ok(Applied::Duplicate { seq }) if seq == rej.seq
    ));
    // Claims wait for the payer: the escrow is open and far from expiry.
    let early = w.refused(&a, claim_req(&order, r2.clone(), &runs, 2));
    assert!(
        matches!(early, LedgerError::ClaimsNotOpen { .. }),
        "{early}"
    );
    // The payer's refund returns what no reservation holds and closes the escrow.
    let payer_before = w.ledger.balance(&user(&payer));
    let close = w.ok(&payer, Request::Refund { job: job(9) });
    assert_eq!((close.kind, close.amount), (Kind::Close, c(75)));
    assert_eq!(w.ledger.balance(&user(&payer)).0, payer_before.0 + c(75).0);
    let esc = w.ledger.escrow(&job(9)).expect("escrow").clone();
    assert!(esc.closing && !esc.closed);
    assert_eq!((esc.left, esc.reserved), (c(20), c(20)));
    assert_eq!(esc.expires_ms, w.now + 60_000);
    assert!(matches!(
        w.apply(&payer, Request::Refund { job: job(9) }),
        Ok(Applied::Duplicate { seq }) if seq == close.seq
    ));
    let top = Request::TopUp {
        job: job(9),
        amount: c(1),
        nonce: 1,
        expires_ms: None,
        spend: None,
    };
    assert!(matches!(
        w.refused(&payer, top),
        LedgerError::EscrowClosing(_)
    ));
    // The provider claims: the settled one is a duplicate, the rejected one refused, the
    // unpaid one paid at the order's price.
    let before = w.ledger.balance(&user(&a));
    assert!(matches!(
        w.apply(&a, claim_req(&order, r0, &runs, 0)),
        Ok(Applied::Duplicate { .. })
    ));
    let why = w.refused(&a, claim_req(&order, r1, &runs, 1));
    assert!(
        matches!(why, LedgerError::Rejected { seq, .. } if seq == rej.seq),
        "{why}"
    );
    // Nor is a settled run paid again under another record (another fuel figure).
    let again = record(&a, job(9), 0, GIGA / 4);
    let why = w.refused(&a, claim_req(&order, again, &runs, 0));
    assert!(matches!(why, LedgerError::RunPaid { task: 0, .. }), "{why}");
    let claim = w.ok(&a, claim_req(&order, r2.clone(), &runs, 2));
    assert_eq!(claim.kind, Kind::Claim);
    assert_eq!(claim.amount, p(4).cost(GIGA / 2));
    assert_eq!(w.ledger.balance(&user(&a)).0, before.0 + claim.amount.0);
    assert!(matches!(
        w.apply(&a, claim_req(&order, r2, &runs, 2)),
        Ok(Applied::Duplicate { seq }) if seq == claim.seq
    ));
    // A claimed run is not settled again under another record either, nor rejected.
    let other = record(&a, job(9), 2, GIGA / 4);
    let why = w.refused(
        &payer,
        settle_req(job(9), &a, other, p(10), ask(&a, job(9), p(4)), None),
    );
    assert!(matches!(why, LedgerError::RunPaid { task: 2, .. }), "{why}");
    let why = w.refused(&payer, reject_req(&order, &runs, 2));
    assert!(matches!(why, LedgerError::RunPaid { task: 2, .. }), "{why}");
    // When the window ends the bank's sweep returns the rest; the payer's refund stays a
    // duplicate of its close.
    assert!(w.ledger.expired_escrows(w.now).is_empty());
    w.now += 60_000;
    assert_eq!(w.ledger.expired_escrows(w.now), vec![job(9)]);
    assert!(matches!(
        w.apply(&payer, Request::Refund { job: job(9) }),
        Ok(Applied::Duplicate { seq }) if seq == close.seq
    ));
    let left = w.ledger.escrow(&job(9)).expect("escrow").left;
    let bank = w.bank.clone();
    let refund = w.ok(&bank, Request::Refund { job: job(9) });
    assert_eq!((refund.kind, refund.amount), (Kind::Refund, left));
    assert!(w.ledger.conserved());
    // Replaying the entries rebuilds the same books.
    let mut again = Ledger::new(key(&w.bank));
    for e in &w.entries {
        again.replay(e).expect("replays");
    }
    assert_eq!(again, w.ledger);
}

#[test]
fn a_payer_cannot_pay_keys_of_its_own_out_of_a_providers_reservation() {
    let (mut w, payer, a, order, runs) = claim_world();
    // 100 in the escrow, 60 reserved for a: keys of the payer's own can be paid the 40
    // no reservation holds (2 giga-fuel at 10 = 20 each), not a credit more.
    for (i, puppet) in [sk(5), sk(6), sk(7)].iter().enumerate() {
        let r = record(puppet, job(9), 100 + i as u32, 2 * GIGA);
        let settle = settle_req(job(9), puppet, r, p(10), ask(puppet, job(9), p(1)), None);
        if i < 2 {
            w.ok(&payer, settle);
        } else {
            let why = w.refused(&payer, settle);
            assert!(matches!(why, LedgerError::EscrowExhausted { .. }), "{why}");
        }
    }
    // Nor can the payer free a's reservation by rejecting runs a was never ordered.
    let fake = vec![(50, 0), (51, 0)];
    let not_committed = order_of(&w, &payer, &a, &fake, p(4));
    let why = w.refused(&payer, reject_req(&not_committed, &fake, 0));
    assert!(why.to_string().contains("never committed"), "{why}");
    let why = w.refused(
        &payer,
        Request::Reject {
            job: job(9),
            order: order.clone(),
            task: 50,
            attempt: 0,
            index: 0,
            proof: proof(&runs, 0),
        },
    );
    assert!(
        why.to_string().contains("is not run 0 of the order"),
        "{why}"
    );
    // Closing returns nothing (all left is reserved); a claims all three of its runs.
    let close = w.ok(&payer, Request::Refund { job: job(9) });
    assert_eq!((close.kind, close.amount), (Kind::Close, Credits::ZERO));
    for i in 0..3 {
        let r = record(&a, job(9), i, 2 * GIGA);
        assert_eq!(w.ok(&a, claim_req(&order, r, &runs, i)).amount, c(8));
    }
    assert_eq!(w.ledger.reserved_for(&job(9), &key(&a)), Credits::ZERO);
    assert!(w.ledger.conserved());
}

#[test]
fn claims_need_the_payers_committed_order_for_that_run_and_the_providers_record() {
    let (mut w, payer, a, order, runs) = claim_world();
    let b = sk(3);
    w.ok(&payer, Request::Refund { job: job(9) });
    let why = |w: &mut World, by: &SigningKey, r: Request| w.refused(by, r).to_string();
    // Another provider cannot use a's order, nor a's record.
    let r2 = record(&a, job(9), 2, GIGA);
    assert!(
        why(&mut w, &b, claim_req(&order, r2.clone(), &runs, 2)).contains("order is for provider")
    );
    // A record for a run the order does not hold (task 5), or at the wrong index.
    let r5 = record(&a, job(9), 5, GIGA);
    assert!(why(&mut w, &a, claim_req(&order, r5, &runs, 2)).contains("is not run 2 of the order"));
    assert!(why(&mut w, &a, claim_req(&order, r2.clone(), &runs, 1)).contains("is not run 1"));
    // An order the provider wrote itself; one the payer signed but never committed.
    let forged = order_of(&w, &a, &a, &runs, p(4));
    assert!(
        why(&mut w, &a, claim_req(&forged, r2.clone(), &runs, 2))
            .contains("not signed by the escrow's payer")
    );
    let other = order_of(&w, &payer, &a, &runs, p(5));
    assert!(why(&mut w, &a, claim_req(&other, r2.clone(), &runs, 2)).contains("never committed"));
    // An order above the escrow's price.
    let greedy = order_of(&w, &payer, &a, &runs, p(11));
    assert!(
        why(&mut w, &a, claim_req(&greedy, r2.clone(), &runs, 2)).contains("above the escrow's")
    );
    // A record signed by someone else.
    let theirs = record(&b, job(9), 2, GIGA);
    assert!(
        why(&mut w, &a, claim_req(&order, theirs, &runs, 2))
            .contains("not signed by the claiming provider")
    );
    // More fuel than the job's limit.
    let big = record(&a, job(9), 2, 3 * GIGA);
    assert!(why(&mut w, &a, claim_req(&order, big, &runs, 2)).contains("above the job's limit"));
    // Garbage in place of an order.
    let junk = SignedOrder {
        bytes: vec![1, 2, 3],
        sig: vec![0; 64],
    };
    assert!(why(&mut w, &a, claim_req(&junk, r2.clone(), &runs, 2)).contains("not a signed order"));
    // After the window closes the escrow, claims are too late.
    w.ok(&a, claim_req(&order, r2, &runs, 2));
    w.now += 60_000;
    let bank = w.bank.clone();
    w.ok(&bank, Request::Refund { job: job(9) });
    let late = record(&a, job(9), 0, GIGA / 4);
    assert!(why(&mut w, &a, claim_req(&order, late, &runs, 0)).contains("is closed"));
    assert!(w.ledger.conserved());
}

#[test]
fn claims_open_in_the_last_window_of_an_escrow_its_payer_abandoned() {
    let (mut w, _payer, a, order, runs) = claim_world();
    let r = record(&a, job(9), 0, GIGA);
    let opens = w.ledger.escrow(&job(9)).expect("escrow").claims_open_ms();
    assert_eq!(opens, Some(w.now + 3_600_000 - 60_000));
    w.now += 3_600_000 - 60_001;
    assert!(matches!(
        w.refused(&a, claim_req(&order, r.clone(), &runs, 0)),
        LedgerError::ClaimsNotOpen { .. }
    ));
    w.now += 1;
    assert_eq!(w.ok(&a, claim_req(&order, r, &runs, 0)).kind, Kind::Claim);
}

#[test]
fn an_escrow_without_a_claim_window_refunds_at_once_and_takes_no_orders() {
    let (mut w, payer, a, _) = market();
    let runs = vec![(0, 0)];
    let order = Order::new(key(&w.bank), job(7), key(&a), p(4), &runs)
        .sign(|m| payer.sign(m).to_bytes().to_vec());
    let commit = Request::Commit {
        job: job(7),
        order: order.clone(),
    };
    assert!(matches!(
        w.refused(&payer, commit),
        LedgerError::NoClaims(_)
    ));
    let claim = Request::Claim {
        job: job(7),
        order,
        record: record(&a, job(7), 0, GIGA),
        index: 0,
        proof: Vec::new(),
    };
    assert!(matches!(w.refused(&a, claim), LedgerError::NoClaims(_)));
    let e = w.ok(&payer, Request::Refund { job: job(7) });
    assert_eq!(e.kind, Kind::Refund);
}

// ---------------------------------------------------------------------------------------
// The auction at settlement

#[test]
fn truthful_second_price_is_paid() {
    let (mut w, payer, a, b) = market();
    let e = w.ok(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 1, 2 * GIGA),
            p(6),
            ask(&a, job(7), p(4)),
            Some(ask(&b, job(7), p(6))),
        ),
    );
    assert_eq!(e.amount, c(12));
    assert_eq!(w.ledger.balance(&user(&a)), c(12));
    // A tie: the second ask may equal the winner's.
    let e = w.ok(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 2, GIGA),
            p(4),
            ask(&a, job(7), p(4)),
            Some(ask(&b, job(7), p(4))),
        ),
    );
    assert_eq!(e.amount, c(4));
}

/// Job 7's market at a time the hostile-peer rules apply, with asks valid until then.
fn market_now() -> (World, SigningKey, SigningKey, SigningKey) {
    let mut w = World::new();
    w.now = HOSTILE_RULES_SINCE_MS + 1_000;
    let (payer, a, b) = (sk(1), sk(2), sk(3));
    w.grant(&payer, c(1_000));
    w.open(&payer, job(7), c(100), p(10));
    (w, payer, a, b)
}

fn ask_until(by: &SigningKey, job: JobId, price: Price, expires_ms: u64) -> SignedAsk {
    let ask = Ask {
        job,
        provider: key(by).0,
        price,
        expires_ms,
    };
    let sig = by.sign(&ask.signing_bytes()).to_bytes().to_vec();
    SignedAsk { ask, sig }
}

#[test]
fn a_fabricated_second_bidder_is_refused_at_settlement() {
    let (mut w, payer, a, _) = market_now();
    let until = w.now + 60_000;
    // The payer signs a "second ask" with a key of its own, just above the winner's ask.
    let fake = sk(40);
    let e = w.refused(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 1, GIGA),
            p(5),
            ask_until(&a, job(7), p(4), until),
            Some(ask_until(&fake, job(7), p(5), until)),
        ),
    );
    assert!(
        e.to_string()
            .contains("which has no standing at this bank (its operator has not registered it)"),
        "{e}"
    );
    // Only the bank registers a provider, once; it moves nothing.
    assert_eq!(
        w.refused(
            &payer,
            Request::Register {
                provider: key(&fake)
            }
        ),
        LedgerError::NotBank
    );
    let bank = w.bank.clone();
    let r = w.ok(
        &bank,
        Request::Register {
            provider: key(&fake),
        },
    );
    assert_eq!(
        (r.kind, r.debit, r.credit, r.amount),
        (Kind::Register, Account::Mint, user(&fake), Credits::ZERO)
    );
    assert!(w.ledger.has_standing(&key(&fake)));
    assert_eq!(
        w.apply(
            &bank,
            Request::Register {
                provider: key(&fake)
            }
        ),
        Ok(Applied::Duplicate { seq: r.seq })
    );
    // Vouched for, its ask sets the price.
    let e = w.ok(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 1, GIGA),
            p(5),
            ask_until(&a, job(7), p(4), until),
            Some(ask_until(&fake, job(7), p(5), until)),
        ),
    );
    assert_eq!(e.amount, c(5));
    // The lone-bidder rule needs no standing: the escrow's max price.
    let e = w.ok(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 2, GIGA),
            p(10),
            ask_until(&a, job(7), p(4), until),
            None,
        ),
    );
    assert_eq!(e.amount, c(10));
    assert_eq!(w.ledger.issued(), c(1_000));
}

#[test]
fn an_ask_long_expired_is_refused_at_settlement() {
    let (mut w, payer, a, _) = market_now();
    let expired = w.now - ASK_GRACE_MS - 1;
    let e = w.refused(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 1, GIGA),
            p(10),
            ask_until(&a, job(7), p(4), expired),
            None,
        ),
    );
    assert!(
        e.to_string()
            .contains("more than a day before this settlement"),
        "{e}"
    );
    // Within a day of its expiry it still pays for work awarded under it.
    w.ok(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 1, GIGA),
            p(10),
            ask_until(&a, job(7), p(4), expired + 1),
            None,
        ),
    );
}

#[test]
fn entries_made_before_the_hostile_rules_replay_under_the_old_ones() {
    // Made before the rules changed: an unregistered second ask and an ask long expired.
    let (mut w, payer, a, b) = market();
    let e = w.ok(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 1, GIGA),
            p(6),
            ask_until(&a, job(7), p(4), 0),
            Some(ask_until(&b, job(7), p(6), 0)),
        ),
    );
    assert_eq!(e.amount, c(6));
}

#[test]
fn lone_bidder_is_paid_the_max_price_only() {
    let (mut w, payer, a, _) = market();
    let rec = record(&a, job(7), 1, GIGA);
    let e = w.refused(
        &payer,
        settle_req(job(7), &a, rec.clone(), p(5), ask(&a, job(7), p(5)), None),
    );
    assert_eq!(
        e.to_string(),
        "bad ask: a lone bidder is paid the escrow's max price 10, not 5"
    );
    let e = w.ok(
        &payer,
        settle_req(job(7), &a, rec, p(10), ask(&a, job(7), p(5)), None),
    );
    assert_eq!(e.amount, c(10));
}

#[test]
fn a_payer_may_pay_for_less_fuel_than_claimed_never_more() {
    let (mut w, payer, a, _) = market();
    // The record claims 2 giga-fuel; the copies that agreed used 1.
    let rec = record(&a, job(7), 1, 2 * GIGA);
    let with_fuel =
        |fuel: u64| match settle_req(job(7), &a, rec.clone(), p(10), ask(&a, job(7), p(5)), None) {
            Request::Settle {
                job,
                provider,
                record,
                price,
                winner,
                second,
                ..
            } => Request::Settle {
                job,
                provider,
                record,
                price,
                winner,
                second,
                fuel: Some(fuel),
            },
            other => other,
        };
    let e = w.refused(&payer, with_fuel(3 * GIGA));
    assert_eq!(
        e.to_string(),
        format!(
            "bad result record: settles {} fuel, more than the record's {}",
            3 * GIGA,
            2 * GIGA
        )
    );
    let e = w.ok(&payer, with_fuel(GIGA));
    assert_eq!(e.amount, c(10), "paid for 1 giga-fuel at 10, not 2");
    assert!(e.memo.contains("(claimed 2000000000)"), "{}", e.memo);
}

#[test]
fn forged_or_mismatched_asks_are_refused() {
    let (mut w, payer, a, b) = market();
    let rec = record(&a, job(7), 1, GIGA);
    let mut bad_sig = ask(&a, job(7), p(4));
    bad_sig.sig[5] ^= 1;
    let mut cheaper = ask(&b, job(7), p(6));
    cheaper.ask.price = p(5); // altered after signing
    let cases: Vec<(Price, SignedAsk, Option<SignedAsk>, &str)> = vec![
        (
            p(6),
            bad_sig,
            Some(ask(&b, job(7), p(6))),
            "winner's ask is not signed by its provider",
        ),
        (
            p(5),
            ask(&a, job(7), p(4)),
            Some(cheaper),
            "second ask is not signed by its provider",
        ),
        (
            p(6),
            ask(&a, job(8), p(4)),
            Some(ask(&b, job(7), p(6))),
            "winner's ask is for job 08080808, not job 07070707",
        ),
        (
            p(6),
            ask(&a, job(7), p(4)),
            Some(ask(&b, job(8), p(6))),
            "second ask is for job 08080808, not job 07070707",
        ),
        (
            p(6),
            ask(&b, job(7), p(4)),
            Some(ask(&a, job(7), p(6))),
            "winner's ask is from provider",
        ),
        (
            p(6),
            ask(&a, job(7), p(4)),
            Some(ask(&a, job(7), p(6))),
            "second ask is from the winner itself",
        ),
        (
            p(3),
            ask(&a, job(7), p(4)),
            Some(ask(&b, job(7), p(3))),
            "price 3 is below the winner's ask 4",
        ),
        (
            p(12),
            ask(&a, job(7), p(4)),
            Some(ask(&b, job(7), p(12))),
            "price 12 is above the escrow's max price 10",
        ),
        (
            p(7),
            ask(&a, job(7), p(4)),
            Some(ask(&b, job(7), p(6))),
            "price 7 is not the second ask's 6",
        ),
    ];
    for (price, winner, second, why) in cases {
        let e = w.refused(
            &payer,
            settle_req(job(7), &a, rec.clone(), price, winner, second),
        );
        assert!(matches!(e, LedgerError::BadAsk(_)), "{why}: {e:?}");
        assert!(e.to_string().starts_with("bad ask: "), "{e}");
        assert!(e.to_string().contains(why), "wanted {why:?}, got {e}");
    }
    // The bank got nothing and nobody was paid.
    assert_eq!(w.ledger.len(), 2);
}

#[test]
fn records_must_be_the_providers_and_the_jobs() {
    let (mut w, payer, a, b) = market();
    let winner = || ask(&a, job(7), p(10));
    // Signed by someone other than the paid provider.
    let e = w.refused(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&b, job(7), 1, GIGA),
            p(10),
            winner(),
            None,
        ),
    );
    assert!(matches!(e, LedgerError::BadRecord(_)));
    assert!(
        e.to_string()
            .starts_with("bad result record: record is not signed by the provider"),
        "{e}"
    );
    // A record of another job.
    let e = w.refused(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(8), 1, GIGA),
            p(10),
            winner(),
            None,
        ),
    );
    assert_eq!(
        e.to_string(),
        "bad result record: record is for job 08080808, not job 07070707"
    );
    // Not a record at all.
    let junk = SignedRecord {
        bytes: b"junk".to_vec(),
        sig: a.sign(b"junk").to_bytes().to_vec(),
    };
    let e = w.refused(&payer, settle_req(job(7), &a, junk, p(10), winner(), None));
    assert_eq!(
        e.to_string(),
        "bad result record: 4 bytes are not a signed result record"
    );
    // Only the payer settles.
    let e = w.refused(
        &a,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 1, GIGA),
            p(10),
            winner(),
            None,
        ),
    );
    assert!(matches!(e, LedgerError::NotPayer { .. }));
}

#[test]
fn the_same_record_is_paid_once() {
    let (mut w, payer, a, b) = market();
    let rec = record(&a, job(7), 1, GIGA);
    let first = w.ok(
        &payer,
        settle_req(job(7), &a, rec.clone(), p(10), ask(&a, job(7), p(10)), None),
    );
    let before = w.ledger.clone();
    // The same request again, and the same record at another (valid) price.
    let again = settle_req(job(7), &a, rec.clone(), p(10), ask(&a, job(7), p(10)), None);
    assert_eq!(
        w.apply(&payer, again),
        Ok(Applied::Duplicate { seq: first.seq })
    );
    let other = settle_req(
        job(7),
        &a,
        rec.clone(),
        p(6),
        ask(&a, job(7), p(4)),
        Some(ask(&b, job(7), p(6))),
    );
    assert_eq!(
        w.apply(&payer, other),
        Ok(Applied::Duplicate { seq: first.seq })
    );
    assert_eq!(w.ledger, before);
    assert_eq!(w.ledger.balance(&user(&a)), c(10));
    // Another attempt of the same task is another record and is paid.
    let rec2 = sign_record(&a, &result_record(job(7), 1, 1, GIGA));
    w.ok(
        &payer,
        settle_req(job(7), &a, rec2, p(10), ask(&a, job(7), p(10)), None),
    );
    assert_eq!(w.ledger.balance(&user(&a)), c(20));
    // A retry after the escrow closed is still a duplicate, not an error.
    w.ok(&payer, Request::Refund { job: job(7) });
    let again = settle_req(job(7), &a, rec, p(10), ask(&a, job(7), p(10)), None);
    assert_eq!(
        w.apply(&payer, again),
        Ok(Applied::Duplicate { seq: first.seq })
    );
}

#[test]
fn settlements_cannot_exceed_the_escrow() {
    let (mut w, payer, a, _) = market();
    // 10 per giga-fuel × 11 giga-fuel = 110 > 100.
    let e = w.refused(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 1, 11 * GIGA),
            p(10),
            ask(&a, job(7), p(1)),
            None,
        ),
    );
    assert_eq!(
        e,
        LedgerError::EscrowExhausted {
            need: c(110),
            left: c(100)
        }
    );
    assert_eq!(
        e.to_string(),
        "settlement needs 110 credits; escrow has 100 left"
    );
    // Cost rounds up to the next µcredit.
    let e = w.ok(
        &payer,
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 2, 1),
            p(10),
            ask(&a, job(7), p(1)),
            None,
        ),
    );
    assert_eq!(e.amount, Credits(1));
}

#[test]
fn settle_timing() {
    let mut w = World::new();
    let (payer, a, b) = (sk(1), sk(2), sk(3));
    let mut entries = vec![
        w.grant(&payer, c(1_000_000)),
        w.open(&payer, job(7), c(1_000_000), p(10)),
    ];
    let n = 200u32;
    let reqs: Vec<SignedRequest> = (0..n)
        .map(|t| {
            w.req(
                &payer,
                &settle_req(
                    job(7),
                    &a,
                    record(&a, job(7), t, GIGA),
                    p(6),
                    ask(&a, job(7), p(4)),
                    Some(ask(&b, job(7), p(6))),
                ),
            )
        })
        .collect();
    let start = Instant::now();
    for r in &reqs {
        match w.ledger.apply(r, 2_000) {
            Ok(Applied::New(e)) => entries.push(e),
            other => panic!("{other:?}"),
        }
    }
    let apply = start.elapsed() / n;
    let mut checked = Ledger::new(key(&w.bank));
    let start = Instant::now();
    for e in &entries {
        checked.replay(e).expect("replays");
    }
    let replay = start.elapsed() / n;
    let mut trusted = Ledger::new(key(&w.bank));
    let start = Instant::now();
    for e in &entries {
        trusted.replay_trusted(e).expect("replays");
    }
    let replay_trusted = start.elapsed() / n;
    assert_eq!(checked, w.ledger);
    assert_eq!(trusted, w.ledger);
    let start = Instant::now();
    for r in &reqs {
        assert!(r.signature_ok());
    }
    let one_sig = start.elapsed() / n;
    println!(
        "settle with two asks: apply {apply:?} per request (4 signature checks; one check \
         alone {one_sig:?}); replay {replay:?}; replay_trusted (no signature checks) \
         {replay_trusted:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Replay and verification

/// A small history with every kind of entry, and its bank key.
fn history() -> (Vec<Entry>, SigningKey) {
    let mut w = World::new();
    let (payer, a, b) = (sk(1), sk(2), sk(3));
    let entries = vec![
        w.grant(&payer, c(1_000)),
        w.open(&payer, job(7), c(100), p(10)),
        w.ok(
            &payer,
            settle_req(
                job(7),
                &a,
                record(&a, job(7), 1, GIGA),
                p(6),
                ask(&a, job(7), p(4)),
                Some(ask(&b, job(7), p(6))),
            ),
        ),
        w.ok(
            &payer,
            Request::Transfer {
                from: key(&payer),
                to: key(&b),
                amount: c(5),
                nonce: 9,
            },
        ),
        w.ok(&payer, Request::Refund { job: job(7) }),
    ];
    (entries, w.bank)
}

fn signed_checkpoint(bank: &SigningKey, l: &Ledger) -> TreeHead {
    let mut cp = l.checkpoint(123);
    cp.sig = bank.sign(&cp.signing_bytes()).to_bytes().to_vec();
    cp
}

#[test]
fn replay_rebuilds_the_same_ledger() {
    let (entries, bank) = history();
    let mut a = Ledger::new(key(&bank));
    let mut b = Ledger::new(key(&bank));
    for e in &entries {
        a.replay(e).expect("replays");
        b.replay_trusted(e).expect("replays");
    }
    assert_eq!(a, b);
    assert_eq!(a.head(), entries.last().expect("some").hash());
    assert_eq!(a.balance(&Account::User(key(&sk(2)))), c(6));
    // Out of order, or twice.
    let e = a.replay(&entries[0]).expect_err("already there");
    assert_eq!(e.to_string(), "entry 0: out of order: expected entry 5");
}

#[test]
fn a_snapshot_of_another_bank_or_format_or_garbled_is_refused() {
    let (entries, bank) = history();
    let mut l = Ledger::new(key(&bank));
    for e in &entries {
        l.replay_trusted(e).expect("replays");
    }
    let snap = l.snapshot();
    assert_eq!(Ledger::from_snapshot(key(&bank), &snap), Ok(l.clone()));
    let other = Ledger::from_snapshot(key(&sk(9)), &snap).expect_err("another bank's");
    assert!(
        other.to_string().starts_with("the snapshot is of bank"),
        "{other}"
    );
    let mut newer = snap.clone();
    newer[..2].copy_from_slice(&(naac_ledger::SNAPSHOT_VERSION + 1).to_le_bytes());
    let e = Ledger::from_snapshot(key(&bank), &newer).expect_err("a newer format");
    assert!(e.to_string().contains("is not"), "{e}");
    for cut in [0, 1, 2, snap.len() / 2, snap.len() - 1] {
        assert!(
            Ledger::from_snapshot(key(&bank), &snap[..cut]).is_err(),
            "a snapshot cut at {cut} bytes read"
        );
    }
}

#[test]
fn verification_messages() {
    let (entries, bank) = history();
    let bank_key = key(&bank);
    let mut l = Ledger::new(bank_key);
    for e in &entries {
        l.replay(e).expect("replays");
    }
    let cp = signed_checkpoint(&bank, &l);
    let report = verify_entries(bank_key, entries.clone(), Some(&cp)).expect("verifies");
    assert_eq!(report.entries, 5);
    assert_eq!(report.issued, c(1_000));
    assert_eq!(report.checkpoint_size, Some(5));
    assert_eq!(report.root, l.root());
    assert_eq!(report.balance(&Account::User(key(&sk(2)))), c(6));
    assert!(
        report
            .check_balance(&Account::User(key(&sk(2))), c(6))
            .is_ok()
    );
    let e = report
        .check_balance(&Account::User(key(&sk(2))), c(7))
        .expect_err("wrong claim");
    assert!(
        e.to_string().ends_with("has 6 credits, not the claimed 7"),
        "{e}"
    );
    assert_eq!(
        report.accounts.iter().map(|(_, b)| b.0).sum::<u64>(),
        report.issued.0
    );

    // A broken chain.
    let mut bad = entries.clone();
    bad[3].prev[0] ^= 1;
    let e = verify_entries(bank_key, bad, None).expect_err("broken chain");
    assert_eq!(
        e.to_string(),
        "entry 3: hash chain broken: prev does not match entry 2"
    );
    let mut bad = entries.clone();
    bad[0].prev[0] ^= 1;
    let e = verify_entries(bank_key, bad, None).expect_err("broken chain");
    assert_eq!(
        e.to_string(),
        "entry 0: hash chain broken: prev of the first entry is not zero"
    );
    // A time before the previous entry's (entry 2 is re-chained so only time is wrong).
    let mut bad = entries[..3].to_vec();
    bad[1].time_ms = 5_000;
    bad[2].prev = bad[1].hash();
    let e = verify_entries(bank_key, bad, None).expect_err("time went back");
    assert_eq!(
        e.to_string(),
        "entry 2: time goes back: 1000 ms is before the previous entry's 5000 ms"
    );
    // A changed amount: the request makes another entry.
    let mut bad = entries.clone();
    bad[2].amount = c(7);
    let e = verify_entries(bank_key, bad, None).expect_err("changed amount");
    assert_eq!(
        e.to_string(),
        "entry 2: amount does not match what its request makes"
    );
    // A forged signature.
    let mut bad = entries.clone();
    bad[1].sig[0] ^= 1;
    let e = verify_entries(bank_key, bad, None).expect_err("bad signature");
    assert_eq!(
        e.to_string(),
        "entry 1: request signature is not the authorizer's"
    );
    // A repeated request.
    let mut bad = entries[..4].to_vec();
    let mut again = entries[3].clone();
    again.seq = 4;
    again.prev = entries[3].hash();
    bad.push(again);
    let e = verify_entries(bank_key, bad, None).expect_err("repeated");
    assert_eq!(e.to_string(), "entry 4: repeats the request of entry 3");
    // Another bank's ledger.
    let e = verify_entries(key(&sk(101)), entries.clone(), None).expect_err("other bank");
    let VerifyError::Entry(r) = e else {
        panic!("{e:?}")
    };
    assert_eq!(r.seq, 0);
    assert!(matches!(
        r.fault,
        ReplayFault::Refused(LedgerError::WrongBank(_))
    ));

    // Checkpoints.
    let mut other = cp.clone();
    other.root[0] ^= 1;
    other.sig = bank.sign(&other.signing_bytes()).to_bytes().to_vec();
    let e = verify_entries(bank_key, entries.clone(), Some(&other)).expect_err("root");
    assert_eq!(e.to_string(), "checkpoint root does not match the entries");
    let mut other = cp.clone();
    other.head[0] ^= 1;
    other.sig = bank.sign(&other.signing_bytes()).to_bytes().to_vec();
    let e = verify_entries(bank_key, entries.clone(), Some(&other)).expect_err("head");
    assert_eq!(e.to_string(), "checkpoint head does not match the entries");
    let mut other = cp.clone();
    other.time_ms += 1;
    let e = verify_entries(bank_key, entries.clone(), Some(&other)).expect_err("sig");
    assert_eq!(e.to_string(), "checkpoint signature is not the bank's");
    let e = verify_entries(bank_key, entries[..4].to_vec(), Some(&cp)).expect_err("short");
    assert_eq!(e.to_string(), "checkpoint covers 5 entries; only 4 present");
    let mallory = sk(66);
    let forged = signed_checkpoint(&mallory, &l);
    let e = verify_entries(bank_key, entries.clone(), Some(&forged)).expect_err("forged");
    assert_eq!(e, VerifyError::CheckpointSignature);
    let mut other_bank = l.checkpoint(5);
    other_bank.bank = key(&mallory);
    other_bank.sig = mallory
        .sign(&other_bank.signing_bytes())
        .to_bytes()
        .to_vec();
    let e = verify_entries(bank_key, entries.clone(), Some(&other_bank)).expect_err("bank");
    assert!(matches!(e, VerifyError::CheckpointBank { .. }));
    assert!(e.to_string().starts_with("checkpoint is from bank "), "{e}");
    // An older checkpoint over a prefix still verifies.
    let mut prefix = Ledger::new(bank_key);
    for e in &entries[..3] {
        prefix.replay(e).expect("replays");
    }
    let old = signed_checkpoint(&bank, &prefix);
    let report = verify_entries(bank_key, entries.clone(), Some(&old)).expect("prefix");
    assert_eq!(report.checkpoint_size, Some(3));
    let empty = signed_checkpoint(&bank, &Ledger::new(bank_key));
    verify_entries(bank_key, entries.clone(), Some(&empty)).expect("empty checkpoint");
    verify_entries(bank_key, Vec::new(), Some(&empty)).expect("empty ledger");
    // Proofs against the checkpoint.
    let proof = l.tree().prove(2, cp.size).expect("in range");
    assert!(proof.verify_entry(&entries[2], &cp.root));
    assert!(!proof.verify_entry(&entries[3], &cp.root));
}

// ---------------------------------------------------------------------------------------
// Properties over random histories

const USERS: u8 = 4;
/// The runs of every order the property test makes.
const RUNS: [(u32, u32); 3] = [(0, 0), (1, 0), (2, 0)];
const BANK: u8 = USERS; // signer index of the bank
const OUTSIDER: u8 = USERS + 1; // signer index of a key that is no user
const JOBS: u8 = 5;

#[derive(Clone, Debug)]
enum Op {
    Grant {
        to: u8,
        amount: u64,
        signer: u8,
    },
    Transfer {
        from: u8,
        to: u8,
        amount: u64,
        nonce: u8,
        signer: u8,
    },
    Open {
        job: u8,
        payer: u8,
        amount: u64,
        max_price: u64,
        expires_in: u64,
        signer: u8,
    },
    Settle {
        job: u8,
        signer: u8,
        provider: u8,
        second: Option<u8>,
        task: u8,
        fuel: u64,
        winner_price: u64,
        second_extra: u64,
        forge: u8,
    },
    Refund {
        job: u8,
        signer: u8,
    },
    TopUp {
        job: u8,
        amount: u64,
        nonce: u8,
        signer: u8,
    },
    Register {
        provider: u8,
        signer: u8,
    },
    /// `provider` claims run `task` (of three) with an order signed by the job's payer (or,
    /// `forge`, by itself) at `price`.
    Claim {
        job: u8,
        provider: u8,
        task: u8,
        half_gigas: u8,
        price: u64,
        forge: bool,
    },
    /// `signer` (mostly the payer) rejects run (`task`, 0) of the order to `provider` at
    /// `price`.
    Reject {
        job: u8,
        provider: u8,
        task: u8,
        price: u64,
        signer: u8,
    },
    /// `signer` (mostly the payer) commits the order of runs 0..3 to `provider` at `price`.
    Commit {
        job: u8,
        provider: u8,
        price: u64,
        signer: u8,
    },
    /// Re-send a request made earlier.
    Again(prop::sample::Index),
    /// Let time pass.
    Wait(u64),
}

fn signer() -> impl Strategy<Value = u8> {
    // Mostly users, sometimes the bank or an outsider.
    prop_oneof![6 => 0..USERS, 1 => Just(BANK), 1 => Just(OUTSIDER)]
}

/// Who signs: mostly [`RIGHTFUL`] (the one the rules want), sometimes anyone.
fn signer_mostly_rightful(rightful: u32) -> impl Strategy<Value = u8> {
    prop_oneof![rightful => Just(RIGHTFUL), 1 => signer()]
}

/// Stands for "whoever should sign this" in generated ops.
const RIGHTFUL: u8 = 255;

fn grant_op() -> impl Strategy<Value = Op> {
    let by = prop_oneof![5 => Just(BANK), 1 => 0..USERS];
    (0..USERS, 0u64..=10_000, by).prop_map(|(to, amount, signer)| Op::Grant { to, amount, signer })
}

fn transfer_op() -> impl Strategy<Value = Op> {
    let by = signer_mostly_rightful(5);
    (0..USERS, 0..USERS, 0u64..=2_000, 0u8..4, by).prop_map(|(from, to, amount, nonce, s)| {
        Op::Transfer {
            from,
            to,
            amount,
            nonce,
            signer: if s == RIGHTFUL { from } else { s },
        }
    })
}

fn open_op() -> impl Strategy<Value = Op> {
    let by = signer_mostly_rightful(5);
    (
        0u8..JOBS,
        0..USERS,
        0u64..=4_000,
        0u64..=1_000,
        0u64..=3_000,
        by,
    )
        .prop_map(|(job, payer, amount, max_price, expires_in, s)| Op::Open {
            job,
            payer,
            amount,
            max_price,
            expires_in,
            signer: if s == RIGHTFUL { payer } else { s },
        })
}

fn settle_op() -> impl Strategy<Value = Op> {
    let who = (
        0u8..=JOBS,
        signer_mostly_rightful(4),
        0..USERS,
        prop::option::of(0..USERS),
    );
    let what = (0u8..3, 0u64..=2 * GIGA, 0u64..=1_000, 0u64..=300, 0u8..16);
    (who, what).prop_map(
        |((job, signer, provider, second), (task, fuel, winner_price, second_extra, forge))| {
            Op::Settle {
                job,
                signer,
                provider,
                second,
                task,
                fuel,
                winner_price,
                second_extra,
                forge,
            }
        },
    )
}

fn refund_op() -> impl Strategy<Value = Op> {
    let by = prop_oneof![3 => Just(RIGHTFUL), 1 => Just(BANK), 1 => signer()];
    (0u8..=JOBS, by).prop_map(|(job, signer)| Op::Refund { job, signer })
}

fn top_up_op() -> impl Strategy<Value = Op> {
    (0u8..=JOBS, 0u64..=2_000, 0u8..4, signer_mostly_rightful(4)).prop_map(
        |(job, amount, nonce, signer)| Op::TopUp {
            job,
            amount,
            nonce,
            signer,
        },
    )
}

fn register_op() -> impl Strategy<Value = Op> {
    let by = prop_oneof![4 => Just(BANK), 1 => 0..USERS];
    (0..USERS, by).prop_map(|(provider, signer)| Op::Register { provider, signer })
}

/// Order prices: few, so a claim's or a rejection's order is often one committed.
fn order_price() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(300), Just(700), Just(1_200)]
}

fn claim_op() -> impl Strategy<Value = Op> {
    (
        0u8..=JOBS,
        0..USERS,
        0u8..4,
        0u8..3,
        order_price(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(job, provider, task, half_gigas, price, forge)| Op::Claim {
                job,
                provider,
                task,
                half_gigas,
                price,
                forge,
            },
        )
}

fn reject_op() -> impl Strategy<Value = Op> {
    (
        0u8..=JOBS,
        0..USERS,
        0u8..4,
        order_price(),
        signer_mostly_rightful(4),
    )
        .prop_map(|(job, provider, task, price, signer)| Op::Reject {
            job,
            provider,
            task,
            price,
            signer,
        })
}

fn commit_op() -> impl Strategy<Value = Op> {
    (
        0u8..=JOBS,
        0..USERS,
        order_price(),
        signer_mostly_rightful(4),
    )
        .prop_map(|(job, provider, price, signer)| Op::Commit {
            job,
            provider,
            price,
            signer,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => claim_op(),
        1 => reject_op(),
        2 => commit_op(),
        2 => top_up_op(),
        1 => register_op(),
        2 => grant_op(),
        4 => transfer_op(),
        4 => open_op(),
        6 => settle_op(),
        2 => refund_op(),
        2 => any::<prop::sample::Index>().prop_map(Op::Again),
        1 => (0u64..=2_000).prop_map(Op::Wait),
    ]
}

struct Sim {
    w: World,
    keys: Vec<SigningKey>,
    /// Every request sent so far, and the entry it made if it made one.
    sent: Vec<(SignedRequest, Option<u64>)>,
    /// What became of each request, for tuning the generators (`NAAC_LEDGER_STATS`).
    outcomes: Vec<String>,
    entries: Vec<Entry>,
}

impl Sim {
    fn new() -> Self {
        let mut keys: Vec<SigningKey> = (1..=USERS).map(sk).collect();
        keys.push(bank_sk());
        keys.push(sk(66));
        Self {
            w: World::new(),
            keys,
            sent: vec![],
            outcomes: vec![],
            entries: vec![],
        }
    }

    fn k(&self, i: u8) -> &SigningKey {
        &self.keys[i as usize]
    }

    /// The signed request an op stands for (`None` for waiting).
    fn request(&mut self, op: &Op) -> Option<SignedRequest> {
        let bank = key(&self.w.bank);
        let now = self.w.now;
        let r = match op.clone() {
            Op::Grant { to, amount, signer } => {
                let r = Request::Grant {
                    to: key(self.k(to)),
                    amount: Credits(amount),
                };
                signed(self.k(signer), &bank, &r)
            }
            Op::Transfer {
                from,
                to,
                amount,
                nonce,
                signer,
            } => {
                let r = Request::Transfer {
                    from: key(self.k(from)),
                    to: key(self.k(to)),
                    amount: Credits(amount),
                    nonce: nonce.into(),
                };
                signed(self.k(signer), &bank, &r)
            }
            Op::Open {
                job: j,
                payer,
                amount,
                max_price,
                expires_in,
                signer,
            } => {
                let r = Request::OpenEscrow {
                    job: job(j),
                    payer: key(self.k(payer)),
                    amount: Credits(amount),
                    max_price: Price(max_price),
                    // Half the escrows take orders and claims (a finite fuel limit bounds a
                    // run's worst case).
                    fuel_limit: if amount % 2 == 0 { GIGA / 2 } else { u64::MAX },
                    expires_ms: now + expires_in,
                    claim_window_ms: if amount % 2 == 0 { expires_in / 2 } else { 0 },
                    spend: None,
                };
                signed(self.k(signer), &bank, &r)
            }
            Op::Settle {
                job: j,
                signer,
                provider,
                second,
                task,
                fuel,
                winner_price,
                second_extra,
                forge,
            } => {
                let jid = self.target(j);
                let esc = self.w.ledger.escrow(&jid).cloned();
                let payer_i = esc
                    .as_ref()
                    .and_then(|e| (0..USERS).find(|i| key(self.k(*i)) == e.payer))
                    .unwrap_or(0);
                let signer = if signer == RIGHTFUL { payer_i } else { signer };
                let max = esc.as_ref().map_or(Price(1_000), |e| e.max_price);
                let prov = self.k(provider).clone();
                let second = second.filter(|s| *s != provider);
                let mut winner = ask(&prov, jid, Price(winner_price.min(max.0)));
                let mut second_ask = second.map(|s| {
                    let sp = (winner.ask.price.0 + second_extra).min(max.0);
                    ask(self.k(s), jid, Price(sp))
                });
                let mut price = second_ask.as_ref().map_or(max, |s| s.ask.price);
                let mut rec = record(&prov, jid, task.into(), fuel);
                match forge {
                    0 => winner.sig[0] ^= 1,
                    1 => winner = ask(&prov, job(99), winner.ask.price),
                    2 => second_ask = Some(ask(&prov, jid, Price(price.0))),
                    3 => price = Price(winner.ask.price.0.saturating_sub(1)),
                    4 => price = Price(max.0 + 1),
                    5 => rec = record(self.k((provider + 1) % USERS), jid, task.into(), fuel),
                    6 => rec = record(&prov, job(99), task.into(), fuel),
                    7 => second_ask = None, // lone bidder at the wrong price, mostly
                    _ => {}
                }
                if forge == 7 {
                    price = Price(winner.ask.price.0);
                }
                let r = settle_req(jid, &prov, rec, price, winner, second_ask);
                signed(self.k(signer), &bank, &r)
            }
            Op::Refund { job: j, signer } => {
                let jid = self.target(j);
                let payer_i = self
                    .w
                    .ledger
                    .escrow(&jid)
                    .and_then(|e| (0..USERS).find(|i| key(self.k(*i)) == e.payer))
                    .unwrap_or(0);
                let signer = if signer == RIGHTFUL { payer_i } else { signer };
                signed(self.k(signer), &bank, &Request::Refund { job: jid })
            }
            Op::TopUp {
                job: j,
                amount,
                nonce,
                signer,
            } => {
                let jid = self.target(j);
                let payer_i = self
                    .w
                    .ledger
                    .escrow(&jid)
                    .and_then(|e| (0..USERS).find(|i| key(self.k(*i)) == e.payer))
                    .unwrap_or(0);
                let signer = if signer == RIGHTFUL { payer_i } else { signer };
                let r = Request::TopUp {
                    job: jid,
                    amount: Credits(amount),
                    nonce: nonce.into(),
                    expires_ms: (amount % 2 == 0).then(|| now + amount),
                    spend: None,
                };
                signed(self.k(signer), &bank, &r)
            }
            Op::Register { provider, signer } => {
                let r = Request::Register {
                    provider: key(self.k(provider)),
                };
                signed(self.k(signer), &bank, &r)
            }
            Op::Claim {
                job: j,
                provider,
                task,
                half_gigas,
                price,
                forge,
            } => {
                let jid = self.target(j);
                let payer_i = self.payer_of(&jid);
                let runs = RUNS;
                let order_by = if forge { provider } else { payer_i };
                let order = self.order(jid, order_by, provider, price);
                let prov = self.k(provider).clone();
                let fuel = u64::from(half_gigas) * GIGA / 4;
                // Task 3 is not in the order: it is claimed with run 0's proof.
                let index = u32::from(task).min(2);
                let r = Request::Claim {
                    job: jid,
                    order,
                    record: record(&prov, jid, task.into(), fuel),
                    index,
                    proof: order_tree(&runs)
                        .inclusion_proof(u64::from(index), 3)
                        .unwrap_or_default(),
                };
                signed(&prov, &bank, &r)
            }
            Op::Reject {
                job: j,
                provider,
                task,
                price,
                signer,
            } => {
                let jid = self.target(j);
                let payer_i = self.payer_of(&jid);
                let signer = if signer == RIGHTFUL { payer_i } else { signer };
                let index = u32::from(task).min(2);
                let r = Request::Reject {
                    job: jid,
                    order: self.order(jid, payer_i, provider, price),
                    task: task.into(),
                    attempt: 0,
                    index,
                    proof: order_tree(&RUNS)
                        .inclusion_proof(u64::from(index), 3)
                        .unwrap_or_default(),
                };
                signed(self.k(signer), &bank, &r)
            }
            Op::Commit {
                job: j,
                provider,
                price,
                signer,
            } => {
                let jid = self.target(j);
                let payer_i = self.payer_of(&jid);
                let signer = if signer == RIGHTFUL { payer_i } else { signer };
                let r = Request::Commit {
                    job: jid,
                    order: self.order(jid, payer_i, provider, price),
                };
                signed(self.k(signer), &bank, &r)
            }
            Op::Again(i) => {
                if self.sent.is_empty() {
                    return None;
                }
                let (req, _) = i.get(&self.sent).clone();
                req
            }
            Op::Wait(ms) => {
                self.w.now += ms;
                return None;
            }
        };
        Some(r)
    }

    /// The order of [`RUNS`] of `job` to `provider` at `price`, signed by `by`.
    fn order(&self, job: JobId, by: u8, provider: u8, price: u64) -> SignedOrder {
        Order::new(
            key(&self.w.bank),
            job,
            key(self.k(provider)),
            Price(price),
            &RUNS,
        )
        .sign(|m| self.k(by).sign(m).to_bytes().to_vec())
    }

    /// The index of the payer of `job`'s escrow (0 when it has none).
    fn payer_of(&self, job: &JobId) -> u8 {
        self.w
            .ledger
            .escrow(job)
            .and_then(|e| (0..USERS).find(|i| key(self.k(*i)) == e.payer))
            .unwrap_or(0)
    }

    /// The job a settle or refund aims at: for `j < JOBS` one with an escrow (an open one
    /// when there is one) if any exists, else job `j` itself (most likely without one).
    fn target(&self, j: u8) -> JobId {
        let escrows: Vec<(JobId, bool)> = self
            .w
            .ledger
            .accounts()
            .filter_map(|(a, _)| match a {
                Account::Escrow(j) => Some((j, self.w.ledger.escrow(&j).is_some_and(|e| e.closed))),
                _ => None,
            })
            .collect();
        let open: Vec<JobId> = escrows.iter().filter(|e| !e.1).map(|e| e.0).collect();
        let pool = if open.is_empty() {
            escrows.iter().map(|e| e.0).collect()
        } else {
            open
        };
        if j < JOBS && !pool.is_empty() {
            pool[j as usize % pool.len()]
        } else {
            job(j)
        }
    }

    /// Sends one op and checks the invariants around it.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let Some(req) = self.request(op) else {
            return Ok(());
        };
        let before = self.w.ledger.clone();
        // The entry this exact message made before, if any.
        let earlier = self
            .sent
            .iter()
            .find(|(r, seq)| seq.is_some() && r.msg == req.msg && r.authorizer == req.authorizer)
            .and_then(|(_, seq)| *seq);
        let got = self.w.ledger.apply(&req, self.w.now);
        let made = match &got {
            Ok(Applied::New(e)) => {
                prop_assert!(earlier.is_none(), "a request applied twice: {op:?}");
                prop_assert_eq!(e.seq, before.len());
                prop_assert_eq!(e.prev, before.head());
                prop_assert_eq!(self.w.ledger.len(), before.len() + 1);
                prop_assert_eq!(self.w.ledger.head(), e.hash());
                prop_assert!(e.memo.len() <= naac_ledger::MAX_MEMO);
                self.entries.push(e.clone());
                Some(e.seq)
            }
            Ok(Applied::Duplicate { seq }) => {
                prop_assert!(*seq < before.len());
                prop_assert!(self.w.ledger == before, "a duplicate changed the state");
                None
            }
            Err(_) => {
                prop_assert!(
                    self.w.ledger == before,
                    "a refusal changed the state: {got:?}"
                );
                None
            }
        };
        if let Some(seq) = earlier {
            // Re-sending an applied request is a duplicate of its entry.
            prop_assert_eq!(&got, &Ok(Applied::Duplicate { seq }), "{:?}", op);
        }
        self.sent.push((req, made));
        self.outcomes.push(match &got {
            Ok(Applied::New(e)) => e.kind.as_str().to_string(),
            Ok(Applied::Duplicate { .. }) => "duplicate".into(),
            Err(e) => format!("{e:?}")
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect(),
        });
        self.check_invariants()
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let l = &self.w.ledger;
        let held: u128 = l.accounts().map(|(_, b)| u128::from(b.0)).sum();
        prop_assert_eq!(held, u128::from(l.issued().0), "money is not conserved");
        prop_assert!(l.conserved());
        for (a, b) in l.accounts() {
            prop_assert!(b <= l.issued(), "{:?} holds more than was issued", a);
            if let Account::Escrow(j) = a {
                let e = l.escrow(&j).expect("listed escrow exists");
                prop_assert_eq!(e.left, b);
                prop_assert!(e.reserved <= e.left, "{:?} reserves more than it holds", j);
                prop_assert!(e.left <= e.opened);
                prop_assert!(e.paid <= e.opened);
                if e.closed {
                    prop_assert_eq!(e.left, Credits::ZERO);
                } else if e.closing {
                    // Closing returned what no reservation held.
                    prop_assert!(e.left.0 + e.paid.0 <= e.opened.0);
                } else {
                    prop_assert_eq!(e.left.0 + e.paid.0, e.opened.0);
                }
            }
        }
        prop_assert_eq!(l.len(), self.entries.len() as u64);
        Ok(())
    }
}

/// Changes one field of an entry (`which` picks it).
fn mutate(e: &mut Entry, which: usize, other: AccountKey) -> &'static str {
    match which {
        0 => {
            e.amount = Credits(e.amount.0 ^ 1);
            "amount"
        }
        1 => {
            e.debit = if e.debit == Account::Mint {
                Account::User(other)
            } else {
                Account::Mint
            };
            "debit"
        }
        2 => {
            e.credit = if e.credit == Account::User(other) {
                Account::Escrow(JobId([9; 16]))
            } else {
                Account::User(other)
            };
            "credit"
        }
        3 => {
            e.memo.push('!');
            "memo"
        }
        4 => {
            e.sig[17] ^= 4;
            "sig"
        }
        5 => {
            let last = e.auth.len() - 1;
            e.auth[last] ^= 1;
            "auth"
        }
        6 => {
            e.kind = Kind::from_code(e.kind.code() % 5 + 1).expect("valid code");
            "kind"
        }
        7 => {
            e.job = match e.job {
                None => Some(JobId([9; 16])),
                Some(_) => None,
            };
            "job"
        }
        8 => {
            e.task = Some(e.task.map_or(0, |t| t.wrapping_add(1)));
            "task"
        }
        9 => {
            e.record = match e.record {
                None => Some([1; 32]),
                Some(_) => None,
            };
            "record"
        }
        10 => {
            e.authorizer = if e.authorizer == other {
                key(&sk(66))
            } else {
                other
            };
            "authorizer"
        }
        11 => {
            e.prev[3] ^= 1;
            "prev"
        }
        12 => {
            e.seq += 1;
            "seq"
        }
        _ => {
            // Only the chain or a checkpoint can tell the time was changed.
            e.time_ms += 1;
            "time"
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_histories_keep_the_books(
        grants in prop::collection::vec(1u64..=10_000, USERS as usize),
        ops in prop::collection::vec(op(), 1..100),
        pick in any::<prop::sample::Index>(),
        field in 0usize..14,
    ) {
        let mut sim = Sim::new();
        let prelude = grants.iter().zip(0..).map(|(amount, to)| Op::Grant {
            to,
            amount: *amount,
            signer: BANK,
        });
        for op in prelude.chain(ops.iter().cloned()) {
            let op = &op;
            sim.step(op)?;
        }
        if std::env::var_os("NAAC_LEDGER_STATS").is_some() {
            println!("outcomes {:?}", sim.outcomes);
        }
        let bank = key(&sim.w.bank);
        let l = &sim.w.ledger;

        // Replay rebuilds exactly the same state, with or without signature checks.
        let mut fresh = Ledger::new(bank);
        let mut trusted = Ledger::new(bank);
        for e in &sim.entries {
            fresh.replay(e).map_err(|e| TestCaseError::fail(e.to_string()))?;
            trusted.replay_trusted(e).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        prop_assert!(fresh == *l, "replay differs");
        prop_assert!(trusted == *l, "trusted replay differs");

        // A snapshot taken anywhere, read back and replayed on from, is the same ledger.
        let cut = if sim.entries.is_empty() { 0 } else { pick.index(sim.entries.len() + 1) };
        let mut part = Ledger::new(bank);
        for e in &sim.entries[..cut] {
            part.replay_trusted(e).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let mut resumed = Ledger::from_snapshot(bank, &part.snapshot())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(resumed == part, "a snapshot differs from its ledger");
        for e in &sim.entries[cut..] {
            resumed.replay_trusted(e).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        prop_assert!(resumed == *l, "replay after a snapshot differs");
        prop_assert_eq!(resumed.root(), l.root());
        prop_assert_eq!(fresh.root(), l.root());
        prop_assert_eq!(fresh.head(), l.head());

        // The whole ledger verifies against a signed checkpoint.
        let cp = signed_checkpoint(&sim.w.bank, l);
        let report = verify_entries(bank, sim.entries.clone(), Some(&cp))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(report.entries, l.len());
        prop_assert_eq!(report.issued, l.issued());
        prop_assert_eq!(report.root, l.root());
        let accounts: Vec<_> = l.accounts().collect();
        prop_assert_eq!(&report.accounts, &accounts);

        // Changing one field of one entry fails verification: with the checkpoint always,
        // without it whenever the field is one the rules or the chain derive.
        if !sim.entries.is_empty() {
            let i = pick.index(sim.entries.len());
            let mut bad = sim.entries.clone();
            let name = mutate(&mut bad[i], field, key(&sim.keys[0]));
            let last = i + 1 == bad.len();
            prop_assert!(
                verify_entries(bank, bad.clone(), Some(&cp)).is_err(),
                "changed {} of entry {} and it still verified", name, i
            );
            if !(name == "time" && last) {
                prop_assert!(
                    verify_entries(bank, bad, None).is_err(),
                    "changed {} of entry {} and it still verified", name, i
                );
            }
        }
    }
}

#[test]
fn a_record_claiming_more_fuel_than_the_jobs_limit_is_refused() {
    let mut w = World::new();
    let (payer, a) = (sk(1), sk(2));
    w.grant(&payer, c(1_000));
    let mut open = open_req(&payer, job(7), c(100), p(10), w.now + 60_000);
    if let Request::OpenEscrow { fuel_limit, .. } = &mut open {
        *fuel_limit = 2 * GIGA;
    }
    w.ok(&payer, open);
    let settle = |fuel| {
        settle_req(
            job(7),
            &a,
            record(&a, job(7), 1, fuel),
            p(10),
            ask(&a, job(7), p(1)),
            None,
        )
    };
    let e = w.refused(&payer, settle(2 * GIGA + 1));
    assert!(
        matches!(&e, LedgerError::BadRecord(why) if why.contains("above the job's limit")),
        "{e}"
    );
    // At the limit it is paid.
    assert_eq!(w.ok(&payer, settle(2 * GIGA)).amount, c(20));
}
