//! Runs of small scenarios: invariants hold, a seed fixes the trace, verification does what
//! it claims against cheaters.

use crate::{Scenario, run};

fn small() -> Scenario {
    Scenario::parse(include_str!("../../../sim/small.toml")).expect("sim/small.toml parses")
}

#[test]
fn a_small_pool_with_churn_and_cheaters_breaks_no_invariant() {
    let r = run(small(), 1, None);
    assert!(r.violations.is_empty(), "{:#?}", r.violations);
    assert!(r.jobs_finished >= 60, "{r:#?}");
    assert!(r.departures > 100, "{r:#?}");
    assert!(r.runs_lost > 0, "churn loses runs: {r:#?}");
    let by = |n: &str| r.settings.iter().find(|s| s.name == n).expect("setting");
    // Plain jobs take whatever a cheater says (and hasty cheaters take more than their share
    // of the tasks); replicas accept none of it.
    assert!(by("plain").wrong_rate() > 0.1, "{:#?}", r.settings);
    assert_eq!(
        by("replicas2").wrong + by("replicas3").wrong,
        0,
        "{:#?}",
        r.settings
    );
}

#[test]
fn colluding_cheaters_get_through_replicas_only_when_two_share_a_task() {
    let s = Scenario::parse(include_str!("../../../sim/collude.toml")).expect("parses");
    let r = run(s, 1, None);
    // `expect.wrong_below` holds each checked setting well under plain's rate.
    let plain = r
        .settings
        .iter()
        .find(|s| s.name == "plain")
        .expect("plain");
    assert!(plain.wrong_rate() > 0.07, "{:#?}", r.settings);
    assert!(r.violations.is_empty(), "{:#?}", r.violations);
}

#[test]
fn a_broken_expectation_is_reported_at_its_event_and_replays_there() {
    // Colluders do get wrong answers past replicas: expecting none is a violation, found
    // at the event of the first one.
    let mut s = Scenario::parse(include_str!("../../../sim/collude.toml")).expect("parses");
    s.expect.no_wrong = vec!["replicas2".into()];
    s.expect.wrong_below.clear();
    let r = run(s.clone(), 1, None);
    let v = r.violations.first().expect("a violation").clone();
    assert!(
        v.what.contains("replicas2 accepted a wrong result"),
        "{v:?}"
    );
    let replay = run(s, 1, Some(v.event));
    assert_eq!(replay.events, v.event);
    assert_eq!(replay.violations.first(), Some(&v));
}

#[test]
fn a_seed_fixes_the_trace() {
    let mut s = small();
    s.hours = 0.5;
    let a = run(s.clone(), 7, None);
    let b = run(s.clone(), 7, None);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.events, b.events);
    let c = run(s, 8, None);
    assert_ne!(a.trace, c.trace);
}

#[test]
fn a_run_stops_at_an_event_and_shows_what_led_there() {
    let mut s = small();
    s.hours = 0.5;
    let r = run(s, 3, Some(5_000));
    assert_eq!(r.events, 5_000);
    assert_eq!(r.recent.len(), 64);
    assert!(
        r.recent.last().expect("recent").starts_with("#5000 "),
        "{:?}",
        r.recent.last()
    );
}

#[test]
fn dht_lookups_under_a_fifth_an_hour_of_churn_find_their_providers_in_log_n_rounds() {
    let mut s = Scenario::parse(include_str!("../../../sim/dht.toml")).expect("sim/dht.toml");
    s.pool.hosts = 3_000;
    s.hours = 2.0;
    s.dht.lookups_per_hour = 3_000.0;
    let r = run(s, 5, None);
    assert!(r.violations.is_empty(), "{:#?}", r.violations);
    let d = r.dht.clone().expect("dht figures");
    assert!(d.lookups >= 2_000, "{d:?}");
    assert!(d.success() >= 0.99, "{d:?}");
    assert!(d.mean_rounds <= d.log2_nodes / 3.0, "{d:?}");
    assert!(
        (0.1..0.4).contains(&r.churn_per_hour()),
        "churn {}",
        r.churn_per_hour()
    );
}
