//! Bidding for a paid job: providers' sealed asks checked and kept as bids, the first
//! bidding window (no batch is awarded before the other bids are in), the auction order the
//! scheduler offers work in, and the terms (price, winner's ask, price-setting ask) fixed
//! for each run when its batch is auctioned. Also keeps who declined the job and why, paid
//! or not. No IO; time is passed in.

use crate::pay::Terms;
use naac_bank::wire::AskCheck as _;
use naac_net::PeerId;
use naac_proto::{Bid, SignedAsk};
use naac_sched::{Millis, TaskId};
use naac_types::{JobId, Price};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How long a paid job collects sealed asks before it awards its first batch.
pub const WINDOW: Duration = Duration::from_millis(300);

/// Most providers remembered as having declined.
pub const MAX_DECLINED: usize = 4096;

/// Reputation assumed for a bidder the requester keeps no record of.
const UNKNOWN_REPUTATION: f64 = 0.5;

/// The bids and terms of one job.
#[derive(Debug)]
pub struct Bidding {
    job: JobId,
    /// Whether the job is paid (unpaid jobs take no bids and have no window).
    paid: bool,
    max_price: Price,
    bids: HashMap<PeerId, naac_market::Bid<PeerId>>,
    asks: HashMap<PeerId, SignedAsk>,
    /// Providers that would not bid or work for us, and why.
    declined: HashMap<PeerId, String>,
    /// The terms of each open run: per task, by attempt.
    terms: HashMap<u32, Vec<(u32, Terms)>>,
    /// Runs in `terms`: copies started on a paid provider and not yet paid or dropped.
    owed: u64,
    /// Bidders the bank says have standing (its operator registered them): only their asks
    /// may set another provider's price. A bidder not yet known has none.
    standing: HashSet<PeerId>,
    /// Bidders asked for a fresh ask (theirs is about to expire), and when.
    reasking: HashMap<PeerId, u64>,
    /// The first window closes here (set by the first valid ask).
    until: Option<Millis>,
    /// How many providers will answer at all, when that is known (the embedded pool's own
    /// workers): once each has bid or declined, the window closes early.
    expected: Option<usize>,
    closed: bool,
}

impl Bidding {
    pub fn new(job: JobId, paid: bool, max_price: Price) -> Self {
        Self {
            job,
            paid,
            max_price,
            bids: HashMap::new(),
            asks: HashMap::new(),
            declined: HashMap::new(),
            terms: HashMap::new(),
            owed: 0,
            standing: HashSet::new(),
            reasking: HashMap::new(),
            until: None,
            expected: None,
            closed: false,
        }
    }

    /// Exactly `n` providers will answer: the first window closes as soon as they have.
    pub fn expect(&mut self, n: usize) {
        self.expected = Some(n);
    }

    pub fn paid(&self) -> bool {
        self.paid
    }

    pub fn max_price(&self) -> Price {
        self.max_price
    }

    /// Checks a provider's answer to the job's solicitation and keeps a valid ask as a bid
    /// (`reputation`: the requester's score of it, if it keeps one; `unix_ms`: the wall
    /// clock, against the ask's expiry). `Err(why)` when it did
    /// not bid or its ask is not valid; it then gets no work.
    pub fn take(
        &mut self,
        peer: PeerId,
        bid: Option<&Bid>,
        rtt: Option<Duration>,
        reputation: Option<f64>,
        now: Millis,
        unix_ms: u64,
    ) -> Result<(), String> {
        self.reasking.remove(&peer);
        // A fresh ask from a known bidder keeps its measured latency and reputation.
        let reputation = reputation.or_else(|| self.bids.get(&peer).map(|b| b.reputation));
        let rtt = rtt.or_else(|| {
            self.bids
                .get(&peer)
                .map(|b| Duration::from_millis(b.latency_ms))
        });
        let why = match bid {
            None => "it sent no ask (an older naac?)".to_string(),
            Some(Bid::NoBid(why)) => why.clone(),
            Some(Bid::Ask(a)) => {
                let key = naac_net::ed25519_of(&peer);
                if !a.verify() || key != Some(a.ask.provider) {
                    "its ask is not signed by its key".to_string()
                } else if a.ask.job != self.job {
                    "its ask is for another job".to_string()
                } else if a.ask.expires_ms <= unix_ms {
                    "its ask has expired".to_string()
                } else if a.ask.price > self.max_price {
                    format!(
                        "it asks {} credits per giga-fuel; the job pays at most {}",
                        a.ask.price, self.max_price
                    )
                } else {
                    self.bids.insert(
                        peer,
                        naac_market::Bid {
                            provider: peer,
                            price: a.ask.price,
                            reputation: reputation.unwrap_or(UNKNOWN_REPUTATION),
                            latency_ms: rtt.map(|d| d.as_millis() as u64).unwrap_or(u64::MAX / 2),
                        },
                    );
                    self.asks.insert(peer, a.clone());
                    self.declined.remove(&peer);
                    self.until
                        .get_or_insert(Millis(now.0 + WINDOW.as_millis() as u64));
                    return Ok(());
                }
            }
        };
        self.declined(peer, why.clone());
        Err(why)
    }

    /// A node declined to work for us (bounded: the first [`MAX_DECLINED`] are kept).
    pub fn declined(&mut self, peer: PeerId, why: String) {
        if self.declined.len() < MAX_DECLINED || self.declined.contains_key(&peer) {
            self.declined.insert(peer, why);
        }
    }

    /// Who declined, as "peer: why".
    pub fn declined_list(&self) -> Vec<String> {
        self.declined
            .iter()
            .map(|(p, w)| format!("{p}: {w}"))
            .collect()
    }

    /// The provider left: its bid and ask go (its runs keep their terms).
    pub fn forget(&mut self, peer: &PeerId) {
        self.standing.remove(peer);
        self.reasking.remove(peer);
        self.bids.remove(peer);
        self.asks.remove(peer);
    }

    /// Closes the first window once it is over; `true` exactly once, when the bidders may
    /// take work.
    pub fn close_due(&mut self, now: Millis) -> bool {
        let all_in = self
            .expected
            .is_some_and(|n| !self.bids.is_empty() && self.bids.len() + self.declined.len() >= n);
        if self.closed || (!all_in && self.until.is_none_or(|t| now < t)) {
            return false;
        }
        self.closed = true;
        true
    }

    /// Whether a paid job is still collecting its first asks.
    pub fn open(&self) -> bool {
        self.paid && !self.closed
    }

    /// The bidders.
    pub fn bidders(&self) -> impl Iterator<Item = &PeerId> {
        self.bids.keys()
    }

    /// The provider's asking price, if it bid.
    pub fn ask_of(&self, peer: &PeerId) -> Option<Price> {
        self.bids.get(peer).map(|b| b.price)
    }

    /// Bidders in auction order: cheapest ask, then reputation, then latency.
    pub fn order(&self) -> Vec<PeerId> {
        let mut bids: Vec<naac_market::Bid<PeerId>> = self.bids.values().cloned().collect();
        naac_market::rank(&mut bids);
        bids.iter().map(|b| b.provider).collect()
    }

    /// The bank says whether `peer` has standing (see [`Bidding::award`]).
    pub fn set_standing(&mut self, peer: PeerId, standing: bool) {
        if standing && self.bids.contains_key(&peer) {
            self.standing.insert(peer);
        } else {
            self.standing.remove(&peer);
        }
    }

    /// Auctions the batch going to `provider` among the bidders `available` now, and fixes
    /// the terms of its runs; `None` (the runs go unpaid) when it has no valid bid. The
    /// price is the next ask up among bidders with standing at the bank (an ask from a key
    /// nobody vouches for could be invented, and the bank refuses it as a second price),
    /// or the job's `max_price` when there is none.
    pub fn award(
        &mut self,
        provider: &PeerId,
        runs: &[(TaskId, u32)],
        available: impl Fn(&PeerId) -> bool,
    ) -> Option<Terms> {
        let bids: Vec<naac_market::Bid<PeerId>> = self
            .bids
            .values()
            .filter(|b| {
                b.provider == *provider
                    || (available(&b.provider) && self.standing.contains(&b.provider))
            })
            .cloned()
            .collect();
        let c = naac_market::clear_for(&bids, provider, self.max_price)?;
        let terms = Terms {
            price: c.price,
            winner: self.asks.get(provider)?.clone(),
            second: match c.second {
                Some(i) => Some(self.asks.get(&bids[i].provider)?.clone()),
                None => None,
            },
        };
        for (task, attempt) in runs {
            self.terms
                .entry(task.0)
                .or_default()
                .push((*attempt, terms.clone()));
        }
        self.owed += runs.len() as u64;
        Some(terms)
    }

    /// Takes the terms of every run of a closed task, by attempt.
    pub fn take_terms(&mut self, index: u32) -> Vec<(u32, Terms)> {
        let t = self.terms.remove(&index).unwrap_or_default();
        self.owed = self.owed.saturating_sub(t.len() as u64);
        t
    }

    /// Bidders whose ask expires within `within_ms` of `unix_ms` and were not asked again in
    /// the last minute: the session greets them again for a fresh ask, so a job longer than
    /// an ask's life keeps valid terms (the bank refuses an ask a day past its expiry).
    pub fn expiring(&mut self, unix_ms: u64, within_ms: u64) -> Vec<PeerId> {
        let due: Vec<PeerId> = self
            .asks
            .iter()
            .filter(|(p, a)| {
                a.ask.expires_ms <= unix_ms.saturating_add(within_ms)
                    && self
                        .reasking
                        .get(*p)
                        .is_none_or(|at| unix_ms.saturating_sub(*at) >= 60_000)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in &due {
            self.reasking.insert(*p, unix_ms);
        }
        due
    }

    /// Drops the terms of one run that will never be paid (handed back unstarted).
    pub fn drop_run(&mut self, index: u32, attempt: u32) {
        if let Some(runs) = self.terms.get_mut(&index) {
            let before = runs.len();
            runs.retain(|(a, _)| *a != attempt);
            self.owed = self.owed.saturating_sub((before - runs.len()) as u64);
            if runs.is_empty() {
                self.terms.remove(&index);
            }
        }
    }

    /// Runs with terms: started on a paid provider, their task not yet closed. Each may
    /// still have to be paid, at most `max_price × fuel limit`.
    pub fn owed(&self) -> u64 {
        self.owed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use naac_market::Ask;

    /// The wall clock in these tests (asks expire at `u64::MAX` unless a test says).
    const NOW: u64 = 1_700_000_000_000;

    fn provider() -> (naac_net::Keypair, PeerId) {
        let k = naac_net::Keypair::generate_ed25519();
        let p = k.public().to_peer_id();
        (k, p)
    }

    fn ask(key: &naac_net::Keypair, job: JobId, price: u64) -> Bid {
        let ask = Ask {
            job,
            provider: naac_net::ed25519_of_keypair(key).expect("ed25519"),
            price: Price(price),
            expires_ms: u64::MAX,
        };
        let sig = naac_net::sign(key, &ask.signing_bytes());
        naac_bank::wire::ask_bid(naac_market::SignedAsk { ask, sig })
    }

    fn job() -> JobId {
        JobId::derive(&naac_types::ContentId::of(b"job"), b"1")
    }

    #[test]
    fn valid_asks_become_bids_in_auction_order_and_open_a_window() {
        let j = job();
        let mut b = Bidding::new(j, true, Price(300));
        let (k1, p1) = provider();
        let (k2, p2) = provider();
        assert!(b.open());
        b.take(p1, Some(&ask(&k1, j, 200)), None, None, Millis(1_000), NOW)
            .expect("a valid bid");
        b.take(
            p2,
            Some(&ask(&k2, j, 100)),
            None,
            Some(0.9),
            Millis(1_100),
            NOW,
        )
        .expect("a valid bid");
        assert_eq!(b.order(), vec![p2, p1]);
        assert_eq!(b.ask_of(&p1), Some(Price(200)));
        // The window runs from the first ask.
        assert!(!b.close_due(Millis(1_299)));
        assert!(b.close_due(Millis(1_300)));
        assert!(!b.close_due(Millis(9_000)), "closes once");
        assert!(!b.open());
    }

    #[test]
    fn the_window_closes_early_once_every_expected_bidder_answered() {
        let j = job();
        let mut b = Bidding::new(j, true, Price(300));
        b.expect(3);
        let (k1, p1) = provider();
        let (k2, p2) = provider();
        let (_, p3) = provider();
        b.take(p1, Some(&ask(&k1, j, 200)), None, None, Millis(1_000), NOW)
            .expect("a valid bid");
        b.take(p2, Some(&ask(&k2, j, 100)), None, None, Millis(1_001), NOW)
            .expect("a valid bid");
        assert!(!b.close_due(Millis(1_002)), "one bidder has not answered");
        // The third declines (a lie about its key counts as an answer too).
        assert!(
            b.take(p3, Some(&ask(&k1, j, 100)), None, None, Millis(1_003), NOW)
                .is_err()
        );
        assert!(b.close_due(Millis(1_003)), "all three answered");
        assert!(!b.open());
        // Declines alone never close it: there is nobody to award work to.
        let mut b = Bidding::new(j, true, Price(300));
        b.expect(1);
        let _ = b.take(p3, None, None, None, Millis(1_000), NOW);
        assert!(!b.close_due(Millis(1_001)));
    }

    #[test]
    fn forged_foreign_and_dear_asks_are_refused_with_why() {
        let j = job();
        let mut b = Bidding::new(j, true, Price(300));
        let (k1, p1) = provider();
        let (k2, _) = provider();
        // Signed by another key than the sender's.
        let e = b.take(p1, Some(&ask(&k2, j, 100)), None, None, Millis(0), NOW);
        assert_eq!(e, Err("its ask is not signed by its key".into()));
        // A signature over other bytes.
        let Bid::Ask(mut forged) = ask(&k1, j, 100) else {
            unreachable!()
        };
        forged.ask.price = Price(1);
        let e = b.take(p1, Some(&Bid::Ask(forged)), None, None, Millis(0), NOW);
        assert_eq!(e, Err("its ask is not signed by its key".into()));
        let other = JobId::derive(&naac_types::ContentId::of(b"other"), b"1");
        let e = b.take(p1, Some(&ask(&k1, other, 100)), None, None, Millis(0), NOW);
        assert_eq!(e, Err("its ask is for another job".into()));
        let e = b.take(p1, Some(&ask(&k1, j, 301)), None, None, Millis(0), NOW);
        assert!(e.is_err_and(|w| w.contains("the job pays at most")));
        let e = b.take(p1, None, None, None, Millis(0), NOW);
        assert_eq!(e, Err("it sent no ask (an older naac?)".into()));
        // Signed, for this job, but expired.
        let stale = {
            let ask = Ask {
                job: j,
                provider: naac_net::ed25519_of_keypair(&k1).expect("ed25519"),
                price: Price(100),
                expires_ms: NOW,
            };
            let sig = naac_net::sign(&k1, &ask.signing_bytes());
            naac_bank::wire::ask_bid(naac_market::SignedAsk { ask, sig })
        };
        let e = b.take(p1, Some(&stale), None, None, Millis(0), NOW);
        assert_eq!(e, Err("its ask has expired".into()));
        assert!(b.order().is_empty());
        assert_eq!(b.declined_list().len(), 1, "one entry per provider");
        // No valid ask: no window.
        assert!(!b.close_due(Millis(1_000_000)));
    }

    #[test]
    fn a_batch_is_paid_the_next_ask_up_among_available_bidders() {
        let j = job();
        let mut b = Bidding::new(j, true, Price(300));
        let (k1, p1) = provider();
        let (k2, p2) = provider();
        let (k3, p3) = provider();
        for (k, p, price) in [(&k1, p1, 100), (&k2, p2, 200), (&k3, p3, 250)] {
            b.take(p, Some(&ask(k, j, price)), None, None, Millis(0), NOW)
                .expect("a valid bid");
        }
        // Until the bank vouches for the others, nobody's ask sets the price: max_price.
        let t = b.award(&p1, &[(TaskId(1), 0)], |_| true).expect("terms");
        assert_eq!((t.price, t.second.is_none()), (Price(300), true));
        for p in [p1, p2, p3] {
            b.set_standing(p, true);
        }
        assert_eq!(b.take_terms(1).len(), 1);
        let runs = [(TaskId(7), 0), (TaskId(8), 1)];
        let t = b.award(&p1, &runs, |_| true).expect("terms");
        assert_eq!(t.price, Price(200));
        assert_eq!(t.second.as_ref().map(|a| a.ask.price), Some(Price(200)));
        // With the second bidder paused, the third sets the price.
        let t = b
            .award(&p1, &[(TaskId(9), 0)], |p| *p != p2)
            .expect("terms");
        assert_eq!(t.price, Price(250));
        assert_eq!(b.owed(), 3, "three runs have terms");
        b.drop_run(9, 0);
        b.drop_run(9, 5);
        assert_eq!(b.owed(), 2, "a run handed back owes nothing");
        b.award(&p1, &[(TaskId(9), 0)], |_| true).expect("terms");
        let terms = b.take_terms(8);
        assert_eq!(terms.len(), 1);
        assert_eq!(b.owed(), 2);
        assert_eq!((terms[0].0, terms[0].1.price), (1, Price(200)));
        assert!(b.take_terms(8).is_empty(), "taken once");
        // A lone bidder is paid max_price; one that left gets nothing.
        b.forget(&p2);
        b.forget(&p3);
        assert_eq!(
            b.award(&p1, &[], |_| true).map(|t| t.price),
            Some(Price(300))
        );
        assert!(b.award(&p2, &[], |_| true).is_none());
    }

    #[test]
    fn an_ask_about_to_expire_is_asked_for_again_once_a_minute() {
        let j = job();
        let mut b = Bidding::new(j, true, Price(300));
        let (k, p) = provider();
        let expiring = |expires_ms| {
            let ask = Ask {
                job: j,
                provider: naac_net::ed25519_of_keypair(&k).expect("ed25519"),
                price: Price(100),
                expires_ms,
            };
            let sig = naac_net::sign(&k, &ask.signing_bytes());
            naac_bank::wire::ask_bid(naac_market::SignedAsk { ask, sig })
        };
        b.take(
            p,
            Some(&expiring(NOW + 3_600_000)),
            Some(Duration::from_millis(7)),
            None,
            Millis(0),
            NOW,
        )
        .expect("a valid bid");
        assert!(b.expiring(NOW, 600_000).is_empty(), "an hour left");
        let later = NOW + 3_000_001;
        assert_eq!(b.expiring(later, 600_000), vec![p]);
        assert!(
            b.expiring(later + 1_000, 600_000).is_empty(),
            "asked already"
        );
        assert_eq!(
            b.expiring(later + 60_000, 600_000),
            vec![p],
            "asked again a minute on"
        );
        // The fresh ask replaces the old one and keeps the measured latency.
        b.take(
            p,
            Some(&expiring(later + 3_600_000)),
            None,
            None,
            Millis(0),
            later,
        )
        .expect("a valid bid");
        assert!(b.expiring(later + 61_000, 600_000).is_empty());
        assert_eq!(b.bids[&p].latency_ms, 7);
    }
}
