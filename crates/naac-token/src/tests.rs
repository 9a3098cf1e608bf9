//! The token vocabulary's tests: each limit, holders and delegation, and properties over
//! random chains (attenuation never widens; tampering never passes).

#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn root() -> Root {
    Root::from_ed25519(&[7u8; 32]).unwrap()
}

fn user(n: u8) -> Root {
    Root::from_ed25519(&[n; 32]).unwrap()
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn run<'a>(host: &'a str, user: Option<&'a Key>, job: &'a str) -> PoolRequest<'a> {
    PoolRequest {
        host,
        user,
        job_name: job,
        slots: 1,
        minute_of_day: 600,
        now: now(),
    }
}

#[test]
fn an_admin_token_may_do_anything() {
    let r = root();
    let t = r.mint_admin("node-a").unwrap();
    let v = r.verifier().verify(&t).unwrap();
    assert_eq!(v.kind(), Kind::Api);
    for op in [
        Operation::Read,
        Operation::Submit,
        Operation::Cancel,
        Operation::Admin,
    ] {
        v.authorize(op, Some("any"), now()).expect("allowed");
    }
}

#[test]
fn scopes_narrow_and_cannot_widen() {
    let r = root();
    let admin = r.mint_admin("n").unwrap();
    let read = attenuate(
        &admin,
        &Limits {
            scope: Some(Scope::Read),
            ..Limits::default()
        },
    )
    .unwrap();
    let t = r.verifier().verify(&read).unwrap();
    t.authorize(Operation::Read, None, now()).expect("read ok");
    let e = t
        .authorize(Operation::Submit, Some("x"), now())
        .expect_err("submit refused");
    assert!(
        matches!(&e, TokenError::Denied(m) if m.contains("operation(\"read\")")),
        "{e}"
    );
    // Asking for admin on a read token adds nothing: still read only.
    let wider = attenuate(
        &read,
        &Limits {
            scope: Some(Scope::Admin),
            ..Limits::default()
        },
    )
    .unwrap();
    let t = r.verifier().verify(&wider).unwrap();
    assert!(t.authorize(Operation::Admin, None, now()).is_err());

    let submit = attenuate(
        &admin,
        &Limits {
            scope: Some(Scope::Submit),
            ..Limits::default()
        },
    )
    .unwrap();
    let t = r.verifier().verify(&submit).unwrap();
    t.authorize(Operation::Submit, Some("x"), now()).unwrap();
    t.authorize(Operation::Cancel, Some("x"), now()).unwrap();
    assert!(t.authorize(Operation::Admin, None, now()).is_err());
}

#[test]
fn expiry_and_job_name_prefix_hold() {
    let r = root();
    let admin = r.mint_admin("n").unwrap();
    let t = attenuate(
        &admin,
        &Limits {
            scope: Some(Scope::Submit),
            expires: Some(now() + Duration::from_secs(3600)),
            job_name_prefix: Some("ci-".into()),
            ..Limits::default()
        },
    )
    .unwrap();
    let v = r.verifier().verify(&t).unwrap();
    v.authorize(Operation::Submit, Some("ci-build"), now())
        .unwrap();
    v.authorize(Operation::Read, None, now()).unwrap();
    let e = v
        .authorize(Operation::Submit, Some("other"), now())
        .expect_err("prefix");
    assert!(format!("{e}").contains("starts_with"), "{e}");
    assert!(
        v.authorize(Operation::Submit, None, now()).is_err(),
        "a submit must name its job"
    );
    let later = now() + Duration::from_secs(7200);
    let e = v
        .authorize(Operation::Read, None, later)
        .expect_err("expired");
    assert!(format!("{e}").contains("time("), "{e}");
}

#[test]
fn forged_and_foreign_tokens_are_invalid() {
    let r = root();
    let other = Root::from_ed25519(&[8u8; 32]).unwrap();
    let t = other.mint_admin("n").unwrap();
    assert!(matches!(
        r.verifier().verify(&t),
        Err(TokenError::Invalid(_))
    ));
    assert!(r.verifier().verify("not a token").is_err());
    assert!(r.verifier().verify(&"A".repeat(MAX_TOKEN_LEN + 1)).is_err());
    // A flipped character anywhere breaks a signature or the encoding.
    let good = r.mint_admin("n").unwrap();
    let mut bytes = good.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bytes).unwrap();
    assert!(r.verifier().verify(&bad).is_err());
}

#[test]
fn a_prefix_is_data_not_code() {
    // A prefix that looks like Datalog stays a string.
    let r = root();
    let admin = r.mint_admin("n").unwrap();
    let t = attenuate(
        &admin,
        &Limits {
            job_name_prefix: Some("\"); allow if true; //".into()),
            ..Limits::default()
        },
    )
    .unwrap();
    let v = r.verifier().verify(&t).unwrap();
    assert!(v.authorize(Operation::Submit, Some("x"), now()).is_err());
}

#[test]
fn a_token_with_too_many_blocks_is_refused() {
    let r = root();
    let mut t = r.mint_admin("n").unwrap();
    for _ in 0..MAX_BLOCKS {
        t = attenuate(
            &t,
            &Limits {
                scope: Some(Scope::Submit),
                ..Limits::default()
            },
        )
        .unwrap();
    }
    assert!(matches!(
        r.verifier().verify(&t),
        Err(TokenError::Invalid(m)) if m.contains("blocks")
    ));
}

#[test]
fn tokens_of_one_kind_do_not_pass_for_another() {
    let alice = user(1);
    let pool = alice.mint(Kind::Pool, None, &Limits::default()).unwrap();
    let t = alice.verifier().verify(&pool).unwrap();
    let e = t.authorize(Operation::Read, None, now()).unwrap_err();
    assert!(format!("{e}").contains("pool token"), "{e}");
    let api = alice.mint_admin("n").unwrap();
    let t = alice.verifier().verify(&api).unwrap();
    let e = t.authorize_pool(&run("h", None, "j")).unwrap_err();
    assert!(format!("{e}").contains("api token"), "{e}");
}

#[test]
fn a_verifier_trusts_only_its_roots_and_finds_which() {
    let (alice, carol, eve) = (user(1), user(3), user(5));
    let v = Verifier::trusting(&[alice.public(), carol.public()]).unwrap();
    let t = carol.mint(Kind::Pool, None, &Limits::default()).unwrap();
    assert_eq!(v.verify(&t).unwrap().root(), &carol.public());
    let t = eve.mint(Kind::Pool, None, &Limits::default()).unwrap();
    let e = v.verify(&t).err().unwrap();
    assert!(
        format!("{e}").contains("not rooted in a key this node trusts"),
        "{e}"
    );
}

#[test]
fn a_bound_token_is_used_by_its_holder_and_handed_on_only_by_it() {
    let (alice, bob, carol, eve) = (user(1), user(2), user(3), user(5));
    let v = alice.verifier();
    let t = alice
        .mint(Kind::Pool, Some(&bob.public()), &Limits::default())
        .unwrap();
    let tok = v.verify(&t).unwrap();
    assert_eq!(tok.holder(), Some(&bob.public()));
    tok.authorize_pool(&run("h", Some(&bob.public()), "j"))
        .unwrap();
    let e = tok.authorize_pool(&run("h", Some(&eve.public()), "j"));
    assert!(e.is_err(), "another user may not use bob's token");
    assert!(tok.authorize_pool(&run("h", None, "j")).is_err());

    // Bob hands it on to carol, limited to render jobs.
    let limits = Limits {
        job_name_prefix: Some("render-".into()),
        ..Limits::default()
    };
    let c = delegate(&t, &bob, &carol.public(), &limits).unwrap();
    let tok = v.verify(&c).unwrap();
    assert_eq!(tok.holder(), Some(&carol.public()));
    tok.authorize_pool(&run("h", Some(&carol.public()), "render-1"))
        .unwrap();
    assert!(
        tok.authorize_pool(&run("h", Some(&carol.public()), "other"))
            .is_err()
    );
    assert!(
        tok.authorize_pool(&run("h", Some(&bob.public()), "render-1"))
            .is_err(),
        "carol holds it now"
    );

    // Eve, who got bob's token, cannot hand it to herself: her block is not bob's.
    let stolen = delegate(&t, &eve, &eve.public(), &Limits::default()).unwrap();
    let e = v.verify(&stolen).err().unwrap();
    assert!(format!("{e}").contains("not signed by its holder"), "{e}");
    // Nor can anyone name a holder in a plain block.
    let b = biscuit_auth::UnverifiedBiscuit::from_base64(&t).unwrap();
    let forged = b
        .append(biscuit_auth::BlockBuilder::new().context(holder_context(&eve.public())))
        .unwrap()
        .to_base64()
        .unwrap();
    assert!(v.verify(&forged).is_err());
}

#[test]
fn a_token_can_be_read_against_the_root_it_names() {
    let (alice, bob) = (user(1), user(2));
    let t = alice
        .mint(Kind::Pool, Some(&bob.public()), &Limits::default())
        .unwrap();
    let tok = inspect(&t).unwrap();
    assert_eq!(tok.root(), &alice.public());
    assert_eq!(tok.holder(), Some(&bob.public()));
    // Re-rooting the same blocks under another key fails: the signature is alice's.
    let eve = user(5);
    let forged = eve
        .mint(Kind::Pool, Some(&eve.public()), &Limits::default())
        .unwrap();
    assert_eq!(inspect(&forged).unwrap().root(), &eve.public());
    assert!(inspect("nonsense").is_err());
    let api = inspect(&alice.mint_admin("n").unwrap()).unwrap();
    assert_eq!((api.kind(), api.root()), (Kind::Api, &alice.public()));
}

#[test]
fn pool_limits_hold_slots_hours_hosts() {
    let alice = user(1);
    let limits = Limits {
        slots: Some(2),
        hours: Some("22:00-06:00".parse().unwrap()),
        hosts: vec!["host-a".into(), "host-b".into()],
        ..Limits::default()
    };
    let t = alice.mint(Kind::Pool, None, &limits).unwrap();
    let tok = alice.verifier().verify(&t).unwrap();
    let night = PoolRequest {
        minute_of_day: 23 * 60,
        ..run("host-a", None, "j")
    };
    tok.authorize_pool(&night).unwrap();
    assert_eq!(tok.pool_slots(&night, 8).unwrap(), 2);
    assert_eq!(tok.pool_slots(&night, 1).unwrap(), 1);
    assert!(
        tok.authorize_pool(&PoolRequest { slots: 3, ..night })
            .is_err()
    );
    assert!(
        tok.authorize_pool(&PoolRequest {
            minute_of_day: 12 * 60,
            ..night
        })
        .is_err()
    );
    assert!(
        tok.authorize_pool(&PoolRequest {
            host: "host-c",
            ..night
        })
        .is_err()
    );
    let e = tok
        .pool_slots(
            &PoolRequest {
                host: "host-c",
                ..night
            },
            4,
        )
        .unwrap_err();
    assert!(format!("{e}").contains("host("), "{e}");
}

#[test]
fn hours_parse_and_cover() {
    let h: Hours = "18:00-08:00".parse().unwrap();
    assert!(h.covers(23 * 60) && h.covers(0) && !h.covers(12 * 60) && !h.covers(8 * 60));
    let d: Hours = "09:30-24:00".parse().unwrap();
    assert!(d.covers(23 * 60 + 59) && !d.covers(9 * 60));
    assert_eq!(d.to_string(), "09:30-24:00");
    for bad in [
        "9-5",
        "25:00-01:00",
        "10:00-10:00",
        "24:00-01:00",
        "10:61-11:00",
    ] {
        assert!(bad.parse::<Hours>().is_err(), "{bad}");
    }
}

#[test]
fn a_token_reads_in_plain_words() {
    let (alice, bob, carol) = (user(1), user(2), user(3));
    let name = |k: &Key| {
        match k[0] {
            _ if *k == alice.public() => "alice",
            _ if *k == bob.public() => "bob",
            _ if *k == carol.public() => "carol",
            _ => "someone",
        }
        .to_string()
    };
    let t = alice
        .mint(
            Kind::Pool,
            Some(&bob.public()),
            &Limits {
                slots: Some(2),
                expires: Some(UNIX_EPOCH + Duration::from_secs(1_798_761_600)),
                ..Limits::default()
            },
        )
        .unwrap();
    let t = delegate(
        &t,
        &bob,
        &carol.public(),
        &Limits {
            job_name_prefix: Some("render-".into()),
            hours: Some("18:00-08:00".parse().unwrap()),
            ..Limits::default()
        },
    )
    .unwrap();
    let words = describe(&alice.verifier().verify(&t).unwrap(), &name);
    assert_eq!(words.len(), 2, "{words:?}");
    assert!(
        words[0].starts_with("may run work on hosts that trust alice; held by bob; until "),
        "{words:?}"
    );
    assert!(words[0].contains("until 2027-01-01T00:00:00Z"), "{words:?}");
    assert!(
        words[0].contains("at most 2 tasks at once on a host"),
        "{words:?}"
    );
    assert!(
        words[1].starts_with("handed on by bob to carol; "),
        "{words:?}"
    );
    assert!(
        words[1].contains("job names beginning with \"render-\""),
        "{words:?}"
    );
    assert!(words[1].contains("the hours 18:00-08:00"), "{words:?}");
    assert!(
        !words.join(" ").contains('`'),
        "every check is in words: {words:?}"
    );
}

/// A random limit of a pool token, small enough that five fit in 2 KiB.
fn limits() -> impl Strategy<Value = Limits> {
    (
        proptest::option::of(0u64..4),
        proptest::option::of(prop_oneof![Just("a"), Just("ab"), Just("b")]),
        proptest::option::of(1u32..6),
        proptest::option::of((0u16..1440, 0u16..1440)),
        proptest::option::of(proptest::collection::btree_set(0u8..4, 1..3)),
    )
        .prop_map(|(exp, prefix, slots, hours, hosts)| Limits {
            scope: None,
            expires: exp.map(|h| UNIX_EPOCH + Duration::from_secs(1_800_000_000 + h * 3600)),
            job_name_prefix: prefix.map(String::from),
            slots,
            hours: hours
                .filter(|(a, b)| a != b)
                .map(|(from, to)| Hours { from, to }),
            hosts: hosts
                .map(|s| s.into_iter().map(|h| format!("host-{h}")).collect())
                .unwrap_or_default(),
            ..Limits::default()
        })
}

/// A random request against those limits.
fn request() -> impl Strategy<Value = (u8, &'static str, u32, u16, u64)> {
    (
        0u8..4,
        prop_oneof![Just("a"), Just("ab"), Just("b"), Just("c")],
        1u32..7,
        0u16..1440,
        0u64..5,
    )
}

/// What `limits` allows, computed directly (the model the checks must match).
fn allows(l: &Limits, (host, job, slots, minute, hour): &(u8, &str, u32, u16, u64)) -> bool {
    let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + hour * 3600);
    l.expires.is_none_or(|e| t <= e)
        && l.job_name_prefix
            .as_ref()
            .is_none_or(|p| job.starts_with(p.as_str()))
        && l.slots.is_none_or(|n| *slots <= n)
        && l.hours.is_none_or(|h| h.covers(*minute))
        && (l.hosts.is_empty() || l.hosts.contains(&format!("host-{host}")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every prefix of a random chain of up to five blocks (about 2 KiB at most) allows
    /// exactly what the model of its limits allows: so a block never widens what came
    /// before it, and the Datalog run limits never refuse a valid token of this size.
    #[test]
    fn attenuation_never_widens(
        chain in proptest::collection::vec((limits(), any::<bool>()), 0..5),
        reqs in proptest::collection::vec(request(), 1..6),
    ) {
        let alice = user(1);
        let bob = user(2);
        let v = alice.verifier();
        let mut token = alice.mint(Kind::Pool, None, &Limits::default()).unwrap();
        let mut applied: Vec<Limits> = Vec::new();
        let mut holder: Option<Key> = None;
        for (l, hand_on) in &chain {
            token = if *hand_on && holder.is_none() {
                holder = Some(bob.public());
                delegate(&token, &bob, &bob.public(), l).unwrap()
            } else {
                attenuate(&token, l).unwrap()
            };
            applied.push(l.clone());
            let tok = v.verify(&token).unwrap();
            for r in &reqs {
                let host = format!("host-{}", r.0);
                let req = PoolRequest {
                    host: &host,
                    user: holder.as_ref(),
                    job_name: r.1,
                    slots: r.2,
                    minute_of_day: r.3,
                    now: UNIX_EPOCH + Duration::from_secs(1_800_000_000 + r.4 * 3600),
                };
                let want = applied.iter().all(|l| allows(l, r));
                let got = tok.authorize_pool(&req);
                if let Err(TokenError::Denied(m)) = &got {
                    prop_assert!(!m.contains("limits"), "a run limit refused a valid token: {m}");
                }
                prop_assert_eq!(got.is_ok(), want, "{:?} {:?}", applied, r);
            }
        }
    }

    /// Tampering with any byte of a token's encoding makes it invalid or leaves it
    /// allowing no more than before (base64 has bits that do not count).
    #[test]
    fn tampered_tokens_are_refused(at in 0usize..10_000, with in 0u8..64) {
        let alice = user(1);
        let t = alice.mint(Kind::Pool, None, &Limits { slots: Some(1), ..Limits::default() }).unwrap();
        let mut bytes = t.clone().into_bytes();
        let i = at % bytes.len();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        bytes[i] = alphabet[with as usize];
        let tampered = String::from_utf8(bytes).unwrap();
        if tampered != t
            && let Ok(tok) = alice.verifier().verify(&tampered) {
            // Only a change in bits the signatures do not cover survives (base64's spare
            // bits, the unsigned root key hint): the signed token is the same.
            let orig = alice.verifier().verify(&t).unwrap();
            prop_assert_eq!(tok.revocation_ids(), orig.revocation_ids());
            prop_assert_eq!(tok.blocks(), orig.blocks());
        }
    }
}

#[test]
fn expired_tokens_are_refused_by_every_verifier_that_checks_time() {
    let alice = user(1);
    let past = now() - Duration::from_secs(60);
    let l = Limits {
        expires: Some(past),
        ..Limits::default()
    };
    let pool = alice.mint(Kind::Pool, None, &l).unwrap();
    let tok = alice.verifier().verify(&pool).unwrap();
    assert!(tok.authorize_pool(&run("h", None, "j")).is_err());
    let api = attenuate(&alice.mint_admin("n").unwrap(), &l).unwrap();
    let tok = alice.verifier().verify(&api).unwrap();
    assert!(tok.authorize(Operation::Read, None, now()).is_err());
}

#[test]
fn revocation_is_for_the_root_and_holders_and_lasts_until_expiry() {
    let (alice, bob, carol, eve) = (user(1), user(2), user(3), user(5));
    let exp = UNIX_EPOCH + Duration::from_secs(1_798_761_600);
    let t = alice
        .mint(
            Kind::Pool,
            Some(&bob.public()),
            &Limits {
                expires: Some(exp),
                ..Limits::default()
            },
        )
        .unwrap();
    let t = attenuate(
        &t,
        &Limits {
            slots: Some(2),
            ..Limits::default()
        },
    )
    .unwrap();
    let t = delegate(&t, &bob, &carol.public(), &Limits::default()).unwrap();
    let tok = alice.verifier().verify(&t).unwrap();
    assert_eq!(tok.revocation_ids().len(), 3);
    assert_eq!(tok.holder_at(1), Some(bob.public()));
    assert_eq!(tok.holder_at(3), Some(carol.public()));
    // The root revokes anything; bob the blocks from his time on; carol none of bob's;
    // eve nothing.
    tok.may_revoke(0, &alice.public()).unwrap();
    tok.may_revoke(2, &bob.public()).unwrap();
    assert!(tok.may_revoke(0, &bob.public()).is_err());
    assert!(tok.may_revoke(2, &carol.public()).is_err());
    assert!(tok.may_revoke(1, &eve.public()).is_err());
    assert!(tok.may_revoke(3, &alice.public()).is_err(), "no block 3");
    assert_eq!(tok.expires_through(2), Some(exp));
    let bearer = alice.mint(Kind::Pool, None, &Limits::default()).unwrap();
    assert_eq!(
        alice.verifier().verify(&bearer).unwrap().expires_through(0),
        None
    );
}

#[test]
fn utc_dates_parse_as_biscuit_prints_them() {
    let t = words::parse_utc("2027-01-01T00:00:00Z").unwrap();
    assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_798_761_600));
    let t = words::parse_utc("1970-01-01T00:00:01Z").unwrap();
    assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1));
    let t = words::parse_utc("2024-02-29T12:30:15Z").unwrap();
    assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_709_209_815));
    for bad in [
        "2027-13-01T00:00:00Z",
        "2027-01-01 00:00:00Z",
        "soon",
        "2027-01-01T-1:00:00Z",
        "2027-01-01T00-00:00Z",
    ] {
        assert!(words::parse_utc(bad).is_none(), "{bad}");
    }
}

#[test]
fn a_spend_token_caps_the_total_and_each_job() {
    let (alice, bob, eve) = (user(1), user(2), user(5));
    let t = alice
        .mint(
            Kind::Spend,
            Some(&bob.public()),
            &Limits {
                credits_total: Some(10_000_000),
                credits_per_job: Some(6_000_000),
                ..Limits::default()
            },
        )
        .unwrap();
    let tok = alice.verifier().verify(&t).unwrap();
    let (b, e) = (bob.public(), eve.public());
    let req = |user, amount, spent| SpendRequest {
        user,
        job: "ab",
        amount,
        spent,
        now: now(),
    };
    tok.authorize_spend(&req(&b, 6_000_000, 6_000_000)).unwrap();
    let err = tok
        .authorize_spend(&req(&b, 6_000_001, 6_000_001))
        .unwrap_err();
    assert!(format!("{err}").contains("amount("), "{err}");
    let err = tok
        .authorize_spend(&req(&b, 5_000_000, 11_000_000))
        .unwrap_err();
    assert!(format!("{err}").contains("spent("), "{err}");
    assert!(tok.authorize_spend(&req(&e, 1, 1)).is_err());
    // A pool token does not spend; a spend token does not run work.
    assert!(
        tok.authorize_pool(&run("h", Some(&bob.public()), "j"))
            .is_err()
    );
    let words = describe(&tok, &|_| "x".into());
    assert!(
        words[0].contains("at most 10 credits in all, at most 6 credits per job"),
        "{words:?}"
    );
}

#[test]
fn tokens_with_rules_joins_or_facts_in_later_blocks_are_refused_before_anything_runs() {
    let alice = user(1);
    let t = alice.mint(Kind::Pool, None, &Limits::default()).unwrap();
    let append = |code: &str| {
        biscuit_auth::UnverifiedBiscuit::from_base64(&t)
            .unwrap()
            .append(biscuit_auth::BlockBuilder::new().code(code).unwrap())
            .unwrap()
            .to_base64()
            .unwrap()
    };
    let trusting = format!(
        "check if time($t) trusting ed25519/{};",
        hex(&user(2).public())
    );
    for (code, what) in [
        ("n(1); n(2); n(3);", "facts"),
        ("p($x, $y) <- n($x), n($y);", "rules"),
        ("check if n($a), n($b), n($c), $a < $b;", "joins"),
        (trusting.as_str(), "trusting"),
        // A block stating its own time to pass its own expiry check.
        (
            "time(2000-01-01T00:00:00Z); check if time($t), $t <= 2001-01-01T00:00:00Z;",
            "facts",
        ),
    ] {
        let e = alice
            .verifier()
            .verify(&append(code))
            .err()
            .unwrap_or_else(|| panic!("{what} passed"));
        assert!(matches!(e, TokenError::Invalid(_)), "{what}: {e}");
        assert!(e.to_string().contains("never use"), "{what}: {e}");
    }
    // naac's own blocks pass.
    let ok = attenuate(
        &t,
        &Limits {
            scope: Some(Scope::Submit),
            expires: Some(now() + Duration::from_secs(60)),
            job_name_prefix: Some("a".into()),
            slots: Some(2),
            hours: Some("22:00-06:00".parse().unwrap()),
            hosts: vec!["h".into()],
            credits_total: Some(1),
            credits_per_job: Some(1),
            manifests: vec!["ab".repeat(32)],
            path_prefix: Some("x/".into()),
        },
    )
    .unwrap();
    alice.verifier().verify(&ok).unwrap();
}

fn data_req<'a>(by: Option<&'a Key>, manifest: &'a str, path: Option<&'a str>) -> DataRequest<'a> {
    DataRequest {
        by,
        op: DataOp::Read,
        manifest,
        path,
        now: now(),
    }
}

#[test]
fn a_data_token_reads_only_its_ids_and_paths_and_only_for_its_holder() {
    let (alice, bob, eve) = (user(1), user(2), user(5));
    let (a, b) = ("a1".repeat(32), "b2".repeat(32));
    let t = alice
        .mint(
            Kind::Data,
            Some(&bob.public()),
            &Limits {
                scope: Some(Scope::Read),
                manifests: vec![a.to_uppercase()],
                path_prefix: Some("results/".into()),
                ..Limits::default()
            },
        )
        .unwrap();
    let tok = alice.verifier().verify(&t).unwrap();
    let bk = bob.public();
    tok.authorize_data(&data_req(Some(&bk), &a, None)).unwrap();
    tok.authorize_data(&data_req(Some(&bk), &a, Some("results/1.txt")))
        .unwrap();
    let err = tok
        .authorize_data(&data_req(Some(&bk), &a, Some("secret.txt")))
        .unwrap_err();
    assert!(format!("{err}").contains("path("), "{err}");
    // Another id: refused, listing or file.
    let err = tok
        .authorize_data(&data_req(Some(&bk), &b, None))
        .unwrap_err();
    assert!(format!("{err}").contains("manifest("), "{err}");
    // Shown by someone else, or by nobody in particular.
    let ek = eve.public();
    assert!(tok.authorize_data(&data_req(Some(&ek), &a, None)).is_err());
    assert!(tok.authorize_data(&data_req(None, &a, None)).is_err());
    // Read scope refuses writes.
    let w = DataRequest {
        op: DataOp::Write,
        ..data_req(Some(&bk), &a, Some("results/2.txt"))
    };
    assert!(tok.authorize_data(&w).is_err());
    // Bob binds it to a session key of his: that key may use it, bob's own no longer.
    let session = user(9);
    let bound = delegate(&t, &bob, &session.public(), &Limits::default()).unwrap();
    let tok2 = alice.verifier().verify(&bound).unwrap();
    let sk = session.public();
    tok2.authorize_data(&data_req(Some(&sk), &a, Some("results/x")))
        .unwrap();
    assert!(tok2.authorize_data(&data_req(Some(&bk), &a, None)).is_err());
    // Eve cannot bind bob's token to herself.
    let stolen = delegate(&t, &eve, &ek, &Limits::default()).unwrap();
    assert!(alice.verifier().verify(&stolen).is_err());
    // A data token runs no work; a pool token reads no data.
    assert!(tok.authorize_pool(&run("h", Some(&bk), "j")).is_err());
    let pool = alice
        .mint(Kind::Pool, Some(&bk), &Limits::default())
        .unwrap();
    let pool = alice.verifier().verify(&pool).unwrap();
    assert!(pool.authorize_data(&data_req(Some(&bk), &a, None)).is_err());
    let words = describe(&tok, &|_| "x".into()).join(" ");
    assert!(words.contains("may use data stored by x"), "{words}");
    assert!(words.contains("the stored data"), "{words}");
    assert!(
        words.contains("files whose path begins with \"results/\""),
        "{words}"
    );
}

/// A random limit of a data token.
fn data_limits() -> impl Strategy<Value = Limits> {
    (
        proptest::option::of(proptest::collection::btree_set(0u8..3, 1..3)),
        proptest::option::of(prop_oneof![Just("a/"), Just("a/b"), Just("b/")]),
        any::<bool>(),
    )
        .prop_map(|(ids, prefix, read_only)| Limits {
            manifests: ids
                .map(|s| s.into_iter().map(|i| format!("{i:0>64}")).collect())
                .unwrap_or_default(),
            path_prefix: prefix.map(String::from),
            scope: read_only.then_some(Scope::Read),
            ..Limits::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every prefix of a random chain of up to five data blocks allows exactly what the
    /// model of its limits allows: one id never opens another, a path prefix never widens.
    #[test]
    fn data_attenuation_never_widens(
        chain in proptest::collection::vec(data_limits(), 0..5),
        reqs in proptest::collection::vec(
            (0u8..4, proptest::option::of(prop_oneof![Just("a/b/c"), Just("a/x"), Just("b/y"), Just("c")]), any::<bool>()),
            1..6,
        ),
    ) {
        let alice = user(1);
        let bob = user(2);
        let v = alice.verifier();
        let mut token = alice.mint(Kind::Data, Some(&bob.public()), &Limits::default()).unwrap();
        let mut applied: Vec<Limits> = Vec::new();
        for l in &chain {
            token = attenuate(&token, l).unwrap();
            applied.push(l.clone());
            let tok = v.verify(&token).unwrap();
            for (id, path, write) in &reqs {
                let m = format!("{id:0>64}");
                let req = DataRequest {
                    by: Some(&bob.public()),
                    op: if *write { DataOp::Write } else { DataOp::Read },
                    manifest: &m,
                    path: *path,
                    now: now(),
                };
                let want = applied.iter().all(|l| {
                    (l.manifests.is_empty() || l.manifests.contains(&m))
                        && l.path_prefix.as_ref().is_none_or(|p| path.is_none_or(|x| x.starts_with(p.as_str())))
                        && (l.scope.is_none() || !*write)
                });
                prop_assert_eq!(tok.authorize_data(&req).is_ok(), want, "{:?} {:?} {:?}", applied, m, path);
            }
        }
    }
}
