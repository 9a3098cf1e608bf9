//! The reverse Vickrey auction: second prices, eligibility, ties, bounds and truthfulness.

use naac_market::{Bid, Clearing, clear_for, rank, vickrey};
use naac_types::Price;

fn bid(provider: u32, price: u64) -> Bid<u32> {
    Bid {
        provider,
        price: Price(price),
        reputation: 0.5,
        latency_ms: 10,
    }
}

/// SplitMix64: a small seeded generator, so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (slightly biased; fine for tests).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn bids(&mut self, max_bidders: u64, max_ask: u64) -> Vec<Bid<u32>> {
        let n = self.range(0, max_bidders);
        (0..n)
            .map(|i| Bid {
                // Mostly distinct providers, sometimes one provider bids twice.
                provider: if self.range(0, 9) == 0 { 0 } else { i as u32 },
                price: Price(self.range(0, max_ask)),
                reputation: self.range(0, 3) as f64 / 3.0,
                latency_ms: self.range(0, 3),
            })
            .collect()
    }
}

#[test]
fn truthful_asks_win_at_the_second_price() {
    let bids = vec![bid(2, 20), bid(3, 30), bid(1, 10)];
    let max = Price(100);
    assert_eq!(
        vickrey(&bids, max),
        Some(Clearing {
            winner: 2,
            price: Price(20),
            second: Some(0)
        })
    );
    // The best bidder's batch clears exactly as the single-item auction.
    assert_eq!(clear_for(&bids, &1, max), vickrey(&bids, max));
    // 10 was full: the 20 provider is paid the next ask at or above its own, 30.
    assert_eq!(
        clear_for(&bids, &2, max),
        Some(Clearing {
            winner: 0,
            price: Price(30),
            second: Some(1)
        })
    );
    // Nobody asks more than 30: the requester's cap sets the price.
    assert_eq!(
        clear_for(&bids, &3, max),
        Some(Clearing {
            winner: 1,
            price: max,
            second: None
        })
    );
    // A provider that did not bid gets no clearing.
    assert_eq!(clear_for(&bids, &9, max), None);
}

#[test]
fn a_lone_bidder_gets_max_price() {
    let bids = vec![bid(7, 40)];
    let want = Some(Clearing {
        winner: 0,
        price: Price(50),
        second: None,
    });
    assert_eq!(vickrey(&bids, Price(50)), want);
    assert_eq!(clear_for(&bids, &7, Price(50)), want);
    // At exactly its ask.
    assert_eq!(vickrey(&bids, Price(40)).map(|c| c.price), Some(Price(40)));
    assert_eq!(vickrey::<u32>(&[], Price(50)), None);
}

#[test]
fn bids_above_max_price_never_win_nor_set_the_price() {
    let bids = vec![bid(1, 60), bid(2, 45), bid(3, 55)];
    let max = Price(50);
    assert_eq!(
        vickrey(&bids, max),
        Some(Clearing {
            winner: 1,
            price: max,
            second: None
        })
    );
    assert_eq!(clear_for(&bids, &1, max), None);
    assert_eq!(clear_for(&bids, &3, max), None);
    assert_eq!(vickrey(&[bid(1, 51), bid(2, 99)], max), None);
}

#[test]
fn equal_asks_count_and_set_the_price() {
    // Two asks of 20: whoever wins is paid 20, the other's equal ask.
    let bids = vec![bid(1, 20), bid(2, 20), bid(3, 30)];
    let c = vickrey(&bids, Price(100)).expect("eligible bids");
    assert_eq!((c.winner, c.price, c.second), (0, Price(20), Some(1)));
    let c = clear_for(&bids, &2, Price(100)).expect("provider 2 bid");
    assert_eq!((c.winner, c.price, c.second), (1, Price(20), Some(0)));
}

#[test]
fn a_providers_own_bids_never_set_its_price() {
    // Provider 1 bids twice; its second bid is not a competitor.
    let bids = vec![bid(1, 10), bid(1, 12), bid(2, 30)];
    let c = vickrey(&bids, Price(100)).expect("eligible bids");
    assert_eq!((c.winner, c.price, c.second), (0, Price(30), Some(2)));
    assert_eq!(clear_for(&bids, &1, Price(100)), Some(c));
    // Only provider 1: paid the cap.
    let c = vickrey(&bids[..2], Price(100)).expect("eligible bids");
    assert_eq!((c.winner, c.price, c.second), (0, Price(100), None));
    // Bids over the cap do not count, its own included.
    let bids = vec![bid(1, 10), bid(1, 120), bid(2, 30)];
    let c = clear_for(&bids, &1, Price(50)).expect("provider 1 bid under the cap");
    assert_eq!((c.winner, c.price, c.second), (0, Price(30), Some(2)));
    assert_eq!(
        clear_for(&bids, &1, Price(5)),
        None,
        "all of its bids over the cap"
    );
}

#[test]
fn ties_broken_by_reputation_then_latency_then_provider() {
    let mk = |provider: u32, reputation: f64, latency_ms: u64| Bid {
        provider,
        price: Price(10),
        reputation,
        latency_ms,
    };
    let mut bids = vec![
        mk(5, 0.5, 20),
        mk(4, 0.5, 10),
        mk(3, 0.9, 99),
        mk(2, 0.5, 10),
        mk(1, f64::NAN, 0),
        mk(0, -0.0, 0),
        mk(9, 0.0, 0),
        Bid {
            provider: 8,
            price: Price(9),
            reputation: 0.0,
            latency_ms: 1000,
        },
    ];
    let before = bids.clone();
    let order = |bids: &[Bid<u32>]| bids.iter().map(|b| b.provider).collect::<Vec<_>>();
    rank(&mut bids);
    // Price first; then reputation (0.9 > 0.5 > 0 = -0 > NaN); then latency; then provider.
    assert_eq!(order(&bids), vec![8, 3, 2, 4, 5, 0, 9, 1]);
    // The auction agrees with rank on who wins, whatever the input order.
    let c = vickrey(&before[..7], Price(10)).expect("eligible bids");
    assert_eq!(before[c.winner].provider, 3);
    assert_eq!(c.price, Price(10));
    let mut rev = before.clone();
    rev.reverse();
    let c = vickrey(&rev, Price(100)).expect("eligible bids");
    assert_eq!(rev[c.winner].provider, 8);
    assert_eq!(c.price, Price(10));
    assert_eq!(rev[c.second.expect("competitors")].provider, 3);
}

#[test]
fn price_between_ask_and_max_price_on_random_bids() {
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..20_000 {
        let bids = rng.bids(6, 40);
        let max = Price(rng.range(0, 45));
        let mut ranked = bids.clone();
        rank(&mut ranked);
        let eligible: Vec<&Bid<u32>> = ranked.iter().filter(|b| b.price <= max).collect();
        match vickrey(&bids, max) {
            None => assert!(eligible.is_empty(), "{bids:?} {max:?}"),
            Some(c) => {
                let w = &bids[c.winner];
                assert!(
                    w.price <= c.price && c.price <= max,
                    "{bids:?} {max:?} {c:?}"
                );
                assert_eq!(w, eligible[0], "the best-ranked eligible bid wins");
                let others: Vec<&&Bid<u32>> = eligible
                    .iter()
                    .filter(|b| b.provider != w.provider)
                    .collect();
                match c.second {
                    None => {
                        assert!(others.is_empty());
                        assert_eq!(c.price, max);
                    }
                    Some(s) => {
                        assert_eq!(&bids[s], *others[0]);
                        assert_eq!(c.price, bids[s].price);
                    }
                }
                assert_eq!(clear_for(&bids, &w.provider, max), Some(c));
            }
        }
        for b in &bids {
            match clear_for(&bids, &b.provider, max) {
                None => assert!(
                    bids.iter()
                        .all(|x| x.provider != b.provider || x.price > max),
                    "{bids:?} {max:?}"
                ),
                Some(c) => {
                    let w = &bids[c.winner];
                    assert_eq!(w.provider, b.provider);
                    assert!(
                        w.price <= c.price && c.price <= max,
                        "{bids:?} {max:?} {c:?}"
                    );
                    // No other eligible bidder at or above the winner's ask is cheaper than
                    // the price.
                    assert!(bids.iter().all(|x| x.provider == w.provider
                        || x.price < w.price
                        || x.price > max
                        || x.price >= c.price));
                }
            }
        }
    }
}

#[test]
fn truthful_bidding_is_dominant() {
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..5_000 {
        let mut bids = rng.bids(5, 30);
        bids.retain(|b| b.provider != 100);
        let max = Price(rng.range(0, 35));
        let cost = rng.range(0, 35);
        let me = Bid {
            provider: 100,
            price: Price(cost),
            reputation: rng.range(0, 3) as f64 / 3.0,
            latency_ms: rng.range(0, 3),
        };
        let utility = |ask: u64| -> i128 {
            let mut all = bids.clone();
            let at = rng_pos(&all, ask);
            all.insert(
                at,
                Bid {
                    price: Price(ask),
                    ..me.clone()
                },
            );
            match vickrey(&all, max) {
                Some(c) if c.winner == at => i128::from(c.price.0) - i128::from(cost),
                _ => 0,
            }
        };
        let truthful = utility(cost);
        assert!(truthful >= 0, "truthful bidding never loses money");
        for ask in 0..=40 {
            let lie = utility(ask);
            assert!(
                truthful >= lie,
                "cost {cost} max {max:?} truthful {truthful} < ask {ask} gives {lie}: {bids:?}"
            );
        }
    }
}

/// Where to put the tested bid: anywhere, derived from the inputs so it is deterministic
/// (the outcome must not depend on it).
fn rng_pos(bids: &[Bid<u32>], ask: u64) -> usize {
    (ask as usize * 7) % (bids.len() + 1)
}
