//! What an owner asks, and whether it bids.

use naac_market::{ask_price, owner_ask, will_bid};
use naac_types::Price;
use naac_types::host::HostLimits;

#[test]
fn ask_is_the_minimum_times_the_window() {
    assert_eq!(ask_price(Price::whole(2), 1.0), Price::whole(2));
    assert_eq!(ask_price(Price::whole(2), 2.5), Price::whole(5));
    // Rounded up: the owner never gets less than asked.
    assert_eq!(ask_price(Price(3), 1.5), Price(5));
    // Multipliers below 1 or not finite leave the minimum.
    for m in [0.5, 0.0, -2.0, f64::NAN, f64::INFINITY] {
        assert_eq!(ask_price(Price(7), m), Price(7), "{m}");
    }
    // Saturates instead of wrapping.
    assert_eq!(ask_price(Price(u64::MAX / 2), 3.0), Price(u64::MAX));
    assert_eq!(ask_price(Price(0), 4.0), Price(0));
}

#[test]
fn owner_ask_reads_whole_credits_from_the_policy() {
    let limits = HostLimits {
        min_price: 2,
        price_multiplier: 1.5,
        ..HostLimits::default()
    };
    assert_eq!(owner_ask(&limits), Price::whole(3));
    let free = HostLimits {
        price_multiplier: 1.0,
        ..HostLimits::default()
    };
    assert_eq!(owner_ask(&free), Price(0));
}

#[test]
fn bids_only_within_max_price() {
    assert!(will_bid(Price(10), Price(10)));
    assert!(will_bid(Price(0), Price(10)));
    assert!(!will_bid(Price(11), Price(10)));
}
