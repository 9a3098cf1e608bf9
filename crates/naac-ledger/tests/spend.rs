//! Spend tokens at the bank: the holder of a user's spend token opens and tops up escrows
//! paid from that user's wallet, and controls them, while the grant's running total and each
//! job's stay within the token's caps; replay and snapshots keep the running totals.

#![allow(clippy::unwrap_used)]

use ed25519_dalek::{Signer, SigningKey};
use naac_ledger::{Account, AccountKey, Applied, Ledger, LedgerError, Request, SignedRequest};
use naac_token::{Kind, Limits, Root};
use naac_types::{Credits, JobId, Price};

fn sk(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn key(s: &SigningKey) -> AccountKey {
    AccountKey(s.verifying_key().to_bytes())
}

fn c(n: u64) -> Credits {
    Credits(n * 1_000_000)
}

struct World {
    ledger: Ledger,
    bank: SigningKey,
    entries: Vec<naac_ledger::Entry>,
}

impl World {
    fn apply(&mut self, by: &SigningKey, r: &Request) -> Result<Applied, LedgerError> {
        let req = SignedRequest::new(key(by), &key(&self.bank), r, |m| {
            by.sign(m).to_bytes().to_vec()
        });
        let a = self.ledger.apply(&req, 5_000);
        if let Ok(Applied::New(e)) = &a {
            self.entries.push(e.clone());
        }
        a
    }

    fn refused(&mut self, by: &SigningKey, r: &Request) -> LedgerError {
        let before = self.ledger.clone();
        let e = self.apply(by, r).expect_err("refused");
        assert_eq!(self.ledger, before, "a refusal changed the state");
        e
    }
}

fn open(payer: &SigningKey, job: u8, amount: u64, spend: Option<&str>) -> Request {
    Request::OpenEscrow {
        job: JobId([job; 16]),
        payer: key(payer),
        amount: c(amount),
        max_price: Price::whole(1),
        fuel_limit: u64::MAX,
        expires_ms: 1_000_000,
        claim_window_ms: 0,
        spend: spend.map(str::to_string),
    }
}

fn top_up(job: u8, amount: u64, nonce: u64, spend: Option<&str>) -> Request {
    Request::TopUp {
        job: JobId([job; 16]),
        amount: c(amount),
        nonce,
        expires_ms: None,
        spend: spend.map(str::to_string),
    }
}

#[test]
fn a_spend_token_pays_from_its_roots_wallet_within_its_caps() {
    let (alice, bob, eve) = (sk(1), sk(2), sk(5));
    let bank = sk(100);
    let mut w = World {
        ledger: Ledger::new(key(&bank)),
        bank: bank.clone(),
        entries: Vec::new(),
    };
    w.apply(
        &bank,
        &Request::Grant {
            to: key(&alice),
            amount: c(100),
        },
    )
    .unwrap();
    let root = Root::from_ed25519(&[1; 32]).unwrap();
    assert_eq!(root.public(), key(&alice).0, "the same key");
    let token = root
        .mint(
            Kind::Spend,
            Some(&key(&bob).0),
            &Limits {
                credits_total: Some(c(10).0),
                credits_per_job: Some(c(6).0),
                ..Limits::default()
            },
        )
        .unwrap();
    let t = Some(token.as_str());
    // Bob opens job 1 from alice's wallet; he controls it.
    w.apply(&bob, &open(&alice, 1, 6, t)).unwrap();
    let esc = w.ledger.escrow(&JobId([1; 16])).unwrap();
    assert_eq!((esc.payer, esc.controller), (key(&alice), Some(key(&bob))));
    assert_eq!(w.ledger.balance(&Account::User(key(&alice))), c(94));
    // Over the total (6 + 5 > 10), refused with the failed check; a job over its own cap too.
    let e = w.refused(&bob, &open(&alice, 2, 5, t));
    assert!(e.to_string().contains("spent("), "{e}");
    let e = w.refused(&bob, &open(&alice, 3, 7, t));
    assert!(e.to_string().contains("amount("), "{e}");
    // Eve, who saw bob's token, cannot use it; nor can bob open from alice's wallet without it.
    assert!(matches!(
        w.refused(&eve, &open(&alice, 2, 1, t)),
        LedgerError::Token(_)
    ));
    assert!(matches!(
        w.refused(&bob, &open(&alice, 2, 1, None)),
        LedgerError::NotPayer { .. }
    ));
    // An escrow that would outlive the token's reach, and a bearer spend token: refused.
    let mut far = open(&alice, 2, 1, t);
    if let Request::OpenEscrow { expires_ms, .. } = &mut far {
        *expires_ms = 5_000 + naac_ledger::MAX_SPEND_ESCROW_MS + 1;
    }
    assert!(w.refused(&bob, &far).to_string().contains("expires by"));
    let bearer = root
        .mint(
            Kind::Spend,
            None,
            &Limits {
                credits_total: Some(c(50).0),
                ..Limits::default()
            },
        )
        .unwrap();
    let e = w.refused(&bob, &open(&alice, 2, 1, Some(&bearer)));
    assert!(e.to_string().contains("must name its holder"), "{e}");
    // Within the caps: 6 + 4 = 10.
    w.apply(&bob, &open(&alice, 2, 4, t)).unwrap();
    // Top-ups count too, and need the token.
    let e = w.refused(&bob, &top_up(2, 1, 1, t));
    assert!(e.to_string().contains("spent("), "{e}");
    assert!(matches!(
        w.refused(&bob, &top_up(2, 1, 1, None)),
        LedgerError::Token(_)
    ));
    // A token of another grant of alice's does not top this escrow up.
    let other = root
        .mint(
            Kind::Spend,
            Some(&key(&bob).0),
            &Limits {
                credits_total: Some(c(50).0),
                ..Limits::default()
            },
        )
        .unwrap();
    assert!(matches!(
        w.refused(&bob, &top_up(2, 1, 1, Some(&other))),
        LedgerError::Token(_)
    ));
    // The controller refunds; the money goes back to alice. Alice herself may not.
    assert!(matches!(
        w.refused(
            &alice,
            &Request::Refund {
                job: JobId([1; 16])
            }
        ),
        LedgerError::NotPayer { .. }
    ));
    w.apply(
        &bob,
        &Request::Refund {
            job: JobId([1; 16]),
        },
    )
    .unwrap();
    assert_eq!(w.ledger.balance(&Account::User(key(&alice))), c(96));
    assert_eq!(w.ledger.balance(&Account::User(key(&bob))), Credits::ZERO);
    // Refunds do not give the allowance back: the grant stays at 10.
    let e = w.refused(&bob, &open(&alice, 4, 1, t));
    assert!(e.to_string().contains("spent("), "{e}");
    // Replay (signatures and tokens checked again) and a snapshot rebuild the same state.
    let mut again = Ledger::new(key(&bank));
    for e in &w.entries {
        again.replay(e).unwrap();
    }
    assert_eq!(again, w.ledger);
    let snap = Ledger::from_snapshot(key(&bank), &w.ledger.snapshot()).unwrap();
    assert_eq!(snap, w.ledger);
}
