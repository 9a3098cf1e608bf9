//! Signed offers: the signed layout, the gossip encoding, and the soft-state book.

use ed25519_dalek::SigningKey;
use naac_market::{
    Inserted, MAX_ADDR_LEN, MAX_ADDRS, MAX_OFFER_BYTES, MAX_OFFER_TTL_MS, Offer, OfferBook,
    OfferError, ProviderKey, SignedOffer, commodity_class, dht_key, topic,
};
use naac_types::Price;

const NOW: u64 = 1_700_000_000_000;
const MIN: u64 = 60_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(n: u8) -> ProviderKey {
    key(n).verifying_key().to_bytes()
}

fn offer() -> Offer {
    Offer {
        provider: [0; 32],
        class: commodity_class().into(),
        cores: 8,
        memory: 16 << 30,
        score_milli: 1_250,
        slots: 4,
        free_slots: 3,
        price: Price::whole(2),
        max_task_memory: 2 << 30,
        accepting: true,
        addrs: vec!["/ip4/192.0.2.1/tcp/4001".into(), "/ip6/::1/tcp/4001".into()],
        seq: 1,
        issued_ms: NOW,
        expires_ms: NOW + 5 * MIN,
    }
}

/// Provider `n`'s offer number `seq`, expiring `ttl` after `NOW`.
fn signed(n: u8, seq: u64, ttl: u64, price: u64) -> SignedOffer {
    Offer {
        seq,
        expires_ms: NOW + ttl,
        price: Price(price),
        ..offer()
    }
    .sign(&key(n))
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

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[test]
fn class_keys_and_topics() {
    assert_eq!(commodity_class(), "wasm32-wasip1");
    assert_eq!(
        dht_key("wasm32-wasip1"),
        b"/naac/market/v1/wasm32-wasip1".to_vec()
    );
    assert_eq!(topic("wasm32-wasip1"), "naac/market/v1/wasm32-wasip1");
}

#[test]
fn sign_sets_the_provider_and_verifies() {
    let s = offer().sign(&key(1));
    assert_eq!(s.offer.provider, pk(1));
    assert_eq!(s.sig.len(), 64);
    assert!(s.verify());
    assert!(s.offer.signing_bytes().starts_with(b"naac offer v1"));
}

#[test]
fn every_field_changes_the_signed_bytes() {
    let base = offer().signing_bytes();
    let variants = [
        Offer {
            provider: [1; 32],
            ..offer()
        },
        Offer {
            class: "wasm32-wasip2".into(),
            ..offer()
        },
        Offer {
            cores: 9,
            ..offer()
        },
        Offer {
            memory: 1,
            ..offer()
        },
        Offer {
            score_milli: 1,
            ..offer()
        },
        Offer {
            slots: 5,
            ..offer()
        },
        Offer {
            free_slots: 4,
            ..offer()
        },
        Offer {
            price: Price(1),
            ..offer()
        },
        Offer {
            max_task_memory: 1,
            ..offer()
        },
        Offer {
            accepting: false,
            ..offer()
        },
        Offer {
            addrs: vec![],
            ..offer()
        },
        Offer {
            addrs: vec!["/ip4/192.0.2.1/tcp/4001/ip6/::1/tcp/4001".into()],
            ..offer()
        },
        Offer { seq: 2, ..offer() },
        Offer {
            issued_ms: NOW - 1,
            ..offer()
        },
        Offer {
            expires_ms: NOW + 1,
            ..offer()
        },
    ];
    for v in variants {
        assert_ne!(v.signing_bytes(), base, "{v:?}");
    }
}

#[test]
fn bytes_round_trip() {
    let s = offer().sign(&key(1));
    let b = s.to_bytes().expect("valid offer");
    assert_eq!(b[0], 1, "version byte");
    let back = SignedOffer::from_bytes(&b).expect("decodes");
    assert_eq!(back, s);
    assert!(back.verify());

    // The largest offer the limits allow still fits in 4 KiB.
    let big = Offer {
        addrs: vec!["a".repeat(MAX_ADDR_LEN); MAX_ADDRS],
        class: "x".repeat(64),
        ..offer()
    }
    .sign(&key(2));
    let b = big.to_bytes().expect("within limits");
    assert!(b.len() <= MAX_OFFER_BYTES, "{}", b.len());
    assert_eq!(SignedOffer::from_bytes(&b).expect("decodes"), big);

    // No addresses, no signature: still a well-formed (if unverifiable) encoding.
    let bare = SignedOffer {
        offer: Offer {
            addrs: vec![],
            ..offer()
        },
        sig: vec![],
    };
    let back = SignedOffer::from_bytes(&bare.to_bytes().expect("valid")).expect("decodes");
    assert_eq!(back, bare);
    assert!(!back.verify());
}

#[test]
fn oversized_and_out_of_limit_encodings_refused() {
    let s = offer().sign(&key(1));
    let mut b = s.to_bytes().expect("valid offer");
    b.resize(MAX_OFFER_BYTES + 1, 0);
    assert_eq!(
        SignedOffer::from_bytes(&b),
        Err(OfferError::TooLarge(MAX_OFFER_BYTES + 1))
    );
    assert_eq!(
        SignedOffer::from_bytes(&vec![1u8; 1 << 20]),
        Err(OfferError::TooLarge(1 << 20))
    );

    let too_many = SignedOffer {
        offer: Offer {
            addrs: vec!["/ip4/192.0.2.1/tcp/1".into(); MAX_ADDRS + 1],
            ..offer()
        },
        sig: s.sig.clone(),
    };
    assert_eq!(too_many.to_bytes(), Err(OfferError::TooManyAddrs(9)));
    let too_long = SignedOffer {
        offer: Offer {
            addrs: vec!["a".repeat(MAX_ADDR_LEN + 1)],
            ..offer()
        },
        sig: s.sig.clone(),
    };
    assert_eq!(too_long.to_bytes(), Err(OfferError::AddrTooLong(257)));
    let long_sig = SignedOffer {
        offer: offer(),
        sig: vec![0; 65],
    };
    assert!(matches!(long_sig.to_bytes(), Err(OfferError::Malformed(_))));

    // The decoder enforces the same limits on hand-made bytes: patch the address count of a
    // valid encoding to 9 (it sits right after the fixed fields).
    let mut b = s.to_bytes().expect("valid offer");
    let at = 1 + 32 + 4 + s.offer.class.len() + 4 + 8 + 8 + 4 + 4 + 8 + 8 + 1;
    assert_eq!(&b[at..at + 4], &2u32.to_le_bytes());
    b[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
    assert_eq!(
        SignedOffer::from_bytes(&b),
        Err(OfferError::TooManyAddrs(9))
    );
}

#[test]
fn strict_decoding() {
    let s = offer().sign(&key(1));
    let b = s.to_bytes().expect("valid offer");

    let mut v2 = b.clone();
    v2[0] = 2;
    assert_eq!(SignedOffer::from_bytes(&v2), Err(OfferError::Version(2)));

    let mut trailing = b.clone();
    trailing.push(0);
    assert_eq!(
        SignedOffer::from_bytes(&trailing),
        Err(OfferError::Malformed("trailing bytes"))
    );

    for n in 0..b.len() {
        assert!(SignedOffer::from_bytes(&b[..n]).is_err(), "prefix of {n}");
    }

    // Every single-bit change is refused by the decoder or by the signature.
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut f = b.clone();
            f[i] ^= 1 << bit;
            if let Ok(d) = SignedOffer::from_bytes(&f) {
                assert!(!d.verify(), "flip of byte {i} bit {bit} still verifies");
            }
        }
    }

    // Random garbage never panics, and random corruption of a valid encoding never
    // verifies.
    let mut rng = Rng(0x0ffe_4001);
    for _ in 0..20_000 {
        let mut f = b.clone();
        for _ in 0..rng.range(1, 4) {
            let i = rng.range(0, f.len() as u64 - 1) as usize;
            f[i] = rng.next() as u8;
        }
        if f != b
            && let Ok(d) = SignedOffer::from_bytes(&f)
        {
            assert!(!d.verify());
        }
        let junk: Vec<u8> = (0..rng.range(0, 300)).map(|_| rng.next() as u8).collect();
        let _ = SignedOffer::from_bytes(&junk);
    }
}

#[test]
fn validation() {
    let bad = |o: Offer| o.validate().expect_err("invalid");
    assert_eq!(
        bad(Offer {
            class: String::new(),
            ..offer()
        }),
        OfferError::BadClass(String::new())
    );
    for class in ["Wasm32", "wasm/32", "wasm 32", "x".repeat(65).as_str()] {
        assert!(matches!(
            bad(Offer {
                class: class.into(),
                ..offer()
            }),
            OfferError::BadClass(_)
        ));
    }
    assert_eq!(
        bad(Offer {
            free_slots: 5,
            ..offer()
        }),
        OfferError::FreeSlots { free: 5, slots: 4 }
    );
    assert!(matches!(
        bad(Offer {
            issued_ms: NOW + 6 * MIN,
            ..offer()
        }),
        OfferError::IssuedAfterExpiry { .. }
    ));
    assert!(
        bad(Offer {
            addrs: vec![String::new(); 9],
            ..offer()
        })
        .to_string()
        .contains("9 addresses")
    );
    offer().validate().expect("valid");
}

#[test]
fn new_renewed_and_stale() {
    let mut book = OfferBook::new(10);
    assert!(book.is_empty());
    let first = signed(1, 5, 5 * MIN, 100);
    assert_eq!(book.insert(first.clone(), NOW), Ok(Inserted::New));
    // The very same offer again (gossip duplicates): stale.
    assert_eq!(book.insert(first.clone(), NOW), Ok(Inserted::Stale));
    // Same seq, different content: stale, the kept one unchanged.
    assert_eq!(
        book.insert(signed(1, 5, 6 * MIN, 50), NOW),
        Ok(Inserted::Stale)
    );
    // Lower seq: stale (a replay of an older publish).
    assert_eq!(
        book.insert(signed(1, 4, 9 * MIN, 10), NOW),
        Ok(Inserted::Stale)
    );
    assert_eq!(book.get(&pk(1)), Some(&first));
    // Higher seq: renewed, even with a sooner expiry and a higher price.
    let renewed = signed(1, 6, 2 * MIN, 300);
    assert_eq!(
        book.insert(renewed.clone(), NOW + MIN),
        Ok(Inserted::Renewed)
    );
    assert_eq!(book.get(&pk(1)), Some(&renewed));
    assert_eq!(book.len(), 1);
    // The renewal replaced the old expiry: gone at its own, not the first one's.
    assert_eq!(book.expire(NOW + 2 * MIN), 1);
    assert!(book.is_empty());
    // Once dropped, an older seq is new again (soft state remembers nothing).
    assert_eq!(
        book.insert(signed(1, 5, 5 * MIN, 100), NOW + MIN),
        Ok(Inserted::New)
    );
}

#[test]
fn forged_signatures_refused() {
    let mut book = OfferBook::new(10);
    let good = signed(1, 1, 5 * MIN, 100);
    assert_eq!(book.insert(good.clone(), NOW), Ok(Inserted::New));

    // Someone else's key claiming provider 1, with a higher seq.
    let mut forged = signed(2, 9, 5 * MIN, 1);
    forged.offer.provider = pk(1);
    assert_eq!(book.insert(forged, NOW), Err(OfferError::BadSignature));
    // A genuine offer altered after signing.
    let mut altered = signed(1, 9, 5 * MIN, 100);
    altered.offer.price = Price(1);
    assert_eq!(book.insert(altered, NOW), Err(OfferError::BadSignature));
    // No signature, a short one, a provider key that did not sign.
    let mut unsigned = signed(3, 1, 5 * MIN, 100);
    unsigned.sig.clear();
    assert_eq!(
        book.insert(unsigned.clone(), NOW),
        Err(OfferError::BadSignature)
    );
    unsigned.sig = vec![0; 63];
    assert_eq!(book.insert(unsigned, NOW), Err(OfferError::BadSignature));
    let mut bogus = signed(3, 1, 5 * MIN, 100);
    bogus.offer.provider = [0xff; 32];
    assert_eq!(book.insert(bogus, NOW), Err(OfferError::BadSignature));

    assert_eq!(book.len(), 1);
    assert_eq!(book.get(&pk(1)), Some(&good));
}

#[test]
fn expiry_windows() {
    let mut book = OfferBook::new(10);
    // Expiring now or earlier: refused.
    assert_eq!(
        book.insert(signed(1, 1, 0, 1), NOW),
        Err(OfferError::Expired {
            expires_ms: NOW,
            now_ms: NOW
        })
    );
    assert!(matches!(
        book.insert(signed(1, 1, MIN, 1), NOW + 2 * MIN),
        Err(OfferError::Expired { .. })
    ));
    // More than 10 minutes ahead: refused; exactly 10 minutes: kept.
    assert_eq!(
        book.insert(signed(1, 1, MAX_OFFER_TTL_MS + 1, 1), NOW),
        Err(OfferError::TooLong {
            expires_ms: NOW + MAX_OFFER_TTL_MS + 1,
            limit_ms: NOW + MAX_OFFER_TTL_MS
        })
    );
    assert_eq!(
        book.insert(signed(1, 1, MAX_OFFER_TTL_MS, 1), NOW),
        Ok(Inserted::New)
    );
    // Only the known class.
    let other = Offer {
        class: "x86_64-linux".into(),
        expires_ms: NOW + MIN,
        ..offer()
    }
    .sign(&key(2));
    assert_eq!(
        book.insert(other, NOW),
        Err(OfferError::UnknownClass("x86_64-linux".into()))
    );
    let malformed = Offer {
        free_slots: 9,
        ..offer()
    }
    .sign(&key(2));
    assert!(matches!(
        book.insert(malformed, NOW),
        Err(OfferError::FreeSlots { .. })
    ));
    assert_eq!(book.len(), 1);
}

#[test]
fn expire_and_live() {
    let mut book = OfferBook::new(10);
    book.insert(signed(1, 1, MIN, 300), NOW).expect("kept");
    book.insert(signed(2, 1, 3 * MIN, 100), NOW).expect("kept");
    book.insert(signed(3, 1, 5 * MIN, 200), NOW).expect("kept");
    book.insert(signed(4, 1, 5 * MIN, 100), NOW).expect("kept");

    let providers = |v: Vec<&SignedOffer>| v.iter().map(|o| o.offer.provider).collect::<Vec<_>>();
    // Cheapest first, equal prices by provider key.
    let mut cheap = [pk(2), pk(4)];
    cheap.sort();
    assert_eq!(
        providers(book.live(commodity_class(), NOW)),
        vec![cheap[0], cheap[1], pk(3), pk(1)]
    );
    assert!(book.live("wasm32-wasip2", NOW).is_empty());
    // Expired offers leave `live` at once, and the book when `expire` runs.
    assert_eq!(
        providers(book.live(commodity_class(), NOW + 3 * MIN)),
        vec![pk(4), pk(3)]
    );
    assert_eq!(book.len(), 4);
    assert_eq!(book.iter().count(), 4);
    assert_eq!(book.expire(NOW + 3 * MIN - 1), 1);
    assert_eq!(book.expire(NOW + 3 * MIN), 1);
    assert_eq!(book.expire(NOW + 3 * MIN), 0);
    assert_eq!(book.len(), 2);
    assert!(book.get(&pk(1)).is_none());
    assert!(book.get(&pk(3)).is_some());
    assert!(book.remove(&pk(3)).is_some());
    assert!(book.remove(&pk(3)).is_none());
    assert_eq!(book.expire(NOW + 10 * MIN), 1);
    assert!(book.is_empty());
}

#[test]
fn eviction_at_capacity() {
    let mut book = OfferBook::new(3);
    book.insert(signed(1, 1, 4 * MIN, 1), NOW).expect("kept");
    book.insert(signed(2, 1, 2 * MIN, 1), NOW).expect("kept");
    book.insert(signed(3, 1, 6 * MIN, 1), NOW).expect("kept");
    // A renewal at capacity evicts nobody.
    assert_eq!(
        book.insert(signed(2, 2, 3 * MIN, 1), NOW),
        Ok(Inserted::Renewed)
    );
    assert_eq!(book.len(), 3);
    // A new provider evicts the offer that expires soonest (2's renewal, at 3 min).
    assert_eq!(book.insert(signed(4, 1, MIN, 1), NOW), Ok(Inserted::New));
    assert_eq!(book.len(), 3);
    assert!(book.get(&pk(2)).is_none());
    // The newcomer was kept although it expires soonest of all; so it goes next.
    assert_eq!(
        book.insert(signed(5, 1, 9 * MIN, 1), NOW),
        Ok(Inserted::New)
    );
    assert!(book.get(&pk(4)).is_none());
    let mut kept: Vec<ProviderKey> = book.iter().map(|o| o.offer.provider).collect();
    kept.sort();
    let mut want = vec![pk(1), pk(3), pk(5)];
    want.sort();
    assert_eq!(kept, want);

    // Expired offers go first, all of them: at 5 min, 1 (4 min) is gone ...
    assert_eq!(
        book.insert(signed(6, 1, 10 * MIN, 1), NOW + 5 * MIN),
        Ok(Inserted::New)
    );
    assert_eq!(book.len(), 3);
    assert!(book.get(&pk(1)).is_none());
    // ... and at 9 min both 3 (6 min) and 5 (9 min) are, leaving room to spare.
    assert_eq!(
        book.insert(signed(7, 1, 10 * MIN, 1), NOW + 9 * MIN),
        Ok(Inserted::New)
    );
    assert_eq!(book.len(), 2);

    assert_eq!(OfferBook::new(0).capacity(), 1);
}

#[test]
fn never_grows_past_capacity() {
    let keys: Vec<SigningKey> = (1..=12).map(key).collect();
    let mut rng = Rng(0x0ffe_4002);
    let mut book = OfferBook::new(5);
    let mut now = NOW;
    for _ in 0..2_000 {
        now += rng.range(0, 20_000);
        let i = rng.range(0, 11) as usize;
        let seq = rng.range(0, 40);
        let o = Offer {
            seq,
            price: Price(rng.range(1, 9)),
            issued_ms: now,
            expires_ms: now + rng.range(1, MAX_OFFER_TTL_MS),
            ..offer()
        }
        .sign(&keys[i]);
        let had = book.get(&o.offer.provider).map(|k| k.offer.seq);
        match book.insert(o.clone(), now).expect("valid offer") {
            Inserted::New => assert!(had.is_none()),
            Inserted::Renewed => assert!(had.is_some_and(|h| h < seq)),
            Inserted::Stale => assert!(had.is_some_and(|h| h >= seq)),
        }
        assert!(book.len() <= book.capacity());
        let live = book.live(commodity_class(), now);
        assert!(
            live.windows(2)
                .all(|w| (w[0].offer.price, w[0].offer.provider)
                    <= (w[1].offer.price, w[1].offer.provider))
        );
        assert!(live.iter().all(|o| o.offer.expires_ms > now));
        let live = live.len();
        if rng.range(0, 9) == 0 {
            let before = book.len();
            let dropped = book.expire(now);
            assert_eq!(book.len(), before - dropped);
            assert_eq!(book.len(), live);
            assert!(book.iter().all(|o| o.offer.expires_ms > now));
        }
    }
}

/// A fresh key for fake offer `i` (keys cost nothing).
fn fresh_key(i: u32) -> SigningKey {
    let mut b = [0xfa; 32];
    b[..4].copy_from_slice(&i.to_le_bytes());
    SigningKey::from_bytes(&b)
}

/// Honest provider `n` (1..=10): its own network, a 30 s offer.
fn honest(n: u8, seq: u64, now: u64) -> SignedOffer {
    Offer {
        seq,
        issued_ms: now,
        expires_ms: now + 30_000,
        addrs: vec![format!("/ip4/203.0.{n}.7/tcp/4001")],
        ..offer()
    }
    .sign(&key(n))
}

/// One fake offer for fresh key `i`, lasting 9 minutes, at the attacker's address.
fn fake(i: u32, now: u64) -> SignedOffer {
    Offer {
        issued_ms: now,
        expires_ms: now + 9 * MIN,
        addrs: vec![format!("/ip4/198.51.100.{}/tcp/4001", i % 250)],
        price: Price(0),
        ..offer()
    }
    .sign(&fresh_key(i))
}

#[test]
fn a_flood_of_long_lived_offers_for_fresh_keys_takes_only_its_share() {
    let mut book = OfferBook::new(128);
    let share = book.share();
    assert_eq!(share, 16);
    let mut now = NOW;
    for n in 1..=10 {
        book.insert(honest(n, 1, now), now).expect("kept");
    }
    // 5,000 offers for fresh keys, all delivered by one peer, all in one /24: whether
    // charged to the attacker's connection or to the keys themselves, they hold one share.
    for i in 0..5_000u32 {
        let via: &[u8] = if i.is_multiple_of(2) {
            b"attacker"
        } else {
            &[]
        };
        let o = fake(i, now);
        let r = if via.is_empty() {
            book.insert(o, now)
        } else {
            book.insert_from(o, now, via)
        };
        assert_eq!(r, Ok(Inserted::New), "a fresh key's offer is taken in");
        assert!(book.len() <= book.capacity());
        if i % 1_000 == 999 {
            // Honest providers renew every 10 s and stay, although every fake outlives them.
            now += 10_000;
            for n in 1..=10 {
                book.insert(honest(n, 1 + u64::from(i), now), now)
                    .expect("renewed");
            }
        }
    }
    assert!(book.from_origin(b"attacker") <= share);
    let fakes = book.iter().filter(|o| o.offer.price == Price(0)).count();
    assert!(fakes <= share, "{fakes} fakes kept, share {share}");
    for n in 1..=10 {
        assert!(
            book.get(&pk(n)).is_some(),
            "honest provider {n} was evicted"
        );
    }
    // A real provider that appears now is taken in, and the book keeps it.
    let real = honest(11, 1, now);
    assert_eq!(book.insert_from(real, now, b"hub"), Ok(Inserted::New));
    for i in 5_000..6_000 {
        book.insert_from(fake(i, now), now, b"attacker")
            .expect("taken");
    }
    assert!(book.get(&pk(11)).is_some(), "the real provider was evicted");
}

#[test]
fn a_full_book_evicts_from_the_largest_group_not_the_soonest_expiring() {
    // Capacity 32, share 16: 16 long-lived offers from one origin (each on its own network),
    // 16 honest short-lived ones from 16 others. A newcomer evicts one of the 16 long-lived.
    let mut book = OfferBook::new(32);
    for i in 0..16u32 {
        let o = Offer {
            expires_ms: NOW + 9 * MIN,
            addrs: vec![format!("/ip4/198.51.{i}.1/tcp/4001")],
            ..offer()
        }
        .sign(&fresh_key(i));
        book.insert_from(o, NOW, b"long-lived").expect("kept");
    }
    for n in 1..=16 {
        book.insert_from(honest(n, 1, NOW), NOW, &[n])
            .expect("kept");
    }
    assert_eq!(book.len(), 32);
    book.insert_from(honest(17, 1, NOW), NOW, b"hub")
        .expect("kept");
    assert_eq!(book.len(), 32);
    for n in 1..=17 {
        assert!(
            book.get(&pk(n)).is_some(),
            "honest provider {n} was evicted"
        );
    }
    assert_eq!(book.from_origin(b"long-lived"), 15);
}
