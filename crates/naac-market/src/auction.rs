//! The reverse Vickrey auction: providers bid the price they would take, the best bid wins
//! and is paid the next-best ask.
//!
//! Paying the second price makes truthful bidding a dominant strategy: a provider's ask
//! decides only *whether* it wins, never *what* it is paid, so asking its true cost is never
//! worse than any other ask. Bids above the requester's `max_price` take no part at all:
//! they neither win nor set the price, and a winner with no eligible competitor is paid
//! `max_price`, the most the requester said it would pay.
//!
//! Ties are broken deterministically by [`rank`]'s order, so every node computing a clearing
//! from the same bids gets the same result.

use naac_types::Price;
use std::cmp::Ordering;

/// One provider's sealed bid, with what the requester knows of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Bid<P> {
    /// Who bids (a provider key, a peer id, an index...).
    pub provider: P,
    /// The price asked, per giga-fuel.
    pub price: Price,
    /// The requester's opinion of the provider; higher is better (NaN ranks last).
    pub reputation: f64,
    /// Round-trip time to the provider.
    pub latency_ms: u64,
}

/// Sorts best first: lowest price, then higher reputation, then lower latency, then provider
/// (`Ord`) for determinism.
pub fn rank<P: Ord>(bids: &mut [Bid<P>]) {
    bids.sort_by(order);
}

/// The outcome of an auction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clearing {
    /// Index into the bids of the winning bid.
    pub winner: usize,
    /// What the winner is paid per giga-fuel: at least its ask, at most `max_price`.
    pub price: Price,
    /// Index of the bid that set the price; `None` when the winner had no eligible
    /// competitor and is paid `max_price`.
    pub second: Option<usize>,
}

/// Classic single-item reverse Vickrey: the best-ranked bid wins and is paid the
/// second-lowest ask (or `max_price` when it is the only bid). Bids above `max_price` are not
/// eligible. `None` when no bid is eligible.
///
/// A provider is one bidder however many bids it sent: its other bids never set its price.
pub fn vickrey<P: Ord>(bids: &[Bid<P>], max_price: Price) -> Option<Clearing> {
    let winner = best(
        bids,
        (0..bids.len()).filter(|&i| bids[i].price <= max_price),
    )?;
    Some(settle(bids, winner, max_price))
}

/// The price for a batch that went to `winner` (a provider that may not be the overall best,
/// because the better ones were full): the auction among the eligible bidders whose ask is
/// at least the winner's (the cheaper ones could not take this batch). The winner is paid
/// the lowest ask among the *other* such bidders (an equal ask counts), or `max_price` if
/// none. `None` if the winner did not bid or its ask is above `max_price`.
///
/// When `winner` is the overall best bidder this is exactly [`vickrey`]. A provider that bid
/// more than once is judged by its best-ranked eligible bid.
pub fn clear_for<P: Ord + Eq>(bids: &[Bid<P>], winner: &P, max_price: Price) -> Option<Clearing> {
    let w = best(
        bids,
        (0..bids.len()).filter(|&i| bids[i].provider == *winner && bids[i].price <= max_price),
    )?;
    Some(settle(bids, w, max_price))
}

/// The clearing for bid `w`: paid the best-ranked eligible ask of another provider that is
/// not below `w`'s own.
fn settle<P: Ord>(bids: &[Bid<P>], w: usize, max_price: Price) -> Clearing {
    let win = &bids[w];
    let second = best(
        bids,
        (0..bids.len()).filter(|&i| {
            let b = &bids[i];
            b.provider != win.provider && b.price >= win.price && b.price <= max_price
        }),
    );
    Clearing {
        winner: w,
        price: second.map_or(max_price, |s| bids[s].price),
        second,
    }
}

/// The best-ranked of the bids at `candidates`.
fn best<P: Ord>(bids: &[Bid<P>], candidates: impl Iterator<Item = usize>) -> Option<usize> {
    candidates.min_by(|&a, &b| order(&bids[a], &bids[b]))
}

/// `Less` when `a` ranks before `b`.
fn order<P: Ord>(a: &Bid<P>, b: &Bid<P>) -> Ordering {
    a.price
        .cmp(&b.price)
        .then_with(|| reputation_key(b.reputation).total_cmp(&reputation_key(a.reputation)))
        .then(a.latency_ms.cmp(&b.latency_ms))
        .then_with(|| a.provider.cmp(&b.provider))
}

/// Reputation as a totally ordered key: NaN counts as the worst, and −0 as 0.
fn reputation_key(r: f64) -> f64 {
    if r.is_nan() {
        f64::NEG_INFINITY
    } else {
        r + 0.0
    }
}
